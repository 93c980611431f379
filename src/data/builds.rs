//! Builds, their steps, the steps' logs and the logs' contents, and the ways a URL names
//! them (`/builds/7`, `/builders/NAME/builds/3/steps/compile/logs/stdio`).

use serde_json::{json, Map, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::changes::{
    announce_complete_buildset, buildrequest_json, complete_buildset_sql, BUILDREQUEST_SELECT,
};
use super::query::{
    bind_all, id_list, wanted_properties, Bind, Entity, FieldType as F, JsonField as J, JsonPage,
    Listing, Page, Query,
};
use super::{announce_with, Resource};
use super::{flag, opt_int, opt_time, projected, time};
use crate::bus::Bus;
use crate::db::{
    now, properties_of, push_build_properties, push_log_write, Batch, Db, DbError, DbResult,
    PendingRequest, BUILDSET_PROPERTIES, BUILDSET_SOURCESTAMPS,
};
use crate::model::{BuildResult, Properties, SourceStamp};

pub const BUILD: Entity = Entity {
    name: "build",
    plural: "builds",
    fields: &[
        ("buildid", F::Integer),
        ("number", F::Integer),
        ("builderid", F::Integer),
        ("buildrequestid", F::Integer),
        ("workerid", F::Integer),
        ("masterid", F::Integer),
        ("started_at", F::DateTime),
        ("complete", F::Boolean),
        ("complete_at", F::DateTime),
        ("locks_duration_s", F::Integer),
        ("results", F::Integer),
        ("state_string", F::String),
        ("properties", F::Object),
    ],
};

pub const STEP: Entity = Entity {
    name: "step",
    plural: "steps",
    fields: &[
        ("stepid", F::Integer),
        ("number", F::Integer),
        ("name", F::String),
        ("buildid", F::Integer),
        ("started_at", F::DateTime),
        ("locks_acquired_at", F::DateTime),
        ("complete", F::Boolean),
        ("complete_at", F::DateTime),
        ("results", F::Integer),
        ("state_string", F::String),
        ("urls", F::Object),
        ("hidden", F::Boolean),
    ],
};

pub const LOG: Entity = Entity {
    name: "log",
    plural: "logs",
    fields: &[
        ("logid", F::Integer),
        ("name", F::String),
        ("slug", F::String),
        ("stepid", F::Integer),
        ("complete", F::Boolean),
        ("num_lines", F::Integer),
        ("type", F::String),
    ],
};

pub const LOGCHUNK: Entity = Entity {
    name: "logchunk",
    plural: "logchunks",
    fields: &[
        ("logid", F::Integer),
        ("firstline", F::Integer),
        ("content", F::String),
    ],
};

// ---- how a URL names a builder, build, step or log -------------------------------------

/// `/builders/N` or `/builders/NAME`.
#[derive(Clone, Debug, PartialEq)]
pub enum BuilderRef {
    Id(i64),
    Name(String),
}

/// `/builds/ID` or `/builders/B/builds/NUMBER`.
#[derive(Clone, Debug, PartialEq)]
pub enum BuildRef {
    Id(i64),
    Number(BuilderRef, i64),
}

/// A step by id, or by number or name within a build.
#[derive(Clone, Debug, PartialEq)]
pub enum StepRef {
    Id(i64),
    Number(BuildRef, i64),
    Name(BuildRef, String),
}

/// A log by id, or by slug within a step.
#[derive(Clone, Debug, PartialEq)]
pub enum LogRef {
    Id(i64),
    Slug(StepRef, String),
}

pub async fn builder_id(db: &Db, builder: &BuilderRef) -> DbResult<Option<i64>> {
    match builder {
        BuilderRef::Id(id) => Ok(sqlx::query_scalar("SELECT id FROM builders WHERE id = $1")
            .bind(id)
            .fetch_optional(&db.pool)
            .await?),
        BuilderRef::Name(name) => Ok(
            sqlx::query_scalar("SELECT id FROM builders WHERE name = $1")
                .bind(name)
                .fetch_optional(&db.pool)
                .await?,
        ),
    }
}

pub async fn build_id(db: &Db, build: &BuildRef) -> DbResult<Option<i64>> {
    match build {
        BuildRef::Id(id) => Ok(sqlx::query_scalar("SELECT id FROM builds WHERE id = $1")
            .bind(id)
            .fetch_optional(&db.pool)
            .await?),
        BuildRef::Number(builder, number) => {
            let Some(builderid) = builder_id(db, builder).await? else {
                return Ok(None);
            };
            Ok(
                sqlx::query_scalar("SELECT id FROM builds WHERE builderid = $1 AND number = $2")
                    .bind(builderid)
                    .bind(number)
                    .fetch_optional(&db.pool)
                    .await?,
            )
        }
    }
}

pub async fn step_id(db: &Db, step: &StepRef) -> DbResult<Option<i64>> {
    let (build, column, value) = match step {
        StepRef::Id(id) => {
            return Ok(sqlx::query_scalar("SELECT id FROM steps WHERE id = $1")
                .bind(id)
                .fetch_optional(&db.pool)
                .await?)
        }
        StepRef::Number(build, number) => (build, "number", Bind::Int(*number)),
        StepRef::Name(build, name) => (build, "name", Bind::Text(name.clone())),
    };
    let Some(buildid) = build_id(db, build).await? else {
        return Ok(None);
    };
    let sql = format!("SELECT id FROM steps WHERE buildid = $1 AND {column} = $2");
    let binds = [Bind::Int(buildid), value];
    let row = bind_all(sqlx::query(&sql), &binds)
        .fetch_optional(&db.pool)
        .await?;
    Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?)
}

