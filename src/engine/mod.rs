//! The build engine: builders take pending build requests, pick a worker with a free slot,
//! and run builds; the control channel (force, stop, rebuild, cancel) is answered here.
//!
//! One task owns the engine's state. It wakes on `buildrequests/*/new` events, on a build
//! finishing and on control requests, and looks for work each time, so nothing polls.

mod build;
mod choose;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use build::BuildPlan;

use crate::bus::Topics;
use crate::config::build::{BuilderConfig, CollapseRequests, StepConfig, WorkerKind};
use crate::config::{same_options, MasterConfig};
use crate::data::builds::{claim_and_add_build, BuildOn, NewBuild};
use crate::data::changes::{complete_buildset, complete_request};
use crate::data::{publish, Resource};
use crate::db::{Batch, BuildsetSpec, DbError};
use crate::db::{DbResult, PendingRequest, Recorded};
use crate::model::BuildResult;
use crate::runtime::{Context, ControlError, ControlRequest, PendingOf, Pinged, Submitted};
use crate::schedulers;
use crate::workers::{self, Connection, WorkerLink};

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot listen for workers on {0}: {1}")]
    Port(String, std::io::Error),
}

/// How long running builds may take to finish at shutdown before they are stopped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// How long an attached worker gets to answer when a second connection claims its name.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

struct Builder {
    id: i64,
    config: BuilderConfig,
    steps: Arc<Vec<StepConfig>>,
    /// The builder's `collapseRequests`, else the config's `c['collapseRequests']`.
    collapse_requests: Option<CollapseRequests>,
}

struct Worker {
    id: i64,
    name: String,
    /// `BASEDIR/workers/WORKDIR` for a LocalWorker; empty (the worker's own base directory)
    /// for a remote one.
    basedir: PathBuf,
    /// How builds reach the worker; `None` while a remote worker is not connected.
    link: Option<WorkerLink>,
    keepalive_interval: Duration,
    max_builds: Option<u32>,
    properties: Vec<(String, Value)>,
    default_properties: Vec<(String, Value)>,
    running: usize,
    /// Paused from the web: takes no new builds until unpaused.
    paused: bool,
    /// Shutting down gracefully: takes no new builds, and a remote worker is told to shut
    /// down once its running builds end.
    graceful: bool,
    /// Who hears when the remote worker has been gone `missing_timeout`.
    notify_on_missing: Vec<String>,
    missing_timeout: Duration,
    /// Cancelled when the worker attaches: the timer started when it went away (or when
    /// the master started without it).
    missing_timer: Option<CancellationToken>,
}

impl Worker {
    /// Starts the missing timer of a remote worker that is not attached and has someone to
    /// notify; when it fires, `workers/N/missing` is published (Buildbot's event) with
    /// `notify` and `last_connection`, for the MailNotifiers to mail.
    fn start_missing_timer(&mut self, ctx: &Context) {
        self.stop_missing_timer();
        if self.link.is_some()
            || self.notify_on_missing.is_empty()
            || self.missing_timeout.is_zero()
        {
            return;
        }
        let timer = CancellationToken::new();
        self.missing_timer = Some(timer.clone());
        let (ctx, id, timeout) = (ctx.clone(), self.id, self.missing_timeout);
        let notify = self.notify_on_missing.clone();
        let gone_since = chrono::Local::now();
        tokio::spawn(async move {
            tokio::select! {
                _ = timer.cancelled() => return,
                _ = ctx.shutdown.cancelled() => return,
                _ = tokio::time::sleep(timeout) => {}
            }
            match crate::data::registry::worker(&ctx.db, id).await {
                Ok(Some(mut message)) => {
                    message["notify"] = serde_json::json!(notify);
                    message["last_connection"] =
                        serde_json::json!(gone_since.format("%a %b %e %H:%M:%S %Y").to_string());
                    crate::data::announce(&ctx.bus, Resource::Worker(id), "missing", message);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(worker = id, "cannot report the worker missing: {error}")
                }
            }
        });
    }

    fn stop_missing_timer(&mut self) {
        if let Some(timer) = self.missing_timer.take() {
            timer.cancel();
        }
    }
}

struct Running {
    stop: CancellationToken,
    builder: String,
    worker: String,
}

pub struct Engine {
    ctx: Context,
    builders: BTreeMap<String, Builder>,
    workers: BTreeMap<String, Worker>,
    /// Running builds by build request id.
    running: BTreeMap<i64, Running>,
    /// Remote workers that passed the handshake on the msgpack port.
    attached: mpsc::Receiver<Connection>,
    /// Where a connection goes back to when it waits for its worker's previous one.
    reattach: mpsc::Sender<Connection>,
    /// Remote workers' connections that closed, by worker name and connection id.
    lost: mpsc::UnboundedReceiver<(String, u64)>,
    lost_sender: mpsc::UnboundedSender<(String, u64)>,
    /// A clean shutdown is under way: no build starts, and the master shuts down when the
    /// last running one ends. Unlike the master's shutdown it can be called off.
    draining: bool,
    /// The start's workers' rows, written once the requests that waited for the start are
    /// answered (see [`Engine::run`]), or before a reconfig's or a remote worker's own,
    /// which must follow them. No build starts before.
    unwritten: Option<WorkerRows>,
}

