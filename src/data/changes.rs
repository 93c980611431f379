//! Changes, sourcestamps, buildsets and build requests: what is asked to be built.

use serde_json::{json, Map, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::query::{
    bind_all, id_list, wanted_properties, Bind, Entity, FieldType as F, Listing, Page, Query,
};
use super::{announce, announce_with, flag, opt_int, opt_time, projected, time, Resource};
use crate::bus::Bus;
use crate::db::{now, Db, DbResult, StoredChange};
use crate::model::{BuildResult, Change};

pub const SOURCESTAMP: Entity = Entity {
    name: "sourcestamp",
    plural: "sourcestamps",
    fields: &[
        ("ssid", F::Integer),
        ("revision", F::String),
        ("branch", F::String),
        ("repository", F::String),
        ("project", F::String),
        ("codebase", F::String),
        ("patch", F::Object),
        ("created_at", F::DateTime),
    ],
};

pub const CHANGE: Entity = Entity {
    name: "change",
    plural: "changes",
    fields: &[
        ("changeid", F::Integer),
        ("parent_changeids", F::IntegerList),
        ("author", F::String),
        ("committer", F::String),
        ("files", F::StringList),
        ("comments", F::String),
        ("revision", F::String),
        ("when_timestamp", F::Integer),
        ("branch", F::String),
        ("category", F::String),
        ("revlink", F::String),
        ("properties", F::Object),
        ("repository", F::String),
        ("project", F::String),
        ("codebase", F::String),
        ("sourcestamp", F::Object),
    ],
};

pub const BUILDSET: Entity = Entity {
    name: "buildset",
    plural: "buildsets",
    fields: &[
        ("bsid", F::Integer),
        ("external_idstring", F::String),
        ("reason", F::String),
        ("rebuilt_buildid", F::Integer),
        ("submitted_at", F::Integer),
        ("complete", F::Boolean),
        ("complete_at", F::Integer),
        ("results", F::Integer),
        ("sourcestamps", F::Object),
        ("parent_buildid", F::Integer),
        ("parent_relationship", F::String),
    ],
};

pub const BUILDREQUEST: Entity = Entity {
    name: "buildrequest",
    plural: "buildrequests",
    fields: &[
        ("buildrequestid", F::Integer),
        ("buildsetid", F::Integer),
        ("builderid", F::Integer),
        ("priority", F::Integer),
        ("claimed", F::Boolean),
        ("claimed_at", F::DateTime),
        ("claimed_by_masterid", F::Integer),
        ("complete", F::Boolean),
        ("results", F::Integer),
        ("submitted_at", F::DateTime),
        ("complete_at", F::DateTime),
        ("waited_for", F::Boolean),
        ("properties", F::Object),
    ],
};

// ---- sourcestamps ----------------------------------------------------------------------

/// The sourcestamp columns (with its patch, 13 in all), as `sourcestamp_json` reads them.
const SS_SELECT: &str = "ss.id, ss.branch, ss.revision, ss.project, ss.repository, ss.codebase, \
     ss.created_at, p.id, p.patchlevel, p.subdir, p.author, p.comment, p.patch";
const SS_FROM: &str = "sourcestamps ss LEFT JOIN patches p ON p.id = ss.patchid";

const SS_COLUMNS: &[(&str, &str)] = &[
    ("ssid", "ss.id"),
    ("branch", "ss.branch"),
    ("revision", "ss.revision"),
    ("project", "ss.project"),
    ("repository", "ss.repository"),
    ("codebase", "ss.codebase"),
    ("created_at", "CAST(ss.created_at AS BIGINT)"),
];

/// A sourcestamp from the row's columns `at..at + SS_WIDTH`.
fn sourcestamp_json(row: &AnyRow, at: usize) -> DbResult<Value> {
    let patch = match opt_int(row, at + 7)? {
        Value::Null => Value::Null,
        patchid => {
            let body: Vec<u8> = row.try_get(at + 12)?;
            json!({
                "patchid": patchid,
                "level": row.try_get::<i64, _>(at + 8)?,
                "subdir": row.try_get::<Option<String>, _>(at + 9)?,
                "author": row.try_get::<Option<String>, _>(at + 10)?,
                "comment": row.try_get::<Option<String>, _>(at + 11)?,
                "body": String::from_utf8_lossy(&body),
            })
        }
    };
    Ok(json!({
        "ssid": row.try_get::<i64, _>(at)?,
        "branch": row.try_get::<Option<String>, _>(at + 1)?,
        "revision": row.try_get::<Option<String>, _>(at + 2)?,
        "project": row.try_get::<String, _>(at + 3)?,
        "repository": row.try_get::<String, _>(at + 4)?,
        "codebase": row.try_get::<String, _>(at + 5)?,
        "created_at": time(row, at + 6)?,
        "patch": patch,
    }))
}

/// All sourcestamps, or those of a buildset.
pub async fn sourcestamps(db: &Db, buildsetid: Option<i64>, query: &Query) -> DbResult<Page> {
    let listing = match buildsetid {
        Some(bsid) => Listing::new(
            SS_SELECT,
            "sourcestamps ss LEFT JOIN patches p ON p.id = ss.patchid \
             JOIN buildset_sourcestamps bss ON bss.sourcestampid = ss.id",
            SS_COLUMNS,
            "ss.id",
        )
        .when("bss.buildsetid", Bind::Int(bsid)),
        None => Listing::new(SS_SELECT, SS_FROM, SS_COLUMNS, "ss.id"),
    };
    let (rows, counted, rest) = listing.fetch(db, query).await?;
    let items = rows
        .iter()
        .map(|row| sourcestamp_json(row, 0))
        .collect::<DbResult<Vec<_>>>()?;
    Ok(projected(query, rest.page(items, counted)))
}

pub async fn sourcestamp(db: &Db, ssid: i64) -> DbResult<Option<Value>> {
    let sql = format!("SELECT {SS_SELECT} FROM {SS_FROM} WHERE ss.id = $1");
    let row = sqlx::query(&sql)
        .bind(ssid)
        .fetch_optional(&db.pool)
        .await?;
    row.map(|row| sourcestamp_json(&row, 0)).transpose()
}

// ---- changes ---------------------------------------------------------------------------

const CHANGE_COLUMNS: &[(&str, &str)] = &[
    ("changeid", "changes.changeid"),
    ("author", "changes.author"),
    ("committer", "changes.committer"),
    ("comments", "changes.comments"),
    ("branch", "changes.branch"),
    ("revision", "changes.revision"),
    ("revlink", "changes.revlink"),
    ("when_timestamp", "CAST(changes.when_timestamp AS BIGINT)"),
    ("category", "changes.category"),
    ("repository", "changes.repository"),
    ("codebase", "changes.codebase"),
    ("project", "changes.project"),
];

fn change_select() -> String {
    format!(
        "changes.changeid, changes.author, changes.committer, changes.comments, \
         changes.branch, changes.revision, changes.revlink, changes.when_timestamp, \
         changes.category, changes.repository, changes.codebase, changes.project, \
         changes.files, changes.properties, changes.parent_changeid, {SS_SELECT}"
    )
}

const CHANGE_FROM: &str = "changes JOIN sourcestamps ss ON ss.id = changes.sourcestampid \
     LEFT JOIN patches p ON p.id = ss.patchid";

fn change_json(row: &AnyRow) -> DbResult<Value> {
    let files: String = row.try_get(12)?;
    let properties: String = row.try_get(13)?;
    let parents: Vec<i64> = row.try_get::<Option<i64>, _>(14)?.into_iter().collect();
    Ok(json!({
        "changeid": row.try_get::<i64, _>(0)?,
        "author": row.try_get::<String, _>(1)?,
        "committer": row.try_get::<Option<String>, _>(2)?,
        "comments": row.try_get::<String, _>(3)?,
        "branch": row.try_get::<Option<String>, _>(4)?,
        "revision": row.try_get::<Option<String>, _>(5)?,
        "revlink": row.try_get::<Option<String>, _>(6)?,
        "when_timestamp": time(row, 7)?,
        "category": row.try_get::<Option<String>, _>(8)?,
        "repository": row.try_get::<String, _>(9)?,
        "codebase": row.try_get::<String, _>(10)?,
        "project": row.try_get::<String, _>(11)?,
        "files": serde_json::from_str::<Value>(&files).unwrap_or_else(|_| json!([])),
        "properties": serde_json::from_str::<Value>(&properties).unwrap_or_else(|_| json!({})),
        "parent_changeids": parents,
        "sourcestamp": sourcestamp_json(row, 15)?,
    }))
}

/// Which changes a collection URL names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChangesOf {
    /// The changes a build was made of: those of its buildset's sourcestamps.
    pub buildid: Option<i64>,
    /// The change that made a sourcestamp.
    pub ssid: Option<i64>,
}

