//! What every service of a running master is handed, below the services so that they
//! depend downward: the shared [`Context`], the [`Service`] plug a reconfig drives,
//! the [`SharedConfig`] running now, the [`Control`] channel to the engine, [`Polls`] to the
//! change sources, and the bounded
//! [`http`] server the listening services share. `master/` sits above, starting the
//! services with it.

pub mod control;
pub mod endpoints;
pub mod footprint;
pub mod http;
pub mod polls;
mod rotating_log;
pub mod secrets;
pub mod service;
pub mod tls;

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::db::Db;
use crate::script::ScriptHost;
pub use control::{Control, ControlError, ControlRequest, PendingOf, Pinged, Submitted};
pub use endpoints::{SourceEndpoints, SourceRequest, SourceResponse};
pub use polls::{PollRequest, Polls};
pub use rotating_log::RotatingLog;
pub use service::{Reconfigured, Service, SharedConfig};

/// What every service of a running master shares: one reference count to clone, as the
/// web server's router clones it for each of its routes and requests.
#[derive(Clone)]
pub struct Context(Arc<Shared>);

impl Context {
    pub fn new(shared: Shared) -> Context {
        Context(Arc::new(shared))
    }
}

impl Deref for Context {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// This master's id in storage, known once it is registered (`Db::start_master`). A start
/// makes its context, and the web server its routes, while the registration's round trip
/// is under way; nothing reads the id before the start's gate opens.
#[derive(Debug, Default)]
pub struct MasterId(OnceLock<i64>);

impl MasterId {
    pub fn get(&self) -> i64 {
        *self
            .0
            .get()
            .expect("the master's id is read only once it is registered")
    }

    /// Records the id the registration answered; a second one is ignored.
    pub fn set(&self, id: i64) {
        let _ = self.0.set(id);
    }
}

impl From<i64> for MasterId {
    fn from(id: i64) -> MasterId {
        MasterId(OnceLock::from(id))
    }
}

/// What a [`Context`] holds.
pub struct Shared {
    pub db: Db,
    pub bus: Bus,
    pub control: Control,
    /// Asks the master to poll change sources now.
    pub polls: Polls,
    /// Runs the config's Lua callbacks and renderables.
    pub script: ScriptHost,
    /// The config running now; a reconfig replaces it.
    pub config: SharedConfig,
    pub basedir: PathBuf,
    pub masterid: MasterId,
    /// Cancelled when the master begins to shut down.
    pub shutdown: CancellationToken,
    /// Change sources that answer requests on the web server.
    pub source_endpoints: SourceEndpoints,
}
