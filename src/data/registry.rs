//! The named things a config defines, as the data API shows them: builders, workers,
//! masters, schedulers and change sources.
//!
//! A builder (and so a worker's builder) is configured on the active masters while the
//! running config defines it (`builders.active`).

use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::query::{bind_all, id_list, Bind, Entity, FieldType as F, Listing, Page, Query};
use super::{flag, opt_int, projected, time};
use crate::db::{Db, DbResult};

pub const BUILDER: Entity = Entity {
    name: "builder",
    plural: "builders",
    fields: &[
        ("builderid", F::Integer),
        ("name", F::String),
        ("masterids", F::IntegerList),
        ("description", F::String),
        ("description_format", F::String),
        ("description_html", F::String),
        ("projectid", F::Integer),
        ("tags", F::StringList),
    ],
};

pub const WORKER: Entity = Entity {
    name: "worker",
    plural: "workers",
    fields: &[
        ("workerid", F::Integer),
        ("name", F::String),
        ("connected_to", F::Object),
        ("configured_on", F::Object),
        ("workerinfo", F::Object),
        ("paused", F::Boolean),
        ("pause_reason", F::String),
        ("graceful", F::Boolean),
    ],
};

pub const MASTER: Entity = Entity {
    name: "master",
    plural: "masters",
    fields: &[
        ("masterid", F::Integer),
        ("name", F::String),
        ("active", F::Boolean),
        ("last_active", F::DateTime),
        ("last_reconfig", F::String),
    ],
};

pub const SCHEDULER: Entity = Entity {
    name: "scheduler",
    plural: "schedulers",
    fields: &[
        ("schedulerid", F::Integer),
        ("name", F::String),
        ("enabled", F::Boolean),
        ("master", F::Object),
    ],
};

pub const CHANGESOURCE: Entity = Entity {
    name: "changesource",
    plural: "changesources",
    fields: &[
        ("changesourceid", F::Integer),
        ("name", F::String),
        ("master", F::Object),
    ],
};

async fn active_masters(db: &Db) -> DbResult<Vec<i64>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM masters WHERE active = 1 ORDER BY id")
            .fetch_all(&db.pool)
            .await?,
    )
}

// ---- builders --------------------------------------------------------------------------

/// A builder's columns, then the active masters (`1,2`, or NULL when none is), read in the
/// same statement: an uncorrelated subquery, evaluated once. `string_agg` with its `ORDER
/// BY` is both SQLite's (3.44 on) and PostgreSQL's.
const BUILDER_SELECT: &str =
    "builders.id, builders.name, builders.description, builders.tags, builders.active, \
     (SELECT string_agg(CAST(id AS TEXT), ',' ORDER BY id) FROM masters WHERE active = 1)";

const BUILDER_COLUMNS: &[(&str, &str)] = &[
    ("builderid", "builders.id"),
    ("name", "builders.name"),
    ("description", "builders.description"),
];

/// The active masters a [`BUILDER_SELECT`] row carries.
fn row_masters(row: &AnyRow) -> DbResult<Vec<i64>> {
    let list: Option<String> = row.try_get(5)?;
    Ok(list
        .iter()
        .flat_map(|list| list.split(','))
        .filter_map(|id| id.parse().ok())
        .collect())
}

fn builder_json(row: &AnyRow) -> DbResult<Value> {
    let tags: String = row.try_get(3)?;
    let masterids = if flag(row, 4)? {
        row_masters(row)?
    } else {
        Vec::new()
    };
    Ok(json!({
        "builderid": row.try_get::<i64, _>(0)?,
        "name": row.try_get::<String, _>(1)?,
        "masterids": masterids,
        "description": row.try_get::<Option<String>, _>(2)?,
        "description_format": null,
        "description_html": null,
        "projectid": null,
        "tags": serde_json::from_str::<Value>(&tags).unwrap_or_else(|_| json!([])),
    }))
}

/// Which builders a collection URL names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BuildersOf {
    pub masterid: Option<i64>,
    pub workerid: Option<i64>,
}

