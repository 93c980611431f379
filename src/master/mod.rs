//! The running master: loads the config, opens storage, starts every service (change
//! sources, schedulers, builders and workers, the web server) and stops them in order.

pub mod control;
pub mod service;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::changes::{self, RunningSource};
use crate::config;
use crate::db::Db;
use crate::engine::{Engine, SHUTDOWN_GRACE};
use crate::script::ScriptHost;
use crate::{schedulers, www};
pub use control::{Control, ControlError, ControlRequest, Submitted};
pub use service::{Reconfigured, Service, SharedConfig};

/// What every service of a running master shares. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    pub db: Db,
    pub bus: Bus,
    pub control: Control,
    /// Runs the config's Lua callbacks and renderables.
    pub script: ScriptHost,
    /// The config running now; a reconfig replaces it.
    pub config: SharedConfig,
    pub basedir: PathBuf,
    pub masterid: i64,
    /// Cancelled when the master begins to shut down.
    pub shutdown: CancellationToken,
}

/// Runs the master of `basedir` until `shutdown` is cancelled, then stops cleanly.
pub async fn run(basedir: &Path, shutdown: CancellationToken) -> anyhow::Result<()> {
    Master::start(basedir, shutdown).await?.wait().await
}

/// A started master: its shared context and the tasks of its services.
pub struct Master {
    pub context: Context,
    engine: JoinHandle<()>,
    change_sources: Vec<RunningSource>,
    schedulers: Vec<JoinHandle<()>>,
    web: Option<JoinHandle<anyhow::Result<()>>>,
    /// Where the web server listens, when the config has one.
    pub web_address: Option<std::net::SocketAddr>,
}

impl Master {
    /// Loads the config, opens storage and starts every service. Errors here (a broken
    /// config, a database that cannot be opened) leave nothing running.
    pub async fn start(basedir: &Path, shutdown: CancellationToken) -> anyhow::Result<Master> {
        let loaded = config::load_path(basedir).map_err(|errors| anyhow::anyhow!("{errors}"))?;
        if !loaded.unimplemented.is_empty() {
            let list: Vec<String> = loaded
                .unimplemented
                .iter()
                .map(ToString::to_string)
                .collect();
            bail!(
                "the config uses options that are not implemented yet:\n{}",
                list.join("\n")
            );
        }
        let config = loaded.config;
        let db = Db::open(&config.db_url, basedir)
            .await
            .with_context(|| format!("cannot open the database {}", config.db_url))?;
        let script = ScriptHost::start(loaded.lua, config.script_limits)?;
        let masterid = db.master_id(&master_name(basedir)).await?;
        let (control, requests) = Control::channel();
        let context = Context {
            db,
            bus: Bus::default(),
            control,
            script,
            config: SharedConfig::new(config),
            basedir: basedir.to_path_buf(),
            masterid,
            shutdown,
        };
        // Bound first, so a port in use fails the start before anything runs.
        let web = www::bind(&context).await?;
        let engine = Engine::new(context.clone()).await?;
        let mut change_sources = Vec::new();
        let config = context.config.current();
        for source in &config.change_sources {
            change_sources.push(changes::start(&context, source).await?);
        }
        let mut schedulers = Vec::new();
        for scheduler in &config.schedulers {
            schedulers.push(schedulers::start(context.clone(), scheduler).await?);
        }
        let engine = tokio::spawn(engine.run(requests, SHUTDOWN_GRACE));
        let web_address = web.as_ref().and_then(|listener| listener.local_addr().ok());
        let web = web.map(|listener| tokio::spawn(www::serve(context.clone(), listener)));
        context.db.set_master_active(context.masterid, true).await?;
        tracing::info!(basedir = %context.basedir.display(), "master started");
        Ok(Master {
            context,
            engine,
            change_sources,
            schedulers,
            web,
            web_address,
        })
    }

    /// Waits for the shutdown signal, then for every service to stop.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.context.shutdown.cancelled().await;
        tracing::info!("master shutting down");
        for source in self.change_sources {
            source.stop().await;
        }
        for scheduler in self.schedulers {
            scheduler.await?;
        }
        self.engine.await?;
        if let Some(web) = self.web {
            web.await??;
        }
        self.context
            .db
            .set_master_active(self.context.masterid, false)
            .await?;
        tracing::info!("master stopped");
        Ok(())
    }
}

/// Buildbot names a master `hostname:basedir`.
fn master_name(basedir: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), basedir.display())
}
