//! Build requests for the push targets that report them (GitHubStatus): a status when a
//! request is queued, so a pull request shows its check pending before any worker is
//! free (buildbot/buildbot#4700), and one when a request is cancelled before it was built,
//! so the check does not stay pending for ever (#6625). The shared generator follows
//! builds only; this task follows `buildrequests/N/new` and `buildrequests/N/cancel`.

use std::sync::Arc;

use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::PushReporter;
use crate::db::{Db, DbResult};
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
    pub fn spawn<R: PushReporter>(
        ctx: Context,
        name: String,
        current: watch::Receiver<Arc<R>>,
        wake: Arc<Notify>,
    ) -> Follower {
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow(ctx, name, current, wake, stop.clone()));
        Follower { stop, task }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn follow<R: PushReporter>(
    ctx: Context,
    name: String,
    current: watch::Receiver<Arc<R>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut events = ctx.bus.subscribe();
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => break,
            event = events.recv() => event,
        };
        let event = match event {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    "{name}: fell {missed} events behind; requests queued or cancelled \
                     meanwhile get no status of their own"
                );
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
        let reporter = current.borrow().clone();
        let outcome = match request_info(&ctx.db, brid, what).await {
            Ok(Some(info)) => reporter.request(&ctx, info, what).await,
            Ok(None) => Ok(false),
            Err(error) => Err(error.into()),
        };
        match outcome {
            Ok(true) => wake.notify_one(),
            Ok(false) => {}
            Err(error) => {
                tracing::error!("{name}: nothing reported about build request {brid}: {error:#}")
            }
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
