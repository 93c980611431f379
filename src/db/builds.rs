//! Build requests as builders take them, builds, their properties and steps.

use std::collections::{BTreeMap, HashMap};

use sqlx::Row;

use super::registry::{claimed_schedulers, Claimant};
use super::{now, Batch, Bind, Db, DbResult, Recorded};
use crate::model::{BuildResult, Properties};

/// An unclaimed build request, with what collapsing and ordering look at.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingRequest {
    pub id: i64,
    pub buildsetid: i64,
    pub priority: i64,
    pub submitted_at: f64,
}

impl Db {
    /// The unclaimed, incomplete requests of a builder, the one to build first first
    /// (highest priority, then oldest), as Buildbot's default `nextBuild` orders them.
    pub async fn pending_requests(&self, builderid: i64) -> DbResult<Vec<PendingRequest>> {
        let rows = self
            .read(
                "SELECT id, buildsetid, priority, submitted_at FROM buildrequests \
                 WHERE builderid = $1 AND complete = 0 AND claimed_by_masterid IS NULL \
                 ORDER BY priority DESC, submitted_at, id",
                &[builderid.into()],
            )
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(PendingRequest {
                    id: row.try_get(0)?,
                    buildsetid: row.try_get(1)?,
                    priority: row.try_get(2)?,
                    submitted_at: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// The unclaimed, incomplete requests of every builder whose buildset holds the
    /// sourcestamp of change `changeid`.
    pub async fn pending_requests_with_change(
        &self,
        changeid: i64,
    ) -> DbResult<Vec<PendingRequest>> {
        let rows = sqlx::query(
            "SELECT r.id, r.buildsetid, r.priority, r.submitted_at FROM buildrequests r \
             JOIN buildset_sourcestamps bs ON bs.buildsetid = r.buildsetid \
             JOIN changes c ON c.sourcestampid = bs.sourcestampid \
             WHERE c.changeid = $1 AND r.complete = 0 AND r.claimed_by_masterid IS NULL \
             ORDER BY r.id",
        )
        .bind(changeid)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(PendingRequest {
                    id: row.try_get(0)?,
                    buildsetid: row.try_get(1)?,
                    priority: row.try_get(2)?,
                    submitted_at: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// The unclaimed, incomplete requests of each of `builders`, at most `first` of each,
    /// in the order of [`Db::pending_requests`]: one statement for all the builders a
    /// finished build may let start, rather than a look for the builders with work and
    /// then one per builder.
    pub async fn pending_requests_of(
        &self,
        builders: &[i64],
        first: i64,
    ) -> DbResult<BTreeMap<i64, Vec<PendingRequest>>> {
        let placeholders = (0..builders.len())
            .map(|n| format!("${}", n + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT builderid, id, buildsetid, priority, submitted_at FROM (\
             SELECT builderid, id, buildsetid, priority, submitted_at, ROW_NUMBER() OVER (\
             PARTITION BY builderid ORDER BY priority DESC, submitted_at, id) AS place \
             FROM buildrequests WHERE complete = 0 AND claimed_by_masterid IS NULL \
             AND builderid IN ({placeholders})) AS queued WHERE place <= $1 \
             ORDER BY builderid, place"
        );
        let params: Vec<Bind> = std::iter::once(first)
            .chain(builders.iter().copied())
            .map(Bind::from)
            .collect();
        let mut pending: BTreeMap<i64, Vec<PendingRequest>> = BTreeMap::new();
        for row in self.read(&sql, &params).await? {
            pending
                .entry(row.try_get(0)?)
                .or_default()
                .push(PendingRequest {
                    id: row.try_get(1)?,
                    buildsetid: row.try_get(2)?,
                    priority: row.try_get(3)?,
                    submitted_at: row.try_get(4)?,
                });
        }
        Ok(pending)
    }

    /// Claims requests for this master; false when another claim got there first.
    pub async fn claim_requests(&self, ids: &[i64], masterid: i64) -> DbResult<bool> {
        let mut tx = self.begin_write().await?;
        let claimed_at = now();
        for id in ids {
            let done = sqlx::query(
                "UPDATE buildrequests SET claimed_by_masterid = $1, claimed_at = $2 \
                 WHERE id = $3 AND claimed_by_masterid IS NULL AND complete = 0",
            )
            .bind(masterid)
            .bind(claimed_at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Gives requests back to the queue (a build that could not start, or one to retry).
    pub async fn unclaim_requests(&self, ids: &[i64]) -> DbResult<()> {
        for id in ids {
            sqlx::query(
                "UPDATE buildrequests SET claimed_by_masterid = NULL, claimed_at = NULL \
                 WHERE id = $1 AND complete = 0",
            )
            .bind(id)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Stores every property of a build, replacing earlier values.
    pub async fn set_build_properties(
        &self,
        buildid: i64,
        properties: &Properties,
    ) -> DbResult<()> {
        let mut batch = Batch::new();
        push_build_properties(&mut batch, buildid, properties);
        if !batch.is_empty() {
            batch.run(self).await?;
        }
        Ok(())
    }

    pub async fn build_properties(&self, buildid: i64) -> DbResult<Properties> {
        let rows = self
            .read(
                "SELECT name, value, source FROM build_properties WHERE buildid = $1",
                &[buildid.into()],
            )
            .await?;
        let rows = rows
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .collect::<Result<Vec<(String, String, String)>, sqlx::Error>>()?;
        Ok(super::properties_from_rows(rows))
    }

    /// The buildset of a build's request and the build's request id.
    pub async fn build_request_of(&self, buildid: i64) -> DbResult<(i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT r.buildsetid, r.id FROM builds b JOIN buildrequests r ON r.id = b.buildrequestid \
             WHERE b.id = $1",
        )
        .bind(buildid)
        .fetch_one(&self.pool)
        .await?)
    }
}

/// Adds the writes that store `properties` of build `buildid`, replacing earlier values, to
/// `batch`: one statement for up to [`super::ROWS_PER_INSERT`] of them, as a round trip
/// costs more than a row. A build's properties go with the build's next write this way.
pub fn push_build_properties(batch: &mut Batch, buildid: i64, properties: &Properties) {
    let rows = super::property_rows(properties);
    for chunk in rows.chunks(super::ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO build_properties (buildid, name, value, source) VALUES {} \
             ON CONFLICT (buildid, name) DO UPDATE SET value = excluded.value, source = excluded.source",
            super::values_placeholders(chunk.len(), 1, 3)
        );
        let mut params = Vec::with_capacity(1 + 3 * chunk.len());
        params.push(buildid.into());
        for (name, value, source) in chunk {
            params.extend([(*name).into(), value.as_str().into(), (*source).into()]);
        }
        batch.push(sql, params);
    }
}

impl Db {
    /// The sourcestamp ids of a buildset, which a rebuild reuses.
    pub async fn buildset_sourcestamp_ids(&self, bsid: i64) -> DbResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT sourcestampid FROM buildset_sourcestamps WHERE buildsetid = $1 ORDER BY sourcestampid",
        )
        .bind(bsid)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The builder a build ran on.
    pub async fn builder_of_build(&self, buildid: i64) -> DbResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT builderid FROM builds WHERE id = $1")
                .bind(buildid)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

impl Db {
    /// A buildset's result once it is complete.
    pub async fn buildset_result(&self, bsid: i64) -> DbResult<Option<BuildResult>> {
        let row: Option<(i64, Option<i64>)> =
            sqlx::query_as("SELECT complete, results FROM buildsets WHERE id = $1")
                .bind(bsid)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some((1, results)) => Some(
                results
                    .and_then(BuildResult::from_code)
                    .unwrap_or(BuildResult::Success),
            ),
            _ => None,
        })
    }
}

impl Db {
    /// A request still waiting for a builder, with its builder's id.
    pub async fn pending_request(&self, id: i64) -> DbResult<Option<(i64, PendingRequest)>> {
        let row = sqlx::query(
            "SELECT builderid, buildsetid, priority, submitted_at FROM buildrequests \
             WHERE id = $1 AND complete = 0 AND claimed_by_masterid IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok((
                row.try_get(0)?,
                PendingRequest {
                    id,
                    buildsetid: row.try_get(1)?,
                    priority: row.try_get(2)?,
                    submitted_at: row.try_get(3)?,
                },
            ))
        })
        .transpose()
    }
}

impl Db {
    /// Registers the master `name` (its row is made at its first start) as active, and
    /// recovers what its last run left: after a crash, the builds it left running are
    /// finished as RETRY (with their steps and logs closed) and the requests it had claimed
    /// go back to the queue, as Buildbot does. In the same round trip it claims the stored
    /// ones among `schedulers` ([`Db::push_scheduler_claims`]) and reads what is recorded
    /// of the builders and workers ([`Db::push_recorded`]), which the start would otherwise
    /// wait for one by one. A start waits for it: after a clean stop, which leaves nothing
    /// to recover, it is one round trip; the recovery's four statements, each prepared at
    /// its first use, only follow a crash.
    pub async fn start_master(
        &self,
        name: &str,
        schedulers: &[(&str, bool)],
    ) -> DbResult<StartedMaster> {
        const MASTER: &str = "(SELECT id FROM masters WHERE name = $1)";
        let mut batch = Batch::new();
        batch
            .push(
                "INSERT INTO masters (name, last_active, active) VALUES ($1, $2, 1) \
                 ON CONFLICT (name) DO UPDATE SET active = 1, \
                 last_active = excluded.last_active RETURNING id",
                vec![name.into(), now().into()],
            )
            .push(
                format!(
                    "SELECT 1 WHERE EXISTS (SELECT 1 FROM buildrequests WHERE complete = 0 \
                     AND claimed_by_masterid = {MASTER}) OR EXISTS ({})",
                    interrupted_builds(MASTER)
                ),
                vec![name.into()],
            );
        Db::push_recorded(&mut batch);
        Db::push_scheduler_claims(&mut batch, Claimant::Named(name), schedulers);
        let answers = batch.run(self).await?;
        let masterid = answers[0]
            .first()
            .ok_or_else(|| super::DbError::NotFound(format!("master '{name}'")))?
            .try_get::<i64, _>(0)?;
        let recorded = Recorded::from_rows(&answers[2], &answers[3])?;
        let schedulers = match answers.get(4) {
            Some(rows) => claimed_schedulers(rows)?,
            None => HashMap::new(),
        };
        let interrupted = if answers[1].is_empty() {
            Vec::new()
        } else {
            self.recover_master(masterid).await?
        };
        Ok(StartedMaster {
            masterid,
            interrupted,
            recorded,
            schedulers,
        })
    }

    /// Finishes as RETRY the builds master `masterid` left running (their steps and logs
    /// closed) and puts the requests it had claimed back in the queue; answers the builds.
    async fn recover_master(&self, masterid: i64) -> DbResult<Vec<i64>> {
        let (now, retry) = (now(), BuildResult::Retry.code());
        let interrupted = interrupted_builds("$1");
        let mut batch = Batch::new();
        batch
            .push(
                format!(
                    "UPDATE logs SET complete = 1 WHERE complete = 0 AND stepid IN \
                     (SELECT id FROM steps WHERE buildid IN ({interrupted}))"
                ),
                vec![masterid.into()],
            )
            .push(
                format!(
                    "UPDATE steps SET complete_at = $2, results = $3, \
                     state_string = state_string || ' (interrupted)' \
                     WHERE complete_at IS NULL AND buildid IN ({interrupted})"
                ),
                vec![masterid.into(), now.into(), retry.into()],
            )
            .push(
                format!(
                    "UPDATE builds SET complete_at = $2, results = $3, \
                     state_string = 'interrupted: the master stopped while it ran' \
                     WHERE id IN ({interrupted}) RETURNING id"
                ),
                vec![masterid.into(), now.into(), retry.into()],
            )
            .push(
                "UPDATE buildrequests SET claimed_by_masterid = NULL, claimed_at = NULL \
                 WHERE complete = 0 AND claimed_by_masterid = $1",
                vec![masterid.into()],
            );
        let answers = batch.run(self).await?;
        let mut builds = answers[2]
            .iter()
            .map(|row| row.try_get::<i64, _>(0))
            .collect::<Result<Vec<_>, _>>()?;
        builds.sort_unstable();
        Ok(builds)
    }

    /// Records the outcome of the last start or reconfig, which `/api/v2/masters` shows.
    pub async fn set_last_reconfig(&self, masterid: i64, outcome: &str) -> DbResult<()> {
        sqlx::query("UPDATE masters SET last_reconfig = $1 WHERE id = $2")
            .bind(outcome)
            .bind(masterid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// What [`Db::start_master`] found and did.
pub struct StartedMaster {
    pub masterid: i64,
    /// The builds the last run left running, finished as RETRY.
    pub interrupted: Vec<i64>,
    pub recorded: Recorded,
    /// The schedulers claimed, by name; one not stored yet is not among them.
    pub schedulers: HashMap<String, i64>,
}

/// The builds of master `master` (an SQL expression) not finished. Through the builders,
/// so that the `(builderid, complete_at)` index answers it: a plain `complete_at IS NULL`
/// reads every build ever stored at each start.
fn interrupted_builds(master: &str) -> String {
    format!(
        "SELECT id FROM builds WHERE builderid IN (SELECT id FROM builders) \
         AND complete_at IS NULL AND masterid = {master}"
    )
}