pub async fn log_id(db: &Db, log: &LogRef) -> DbResult<Option<i64>> {
    match log {
        LogRef::Id(id) => Ok(sqlx::query_scalar("SELECT id FROM logs WHERE id = $1")
            .bind(id)
            .fetch_optional(&db.pool)
            .await?),
        LogRef::Slug(step, slug) => {
            let Some(stepid) = step_id(db, step).await? else {
                return Ok(None);
            };
            Ok(
                sqlx::query_scalar("SELECT id FROM logs WHERE stepid = $1 AND slug = $2")
                    .bind(stepid)
                    .bind(slug)
                    .fetch_optional(&db.pool)
                    .await?,
            )
        }
    }
}

// ---- builds --------------------------------------------------------------------------

const BUILD_SELECT: &str = "builds.id, builds.number, builds.builderid, builds.buildrequestid, \
     builds.workerid, builds.masterid, builds.started_at, builds.complete_at, \
     builds.locks_duration_s, builds.state_string, builds.results";

const BUILD_COLUMNS: &[(&str, &str)] = &[
    ("buildid", "builds.id"),
    ("number", "builds.number"),
    ("builderid", "builds.builderid"),
    ("buildrequestid", "builds.buildrequestid"),
    ("workerid", "builds.workerid"),
    ("masterid", "builds.masterid"),
    ("started_at", "CAST(builds.started_at AS BIGINT)"),
    (
        "complete",
        "(CASE WHEN builds.complete_at IS NULL THEN 0 ELSE 1 END)",
    ),
    ("complete_at", "CAST(builds.complete_at AS BIGINT)"),
    (
        "locks_duration_s",
        "CAST(builds.locks_duration_s AS BIGINT)",
    ),
    ("state_string", "builds.state_string"),
    ("results", "builds.results"),
];

fn build_json(row: &AnyRow) -> DbResult<Value> {
    let complete_at = opt_time(row, 7)?;
    Ok(json!({
        "buildid": row.try_get::<i64, _>(0)?,
        "number": row.try_get::<i64, _>(1)?,
        "builderid": row.try_get::<i64, _>(2)?,
        "buildrequestid": row.try_get::<i64, _>(3)?,
        "workerid": opt_int(row, 4)?,
        "masterid": row.try_get::<i64, _>(5)?,
        "started_at": time(row, 6)?,
        "complete": !complete_at.is_null(),
        "complete_at": complete_at,
        "locks_duration_s": row.try_get::<f64, _>(8)? as i64,
        "state_string": row.try_get::<String, _>(9)?,
        "results": opt_int(row, 10)?,
        "properties": {},
    }))
}

/// Which builds a collection URL names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BuildsOf {
    pub builderid: Option<i64>,
    pub buildrequestid: Option<i64>,
    pub workerid: Option<i64>,
    /// Builds of a change: of the buildsets holding its sourcestamp.
    pub changeid: Option<i64>,
    /// Builds a build triggered: of the buildsets it is the parent of.
    pub parent_buildid: Option<i64>,
}

/// A build as [`build_json`] makes it, made by the database.
const BUILD_ITEM: &[(&str, J)] = &[
    ("buildid", J::Plain("builds.id")),
    ("number", J::Plain("builds.number")),
    ("builderid", J::Plain("builds.builderid")),
    ("buildrequestid", J::Plain("builds.buildrequestid")),
    ("workerid", J::Plain("builds.workerid")),
    ("masterid", J::Plain("builds.masterid")),
    ("started_at", J::Seconds("builds.started_at")),
    ("complete", J::Flag("builds.complete_at IS NOT NULL")),
    ("complete_at", J::Seconds("builds.complete_at")),
    ("locks_duration_s", J::Seconds("builds.locks_duration_s")),
    ("state_string", J::Plain("builds.state_string")),
    ("results", J::Plain("builds.results")),
    ("properties", J::EmptyObject),
];

/// The builds a URL names, read into values.
pub async fn builds(db: &Db, of: &BuildsOf, query: &Query) -> DbResult<Page> {
    let (rows, counted, rest) = builds_listing(of).fetch(db, query).await?;
    let items = rows.iter().map(build_json).collect::<DbResult<Vec<_>>>()?;
    let mut page = rest.page(items, counted);
    if !query.properties.is_empty() {
        add_build_properties(db, query, &mut page.items).await?;
    }
    Ok(projected(query, page))
}

/// The same page as [`builds`], written as JSON by the database; `None` when it cannot
/// be (see [`Listing::fetch_json`]).
pub async fn builds_json(db: &Db, of: &BuildsOf, query: &Query) -> DbResult<Option<JsonPage>> {
    builds_listing(of).fetch_json(db, query, BUILD_ITEM).await
}

fn builds_listing(of: &BuildsOf) -> Listing<'static> {
    let from = match (of.changeid, of.parent_buildid) {
        (Some(_), _) => {
            "builds JOIN buildrequests br ON br.id = builds.buildrequestid \
             JOIN buildset_sourcestamps bss ON bss.buildsetid = br.buildsetid \
             JOIN changes ch ON ch.sourcestampid = bss.sourcestampid"
        }
        (None, Some(_)) => {
            "builds JOIN buildrequests br ON br.id = builds.buildrequestid \
             JOIN buildsets bs ON bs.id = br.buildsetid"
        }
        (None, None) => "builds",
    };
    let mut listing = Listing::new(BUILD_SELECT, from, BUILD_COLUMNS, "builds.id");
    for (value, column) in [
        (of.builderid, "builds.builderid"),
        (of.buildrequestid, "builds.buildrequestid"),
        (of.workerid, "builds.workerid"),
        (of.changeid, "ch.changeid"),
        (of.parent_buildid, "bs.parent_buildid"),
    ] {
        if let Some(id) = value {
            listing = listing.when(column, Bind::Int(id));
        }
    }
    listing
}