/// The workers' rows a config's application leaves to write (their state, and their
/// attachment to this master, with a crash's leftovers detached) and the workers attached,
/// announced once written.
struct WorkerRows {
    writes: Batch,
    connected: Vec<i64>,
}

/// What a build task reports when it ends.
struct Finished {
    buildrequestid: i64,
}

/// What a reconfig did to the engine's builders and workers, counted for its outcome line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
}

impl std::ops::AddAssign for Diff {
    fn add_assign(&mut self, other: Diff) {
        self.added += other.added;
        self.changed += other.changed;
        self.removed += other.removed;
    }
}

/// A reconfig for the engine: the new config, and where to report what changed.
pub struct Reconfigure {
    pub config: Arc<MasterConfig>,
    pub reply: oneshot::Sender<DbResult<Diff>>,
}

impl Engine {
    /// Registers the config's builders and workers in storage, `recorded` being what
    /// storage held of them at the start, and attaches the workers (and only them) to this
    /// master. Opens the msgpack port when the config has one.
    pub async fn new(ctx: Context, recorded: Recorded) -> Result<Engine, EngineError> {
        let mut writes = Batch::new();
        ctx.db
            .push_disconnect_workers_of(&mut writes, ctx.masterid.get());
        let (attach, attached) = mpsc::channel(16);
        if let Some(port) = ctx.config.current().msgpack_port.clone() {
            let listener = workers::bind(&port)
                .await
                .map_err(|error| EngineError::Port(port.to_string(), error))?;
            tracing::info!(%port, "listening for workers (msgpack_experimental_v7)");
            tokio::spawn(workers::serve(
                listener,
                ctx.config.clone(),
                attach.clone(),
                ctx.shutdown.clone(),
            ));
        }
        let (lost_sender, lost) = mpsc::unbounded_channel();
        let mut engine = Engine {
            ctx: ctx.clone(),
            builders: BTreeMap::new(),
            workers: BTreeMap::new(),
            running: BTreeMap::new(),
            attached,
            reattach: attach,
            lost,
            lost_sender,
            draining: false,
            unwritten: None,
        };
        let (_, rows) = engine
            .apply(&ctx.config.current(), writes, recorded)
            .await?;
        engine.unwritten = Some(rows);
        Ok(engine)
    }

    /// Takes a config's workers and builders, by name: new ones are registered, changed
    /// ones replaced, removed ones dropped. Running builds keep the steps they started with
    /// and a removed worker's slots are simply not reused, but a removed builder's builds are
    /// stopped: their commands are interrupted, on the master or on the worker. `writes`
    /// (the start's detaching of workers a crash left attached) go with the new workers'
    /// rows, which are left to [`Engine::write_workers`].
    async fn apply(
        &mut self,
        config: &MasterConfig,
        mut writes: Batch,
        recorded: Recorded,
    ) -> DbResult<(Diff, WorkerRows)> {
        let ctx = self.ctx.clone();
        let mut diff = Diff::default();
        let mut connected = Vec::new();
        let mut workers = BTreeMap::new();
        for worker in &config.workers {
            let (basedir, link) = match &worker.kind {
                WorkerKind::Local { workdir } => (
                    ctx.basedir.join("workers").join(workdir),
                    Some(WorkerLink::Local),
                ),
                WorkerKind::Remote { .. } => (PathBuf::new(), None),
            };
            let id = ctx.db.recorded_worker_id(&recorded, &worker.name).await?;
            let fresh = Worker {
                id,
                name: worker.name.clone(),
                basedir,
                link,
                keepalive_interval: Duration::from_secs(worker.keepalive_interval.max(1)),
                max_builds: worker.max_builds,
                properties: worker.properties.clone().into_iter().collect(),
                default_properties: worker.default_properties.clone().into_iter().collect(),
                running: 0,
                paused: false,
                graceful: false,
                notify_on_missing: worker.notify_on_missing.clone(),
                missing_timeout: Duration::from_secs(worker.missing_timeout),
                missing_timer: None,
            };
            match self.workers.remove(&worker.name) {
                Some(old) => {
                    if (
                        &old.basedir,
                        old.max_builds,
                        &old.properties,
                        &old.default_properties,
                    ) != (
                        &fresh.basedir,
                        fresh.max_builds,
                        &fresh.properties,
                        &fresh.default_properties,
                    ) {
                        diff.changed += 1;
                    }
                    // A remote worker stays attached through a reconfig that keeps it.
                    let link = match (&old.link, &fresh.link) {
                        (Some(WorkerLink::Remote(c)), None) => Some(WorkerLink::Remote(c.clone())),
                        // A remote worker that became a LocalWorker: its connection goes.
                        (Some(WorkerLink::Remote(c)), Some(_)) => {
                            c.close();
                            fresh.link.clone()
                        }
                        _ => fresh.link.clone(),
                    };
                    workers.insert(
                        worker.name.clone(),
                        Worker {
                            running: old.running,
                            paused: old.paused,
                            graceful: old.graceful,
                            missing_timer: old.missing_timer,
                            link,
                            ..fresh
                        },
                    );
                }
                None => {
                    diff.added += 1;
                    // Pausing lasts as long as the engine that was asked: a new one starts
                    // every worker unpaused, and says so in storage.
                    ctx.db.push_worker_state(&mut writes, id, false, false);
                    let mut fresh = fresh;
                    if fresh.link.is_some() {
                        ctx.db
                            .push_worker_connected(&mut writes, id, Some(ctx.masterid.get()));
                        connected.push(id);
                    } else {
                        fresh.start_missing_timer(&ctx);
                    }
                    workers.insert(worker.name.clone(), fresh);
                }
            }
        }
        for mut gone in std::mem::replace(&mut self.workers, workers).into_values() {
            diff.removed += 1;
            gone.stop_missing_timer();
            if let Some(WorkerLink::Remote(connection)) = &gone.link {
                connection.close();
            }
            if gone.link.is_some() {
                self.detach(gone.id).await?;
            }
        }
        let mut builders = BTreeMap::new();
        for builder in &config.builders {
            let mut worker_ids = Vec::new();
            for name in &builder.workernames {
                worker_ids.push(match self.workers.get(name) {
                    Some(worker) => worker.id,
                    None => ctx.db.recorded_worker_id(&recorded, name).await?,
                });
            }
            let id = ctx
                .db
                .record_builder(
                    &recorded,
                    &builder.name,
                    builder.description.as_deref(),
                    &builder.tags,
                    &worker_ids,
                )
                .await?;
            match self.builders.remove(&builder.name) {
                Some(old) if !same_options(&old.config, builder) => diff.changed += 1,
                Some(_) => {}
                None => diff.added += 1,
            }
            let steps = builder.steps();
            builders.insert(
                builder.name.clone(),
                Builder {
                    id,
                    steps,
                    config: builder.clone(),
                    collapse_requests: builder
                        .collapse_requests
                        .clone()
                        .or_else(|| config.collapse_requests.clone()),
                },
            );
        }
        let removed: Vec<i64> = std::mem::replace(&mut self.builders, builders)
            .into_values()
            .map(|b| b.id)
            .collect();
        diff.removed += removed.len();
        ctx.db.deactivate_builders(&removed).await?;
        for running in self.running.values() {
            if !self.builders.contains_key(&running.builder) {
                tracing::info!(builder = %running.builder, "stopping a build of a builder the reconfig removed");
                running.stop.cancel();
            }
        }
        Ok((diff, WorkerRows { writes, connected }))
    }

