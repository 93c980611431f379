//! Build steps: the options every step shares, the step kinds, and the steps with no
//! command of their own (`SetProperty`, `Trigger`).

use std::collections::BTreeMap;

use mlua::{Lua, MultiValue, UserData, Value};

use super::git::GitStep;
use super::shell::{
    MasterShellCommand, PropertyFromCommand, ShellArg, ShellOptions, ShellStep, WarningCounting,
};
use super::transfer::{FileDownload, FileUpload};
use super::values::{read_args, result_code, ValueOrFunction, RESULT_CODES};
use crate::config::kwargs::{constructor, describe, Kwargs, OneOrMany};
use crate::config::{define, Location, Namespaces};
use crate::model::BuildResult;
use crate::script::Renderable;

/// One step of a factory: what every step shares, and what its class adds.
#[derive(Clone, Debug)]
pub struct StepConfig {
    pub common: StepCommon,
    pub kind: StepKind,
    pub location: Location,
}

impl UserData for StepConfig {}
crate::config_object!(StepConfig, "build step (steps.ShellCommand{...}, ...)");

impl StepConfig {
    /// The class users wrote, e.g. `ShellCommand`.
    pub fn class(&self) -> &'static str {
        match &self.kind {
            StepKind::ShellCommand(_) => "ShellCommand",
            StepKind::Configure(_) => "Configure",
            StepKind::Compile(..) => "Compile",
            StepKind::Test(..) => "Test",
            StepKind::ShellSequence { .. } => "ShellSequence",
            StepKind::SetPropertyFromCommand(..) => "SetPropertyFromCommand",
            StepKind::MasterShellCommand(_) => "MasterShellCommand",
            StepKind::Git(_) => "Git",
            StepKind::SetProperty { .. } => "SetProperty",
            StepKind::Trigger(_) => "Trigger",
            StepKind::FileUpload(_) => "FileUpload",
            StepKind::FileDownload(_) => "FileDownload",
            StepKind::MakeDirectory { .. } => "MakeDirectory",
            StepKind::RemoveDirectory { .. } => "RemoveDirectory",
        }
    }
}

/// The options of Buildbot's `BuildStep`, which every step takes.
#[derive(Clone, Debug)]
pub struct StepCommon {
    pub name: String,
    /// Shown while the step runs; `None` lets the step describe itself (a shell step shows
    /// its command).
    pub description: Option<Vec<String>>,
    pub description_done: Option<Vec<String>>,
    pub description_suffix: Option<Vec<String>>,
    pub halt_on_failure: bool,
    pub flunk_on_failure: bool,
    pub warn_on_failure: bool,
    pub warn_on_warnings: bool,
    pub flunk_on_warnings: bool,
    pub always_run: bool,
    pub do_step_if: ValueOrFunction<bool>,
    pub hide_step_if: ValueOrFunction<bool>,
    pub log_encoding: Option<String>,
    /// The results for which the step's summary becomes the build's.
    pub update_build_summary_policy: Vec<BuildResult>,
    /// Relative to the builder's directory; `None` for the factory's `build`.
    pub workdir: Option<Renderable>,
}

#[derive(Clone, Debug)]
pub enum StepKind {
    ShellCommand(ShellStep),
    Configure(ShellStep),
    Compile(ShellStep, WarningCounting),
    Test(ShellStep, WarningCounting),
    ShellSequence {
        commands: Vec<ShellArg>,
        shell: ShellOptions,
    },
    SetPropertyFromCommand(ShellStep, PropertyFromCommand),
    MasterShellCommand(MasterShellCommand),
    Git(Box<GitStep>),
    SetProperty {
        property: Renderable,
        value: Renderable,
    },
    Trigger(TriggerStep),
    FileUpload(FileUpload),
    FileDownload(FileDownload),
    MakeDirectory {
        dir: Renderable,
    },
    RemoveDirectory {
        dir: Renderable,
    },
}

/// What a step class sets before the user's options: Buildbot's class attributes.
pub(super) struct Defaults {
    pub name: &'static str,
    pub description: &'static [&'static str],
    pub description_done: &'static [&'static str],
    pub halt_on_failure: bool,
    pub flunk_on_failure: bool,
    pub warn_on_failure: bool,
}

/// `BuildStep` itself (and `ResultComputingConfigMixin`: `flunkOnFailure` is on).
pub(super) const BASE: Defaults = Defaults {
    name: "generic",
    description: &[],
    description_done: &[],
    halt_on_failure: false,
    flunk_on_failure: true,
    warn_on_failure: false,
};

/// Buildbot's `step_name_length`: the database column's width.
const MAX_NAME_LENGTH: usize = 50;