pub async fn build(db: &Db, buildid: i64, query: &Query) -> DbResult<Option<Value>> {
    let sql = format!("SELECT {BUILD_SELECT} FROM builds WHERE builds.id = $1");
    let Some(row) = sqlx::query(&sql)
        .bind(buildid)
        .fetch_optional(&db.pool)
        .await?
    else {
        return Ok(None);
    };
    let mut items = vec![build_json(&row)?];
    if !query.properties.is_empty() {
        add_build_properties(db, query, &mut items).await?;
    }
    Ok(items.pop())
}

/// The properties of builds, `name -> [value, source]`, by build id, in one query.
pub async fn build_properties(
    db: &Db,
    buildids: &[i64],
) -> DbResult<Vec<(i64, Map<String, Value>)>> {
    if buildids.is_empty() {
        return Ok(Vec::new());
    }
    let (placeholders, binds) = id_list(buildids);
    let sql = format!(
        "SELECT buildid, name, value, source FROM build_properties \
         WHERE buildid IN ({placeholders}) ORDER BY buildid, name"
    );
    let rows = bind_all(sqlx::query(&sql), &binds)
        .fetch_all(&db.pool)
        .await?;
    let mut by_build: Vec<(i64, Map<String, Value>)> = Vec::new();
    for row in rows {
        let buildid: i64 = row.try_get(0)?;
        let value: String = row.try_get(2)?;
        let value = serde_json::from_str(&value).unwrap_or(Value::String(value));
        let pair = json!([value, row.try_get::<String, _>(3)?]);
        match by_build.last_mut() {
            Some((id, map)) if *id == buildid => {
                map.insert(row.try_get(1)?, pair);
            }
            _ => {
                let mut map = Map::new();
                map.insert(row.try_get(1)?, pair);
                by_build.push((buildid, map));
            }
        }
    }
    Ok(by_build)
}

/// Fills `properties` of each build with those `property=` asked for.
async fn add_build_properties(db: &Db, query: &Query, items: &mut [Value]) -> DbResult<()> {
    let ids: Vec<i64> = items.iter().filter_map(|i| i["buildid"].as_i64()).collect();
    let mut all = build_properties(db, &ids).await?;
    for item in items {
        let id = item["buildid"].as_i64();
        if let Some(position) = all.iter().position(|(b, _)| Some(*b) == id) {
            let (_, properties) = all.swap_remove(position);
            item["properties"] = Value::Object(wanted_properties(query, properties));
        }
    }
    Ok(())
}

/// The sourcestamps each build was made from (`{ssid, branch, revision, repository,
/// project, codebase}`), by build id, in one query: the pages that arrange builds by
/// revision (console, grid) read them for a page of builds at once.
pub async fn build_sourcestamps(db: &Db, buildids: &[i64]) -> DbResult<Vec<(i64, Vec<Value>)>> {
    if buildids.is_empty() {
        return Ok(Vec::new());
    }
    let (placeholders, binds) = id_list(buildids);
    let sql = format!(
        "SELECT builds.id, ss.id, ss.branch, ss.revision, ss.repository, ss.project, ss.codebase \
         FROM builds JOIN buildrequests br ON br.id = builds.buildrequestid \
         JOIN buildset_sourcestamps bss ON bss.buildsetid = br.buildsetid \
         JOIN sourcestamps ss ON ss.id = bss.sourcestampid \
         WHERE builds.id IN ({placeholders}) ORDER BY builds.id, ss.codebase, ss.id"
    );
    let rows = bind_all(sqlx::query(&sql), &binds)
        .fetch_all(&db.pool)
        .await?;
    let mut by_build: Vec<(i64, Vec<Value>)> = Vec::new();
    for row in rows {
        let buildid: i64 = row.try_get(0)?;
        let stamp = json!({
            "ssid": row.try_get::<i64, _>(1)?,
            "branch": row.try_get::<Option<String>, _>(2)?,
            "revision": row.try_get::<Option<String>, _>(3)?,
            "repository": row.try_get::<String, _>(4)?,
            "project": row.try_get::<String, _>(5)?,
            "codebase": row.try_get::<String, _>(6)?,
        });
        match by_build.last_mut() {
            Some((id, stamps)) if *id == buildid => stamps.push(stamp),
            _ => by_build.push((buildid, vec![stamp])),
        }
    }
    Ok(by_build)
}

/// The joins from a build to its sourcestamps, and a sourcestamp's `(branch, revision)` with
/// no revision or branch read as `''`, so that builds of the branch's latest group together.
const BUILD_SOURCESTAMPS: &str = "builds JOIN buildrequests br ON br.id = builds.buildrequestid \
     JOIN buildset_sourcestamps bss ON bss.buildsetid = br.buildsetid \
     JOIN sourcestamps ss ON ss.id = bss.sourcestampid";

/// The builds of a builder made from a revision, oldest first.
pub async fn builds_of_revision(db: &Db, builderid: i64, revision: &str) -> DbResult<Vec<i64>> {
    let sql = format!(
        "SELECT builds.id FROM {BUILD_SOURCESTAMPS} \
         WHERE builds.builderid = $1 AND ss.revision = $2 ORDER BY builds.id"
    );
    let rows = sqlx::query(&sql)
        .bind(builderid)
        .bind(revision)
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}

// ---- steps ---------------------------------------------------------------------------

const STEP_SELECT: &str = "steps.id, steps.number, steps.name, steps.buildid, steps.started_at, \
     steps.complete_at, steps.state_string, steps.results, steps.urls, steps.hidden";