pub async fn changes(db: &Db, of: &ChangesOf, query: &Query) -> DbResult<Page> {
    let select = change_select();
    let from = match of.buildid {
        Some(_) => format!(
            "{CHANGE_FROM} JOIN buildset_sourcestamps bss ON bss.sourcestampid = ss.id \
             JOIN buildrequests br ON br.buildsetid = bss.buildsetid \
             JOIN builds b ON b.buildrequestid = br.id"
        ),
        None => CHANGE_FROM.to_string(),
    };
    let mut listing = Listing::new(&select, &from, CHANGE_COLUMNS, "changes.changeid");
    if let Some(buildid) = of.buildid {
        listing = listing.when("b.id", Bind::Int(buildid));
    }
    if let Some(ssid) = of.ssid {
        listing = listing.when("changes.sourcestampid", Bind::Int(ssid));
    }
    let (rows, counted, rest) = listing.fetch(db, query).await?;
    let items = rows.iter().map(change_json).collect::<DbResult<Vec<_>>>()?;
    Ok(projected(query, rest.page(items, counted)))
}

pub async fn change(db: &Db, changeid: i64) -> DbResult<Option<Value>> {
    let sql = format!(
        "SELECT {} FROM {CHANGE_FROM} WHERE changes.changeid = $1",
        change_select()
    );
    let row = sqlx::query(&sql)
        .bind(changeid)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(change_json).transpose()
}