    /// Writes the start's workers' rows, when they are not written yet.
    async fn write_start_rows(&mut self) {
        if let Some(rows) = self.unwritten.take() {
            if let Err(error) = self.write_workers(rows).await {
                tracing::error!("cannot record the workers attached at start: {error}");
            }
        }
    }

    /// Writes what [`Engine::apply`] left for the workers, then announces those attached.
    async fn write_workers(&self, rows: WorkerRows) -> DbResult<()> {
        if !rows.writes.is_empty() {
            rows.writes.run(&self.ctx.db).await?;
        }
        for id in rows.connected {
            publish(
                &self.ctx.db,
                &self.ctx.bus,
                Resource::Worker(id),
                "connected",
            )
            .await?;
        }
        Ok(())
    }

    /// Runs until the master shuts down, then lets running builds finish (stopping them
    /// after `grace`). What the start left (the workers' rows, the requests left queued)
    /// waits for `start_after` to hand over a reply, sent once that is taken up, while
    /// control requests (theirs among them) are answered at once.
    pub async fn run(
        mut self,
        mut control: mpsc::Receiver<ControlRequest>,
        mut reconfigs: mpsc::Receiver<Reconfigure>,
        grace: Duration,
        mut start_after: oneshot::Receiver<oneshot::Sender<()>>,
    ) {
        // Taken up once, even when a worker's attach or a reconfig wrote the rows first.
        let mut start_pending = true;
        let mut events = self
            .ctx
            .bus
            .subscribe_to(Topics::Only(&["buildrequests/*/new"]));
        let mut builds: JoinSet<Finished> = JoinSet::new();
        let shutdown = self.ctx.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                reply = &mut start_after, if start_pending => {
                    start_pending = false;
                    self.write_start_rows().await;
                    self.start_builds(&mut builds).await;
                    if let Ok(reply) = reply {
                        let _ = reply.send(());
                    }
                }
                event = events.recv() => match event {
                    Ok(event) if event.key.starts_with("buildrequests/") && event.key.ends_with("/new") => {
                        let brid = event.key.split('/').nth(1).and_then(|id| id.parse().ok());
                        let builderid = event.message["builderid"].as_i64();
                        if let Some(brid) = brid.filter(|_| self.may_collapse(builderid)) {
                            if let Err(error) = self.collapse(brid).await {
                                tracing::error!(buildrequest = brid, "cannot collapse requests: {error}");
                            }
                        }
                        match builderid {
                            Some(builderid) => self.start_builds_for(builderid, &mut builds).await,
                            None => self.start_builds(&mut builds).await,
                        }
                    }
                    Ok(_) => {}
                    // Missed events: storage has the truth, so look for work.
                    Err(_) => self.start_builds(&mut builds).await,
                },
                Some(done) = builds.join_next() => {
                    if let Ok(finished) = done {
                        self.finished(finished);
                    }
                    self.start_builds(&mut builds).await;
                    self.shut_down_when_drained();
                }
                Some(connection) = self.attached.recv() => {
                    // The start's rows detach what a crash left attached: before this one.
                    self.write_start_rows().await;
                    self.attach(connection).await;
                    self.start_builds(&mut builds).await;
                }
                Some((name, id)) = self.lost.recv() => self.lose(&name, id).await,
                Some(reconfigure) = reconfigs.recv() => {
                    self.write_start_rows().await;
                    let applied = match self.ctx.db.recorded().await {
                        Ok(recorded) => self.apply(&reconfigure.config, Batch::new(), recorded).await,
                        Err(error) => Err(error),
                    };
                    let applied = match applied {
                        Ok((diff, rows)) => self.write_workers(rows).await.map(|()| diff),
                        Err(error) => Err(error),
                    };
                    let _ = reconfigure.reply.send(applied);
                    self.start_builds(&mut builds).await;
                }
                Some(request) = control.recv() => {
                    // A force's requests are announced on the bus, which starts their
                    // builds: looking now as well would cost a query per force.
                    let forced = matches!(request, ControlRequest::Force { .. });
                    self.answer(request).await;
                    if !forced {
                        self.start_builds(&mut builds).await;
                    }
                    self.shut_down_when_drained();
                }
            }
        }
        if !self.running.is_empty() {
            tracing::info!(
                builds = self.running.len(),
                "waiting for running builds to finish"
            );
        }
        let wait_all = async {
            while let Some(done) = builds.join_next().await {
                if let Ok(finished) = done {
                    self.running.remove(&finished.buildrequestid);
                }
            }
        };
        if tokio::time::timeout(grace, wait_all).await.is_err() {
            tracing::warn!("builds still running after {grace:?}; stopping them");
            for running in self.running.values() {
                running.stop.cancel();
            }
            while builds.join_next().await.is_some() {}
        }
        for worker in self.workers.values().filter(|w| w.link.is_some()) {
            if let Some(WorkerLink::Remote(connection)) = &worker.link {
                connection.close();
            }
            if let Err(error) = self.detach(worker.id).await {
                tracing::error!(worker = %worker.name, "cannot record the worker detached: {error}");
            }
        }
    }

    /// A remote worker that passed the handshake: attached, unless the config does not
    /// know it (any more) or it is attached already (Buildbot refuses the second
    /// connection while the first one lives).
    async fn attach(&mut self, connection: Connection) {
        let name = connection.name().to_string();
        let Some(worker) = self.workers.get_mut(&name) else {
            tracing::warn!(worker = %name, "a worker the config does not have connected; closing it");
            connection.close();
            return;
        };
        if let Some(WorkerLink::Remote(old)) = &worker.link {
            if !old.is_closed() {
                // As Buildbot: the attached connection is asked first; the new one is
                // refused if it answers, and takes its place if not.
                let (old, again) = (old.clone(), self.reattach.clone());
                tokio::spawn(async move {
                    let answer =
                        tokio::time::timeout(PING_TIMEOUT, old.request("keepalive", vec![])).await;
                    if matches!(answer, Ok(Ok(_))) {
                        tracing::warn!(worker = %old.name(), "the worker is already attached; refusing the second connection");
                        let refusal = connection.request(
                            "print",
                            vec![("message", "refused: this worker is already attached".into())],
                        );
                        let _ = tokio::time::timeout(PING_TIMEOUT, refusal).await;
                        connection.close();
                    } else {
                        old.close();
                        let _ = again.send(connection).await;
                    }
                });
                return;
            }
        }
        worker.link = Some(WorkerLink::Remote(connection.clone()));
        worker.stop_missing_timer();
        let (id, keepalive) = (worker.id, worker.keepalive_interval);
        let lost = self.lost_sender.clone();
        tokio::spawn(async move {
            connection.keep_alive(keepalive).await;
            connection.closed().await;
            let _ = lost.send((connection.name().to_string(), connection.id()));
        });
        tracing::info!(worker = %name, "worker attached");
        let db = &self.ctx.db;
        let info = match &worker.link {
            Some(WorkerLink::Remote(c)) => c.info(),
            _ => Value::Null,
        };
        let recorded = async {
            db.set_worker_info(id, &info).await?;
            db.set_worker_connected(id, Some(self.ctx.masterid.get()))
                .await?;
            publish(db, &self.ctx.bus, Resource::Worker(id), "connected").await
        };
        if let Err(error) = recorded.await {
            tracing::error!(worker = %name, "cannot record the worker attached: {error}");
        }
    }

    /// A remote worker's connection closed: its running builds see their commands lost
    /// (and end as RETRY) by themselves; here it stops being free.
    async fn lose(&mut self, name: &str, connection_id: u64) {
        let Some(worker) = self.workers.get_mut(name) else {
            return;
        };
        match &worker.link {
            Some(WorkerLink::Remote(c)) if c.id() == connection_id => worker.link = None,
            _ => return,
        }
        worker.start_missing_timer(&self.ctx);
        tracing::info!(worker = %name, "worker detached");
        let id = worker.id;
        if let Err(error) = self.detach(id).await {
            tracing::error!(worker = %name, "cannot record the worker detached: {error}");
        }
    }

    async fn detach(&self, workerid: i64) -> DbResult<()> {
        self.ctx.db.set_worker_connected(workerid, None).await?;
        publish(
            &self.ctx.db,
            &self.ctx.bus,
            Resource::Worker(workerid),
            "disconnected",
        )
        .await
    }

    fn finished(&mut self, finished: Finished) {
        if let Some(running) = self.running.remove(&finished.buildrequestid) {
            if let Some(worker) = self.workers.get_mut(&running.worker) {
                worker.running -= 1;
                if worker.graceful && worker.running == 0 {
                    shut_down_worker(worker);
                }
            }
        }
    }

    /// The last build of a clean shutdown has ended: the master shuts down.
    fn shut_down_when_drained(&self) {
        if self.draining && self.running.is_empty() {
            tracing::info!("clean shutdown: no build is running");
            self.ctx.shutdown.cancel();
        }
    }

    /// Starts every build that can start now.
    async fn start_builds(&mut self, builds: &mut JoinSet<Finished>) {
        if self.ctx.shutdown.is_cancelled() || self.draining || self.unwritten.is_some() {
            return;
        }
        // Storage is asked only about builders with a free worker: while the workers are
        // busy, a new request or a finished build costs no query.
        let ready: Vec<(String, i64, usize)> = self
            .builders
            .iter()
            .map(|(name, builder)| (name.clone(), builder.id, self.free_workers(name).len()))
            .filter(|(_, _, free)| *free > 0)
            .collect();
        if ready.is_empty() {
            return;
        }
        // One query reads the requests of every ready builder, as many of each as it has
        // free workers, unless a `nextBuild` function is to choose among all of them.
        let choosing = ready
            .iter()
            .any(|(name, _, _)| self.builders[name].config.next_build.is_some());
        let first = if choosing {
            i64::MAX
        } else {
            ready
                .iter()
                .map(|(_, _, free)| *free as i64)
                .max()
                .unwrap_or(1)
        };
        let ids: Vec<i64> = ready.iter().map(|(_, id, _)| *id).collect();
        let mut waiting = match self.ctx.db.pending_requests_of(&ids, first).await {
            Ok(waiting) => waiting,
            Err(error) => {
                tracing::error!("cannot look for pending build requests: {error}");
                return;
            }
        };
        for (name, id, _) in &ready {
            let Some(pending) = waiting.remove(id) else {
                continue;
            };
            // Fewer than asked for: the builder has no other request.
            let all = (pending.len() as i64) < first;
            if let Err(error) = self.start_builds_of(name, pending, all, builds).await {
                tracing::error!(builder = %name, "cannot start builds: {error}");
            }
        }
    }

    /// Starts what a new request of `builderid` allows: only that builder has work it did
    /// not have, so no other builder is looked at.
    async fn start_builds_for(&mut self, builderid: i64, builds: &mut JoinSet<Finished>) {
        if self.ctx.shutdown.is_cancelled() || self.draining || self.unwritten.is_some() {
            return;
        }
        let Some(name) = self
            .builders
            .iter()
            .find(|(_, builder)| builder.id == builderid)
            .map(|(name, _)| name.clone())
        else {
            return;
        };
        if self.free_workers(&name).is_empty() {
            return;
        }
        let started = match self.ctx.db.pending_requests(builderid).await {
            Ok(pending) => self.start_builds_of(&name, pending, true, builds).await,
            Err(error) => Err(error),
        };
        if let Err(error) = started {
            tracing::error!(builder = %name, "cannot start builds: {error}");
        }
    }

    /// Starts builds of builder `name` from its `pending` requests, the first to build
    /// first; unless they are `all` its requests, the rest are read once those are used up
    /// and workers are still free (requests skipped, or claimed by another master).
    async fn start_builds_of(
        &mut self,
        name: &str,
        mut pending: Vec<PendingRequest>,
        mut all: bool,
        builds: &mut JoinSet<Finished>,
    ) -> DbResult<()> {
        let builder = &self.builders[name];
        let builderid = builder.id;
        let table = choose::builder_table(name, builderid);
        let config = &builder.config;
        let (next_build, next_worker, can_start, do_build_if) = (
            config.next_build.clone(),
            config.next_worker.clone(),
            config.can_start_build.clone(),
            config.do_build_if.clone(),
        );
        loop {
            let mut free = self.free_workers(name);
            // An earlier builder in this round may have taken the last free slot.
            if free.is_empty() {
                break;
            }
            if pending.is_empty() {
                if all {
                    break;
                }
                pending = self.ctx.db.pending_requests(builderid).await?;
                all = true;
                continue;
            }
            let index = match &next_build {
                None => 0,
                Some(callback) => {
                    let requests = pending
                        .iter()
                        .map(|r| choose::request_table(r, builderid))
                        .collect();
                    let chosen = choose::call(
                        &self.ctx,
                        "nextBuild",
                        callback,
                        vec![table.clone(), Value::Array(requests)],
                    )
                    .await;
                    let id = chosen
                        .as_ref()
                        .and_then(|c| c.get("buildrequestid"))
                        .and_then(Value::as_i64);
                    match id.and_then(|id| pending.iter().position(|r| r.id == id)) {
                        Some(index) => index,
                        None => break,
                    }
                }
            };
            let request = pending.remove(index);
            let request_table = choose::request_table(&request, builderid);
            if let Some(callback) = &do_build_if {
                if !choose::allowed(
                    &self.ctx,
                    "do_build_if",
                    callback,
                    vec![request_table.clone()],
                )
                .await
                {
                    choose::skip(&self.ctx, &[request.id]).await?;
                    continue;
                }
            }
            if let Some(callback) = &can_start {
                let mut allowed = Vec::new();
                for worker in free {
                    let args = vec![
                        table.clone(),
                        choose::worker_table(&worker),
                        request_table.clone(),
                    ];
                    if choose::allowed(&self.ctx, "canStartBuild", callback, args).await {
                        allowed.push(worker);
                    }
                }
                free = allowed;
            }
            let worker_name = match (&next_worker, free.first()) {
                (_, None) => continue,
                (None, Some(first)) => first.clone(),
                (Some(callback), Some(_)) => {
                    let workers = free.iter().map(|w| choose::worker_table(w)).collect();
                    let args = vec![table.clone(), Value::Array(workers), request_table.clone()];
                    let chosen = choose::call(&self.ctx, "nextWorker", callback, args).await;
                    match chosen
                        .as_ref()
                        .and_then(|c| c.get("name"))
                        .and_then(Value::as_str)
                    {
                        Some(name) if free.iter().any(|w| w == name) => name.to_string(),
                        _ => continue,
                    }
                }
            };
            let ctx = &self.ctx;
            let on = BuildOn {
                builderid,
                workerid: self.workers[&worker_name].id,
                masterid: ctx.masterid.get(),
            };
            let Some(new) = claim_and_add_build(&ctx.db, &ctx.bus, &request, &on).await? else {
                continue;
            };
            self.spawn_build(name, &worker_name, request, new, builds);
        }
        Ok(())
    }

    fn spawn_build(
        &mut self,
        builder: &str,
        worker_name: &str,
        request: PendingRequest,
        new: NewBuild,
        builds: &mut JoinSet<Finished>,
    ) {
        let builder = &self.builders[builder];
        let worker = self
            .workers
            .get_mut(worker_name)
            .expect("a free worker is a known worker");
        worker.running += 1;
        let stop = CancellationToken::new();
        let plan = BuildPlan {
            builderid: builder.id,
            builder_name: builder.config.name.clone(),
            builder_properties: builder.config.properties.clone().into_iter().collect(),
            builder_default_properties: builder
                .config
                .default_properties
                .clone()
                .into_iter()
                .collect(),
            builder_env: builder.config.env.clone().into_iter().collect(),
            steps: builder.steps.clone(),
            workerid: worker.id,
            worker_name: worker.name.clone(),
            worker_properties: worker.properties.clone(),
            worker_default_properties: worker.default_properties.clone(),
            builder_dir: worker.basedir.join(&builder.config.workerbuilddir),
            worker: worker.link.clone().expect("a free worker is attached"),
            request: request.clone(),
            stop: stop.clone(),
        };
        self.running.insert(
            request.id,
            Running {
                stop,
                builder: builder.config.name.clone(),
                worker: worker_name.to_string(),
            },
        );
        let ctx = self.ctx.clone();
        builds.spawn(async move {
            build::run(ctx, plan, new).await;
            Finished {
                buildrequestid: request.id,
            }
        });
    }

    /// Whether a new request of `builderid` may collapse others: not when its builder says
    /// `collapseRequests=false`, which spares reading the request.
    fn may_collapse(&self, builderid: Option<i64>) -> bool {
        let builder = builderid.and_then(|id| self.builders.values().find(|b| b.id == id));
        !matches!(
            builder.and_then(|b| b.collapse_requests.as_ref()),
            Some(CollapseRequests::Value(false))
        )
    }

    /// A new request collapses the older ones it can (Buildbot's `collapseRequests`).
    async fn collapse(&mut self, brid: i64) -> DbResult<()> {
        let Some((builderid, request)) = self.ctx.db.pending_request(brid).await? else {
            return Ok(());
        };
        let Some(builder) = self.builders.values().find(|b| b.id == builderid) else {
            return Ok(());
        };
        let table = choose::builder_table(&builder.config.name, builderid);
        let rule = builder.collapse_requests.clone();
        let collapsed =
            choose::collapsible(&self.ctx, rule.as_ref(), table, builderid, &request).await?;
        if !collapsed.is_empty() {
            tracing::info!(buildrequest = brid, collapsed = ?collapsed, "build requests collapsed");
        }
        choose::skip(&self.ctx, &collapsed).await
    }

    /// The builder's workers with a free slot, the least busy first. As in Buildbot, a
    /// worker runs one build of a builder at a time (they share its build directory);
    /// `max_builds` bounds its builds of all builders.
    fn free_workers(&self, builder: &str) -> Vec<String> {
        let busy_with_builder = |worker: &str| {
            self.running
                .values()
                .any(|r| r.builder == builder && r.worker == worker)
        };
        let mut free: Vec<&Worker> = self.builders[builder]
            .config
            .workernames
            .iter()
            .filter_map(|name| self.workers.get(name))
            .filter(|w| w.link.is_some() && !w.paused && !w.graceful)
            .filter(|w| w.max_builds.is_none_or(|max| w.running < max as usize))
            .filter(|w| !busy_with_builder(&w.name))
            .collect();
        free.sort_by_key(|w| w.running);
        free.into_iter().map(|w| w.name.clone()).collect()
    }

    async fn answer(&mut self, request: ControlRequest) {
        match request {
            ControlRequest::Force {
                scheduler,
                params,
                reply,
            } => {
                let builders = &self.builders;
                let known = |name: &str| builders.get(name).map(|builder| builder.id);
                let forced = schedulers::force_named(&self.ctx, &scheduler, params, &known).await;
                let _ = reply.send(forced);
            }
            ControlRequest::StopBuild {
                buildid,
                reason,
                reply,
            } => {
                let _ = reply.send(self.stop_build(buildid, &reason).await);
            }
            ControlRequest::Rebuild { buildid, reply } => {
                let _ = reply.send(self.rebuild(buildid).await);
            }
            ControlRequest::CancelRequest {
                buildrequestid,
                reason,
                reply,
            } => {
                let _ = reply.send(self.cancel_request(buildrequestid, &reason).await);
            }
            ControlRequest::StopBuilds {
                builderid,
                reason,
                reply,
            } => {
                let _ = reply.send(Ok(self.stop_builds(builderid, &reason)));
            }
            ControlRequest::CancelRequests {
                which,
                reason,
                reply,
            } => {
                let _ = reply.send(self.cancel_requests(which, &reason).await);
            }
            ControlRequest::PauseWorker {
                worker,
                paused,
                reply,
            } => {
                let _ = reply.send(self.set_worker_state(&worker, Some(paused), false).await);
            }
            ControlRequest::ShutDownWorker { worker, reply } => {
                let _ = reply.send(self.set_worker_state(&worker, None, true).await);
            }
            ControlRequest::PingBuilder { builder, reply } => self.ping_builder(&builder, reply),
            ControlRequest::CleanShutdown { set, reply } => {
                if let Some(draining) = set.filter(|&d| d != self.draining) {
                    self.draining = draining;
                    match draining {
                        true => tracing::info!(
                            builds = self.running.len(),
                            "clean shutdown: no new builds, waiting for the running ones"
                        ),
                        false => tracing::info!("clean shutdown called off"),
                    }
                }
                let _ = reply.send(Ok(self.draining));
            }
        }
    }

    /// Stops every running build (those of builders a reconfig removed too), or those of
    /// one builder; answers how many.
    fn stop_builds(&mut self, builderid: Option<i64>, reason: &str) -> usize {
        let wanted = |running: &Running| match builderid {
            None => true,
            Some(id) => self
                .builders
                .get(&running.builder)
                .is_some_and(|b| b.id == id),
        };
        let mut stopped = 0;
        for (brid, running) in &self.running {
            if wanted(running) && !running.stop.is_cancelled() {
                tracing::info!(buildrequest = brid, "stopping the build: {reason}");
                running.stop.cancel();
                stopped += 1;
            }
        }
        stopped
    }

    /// Cancels the pending requests `which` names; answers how many.
    async fn cancel_requests(
        &mut self,
        which: PendingOf,
        reason: &str,
    ) -> Result<usize, ControlError> {
        let db = &self.ctx.db;
        let ids = match which {
            PendingOf::Builder(builderid) => db.pending_requests(builderid).await,
            PendingOf::AllBuilders => {
                let mut all = Vec::new();
                for builder in self.builders.values() {
                    match db.pending_requests(builder.id).await {
                        Ok(requests) => all.extend(requests),
                        Err(error) => return Err(storage_error("cancel", error)),
                    }
                }
                Ok(all)
            }
            PendingOf::Change(changeid) => db.pending_requests_with_change(changeid).await,
        }
        .map_err(|e| storage_error("cancel", e))?;
        let ids: Vec<i64> = ids.into_iter().map(|r| r.id).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        complete_requests(&self.ctx, &ids, BuildResult::Cancelled, "cancel")
            .await
            .map_err(|e| storage_error("cancel", e))?;
        tracing::info!(buildrequests = ?ids, "build requests cancelled: {reason}");
        Ok(ids.len())
    }

    /// Pauses or unpauses a worker (`paused`), or begins its graceful shutdown; the state
    /// is stored and announced as Buildbot's `workers/N/state_updated`.
    async fn set_worker_state(
        &mut self,
        name: &str,
        paused: Option<bool>,
        graceful: bool,
    ) -> Result<(), ControlError> {
        let worker = self
            .workers
            .get_mut(name)
            .ok_or_else(|| ControlError::not_found(format!("no worker named '{name}'")))?;
        if let Some(paused) = paused {
            worker.paused = paused;
        }
        if graceful && !worker.graceful {
            worker.graceful = true;
            if worker.running == 0 {
                shut_down_worker(worker);
            }
        }
        let (id, paused, graceful) = (worker.id, worker.paused, worker.graceful);
        let db = &self.ctx.db;
        db.set_worker_state(id, paused, graceful)
            .await
            .map_err(|e| storage_error("worker state", e))?;
        let _ = publish(db, &self.ctx.bus, Resource::Worker(id), "state_updated").await;
        tracing::info!(worker = name, paused, graceful, "worker state changed");
        Ok(())
    }

    /// Whether each worker of a builder answers: a LocalWorker always does, a remote one
    /// if it is attached and answers a `print` within [`PING_TIMEOUT`]. The pings run
    /// apart, so a slow worker holds up nothing but the answer.
    fn ping_builder(&self, name: &str, reply: oneshot::Sender<Result<Pinged, ControlError>>) {
        let Some(builder) = self.builders.get(name) else {
            let _ = reply.send(Err(ControlError::not_found(format!(
                "no builder named '{name}'"
            ))));
            return;
        };
        let links: Vec<(String, Option<WorkerLink>)> = builder
            .config
            .workernames
            .iter()
            .map(|worker| {
                let link = self.workers.get(worker).and_then(|w| w.link.clone());
                (worker.clone(), link)
            })
            .collect();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for (worker, link) in links {
                let answered = match link {
                    Some(WorkerLink::Local) => true,
                    Some(WorkerLink::Remote(connection)) => {
                        let ping = connection.request("print", vec![("message", "ping".into())]);
                        matches!(tokio::time::timeout(PING_TIMEOUT, ping).await, Ok(Ok(_)))
                    }
                    None => false,
                };
                answers.push((worker, answered));
            }
            let _ = reply.send(Ok(answers));
        });
    }

    async fn stop_build(&mut self, buildid: i64, reason: &str) -> Result<(), ControlError> {
        let (_, brid) = self
            .ctx
            .db
            .build_request_of(buildid)
            .await
            .map_err(|_| ControlError::not_found(format!("no build with id {buildid}")))?;
        match self.running.get(&brid) {
            Some(running) => {
                tracing::info!(build = buildid, "stopping the build: {reason}");
                running.stop.cancel();
                Ok(())
            }
            None => Err(ControlError::bad_request(format!(
                "build {buildid} is not running"
            ))),
        }
    }

    /// Buildbot's `rebuild`: a new buildset with the same sourcestamps and properties, for
    /// the build's builder.
    async fn rebuild(&mut self, buildid: i64) -> Result<Submitted, ControlError> {
        let db = &self.ctx.db;
        let (bsid, _) = db
            .build_request_of(buildid)
            .await
            .map_err(|_| ControlError::not_found(format!("no build with id {buildid}")))?;
        let spec = async {
            Ok::<_, crate::db::DbError>(BuildsetSpec {
                reason: format!("rebuild of build {buildid}"),
                scheduler: "rebuild".into(),
                sourcestamp_ids: db.buildset_sourcestamp_ids(bsid).await?,
                properties: db.buildset_properties(bsid).await?,
                builder_ids: vec![db.builder_of_build(buildid).await?],
                ..BuildsetSpec::default()
            })
        };
        let submitted = async { db.add_buildset(&spec.await?).await };
        let (new_bsid, brids) = submitted.await.map_err(|e| storage_error("rebuild", e))?;
        let _ = publish(db, &self.ctx.bus, Resource::Buildset(new_bsid), "new").await;
        for brid in brids.values() {
            let _ = publish(db, &self.ctx.bus, Resource::BuildRequest(*brid), "new").await;
        }
        Ok((new_bsid, brids))
    }

    async fn cancel_request(&mut self, brid: i64, reason: &str) -> Result<(), ControlError> {
        if let Some(running) = self.running.get(&brid) {
            running.stop.cancel();
            return Ok(());
        }
        let cancelled = complete_requests(&self.ctx, &[brid], BuildResult::Cancelled, "cancel")
            .await
            .map_err(|e| storage_error("cancel", e))?;
        if !cancelled {
            return Err(ControlError::bad_request(format!(
                "build request {brid} does not exist or is already complete"
            )));
        }
        tracing::info!(buildrequest = brid, "build request cancelled: {reason}");
        Ok(())
    }
}