const STEP_COLUMNS: &[(&str, &str)] = &[
    ("stepid", "steps.id"),
    ("number", "steps.number"),
    ("name", "steps.name"),
    ("buildid", "steps.buildid"),
    ("started_at", "CAST(steps.started_at AS BIGINT)"),
    (
        "complete",
        "(CASE WHEN steps.complete_at IS NULL THEN 0 ELSE 1 END)",
    ),
    ("complete_at", "CAST(steps.complete_at AS BIGINT)"),
    ("results", "steps.results"),
    ("state_string", "steps.state_string"),
    ("hidden", "steps.hidden"),
];

fn step_json(row: &AnyRow) -> DbResult<Value> {
    let started_at = opt_time(row, 4)?;
    let complete_at = opt_time(row, 5)?;
    let urls: String = row.try_get(8)?;
    Ok(json!({
        "stepid": row.try_get::<i64, _>(0)?,
        "number": row.try_get::<i64, _>(1)?,
        "name": row.try_get::<String, _>(2)?,
        "buildid": row.try_get::<i64, _>(3)?,
        // Steps take their locks as they start: the engine has no step locks to wait for.
        "locks_acquired_at": started_at,
        "started_at": started_at,
        "complete": !complete_at.is_null(),
        "complete_at": complete_at,
        "state_string": row.try_get::<String, _>(6)?,
        "results": opt_int(row, 7)?,
        "urls": serde_json::from_str::<Value>(&urls).unwrap_or_else(|_| json!([])),
        "hidden": flag(row, 9)?,
    }))
}

/// A step as [`step_json`] makes it, made by the database.
const STEP_ITEM: &[(&str, J)] = &[
    ("stepid", J::Plain("steps.id")),
    ("number", J::Plain("steps.number")),
    ("name", J::Plain("steps.name")),
    ("buildid", J::Plain("steps.buildid")),
    ("locks_acquired_at", J::Seconds("steps.started_at")),
    ("started_at", J::Seconds("steps.started_at")),
    ("complete", J::Flag("steps.complete_at IS NOT NULL")),
    ("complete_at", J::Seconds("steps.complete_at")),
    ("state_string", J::Plain("steps.state_string")),
    ("results", J::Plain("steps.results")),
    ("urls", J::Json("steps.urls")),
    ("hidden", J::Flag("steps.hidden <> 0")),
];

fn steps_listing(buildid: i64) -> Listing<'static> {
    Listing::new(STEP_SELECT, "steps", STEP_COLUMNS, "steps.number")
        .when("steps.buildid", Bind::Int(buildid))
}

/// The steps of a build, read into values.
pub async fn steps(db: &Db, buildid: i64, query: &Query) -> DbResult<Page> {
    let (rows, counted, rest) = steps_listing(buildid).fetch(db, query).await?;
    let items = rows.iter().map(step_json).collect::<DbResult<Vec<_>>>()?;
    Ok(projected(query, rest.page(items, counted)))
}

/// The same page as [`steps`], written as JSON by the database; `None` when it cannot be.
pub async fn steps_json(db: &Db, buildid: i64, query: &Query) -> DbResult<Option<JsonPage>> {
    steps_listing(buildid)
        .fetch_json(db, query, STEP_ITEM)
        .await
}

pub async fn step(db: &Db, stepid: i64) -> DbResult<Option<Value>> {
    let sql = format!("SELECT {STEP_SELECT} FROM steps WHERE steps.id = $1");
    let row = sqlx::query(&sql)
        .bind(stepid)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(step_json).transpose()
}

// ---- logs ----------------------------------------------------------------------------

const LOG_SELECT: &str =
    "logs.id, logs.name, logs.slug, logs.stepid, logs.complete, logs.num_lines, logs.type";

const LOG_COLUMNS: &[(&str, &str)] = &[
    ("logid", "logs.id"),
    ("name", "logs.name"),
    ("slug", "logs.slug"),
    ("stepid", "logs.stepid"),
    ("complete", "logs.complete"),
    ("num_lines", "logs.num_lines"),
    ("type", "logs.type"),
];

fn log_json(row: &AnyRow) -> DbResult<Value> {
    Ok(json!({
        "logid": row.try_get::<i64, _>(0)?,
        "name": row.try_get::<String, _>(1)?,
        "slug": row.try_get::<String, _>(2)?,
        "stepid": row.try_get::<i64, _>(3)?,
        "complete": flag(row, 4)?,
        "num_lines": row.try_get::<i64, _>(5)?,
        "type": row.try_get::<String, _>(6)?,
    }))
}

/// The logs of a step.
pub async fn logs(db: &Db, stepid: i64, query: &Query) -> DbResult<Page> {
    let listing = Listing::new(LOG_SELECT, "logs", LOG_COLUMNS, "logs.id")
        .when("logs.stepid", Bind::Int(stepid));
    let (rows, counted, rest) = listing.fetch(db, query).await?;
    let items = rows.iter().map(log_json).collect::<DbResult<Vec<_>>>()?;
    Ok(projected(query, rest.page(items, counted)))
}

pub async fn log(db: &Db, logid: i64) -> DbResult<Option<Value>> {
    let sql = format!("SELECT {LOG_SELECT} FROM logs WHERE logs.id = $1");
    let row = sqlx::query(&sql)
        .bind(logid)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(log_json).transpose()
}