/// A change just stored, in the shape [`change`] reads it back: its announcement needs no
/// read after the write.
pub fn stored_change_json(stored: &StoredChange) -> Value {
    let spec = &stored.spec;
    let properties: Map<String, Value> = spec
        .properties
        .iter()
        .map(|(name, value, source)| (name.clone(), json!([value, source])))
        .collect();
    json!({
        "changeid": stored.changeid,
        "author": spec.author,
        "committer": spec.committer,
        "comments": spec.comments,
        "branch": spec.branch,
        "revision": spec.revision,
        "revlink": spec.revlink,
        "when_timestamp": stored.when as i64,
        "category": spec.category,
        "repository": spec.repository,
        "codebase": spec.codebase,
        "project": spec.project,
        "files": spec.files,
        "properties": properties,
        "parent_changeids": [],
        "sourcestamp": {
            "ssid": stored.sourcestampid,
            "branch": spec.branch,
            "revision": spec.revision,
            "project": spec.project,
            "repository": spec.repository,
            "codebase": spec.codebase,
            "created_at": stored.when as i64,
            "patch": null,
        },
    })
}

/// The change a `changes/N/new` message describes, with its sourcestamp's id, as
/// [`Db::change`] reads it; `None` when the message is not a change.
pub fn change_of(message: &Value) -> Option<(Change, i64)> {
    let text = |name: &str| message[name].as_str().map(str::to_string);
    let change = Change {
        number: message["changeid"].as_i64()?,
        who: text("author")?,
        revision: text("revision"),
        branch: text("branch"),
        when: message["when_timestamp"].as_i64()?,
        files: message["files"]
            .as_array()?
            .iter()
            .map(|file| file.as_str().map(str::to_string))
            .collect::<Option<_>>()?,
        comments: text("comments")?,
        repository: text("repository")?,
        project: text("project")?,
        codebase: text("codebase")?,
        category: text("category"),
        revlink: text("revlink"),
        properties: message["properties"]
            .as_object()?
            .iter()
            .map(|(name, pair)| (name.clone(), pair[0].clone()))
            .collect(),
    };
    Some((change, message["sourcestamp"]["ssid"].as_i64()?))
}

