//! The pages that arrange builds by what they built: `/console` (a row per change, a box
//! per builder) and `/grid` and `/tgrid` (builders against revisions).

use axum::extract::{RawQuery, State};
use serde_json::{json, Value};

use super::{
    all_arguments, argument, arguments, builder_columns, builds_by_id, count, query, render,
    web_config, PageError, PageResult, Pages,
};
use crate::data::builds::{self, BuildsOf};
use crate::data::changes::{self, ChangesOf};
use crate::model::BuildResult;

/// Revisions `/grid` shows unless `width=` says otherwise.
const GRID_WIDTH: usize = 5;

/// `/console`: the last changes (`numbuilds` of them, newest first; by commit time with
/// `order_console_by_time`), each with a box per builder for the first build that included
/// it. A failed box is `failure` when the builder's build before it did not fail (the
/// change broke it) and `failed-again` when it did. `builder=`, `tag=` choose the builders;
/// `repository=`, `branch=`, `project=`, `codebase=` and `name=` (part of the author) the
/// changes.
pub async fn console(State(pages): State<Pages>, RawQuery(raw): RawQuery) -> PageResult {
    let args = arguments(&raw);
    let web = web_config(&pages.context);
    let limit = count(&args, "numbuilds", web.numbuilds, None)?;
    let columns = builder_columns(&pages, &args).await?;
    let order = if web.order_console_by_time {
        "-when_timestamp"
    } else {
        "-changeid"
    };
    let mut pairs = vec![("order", order.to_string()), ("limit", limit.to_string())];
    for (arg, field) in [
        ("repository", "repository"),
        ("branch", "branch"),
        ("project", "project"),
        ("codebase", "codebase"),
        ("name", "author__contains"),
    ] {
        pairs.extend(
            all_arguments(&args, arg)
                .into_iter()
                .map(|v| (field, v.to_string())),
        );
    }
    let listing = changes::changes(
        &pages.context.db,
        &ChangesOf::default(),
        &query(&changes::CHANGE, &pairs),
    )
    .await?;
    let changeids: Vec<i64> = listing
        .items
        .iter()
        .filter_map(|c| c["changeid"].as_i64())
        .collect();
    let built = builds::builds_of_changes(&pages.context.db, &changeids).await?;
    let builds = builds_by_id(&pages, built.iter().map(|(_, b)| *b)).await?;
    let mut rows = Vec::new();
    for change in &listing.items {
        let changeid = change["changeid"].as_i64();
        let mut cells = Vec::new();
        for column in &columns {
            let first = built
                .iter()
                .filter(|(c, _)| Some(*c) == changeid)
                .filter_map(|(_, b)| builds.iter().find(|build| build["buildid"] == *b))
                .find(|build| build["builderid"] == column["builderid"]);
            let cell = match first {
                Some(build) => {
                    json!({ "build": build, "class": console_class(&pages, build).await? })
                }
                None => json!({ "build": null, "class": "notstarted" }),
            };
            cells.push(cell);
        }
        rows.push(json!({
            "change": render::change_links(&pages.context, &web, change).await,
            "cells": cells,
        }));
    }
    pages.page(
        "console.html",
        json!({ "builders": columns, "rows": rows, "numbuilds": limit }),
    )
}

/// A console box's class: `running`, `success`, `warnings`, `failure` (the builder's
/// previous build did not fail), `failed-again`, or the result's name.
async fn console_class(pages: &Pages, build: &Value) -> Result<String, PageError> {
    if !build["complete"].as_bool().unwrap_or(false) {
        return Ok("running".into());
    }
    let result = build["results"]
        .as_i64()
        .and_then(BuildResult::from_code)
        .unwrap_or(BuildResult::Success);
    if result != BuildResult::Failure {
        return Ok(result.name().to_string());
    }
    let previous = builds::builds(
        &pages.context.db,
        &BuildsOf {
            builderid: build["builderid"].as_i64(),
            ..Default::default()
        },
        &query(
            &builds::BUILD,
            &[
                ("complete", "true".into()),
                ("number__lt", build["number"].to_string()),
                ("order", "-number".into()),
                ("limit", "1".into()),
            ],
        ),
    )
    .await?;
    let failed_before = previous
        .items
        .first()
        .is_some_and(|p| p["results"].as_i64() == Some(BuildResult::Failure as i64));
    Ok(if failed_before {
        "failed-again"
    } else {
        "failure"
    }
    .into())
}

