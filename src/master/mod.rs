//! The running master: loads the config, opens storage, starts every service (change
//! sources, schedulers, builders and workers, the web server) and stops them in order.

mod reconfig;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::changes::RunningSource;
use crate::config::DEFAULT_DB_URL;
use crate::data;
use crate::db::{Db, StartedMaster};
use crate::engine::{Engine, Reconfigure, SHUTDOWN_GRACE};
use crate::runtime::{
    Context, Control, ControlRequest, MasterId, PollRequest, Polls, Service, Shared, SharedConfig,
};
use crate::schedulers::RunningScheduler;
use crate::script::ScriptHost;
use crate::status::targets::{self, RunningTarget};
use crate::www;
pub use reconfig::{Outcome, RECONFIG_FILE};

/// Runs the master of `basedir` until `shutdown` is cancelled, then stops cleanly.
pub async fn run(basedir: &Path, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Installed first: SIGHUP's default action would end the process.
    let mut hangups = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let master = Master::start(basedir, shutdown).await?;
    // After the services' first round (the engine's first look for work, the web server's
    // routes), which runs start-up code too.
    tokio::spawn(async {
        tokio::time::sleep(crate::runtime::footprint::SETTLED).await;
        crate::runtime::footprint::release_start_up_pages();
    });
    let requests = master.reconfig_requests();
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reconfig requested");
            // A full queue already holds a reconfig that will read the file afresh.
            let _ = requests.try_send(());
        }
    });
    let db = master.context.db.clone();
    let stopped = master.wait().await;
    db.close().await;
    stopped
}

/// A started master: its shared context and the tasks of its services.
pub struct Master {
    pub context: Context,
    engine: JoinHandle<()>,
    engine_reconfigs: mpsc::Sender<Reconfigure>,
    /// Each with its name, which a reconfig diffs on; shared with the task that answers
    /// [`Polls`] requests.
    change_sources: ChangeSources,
    schedulers: Vec<(String, RunningScheduler)>,
    /// Every status target but the web server, whatever its kind.
    status_targets: Vec<(String, RunningTarget)>,
    web: Option<JoinHandle<anyhow::Result<()>>>,
    /// Where the web server listens, when the config has one.
    pub web_address: Option<std::net::SocketAddr>,
    reconfig_sender: mpsc::Sender<()>,
    reconfig_receiver: mpsc::Receiver<()>,
    /// How many reconfigs ran, for `moonbot reconfig` to see its own outcome.
    reconfig_count: u64,
}

impl Master {
    /// Loads the config, opens storage and starts every service. Errors here (a broken
    /// config, a database that cannot be opened) leave nothing running.
    pub async fn start(basedir: &Path, shutdown: CancellationToken) -> anyhow::Result<Master> {
        // The default database, which most configs use, opens on the runtime while the
        // config is evaluated on the caller's thread (the daemon's main thread, which has
        // nothing else to do meanwhile), as a reconfig evaluates it: both take about a
        // millisecond, and a thread made for the evaluation cost a start more than it saved.
        let dir = basedir.to_path_buf();
        let early = tokio::spawn(async move { Db::open_existing(DEFAULT_DB_URL, &dir).await });
        let loaded = reconfig::load_checked(basedir);
        // A panic while opening is no answer: the start opens the database again below.
        let early = early.await.ok().flatten();
        let loaded = loaded.map_err(|errors| anyhow::anyhow!("{}", errors.join("\n")))?;
        let config = loaded.config;
        let opened = match early {
            Some(opened) if config.db_url == DEFAULT_DB_URL => opened.migrate().await,
            other => {
                if let Some(unused) = other {
                    unused.abandon();
                }
                Db::open(&config.db_url, basedir).await
            }
        };
        let db = opened.with_context(|| format!("cannot open the database {}", config.db_url))?;
        db.set_event_horizon(config.event_horizon);
        let script = ScriptHost::start(loaded.lua, config.script_limits)?;
        let (control, requests) = Control::channel();
        let (polls, poll_requests) = Polls::channel();
        let context = Context::new(Shared {
            db,
            bus: Bus::default(),
            control,
            polls,
            script,
            config: SharedConfig::new(config),
            basedir: basedir.to_path_buf(),
            masterid: MasterId::default(),
            shutdown,
            source_endpoints: Default::default(),
        });
        // The web server binds its port and makes its routes while the master registers:
        // a port in use fails the start before the master is marked active, and requests
        // are held until the start's gate opens.
        let web = Web::start(&context).await?;
        let config = context.config.current();
        let claims: Vec<_> = config
            .schedulers
            .iter()
            .map(RunningScheduler::claim_of)
            .collect();
        let started = context
            .db
            .start_master(&master_name(basedir), &claims)
            .await?;
        let masterid = started.masterid;
        context.masterid.set(masterid);
        let db = context.db.clone();
        let started = Master::start_services(context, started, web, requests, poll_requests).await;
        if started.is_err() {
            // Active since `start_master`: a start that fails after it leaves it inactive.
            if let Err(error) = db.set_master_active(masterid, false).await {
                tracing::warn!("cannot mark the master inactive after its failed start: {error}");
            }
        }
        started
    }

