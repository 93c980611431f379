//! The pages' own reads: which builds, changes and revisions a page shows, each read bounded
//! by the page's limits and served by an index, so a page costs the same with a hundred
//! builds stored or a hundred thousand. They answer ids; the items themselves are then read
//! by id through `data::*`, in the REST shapes the templates know. The REST listings page
//! with a total (a count of every matching row), which no page shows.
//!
//! A read over several builders is one statement: a bounded, index-ordered select per
//! builder, joined by `UNION ALL`, which SQLite and PostgreSQL both plan as so many index
//! walks.

use sqlx::Row;

use crate::data::query::{bind_all, Bind};
use crate::db::{Db, DbResult, Dialect};
use crate::model::BuildResult;

/// SQLite's bound on the terms of one compound select is 500: more builders than this are
/// read in several statements.
const BUILDERS_PER_STATEMENT: usize = 400;

/// The builds a page selects besides their builders.
#[derive(Default)]
pub struct Selection<'a> {
    /// Finished builds only.
    pub finished: bool,
    /// Builds with one of these results, when any is given.
    pub results: &'a [i64],
    /// Started at or after this second.
    pub started_from: Option<i64>,
    /// Started at or before this second.
    pub started_until: Option<i64>,
    /// Builds whose `branch` property is one of these, when any is given.
    pub branches: &'a [&'a str],
    /// Builds with each of these properties (`name`, value as [`property_texts`] reads it).
    pub properties: &'a [(&'a str, &'a str)],
    /// Only among each builder's newest this many builds that the other conditions keep:
    /// bounds the builds whose properties are looked at when few match.
    pub among_newest: Option<usize>,
}

/// Placeholders and their values, numbered as they are added.
#[derive(Default)]
struct Binds(Vec<Bind>);

impl Binds {
    fn add(&mut self, bind: Bind) -> String {
        self.0.push(bind);
        format!("${}", self.0.len())
    }

    fn list(&mut self, binds: impl IntoIterator<Item = Bind>) -> String {
        let marks: Vec<String> = binds.into_iter().map(|b| self.add(b)).collect();
        marks.join(", ")
    }
}

/// One `SELECT` per id of `ids` (builders, workers) from `each` (given the id's
/// placeholder), joined by `UNION ALL`, run in as many statements as
/// [`BUILDERS_PER_STATEMENT`] asks; `finish` wraps the union (named `u`) in the statement's
/// outer select. Rows of every statement, in order.
async fn per_id(
    db: &Db,
    ids: &[i64],
    binds: &Binds,
    each: impl Fn(&str) -> String,
    finish: impl Fn(&str) -> String,
) -> DbResult<Vec<sqlx::any::AnyRow>> {
    let mut rows = Vec::new();
    for chunk in ids.chunks(BUILDERS_PER_STATEMENT) {
        let mut all = Binds(binds.0.clone());
        let parts: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(at, id)| {
                let mark = all.add(Bind::Int(*id));
                format!("SELECT * FROM ({}) AS b{at}", each(&mark))
            })
            .collect();
        let sql = finish(&format!("({}) AS u", parts.join(" UNION ALL ")));
        rows.extend(
            bind_all(sqlx::query(&sql), &all.0)
                .fetch_all(&db.pool)
                .await?,
        );
    }
    Ok(rows)
}

/// A build as the pages' reads find it, before its item is read.
pub struct BuildKey {
    pub id: i64,
    pub builderid: i64,
    pub number: i64,
}

impl BuildKey {
    fn from_row(row: &sqlx::any::AnyRow) -> DbResult<BuildKey> {
        Ok(BuildKey {
            id: row.try_get("id")?,
            builderid: row.try_get("builderid")?,
            number: row.try_get("number")?,
        })
    }
}

/// The newest builds of `builderids` (by id) that `selection` keeps, at most `limit`,
/// newest first.
pub async fn newest_builds(
    db: &Db,
    builderids: &[i64],
    selection: &Selection<'_>,
    limit: usize,
) -> DbResult<Vec<i64>> {
    let keys = newest_of_each(db, builderids, selection, limit, limit).await?;
    Ok(keys.into_iter().map(|key| key.id).collect())
}