/// Lines `offset ..` (at most `limit`) of a log as Buildbot's logchunk: `{logid, firstline,
/// content}`, the content as stored (stdio lines keep their channel letter). `None` for a
/// range outside the log, as Buildbot answers.
pub async fn log_contents(
    db: &Db,
    logid: i64,
    offset: Option<i64>,
    limit: Option<i64>,
) -> DbResult<Option<Value>> {
    let first = offset.unwrap_or(0);
    let last = match limit {
        Some(limit) => first + limit - 1,
        None => {
            let lines: Option<i64> = sqlx::query_scalar("SELECT num_lines FROM logs WHERE id = $1")
                .bind(logid)
                .fetch_optional(&db.pool)
                .await?;
            let Some(lines) = lines else {
                return Ok(None);
            };
            (lines - 1).max(0)
        }
    };
    if first < 0 || last < 0 || first > last {
        return Ok(None);
    }
    let content = db.log_lines(logid, first, last).await?;
    Ok(Some(
        json!({"logid": logid, "firstline": first, "content": content}),
    ))
}

/// What `/raw` serves of a log: where it comes from (for the file name and the header of a
/// stdio log) and its type.
#[derive(Clone, Debug, PartialEq)]
pub struct RawLog {
    pub logid: i64,
    /// `s` stdio, `t` text, `h` html.
    pub log_type: String,
    pub num_lines: i64,
    /// `BUILDER_build_N_step_STEP_log_SLUG`, Buildbot's download name.
    pub filename: String,
    /// `Builder: B\nBuild number: N\nWorker name: W\n` before a stdio log.
    pub header: String,
}

pub async fn raw_log(db: &Db, logid: i64) -> DbResult<Option<RawLog>> {
    let row = sqlx::query(
        "SELECT logs.type, logs.num_lines, logs.slug, steps.name, builds.number, \
         builders.name, workers.name \
         FROM logs LEFT JOIN steps ON steps.id = logs.stepid \
         LEFT JOIN builds ON builds.id = steps.buildid \
         LEFT JOIN builders ON builders.id = builds.builderid \
         LEFT JOIN workers ON workers.id = builds.workerid WHERE logs.id = $1",
    )
    .bind(logid)
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let log_type: String = row.try_get(0)?;
    let slug: String = row.try_get(2)?;
    let step: Option<String> = row.try_get(3)?;
    let number: Option<i64> = row.try_get(4)?;
    let builder: Option<String> = row.try_get(5)?;
    let worker: Option<String> = row.try_get(6)?;
    let mut header = String::new();
    if log_type == "s" {
        if let Some(builder) = &builder {
            header.push_str(&format!("Builder: {builder}\n"));
        }
        if let Some(number) = number {
            header.push_str(&format!("Build number: {number}\n"));
        }
        if let Some(worker) = &worker {
            header.push_str(&format!("Worker name: {worker}\n"));
        }
    }
    let mut parts = Vec::new();
    parts.extend(builder);
    if let Some(number) = number {
        parts.extend(["build".to_string(), number.to_string()]);
    }
    if let Some(step) = step {
        parts.extend(["step".to_string(), step]);
    }
    parts.extend(["log".to_string(), slug]);
    Ok(Some(RawLog {
        logid,
        num_lines: row.try_get(1)?,
        filename: parts.join("_"),
        log_type,
        header,
    }))
}

/// Lines `first..=last` of a raw log: stdio lines lose their channel letter.
pub async fn raw_lines(db: &Db, log: &RawLog, first: i64, last: i64) -> DbResult<String> {
    let text = db.log_lines(log.logid, first, last).await?;
    if log.log_type != "s" {
        return Ok(text);
    }
    let mut raw = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut chars = line.chars();
        chars.next();
        raw.push_str(chars.as_str());
    }
    Ok(raw)
}

// ---- writes that announce themselves ------------------------------------------------
//
// As Buildbot's `data.updates`: each statement returns the row it changed, which becomes the
// event's message, so no read follows the write. On the engine's hot path every query is a
// round trip to a database thread.

/// A build just stored, with its row for the message of `new`, which its first write
/// announces (the write that stores its properties), and what it is built from, read in
/// the claim's round trip.
pub struct NewBuild {
    pub buildid: i64,
    pub number: i64,
    pub sourcestamps: Vec<SourceStamp>,
    pub buildset_properties: Properties,
    row: AnyRow,
}

/// What a claimed request becomes on a worker: `(builder, worker, master)` ids.
pub struct BuildOn {
    pub builderid: i64,
    pub workerid: i64,
    pub masterid: i64,
}