pub async fn builders(db: &Db, of: &BuildersOf, query: &Query) -> DbResult<Page> {
    let mut listing = match of.workerid {
        Some(workerid) => Listing::new(
            BUILDER_SELECT,
            "builders JOIN builder_workers bw ON bw.builderid = builders.id",
            BUILDER_COLUMNS,
            "builders.id",
        )
        .when("bw.workerid", Bind::Int(workerid)),
        None => Listing::new(BUILDER_SELECT, "builders", BUILDER_COLUMNS, "builders.id"),
    };
    // A master's builders are the active ones, while that master is active itself.
    if let Some(masterid) = of.masterid {
        listing = listing.when_sql("builders.active = 1").when_bound(
            |master| format!("EXISTS (SELECT 1 FROM masters WHERE id = {master} AND active = 1)"),
            Bind::Int(masterid),
        );
    }
    let (rows, counted, rest) = listing.fetch(db, query).await?;
    let items = rows
        .iter()
        .map(builder_json)
        .collect::<DbResult<Vec<_>>>()?;
    Ok(projected(query, rest.page(items, counted)))
}

pub async fn builder(db: &Db, builderid: i64) -> DbResult<Option<Value>> {
    let sql = format!("SELECT {BUILDER_SELECT} FROM builders WHERE builders.id = $1");
    let row = sqlx::query(&sql)
        .bind(builderid)
        .fetch_optional(&db.pool)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(builder_json(&row)?))
}

// ---- workers ---------------------------------------------------------------------------

/// `/workers/N` or `/workers/NAME`.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkerRef {
    Id(i64),
    Name(String),
}

pub async fn worker_id(db: &Db, worker: &WorkerRef) -> DbResult<Option<i64>> {
    let (sql, bind) = match worker {
        WorkerRef::Id(id) => ("SELECT id FROM workers WHERE id = $1", Bind::Int(*id)),
        WorkerRef::Name(name) => (
            "SELECT id FROM workers WHERE name = $1",
            Bind::Text(name.clone()),
        ),
    };
    let binds = [bind];
    let row = bind_all(sqlx::query(sql), &binds)
        .fetch_optional(&db.pool)
        .await?;
    Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?)
}

const WORKER_SELECT: &str = "workers.id, workers.name, workers.info, workers.paused, \
     workers.graceful, workers.connected_masterid";

const WORKER_COLUMNS: &[(&str, &str)] = &[
    ("workerid", "workers.id"),
    ("name", "workers.name"),
    ("paused", "workers.paused"),
    ("graceful", "workers.graceful"),
];

fn worker_json(row: &AnyRow) -> DbResult<Value> {
    let info: String = row.try_get(2)?;
    let connected: Vec<Value> = row
        .try_get::<Option<i64>, _>(5)?
        .map(|masterid| json!({ "masterid": masterid }))
        .into_iter()
        .collect();
    Ok(json!({
        "workerid": row.try_get::<i64, _>(0)?,
        "name": row.try_get::<String, _>(1)?,
        "workerinfo": serde_json::from_str::<Value>(&info).unwrap_or_else(|_| json!({})),
        "paused": flag(row, 3)?,
        "pause_reason": null,
        "graceful": flag(row, 4)?,
        "connected_to": connected,
        "configured_on": [],
    }))
}

/// Fills `configured_on` of each worker: its active builders on each active master.
async fn add_configured_on(db: &Db, items: &mut [Value]) -> DbResult<()> {
    let ids: Vec<i64> = items
        .iter()
        .filter_map(|i| i["workerid"].as_i64())
        .collect();
    let masters = active_masters(db).await?;
    if ids.is_empty() || masters.is_empty() {
        return Ok(());
    }
    let (placeholders, binds) = id_list(&ids);
    let sql = format!(
        "SELECT bw.workerid, bw.builderid FROM builder_workers bw \
         JOIN builders b ON b.id = bw.builderid \
         WHERE b.active = 1 AND bw.workerid IN ({placeholders}) ORDER BY bw.builderid"
    );
    let rows = bind_all(sqlx::query(&sql), &binds)
        .fetch_all(&db.pool)
        .await?;
    for row in rows {
        let workerid: i64 = row.try_get(0)?;
        let builderid: i64 = row.try_get(1)?;
        if let Some(Value::Array(list)) = items
            .iter_mut()
            .find(|i| i["workerid"].as_i64() == Some(workerid))
            .map(|i| &mut i["configured_on"])
        {
            list.extend(
                masters
                    .iter()
                    .map(|m| json!({"masterid": m, "builderid": builderid})),
            );
        }
    }
    Ok(())
}