/// The option list of a step class: its own options, then `BuildStep`'s.
macro_rules! step_options {
    ($($extra:literal),* $(,)?) => {
        &[
            $($extra,)*
            "name",
            "description",
            "descriptionDone",
            "descriptionSuffix",
            "haltOnFailure",
            "flunkOnFailure",
            "warnOnFailure",
            "warnOnWarnings",
            "flunkOnWarnings",
            "alwaysRun",
            "doStepIf",
            "hideStepIf",
            "locks",
            "logEncoding",
            "updateBuildSummaryPolicy",
            "workdir",
        ]
    };
}
pub(super) use step_options;

/// Reads the options every step takes, over the class's defaults.
pub(super) fn common(kw: &mut Kwargs, defaults: &Defaults) -> StepCommon {
    let list = |d: &[&str]| (!d.is_empty()).then(|| d.iter().map(|s| s.to_string()).collect());
    let name = kw
        .optional::<String>("name")
        .unwrap_or_else(|| defaults.name.to_string());
    if name.chars().count() > MAX_NAME_LENGTH {
        kw.error(format!(
            "option 'name' must be at most {MAX_NAME_LENGTH} characters, got '{name}'"
        ));
    }
    let halt_on_failure = kw.optional_or("haltOnFailure", defaults.halt_on_failure);
    let flunk_on_failure = kw.optional_or("flunkOnFailure", defaults.flunk_on_failure);
    let warn_on_failure = kw.optional_or("warnOnFailure", defaults.warn_on_failure);
    let warn_on_warnings = kw.optional_or("warnOnWarnings", false);
    let flunk_on_warnings = kw.optional_or("flunkOnWarnings", false);
    let update_build_summary_policy = summary_policy(
        kw,
        flunk_on_failure || halt_on_failure || warn_on_failure,
        warn_on_warnings || flunk_on_warnings,
    );
    kw.unimplemented("locks");
    StepCommon {
        name,
        description: strings(kw, "description").or_else(|| list(defaults.description)),
        description_done: strings(kw, "descriptionDone")
            .or_else(|| list(defaults.description_done)),
        description_suffix: strings(kw, "descriptionSuffix"),
        halt_on_failure,
        flunk_on_failure,
        warn_on_failure,
        warn_on_warnings,
        flunk_on_warnings,
        always_run: kw.optional_or("alwaysRun", false),
        do_step_if: kw
            .optional("doStepIf")
            .unwrap_or(ValueOrFunction::Value(true)),
        hide_step_if: kw
            .optional("hideStepIf")
            .unwrap_or(ValueOrFunction::Value(false)),
        log_encoding: {
            // Output is read as UTF-8 (invalid bytes replaced), which is all that works yet.
            let encoding: Option<String> = kw.optional("logEncoding");
            let utf8 = |e: &String| {
                matches!(
                    e.to_ascii_lowercase().replace('-', "_").as_str(),
                    "utf8" | "utf_8"
                )
            };
            kw.unimplemented_when("logEncoding", encoding.as_ref().is_some_and(|e| !utf8(e)));
            encoding
        },
        update_build_summary_policy,
        workdir: kw.optional("workdir"),
    }
}

fn strings(kw: &mut Kwargs, name: &str) -> Option<Vec<String>> {
    kw.optional::<OneOrMany<String>>(name).map(|v| v.0)
}

/// `updateBuildSummaryPolicy`: a list of results, `true` for all, `false` for none, or
/// Buildbot's default, which follows the failure and warning flags.
fn summary_policy(kw: &mut Kwargs, on_failure: bool, on_warnings: bool) -> Vec<BuildResult> {
    use BuildResult::*;
    match kw.raw("updateBuildSummaryPolicy") {
        None => {
            let mut policy = vec![Exception, Retry, Cancelled];
            if on_failure {
                policy.push(Failure);
            }
            if on_warnings {
                policy.push(Warnings);
            }
            policy
        }
        Some(Value::Boolean(true)) => BuildResult::ALL.to_vec(),
        Some(Value::Boolean(false)) => Vec::new(),
        Some(Value::Table(table)) => {
            let mut policy = Vec::new();
            for (index, item) in table.sequence_values::<Value>().flatten().enumerate() {
                match result_code(&item, kw.lua()) {
                    Some(result) => policy.push(result),
                    None => kw.error(format!(
                        "option 'updateBuildSummaryPolicy' item {} must be {RESULT_CODES}, got {}",
                        index + 1,
                        describe(&item)
                    )),
                }
            }
            policy
        }
        Some(other) => {
            kw.error(format!(
                "option 'updateBuildSummaryPolicy' must be a list of result codes or a boolean, got {}",
                describe(&other)
            ));
            Vec::new()
        }
    }
}

/// Makes a step from its kind once every option is read; `None` when any had errors.
pub(super) fn finish(kw: Kwargs, common: StepCommon, kind: StepKind) -> Option<StepConfig> {
    let location = kw.location();
    kw.finish().then_some(StepConfig {
        common,
        kind,
        location,
    })
}

// ---- SetProperty ----------------------------------------------------------------------

pub const SET_PROPERTY_OPTIONS: &[&str] = step_options!("property", "value");