// ---- buildsets -------------------------------------------------------------------------

const BUILDSET_SELECT: &str = "buildsets.id, buildsets.external_idstring, buildsets.reason, \
     buildsets.submitted_at, buildsets.complete, buildsets.complete_at, buildsets.results, \
     buildsets.parent_buildid, buildsets.parent_relationship";

const BUILDSET_COLUMNS: &[(&str, &str)] = &[
    ("bsid", "buildsets.id"),
    ("external_idstring", "buildsets.external_idstring"),
    ("reason", "buildsets.reason"),
    ("submitted_at", "CAST(buildsets.submitted_at AS BIGINT)"),
    ("complete", "buildsets.complete"),
    ("complete_at", "CAST(buildsets.complete_at AS BIGINT)"),
    ("results", "buildsets.results"),
    ("parent_buildid", "buildsets.parent_buildid"),
    ("parent_relationship", "buildsets.parent_relationship"),
];

fn buildset_json(row: &AnyRow) -> DbResult<Value> {
    Ok(json!({
        "bsid": row.try_get::<i64, _>(0)?,
        "external_idstring": row.try_get::<Option<String>, _>(1)?,
        "reason": row.try_get::<String, _>(2)?,
        "submitted_at": time(row, 3)?,
        "complete": flag(row, 4)?,
        "complete_at": opt_time(row, 5)?,
        "results": opt_int(row, 6)?,
        "parent_buildid": opt_int(row, 7)?,
        "parent_relationship": row.try_get::<Option<String>, _>(8)?,
        // Rebuilds are recorded as new buildsets without a link back.
        "rebuilt_buildid": null,
        "sourcestamps": [],
    }))
}

/// Fills `sourcestamps` of each buildset, in one query.
async fn add_buildset_sourcestamps(db: &Db, items: &mut [Value]) -> DbResult<()> {
    let ids: Vec<i64> = items.iter().filter_map(|i| i["bsid"].as_i64()).collect();
    if ids.is_empty() {
        return Ok(());
    }
    let (placeholders, binds) = id_list(&ids);
    let sql = format!(
        "SELECT bss.buildsetid, {SS_SELECT} FROM buildset_sourcestamps bss \
         JOIN sourcestamps ss ON ss.id = bss.sourcestampid \
         LEFT JOIN patches p ON p.id = ss.patchid \
         WHERE bss.buildsetid IN ({placeholders}) ORDER BY ss.id"
    );
    let rows = bind_all(sqlx::query(&sql), &binds)
        .fetch_all(&db.pool)
        .await?;
    for row in rows {
        let bsid: i64 = row.try_get(0)?;
        let stamp = sourcestamp_json(&row, 1)?;
        if let Some(Value::Array(stamps)) = items
            .iter_mut()
            .find(|i| i["bsid"].as_i64() == Some(bsid))
            .map(|i| &mut i["sourcestamps"])
        {
            stamps.push(stamp);
        }
    }
    Ok(())
}

pub async fn buildsets(db: &Db, query: &Query) -> DbResult<Page> {
    let listing = Listing::new(
        BUILDSET_SELECT,
        "buildsets",
        BUILDSET_COLUMNS,
        "buildsets.id",
    );
    let (rows, counted, rest) = listing.fetch(db, query).await?;
    let items = rows
        .iter()
        .map(buildset_json)
        .collect::<DbResult<Vec<_>>>()?;
    let mut page = rest.page(items, counted);
    add_buildset_sourcestamps(db, &mut page.items).await?;
    Ok(projected(query, page))
}

