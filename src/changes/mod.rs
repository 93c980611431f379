//! Change sources: the services that notice new commits (`GitPoller`) or accept them from
//! outside (`PBChangeSource`, fed by `moonbot sendchange`), and [`submit`], the one way a
//! change enters the master.

pub mod gitpoller;
pub mod lua;
pub mod pb;
pub mod sendchange;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::build::{ChangeSourceConfig, GitPoller, LuaSource, PbChangeSource};
use crate::config::{same_options, PortSpec};
use crate::data::{self, Resource};
use crate::db::{ChangeSpec, StoredChange};
use crate::runtime::{Context, Reconfigured, Service, SourceEndpoints};

pub use gitpoller::GitPollerService;
pub use pb::ChangeMessage;
pub use sendchange::{send_change, sendchange, SendError, SendchangeArgs};

/// Stores a change and announces it as `changes/ID/new`; returns its id. Every change
/// source, and the web change hooks, go through here (or [`submit_all`]).
pub async fn submit(ctx: &Context, spec: ChangeSpec) -> anyhow::Result<i64> {
    let ids = submit_all(ctx, vec![spec]).await?;
    Ok(ids[0])
}

/// Stores changes together, all or none (the commits of one push), then announces each
/// as `changes/ID/new` from what was written, in the order they were stored; returns
/// their ids in order.
pub async fn submit_all(ctx: &Context, mut specs: Vec<ChangeSpec>) -> anyhow::Result<Vec<i64>> {
    for spec in &mut specs {
        // Buildbot's addChange defaults the revlink to '' rather than NULL.
        spec.revlink.get_or_insert_with(String::new);
    }
    let what = match &specs[..] {
        [spec] => format!(
            "the change {} by {}",
            spec.revision.as_deref().unwrap_or("(no revision)"),
            spec.author
        ),
        _ => format!("{} changes", specs.len()),
    };
    let bus = ctx.bus.clone();
    let announce = move |stored: &[StoredChange]| {
        for change in stored {
            let message = data::changes::stored_change_json(change);
            data::announce(&bus, Resource::Change(change.changeid), "new", message);
            tracing::info!(
                change = change.changeid,
                author = %change.spec.author,
                branch = change.spec.branch.as_deref().unwrap_or(""),
                revision = change.spec.revision.as_deref().unwrap_or(""),
                "change added"
            );
        }
    };
    let stored = ctx
        .db
        .add_changes(specs, Box::new(announce))
        .await
        .with_context(|| format!("cannot store {what}"))?;
    Ok(stored.iter().map(|change| change.changeid).collect())
}

/// A started change source. It runs until [`Service::stop`] or until the master's
/// shutdown token is cancelled, and takes a new config of its name in place.
pub struct RunningSource {
    config: ChangeSourceConfig,
    listening: Option<SocketAddr>,
    updates: Updates,
    /// Wakes a poller for a poll now (the `poller` change hook); `None` for other sources.
    poll_now: Option<Arc<Notify>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Where a running source reads its config: the poller at its next poll, the listener at
/// its next request.
enum Updates {
    GitPoller(watch::Sender<GitPoller>),
    Pb {
        /// The port it listens on; another one needs a new listener.
        port: PortSpec,
        source: watch::Sender<PbChangeSource>,
    },
    Lua {
        source: watch::Sender<LuaSource>,
        /// Its route on the web server, closed when it stops.
        endpoints: SourceEndpoints,
        endpoint: u64,
    },
}

impl RunningSource {
    pub fn name(&self) -> &str {
        self.config.name()
    }

    /// The address a `PBChangeSource` listens on (useful when its port was 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listening
    }

