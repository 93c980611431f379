//! Change sources: the services that notice new commits (`GitPoller`) or accept them from
//! outside (`PBChangeSource`, fed by `moonbot sendchange`), and [`submit`], the one way a
//! change enters the master.

pub mod gitpoller;
pub mod pb;
pub mod sendchange;

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::build::ChangeSourceConfig;
use crate::data::{self, Resource};
use crate::db::ChangeSpec;
use crate::master::Context;

pub use gitpoller::GitPollerService;
pub use pb::ChangeMessage;
pub use sendchange::{send_change, sendchange, SendError, SendchangeArgs};

/// Stores a change and announces it as `changes/ID/new`; returns its id. Every change
/// source, and the web change hooks, go through here.
pub async fn submit(ctx: &Context, mut spec: ChangeSpec) -> anyhow::Result<i64> {
    // Buildbot's addChange defaults the revlink to '' rather than NULL.
    spec.revlink.get_or_insert_with(String::new);
    let id = ctx.db.add_change(&spec).await.with_context(|| {
        format!(
            "cannot store the change {} by {}",
            spec.revision.as_deref().unwrap_or("(no revision)"),
            spec.author
        )
    })?;
    data::publish(&ctx.db, &ctx.bus, Resource::Change(id), "new")
        .await
        .with_context(|| format!("cannot announce change {id}"))?;
    tracing::info!(
        change = id,
        author = %spec.author,
        branch = spec.branch.as_deref().unwrap_or(""),
        revision = spec.revision.as_deref().unwrap_or(""),
        "change added"
    );
    Ok(id)
}

/// A started change source. It runs until [`RunningSource::stop`] or until the master's
/// shutdown token is cancelled.
pub struct RunningSource {
    name: String,
    listening: Option<SocketAddr>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningSource {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address a `PBChangeSource` listens on (useful when its port was 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listening
    }

    /// Stops the source and waits until it has: a poll that is fetching is abandoned, one
    /// that is submitting changes finishes first so that what it recorded stays consistent.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(source = %self.name, "change source task failed: {e}");
        }
    }
}

/// Starts one entry of `c['change_source']`. Fails only for what the source cannot run
/// without (its port, its workdir's encoding); poll problems later are logged, never fatal.
pub async fn start(ctx: &Context, config: &ChangeSourceConfig) -> anyhow::Result<RunningSource> {
    let stop = ctx.shutdown.child_token();
    let name = config.name().to_string();
    let (listening, task) = match config {
        ChangeSourceConfig::GitPoller(poller) => {
            let service = GitPollerService::new(ctx.clone(), poller, stop.clone())?;
            (None, tokio::spawn(service.run()))
        }
        ChangeSourceConfig::PBChangeSource(source) => {
            let (addr, task) = pb::serve(ctx.clone(), source, stop.clone()).await?;
            (Some(addr), task)
        }
    };
    Ok(RunningSource {
        name,
        listening,
        stop,
        task,
    })
}