/// The newest builds of `builderids` (by id) that `selection` keeps, at most `each` of a
/// builder and `limit` in all, newest first.
pub async fn newest_of_each(
    db: &Db,
    builderids: &[i64],
    selection: &Selection<'_>,
    each: usize,
    limit: usize,
) -> DbResult<Vec<BuildKey>> {
    let rows = newest_rows(
        db,
        builderids,
        selection,
        each,
        limit,
        "id, builderid, number",
    )
    .await?;
    let mut keys = rows
        .iter()
        .map(BuildKey::from_row)
        .collect::<DbResult<Vec<_>>>()?;
    keys.sort_unstable_by_key(|key| std::cmp::Reverse(key.id));
    keys.truncate(limit);
    Ok(keys)
}

/// A build as a waterfall's cell shows it.
pub struct BuildCell {
    pub id: i64,
    pub builderid: i64,
    pub number: i64,
    /// Seconds since the epoch, whole as the REST API gives them.
    pub started_at: i64,
    pub complete: bool,
    pub results: Option<i64>,
    pub state_string: String,
}

/// The newest builds of `builderids` (by id) that `selection` keeps, at most `limit`,
/// newest first, with what a waterfall shows of each: the cells come with the ids, so a
/// waterfall is one statement rather than ids and then every column of REST build objects.
pub async fn newest_build_cells(
    db: &Db,
    builderids: &[i64],
    selection: &Selection<'_>,
    limit: usize,
) -> DbResult<Vec<BuildCell>> {
    let columns = "id, builderid, number, started_at, complete_at, results, state_string";
    let rows = newest_rows(db, builderids, selection, limit, limit, columns).await?;
    let mut cells = rows
        .iter()
        .map(|row| {
            Ok(BuildCell {
                id: row.try_get(0)?,
                builderid: row.try_get(1)?,
                number: row.try_get(2)?,
                started_at: row.try_get::<f64, _>(3)? as i64,
                complete: row.try_get::<Option<f64>, _>(4)?.is_some(),
                results: row.try_get(5)?,
                state_string: row.try_get(6)?,
            })
        })
        .collect::<DbResult<Vec<_>>>()?;
    cells.sort_unstable_by_key(|cell| std::cmp::Reverse(cell.id));
    cells.truncate(limit);
    Ok(cells)
}

/// `columns` of the newest builds of `builderids` (by id) that `selection` keeps, at most
/// `each` of a builder and `limit` of each statement, in no order.
async fn newest_rows(
    db: &Db,
    builderids: &[i64],
    selection: &Selection<'_>,
    each: usize,
    limit: usize,
    columns: &str,
) -> DbResult<Vec<sqlx::any::AnyRow>> {
    if builderids.is_empty() || limit == 0 || each == 0 {
        return Ok(Vec::new());
    }
    let mut binds = Binds::default();
    let mut conditions = String::new();
    if selection.finished {
        conditions.push_str(" AND complete_at IS NOT NULL");
    }
    if !selection.results.is_empty() {
        let marks = binds.list(selection.results.iter().map(|r| Bind::Int(*r)));
        conditions.push_str(&format!(" AND results IN ({marks})"));
    }
    // The pages compare whole seconds, as the REST filters on `started_at` do.
    if let Some(first) = selection.started_from {
        let mark = binds.add(Bind::Int(first));
        conditions.push_str(&format!(" AND started_at >= {mark}"));
    }
    if let Some(last) = selection.started_until {
        let mark = binds.add(Bind::Int(last + 1));
        conditions.push_str(&format!(" AND started_at < {mark}"));
    }
    let mut on_properties = on_branches(&mut binds, selection.branches);
    for (name, wanted) in selection.properties {
        on_properties.push_str(&on_property(&mut binds, name, property_texts(wanted)));
    }
    per_id(
        db,
        builderids,
        &binds,
        |builder| match selection.among_newest {
            // The newest builds first, then their properties: the properties of at most
            // `among` builds are looked at, however few match.
            Some(among) => format!(
                "SELECT {columns} FROM (SELECT * FROM builds WHERE builderid = {builder}\
                 {conditions} ORDER BY id DESC LIMIT {among}) AS builds{} \
                 ORDER BY id DESC LIMIT {each}",
                on_properties
                    .strip_prefix(" AND ")
                    .map(|all| format!(" WHERE {all}"))
                    .unwrap_or_default()
            ),
            None => format!(
                "SELECT {columns} FROM builds WHERE builderid = {builder}\
                 {conditions}{on_properties} ORDER BY id DESC LIMIT {each}"
            ),
        },
        |union| format!("SELECT {columns} FROM {union} ORDER BY id DESC LIMIT {limit}"),
    )
    .await
}

