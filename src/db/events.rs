//! Events other than builds, with their time, which 0.8's waterfall shows with
//! `show_events=true`: workers connecting to this master and disconnecting from it, each
//! written in the transaction that changes the worker's `connected_masterid`, so the
//! events and the state they tell of cannot disagree; and the master starting or taking a
//! new config.

use sqlx::AnyConnection;

use super::{Batch, Db, DbResult};

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

/// Records, as happening now, `event` of each worker `which` selects: a condition on
/// `workers` whose one parameter, `$3`, is `value` (`id = $3`).
pub(super) async fn record(
    conn: &mut AnyConnection,
    event: WorkerEvent,
    which: &str,
    value: i64,
) -> DbResult<()> {
    let sql = format!(
        "INSERT INTO worker_events (workerid, event, at) SELECT id, $1, $2 FROM workers \
         WHERE {which}"
    );
    sqlx::query(&sql)
        .bind(event.as_str())
        .bind(super::now())
        .bind(value)
        .execute(conn)
        .await?;
    Ok(())
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
    /// Marks master `masterid` up: active, its last reconfig `started`, and its `started`
    /// event, in one round trip to the database.
    pub async fn record_master_started(&self, masterid: i64) -> DbResult<()> {
        let now = super::now();
        let mut batch = Batch::new();
        batch
            .push(
                "UPDATE masters SET active = 1, last_active = $1, last_reconfig = $2 \
                 WHERE id = $3",
                vec![now.into(), "started".into(), masterid.into()],
            )
            .push(
                "INSERT INTO master_events (masterid, event, at) VALUES ($1, $2, $3)",
                vec![
                    masterid.into(),
                    MasterEvent::Started.as_str().into(),
                    now.into(),
                ],
            );
        batch.run(self).await?;
        Ok(())
    }

    /// Records `event` of master `masterid` as happening now.
    pub async fn record_master_event(&self, masterid: i64, event: MasterEvent) -> DbResult<()> {
        sqlx::query("INSERT INTO master_events (masterid, event, at) VALUES ($1, $2, $3)")
            .bind(masterid)
            .bind(event.as_str())
            .bind(super::now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