/// Tells a remote worker to shut down; it closes its connection, which detaches it (a
/// LocalWorker is the master itself: it just takes no more builds).
fn shut_down_worker(worker: &Worker) {
    if let Some(WorkerLink::Remote(connection)) = &worker.link {
        let connection = connection.clone();
        tokio::spawn(async move {
            tracing::info!(worker = %connection.name(), "telling the worker to shut down");
            if let Err(error) = connection.shutdown().await {
                tracing::warn!(worker = %connection.name(), "the worker did not take the shutdown: {error}");
            }
        });
    }
}

/// Completes pending requests with `results`, announces each with `event`, then completes
/// and announces the buildsets whose last request this was. False when none was pending.
pub(crate) async fn complete_requests(
    ctx: &Context,
    ids: &[i64],
    results: BuildResult,
    event: &str,
) -> DbResult<bool> {
    let mut buildsets = Vec::new();
    for &id in ids {
        let bsid = complete_request(&ctx.db, &ctx.bus, id, results, event).await?;
        if let Some(bsid) = bsid.filter(|bsid| !buildsets.contains(bsid)) {
            buildsets.push(bsid);
        }
    }
    for &bsid in &buildsets {
        complete_buildset(&ctx.db, &ctx.bus, bsid).await?;
    }
    Ok(!buildsets.is_empty())
}

/// A storage failure behind a control request: logged here, a bare 500 for the caller.
fn storage_error(what: &str, error: DbError) -> ControlError {
    tracing::error!("{what} failed: {error}");
    ControlError {
        status: 500,
        message: format!("{what} failed: internal error"),
    }
}