pub async fn buildset(db: &Db, bsid: i64) -> DbResult<Option<Value>> {
    let sql = format!("SELECT {BUILDSET_SELECT} FROM buildsets WHERE buildsets.id = $1");
    let Some(row) = sqlx::query(&sql)
        .bind(bsid)
        .fetch_optional(&db.pool)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(buildset_with_sourcestamps(db, &row).await?))
}

/// One buildset row in its REST shape, its sourcestamps included.
async fn buildset_with_sourcestamps(db: &Db, row: &AnyRow) -> DbResult<Value> {
    let mut items = [buildset_json(row)?];
    add_buildset_sourcestamps(db, &mut items).await?;
    let [item] = items;
    Ok(item)
}

/// Completes buildset `$2` at time `$1` once none of its requests is pending, with the
/// worst of their results in Buildbot's `worst_status` order (SKIPPED the mildest, no
/// result as SUCCESS: see `BuildResult::worst`), returning its row; no row while some
/// request is pending or if it was complete already. One statement, so that a build's end
/// can be one write.
pub(super) fn complete_buildset_sql() -> String {
    // Results ranked mildest first, then the worst rank back to its result.
    let rank = "CASE results WHEN 1 THEN 2 WHEN 2 THEN 3 WHEN 4 THEN 4 WHEN 5 THEN 5 \
                WHEN 6 THEN 6 ELSE 1 END";
    let worst = format!(
        "CASE MAX({rank}) WHEN 2 THEN 1 WHEN 3 THEN 2 WHEN 4 THEN 4 WHEN 5 THEN 5 \
         WHEN 6 THEN 6 ELSE 0 END"
    );
    format!(
        "UPDATE buildsets SET complete = 1, complete_at = $1, \
         results = (SELECT {worst} FROM buildrequests WHERE buildsetid = buildsets.id) \
         WHERE id = $2 AND complete = 0 AND NOT EXISTS \
         (SELECT 1 FROM buildrequests WHERE buildsetid = buildsets.id AND complete = 0) \
         RETURNING {BUILDSET_SELECT}"
    )
}

/// Completes buildset `bsid` once all its requests are complete, with the worst of their
/// results, and announces it `complete` with the row the update returned; `None` while
/// some are pending or if it was complete already.
pub async fn complete_buildset(db: &Db, bus: &Bus, bsid: i64) -> DbResult<Option<BuildResult>> {
    let Some(row) = sqlx::query(&complete_buildset_sql())
        .bind(now())
        .bind(bsid)
        .fetch_optional(&db.pool)
        .await?
    else {
        return Ok(None);
    };
    announce_complete_buildset(db, bus, bsid, &row)
        .await
        .map(Some)
}

/// Announces buildset `bsid` complete from the row [`complete_buildset_sql`] returned, and
/// answers its result. Its sourcestamps are read only when someone listens.
pub(super) async fn announce_complete_buildset(
    db: &Db,
    bus: &Bus,
    bsid: i64,
    row: &AnyRow,
) -> DbResult<BuildResult> {
    let results = row
        .try_get::<Option<i64>, _>(6)?
        .and_then(BuildResult::from_code)
        .unwrap_or(BuildResult::Success);
    let resource = Resource::Buildset(bsid);
    if bus.wants_any(resource.key_shapes(), "complete") {
        let message = buildset_with_sourcestamps(db, row).await?;
        announce(bus, resource, "complete", message);
    }
    Ok(results)
}

// ---- build requests --------------------------------------------------------------------

pub(super) const BUILDREQUEST_SELECT: &str = "buildrequests.id, buildrequests.buildsetid, \
     buildrequests.builderid, buildrequests.priority, buildrequests.claimed_at, \
     buildrequests.claimed_by_masterid, buildrequests.complete, buildrequests.results, \
     buildrequests.submitted_at, buildrequests.complete_at, buildrequests.waited_for";

