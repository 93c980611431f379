//! The named things a config defines (masters, builders, workers, schedulers, change
//! sources): each gets a stable id the first time its name is seen.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::events::{self, WorkerEvent, Workers};
use super::{Batch, Bind, Db, DbResult};

impl Db {
    /// The id of the named row in `table` (`builders`, `workers`, `schedulers`,
    /// `changesources`, `masters`), created if it is new.
    async fn id_for_name(&self, table: &'static str, name: &str, insert: &str) -> DbResult<i64> {
        let select = format!("SELECT id FROM {table} WHERE name = $1");
        if let Some(id) = sqlx::query_scalar(&select)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
        {
            return Ok(id);
        }
        sqlx::query(insert)
            .bind(name)
            .bind(super::now())
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar(&select)
            .bind(name)
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn builder_id(&self, name: &str) -> DbResult<i64> {
        self.id_for_name(
            "builders",
            name,
            "INSERT INTO builders (name) SELECT $1 WHERE $2 = $2 ON CONFLICT (name) DO NOTHING",
        )
        .await
    }

    /// What storage holds of every builder and worker, for [`Db::record_builder`] and
    /// [`Db::recorded_worker_id`]: two reads where a builder by builder check would take
    /// several statements each. A start reads it in its master's round trip instead
    /// ([`Db::push_recorded`]).
    pub async fn recorded(&self) -> DbResult<Recorded> {
        let builders = sqlx::query(RECORDED_BUILDERS).fetch_all(&self.pool).await?;
        let workers = sqlx::query(RECORDED_WORKERS).fetch_all(&self.pool).await?;
        Recorded::from_rows(&builders, &workers)
    }

    /// Adds [`Db::recorded`]'s two reads to `batch`; [`Recorded::from_rows`] takes their
    /// answers.
    pub(super) fn push_recorded(batch: &mut Batch) {
        batch
            .push(RECORDED_BUILDERS, Vec::new())
            .push(RECORDED_WORKERS, Vec::new());
    }

    /// The id of worker `name`, from `recorded` when it was there.
    pub async fn recorded_worker_id(&self, recorded: &Recorded, name: &str) -> DbResult<i64> {
        match recorded.workers.get(name) {
            Some(id) => Ok(*id),
            None => self.worker_id(name).await,
        }
    }

    /// The id of builder `name`, with its description, tags and workers recorded; a builder
    /// that `recorded` shows as already recorded so (every builder at an ordinary start)
    /// costs no statement.
    pub async fn record_builder(
        &self,
        recorded: &Recorded,
        name: &str,
        description: Option<&str>,
        tags: &[String],
        worker_ids: &[i64],
    ) -> DbResult<i64> {
        if let Some(record) = recorded.builders.get(name) {
            let mut wanted = worker_ids.to_vec();
            wanted.sort_unstable();
            if record.active
                && record.description.as_deref() == description
                && record.tags == tags_json(tags)
                && record.worker_ids == wanted
            {
                return Ok(record.id);
            }
        }
        let id = self.builder_id(name).await?;
        self.update_builder(id, description, tags, worker_ids)
            .await?;
        Ok(id)
    }

    /// Records what the config says of a builder: its description, tags and workers.
    pub async fn update_builder(
        &self,
        builderid: i64,
        description: Option<&str>,
        tags: &[String],
        worker_ids: &[i64],
    ) -> DbResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE builders SET description = $1, tags = $2, active = 1 WHERE id = $3")
            .bind(description)
            .bind(tags_json(tags))
            .bind(builderid)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM builder_workers WHERE builderid = $1")
            .bind(builderid)
            .execute(&mut *tx)
            .await?;
        for workerid in worker_ids {
            sqlx::query("INSERT INTO builder_workers (builderid, workerid) VALUES ($1, $2)")
                .bind(builderid)
                .bind(workerid)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records the worker attached to `masterid` (`None`: detached), as its `connected_to`,
    /// and the event (`connect`, `disconnect`) with its time.
    pub async fn set_worker_connected(&self, workerid: i64, masterid: Option<i64>) -> DbResult<()> {
        let mut batch = Batch::new();
        self.push_worker_connected(&mut batch, workerid, masterid);
        batch.run(self).await?;
        Ok(())
    }

    /// [`Db::set_worker_connected`] as part of `batch`.
    pub fn push_worker_connected(&self, batch: &mut Batch, workerid: i64, masterid: Option<i64>) {
        batch.push(
            "UPDATE workers SET connected_masterid = $1 WHERE id = $2",
            vec![masterid.into(), workerid.into()],
        );
        let event = match masterid {
            Some(_) => WorkerEvent::Connect,
            None => WorkerEvent::Disconnect,
        };
        let workers = Workers::One(workerid);
        events::push_worker_event(batch, event, workers, &self.event_horizon, super::now());
    }

    /// Records what a worker said about itself when it attached (`workerinfo` in the API).
    pub async fn set_worker_info(&self, workerid: i64, info: &serde_json::Value) -> DbResult<()> {
        sqlx::query("UPDATE workers SET info = $1 WHERE id = $2")
            .bind(info.to_string())
            .bind(workerid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A worker's `paused` and `graceful` flags, as the web's controls set them.
    pub async fn set_worker_state(
        &self,
        workerid: i64,
        paused: bool,
        graceful: bool,
    ) -> DbResult<()> {
        let mut batch = Batch::new();
        self.push_worker_state(&mut batch, workerid, paused, graceful);
        batch.run(self).await?;
        Ok(())
    }

    /// [`Db::set_worker_state`] as part of `batch`.
    pub fn push_worker_state(
        &self,
        batch: &mut Batch,
        workerid: i64,
        paused: bool,
        graceful: bool,
    ) {
        batch.push(
            "UPDATE workers SET paused = $1, graceful = $2 WHERE id = $3",
            vec![
                i64::from(paused).into(),
                i64::from(graceful).into(),
                workerid.into(),
            ],
        );
    }

    /// Adds to `batch` the detaching of every worker attached to `masterid`, as a master
    /// that starts after a crash finds them: their disconnect is recorded as happening now,
    /// when it is known.
    pub fn push_disconnect_workers_of(&self, batch: &mut Batch, masterid: i64) {
        let workers = Workers::AttachedTo(masterid);
        let (event, at) = (WorkerEvent::Disconnect, super::now());
        events::push_worker_event(batch, event, workers, &self.event_horizon, at);
        batch.push(
            "UPDATE workers SET connected_masterid = NULL WHERE connected_masterid = $1",
            vec![masterid.into()],
        );
    }

    pub async fn worker_id(&self, name: &str) -> DbResult<i64> {
        self.id_for_name(
            "workers",
            name,
            "INSERT INTO workers (name) SELECT $1 WHERE $2 = $2 ON CONFLICT (name) DO NOTHING",
        )
        .await
    }

    pub async fn scheduler_id(&self, name: &str) -> DbResult<i64> {
        self.id_for_name(
            "schedulers",
            name,
            "INSERT INTO schedulers (name) SELECT $1 WHERE $2 = $2 ON CONFLICT (name) DO NOTHING",
        )
        .await
    }

    /// The scheduler `name`'s id, its row marked as run by `masterid`, and with
    /// `forget_classified` the changes an earlier run classified for it deleted: for one
    /// already stored (every start but the first), one round trip; on its first start, its
    /// row is made first.
    pub async fn claim_scheduler(
        &self,
        name: &str,
        masterid: i64,
        forget_classified: bool,
    ) -> DbResult<i64> {
        if let Some(id) = self
            .claim_stored_scheduler(name, masterid, forget_classified)
            .await?
        {
            return Ok(id);
        }
        self.scheduler_id(name).await?;
        self.claim_stored_scheduler(name, masterid, forget_classified)
            .await?
            .ok_or_else(|| super::DbError::NotFound(format!("scheduler '{name}'")))
    }

    /// Adds to `batch` the claims of the stored schedulers among `schedulers` (a name,
    /// and whether it forgets the changes an earlier run classified for it) for `claimant`:
    /// each marked as that master's, and the classified changes of those that forget them
    /// deleted, in one statement or two. The answer ([`claimed_schedulers`]) leaves out
    /// those not stored yet.
    pub(super) fn push_scheduler_claims(
        batch: &mut Batch,
        claimant: Claimant,
        schedulers: &[(&str, bool)],
    ) {
        if schedulers.is_empty() {
            return;
        }
        let (all, mut binds) = name_list(schedulers.iter().map(|(name, _)| *name));
        let at = binds.len() + 1;
        let master = match claimant {
            Claimant::Id(id) => {
                binds.push(id.into());
                format!("${at}")
            }
            Claimant::Named(name) => {
                binds.push(name.into());
                format!("(SELECT id FROM masters WHERE name = ${at})")
            }
        };
        batch.push(
            format!(
                "UPDATE schedulers SET masterid = {master} WHERE name IN ({all}) \
                 RETURNING name, id"
            ),
            binds,
        );
        let forgetting = schedulers.iter().filter(|(_, forgets)| *forgets);
        let (forgetting, binds) = name_list(forgetting.map(|(name, _)| *name));
        if !binds.is_empty() {
            batch.push(
                format!(
                    "DELETE FROM scheduler_changes WHERE schedulerid IN \
                     (SELECT id FROM schedulers WHERE name IN ({forgetting}))"
                ),
                binds,
            );
        }
    }

    async fn claim_stored_scheduler(
        &self,
        name: &str,
        masterid: i64,
        forget_classified: bool,
    ) -> DbResult<Option<i64>> {
        let mut batch = Batch::new();
        let claim = [(name, forget_classified)];
        Db::push_scheduler_claims(&mut batch, Claimant::Id(masterid), &claim);
        let answers = batch.run(self).await?;
        Ok(claimed_schedulers(&answers[0])?.remove(name))
    }

    pub async fn changesource_id(&self, name: &str) -> DbResult<i64> {
        self.id_for_name(
            "changesources",
            name,
            "INSERT INTO changesources (name) SELECT $1 WHERE $2 = $2 ON CONFLICT (name) DO NOTHING",
        )
        .await
    }
}

/// The master that claims schedulers ([`Db::push_scheduler_claims`]): by its id, or by its
/// name in the round trip that registers it.
pub(super) enum Claimant<'a> {
    Id(i64),
    Named(&'a str),
}

/// `$1, $2, ..` for `names`, and their values.
fn name_list<'a>(names: impl Iterator<Item = &'a str>) -> (String, Vec<Bind>) {
    let binds: Vec<Bind> = names.map(Bind::from).collect();
    let placeholders: Vec<String> = (1..=binds.len()).map(|i| format!("${i}")).collect();
    (placeholders.join(", "), binds)
}

/// The ids of the schedulers a [`Db::push_scheduler_claims`] claimed, by name, from its
/// first statement's rows.
pub(super) fn claimed_schedulers(rows: &[AnyRow]) -> DbResult<HashMap<String, i64>> {
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

impl Db {
    /// Marks the master running (or not), as `/api/v2/masters` shows it.
    pub async fn set_master_active(&self, masterid: i64, active: bool) -> DbResult<()> {
        sqlx::query("UPDATE masters SET active = $1, last_active = $2 WHERE id = $3")
            .bind(active as i64)
            .bind(super::now())
            .bind(masterid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

const RECORDED_BUILDERS: &str = "SELECT b.id, b.name, b.description, b.tags, b.active, \
     w.workerid FROM builders b LEFT JOIN builder_workers w ON w.builderid = b.id";
const RECORDED_WORKERS: &str = "SELECT id, name FROM workers";

/// Builders and workers as storage holds them, by name ([`Db::recorded`]).
pub struct Recorded {
    builders: HashMap<String, RecordedBuilder>,
    workers: HashMap<String, i64>,
}

impl Recorded {
    /// From the rows of [`Db::recorded`]'s two reads.
    pub(super) fn from_rows(builder_rows: &[AnyRow], worker_rows: &[AnyRow]) -> DbResult<Recorded> {
        let mut builders: HashMap<String, RecordedBuilder> = HashMap::new();
        for row in builder_rows {
            let record = match builders.entry(row.try_get(1)?) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => entry.insert(RecordedBuilder {
                    id: row.try_get(0)?,
                    description: row.try_get(2)?,
                    tags: row.try_get(3)?,
                    active: row.try_get::<i64, _>(4)? != 0,
                    worker_ids: Vec::new(),
                }),
            };
            record.worker_ids.extend(row.try_get::<Option<i64>, _>(5)?);
        }
        for record in builders.values_mut() {
            record.worker_ids.sort_unstable();
        }
        let workers = worker_rows
            .iter()
            .map(|row| Ok((row.try_get(1)?, row.try_get(0)?)))
            .collect::<DbResult<_>>()?;
        Ok(Recorded { builders, workers })
    }
}

struct RecordedBuilder {
    id: i64,
    description: Option<String>,
    /// As stored: a JSON list.
    tags: String,
    active: bool,
    /// Sorted.
    worker_ids: Vec<i64>,
}

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())
}

impl Db {
    /// Marks builders the running config no longer defines; their history stays.
    pub async fn deactivate_builders(&self, ids: &[i64]) -> DbResult<()> {
        for id in ids {
            sqlx::query("UPDATE builders SET active = 0 WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}