/// The `nth` newest build of a builder (the first is its last), walking its index without
/// reading the builds after it.
pub async fn nth_newest(db: &Db, builderid: i64, nth: u64) -> DbResult<Option<i64>> {
    let Some(skipped) = nth.checked_sub(1).and_then(|n| i64::try_from(n).ok()) else {
        return Ok(None);
    };
    Ok(sqlx::query_scalar(
        "SELECT id FROM builds WHERE builderid = $1 ORDER BY id DESC LIMIT 1 OFFSET $2",
    )
    .bind(builderid)
    .bind(skipped)
    .fetch_optional(&db.pool)
    .await?)
}

/// ` AND` the build's `branch` property is one of `branches`, when any is given.
fn on_branches(binds: &mut Binds, branches: &[&str]) -> String {
    if branches.is_empty() {
        return String::new();
    }
    let texts = branches
        .iter()
        .map(|b| serde_json::Value::from(*b).to_string());
    on_property(binds, "branch", texts.collect())
}

/// ` AND` the build has property `name` stored as one of `texts` (JSON): through the
/// properties' primary key, for each build the select walks.
fn on_property(binds: &mut Binds, name: &str, texts: Vec<String>) -> String {
    let name = binds.add(Bind::Text(name.to_string()));
    let marks = binds.list(texts.into_iter().map(Bind::Text));
    format!(
        " AND EXISTS (SELECT 1 FROM build_properties p WHERE p.buildid = builds.id \
         AND p.name = {name} AND p.value IN ({marks}))"
    )
}

/// The stored texts (JSON) of the property values a URL's `property.NAME=wanted` matches,
/// as 0.8 compared Python's `str()` of the value: a string as it is, `True`/`False` (or
/// Lua's `true`/`false`), a number, list or table as its JSON; never null.
pub fn property_texts(wanted: &str) -> Vec<String> {
    let mut texts = vec![serde_json::Value::from(wanted).to_string()];
    match serde_json::from_str::<serde_json::Value>(wanted) {
        Ok(serde_json::Value::String(_) | serde_json::Value::Null) | Err(_) => {}
        Ok(_) => texts.push(wanted.to_string()),
    }
    match wanted {
        "True" => texts.push("true".into()),
        "False" => texts.push("false".into()),
        _ => {}
    }
    texts
}

/// The last `count` finished builds of each builder by number, newest first, as
/// `(builderid, buildid, started_at, complete_at)`; with `succeeded`, only those
/// that succeeded (with or without warnings); only those of `branches` when any is given.
pub async fn last_finished(
    db: &Db,
    builderids: &[i64],
    count: usize,
    succeeded: bool,
    branches: &[&str],
) -> DbResult<Vec<(i64, i64, f64, f64)>> {
    if builderids.is_empty() {
        return Ok(Vec::new());
    }
    let mut binds = Binds::default();
    let mut results = on_branches(&mut binds, branches);
    if succeeded {
        results.push_str(" AND results <= 1");
    }
    let rows = per_id(
        db,
        builderids,
        &binds,
        |builder| {
            format!(
                "SELECT builderid, id, number, started_at, complete_at FROM builds \
                 WHERE builderid = {builder} AND complete_at IS NOT NULL{results} \
                 ORDER BY number DESC LIMIT {count}"
            )
        },
        |union| format!("SELECT builderid, id, started_at, complete_at FROM {union} ORDER BY builderid, number DESC"),
    )
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            ))
        })
        .collect()
}