    /// Starts every service on the master's context (the web server is started already):
    /// the engine, the change sources, the schedulers and the status targets, from what
    /// registering the master `started` found, then opens the web server's gate;
    /// `requests` and `poll_requests` are what the context's `control` and `polls` send.
    async fn start_services(
        context: Context,
        started: StartedMaster,
        web: Web,
        requests: mpsc::Receiver<ControlRequest>,
        poll_requests: mpsc::Receiver<PollRequest>,
    ) -> anyhow::Result<Master> {
        let masterid = context.masterid.get();
        for buildid in &started.interrupted {
            tracing::warn!(
                build = buildid,
                "build interrupted by the last stop: marked RETRY, its request queued again"
            );
            data::publish(
                &context.db,
                &context.bus,
                data::Resource::Build(*buildid),
                "finished",
            )
            .await?;
        }
        let config = context.config.current();
        // The engine registers its builders and workers while the change sources and the
        // schedulers register themselves: none waits for another's rows.
        let services = async {
            let mut change_sources = Vec::new();
            for source in &config.change_sources {
                let running = RunningSource::start(&context, source).await?;
                change_sources.push((RunningSource::name_of(source).to_string(), running));
            }
            let mut schedulers = Vec::new();
            for scheduler in &config.schedulers {
                let running = match started.schedulers.get(scheduler.name()) {
                    Some(id) => RunningScheduler::start_claimed(&context, scheduler, *id).await?,
                    None => RunningScheduler::start(&context, scheduler).await?,
                };
                schedulers.push((RunningScheduler::name_of(scheduler).to_string(), running));
            }
            anyhow::Ok((change_sources, schedulers))
        };
        let engine = Engine::new(context.clone(), started.recorded);
        let (engine, services) = tokio::join!(engine, services);
        let engine = engine?;
        let (change_sources, schedulers) = services?;
        let change_sources = ChangeSources::new(change_sources);
        tokio::spawn(serve_polls(
            poll_requests,
            change_sources.clone(),
            context.shutdown.clone(),
        ));
        let mut status_targets = Vec::new();
        for target in &targets::reported(&config) {
            let running = RunningTarget::start(&context, target).await?;
            status_targets.push((target.name().to_string(), running));
        }
        // What the start leaves for later (the master's `started` event, the engine's
        // workers' rows and the requests left queued) waits for the start's first requests,
        // those that waited for it and those that come as it opens, rather than take the
        // database's connection before them; the engine runs meanwhile, as a held force
        // needs its answer. Their REST reads run on the start's own connection. The engine's
        // writes follow the master's, so that both go on that connection: racing it, the
        // second would open sqlx's beside it. The start returns once the engine has taken up
        // what the last run left, so that nothing the caller then queues races that.
        let answered = web.gate.open();
        let (recorded, engine_may_write) = oneshot::channel();
        let (engine_reconfigs, engine_reconfig_receiver) = mpsc::channel(1);
        let engine = tokio::spawn(engine.run(
            requests,
            engine_reconfig_receiver,
            SHUTDOWN_GRACE,
            engine_may_write,
        ));
        answered.wait().await;
        context.db.start_answered();
        let written = context.db.record_master_started(masterid).await;
        let (taken_up, engine_took_up) = oneshot::channel();
        let _ = recorded.send(taken_up);
        written?;
        // An engine that stopped (a shutdown meanwhile) drops the reply: nothing to wait for.
        let _ = engine_took_up.await;
        let (reconfig_sender, reconfig_receiver) = mpsc::channel(1);
        tracing::info!(basedir = %context.basedir.display(), "master started");
        Ok(Master {
            context,
            engine,
            engine_reconfigs,
            change_sources,
            schedulers,
            status_targets,
            web: web.task,
            web_address: web.address,
            reconfig_sender,
            reconfig_receiver,
            reconfig_count: 0,
        })
    }

    /// Where to ask for a reconfig (SIGHUP does); requests made while one runs are served
    /// by one more right after it.
    pub fn reconfig_requests(&self) -> mpsc::Sender<()> {
        self.reconfig_sender.clone()
    }

    /// Serves reconfig requests until the shutdown signal, then stops every service. A
    /// shutdown during a reconfig waits for it to end.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let shutdown = self.context.shutdown.clone();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(()) = self.reconfig_receiver.recv() => {
                    self.reconfig().await;
                }
            }
        }
        tracing::info!("master shutting down");
        for (_, source) in self.change_sources.take().await {
            source.stop().await;
        }
        for (_, scheduler) in self.schedulers {
            scheduler.stop().await;
        }
        self.engine.await?;
        // After the engine: builds that finish in the grace period are reported too.
        for (_, target) in self.status_targets {
            target.stop().await;
        }
        if let Some(web) = self.web {
            web.await??;
        }
        self.context.db.empty_log().await;
        self.context
            .db
            .set_master_active(self.context.masterid.get(), false)
            .await?;
        tracing::info!("master stopped");
        Ok(())
    }
}

