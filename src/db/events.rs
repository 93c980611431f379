//! Events other than builds, with their time, which 0.8's waterfall shows with
//! `show_events=true`: workers connecting to this master and disconnecting from it, each
//! written in the transaction that changes the worker's `connected_masterid`, so the
//! events and the state they tell of cannot disagree; and the master starting or taking a
//! new config.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{Batch, Db, DbResult};
use crate::config::DEFAULT_EVENT_HORIZON;

/// What happened to a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerEvent {
    Connect,
    Disconnect,
}

impl WorkerEvent {
    /// As stored, and as the waterfall names it (0.8's words).
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerEvent::Connect => "connect",
            WorkerEvent::Disconnect => "disconnect",
        }
    }
}

/// The workers an event happened to.
#[derive(Clone, Copy, Debug)]
pub(super) enum Workers {
    /// The worker of this id.
    One(i64),
    /// Those attached to this master.
    AttachedTo(i64),
}

impl Workers {
    /// The condition on `workers` selecting them, with `mark` for the id.
    fn condition(self, mark: &str) -> String {
        match self {
            Workers::One(_) => format!("id = {mark}"),
            Workers::AttachedTo(_) => format!("connected_masterid = {mark}"),
        }
    }

    fn id(self) -> i64 {
        match self {
            Workers::One(id) | Workers::AttachedTo(id) => id,
        }
    }
}

/// How many events of each worker and of each master are kept (`c['eventHorizon']`), shared
/// by every clone of a `Db` and changed by a reconfig.
#[derive(Clone, Debug)]
pub(super) struct Horizon(Arc<AtomicUsize>);

impl Default for Horizon {
    fn default() -> Self {
        Horizon(Arc::new(AtomicUsize::new(DEFAULT_EVENT_HORIZON)))
    }
}

impl Horizon {
    fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed) as i64
    }
}

/// Adds to `batch` the writing of `event` of `workers` at time `at`, and the deletion of
/// their events beyond the newest `horizon`: in the batch that changes the worker's
/// `connected_masterid`, so that storage never holds more than the horizon and one for a
/// worker, and pruning costs a walk over those few rows.
pub(super) fn push_worker_event(
    batch: &mut Batch,
    event: WorkerEvent,
    workers: Workers,
    horizon: &Horizon,
    at: f64,
) {
    batch
        .push(
            format!(
                "INSERT INTO worker_events (workerid, event, at) SELECT id, $1, $2 FROM workers \
                 WHERE {}",
                workers.condition("$3")
            ),
            vec![event.as_str().into(), at.into(), workers.id().into()],
        )
        .push(
            format!(
                "DELETE FROM worker_events WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() \
                 OVER (PARTITION BY workerid ORDER BY at DESC, id DESC) AS newer FROM \
                 worker_events WHERE workerid IN (SELECT id FROM workers WHERE {})) AS ranked \
                 WHERE newer > $2)",
                workers.condition("$1")
            ),
            vec![workers.id().into(), horizon.get().into()],
        );
}

/// What happened to a master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MasterEvent {
    Started,
    /// A reconfig that applied the new config completely.
    Reconfig,
}

impl MasterEvent {
    /// As stored, and as the waterfall names it.
    pub fn as_str(self) -> &'static str {
        match self {
            MasterEvent::Started => "started",
            MasterEvent::Reconfig => "reconfig",
        }
    }
}

impl Db {
    /// Keeps `events` events of each worker and each master from the next one written on
    /// (`c['eventHorizon']`, at least 1).
    pub fn set_event_horizon(&self, events: usize) {
        self.event_horizon.0.store(events.max(1), Ordering::Relaxed);
    }

    /// Records that master `masterid` has started (it is active since
    /// [`Db::start_master`]): its last reconfig `started`, and its `started` event, in one
    /// round trip to the database.
    pub async fn record_master_started(&self, masterid: i64) -> DbResult<()> {
        let now = super::now();
        let mut batch = Batch::new();
        batch.push(
            "UPDATE masters SET last_active = $1, last_reconfig = $2 WHERE id = $3",
            vec![now.into(), "started".into(), masterid.into()],
        );
        self.push_master_event(&mut batch, masterid, MasterEvent::Started, now);
        batch.run(self).await?;
        Ok(())
    }

    /// Records `event` of master `masterid` as happening now.
    pub async fn record_master_event(&self, masterid: i64, event: MasterEvent) -> DbResult<()> {
        let mut batch = Batch::new();
        self.push_master_event(&mut batch, masterid, event, super::now());
        batch.run(self).await?;
        Ok(())
    }

    /// Adds to `batch` the writing of `event` of master `masterid` at time `at`, and the
    /// deletion of its events beyond the newest `c['eventHorizon']`.
    fn push_master_event(&self, batch: &mut Batch, masterid: i64, event: MasterEvent, at: f64) {
        batch
            .push(
                "INSERT INTO master_events (masterid, event, at) VALUES ($1, $2, $3)",
                vec![masterid.into(), event.as_str().into(), at.into()],
            )
            .push(
                "DELETE FROM master_events WHERE id IN (SELECT id FROM (SELECT id, \
                 ROW_NUMBER() OVER (ORDER BY at DESC, id DESC) AS newer FROM master_events \
                 WHERE masterid = $1) AS ranked WHERE newer > $2)",
                vec![masterid.into(), self.event_horizon.get().into()],
            );
    }
}
