//! The plug every reconfigurable service implements: start from its config, take a new
//! config of the same name in place, stop after finishing what it holds.
//!
//! A reconfig diffs services by name: a name only in the new config starts, a name only in
//! the old one stops, a name in both is handed its new config with `reconfigure`. The new
//! config always carries the new VM's callbacks, so even an unchanged service must keep the
//! new config it is given (its old callbacks stop working when the VM is replaced). A
//! service keeps across `reconfigure` anything it must not lose: queues, connections,
//! timers, pending changes.

use std::future::Future;
use std::sync::{Arc, RwLock};

use super::Context;
use crate::config::MasterConfig;

/// What `reconfigure` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconfigured {
    /// Nothing that matters changed; the service now holds the new callbacks.
    Unchanged,
    /// The service changed in place, keeping its state.
    Changed,
    /// The change cannot be made in place: the reconfig stops this service and starts a
    /// new one from the new config.
    NeedsRestart,
}

pub trait Service: Sized + Send {
    type Config: Send + Sync;

    /// The name the reconfig diff keys on (unique per kind).
    fn name_of(config: &Self::Config) -> &str;

    fn start(
        ctx: &Context,
        config: &Self::Config,
    ) -> impl Future<Output = anyhow::Result<Self>> + Send;

    fn reconfigure(
        &mut self,
        ctx: &Context,
        config: &Self::Config,
    ) -> impl Future<Output = anyhow::Result<Reconfigured>> + Send;

    /// Stops after finishing what the service holds (a poll in progress, a submit).
    fn stop(self) -> impl Future<Output = ()> + Send;
}

/// The config the master runs now; a reconfig replaces it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SharedConfig(Arc<RwLock<Arc<MasterConfig>>>);

impl SharedConfig {
    pub fn new(config: MasterConfig) -> SharedConfig {
        SharedConfig(Arc::new(RwLock::new(Arc::new(config))))
    }

    pub fn current(&self) -> Arc<MasterConfig> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, config: Arc<MasterConfig>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = config;
    }
}