/// The web server during a start: serving (taking connections, holding requests) from
/// before the master registers, its gate opened once every service has started.
struct Web {
    task: Option<JoinHandle<anyhow::Result<()>>>,
    address: Option<std::net::SocketAddr>,
    gate: www::StartGate,
}

impl Web {
    /// Binds the config's web port, when it has one, and serves it behind a closed gate.
    async fn start(context: &Context) -> anyhow::Result<Web> {
        let listener = www::bind(context).await?;
        let address = listener.as_ref().and_then(|l| l.local_addr().ok());
        let (gate, held) = www::start_gate(www::FIRST_REQUESTS);
        let task = listener.map(|l| tokio::spawn(www::serve(context.clone(), l, held)));
        Ok(Web {
            task,
            address,
            gate,
        })
    }
}

/// The running change sources, by name.
#[derive(Clone)]
struct ChangeSources(Arc<tokio::sync::Mutex<Vec<(String, RunningSource)>>>);

impl ChangeSources {
    fn new(sources: Vec<(String, RunningSource)>) -> ChangeSources {
        ChangeSources(Arc::new(tokio::sync::Mutex::new(sources)))
    }

    /// Takes them all out, to reconcile or stop them.
    async fn take(&self) -> Vec<(String, RunningSource)> {
        std::mem::take(&mut *self.0.lock().await)
    }
}

/// Answers [`Polls`] requests until the shutdown: the sources asked for (all of them when
/// none is named), within those allowed, are told to poll; a name that is not a polling
/// source, or not allowed, is an error, as in Buildbot's `poller` hook (the other sources
/// asked for still poll).
async fn serve_polls(
    mut requests: tokio::sync::mpsc::Receiver<PollRequest>,
    sources: ChangeSources,
    shutdown: CancellationToken,
) {
    loop {
        let request = tokio::select! {
            () = shutdown.cancelled() => break,
            request = requests.recv() => match request {
                Some(request) => request,
                None => break,
            },
        };
        let sources = sources.0.lock().await;
        let allowed = |name: &str| {
            request
                .allowed
                .as_ref()
                .is_none_or(|allowed| allowed.iter().any(|a| a == name))
        };
        let wanted = |name: &str| {
            request
                .names
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| n == name))
        };
        let mut polled = Vec::new();
        for (name, source) in sources.iter() {
            if wanted(name) && allowed(name) && source.poll_now() {
                polled.push(name.clone());
            }
        }
        let missing: Vec<&str> = request
            .names
            .iter()
            .flatten()
            .filter(|name| !polled.contains(name))
            .map(String::as_str)
            .collect();
        let answer = if missing.is_empty() {
            Ok(polled)
        } else {
            Err(format!("could not find pollers: {}", missing.join(",")))
        };
        let _ = request.reply.send(answer);
    }
}

/// Buildbot names a master `hostname:basedir`.
fn master_name(basedir: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), basedir.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample's shape, small: a builder on the local worker, its schedulers and the
    /// web server.
    const CONFIG: &str = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local") }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{command={"true"}})
c['builders'] = { util.BuilderConfig{name="runtests", workernames={"local"}, factory=f} }
c['schedulers'] = { schedulers.ForceScheduler{name="force", builderNames={"runtests"}} }
c['status'] = { status.WebStatus{ http_port = "tcp:PORT:interface=127.0.0.1" } }
"#;

    async fn stop(master: Master) {
        master.context.shutdown.cancel();
        master.wait().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_start_on_an_existing_database_opens_no_sqlx_connection() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = CONFIG.replace("PORT", &port.to_string());
        std::fs::write(dir.path().join(crate::config::CONFIG_FILE), config).unwrap();
        stop(
            Master::start(dir.path(), CancellationToken::new())
                .await
                .unwrap(),
        )
        .await;
        // A request made as the master starts, held until it has started, as a probe's.
        let starting = tokio::spawn({
            let dir = dir.path().to_path_buf();
            async move { Master::start(&dir, CancellationToken::new()).await }
        });
        let url = format!("http://127.0.0.1:{port}/api/v2/builders");
        let answer = loop {
            if let Ok(answer) = reqwest::get(&url).await {
                break answer;
            }
            tokio::time::sleep(std::time::Duration::from_micros(200)).await;
        };
        assert!(answer.status().is_success());
        let master = starting.await.unwrap().unwrap();
        // The engine's writes that follow the start, well within sqlx's idle timeout (1 s).
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(master.context.db.pool.open_connections(), 0);
        stop(master).await;
    }
}
