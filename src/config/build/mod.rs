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
mod lua_source;
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
pub use lua_source::{Compared, LuaSource, PollTiming};
pub use schedulers::{
    BranchScheduler, CronField, CronTimes, DependentScheduler, Schedule, SchedulerBase,
    SchedulerConfig, TimedScheduler, TriggerableScheduler,
};
pub use shell::{
    Command, DecodeRc, LogFile, MasterShellCommand, PropertyFromCommand, PropertyTarget, ShellArg,
    ShellOptions, ShellStep, WarningCounting,
};
pub use steps::{StepCommon, StepConfig, StepKind, TriggerStep};
pub use transfer::{
    Compression, CopyDirectory, DirectoryUpload, DownloadSource, FileDownload, FileMode,
    FileUpload, MultipleFileUpload, StringDownload,
};
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
    class("steps.DirectoryUpload", transfer::DIRECTORY_UPLOAD_OPTIONS),
    class(
        "steps.MultipleFileUpload",
        transfer::MULTIPLE_FILE_UPLOAD_OPTIONS,
    ),
    class("steps.StringDownload", transfer::STRING_DOWNLOAD_OPTIONS),
    class(
        "steps.JSONStringDownload",
        transfer::JSON_STRING_DOWNLOAD_OPTIONS,
    ),
    class(
        "steps.JSONPropertiesDownload",
        transfer::JSON_PROPERTIES_DOWNLOAD_OPTIONS,
    ),
    class("steps.CopyDirectory", transfer::COPY_DIRECTORY_OPTIONS),
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
    class(
        "changes.PollingChangeSource",
        lua_source::POLLING_CHANGE_SOURCE_OPTIONS,
    ),
    class("changes.ChangeSource", lua_source::CHANGE_SOURCE_OPTIONS),
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
mod testing;

#[cfg(test)]
mod tests {
    use crate::config::build::testing::*;

    const REALISTIC: &str = r#"-- A translated master.cfg with the build side in full.
local c = BuildmasterConfig

c['title'] = "Example"
c['buildbotURL'] = "http://localhost:8010/"
c['protocols'] = { pb = { port = 9989 }, msgpack_experimental_v7 = { port = 9990 } }

c['workers'] = {
  worker.Worker("linux-1", "secret", { max_builds = 2, properties = { os = "linux" } }),
  worker.LocalWorker("local"),
}
c['slaves'] = { buildslave.BuildSlave("old-mac", "pw", { notify_on_missing = "ops@example.org" }) }

c['change_source'] = changes.GitPoller{
  repourl = "https://example.org/project.git",
  branches = { "main", "release" },
  pollInterval = 120,
  pollAtLaunch = true,
}

local repo = "https://example.org/project.git"
local build = util.BuildFactory()
build:addStep(steps.Git{ repourl = repo, mode = "full", method = "fresh", progress = true })
build:addStep(steps.SetPropertyFromCommand{ command = "git describe --tags", property = "version" })
build:addStep(steps.Configure{ command = { "./configure", "--prefix=/usr" } })

c['builders'] = {}
c['builders']:append(util.BuilderConfig{
  name = "linux",
  workernames = { "linux-1", "local" },
  factory = build,
  tags = { "linux" },
  env = { MAKEFLAGS = "-j4" },
})

-- Steps added after the builder was made still belong to it.
build:addStep(steps.Compile{ warningPattern = "^.*warning: .*$" })
build:addStep(steps.Test{ command = { "make", "check" }, timeout = 3600 })
build:addStep(steps.FileUpload{ workersrc = util.Interpolate("dist/p-%(prop:version)s.tar.gz"),
  masterdest = "public_html/p.tar.gz", mode = "0644" })
build:addStep(steps.Trigger{ schedulerNames = { "package" }, waitForFinish = true,
  set_properties = { version = util.Property("version") } })

local package = util.BuildFactory({
  steps.ShellSequence{ commands = {
    util.ShellArg{ command = "make dist", logname = "dist" },
    util.ShellArg{ command = { "make", "upload" }, haltOnFailure = true },
  } },
  steps.MasterShellCommand{ command = "publish.sh", env = { DEST = "/srv" } },
  steps.RemoveDirectory{ dir = "build/dist", alwaysRun = true },
})
c['builders']:append(util.BuilderConfig{ name = "package", slavenames = { "old-mac" }, factory = package })

c['schedulers'] = {
  schedulers.SingleBranchScheduler{
    name = "main",
    change_filter = util.ChangeFilter{ branch = "main", project_re = "^proj" },
    treeStableTimer = 60,
    builderNames = { "linux" },
  },
  schedulers.Triggerable{ name = "package", builderNames = { "package" } },
  schedulers.ForceScheduler{
    name = "force",
    builderNames = { "linux", "package" },
    properties = { util.BooleanParameter{ name = "clean", label = "Clean build", default = false } },
  },
  schedulers.Nightly{ name = "nightly", builderNames = { "linux" }, hour = 3, minute = 15,
    onlyIfChanged = true, branch = "main" },
}
"#;