const SET_PROPERTY: Defaults = Defaults {
    name: "SetProperty",
    description: &["Setting"],
    description_done: &["Set"],
    ..BASE
};

fn set_property(lua: &Lua, args: MultiValue) -> Option<StepConfig> {
    let mut kw = read_args(
        lua,
        "SetProperty",
        args,
        &["property", "value"],
        &[],
        &["value"],
        SET_PROPERTY_OPTIONS,
    );
    let property = kw.required("property");
    let value = kw.required("value");
    let common = common(&mut kw, &SET_PROPERTY);
    finish(kw, common, StepKind::SetProperty { property, value })
}

// ---- Trigger --------------------------------------------------------------------------

/// `steps.Trigger`: starts builds on Triggerable schedulers.
#[derive(Clone, Debug)]
pub struct TriggerStep {
    pub scheduler_names: Vec<String>,
    /// Schedulers whose results do not count toward this step's.
    pub unimportant_scheduler_names: Vec<String>,
    pub wait_for_finish: bool,
    /// Whether the triggered builds get this build's got_revision. Buildbot's default: on
    /// unless `alwaysUseLatest` or `sourceStamps` is given.
    pub update_source_stamp: bool,
    pub always_use_latest: bool,
    /// Each a table of sourcestamp attributes (`codebase`, `branch`, `revision`, ...).
    pub source_stamps: Vec<BTreeMap<String, Renderable>>,
    pub set_properties: BTreeMap<String, Renderable>,
    /// Properties copied from this build to the triggered ones.
    pub copy_properties: Vec<String>,
    pub parent_relationship: String,
}

pub const TRIGGER_OPTIONS: &[&str] = step_options!(
    "schedulerNames",
    "unimportantSchedulerNames",
    "waitForFinish",
    "updateSourceStamp",
    "alwaysUseLatest",
    "sourceStamp",
    "sourceStamps",
    "set_properties",
    "copy_properties",
    "parent_relationship",
);

const TRIGGER: Defaults = Defaults {
    name: "trigger",
    ..BASE
};

fn trigger(lua: &Lua, args: MultiValue) -> Option<StepConfig> {
    let mut kw = Kwargs::new(lua, "Trigger", args, &[], TRIGGER_OPTIONS);
    let scheduler_names = match kw.required_opt::<Vec<String>>("schedulerNames") {
        Some(names) if names.is_empty() => {
            kw.error("option 'schedulerNames' must name at least one scheduler");
            names
        }
        names => names.unwrap_or_default(),
    };
    let unimportant: Vec<String> = kw.optional("unimportantSchedulerNames").unwrap_or_default();
    if let Some(stray) = unimportant.iter().find(|n| !scheduler_names.contains(n)) {
        kw.error(format!(
            "option 'unimportantSchedulerNames' must be a subset of 'schedulerNames' ('{stray}' is not in it)"
        ));
    }
    let given_stamps = if kw.has("sourceStamp") {
        "sourceStamp"
    } else {
        "sourceStamps"
    };
    let mut source_stamps: Vec<BTreeMap<String, Renderable>> =
        kw.optional("sourceStamps").unwrap_or_default();
    source_stamps.extend(kw.optional::<BTreeMap<String, Renderable>>("sourceStamp"));
    let update_source_stamp: Option<bool> = kw.optional("updateSourceStamp");
    let always_use_latest = kw.optional_or("alwaysUseLatest", false);
    let together = |a: &str, b: &str| format!("options '{a}' and '{b}' cannot be given together");
    if !source_stamps.is_empty() && update_source_stamp.is_some() {
        kw.error(together(given_stamps, "updateSourceStamp"));
    }
    if !source_stamps.is_empty() && always_use_latest {
        kw.error(together(given_stamps, "alwaysUseLatest"));
    }
    if always_use_latest && update_source_stamp.is_some() {
        kw.error(together("alwaysUseLatest", "updateSourceStamp"));
    }
    let step = TriggerStep {
        update_source_stamp: update_source_stamp
            .unwrap_or(!always_use_latest && source_stamps.is_empty()),
        scheduler_names,
        unimportant_scheduler_names: unimportant,
        wait_for_finish: kw.optional_or("waitForFinish", false),
        always_use_latest,
        source_stamps,
        set_properties: kw.optional("set_properties").unwrap_or_default(),
        copy_properties: kw.optional("copy_properties").unwrap_or_default(),
        parent_relationship: kw
            .optional("parent_relationship")
            .unwrap_or_else(|| "Triggered from".into()),
    };
    let common = common(&mut kw, &TRIGGER);
    finish(kw, common, StepKind::Trigger(step))
}

pub(super) fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    define(
        &ns.steps,
        "SetProperty",
        constructor(lua, "build step", set_property)?,
    )?;
    define(
        &ns.steps,
        "Trigger",
        constructor(lua, "build step", trigger)?,
    )?;
    super::shell::register(lua, ns)?;
    super::git::register(lua, ns)?;
    super::transfer::register(lua, ns)
}