/// Claims pending request `request` and stores its build in the same write, one round
/// trip: the build only if the claim was this one; the request's buildset's sourcestamps
/// and properties are read in it too. Announces the request `claimed` with the row the
/// update returned, and answers the build; `None` when another claim got there first.
pub async fn claim_and_add_build(
    db: &Db,
    bus: &Bus,
    request: &PendingRequest,
    on: &BuildOn,
) -> DbResult<Option<NewBuild>> {
    db.expect_builds();
    let (brid, bsid) = (request.id, request.buildsetid);
    let claimed_at = now();
    let mut batch = Batch::new();
    batch
        .push(
            format!(
                "UPDATE buildrequests SET claimed_by_masterid = $1, claimed_at = $2 \
                 WHERE id = $3 AND claimed_by_masterid IS NULL AND complete = 0 \
                 RETURNING {BUILDREQUEST_SELECT}"
            ),
            vec![on.masterid.into(), claimed_at.into(), brid.into()],
        )
        .push(
            // Numbered after the builder's last build in the statement itself.
            format!(
                "INSERT INTO builds (number, builderid, buildrequestid, workerid, masterid, \
                 started_at, state_string) SELECT (SELECT COALESCE(MAX(number), 0) + 1 \
                 FROM builds WHERE builderid = $1), $1, $2, $3, $4, $5, 'starting' \
                 WHERE EXISTS (SELECT 1 FROM buildrequests WHERE id = $2 \
                 AND claimed_by_masterid = $4 AND claimed_at = $5) RETURNING {BUILD_SELECT}"
            ),
            vec![
                on.builderid.into(),
                brid.into(),
                on.workerid.into(),
                on.masterid.into(),
                claimed_at.into(),
            ],
        )
        .push(BUILDSET_SOURCESTAMPS, vec![bsid.into()])
        .push(BUILDSET_PROPERTIES, vec![bsid.into()]);
    let mut rows = batch.run(db).await?.into_iter();
    let (Some(mut claim), Some(mut build), Some(stamps), Some(properties)) =
        (rows.next(), rows.next(), rows.next(), rows.next())
    else {
        return Ok(None);
    };
    let (Some(request), Some(build)) = (claim.pop(), build.pop()) else {
        return Ok(None);
    };
    announce_with(bus, Resource::BuildRequest(brid), "claimed", || {
        buildrequest_json(&request)
    })?;
    Ok(Some(NewBuild {
        buildid: build.try_get(0)?,
        number: build.try_get(1)?,
        sourcestamps: db.sourcestamps_of(stamps).await?,
        buildset_properties: properties_of(&properties)?,
        row: build,
    }))
}

/// Writes of a running build that wait for its next write and go in that write's round
/// trip: its announcement `new` (made once its properties are stored), the properties
/// set since the last write, and the end of the step that ran last. Nothing waits long:
/// the next step is added, or the build ends, right after a step.
#[derive(Default)]
pub struct Carried {
    new: Option<NewBuild>,
    properties: Properties,
    /// The last lines and the end of the logs of the step that ran last.
    log_ends: Vec<LogEnd>,
    step_end: Option<StepEnd>,
    /// A first log stored with its step that the step never opened (it failed before
    /// its command): never announced, it goes as if it had not been.
    unused_log: Option<i64>,
}

/// A log of a running step as its writer knows it: enough for its events, so nothing is
/// read back.
pub struct LogHead {
    pub logid: i64,
    pub stepid: i64,
    pub name: String,
    pub slug: String,
    /// Buildbot's type: `s` (stdio, each line prefixed by its channel) or `t`.
    pub stdio: bool,
}

impl LogHead {
    /// Publishes the log as it now is.
    pub fn announce(&self, bus: &Bus, event: &str, complete: bool, num_lines: i64) {
        let message = || {
            Ok(json!({
                "logid": self.logid,
                "name": self.name,
                "slug": self.slug,
                "stepid": self.stepid,
                "complete": complete,
                "num_lines": num_lines,
                "type": if self.stdio { "s" } else { "t" },
            }))
        };
        // Making the message cannot fail.
        let _ = announce_with(bus, Resource::Log(self.logid), event, message);
    }
}

/// A log whose step's command is over: its last lines (maybe none) and its end, to be
/// stored with the step's end.
pub struct LogEnd {
    pub head: LogHead,
    pub lines: String,
}

/// A step that ended, to be stored with the build's next write.
pub struct StepEnd {
    pub stepid: i64,
    pub results: BuildResult,
    pub state: String,
    pub hidden: bool,
}

impl Carried {
    /// The build's first write: `new` announced after it, with its `properties`.
    pub fn first(new: NewBuild, properties: Properties) -> Carried {
        Carried {
            new: Some(new),
            properties,
            ..Carried::default()
        }
    }

    pub fn drop_unused_log(&mut self, logid: i64) {
        self.unused_log = Some(logid);
    }

    pub fn set_properties(&mut self, changed: &Properties) {
        self.properties.update(changed);
    }

    pub fn end_logs(&mut self, ends: Vec<LogEnd>) {
        self.log_ends.extend(ends);
    }

    pub fn end_step(&mut self, end: StepEnd) {
        self.step_end = Some(end);
    }

    /// Pushes the carried writes onto `batch`, before the write that carries them;
    /// answers what to announce once it committed.
    fn push(self, batch: &mut Batch, buildid: i64) -> DbResult<CarriedAnnouncements> {
        push_build_properties(batch, buildid, &self.properties);
        if let Some(logid) = self.unused_log {
            batch.push("DELETE FROM logs WHERE id = $1", vec![logid.into()]);
        }
        let mut log_ends = Vec::with_capacity(self.log_ends.len());
        for end in self.log_ends {
            let index = push_log_write(batch, end.head.logid, &end.lines, true)?;
            log_ends.push((end.head, !end.lines.is_empty(), index));
        }
        let step_end = self.step_end.map(|end| {
            batch.push(
                format!(
                    "UPDATE steps SET complete_at = $1, results = $2, state_string = $3, \
                     hidden = $4 WHERE id = $5 RETURNING {STEP_SELECT}"
                ),
                vec![
                    now().into(),
                    end.results.code().into(),
                    end.state.into(),
                    (end.hidden as i64).into(),
                    end.stepid.into(),
                ],
            );
            (end.stepid, batch.len() - 1)
        });
        Ok(CarriedAnnouncements {
            new: self.new,
            log_ends,
            step_end,
        })
    }
}

/// What carried writes announce once they are committed.
struct CarriedAnnouncements {
    new: Option<NewBuild>,
    /// Each log that ended, whether lines were added to it, and the index of the statement
    /// whose row holds its line count.
    log_ends: Vec<(LogHead, bool, usize)>,
    /// The step that ended and the index of its statement's rows.
    step_end: Option<(i64, usize)>,
}