/// Which workers a collection URL names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkersOf {
    /// Workers connected to the master or configured on it.
    pub masterid: Option<i64>,
    pub builderid: Option<i64>,
}

pub async fn workers(db: &Db, of: &WorkersOf, query: &Query) -> DbResult<Page> {
    let mut listing = Listing::new(WORKER_SELECT, "workers", WORKER_COLUMNS, "workers.id");
    if let Some(builderid) = of.builderid {
        listing = listing.when_bound(
            |p| {
                format!(
                    "EXISTS (SELECT 1 FROM builder_workers bw \
                     WHERE bw.workerid = workers.id AND bw.builderid = {p})"
                )
            },
            Bind::Int(builderid),
        );
    }
    if let Some(masterid) = of.masterid {
        listing = listing.when_bound(
            |p| {
                format!(
                    "(workers.connected_masterid = {p} OR (EXISTS (SELECT 1 FROM masters m \
                     WHERE m.id = {p} AND m.active = 1) AND EXISTS (SELECT 1 FROM \
                     builder_workers bw JOIN builders b ON b.id = bw.builderid \
                     WHERE bw.workerid = workers.id AND b.active = 1)))"
                )
            },
            Bind::Int(masterid),
        );
    }
    let (rows, counted, rest) = listing.fetch(db, query).await?;
    let items = rows.iter().map(worker_json).collect::<DbResult<Vec<_>>>()?;
    let mut page = rest.page(items, counted);
    add_configured_on(db, &mut page.items).await?;
    Ok(projected(query, page))
}

pub async fn worker(db: &Db, workerid: i64) -> DbResult<Option<Value>> {
    let sql = format!("SELECT {WORKER_SELECT} FROM workers WHERE workers.id = $1");
    let Some(row) = sqlx::query(&sql)
        .bind(workerid)
        .fetch_optional(&db.pool)
        .await?
    else {
        return Ok(None);
    };
    let mut items = [worker_json(&row)?];
    add_configured_on(db, &mut items).await?;
    let [item] = items;
    Ok(Some(item))
}

// ---- masters ---------------------------------------------------------------------------

const MASTER_SELECT: &str =
    "masters.id, masters.name, masters.active, masters.last_active, masters.last_reconfig";

const MASTER_COLUMNS: &[(&str, &str)] = &[
    ("masterid", "masters.id"),
    ("name", "masters.name"),
    ("active", "masters.active"),
    ("last_active", "CAST(masters.last_active AS BIGINT)"),
    ("last_reconfig", "masters.last_reconfig"),
];

/// A master from the row's columns `at..at + 5`; `null` when the id is NULL (a LEFT JOIN
/// that found none). `last_reconfig` is the outcome line of the last start or reconfig.
fn master_json(row: &AnyRow, at: usize) -> DbResult<Value> {
    if opt_int(row, at)?.is_null() {
        return Ok(Value::Null);
    }
    Ok(json!({
        "masterid": row.try_get::<i64, _>(at)?,
        "name": row.try_get::<String, _>(at + 1)?,
        "active": flag(row, at + 2)?,
        "last_active": time(row, at + 3)?,
        "last_reconfig": row.try_get::<Option<String>, _>(at + 4)?,
    }))
}

/// All masters, or those a builder is configured on.
pub async fn masters(db: &Db, builderid: Option<i64>, query: &Query) -> DbResult<Page> {
    let mut listing = Listing::new(MASTER_SELECT, "masters", MASTER_COLUMNS, "masters.id");
    if let Some(builderid) = builderid {
        listing = listing.when_sql("masters.active = 1").when_bound(
            |p| format!("EXISTS (SELECT 1 FROM builders b WHERE b.id = {p} AND b.active = 1)"),
            Bind::Int(builderid),
        );
    }
    let (rows, counted, rest) = listing.fetch(db, query).await?;
    let items = rows
        .iter()
        .map(|row| master_json(row, 0))
        .collect::<DbResult<Vec<_>>>()?;
    Ok(projected(query, rest.page(items, counted)))
}