    #[test]
    fn a_realistic_config_loads() {
        let loaded = load(REALISTIC);
        let config = &loaded.config;
        assert!(
            loaded.unimplemented.is_empty(),
            "{:?}",
            loaded.unimplemented
        );
        assert_eq!(
            config
                .workers
                .iter()
                .map(|w| w.name.as_str())
                .collect::<Vec<_>>(),
            ["linux-1", "local", "old-mac"]
        );
        assert_eq!(config.change_sources.len(), 1);
        assert_eq!(
            config.change_sources[0].name(),
            "https://example.org/project.git"
        );

        let linux = &config.builders[0];
        assert_eq!(
            linux.steps().iter().map(|s| s.class()).collect::<Vec<_>>(),
            [
                "Git",
                "SetPropertyFromCommand",
                "Configure",
                "Compile",
                "Test",
                "FileUpload",
                "Trigger"
            ]
        );
        assert_eq!(
            linux
                .triggered_schedulers()
                .into_iter()
                .map(|(name, location)| (name, location.line))
                .collect::<Vec<_>>(),
            [("package".to_string(), 41)]
        );
        let package = &config.builders[1];
        assert_eq!(package.workernames, ["old-mac"]);
        assert_eq!(
            package
                .steps()
                .iter()
                .map(|s| s.class())
                .collect::<Vec<_>>(),
            ["ShellSequence", "MasterShellCommand", "RemoveDirectory"]
        );

        assert_eq!(
            config
                .schedulers
                .iter()
                .map(|s| (s.kind(), s.name()))
                .collect::<Vec<_>>(),
            [
                ("SingleBranchScheduler", "main"),
                ("Triggerable", "package"),
                ("ForceScheduler", "force"),
                ("Nightly", "nightly")
            ]
        );
    }

    #[test]
    fn options_the_engine_does_not_carry_out_yet_are_reported() {
        let step = |options: &str| {
            unimplemented(&format!(
                "local f = util.BuildFactory()\nf:addStep({options})"
            ))
        };
        assert_eq!(
            step("steps.ShellCommand{command='x', usePTY=true, lazylogfiles=true, max_lines=10}"),
            [
                "master.cfg.lua:2: ShellCommand: option 'usePTY' is not implemented yet",
                "master.cfg.lua:2: ShellCommand: option 'lazylogfiles' is not implemented yet",
                "master.cfg.lua:2: ShellCommand: option 'max_lines' is not implemented yet",
            ]
        );
        assert!(
            step("steps.ShellCommand{command='x', usePTY=false, logEncoding='utf-8'}").is_empty()
        );
        assert_eq!(
            step("steps.ShellCommand{command='x', logEncoding='latin-1'}"),
            ["master.cfg.lua:2: ShellCommand: option 'logEncoding' is not implemented yet"]
        );
        assert_eq!(
            step("steps.Git{repourl='r', origin='o', port=2222, retryFetch=true}"),
            [
                "master.cfg.lua:2: Git: option 'retryFetch' is not implemented yet",
                "master.cfg.lua:2: Git: option 'origin' is not implemented yet",
                "master.cfg.lua:2: Git: option 'port' is not implemented yet",
            ]
        );
        assert_eq!(
            step("steps.FileUpload{workersrc='a', masterdest='b', url='http://x/'}"),
            ["master.cfg.lua:2: FileUpload: option 'url' is not implemented yet"]
        );
    }
}