impl CarriedAnnouncements {
    /// The build `new`, the logs' last `append` and `finished`, then the step `finished`,
    /// before what the carrying write announces.
    fn announce(self, bus: &Bus, rows: &[Vec<AnyRow>]) -> DbResult<()> {
        if let Some(new) = self.new {
            announce_with(bus, Resource::Build(new.buildid), "new", || {
                build_json(&new.row)
            })?;
        }
        for (head, appended, index) in self.log_ends {
            let num_lines: i64 = rows[index]
                .first()
                .ok_or_else(|| DbError::NotFound(format!("log {}", head.logid)))?
                .try_get(0)?;
            if appended {
                head.announce(bus, "append", false, num_lines);
            }
            head.announce(bus, "finished", true, num_lines);
        }
        if let Some((stepid, index)) = self.step_end {
            let row = rows[index]
                .first()
                .ok_or_else(|| DbError::NotFound(format!("step {stepid}")))?;
            announce_with(bus, Resource::Step(stepid), "finished", || step_json(row))?;
        }
        Ok(())
    }
}

/// A step about to be added to a running build.
pub struct NewStep<'a> {
    pub buildid: i64,
    pub number: i64,
    pub name: &'a str,
    /// The build's `state_string` while the step runs.
    pub build_state: &'a str,
    /// The step's description when it starts at once (nothing to ask first, such as a
    /// `doStepIf` function): it is stored started, announced `new` then `started`.
    pub started: Option<&'a str>,
    /// The stdio log the step opens first (a shell step's `stdio`), stored with it and
    /// announced when the step opens it.
    pub first_log: Option<&'a str>,
}

/// A step just added: its id, and the id of its first log when it was stored with it.
pub struct AddedStep {
    pub stepid: i64,
    pub first_log: Option<i64>,
}

/// Adds a step (with its first log), with the build's new state and the writes `carried`
/// in the same write, and announces it as `new` (and `started` if it started).
pub async fn add_step(
    db: &Db,
    bus: &Bus,
    step: &NewStep<'_>,
    carried: Carried,
) -> DbResult<AddedStep> {
    let mut params: Vec<Bind> = vec![
        step.number.into(),
        step.name.into(),
        step.buildid.into(),
        step.started.unwrap_or("pending").into(),
    ];
    let started_at = match step.started {
        Some(_) => {
            params.push(now().into());
            "$5"
        }
        None => "NULL",
    };
    let mut batch = Batch::new();
    let carried = carried.push(&mut batch, step.buildid)?;
    batch
        .push(
            "UPDATE builds SET state_string = $1 WHERE id = $2",
            vec![step.build_state.into(), step.buildid.into()],
        )
        .push(
            format!(
                "INSERT INTO steps (number, name, buildid, state_string, started_at) \
                 VALUES ($1, $2, $3, $4, {started_at}) RETURNING {STEP_SELECT}"
            ),
            params,
        );
    let step_index = batch.len() - 1;
    if let Some(name) = step.first_log {
        batch.push(
            format!(
                "INSERT INTO logs (name, slug, stepid, complete, num_lines, type) \
                 VALUES ($1, $2, {}, 0, 0, 's') RETURNING id",
                db.inserted_id("steps")
            ),
            vec![name.into(), crate::model::LogInfo::slug_of(name).into()],
        );
    }
    let rows = batch.run(db).await?;
    carried.announce(bus, &rows)?;
    let row = rows[step_index]
        .first()
        .ok_or_else(|| DbError::NotFound(format!("the new step of build {}", step.buildid)))?;
    let stepid = row.try_get(0)?;
    let first_log = match step.first_log {
        Some(_) => Some(
            rows[step_index + 1]
                .first()
                .ok_or_else(|| DbError::NotFound(format!("the first log of step {stepid}")))?
                .try_get(0)?,
        ),
        None => None,
    };
    if step.started.is_some() {
        announce_with(bus, Resource::Step(stepid), "new", || {
            let mut pending = step_json(row)?;
            for field in ["started_at", "locks_acquired_at"] {
                pending[field] = Value::Null;
            }
            pending["state_string"] = Value::from("pending");
            Ok(pending)
        })?;
        announce_with(bus, Resource::Step(stepid), "started", || step_json(row))?;
    } else {
        announce_with(bus, Resource::Step(stepid), "new", || step_json(row))?;
    }
    Ok(AddedStep { stepid, first_log })
}

/// Marks a step started and announces it.
pub async fn start_step(db: &Db, bus: &Bus, stepid: i64, state: &str) -> DbResult<()> {
    let sql = format!(
        "UPDATE steps SET started_at = $1, state_string = $2 WHERE id = $3 RETURNING {STEP_SELECT}"
    );
    let row = sqlx::query(&sql)
        .bind(now())
        .bind(state)
        .bind(stepid)
        .fetch_one(&db.pool)
        .await?;
    announce_with(bus, Resource::Step(stepid), "started", || step_json(&row))
}

/// Marks a build finished, with the writes `carried`, and announces it.
pub async fn finish_build(
    db: &Db,
    bus: &Bus,
    buildid: i64,
    (results, state): (BuildResult, &str),
    carried: Carried,
) -> DbResult<()> {
    let mut batch = Batch::new();
    let carried = carried.push(&mut batch, buildid)?;
    batch.push(
        format!(
            "UPDATE builds SET complete_at = $1, results = $2, state_string = $3 WHERE id = $4 \
             RETURNING {BUILD_SELECT}"
        ),
        vec![
            now().into(),
            results.code().into(),
            state.into(),
            buildid.into(),
        ],
    );
    let rows = batch.run(db).await?;
    carried.announce(bus, &rows)?;
    if let Some(build) = rows.last().and_then(|rows| rows.first()) {
        announce_with(bus, Resource::Build(buildid), "finished", || {
            build_json(build)
        })?;
    }
    Ok(())
}