/// The builds of these builders still running, by builder and number; only those of
/// `branches` when any is given.
pub async fn running(db: &Db, builderids: &[i64], branches: &[&str]) -> DbResult<Vec<BuildKey>> {
    if builderids.is_empty() {
        return Ok(Vec::new());
    }
    let mut binds = Binds::default();
    let marks = binds.list(builderids.iter().map(|id| Bind::Int(*id)));
    let branches = on_branches(&mut binds, branches);
    let sql = format!(
        "SELECT id, builderid, number FROM builds WHERE builderid IN ({marks}) \
         AND complete_at IS NULL{branches} ORDER BY builderid, number"
    );
    let rows = bind_all(sqlx::query(&sql), &binds.0)
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(BuildKey::from_row).collect()
}

/// A console box: the first build of a builder that included a change, with what the box
/// shows.
pub struct ConsoleBuild {
    pub changeid: i64,
    pub builderid: i64,
    pub buildid: i64,
    pub number: i64,
    pub complete: bool,
    pub results: Option<i64>,
    pub state_string: String,
    /// For a failed build, whether the builder's finished build before it failed too.
    pub failed_before: bool,
}

/// For each of `changeids` and each of `builderids`, the builder's first build that
/// included the change: one statement whose rows are the boxes, since the console reads
/// them for every change it shows.
pub async fn first_builds_of_changes(
    db: &Db,
    changeids: &[i64],
    builderids: &[i64],
) -> DbResult<Vec<ConsoleBuild>> {
    if changeids.is_empty() || builderids.is_empty() {
        return Ok(Vec::new());
    }
    let mut binds = Binds::default();
    let changes = binds.list(changeids.iter().map(|id| Bind::Int(*id)));
    let builders = binds.list(builderids.iter().map(|id| Bind::Int(*id)));
    let failure = binds.add(Bind::Int(BuildResult::Failure.code()));
    let sql = format!(
        "SELECT f.changeid, b.builderid, b.id, b.number, b.complete_at, b.results, \
         b.state_string, CASE WHEN b.results = {failure} THEN (SELECT p.results FROM builds p \
         WHERE p.builderid = b.builderid AND p.number < b.number AND p.complete_at IS NOT NULL \
         ORDER BY p.number DESC LIMIT 1) END \
         FROM (SELECT ch.changeid AS changeid, MIN(builds.id) AS buildid FROM changes ch \
         JOIN buildset_sourcestamps bss ON bss.sourcestampid = ch.sourcestampid \
         JOIN buildrequests br ON br.buildsetid = bss.buildsetid \
         JOIN builds ON builds.buildrequestid = br.id \
         WHERE ch.changeid IN ({changes}) AND builds.builderid IN ({builders}) \
         GROUP BY ch.changeid, builds.builderid) f JOIN builds b ON b.id = f.buildid"
    );
    let rows = bind_all(sqlx::query(&sql), &binds.0)
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|row| {
            let before: Option<i64> = row.try_get(7)?;
            Ok(ConsoleBuild {
                changeid: row.try_get(0)?,
                builderid: row.try_get(1)?,
                buildid: row.try_get(2)?,
                number: row.try_get(3)?,
                complete: row.try_get::<Option<f64>, _>(4)?.is_some(),
                results: row.try_get(5)?,
                state_string: row.try_get(6)?,
                failed_before: before == Some(BuildResult::Failure.code()),
            })
        })
        .collect()
}

