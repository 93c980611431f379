//! Build requests for the push targets that report them (GitHubStatus): a status when a
//! request is queued, so a pull request shows its check pending before any worker is
//! free (buildbot/buildbot#4700), and one when a request is cancelled before it was built,
//! so the check does not stay pending for ever (#6625). The shared generator follows
//! builds only; this task follows `buildrequests/N/new` and `buildrequests/N/cancel`.
//!
//! The highest request it has looked at is kept in storage, so requests queued or
//! cancelled while the master was down, or while the task fell behind the bus, are
//! reported when it starts or catches up; the outbox's keys keep a status from being
//! written twice.

use std::sync::Arc;

use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::PushReporter;
use crate::bus::{Subscription, Topics};
use crate::db::{Db, DbResult};
use crate::model::BuildResult;
use crate::runtime::Context;
use crate::script::RenderData;

/// What happened to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestEvent {
    Queued,
    Cancelled,
}

/// A build request as a status about it sees it: its builder, and its buildset's
/// properties (with `buildername`) and sourcestamps to render with.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    pub brid: i64,
    pub builder: String,
    pub data: RenderData,
}

/// The follower task of one target.
pub struct Follower {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Follower {
    /// Subscribes and reads the target's watermark before it returns: a target that has
    /// none starts from the newest request, and a request queued right after its start
    /// must be both after that and in what it hears.
    pub async fn start<R: PushReporter>(
        ctx: Context,
        name: String,
        current: watch::Receiver<Arc<R>>,
        wake: Arc<Notify>,
    ) -> Follower {
        let events = ctx.bus.subscribe_to(Topics::Only(&[
            "buildrequests/*/new",
            "buildrequests/*/cancel",
        ]));
        let seen = Watermark::load(&ctx.db, &name).await;
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow(ctx, name, current, wake, stop.clone(), events, seen));
        Follower { stop, task }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Reports the requests after `seen`, then those `events` (subscribed before `seen` was
/// read, so nothing falls between the two) announce.
async fn follow<R: PushReporter>(
    ctx: Context,
    name: String,
    current: watch::Receiver<Arc<R>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
    mut events: Subscription,
    mut seen: Watermark,
) {
    let report = |brid: i64, what: RequestEvent| {
        let reporter = current.borrow().clone();
        let (ctx, name, wake) = (&ctx, &name, &wake);
        async move {
            let outcome = match request_info(&ctx.db, brid, what).await {
                Ok(Some(info)) => reporter.request(ctx, info, what).await,
                Ok(None) => Ok(false),
                Err(error) => Err(error.into()),
            };
            match outcome {
                Ok(true) => wake.notify_one(),
                Ok(false) => {}
                Err(error) => tracing::error!(
                    "{name}: nothing reported about build request {brid}: {error:#}"
                ),
            }
        }
    };
    let mut behind = true;
    loop {
        if behind {
            match seen.missed(&ctx.db).await {
                Ok(missed) => {
                    for (brid, what) in missed {
                        report(brid, what).await;
                        seen.passed(&ctx.db, brid).await;
                    }
                    behind = false;
                }
                Err(error) => {
                    tracing::warn!("{name}: cannot read the build requests: {error}");
                }
            }
        }
        let event = tokio::select! {
            () = stop.cancelled() => break,
            event = events.recv() => event,
        };
        let event = match event {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!("{name}: fell {missed} events behind; catching up from storage");
                behind = true;
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        let (brid, what) = match (
            event.id_of("buildrequests", "new"),
            event.id_of("buildrequests", "cancel"),
        ) {
            (Some(brid), _) => (brid, RequestEvent::Queued),
            (_, Some(brid)) => (brid, RequestEvent::Cancelled),
            _ => continue,
        };
        report(brid, what).await;
        seen.passed(&ctx.db, brid).await;
    }
}

/// The highest build request a target has looked at, in storage.
struct Watermark {
    object: String,
    brid: i64,
}

impl Watermark {
    const KEY: &str = "requests_seen";

    /// The target's watermark; a target that has none starts from the newest request,
    /// as it has nothing to catch up on.
    async fn load(db: &Db, target: &str) -> Watermark {
        let object = format!("status/{target}");
        let stored = db.get_state(&object, Self::KEY).await;
        let brid = match stored {
            Ok(Some(value)) => value.as_i64().unwrap_or(0),
            _ => {
                let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM buildrequests")
                    .fetch_one(&db.pool)
                    .await
                    .unwrap_or(None);
                let mut watermark = Watermark { object, brid: 0 };
                watermark.passed(db, newest.unwrap_or(0)).await;
                return watermark;
            }
        };
        Watermark { object, brid }
    }

    /// The requests after the watermark that were queued and wait, or were cancelled
    /// before a build, in order.
    async fn missed(&self, db: &Db) -> DbResult<Vec<(i64, RequestEvent)>> {
        let rows: Vec<(i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT r.id, r.complete, r.results FROM buildrequests r WHERE r.id > $1 \
             AND NOT EXISTS (SELECT 1 FROM builds WHERE buildrequestid = r.id) ORDER BY r.id",
        )
        .bind(self.brid)
        .fetch_all(&db.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(brid, complete, results)| match (complete, results) {
                (0, _) => Some((brid, RequestEvent::Queued)),
                (_, Some(code)) if code == BuildResult::Cancelled.code() => {
                    Some((brid, RequestEvent::Cancelled))
                }
                _ => None,
            })
            .collect())
    }

    /// `brid` was looked at; a failure to store it only means looking again later.
    async fn passed(&mut self, db: &Db, brid: i64) {
        if brid <= self.brid {
            return;
        }
        self.brid = brid;
        if let Err(error) = db
            .set_state(&self.object, Self::KEY, &serde_json::Value::from(brid))
            .await
        {
            tracing::warn!("{}: cannot store the requests seen: {error}", self.object);
        }
    }
}

/// The request, unless a build of it reports it instead: one has started (its start and
/// end statuses follow), or, for a queued one, it is complete already.
async fn request_info(db: &Db, brid: i64, what: RequestEvent) -> DbResult<Option<RequestInfo>> {
    let row: Option<(i64, String, i64, i64)> = sqlx::query_as(
        "SELECT r.buildsetid, b.name, r.complete, \
         (SELECT COUNT(*) FROM builds WHERE buildrequestid = r.id) \
         FROM buildrequests r JOIN builders b ON b.id = r.builderid WHERE r.id = $1",
    )
    .bind(brid)
    .fetch_optional(&db.pool)
    .await?;
    let Some((bsid, builder, complete, builds)) = row else {
        return Ok(None);
    };
    if builds > 0 || (what == RequestEvent::Queued && complete != 0) {
        return Ok(None);
    }
    let mut properties = db.buildset_properties(bsid).await?;
    properties.set("buildername", builder.clone().into(), "Builder");
    Ok(Some(RequestInfo {
        brid,
        builder,
        data: RenderData {
            properties,
            sourcestamps: db.buildset_sourcestamps(bsid).await?,
            ..RenderData::default()
        },
    }))
}
