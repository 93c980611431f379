//! The build side of the config: workers, builders, factories, steps, schedulers, change
//! sources, with Buildbot's option names (0.8 and modern), types and defaults.
//!
//! Each constructor turns its Lua arguments into a typed config with [`Kwargs`], reporting
//! every problem at the user's line; `global.rs` collects the results from
//! `BuildmasterConfig` and `validate.rs` checks the names they share.
//!
//! [`Kwargs`]: crate::config::Kwargs

mod builders;
mod changes;
mod factory;
mod forcesched;
mod git;
mod schedulers;
mod shell;
mod steps;
mod transfer;
mod values;
mod workers;

use mlua::Lua;

use super::{ClassOptions, Namespaces};

pub use builders::{BuilderConfig, CollapseRequests};
pub use changes::{
    ChangeFilter, ChangeSourceConfig, FieldFilter, GitBranches, GitPoller, PbChangeSource,
    PropertyFilters,
};
pub use factory::BuildFactory;
pub use forcesched::{CodebaseParameter, ForceParameter, ForceScheduler, ParameterKind};
pub use git::{GitMethod, GitMode, GitStep};
pub use schedulers::{
    BranchScheduler, CronField, CronTimes, DependentScheduler, Schedule, SchedulerBase,
    SchedulerConfig, TimedScheduler, TriggerableScheduler,
};
pub use shell::{
    Command, DecodeRc, LogFile, MasterShellCommand, PropertyFromCommand, PropertyTarget, ShellArg,
    ShellOptions, ShellStep, WarningCounting,
};
pub use steps::{StepCommon, StepConfig, StepKind, TriggerStep};
pub use transfer::{FileDownload, FileMode, FileUpload};
pub use values::{Branch, CodebaseDefaults, Codebases, Pattern, ValueOrFunction};
pub use workers::{WorkerConfig, WorkerKind};

const fn class(name: &'static str, options: &'static [&'static str]) -> ClassOptions {
    ClassOptions { name, options }
}

/// Every constructor this part registers, with its options.
pub const CLASSES: &[ClassOptions] = &[
    class("worker.Worker", workers::WORKER_OPTIONS),
    class("buildslave.BuildSlave", workers::WORKER_OPTIONS),
    class("worker.LocalWorker", workers::LOCAL_WORKER_OPTIONS),
    class("util.BuilderConfig", builders::BUILDER_OPTIONS),
    class("util.BuildFactory", factory::BUILD_FACTORY_OPTIONS),
    class("steps.ShellCommand", shell::SHELL_COMMAND_OPTIONS),
    class("steps.Configure", shell::CONFIGURE_OPTIONS),
    class("steps.Compile", shell::COMPILE_OPTIONS),
    class("steps.Test", shell::TEST_OPTIONS),
    class("steps.ShellSequence", shell::SHELL_SEQUENCE_OPTIONS),
    class("util.ShellArg", shell::SHELL_ARG_OPTIONS),
    class(
        "steps.SetPropertyFromCommand",
        shell::SET_PROPERTY_FROM_COMMAND_OPTIONS,
    ),
    class(
        "steps.MasterShellCommand",
        shell::MASTER_SHELL_COMMAND_OPTIONS,
    ),
    class("steps.Git", git::GIT_OPTIONS),
    class("steps.SetProperty", steps::SET_PROPERTY_OPTIONS),
    class("steps.Trigger", steps::TRIGGER_OPTIONS),
    class("steps.FileUpload", transfer::FILE_UPLOAD_OPTIONS),
    class("steps.FileDownload", transfer::FILE_DOWNLOAD_OPTIONS),
    class("steps.MakeDirectory", transfer::MAKE_DIRECTORY_OPTIONS),
    class("steps.RemoveDirectory", transfer::REMOVE_DIRECTORY_OPTIONS),
    class(
        "schedulers.SingleBranchScheduler",
        schedulers::SINGLE_BRANCH_OPTIONS,
    ),
    class("schedulers.Scheduler", schedulers::SINGLE_BRANCH_OPTIONS),
    class(
        "schedulers.AnyBranchScheduler",
        schedulers::ANY_BRANCH_OPTIONS,
    ),
    class("schedulers.Periodic", schedulers::PERIODIC_OPTIONS),
    class("schedulers.Nightly", schedulers::NIGHTLY_OPTIONS),
    class("schedulers.Triggerable", schedulers::TRIGGERABLE_OPTIONS),
    class("schedulers.Dependent", schedulers::DEPENDENT_OPTIONS),
    class(
        "schedulers.ForceScheduler",
        forcesched::FORCE_SCHEDULER_OPTIONS,
    ),
    forcesched::PARAMETER_CLASSES[0],
    forcesched::PARAMETER_CLASSES[1],
    forcesched::PARAMETER_CLASSES[2],
    forcesched::PARAMETER_CLASSES[3],
    forcesched::PARAMETER_CLASSES[4],
    forcesched::PARAMETER_CLASSES[5],
    forcesched::PARAMETER_CLASSES[6],
    class(
        "util.CodebaseParameter",
        forcesched::CODEBASE_PARAMETER_OPTIONS,
    ),
    class("util.ChangeFilter", changes::CHANGE_FILTER_OPTIONS),
    class("changes.GitPoller", changes::GIT_POLLER_OPTIONS),
    class("changes.PBChangeSource", changes::PB_CHANGE_SOURCE_OPTIONS),
];

pub fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    workers::register(lua, ns)?;
    builders::register(lua, ns)?;
    factory::register(lua, ns)?;
    steps::register(lua, ns)?;
    schedulers::register(lua, ns)?;
    changes::register(lua, ns)
}

#[cfg(test)]
mod tests;
