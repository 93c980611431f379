//! Build steps: the options every step shares, the step kinds, and the steps with no
//! command of their own (`SetProperty`, `Trigger`).

use std::collections::BTreeMap;

use mlua::{Lua, MultiValue, UserData, Value};

use super::git::GitStep;
use super::shell::{
    MasterShellCommand, PropertyFromCommand, ShellArg, ShellOptions, ShellStep, WarningCounting,
};
use super::transfer::{
    CopyDirectory, DirectoryUpload, DownloadSource, FileDownload, FileUpload, MultipleFileUpload,
    StringDownload,
};
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
            StepKind::DirectoryUpload(_) => "DirectoryUpload",
            StepKind::MultipleFileUpload(_) => "MultipleFileUpload",
            StepKind::StringDownload(download) => match download.source {
                DownloadSource::String(_) => "StringDownload",
                DownloadSource::Json(_) => "JSONStringDownload",
                DownloadSource::Properties => "JSONPropertiesDownload",
            },
            StepKind::CopyDirectory(_) => "CopyDirectory",
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
    DirectoryUpload(DirectoryUpload),
    MultipleFileUpload(MultipleFileUpload),
    StringDownload(StringDownload),
    CopyDirectory(CopyDirectory),
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::config::build::testing::*;
    use crate::config::build::*;
    use crate::script::Renderable;

    #[test]
    fn set_property_trigger_and_file_steps() {
        let steps = steps_of(
            r#"steps.SetProperty("version", util.Property("tag")),
  steps.Trigger{schedulerNames={"t1", "t2"}, unimportantSchedulerNames={"t2"}, waitForFinish=true,
    updateSourceStamp=false, set_properties={quick=true}, copy_properties={"version"},
    parent_relationship="Child of"},
  steps.Trigger{schedulerNames={"t1"}, sourceStamps={{codebase="", branch="main"}}},
  steps.Trigger{schedulerNames={"t1"}, alwaysUseLatest=true},
  steps.FileUpload("out.tar", "public/out.tar", {maxsize=1000, blocksize=4096, mode="0644",
    keepstamp=true, url="http://example.org/out.tar", urlText="tarball"}),
  steps.FileUpload{slavesrc="a", masterdest="b"},
  steps.FileDownload{mastersrc="conf", workerdest="conf", maxsize=10, blocksize=512, mode=420},
  steps.FileDownload{mastersrc="conf", slavedest="old"},
  steps.MakeDirectory("build"), steps.RemoveDirectory{dir="build", alwaysRun=true}"#,
        );
        let StepKind::SetProperty { property, value: v } = &steps[0].kind else {
            panic!()
        };
        assert_eq!(value(property), json!("version"));
        assert!(matches!(v, Renderable::Property { name, .. } if name == "tag"));
        assert_eq!(steps[0].common.name, "SetProperty");

        let StepKind::Trigger(t) = &steps[1].kind else {
            panic!()
        };
        assert_eq!(t.scheduler_names, ["t1", "t2"]);
        assert_eq!(t.unimportant_scheduler_names, ["t2"]);
        assert!(t.wait_for_finish && !t.update_source_stamp && !t.always_use_latest);
        assert_eq!(map_values(&t.set_properties), json!({"quick": true}));
        assert_eq!(t.copy_properties, ["version"]);
        assert_eq!(t.parent_relationship, "Child of");
        assert_eq!(steps[1].common.name, "trigger");
        let StepKind::Trigger(t) = &steps[2].kind else {
            panic!()
        };
        assert_eq!(
            map_values(&t.source_stamps[0]),
            json!({"codebase": "", "branch": "main"})
        );
        assert!(!t.update_source_stamp && !t.wait_for_finish);
        assert_eq!(t.parent_relationship, "Triggered from");
        let StepKind::Trigger(t) = &steps[3].kind else {
            panic!()
        };
        assert!(t.always_use_latest && !t.update_source_stamp);

        let StepKind::FileUpload(u) = &steps[4].kind else {
            panic!()
        };
        assert_eq!(
            (value(&u.workersrc), value(&u.masterdest)),
            (json!("out.tar"), json!("public/out.tar"))
        );
        assert_eq!(
            (u.maxsize, u.blocksize, u.mode),
            (Some(1000), 4096, Some(FileMode(0o644)))
        );
        assert!(u.keepstamp);
        assert_eq!(
            value(u.url.as_ref().unwrap()),
            json!("http://example.org/out.tar")
        );
        assert_eq!(value(u.url_text.as_ref().unwrap()), json!("tarball"));
        assert_eq!(steps[4].common.name, "upload");
        assert!(steps[4].common.halt_on_failure);
        let StepKind::FileUpload(u) = &steps[5].kind else {
            panic!()
        };
        assert_eq!(value(&u.workersrc), json!("a"));
        assert_eq!(
            (u.maxsize, u.blocksize, u.mode, u.keepstamp),
            (None, 262144, None, false)
        );

        let StepKind::FileDownload(d) = &steps[6].kind else {
            panic!()
        };
        assert_eq!(
            (value(&d.mastersrc), value(&d.workerdest)),
            (json!("conf"), json!("conf"))
        );
        assert_eq!(
            (d.maxsize, d.blocksize, d.mode),
            (Some(10), 512, Some(FileMode(0o644)))
        );
        assert_eq!(steps[6].common.name, "download");
        let StepKind::FileDownload(d) = &steps[7].kind else {
            panic!()
        };
        assert_eq!(value(&d.workerdest), json!("old"));
        assert_eq!((d.blocksize, d.mode), (16384, None));

        assert!(
            matches!(&steps[8].kind, StepKind::MakeDirectory { dir } if value(dir) == json!("build"))
        );
        assert_eq!(steps[8].common.name, "MakeDirectory");
        assert!(
            matches!(&steps[9].kind, StepKind::RemoveDirectory { dir } if value(dir) == json!("build"))
        );
        assert_eq!(
            steps[9].common.description_done.as_deref(),
            Some(&["Deleted".to_string()][..])
        );
        assert!(steps[9].common.always_run && steps[9].common.halt_on_failure);
    }

    #[test]
    fn directory_string_and_copy_steps_take_their_options_and_buildbots_defaults() {
        let steps = steps_of(
            r#"steps.DirectoryUpload("out", "public/out", {compress="bz2", maxsize=10}),
  steps.DirectoryUpload{slavesrc="a", masterdest="b"},
  steps.MultipleFileUpload({"a.txt", "dir"}, "dest", {glob=true, mode="0600", keepstamp=true}),
  steps.MultipleFileUpload{slavesrcs="*.log", masterdest="logs"},
  steps.StringDownload("hello", "greeting.txt", {mode=420}),
  steps.JSONStringDownload({a={1, 2}}, "data.json"),
  steps.JSONPropertiesDownload("props.json"),
  steps.CopyDirectory("build/src", "copy", {timeout=false, maxTime=60})"#,
        );
        let StepKind::DirectoryUpload(d) = &steps[0].kind else {
            panic!()
        };
        assert_eq!(
            (value(&d.workersrc), value(&d.masterdest)),
            (json!("out"), json!("public/out"))
        );
        assert_eq!(
            (d.maxsize, d.blocksize, d.compress),
            (Some(10), 16384, Some(Compression::Bzip2))
        );
        assert_eq!(
            (
                steps[0].common.name.as_str(),
                steps[0].common.halt_on_failure
            ),
            ("upload", true)
        );
        let StepKind::DirectoryUpload(d) = &steps[1].kind else {
            panic!()
        };
        assert_eq!((value(&d.workersrc), d.compress), (json!("a"), None));
        let StepKind::MultipleFileUpload(m) = &steps[2].kind else {
            panic!()
        };
        assert_eq!(value(&m.workersrcs), json!(["a.txt", "dir"]));
        assert!(m.glob && m.keepstamp);
        assert_eq!(m.mode, Some(FileMode(0o600)));
        let StepKind::MultipleFileUpload(m) = &steps[3].kind else {
            panic!()
        };
        assert_eq!((value(&m.workersrcs), m.glob), (json!("*.log"), false));
        let StepKind::StringDownload(d) = &steps[4].kind else {
            panic!()
        };
        assert!(matches!(&d.source, DownloadSource::String(s) if value(s) == json!("hello")));
        assert_eq!(
            (value(&d.workerdest), d.mode),
            (json!("greeting.txt"), Some(FileMode(0o644)))
        );
        assert_eq!(steps[4].class(), "StringDownload");
        assert_eq!(steps[4].common.name, "string_download");
        let StepKind::StringDownload(d) = &steps[5].kind else {
            panic!()
        };
        assert!(matches!(&d.source, DownloadSource::Json(o) if value(o) == json!({"a": [1, 2]})));
        assert_eq!(steps[5].common.name, "json_download");
        let StepKind::StringDownload(d) = &steps[6].kind else {
            panic!()
        };
        assert!(matches!(d.source, DownloadSource::Properties));
        assert_eq!(value(&d.workerdest), json!("props.json"));
        assert_eq!(steps[6].common.name, "json_properties_download");
        let StepKind::CopyDirectory(c) = &steps[7].kind else {
            panic!()
        };
        assert_eq!(
            (value(&c.src), value(&c.dest), c.timeout, c.max_time),
            (json!("build/src"), json!("copy"), None, Some(60))
        );
        assert_eq!(
            steps[7].common.description_done.as_deref(),
            Some(&["Copied".to_string()][..])
        );
    }

    #[test]
    fn trigger_steps_name_their_schedulers_for_validation() {
        let loaded = load(
            r#"c = BuildmasterConfig
c.workers = {worker.LocalWorker("w")}
local f = util.BuildFactory()
f:addStep(steps.Trigger{schedulerNames={"t1", "t2"}})
c.builders = {util.BuilderConfig{name="b", workernames="w", factory=f}}
c.schedulers = {schedulers.Triggerable{name="t1", builderNames={"b"}},
  schedulers.Triggerable{name="t2", builderNames={"b"}}}"#,
        );
        let triggered = loaded.config.builders[0].triggered_schedulers();
        assert_eq!(
            triggered
                .iter()
                .map(|(n, l)| format!("{n}@{}", l.line))
                .collect::<Vec<_>>(),
            ["t1@4", "t2@4"]
        );
        assert_eq!(
        errors(
            r#"c = BuildmasterConfig
c.workers = {worker.LocalWorker("w")}
c.builders = {util.BuilderConfig{name="b", workernames="w",
  factory=util.BuildFactory({steps.Trigger{schedulerNames={"nope"}}})}}
c.schedulers = {schedulers.Triggerable{name="t1", builderNames={"b"}}}"#
        ),
        "master.cfg.lua:4: Trigger step of builder 'b': no Triggerable scheduler named 'nope' (known: t1)\n"
    );
    }

    #[test]
    fn step_errors() {
        let mut cases: Vec<(String, String)> = vec![
        ("steps.ShellCommand{}", "ShellCommand: missing required option 'command'"),
        (
            "steps.ShellCommand{command=5}",
            "ShellCommand: option 'command' must be a command (a string or a list of strings), got number 5",
        ),
        ("steps.ShellCommand{command={}}", "ShellCommand: option 'command' must not be an empty list"),
        (
            "steps.ShellCommand{command={a=1}}",
            "ShellCommand: option 'command' must be a command (a string or a list of strings), got table",
        ),
        (
            "steps.ShellCommand('make')",
            "ShellCommand: takes at most 0 positional arguments, got 1\n\
             ShellCommand: missing required option 'command'",
        ),
        (
            "steps.ShellCommand{command='x', decodeRC={[0]=9}}",
            "ShellCommand: option 'decodeRC' entry 0 must be a result code (util.SUCCESS ... util.CANCELLED), got number 9",
        ),
        (
            "steps.ShellCommand{command='x', decodeRC={a=0}}",
            "ShellCommand: option 'decodeRC' must have exit codes as keys, got string 'a'",
        ),
        (
            "steps.ShellCommand{command='x', timeout='long'}",
            "ShellCommand: option 'timeout' must be a number of seconds or false, got string 'long'",
        ),
        (
            "steps.ShellCommand{command='x', logfiles={a={follow=true}}}",
            "ShellCommand: option 'logfiles' entry 'a' needs a 'filename'",
        ),
        (
            "steps.ShellCommand{command='x', logfiles={a={file='x'}}}",
            "ShellCommand: option 'logfiles' entry 'a' has unknown key string 'file' (known: filename, follow)",
        ),
        (
            "steps.ShellCommand{command='x', updateBuildSummaryPolicy='x'}",
            "ShellCommand: option 'updateBuildSummaryPolicy' must be a list of result codes or a boolean, got string 'x'",
        ),
        (
            "steps.ShellCommand{command='x', updateBuildSummaryPolicy={9}}",
            "ShellCommand: option 'updateBuildSummaryPolicy' item 1 must be a result code (util.SUCCESS ... util.CANCELLED), got number 9",
        ),
        (
            "steps.ShellCommand{command='x', doStepIf='x'}",
            "ShellCommand: option 'doStepIf' must be a boolean or a function, got string 'x'",
        ),
        (
            "steps.ShellCommand{command='x', haltOnFailur=true}",
            "ShellCommand: unknown option 'haltOnFailur' (did you mean 'haltOnFailure'?)",
        ),
        (
            "steps.Compile{warningPattern='('}",
            "Compile: option 'warningPattern' is not a valid regular expression ('('): unclosed group (false counts no warnings)",
        ),
        (
            "steps.Test{directoryEnterPattern=3}",
            "Test: option 'directoryEnterPattern' must be a regular expression (a string), got number 3",
        ),
        ("steps.ShellSequence{}", "ShellSequence: missing required option 'commands'"),
        (
            "steps.ShellSequence{commands={}}",
            "ShellSequence: option 'commands' must hold at least one util.ShellArg",
        ),
        (
            "steps.ShellSequence{commands={'make'}}",
            "ShellSequence: option 'commands' item 1 must be a util.ShellArg, got string 'make'",
        ),
        (
            "steps.ShellSequence{commands={util.ShellArg('x')}, command='y'}",
            "ShellSequence: unknown option 'command' (did you mean 'commands'?)",
        ),
        ("util.ShellArg{logname='x'}", "ShellArg: missing required option 'command'"),
        (
            "steps.SetPropertyFromCommand{command='x'}",
            "SetPropertyFromCommand: give exactly one of the options 'property' and 'extract_fn'",
        ),
        (
            "steps.SetPropertyFromCommand{command='x', property='p', extract_fn=print}",
            "SetPropertyFromCommand: give exactly one of the options 'property' and 'extract_fn', not both",
        ),
        (
            "steps.MasterShellCommand{}",
            "MasterShellCommand: missing required option 'command'",
        ),
        ("steps.Git{}", "Git: missing required option 'repourl'"),
        (
            "steps.Git{repourl='u', mode='fast'}",
            "Git: option 'mode' must be 'incremental' or 'full', got 'fast'",
        ),
        (
            "steps.Git{repourl='u', mode='full', method='scrub'}",
            "Git: option 'method' must be one of 'clean', 'fresh', 'clobber' or 'copy', got 'scrub'",
        ),
        (
            "steps.Git{repourl='u', method='fresh'}",
            "Git: option 'method' only applies to mode 'full'",
        ),
        (
            "steps.Git{repourl='u', mode='full', method='fresh', shallow=true}",
            "Git: option 'shallow' needs method 'clobber'",
        ),
        (
            "steps.Git{repourl='u', shallow=0}",
            "Git: option 'shallow' must be a boolean or a positive depth, got number 0",
        ),
        (
            "steps.Git{repourl='u', sshHostKey='k'}",
            "Git: option 'sshHostKey' needs 'sshPrivateKey'",
        ),
        (
            "steps.Git{repourl='u', sshPrivateKey='p', sshHostKey='k', sshKnownHosts='h'}",
            "Git: options 'sshHostKey' and 'sshKnownHosts' cannot be given together",
        ),
        (
            "steps.Git{repourl='u', getDescription={mach='v*'}}",
            "Git: option 'getDescription': unknown git describe option 'mach' (did you mean 'match'?)",
        ),
        (
            "steps.Git{repourl='u', retry={1}}",
            "Git: option 'retry' must be {delay, repeats} (two numbers of seconds and times), got table",
        ),
        ("steps.SetProperty{property='p'}", "SetProperty: missing required option 'value'"),
        ("steps.Trigger{}", "Trigger: missing required option 'schedulerNames'"),
        (
            "steps.Trigger{schedulerNames={}}",
            "Trigger: option 'schedulerNames' must name at least one scheduler",
        ),
        (
            "steps.Trigger{schedulerNames={'a'}, unimportantSchedulerNames={'b'}}",
            "Trigger: option 'unimportantSchedulerNames' must be a subset of 'schedulerNames' ('b' is not in it)",
        ),
        (
            "steps.Trigger{schedulerNames={'a'}, sourceStamps={{branch='x'}}, updateSourceStamp=true}",
            "Trigger: options 'sourceStamps' and 'updateSourceStamp' cannot be given together",
        ),
        (
            "steps.Trigger{schedulerNames={'a'}, sourceStamp={branch='x'}, alwaysUseLatest=true}",
            "Trigger: options 'sourceStamp' and 'alwaysUseLatest' cannot be given together",
        ),
        (
            "steps.Trigger{schedulerNames={'a'}, alwaysUseLatest=true, updateSourceStamp=false}",
            "Trigger: options 'alwaysUseLatest' and 'updateSourceStamp' cannot be given together",
        ),
        (
            "steps.FileUpload{masterdest='m'}",
            "FileUpload: missing required option 'workersrc'",
        ),
        (
            "steps.FileUpload{workersrc='a', slavesrc='b', masterdest='m'}",
            "FileUpload: options 'workersrc' and 'slavesrc' are the same; give only one",
        ),
        (
            "steps.FileUpload('a', 'b', {mode='9'})",
            "FileUpload: option 'mode' must be a file mode (an integer such as 420, or an octal string such as '0644'), got string '9'",
        ),
        (
            "steps.FileDownload{mastersrc='a'}",
            "FileDownload: missing required option 'workerdest'",
        ),
        ("steps.MakeDirectory{}", "MakeDirectory: missing required option 'dir'"),
        (
            "steps.DirectoryUpload('a', 'b', {compress='xz'})",
            "DirectoryUpload: option 'compress' must be 'gz' or 'bz2', got string 'xz'",
        ),
        (
            "steps.StringDownload{workerdest='x'}",
            "StringDownload: missing required option 's'",
        ),
        (
            "steps.CopyDirectory{src='a'}",
            "CopyDirectory: missing required option 'dest'",
        ),
        (
            "steps.RemoveDirectory('d', {dirr='x'})",
            "RemoveDirectory: unknown option 'dirr' (did you mean 'dir'?)",
        ),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
        let long = "n".repeat(51);
        cases.push((
            format!("steps.ShellCommand{{command='x', name='{long}'}}"),
            format!("ShellCommand: option 'name' must be at most 50 characters, got '{long}'"),
        ));
        let cases: Vec<(&str, &str)> = cases
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        check_errors(&cases);
    }

    #[test]
    fn step_locks_and_unported_options_are_not_implemented_yet() {
        assert_eq!(
            unimplemented(
                "steps.ShellCommand{command='x', locks={}}
steps.Compile{warningExtractor=print, suppressionList={}}
steps.Git{repourl='u', auth_credentials={'u', 'p'}, git_credentials={}}"
            ),
            [
                "master.cfg.lua:1: ShellCommand: option 'locks' is not implemented yet",
                "master.cfg.lua:2: Compile: option 'warningExtractor' is not implemented yet",
                "master.cfg.lua:2: Compile: option 'suppressionList' is not implemented yet",
                "master.cfg.lua:3: Git: option 'auth_credentials' is not implemented yet",
                "master.cfg.lua:3: Git: option 'git_credentials' is not implemented yet",
            ]
        );
    }
}