pub async fn master(db: &Db, masterid: i64) -> DbResult<Option<Value>> {
    let sql = format!("SELECT {MASTER_SELECT} FROM masters WHERE masters.id = $1");
    let row = sqlx::query(&sql)
        .bind(masterid)
        .fetch_optional(&db.pool)
        .await?;
    row.map(|row| master_json(&row, 0)).transpose()
}

// ---- schedulers and change sources -----------------------------------------------------

/// The columns of a scheduler or change source row: id, name, then `extra`, then its master.
fn service_select(table: &str, extra: &str) -> String {
    format!(
        "{table}.id, {table}.name, {extra}m.id, m.name, m.active, m.last_active, m.last_reconfig \
         FROM {table} LEFT JOIN masters m ON m.id = {table}.masterid"
    )
}

fn scheduler_json(row: &AnyRow) -> DbResult<Value> {
    Ok(json!({
        "schedulerid": row.try_get::<i64, _>(0)?,
        "name": row.try_get::<String, _>(1)?,
        "enabled": flag(row, 2)?,
        "master": master_json(row, 3)?,
    }))
}

fn changesource_json(row: &AnyRow) -> DbResult<Value> {
    Ok(json!({
        "changesourceid": row.try_get::<i64, _>(0)?,
        "name": row.try_get::<String, _>(1)?,
        "master": master_json(row, 2)?,
    }))
}

/// The select list and FROM clause of a service table, split for [`Listing`].
fn split_select(select: &str) -> (&str, &str) {
    select.split_once(" FROM ").unwrap_or((select, ""))
}

/// All schedulers, or those a master runs.
pub async fn schedulers(db: &Db, masterid: Option<i64>, query: &Query) -> DbResult<Page> {
    let select = service_select("schedulers", "schedulers.enabled, ");
    let (columns, from) = split_select(&select);
    let mut listing = Listing::new(
        columns,
        from,
        &[
            ("schedulerid", "schedulers.id"),
            ("name", "schedulers.name"),
            ("enabled", "schedulers.enabled"),
        ],
        "schedulers.id",
    );
    if let Some(masterid) = masterid {
        listing = listing.when("schedulers.masterid", Bind::Int(masterid));
    }
    let (rows, counted, rest) = listing.fetch(db, query).await?;
    let items = rows
        .iter()
        .map(scheduler_json)
        .collect::<DbResult<Vec<_>>>()?;
    Ok(projected(query, rest.page(items, counted)))
}

pub async fn scheduler(db: &Db, schedulerid: i64) -> DbResult<Option<Value>> {
    let sql = format!(
        "SELECT {} WHERE schedulers.id = $1",
        service_select("schedulers", "schedulers.enabled, ")
    );
    let row = sqlx::query(&sql)
        .bind(schedulerid)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(scheduler_json).transpose()
}

/// All change sources, or those a master runs.
pub async fn changesources(db: &Db, masterid: Option<i64>, query: &Query) -> DbResult<Page> {
    let select = service_select("changesources", "");
    let (columns, from) = split_select(&select);
    let mut listing = Listing::new(
        columns,
        from,
        &[
            ("changesourceid", "changesources.id"),
            ("name", "changesources.name"),
        ],
        "changesources.id",
    );
    if let Some(masterid) = masterid {
        listing = listing.when("changesources.masterid", Bind::Int(masterid));
    }
    let (rows, counted, rest) = listing.fetch(db, query).await?;
    let items = rows
        .iter()
        .map(changesource_json)
        .collect::<DbResult<Vec<_>>>()?;
    Ok(projected(query, rest.page(items, counted)))
}

pub async fn changesource(db: &Db, changesourceid: i64) -> DbResult<Option<Value>> {
    let sql = format!(
        "SELECT {} WHERE changesources.id = $1",
        service_select("changesources", "")
    );
    let row = sqlx::query(&sql)
        .bind(changesourceid)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(changesource_json).transpose()
}
