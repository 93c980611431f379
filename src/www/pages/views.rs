//! The pages that arrange builds by what they built: `/console` (a row per change, a box
//! per builder) and `/grid` and `/tgrid` (builders against revisions).

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use serde_json::{json, Value};

use super::{
    all_arguments, argument, arguments, builder_columns, builds_by_id, count, href_with, query,
    render, store, web_config, PageError, PageResult, Pages,
};
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
    let equal: Vec<(&str, Vec<&str>)> = ["repository", "branch", "project", "codebase"]
        .into_iter()
        .map(|name| (name, all_arguments(&args, name)))
        .collect();
    let authors = all_arguments(&args, "name");
    let db = &pages.context.db;
    let changeids =
        store::newest_changes(db, &equal, &authors, web.order_console_by_time, limit).await?;
    let mut changes = changes_by_id(&pages, &changeids).await?;
    // The listing comes in id order; the page in the order the ids were chosen.
    changes.sort_by_key(|c| {
        let id = c["changeid"].as_i64();
        changeids.iter().position(|c| Some(*c) == id)
    });
    let builderids: Vec<i64> = columns
        .iter()
        .filter_map(|c| c["builderid"].as_i64())
        .collect();
    let first: HashMap<(i64, i64), store::ConsoleBuild> =
        store::first_builds_of_changes(db, &changeids, &builderids)
            .await?
            .into_iter()
            .map(|build| ((build.changeid, build.builderid), build))
            .collect();
    let mut rows = Vec::new();
    for change in &changes {
        let changeid = change["changeid"].as_i64().unwrap_or_default();
        let cells: Vec<Value> = columns
            .iter()
            .map(|column| {
                let builderid = column["builderid"].as_i64().unwrap_or_default();
                match first.get(&(changeid, builderid)) {
                    Some(build) => object! {
                        "build": object! {
                            "buildid": build.buildid,
                            "number": build.number,
                            "state_string": build.state_string.as_str(),
                        },
                        "class": console_class(build),
                    },
                    None => object! { "build": Value::Null, "class": "notstarted" },
                }
            })
            .collect();
        rows.push(object! {
            "change": render::change_links(&pages.context, &web, change).await,
            "cells": cells,
        });
    }
    pages
        .page(
            "console.html",
            object! {
                "builders": columns,
                "rows": rows,
                "numbuilds": limit,
                "more_href": href_with(&args, "numbuilds", &(limit * 2).to_string()),
            },
        )
        .await
}

/// Changes by id, in one query, in id order.
async fn changes_by_id(pages: &Pages, ids: &[i64]) -> Result<Vec<Value>, PageError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let pairs: Vec<(&str, String)> = ids.iter().map(|id| ("changeid", id.to_string())).collect();
    Ok(changes::changes(
        &pages.context.db,
        &ChangesOf::default(),
        &query(&changes::CHANGE, &pairs),
    )
    .await?
    .items)
}

/// A console box's class: `running`, `success`, `warnings`, `failure` (the builder's
/// previous build did not fail), `failed-again`, or the result's name.
fn console_class(build: &store::ConsoleBuild) -> String {
    if !build.complete {
        return "running".into();
    }
    let result = build
        .results
        .and_then(BuildResult::from_code)
        .unwrap_or(BuildResult::Success);
    if result != BuildResult::Failure {
        return result.name().to_string();
    }
    if build.failed_before {
        "failed-again"
    } else {
        "failure"
    }
    .into()
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
            object! { "builder": builder.clone(), "cells": builds }
        })
        .collect();
    pages
        .page(
            "grid.html",
            object! {
                "revisions": revisions,
                "rows": rows,
                "width": width,
                "more_href": href_with(&args, "width", &(width * 2).to_string()),
            },
        )
        .await
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
            object! { "revision": revision.clone(), "cells": builds }
        })
        .collect();
    pages
        .page(
            "tgrid.html",
            object! {
                "builders": columns,
                "rows": rows,
                "length": length,
                "ascending": ascending,
                "more_href": href_with(&args, "length", &(length * 2).to_string()),
            },
        )
        .await
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
    let revisions = store::recent_revisions(db, &builderids, &branches, count).await?;
    let built = store::builds_of_revisions(db, &builderids, &revisions).await?;
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