/// Marks a build finished, with the writes `carried`, and in the same write completes its
/// request `brid` and the request's buildset `bsid` when no other request of it is
/// pending; announces the build `finished`, then the request and the buildset `complete`,
/// as the separate writes did.
pub async fn finish_build_and_request(
    db: &Db,
    bus: &Bus,
    buildid: i64,
    (results, state): (BuildResult, &str),
    (brid, bsid): (i64, i64),
    carried: Carried,
) -> DbResult<()> {
    let now = now();
    let code = results.code();
    let mut batch = Batch::new();
    let carried = carried.push(&mut batch, buildid)?;
    let first = batch.len();
    batch
        .push(
            format!(
                "UPDATE builds SET complete_at = $1, results = $2, state_string = $3 \
                 WHERE id = $4 RETURNING {BUILD_SELECT}"
            ),
            vec![now.into(), code.into(), state.into(), buildid.into()],
        )
        .push(
            format!(
                "UPDATE buildrequests SET complete = 1, results = $1, complete_at = $2 \
                 WHERE id = $3 AND complete = 0 RETURNING {BUILDREQUEST_SELECT}"
            ),
            vec![code.into(), now.into(), brid.into()],
        )
        .push(complete_buildset_sql(), vec![now.into(), bsid.into()]);
    let rows = batch.run(db).await?;
    carried.announce(bus, &rows)?;
    let rows = &rows[first..];
    if let Some(build) = rows[0].first() {
        announce_with(bus, Resource::Build(buildid), "finished", || {
            build_json(build)
        })?;
    }
    if let Some(request) = rows[1].first() {
        announce_with(bus, Resource::BuildRequest(brid), "complete", || {
            buildrequest_json(request)
        })?;
    }
    if let Some(buildset) = rows[2].first() {
        announce_complete_buildset(db, bus, bsid, buildset).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stores a request of builder 1, already claimed by master `claimed_by` if given, then
    /// claims it for master `masterid` and answers the build, if the claim was won.
    async fn claimed_build(
        db: &Db,
        bus: &Bus,
        claimed_by: Option<i64>,
        masterid: i64,
    ) -> Option<NewBuild> {
        let brid: i64 = sqlx::query_scalar(
            "INSERT INTO buildrequests (buildsetid, builderid, submitted_at, claimed_by_masterid) \
             VALUES (1, 1, 0, $1) RETURNING id",
        )
        .bind(claimed_by)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        let on = BuildOn {
            builderid: 1,
            workerid: 1,
            masterid,
        };
        let request = PendingRequest {
            id: brid,
            buildsetid: 1,
            priority: 0,
            submitted_at: 0.0,
        };
        claim_and_add_build(db, bus, &request, &on).await.unwrap()
    }

    #[tokio::test]
    async fn a_request_another_master_claimed_first_gets_no_build_and_no_event() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap();
        let bus = Bus::new(16);
        let mut events = bus.subscribe();
        let first = claimed_build(&db, &bus, None, 1).await.unwrap();
        assert_eq!((first.buildid, first.number), (1, 1));
        assert_eq!(
            events.try_recv().unwrap().key,
            "buildsets/1/builders/1/buildrequests/1/claimed"
        );
        let mut events = bus.subscribe();
        assert!(claimed_build(&db, &bus, Some(3), 2).await.is_none());
        assert!(events.try_recv().is_err());
        let builds: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM builds")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(builds, 1);
        let second = claimed_build(&db, &bus, None, 1).await.unwrap();
        assert_eq!(second.number, 2, "numbered after the builder's last build");
    }

    #[tokio::test]
    async fn a_step_stored_started_is_announced_new_as_pending_then_started() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap();
        let bus = Bus::new(16);
        let build = claimed_build(&db, &bus, None, 1).await.unwrap();
        let mut events = bus.subscribe();
        let new_step = NewStep {
            buildid: build.buildid,
            number: 0,
            name: "compile",
            build_state: "running compile",
            started: Some("compiling"),
            first_log: Some("stdio"),
        };
        let added = add_step(&db, &bus, &new_step, Carried::default())
            .await
            .unwrap();
        let stepid = added.stepid;
        let logs: Vec<(i64, String, i64)> =
            sqlx::query_as("SELECT id, slug, stepid FROM logs ORDER BY id")
                .fetch_all(&db.pool)
                .await
                .unwrap();
        let first_log = added.first_log.expect("stored with the step");
        assert_eq!(logs, [(first_log, "stdio".to_string(), stepid)]);
        let mut seen = Vec::new();
        while let Ok(event) = events.try_recv() {
            seen.push(event);
        }
        let keys: Vec<&str> = seen.iter().map(|e| e.key.as_str()).collect();
        let path = format!("builds/{}/steps/{stepid}", build.buildid);
        assert_eq!(
            keys,
            [
                format!("{path}/new"),
                format!("steps/{stepid}/new"),
                format!("{path}/started"),
                format!("steps/{stepid}/started"),
            ]
        );
        assert_eq!(seen[0].message["state_string"], "pending");
        assert_eq!(seen[0].message["started_at"], Value::Null);
        assert_eq!(seen[2].message["state_string"], "compiling");
        assert!(seen[2].message["started_at"].as_i64().unwrap() > 0);
        let stored = step(&db, stepid).await.unwrap().unwrap();
        assert_eq!(stored, seen[2].message);
        let state: String = sqlx::query_scalar("SELECT state_string FROM builds WHERE id = $1")
            .bind(build.buildid)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(state, "running compile");
    }
}