    /// Asks a poller to poll now, after the poll under way if there is one (the timer then
    /// counts from that poll); false for a source that does not poll.
    pub fn poll_now(&self) -> bool {
        match &self.poll_now {
            Some(notify) => {
                notify.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Service for RunningSource {
    type Config = ChangeSourceConfig;

    /// A GitPoller's name defaults to its repourl.
    fn name_of(config: &ChangeSourceConfig) -> &str {
        config.name()
    }

    /// Fails only for what the source cannot run without (its port, its workdir's
    /// encoding); poll problems later are logged, never fatal.
    async fn start(ctx: &Context, config: &ChangeSourceConfig) -> anyhow::Result<RunningSource> {
        let stop = ctx.shutdown.child_token();
        let mut poll_now = None;
        let (listening, updates, task) = match config {
            ChangeSourceConfig::GitPoller(poller) => {
                let service = GitPollerService::new(ctx.clone(), poller, stop.clone())?;
                let (sender, receiver) = watch::channel(poller.as_ref().clone());
                let notify = Arc::new(Notify::new());
                poll_now = Some(notify.clone());
                let task = tokio::spawn(service.run(receiver, notify));
                (None, Updates::GitPoller(sender), task)
            }
            ChangeSourceConfig::Lua(source) => {
                let (sender, receiver) = watch::channel(source.as_ref().clone());
                let (requests, incoming) = mpsc::channel(16);
                let endpoint = ctx.source_endpoints.open(&source.name, requests);
                let notify = Arc::new(Notify::new());
                if source.polling.is_some() {
                    poll_now = Some(notify.clone());
                }
                let task = lua::LuaSourceTask::new(ctx.clone(), source, stop.clone());
                let task = tokio::spawn(task.run(receiver, incoming, notify));
                let updates = Updates::Lua {
                    source: sender,
                    endpoints: ctx.source_endpoints.clone(),
                    endpoint,
                };
                (None, updates, task)
            }
            ChangeSourceConfig::PBChangeSource(source) => {
                let port = pb::port_of(ctx, source)?;
                let (sender, receiver) = watch::channel(source.clone());
                let (addr, task) = pb::serve(ctx.clone(), &port, receiver, stop.clone()).await?;
                let updates = Updates::Pb {
                    port,
                    source: sender,
                };
                (Some(addr), updates, task)
            }
        };
        Ok(RunningSource {
            config: config.clone(),
            listening,
            updates,
            poll_now,
            stop,
            task,
        })
    }

    /// A GitPoller takes any new option from its next poll, keeping the last revisions
    /// seen; a PBChangeSource takes new credentials and prefix at its next request,
    /// keeping its listener, and needs a restart only for another port.
    async fn reconfigure(
        &mut self,
        ctx: &Context,
        config: &ChangeSourceConfig,
    ) -> anyhow::Result<Reconfigured> {
        let outcome = if same_options(config, &self.config) {
            Reconfigured::Unchanged
        } else {
            Reconfigured::Changed
        };
        let sent = match (&self.updates, config) {
            (Updates::GitPoller(sender), ChangeSourceConfig::GitPoller(poller)) => {
                gitpoller::encoding_of(poller)?;
                sender.send(poller.as_ref().clone()).is_ok()
            }
            (Updates::Pb { port, source }, ChangeSourceConfig::PBChangeSource(new)) => {
                *port == pb::port_of(ctx, new)? && source.send(new.clone()).is_ok()
            }
            // As Buildbot does: a source whose `compare_attrs` differ is stopped and
            // started anew; one whose don't takes the new functions and fields in place.
            (Updates::Lua { source, .. }, ChangeSourceConfig::Lua(new)) => {
                let ChangeSourceConfig::Lua(old) = &self.config else {
                    unreachable!("a Lua source's config is a Lua source's");
                };
                same_options(&old.identity(), &new.identity())
                    && source.send(new.as_ref().clone()).is_ok()
            }
            // Another kind of source under the same name.
            _ => false,
        };
        if !sent {
            return Ok(Reconfigured::NeedsRestart);
        }
        self.config = config.clone();
        if outcome == Reconfigured::Changed {
            tracing::info!(source = %self.name(), "change source reconfigured");
        }
        Ok(outcome)
    }

    /// Stops the source and waits until it has: a poll that is fetching is abandoned, one
    /// that is submitting changes finishes first so that what it recorded stays consistent.
    async fn stop(self) {
        self.stop.cancel();
        if let Updates::Lua {
            endpoints,
            endpoint,
            ..
        } = &self.updates
        {
            endpoints.close(self.config.name(), *endpoint);
        }
        if let Err(e) = self.task.await {
            tracing::error!(source = %self.config.name(), "change source task failed: {e}");
        }
    }
}