/// The changes a console shows: the newest `limit` by id (or by `when_timestamp` with
/// `by_time`) whose columns equal one of the values given for them, and whose author
/// contains one of `authors` when any is given.
pub async fn newest_changes(
    db: &Db,
    equal: &[(&str, Vec<&str>)],
    authors: &[&str],
    by_time: bool,
    limit: usize,
) -> DbResult<Vec<i64>> {
    let mut binds = Binds::default();
    let mut conditions = vec!["1 = 1".to_string()];
    for (column, values) in equal.iter().filter(|(_, v)| !v.is_empty()) {
        let marks = binds.list(values.iter().map(|v| Bind::Text(v.to_string())));
        conditions.push(format!("{column} IN ({marks})"));
    }
    if !authors.is_empty() {
        let parts: Vec<String> = authors
            .iter()
            .map(|a| {
                let mark = binds.add(Bind::Text(a.to_string()));
                match db.dialect {
                    Dialect::Sqlite => format!("instr(author, {mark}) > 0"),
                    Dialect::Postgres => format!("strpos(author, {mark}) > 0"),
                }
            })
            .collect();
        conditions.push(format!("({})", parts.join(" OR ")));
    }
    let order = if by_time {
        "when_timestamp DESC, changeid DESC"
    } else {
        "changeid DESC"
    };
    let sql = format!(
        "SELECT changeid FROM changes WHERE {} ORDER BY {order} LIMIT {limit}",
        conditions.join(" AND ")
    );
    let rows = bind_all(sqlx::query(&sql), &binds.0)
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}

/// The `count` revisions (`(branch, revision)`, none read as `''`) most recently built by
/// these builders, on `branches` when any is named, newest first: builds are read newest
/// first, a page at a time, until that many revisions are found.
pub async fn recent_revisions(
    db: &Db,
    builderids: &[i64],
    branches: &[&str],
    count: usize,
) -> DbResult<Vec<(String, String)>> {
    let mut found: Vec<(String, String)> = Vec::new();
    if builderids.is_empty() || count == 0 {
        return Ok(found);
    }
    let mut page = (count * 4).max(100);
    let mut before = i64::MAX;
    loop {
        let mut binds = Binds::default();
        let marks = binds.list(builderids.iter().map(|id| Bind::Int(*id)));
        let below = binds.add(Bind::Int(before));
        let sql = format!(
            "SELECT builds.id, ss.id, COALESCE(ss.branch, ''), COALESCE(ss.revision, '') \
             FROM (SELECT id, buildrequestid FROM builds WHERE builderid IN ({marks}) \
             AND id < {below} ORDER BY id DESC LIMIT {page}) AS builds \
             LEFT JOIN buildrequests br ON br.id = builds.buildrequestid \
             LEFT JOIN buildset_sourcestamps bss ON bss.buildsetid = br.buildsetid \
             LEFT JOIN sourcestamps ss ON ss.id = bss.sourcestampid \
             ORDER BY builds.id DESC, ss.id"
        );
        let rows = bind_all(sqlx::query(&sql), &binds.0)
            .fetch_all(&db.pool)
            .await?;
        let mut builds_read = 0;
        for row in &rows {
            let id: i64 = row.try_get(0)?;
            if id != before {
                builds_read += 1;
                before = id;
            }
            if row.try_get::<Option<i64>, _>(1)?.is_none() {
                continue;
            }
            let at: (String, String) = (row.try_get(2)?, row.try_get(3)?);
            let on_branch = branches.is_empty() || branches.contains(&at.0.as_str());
            if on_branch && !found.contains(&at) {
                found.push(at);
                if found.len() == count {
                    return Ok(found);
                }
            }
        }
        if builds_read < page {
            return Ok(found);
        }
        page *= 4;
    }
}

/// Which of these builds have a step with the result `code`.
pub async fn builds_with_step_results(db: &Db, buildids: &[i64], code: i64) -> DbResult<Vec<i64>> {
    if buildids.is_empty() {
        return Ok(Vec::new());
    }
    let mut binds = Binds::default();
    let marks = binds.list(buildids.iter().map(|id| Bind::Int(*id)));
    let result = binds.add(Bind::Int(code));
    let sql = format!(
        "SELECT DISTINCT buildid FROM steps WHERE buildid IN ({marks}) AND results = {result}"
    );
    let rows = bind_all(sqlx::query(&sql), &binds.0)
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}