/// `/grid`: builders down the side, the last `width=` revisions they built across the top
/// (oldest first), each cell the builds of that builder from that revision.
pub async fn grid(State(pages): State<Pages>, RawQuery(raw): RawQuery) -> PageResult {
    let args = arguments(&raw);
    let width = count(&args, "width", GRID_WIDTH, None)?;
    let (columns, mut revisions, cells) = revision_table(&pages, &args, width).await?;
    revisions.reverse();
    let rows: Vec<Value> = columns
        .iter()
        .map(|builder| {
            let builds: Vec<Value> = revisions
                .iter()
                .map(|revision| cell(&cells, builder, revision))
                .collect();
            json!({ "builder": builder, "cells": builds })
        })
        .collect();
    pages.page(
        "grid.html",
        json!({ "revisions": revisions, "rows": rows, "width": width }),
    )
}

/// `/tgrid`: the grid transposed: revisions down the side (`rev_order=desc`, newest first,
/// unless `asc`), builders across the top; `length=` revisions.
pub async fn tgrid(State(pages): State<Pages>, RawQuery(raw): RawQuery) -> PageResult {
    let args = arguments(&raw);
    let length = count(&args, "length", GRID_WIDTH, None)?;
    let ascending = match argument(&args, "rev_order") {
        None | Some("" | "desc") => false,
        Some("asc") => true,
        Some(other) => {
            return Err(PageError::bad_request(format!(
                "rev_order={other}: expected asc or desc"
            )))
        }
    };
    let (columns, mut revisions, cells) = revision_table(&pages, &args, length).await?;
    if ascending {
        revisions.reverse();
    }
    let rows: Vec<Value> = revisions
        .iter()
        .map(|revision| {
            let builds: Vec<Value> = columns
                .iter()
                .map(|builder| cell(&cells, builder, revision))
                .collect();
            json!({ "revision": revision, "cells": builds })
        })
        .collect();
    pages.page(
        "tgrid.html",
        json!({ "builders": columns, "rows": rows, "length": length, "rev_order": if ascending { "asc" } else { "desc" } }),
    )
}

/// The builds of a builder from a revision.
fn cell(cells: &[(Value, (String, String))], builder: &Value, revision: &Value) -> Value {
    let key = (
        revision["branch"].as_str().unwrap_or_default().to_string(),
        revision["revision"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    );
    let builds: Vec<&Value> = cells
        .iter()
        .filter(|(build, at)| *at == key && build["builderid"] == builder["builderid"])
        .map(|(build, _)| build)
        .collect();
    json!(builds)
}

type RevisionTable = (Vec<Value>, Vec<Value>, Vec<(Value, (String, String))>);

/// The grids' data: the builders (`tag=`/`category=`, `builder=`), the last `count`
/// revisions they built (`branch=`), newest first, each `{branch, revision}`, and the
/// builds of those revisions with the revision each was made from.
async fn revision_table(
    pages: &Pages,
    args: &[(String, String)],
    count: usize,
) -> Result<RevisionTable, PageError> {
    let columns = builder_columns(pages, args).await?;
    let builderids: Vec<i64> = columns
        .iter()
        .filter_map(|b| b["builderid"].as_i64())
        .collect();
    let branches = all_arguments(args, "branch");
    let db = &pages.context.db;
    let revisions = builds::recent_revisions(db, &builderids, &branches, count).await?;
    let built = builds::builds_of_revisions(db, &builderids, &revisions).await?;
    let builds = builds_by_id(pages, built.iter().map(|(b, _)| *b)).await?;
    let cells = built
        .into_iter()
        .filter_map(|(id, at)| {
            let build = builds.iter().find(|b| b["buildid"] == id)?;
            Some((build.clone(), at))
        })
        .collect();
    let revisions = revisions
        .into_iter()
        .map(|(branch, revision)| json!({ "branch": branch, "revision": revision }))
        .collect();
    Ok((columns, revisions, cells))
}
