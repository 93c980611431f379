//! Running status targets and the pipeline they share (Buildbot 4's reporters are the
//! model): the [`generator`] decides which builds a target reports, the target's
//! [`Reporter`] renders them into outbox rows, and the [`outbox`]'s delivery task sends them
//! through the target's [`Transport`]. [`targets`] lists the kinds the master runs.

pub mod generator;
pub mod gerrit;
pub mod irc;
pub mod mail;
pub mod outbox;
pub mod pb_listener;
pub mod push;
pub mod snapshot;
pub mod targets;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::generator::Reporter;
use self::outbox::{Delivery, Transport};
use crate::config::MasterConfig;
use crate::db::{Db, DbResult};
use crate::model::{BuilderInfo, MasterInfo};
use crate::runtime::Context;

/// A status target on the shared pipeline: its generator task, holding the current
/// reporter, and its delivery task, holding the current transport.
pub struct Pipeline<R, T> {
    current: watch::Sender<Arc<R>>,
    delivery: Delivery<T>,
    stop: CancellationToken,
    generator: JoinHandle<()>,
}

impl<R: Reporter, T: Transport> Pipeline<R, T> {
    /// Starts reporting as `name` (the outbox key); messages left from before a restart are
    /// delivered first, and builds that finished meanwhile are reported.
    pub fn start(ctx: &Context, name: &str, reporter: R, transport: T) -> Pipeline<R, T> {
        let policy = ctx.config.current().outbox;
        let delivery = Delivery::spawn(ctx.db.clone(), name.to_string(), transport, policy);
        let (current, receiver) = watch::channel(Arc::new(reporter));
        // Not the master's shutdown token: the master stops targets after the builds that
        // finish during its shutdown.
        let stop = CancellationToken::new();
        let generator = generator::spawn(
            ctx.clone(),
            name.to_string(),
            receiver,
            delivery.waker(),
            stop.clone(),
        );
        Pipeline {
            current,
            delivery,
            stop,
            generator,
        }
    }

    /// The reporter the next event goes to.
    pub fn current(&self) -> Arc<R> {
        self.current.borrow().clone()
    }

    /// The current reporter as it changes, for a task of the target's own that reports
    /// events the generator does not follow.
    pub fn subscribe(&self) -> watch::Receiver<Arc<R>> {
        self.current.subscribe()
    }

    /// Wakes delivery: such a task wrote a message.
    pub fn waker(&self) -> Arc<Notify> {
        self.delivery.waker()
    }

    /// A reconfig: `reporter` takes the next event, `transport` the next delivery (under
    /// the config's retry policy); queued messages stay queued.
    pub fn replace(&self, ctx: &Context, reporter: R, transport: T) {
        self.delivery
            .reconfigure(transport, ctx.config.current().outbox);
        self.current.send_replace(Arc::new(reporter));
    }

    /// Stops after the report being made and the batch being delivered; what is still
    /// queued stays in the outbox for the next start.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.generator.await;
        self.delivery.stop().await;
    }
}

/// `master_status` for the config running now: its title, URLs and builders with their ids.
/// The engine registers the configured builders before status targets start or
/// reconfigure, so one read finds their ids; one it has not is registered here.
pub async fn master_info(db: &Db, config: &MasterConfig) -> DbResult<Arc<MasterInfo>> {
    let ids: HashMap<String, i64> = sqlx::query_as("SELECT name, id FROM builders")
        .fetch_all(&db.pool)
        .await?
        .into_iter()
        .collect();
    let mut builders = Vec::with_capacity(config.builders.len());
    for builder in &config.builders {
        let id = match ids.get(&builder.name) {
            Some(id) => *id,
            None => db.builder_id(&builder.name).await?,
        };
        builders.push(BuilderInfo {
            id,
            name: builder.name.clone(),
            tags: builder.tags.clone(),
        });
    }
    Ok(Arc::new(MasterInfo {
        title: config.title.clone(),
        title_url: config.title_url.clone(),
        buildbot_url: config.buildbot_url.clone(),
        builders,
    }))
}
