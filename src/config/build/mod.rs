//! The build side of the config: workers, builders, factories, steps, schedulers, change sources.

use mlua::{Lua, UserData};

use super::{Location, Namespaces};

/// One entry of `c['workers']`.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub name: String,
    pub location: Location,
}
impl UserData for WorkerConfig {}
crate::config_object!(
    WorkerConfig,
    "worker (worker.Worker(...) or worker.LocalWorker(...))"
);

/// One entry of `c['builders']`.
#[derive(Clone, Debug)]
pub struct BuilderConfig {
    pub name: String,
    pub workernames: Vec<String>,
    pub location: Location,
}
impl UserData for BuilderConfig {}
crate::config_object!(BuilderConfig, "util.BuilderConfig");

impl BuilderConfig {
    /// Scheduler names its Trigger steps fire, with each step's place.
    pub fn triggered_schedulers(&self) -> Vec<(String, Location)> {
        Vec::new()
    }
}

/// One entry of `c['schedulers']`.
#[derive(Clone, Debug)]
pub enum SchedulerConfig {}
impl UserData for SchedulerConfig {}
crate::config_object!(
    SchedulerConfig,
    "scheduler (schedulers.SingleBranchScheduler{...}, ...)"
);

impl SchedulerConfig {
    pub fn kind(&self) -> &'static str {
        match *self {}
    }
    pub fn name(&self) -> &str {
        match *self {}
    }
    pub fn location(&self) -> &Location {
        match *self {}
    }
    pub fn builder_names(&self) -> &[String] {
        match *self {}
    }
    /// For a Dependent scheduler, the name of its upstream scheduler.
    pub fn upstream(&self) -> Option<&str> {
        match *self {}
    }
}

/// One entry of `c['change_source']`.
#[derive(Clone, Debug)]
pub enum ChangeSourceConfig {}
impl UserData for ChangeSourceConfig {}
crate::config_object!(
    ChangeSourceConfig,
    "change source (changes.GitPoller{...}, ...)"
);

impl ChangeSourceConfig {
    pub fn kind(&self) -> &'static str {
        match *self {}
    }
    pub fn name(&self) -> &str {
        match *self {}
    }
    pub fn location(&self) -> &Location {
        match *self {}
    }
}

/// Every constructor this part registers, with its options.
pub const CLASSES: &[crate::config::ClassOptions] = &[];

pub fn register(_lua: &Lua, _ns: &Namespaces) -> mlua::Result<()> {
    Ok(())
}