const BUILDREQUEST_COLUMNS: &[(&str, &str)] = &[
    ("buildrequestid", "buildrequests.id"),
    ("buildsetid", "buildrequests.buildsetid"),
    ("builderid", "buildrequests.builderid"),
    ("priority", "buildrequests.priority"),
    (
        "claimed",
        "(CASE WHEN buildrequests.claimed_by_masterid IS NULL THEN 0 ELSE 1 END)",
    ),
    ("claimed_at", "CAST(buildrequests.claimed_at AS BIGINT)"),
    ("claimed_by_masterid", "buildrequests.claimed_by_masterid"),
    ("complete", "buildrequests.complete"),
    ("results", "buildrequests.results"),
    ("submitted_at", "CAST(buildrequests.submitted_at AS BIGINT)"),
    ("complete_at", "CAST(buildrequests.complete_at AS BIGINT)"),
    ("waited_for", "buildrequests.waited_for"),
];

/// Announces a request stored just now `new`, with the row its INSERT returned
/// ([`crate::db::AddedBuildset`]).
pub fn announce_new_request(bus: &Bus, row: &AnyRow) -> DbResult<()> {
    let brid: i64 = row.try_get(0)?;
    announce_with(bus, Resource::BuildRequest(brid), "new", || {
        buildrequest_json(row)
    })
}

pub(super) fn buildrequest_json(row: &AnyRow) -> DbResult<Value> {
    let claimed_by = opt_int(row, 5)?;
    Ok(json!({
        "buildrequestid": row.try_get::<i64, _>(0)?,
        "buildsetid": row.try_get::<i64, _>(1)?,
        "builderid": row.try_get::<i64, _>(2)?,
        "priority": row.try_get::<i64, _>(3)?,
        "claimed": !claimed_by.is_null(),
        "claimed_at": opt_time(row, 4)?,
        "claimed_by_masterid": claimed_by,
        "complete": flag(row, 6)?,
        "results": opt_int(row, 7)?,
        "submitted_at": time(row, 8)?,
        "complete_at": opt_time(row, 9)?,
        "waited_for": flag(row, 10)?,
        "properties": null,
    }))
}

/// Fills `properties` of each request with its buildset's properties that `property=`
/// asked for, in one query.
async fn add_request_properties(db: &Db, query: &Query, items: &mut [Value]) -> DbResult<()> {
    let mut ids: Vec<i64> = items
        .iter()
        .filter_map(|i| i["buildsetid"].as_i64())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut by_buildset: Vec<(i64, Map<String, Value>)> =
        ids.iter().map(|id| (*id, Map::new())).collect();
    if !ids.is_empty() {
        let (placeholders, binds) = id_list(&ids);
        let sql = format!(
            "SELECT buildsetid, name, value, source FROM buildset_properties \
             WHERE buildsetid IN ({placeholders})"
        );
        let rows = bind_all(sqlx::query(&sql), &binds)
            .fetch_all(&db.pool)
            .await?;
        for row in rows {
            let bsid: i64 = row.try_get(0)?;
            let value: String = row.try_get(2)?;
            let value = serde_json::from_str(&value).unwrap_or(Value::String(value));
            if let Some((_, map)) = by_buildset.iter_mut().find(|(id, _)| *id == bsid) {
                map.insert(
                    row.try_get(1)?,
                    json!([value, row.try_get::<String, _>(3)?]),
                );
            }
        }
    }
    for item in items {
        let bsid = item["buildsetid"].as_i64();
        if let Some((_, map)) = by_buildset.iter().find(|(id, _)| Some(*id) == bsid) {
            item["properties"] = Value::Object(wanted_properties(query, map.clone()));
        }
    }
    Ok(())
}

