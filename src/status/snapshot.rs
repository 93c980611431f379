//! Status objects from storage: the `BuildInfo` snapshots Lua callbacks and status targets
//! receive, with log text and earlier builds read only when a callback asks for them.

use std::sync::Arc;

use sqlx::Row;
use tokio::runtime::Handle;

use crate::db::{Db, DbError, DbResult};
use crate::model::{
    BuildHistory, BuildInfo, BuildResult, BuilderInfo, LogInfo, LogSource, StepInfo,
};

/// Takes a snapshot of a build as it is stored now.
pub async fn build_info(db: &Db, buildid: i64) -> DbResult<BuildInfo> {
    BuildRow::read(db, buildid).await?.build_info(db).await
}

/// A build's own row, joined with its builder, worker and buildset: enough to decide
/// whether a status target reports it, before the rest of its snapshot is read.
pub struct BuildRow {
    buildid: i64,
    bsid: i64,
    pub builder: BuilderInfo,
    pub results: Option<BuildResult>,
    number: i64,
    reason: String,
    state: String,
    started_at: f64,
    complete_at: Option<f64>,
    worker_name: String,
}

impl BuildRow {
    /// The build as it started: not finished, whatever storage holds now.
    pub fn as_started(&mut self) {
        self.results = None;
        self.complete_at = None;
    }

    pub async fn read(db: &Db, buildid: i64) -> DbResult<BuildRow> {
        let row = db
            .read(
                "SELECT b.number, b.builderid, b.started_at, b.complete_at, b.state_string, \
                 b.results, r.buildsetid, s.reason, bl.name AS builder, bl.tags, \
                 w.name AS worker FROM builds b JOIN buildrequests r ON r.id = b.buildrequestid \
                 JOIN buildsets s ON s.id = r.buildsetid JOIN builders bl ON bl.id = b.builderid \
                 LEFT JOIN workers w ON w.id = b.workerid WHERE b.id = $1",
                &[buildid.into()],
            )
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| DbError::NotFound(format!("build {buildid}")))?;
        let tags: String = row.try_get("tags")?;
        let results: Option<i64> = row.try_get("results")?;
        Ok(BuildRow {
            buildid,
            bsid: row.try_get("buildsetid")?,
            builder: BuilderInfo {
                id: row.try_get("builderid")?,
                name: row.try_get("builder")?,
                tags: serde_json::from_str(&tags).unwrap_or_default(),
            },
            results: results.and_then(BuildResult::from_code),
            number: row.try_get("number")?,
            reason: row.try_get("reason")?,
            state: row.try_get("state_string")?,
            started_at: row.try_get("started_at")?,
            complete_at: row.try_get("complete_at")?,
            worker_name: row
                .try_get::<Option<String>, _>("worker")?
                .unwrap_or_default(),
        })
    }

    /// The snapshot: the row with the build's properties, sourcestamps, steps and logs.
    pub async fn build_info(self, db: &Db) -> DbResult<BuildInfo> {
        Ok(BuildInfo {
            properties: db.build_properties(self.buildid).await?,
            sourcestamps: db.buildset_sourcestamps(self.bsid).await?,
            steps: steps(db, self.buildid).await?,
            builder: self.builder,
            number: self.number,
            reason: self.reason,
            results: self.results,
            text: self.state.split_whitespace().map(String::from).collect(),
            started_at: self.started_at,
            complete_at: self.complete_at,
            worker_name: self.worker_name,
            history: Some(Arc::new(StoredHistory {
                db: db.clone(),
                runtime: Handle::current(),
            })),
        })
    }
}

/// The build's steps with their logs, in one statement: a row per log, or one with no log
/// for a step without logs.
async fn steps(db: &Db, buildid: i64) -> DbResult<Vec<StepInfo>> {
    let rows = db
        .read(
            "SELECT s.id, s.name, s.results, s.state_string, s.started_at, s.complete_at, \
             l.id AS logid, l.name AS logname, l.complete, l.type FROM steps s \
             LEFT JOIN logs l ON l.stepid = s.id WHERE s.buildid = $1 ORDER BY s.number, l.id",
            &[buildid.into()],
        )
        .await?;
    let mut steps: Vec<(i64, StepInfo)> = Vec::new();
    for row in rows {
        let stepid: i64 = row.try_get("id")?;
        if steps.last().is_none_or(|(last, _)| *last != stepid) {
            let state: String = row.try_get("state_string")?;
            let results: Option<i64> = row.try_get("results")?;
            let step = StepInfo {
                name: row.try_get("name")?,
                results: results.and_then(BuildResult::from_code),
                text: state.split_whitespace().map(String::from).collect(),
                started_at: row.try_get("started_at")?,
                complete_at: row.try_get("complete_at")?,
                logs: Vec::new(),
            };
            steps.push((stepid, step));
        }
        if let Some(logid) = row.try_get::<Option<i64>, _>("logid")? {
            let log_type: String = row.try_get("type")?;
            let log = LogInfo {
                name: row.try_get("logname")?,
                finished: row.try_get::<i64, _>("complete")? == 1,
                source: Arc::new(StoredLog {
                    db: db.clone(),
                    logid,
                    stdio: log_type == "s",
                    runtime: Handle::current(),
                }),
            };
            steps.last_mut().expect("pushed above").1.logs.push(log);
        }
    }
    Ok(steps.into_iter().map(|(_, step)| step).collect())
}

/// A log in storage. `text` runs on the script host's thread, outside the runtime, so it
/// may block on the query.
struct StoredLog {
    db: Db,
    logid: i64,
    stdio: bool,
    runtime: Handle,
}

impl LogSource for StoredLog {
    /// The log's text; for a stdio log, stdout and stderr without the header lines, as
    /// Buildbot 0.8's `getText` gives.
    fn text(&self) -> anyhow::Result<String> {
        let lines = self
            .runtime
            .block_on(self.db.log_lines(self.logid, 0, i64::MAX))?;
        if !self.stdio {
            return Ok(lines);
        }
        Ok(lines
            .split_inclusive('\n')
            .filter(|line| !line.starts_with('h'))
            .map(|line| line.get(1..).unwrap_or_default())
            .collect())
    }
}

/// The id and result of the most recent finished build of a builder numbered below
/// `number`.
pub async fn previous_finished(
    db: &Db,
    builderid: i64,
    number: i64,
) -> DbResult<Option<(i64, Option<BuildResult>)>> {
    let rows = db
        .read(
            "SELECT id, results FROM builds WHERE builderid = $1 AND number < $2 \
             AND complete_at IS NOT NULL ORDER BY number DESC LIMIT 1",
            &[builderid.into(), number.into()],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let results: Option<i64> = row.try_get(1)?;
    Ok(Some((
        row.try_get(0)?,
        results.and_then(BuildResult::from_code),
    )))
}

struct StoredHistory {
    db: Db,
    runtime: Handle,
}

impl BuildHistory for StoredHistory {
    fn previous_finished(
        &self,
        builder: &BuilderInfo,
        number: i64,
    ) -> anyhow::Result<Option<Arc<BuildInfo>>> {
        self.runtime.block_on(async {
            match previous_finished(&self.db, builder.id, number).await? {
                Some((id, _)) => Ok(Some(Arc::new(build_info(&self.db, id).await?))),
                None => Ok(None),
            }
        })
    }
}