/// The builds of these builders made from any of these revisions (`(branch, revision)`,
/// none read as `''`), as `(buildid, (branch, revision))` in build order: found from the
/// sourcestamps of those revisions, so only their builds are read.
pub async fn builds_of_revisions(
    db: &Db,
    builderids: &[i64],
    revisions: &[(String, String)],
) -> DbResult<Vec<(i64, (String, String))>> {
    if builderids.is_empty() || revisions.is_empty() {
        return Ok(Vec::new());
    }
    let mut binds = Binds::default();
    let builders = binds.list(builderids.iter().map(|id| Bind::Int(*id)));
    let named: Vec<Bind> = revisions
        .iter()
        .filter(|(_, r)| !r.is_empty())
        .map(|(_, r)| Bind::Text(r.clone()))
        .collect();
    let mut wanted = Vec::new();
    if !named.is_empty() {
        wanted.push(format!("ss.revision IN ({})", binds.list(named)));
    }
    if revisions.iter().any(|(_, r)| r.is_empty()) {
        wanted.push("ss.revision IS NULL OR ss.revision = ''".to_string());
    }
    let sql = format!(
        "SELECT builds.id, COALESCE(ss.branch, ''), COALESCE(ss.revision, '') \
         FROM sourcestamps ss \
         JOIN buildset_sourcestamps bss ON bss.sourcestampid = ss.id \
         JOIN buildrequests br ON br.buildsetid = bss.buildsetid \
         JOIN builds ON builds.buildrequestid = br.id \
         WHERE ({}) AND builds.builderid IN ({builders}) ORDER BY builds.id",
        wanted.join(" OR ")
    );
    let rows = bind_all(sqlx::query(&sql), &binds.0)
        .fetch_all(&db.pool)
        .await?;
    let mut found = Vec::new();
    for row in &rows {
        let at: (String, String) = (row.try_get(1)?, row.try_get(2)?);
        if revisions.contains(&at) {
            found.push((row.try_get(0)?, at));
        }
    }
    Ok(found)
}

/// Which of these build requests are for a sourcestamp on one of `branches`.
pub async fn requests_on_branches(
    db: &Db,
    requestids: &[i64],
    branches: &[&str],
) -> DbResult<Vec<i64>> {
    if requestids.is_empty() || branches.is_empty() {
        return Ok(Vec::new());
    }
    let mut binds = Binds::default();
    let marks = binds.list(requestids.iter().map(|id| Bind::Int(*id)));
    let names = binds.list(branches.iter().map(|b| Bind::Text(b.to_string())));
    let sql = format!(
        "SELECT DISTINCT br.id FROM buildrequests br \
         JOIN buildset_sourcestamps bss ON bss.buildsetid = br.buildsetid \
         JOIN sourcestamps ss ON ss.id = bss.sourcestampid \
         WHERE br.id IN ({marks}) AND ss.branch IN ({names})"
    );
    let rows = bind_all(sqlx::query(&sql), &binds.0)
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}