/// All build requests, or those of a builder.
pub async fn buildrequests(db: &Db, builderid: Option<i64>, query: &Query) -> DbResult<Page> {
    let mut listing = Listing::new(
        BUILDREQUEST_SELECT,
        "buildrequests",
        BUILDREQUEST_COLUMNS,
        "buildrequests.id",
    );
    if let Some(builderid) = builderid {
        listing = listing.when("buildrequests.builderid", Bind::Int(builderid));
    }
    let (rows, counted, rest) = listing.fetch(db, query).await?;
    let items = rows
        .iter()
        .map(buildrequest_json)
        .collect::<DbResult<Vec<_>>>()?;
    let mut page = rest.page(items, counted);
    if !query.properties.is_empty() {
        add_request_properties(db, query, &mut page.items).await?;
    }
    Ok(projected(query, page))
}

pub async fn buildrequest(db: &Db, brid: i64, query: &Query) -> DbResult<Option<Value>> {
    let sql =
        format!("SELECT {BUILDREQUEST_SELECT} FROM buildrequests WHERE buildrequests.id = $1");
    let Some(row) = sqlx::query(&sql)
        .bind(brid)
        .fetch_optional(&db.pool)
        .await?
    else {
        return Ok(None);
    };
    let mut items = [buildrequest_json(&row)?];
    if !query.properties.is_empty() {
        add_request_properties(db, query, &mut items).await?;
    }
    let [item] = items;
    Ok(Some(item))
}

/// Completes pending request `brid` with `results` and announces it with `event`, with
/// the row the update returned. Answers its buildset, or `None` if it was not pending.
pub async fn complete_request(
    db: &Db,
    bus: &Bus,
    brid: i64,
    results: BuildResult,
    event: &str,
) -> DbResult<Option<i64>> {
    let sql = format!(
        "UPDATE buildrequests SET complete = 1, results = $1, complete_at = $2 \
         WHERE id = $3 AND complete = 0 RETURNING {BUILDREQUEST_SELECT}"
    );
    let Some(row) = sqlx::query(&sql)
        .bind(results.code())
        .bind(now())
        .bind(brid)
        .fetch_optional(&db.pool)
        .await?
    else {
        return Ok(None);
    };
    announce_with(bus, Resource::BuildRequest(brid), event, || {
        buildrequest_json(&row)
    })?;
    Ok(Some(row.try_get(1)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_buildset_completes_with_the_worst_of_its_requests_results_as_buildbot_ranks_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap();
        let bus = Bus::new(1024);
        let results: Vec<Option<BuildResult>> = std::iter::once(None)
            .chain((0..=6).map(|code| Some(BuildResult::from_code(code).unwrap())))
            .collect();
        let mut bsid = 0;
        for first in &results {
            for second in &results {
                bsid += 1;
                sqlx::query("INSERT INTO buildsets (id, submitted_at) VALUES ($1, 0)")
                    .bind(bsid)
                    .execute(&db.pool)
                    .await
                    .unwrap();
                for result in [first, second] {
                    sqlx::query(
                        "INSERT INTO buildrequests (buildsetid, builderid, complete, results, \
                         submitted_at) VALUES ($1, 1, 1, $2, 0)",
                    )
                    .bind(bsid)
                    .bind(result.map(BuildResult::code))
                    .execute(&db.pool)
                    .await
                    .unwrap();
                }
                let expected = [first, second]
                    .into_iter()
                    .flatten()
                    .fold(BuildResult::Success, |worst, r| worst.worst(*r));
                let completed = complete_buildset(&db, &bus, bsid).await.unwrap();
                assert_eq!(completed, Some(expected), "{first:?} and {second:?}");
            }
        }
        sqlx::query(
            "INSERT INTO buildrequests (buildsetid, builderid, submitted_at) VALUES (1, 1, 0)",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        sqlx::query("UPDATE buildsets SET complete = 0 WHERE id = 1")
            .execute(&db.pool)
            .await
            .unwrap();
        assert_eq!(complete_buildset(&db, &bus, 1).await.unwrap(), None);
    }
}