/// The requests of these builders waiting for a build (neither claimed nor complete), as
/// `(buildrequestid, builderid)` in no order: through the partial index of unfinished
/// requests, however many finished ones are stored (a bound `complete = $1` would not let
/// SQLite use it).
pub async fn waiting_requests(db: &Db, builderids: &[i64]) -> DbResult<Vec<(i64, i64)>> {
    if builderids.is_empty() {
        return Ok(Vec::new());
    }
    let mut binds = Binds::default();
    let marks = binds.list(builderids.iter().map(|id| Bind::Int(*id)));
    let sql = format!(
        "SELECT id, builderid FROM buildrequests WHERE builderid IN ({marks}) \
         AND complete = 0 AND claimed_by_masterid IS NULL"
    );
    let rows = bind_all(sqlx::query(&sql), &binds.0)
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// The conditions on `at` of events from second `from` to second `until` included.
fn at_window(binds: &mut Binds, from: Option<i64>, until: Option<i64>) -> Vec<String> {
    let mut conditions = Vec::new();
    if let Some(from) = from {
        conditions.push(format!("at >= {}", binds.add(Bind::Int(from))));
    }
    if let Some(until) = until {
        conditions.push(format!("at < {}", binds.add(Bind::Int(until + 1))));
    }
    conditions
}

/// A waterfall event: a worker connecting or disconnecting, for the columns of the
/// builders it serves, or a master starting or reconfiguring, for every column.
pub struct Event {
    /// Seconds since the epoch.
    pub at: f64,
    /// `connect`, `disconnect`, `started` or `reconfig`.
    pub event: String,
    /// The worker's name, `None` for a master's event.
    pub worker: Option<String>,
    /// Those of the builders asked that the worker serves.
    pub builderids: Vec<i64>,
}

/// The newest `limit` connects and disconnects of the workers serving `builderids`, at or
/// after second `from` and at or before second `until` when given, newest first: an index
/// walk per worker, each bounded by the window and the limit.
pub async fn worker_events(
    db: &Db,
    builderids: &[i64],
    from: Option<i64>,
    until: Option<i64>,
    limit: usize,
) -> DbResult<Vec<Event>> {
    if builderids.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let mut binds = Binds::default();
    let marks = binds.list(builderids.iter().map(|id| Bind::Int(*id)));
    let sql = format!(
        "SELECT bw.workerid, w.name, bw.builderid FROM builder_workers bw \
         JOIN workers w ON w.id = bw.workerid WHERE bw.builderid IN ({marks}) \
         ORDER BY bw.workerid, bw.builderid"
    );
    let serving: Vec<(i64, String, i64)> = bind_all(sqlx::query(&sql), &binds.0)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect::<DbResult<_>>()?;
    let mut workerids: Vec<i64> = serving.iter().map(|(id, ..)| *id).collect();
    workerids.dedup();
    let mut binds = Binds::default();
    let window: String = at_window(&mut binds, from, until)
        .iter()
        .map(|condition| format!(" AND {condition}"))
        .collect();
    let rows = per_id(
        db,
        &workerids,
        &binds,
        |worker| {
            format!(
                "SELECT id, workerid, event, at FROM worker_events \
                 WHERE workerid = {worker}{window} ORDER BY at DESC, id DESC LIMIT {limit}"
            )
        },
        |union| {
            format!(
                "SELECT workerid, event, at FROM {union} ORDER BY at DESC, id DESC LIMIT {limit}"
            )
        },
    )
    .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        let workerid: i64 = row.try_get(0)?;
        let mine = serving.iter().filter(|(id, ..)| *id == workerid);
        events.push(Event {
            event: row.try_get(1)?,
            at: row.try_get(2)?,
            worker: mine.clone().map(|(_, name, _)| name.clone()).next(),
            builderids: mine.map(|(.., builderid)| *builderid).collect(),
        });
    }
    // Several statements (many workers) each answer their newest.
    events.sort_by(|a, b| b.at.total_cmp(&a.at));
    events.truncate(limit);
    Ok(events)
}

/// The newest `limit` starts and reconfigs of the masters, in the same window as
/// [`worker_events`], newest first.
pub async fn master_events(
    db: &Db,
    from: Option<i64>,
    until: Option<i64>,
    limit: usize,
) -> DbResult<Vec<Event>> {
    let mut binds = Binds::default();
    let window = at_window(&mut binds, from, until);
    let filter = if window.is_empty() {
        String::new()
    } else {
        format!("WHERE {} ", window.join(" AND "))
    };
    let sql = format!(
        "SELECT event, at FROM master_events {filter}ORDER BY at DESC, id DESC LIMIT {limit}"
    );
    bind_all(sqlx::query(&sql), &binds.0)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(Event {
                event: row.try_get(0)?,
                at: row.try_get(1)?,
                worker: None,
                builderids: Vec::new(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_values_match_as_pythons_str_writes_them() {
        assert_eq!(property_texts("ann"), [r#""ann""#]);
        assert_eq!(property_texts("True"), [r#""True""#, "true"]);
        assert_eq!(property_texts("true"), [r#""true""#, "true"]);
        assert_eq!(property_texts("3"), [r#""3""#, "3"]);
        assert_eq!(
            property_texts(r#"["a",1]"#),
            [r#""[\"a\",1]""#, r#"["a",1]"#]
        );
        assert_eq!(
            property_texts("null"),
            [r#""null""#],
            "a null never matches"
        );
        assert_eq!(property_texts(r#""x""#), [r#""\"x\"""#]);
    }
}
