//! The steps that run commands: `ShellCommand` and its family (`Configure`, `Compile`,
//! `Test`), `ShellSequence` with `util.ShellArg`, `SetPropertyFromCommand`, and
//! `MasterShellCommand`, which runs on the master.

use std::collections::BTreeMap;

use mlua::{Lua, MultiValue, UserData, Value};

use super::steps::{common, finish, step_options, Defaults, StepConfig, StepKind, BASE};
use super::values::{optional_seconds, read_args, result_code, Pattern, RESULT_CODES};
use crate::config::kwargs::{constructor, describe, mismatch, FromOption, Kwargs, OptionError};
use crate::config::{define, Location, Namespaces};
use crate::model::BuildResult;
use crate::script::{Callback, Renderable};

/// A command: a string for the shell, or a list of arguments (renderables allowed, nested
/// lists flattened as Buildbot does).
#[derive(Clone, Debug)]
pub struct Command(pub Renderable);

impl FromOption for Command {
    fn expected() -> String {
        "a command (a string or a list of strings)".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::String(_) | Value::Table(_) | Value::UserData(_) => {}
            _ => return Err(mismatch::<Self>(&value)),
        }
        match Renderable::from_option(value.clone(), lua)? {
            Renderable::List(items) if items.is_empty() => {
                Err(OptionError::Wrong("must not be an empty list".into()))
            }
            Renderable::Map(_) => Err(mismatch::<Self>(&value)),
            command => Ok(Command(command)),
        }
    }
}

/// A file on the worker whose contents become a log of the step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFile {
    pub filename: String,
    /// Start from the file's end, as `tail -f` does, rather than its beginning.
    pub follow: bool,
}

impl FromOption for LogFile {
    fn expected() -> String {
        "a file name or {filename=..., follow=...}".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::String(s) => Ok(LogFile {
                filename: s.to_string_lossy(),
                follow: false,
            }),
            Value::Table(table) => {
                let mut filename = None;
                let mut follow = false;
                for pair in table.clone().pairs::<Value, Value>() {
                    let (key, item) = pair.map_err(|e| OptionError::Wrong(e.to_string()))?;
                    match key.as_string().map(|k| k.to_string_lossy()).as_deref() {
                        Some("filename") => filename = Some(String::from_option(item, lua)?),
                        Some("follow") => follow = bool::from_option(item, lua)?,
                        _ => {
                            return Err(OptionError::Wrong(format!(
                                "has unknown key {} (known: filename, follow)",
                                describe(&key)
                            )))
                        }
                    }
                }
                filename
                    .map(|filename| LogFile { filename, follow })
                    .ok_or_else(|| OptionError::Wrong("needs a 'filename'".into()))
            }
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

/// `decodeRC`: exit codes to results; codes not listed are failures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeRc(pub BTreeMap<i64, BuildResult>);

impl Default for DecodeRc {
    fn default() -> Self {
        DecodeRc(BTreeMap::from([(0, BuildResult::Success)]))
    }
}

impl FromOption for DecodeRc {
    fn expected() -> String {
        "a table of exit codes to results ({[0]=util.SUCCESS, ...})".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        let Value::Table(table) = &value else {
            return Err(mismatch::<Self>(&value));
        };
        let mut codes = BTreeMap::new();
        for pair in table.clone().pairs::<Value, Value>() {
            let (key, item) = pair.map_err(|e| OptionError::Wrong(e.to_string()))?;
            let Ok(code) = i64::from_option(key.clone(), lua) else {
                return Err(OptionError::Wrong(format!(
                    "must have exit codes as keys, got {}",
                    describe(&key)
                )));
            };
            let Some(result) = result_code(&item, lua) else {
                return Err(OptionError::Wrong(format!(
                    "entry {code} must be {RESULT_CODES}, got {}",
                    describe(&item)
                )));
            };
            codes.insert(code, result);
        }
        Ok(DecodeRc(codes))
    }
}

/// The options of Buildbot's `ShellMixin`, which turn into the remote command.
#[derive(Clone, Debug)]
pub struct ShellOptions {
    pub env: BTreeMap<String, Renderable>,
    pub want_stdout: bool,
    pub want_stderr: bool,
    /// `None` leaves it to the worker's own setting.
    pub use_pty: Option<bool>,
    pub logfiles: BTreeMap<String, LogFile>,
    /// Logs of `logfiles` that stay empty are not added.
    pub lazylogfiles: bool,
    /// Seconds without output before the command is killed; `None` for never.
    pub timeout: Option<u64>,
    /// Seconds the command may run in all.
    pub max_time: Option<u64>,
    pub max_lines: Option<u64>,
    pub log_environ: bool,
    /// The signal sent on interrupt, by name (`KILL`, `TERM`, ...).
    pub interrupt_signal: String,
    /// Seconds between SIGTERM and SIGKILL; `None` sends `interrupt_signal` straight away.
    pub sigterm_time: Option<u64>,
    pub initial_stdin: Option<String>,
    pub decode_rc: DecodeRc,
}

/// The options of `ShellMixin` in an options list.
macro_rules! shell_options {
    ($($extra:literal),* $(,)?) => {
        step_options!(
            $($extra,)*
            "env",
            "want_stdout",
            "want_stderr",
            "usePTY",
            "logfiles",
            "lazylogfiles",
            "timeout",
            "maxTime",
            "max_lines",
            "logEnviron",
            "interruptSignal",
            "sigtermTime",
            "initialStdin",
            "decodeRC",
        )
    };
}

/// Buildbot's `ShellMixin.timeout`.
const DEFAULT_TIMEOUT: u64 = 1200;

fn shell_options(kw: &mut Kwargs) -> ShellOptions {
    // The local worker runs commands on pipes, keeps every log it is asked for, and
    // does not count lines yet.
    let use_pty: Option<bool> = kw.optional("usePTY");
    kw.unimplemented_when("usePTY", use_pty == Some(true));
    let lazy: bool = kw.optional_or("lazylogfiles", false);
    kw.unimplemented_when("lazylogfiles", lazy);
    let max_lines: Option<u64> = kw.optional("max_lines");
    kw.unimplemented_when("max_lines", max_lines.is_some());
    ShellOptions {
        env: kw.optional("env").unwrap_or_default(),
        want_stdout: kw.optional_or("want_stdout", true),
        want_stderr: kw.optional_or("want_stderr", true),
        use_pty,
        logfiles: kw.optional("logfiles").unwrap_or_default(),
        lazylogfiles: lazy,
        timeout: optional_seconds(kw, "timeout", Some(DEFAULT_TIMEOUT)),
        max_time: optional_seconds(kw, "maxTime", None),
        max_lines,
        log_environ: kw.optional_or("logEnviron", true),
        interrupt_signal: kw
            .optional("interruptSignal")
            .unwrap_or_else(|| "KILL".into()),
        sigterm_time: optional_seconds(kw, "sigtermTime", None),
        initial_stdin: kw.optional("initialStdin"),
        decode_rc: kw.optional("decodeRC").unwrap_or_default(),
    }
}

/// A step that runs one command on the worker.
#[derive(Clone, Debug)]
pub struct ShellStep {
    pub command: Renderable,
    pub shell: ShellOptions,
}

fn shell_step(kw: &mut Kwargs, default_command: Option<&[&str]>) -> ShellStep {
    let command = match default_command {
        None => kw.required_opt::<Command>("command").map(|c| c.0),
        Some(words) => Some(kw.optional::<Command>("command").map_or_else(
            || Renderable::List(words.iter().map(|w| Renderable::string(*w)).collect()),
            |c| c.0,
        )),
    };
    ShellStep {
        command: command.unwrap_or_default(),
        shell: shell_options(kw),
    }
}

pub const SHELL_COMMAND_OPTIONS: &[&str] = shell_options!("command");
pub const CONFIGURE_OPTIONS: &[&str] = shell_options!("command");

const SHELL_COMMAND: Defaults = Defaults {
    name: "shell",
    ..BASE
};
const CONFIGURE: Defaults = Defaults {
    name: "configure",
    description: &["configuring"],
    description_done: &["configure"],
    halt_on_failure: true,
    ..BASE
};

fn shell_command(lua: &Lua, args: MultiValue) -> Option<StepConfig> {
    let mut kw = Kwargs::new(lua, "ShellCommand", args, &[], SHELL_COMMAND_OPTIONS);
    let step = shell_step(&mut kw, None);
    let common = common(&mut kw, &SHELL_COMMAND);
    finish(kw, common, StepKind::ShellCommand(step))
}

fn configure(lua: &Lua, args: MultiValue) -> Option<StepConfig> {
    let mut kw = Kwargs::new(lua, "Configure", args, &[], CONFIGURE_OPTIONS);
    let step = shell_step(&mut kw, Some(&["./configure"]));
    let common = common(&mut kw, &CONFIGURE);
    finish(kw, common, StepKind::Configure(step))
}

// ---- Compile and Test: counting warnings ------------------------------------------------

/// Buildbot's `WarningCountingShellCommand` options.
#[derive(Clone, Debug)]
pub struct WarningCounting {
    /// A line is a warning when this matches at its start; `None` counts nothing.
    pub warning_pattern: Option<Pattern>,
    /// More warnings than this fail the step.
    pub max_warn_count: Option<u64>,
    /// Follow `make`'s directory changes, so suppressions can name files.
    pub directory_enter_pattern: Pattern,
    pub directory_leave_pattern: Pattern,
    /// A file on the worker listing warnings not to count.
    pub suppression_file: Option<Renderable>,
}

macro_rules! warning_options {
    () => {
        shell_options!(
            "command",
            "warningPattern",
            "warningExtractor",
            "maxWarnCount",
            "directoryEnterPattern",
            "directoryLeavePattern",
            "suppressionFile",
            "suppressionList",
        )
    };
}

pub const COMPILE_OPTIONS: &[&str] = warning_options!();
pub const TEST_OPTIONS: &[&str] = warning_options!();

const DEFAULT_WARNING_PATTERN: &str = "(?i).*warning[: ].*";
const DEFAULT_DIRECTORY_ENTER: &str = "make.*: Entering directory [\u{2019}\"`'](.*)[\u{2019}'`\"]";
const DEFAULT_DIRECTORY_LEAVE: &str = "make.*: Leaving directory";

const COMPILE: Defaults = Defaults {
    name: "compile",
    description: &["compiling"],
    description_done: &["compile"],
    halt_on_failure: true,
    ..BASE
};
const TEST: Defaults = Defaults {
    name: "test",
    description: &["testing"],
    description_done: &["test"],
    warn_on_failure: true,
    ..BASE
};

fn warning_counting(kw: &mut Kwargs) -> WarningCounting {
    let builtin = |source| Pattern::new(source).expect("built-in patterns compile");
    let warning_pattern = match kw.raw("warningPattern") {
        None => Some(builtin(DEFAULT_WARNING_PATTERN)),
        Some(Value::Boolean(false)) => None,
        Some(value) => match Pattern::from_option(value, kw.lua()) {
            Ok(pattern) => Some(pattern),
            Err(OptionError::Wrong(why)) => {
                kw.error(format!(
                    "option 'warningPattern' {why} (false counts no warnings)"
                ));
                None
            }
            Err(OptionError::Reported) => None,
        },
    };
    kw.unimplemented("warningExtractor");
    kw.unimplemented("suppressionList");
    WarningCounting {
        warning_pattern,
        max_warn_count: kw.optional("maxWarnCount"),
        directory_enter_pattern: kw
            .optional("directoryEnterPattern")
            .unwrap_or_else(|| builtin(DEFAULT_DIRECTORY_ENTER)),
        directory_leave_pattern: kw
            .optional("directoryLeavePattern")
            .unwrap_or_else(|| builtin(DEFAULT_DIRECTORY_LEAVE)),
        suppression_file: {
            let file: Option<Renderable> = kw.optional("suppressionFile");
            kw.unimplemented_when("suppressionFile", file.is_some());
            file
        },
    }
}

fn compile(lua: &Lua, args: MultiValue) -> Option<StepConfig> {
    let mut kw = Kwargs::new(lua, "Compile", args, &[], COMPILE_OPTIONS);
    let step = shell_step(&mut kw, Some(&["make", "all"]));
    let warnings = warning_counting(&mut kw);
    let common = common(&mut kw, &COMPILE);
    finish(kw, common, StepKind::Compile(step, warnings))
}

fn test(lua: &Lua, args: MultiValue) -> Option<StepConfig> {
    let mut kw = Kwargs::new(lua, "Test", args, &[], TEST_OPTIONS);
    let step = shell_step(&mut kw, Some(&["make", "test"]));
    let warnings = warning_counting(&mut kw);
    let common = common(&mut kw, &TEST);
    finish(kw, common, StepKind::Test(step, warnings))
}

// ---- ShellSequence ---------------------------------------------------------------------

/// `util.ShellArg`: one command of a ShellSequence, with its own result flags.
#[derive(Clone, Debug)]
pub struct ShellArg {
    pub command: Renderable,
    /// The log its output goes to; `None` for the step's `stdio`.
    pub logname: Option<String>,
    pub halt_on_failure: bool,
    pub flunk_on_failure: bool,
    pub warn_on_failure: bool,
    pub warn_on_warnings: bool,
    pub flunk_on_warnings: bool,
    pub location: Location,
}

impl UserData for ShellArg {}
crate::config_object!(ShellArg, "util.ShellArg");

pub const SHELL_ARG_OPTIONS: &[&str] = &[
    "command",
    "logname",
    "haltOnFailure",
    "flunkOnFailure",
    "warnOnFailure",
    "warnOnWarnings",
    "flunkOnWarnings",
];

fn shell_arg(lua: &Lua, args: MultiValue) -> Option<ShellArg> {
    let mut kw = read_args(
        lua,
        "ShellArg",
        args,
        &["command", "logname"],
        &["command"],
        &[],
        SHELL_ARG_OPTIONS,
    );
    let arg = ShellArg {
        command: kw
            .required_opt::<Command>("command")
            .map(|c| c.0)
            .unwrap_or_default(),
        logname: kw.optional("logname"),
        halt_on_failure: kw.optional_or("haltOnFailure", false),
        flunk_on_failure: kw.optional_or("flunkOnFailure", true),
        warn_on_failure: kw.optional_or("warnOnFailure", false),
        warn_on_warnings: kw.optional_or("warnOnWarnings", false),
        flunk_on_warnings: kw.optional_or("flunkOnWarnings", false),
        location: kw.location(),
    };
    kw.finish().then_some(arg)
}

pub const SHELL_SEQUENCE_OPTIONS: &[&str] = shell_options!("commands");

fn shell_sequence(lua: &Lua, args: MultiValue) -> Option<StepConfig> {
    let mut kw = Kwargs::new(lua, "ShellSequence", args, &[], SHELL_SEQUENCE_OPTIONS);
    let commands: Vec<ShellArg> = match kw.required_opt::<Vec<ShellArg>>("commands") {
        Some(commands) if commands.is_empty() => {
            kw.error("option 'commands' must hold at least one util.ShellArg");
            commands
        }
        commands => commands.unwrap_or_default(),
    };
    let shell = shell_options(&mut kw);
    let common = common(&mut kw, &BASE);
    finish(kw, common, StepKind::ShellSequence { commands, shell })
}

// ---- SetPropertyFromCommand ------------------------------------------------------------

/// Where a SetPropertyFromCommand's output goes.
#[derive(Clone, Debug)]
pub enum PropertyTarget {
    /// The (stripped) output becomes this property.
    Property(Renderable),
    /// `extract_fn(rc, stdout, stderr)` returns a table of properties.
    Extract(Callback),
}

#[derive(Clone, Debug)]
pub struct PropertyFromCommand {
    pub target: PropertyTarget,
    pub strip: bool,
    pub include_stdout: bool,
    /// Always on with `extract_fn`, as in Buildbot.
    pub include_stderr: bool,
}

pub const SET_PROPERTY_FROM_COMMAND_OPTIONS: &[&str] = shell_options!(
    "command",
    "property",
    "extract_fn",
    "strip",
    "includeStdout",
    "includeStderr",
);

const SET_PROPERTY_FROM_COMMAND: Defaults = Defaults {
    name: "setproperty",
    ..BASE
};

fn set_property_from_command(lua: &Lua, args: MultiValue) -> Option<StepConfig> {
    let mut kw = Kwargs::new(
        lua,
        "SetPropertyFromCommand",
        args,
        &[],
        SET_PROPERTY_FROM_COMMAND_OPTIONS,
    );
    let step = shell_step(&mut kw, None);
    let given = (kw.has("property"), kw.has("extract_fn"));
    let property: Option<Renderable> = kw.optional("property");
    let extract: Option<Callback> = kw.optional("extract_fn");
    match given {
        (true, true) => {
            kw.error("give exactly one of the options 'property' and 'extract_fn', not both")
        }
        (false, false) => kw.error("give exactly one of the options 'property' and 'extract_fn'"),
        _ => {}
    }
    let target = match (property, extract) {
        (Some(property), _) => PropertyTarget::Property(property),
        (None, Some(function)) => PropertyTarget::Extract(function),
        // Already reported; the step is invalid.
        (None, None) => PropertyTarget::Property(Renderable::default()),
    };
    let include_stderr = kw.optional_or("includeStderr", false);
    let options = PropertyFromCommand {
        include_stderr: include_stderr || matches!(target, PropertyTarget::Extract(_)),
        target,
        strip: kw.optional_or("strip", true),
        include_stdout: kw.optional_or("includeStdout", true),
    };
    let common = common(&mut kw, &SET_PROPERTY_FROM_COMMAND);
    finish(kw, common, StepKind::SetPropertyFromCommand(step, options))
}

// ---- MasterShellCommand ----------------------------------------------------------------

/// `steps.MasterShellCommand`: a command run by the master itself.
#[derive(Clone, Debug)]
pub struct MasterShellCommand {
    pub command: Renderable,
    pub env: BTreeMap<String, Renderable>,
    pub use_pty: bool,
    pub interrupt_signal: String,
    pub log_environ: bool,
    /// Seconds the command may run.
    pub runtime_timeout: u64,
}

pub const MASTER_SHELL_COMMAND_OPTIONS: &[&str] = step_options!(
    "command",
    "env",
    "usePTY",
    "interruptSignal",
    "logEnviron",
    "runtime_timeout",
);

const MASTER_SHELL_COMMAND: Defaults = Defaults {
    name: "MasterShellCommand",
    description: &["Running"],
    description_done: &["Ran"],
    halt_on_failure: true,
    ..BASE
};

fn master_shell_command(lua: &Lua, args: MultiValue) -> Option<StepConfig> {
    let mut kw = read_args(
        lua,
        "MasterShellCommand",
        args,
        &["command"],
        &["command"],
        &[],
        MASTER_SHELL_COMMAND_OPTIONS,
    );
    let step = MasterShellCommand {
        command: kw
            .required_opt::<Command>("command")
            .map(|c| c.0)
            .unwrap_or_default(),
        env: kw.optional("env").unwrap_or_default(),
        use_pty: {
            let use_pty = kw.optional_or("usePTY", false);
            kw.unimplemented_when("usePTY", use_pty);
            use_pty
        },
        interrupt_signal: kw
            .optional("interruptSignal")
            .unwrap_or_else(|| "KILL".into()),
        log_environ: kw.optional_or("logEnviron", true),
        runtime_timeout: kw.optional_or("runtime_timeout", 3600),
    };
    let common = common(&mut kw, &MASTER_SHELL_COMMAND);
    finish(kw, common, StepKind::MasterShellCommand(step))
}

pub(super) fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    let steps = [
        (
            "ShellCommand",
            shell_command as fn(&Lua, MultiValue) -> Option<StepConfig>,
        ),
        ("Configure", configure),
        ("Compile", compile),
        ("Test", test),
        ("ShellSequence", shell_sequence),
        ("SetPropertyFromCommand", set_property_from_command),
        ("MasterShellCommand", master_shell_command),
    ];
    for (name, parse) in steps {
        define(&ns.steps, name, constructor(lua, "build step", parse)?)?;
    }
    define(
        &ns.util,
        "ShellArg",
        constructor(lua, "util.ShellArg", shell_arg)?,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use crate::config::build::testing::*;
    use crate::config::build::*;
    use crate::model::BuildResult;
    use crate::script::Renderable;

    #[test]
    fn shell_command_takes_every_option() {
        let s = step(
            r#"steps.ShellCommand{command={"make", util.Interpolate("-j%(prop:jobs)s")}, name="make",
  description="making", descriptionDone={"made", "it"}, descriptionSuffix="fast",
  haltOnFailure=true, flunkOnFailure=false, warnOnFailure=true, warnOnWarnings=true,
  flunkOnWarnings=true, alwaysRun=true, doStepIf=function(step) return true end,
  hideStepIf=true, logEncoding="latin-1", updateBuildSummaryPolicy={util.FAILURE},
  workdir="src", env={CC="gcc"}, want_stdout=false, want_stderr=false, usePTY=true,
  logfiles={test="test.log", trace={filename="trace.log", follow=true}}, lazylogfiles=true,
  timeout=60, maxTime=3600, max_lines=1000, logEnviron=false, interruptSignal="TERM",
  sigtermTime=5, initialStdin="yes\n", decodeRC={[0]=util.SUCCESS, [1]=util.WARNINGS}}"#,
        );
        assert_eq!(s.class(), "ShellCommand");
        let c = &s.common;
        assert_eq!(c.name, "make");
        assert_eq!(c.description.as_deref(), Some(&["making".to_string()][..]));
        assert_eq!(
            c.description_done.as_deref(),
            Some(&["made".to_string(), "it".to_string()][..])
        );
        assert_eq!(
            c.description_suffix.as_deref(),
            Some(&["fast".to_string()][..])
        );
        assert!(c.halt_on_failure && !c.flunk_on_failure && c.warn_on_failure);
        assert!(c.warn_on_warnings && c.flunk_on_warnings && c.always_run);
        assert!(matches!(&c.do_step_if, ValueOrFunction::Function(f) if f.location().line == 4));
        assert!(matches!(c.hide_step_if, ValueOrFunction::Value(true)));
        assert_eq!(c.log_encoding.as_deref(), Some("latin-1"));
        assert_eq!(c.update_build_summary_policy, [BuildResult::Failure]);
        assert_eq!(value(c.workdir.as_ref().unwrap()), json!("src"));
        let StepKind::ShellCommand(shell) = &s.kind else {
            panic!("{:?}", s.kind)
        };
        let Renderable::List(words) = &shell.command else {
            panic!("{:?}", shell.command)
        };
        assert_eq!(value(&words[0]), json!("make"));
        assert!(matches!(words[1], Renderable::Interpolate(_)));
        let o = &shell.shell;
        assert_eq!(map_values(&o.env), json!({"CC": "gcc"}));
        assert!(!o.want_stdout && !o.want_stderr && o.lazylogfiles && !o.log_environ);
        assert_eq!(o.use_pty, Some(true));
        assert_eq!(
            o.logfiles,
            BTreeMap::from([
                (
                    "test".into(),
                    LogFile {
                        filename: "test.log".into(),
                        follow: false
                    }
                ),
                (
                    "trace".into(),
                    LogFile {
                        filename: "trace.log".into(),
                        follow: true
                    }
                ),
            ])
        );
        assert_eq!(
            (o.timeout, o.max_time, o.max_lines),
            (Some(60), Some(3600), Some(1000))
        );
        assert_eq!(o.interrupt_signal, "TERM");
        assert_eq!(o.sigterm_time, Some(5));
        assert_eq!(o.initial_stdin.as_deref(), Some("yes\n"));
        assert_eq!(
            o.decode_rc,
            DecodeRc(BTreeMap::from([
                (0, BuildResult::Success),
                (1, BuildResult::Warnings)
            ]))
        );
        assert_eq!(s.location.line, 1);
    }

    #[test]
    fn shell_command_defaults() {
        let s = step(r#"steps.ShellCommand{command="make", timeout=false}"#);
        let c = &s.common;
        assert_eq!(c.name, "shell");
        assert!(c.description.is_none() && c.description_done.is_none());
        assert!(!c.halt_on_failure && c.flunk_on_failure && !c.warn_on_failure);
        assert!(!c.always_run && c.log_encoding.is_none() && c.workdir.is_none());
        assert!(matches!(c.do_step_if, ValueOrFunction::Value(true)));
        assert!(matches!(c.hide_step_if, ValueOrFunction::Value(false)));
        use BuildResult::*;
        assert_eq!(
            c.update_build_summary_policy,
            [Exception, Retry, Cancelled, Failure]
        );
        let StepKind::ShellCommand(shell) = &s.kind else {
            panic!()
        };
        assert_eq!(value(&shell.command), json!("make"));
        let o = &shell.shell;
        assert!(o.want_stdout && o.want_stderr && o.log_environ && !o.lazylogfiles);
        assert_eq!(o.use_pty, None);
        assert_eq!(o.timeout, None);
        assert_eq!(
            (o.max_time, o.sigterm_time, o.max_lines),
            (None, None, None)
        );
        assert_eq!(o.interrupt_signal, "KILL");
        assert_eq!(o.decode_rc, DecodeRc::default());
    }

    #[test]
    fn summary_policy_follows_the_flags_or_takes_a_boolean() {
        use BuildResult::*;
        let policy = |options: &str| {
            step(&format!("steps.ShellCommand{{command='x', {options}}}"))
                .common
                .update_build_summary_policy
        };
        assert_eq!(
            policy("flunkOnFailure=false"),
            [Exception, Retry, Cancelled]
        );
        assert_eq!(
            policy("warnOnWarnings=true"),
            [Exception, Retry, Cancelled, Failure, Warnings]
        );
        assert_eq!(policy("updateBuildSummaryPolicy=true"), BuildResult::ALL);
        assert!(policy("updateBuildSummaryPolicy=false").is_empty());
    }

    #[test]
    fn configure_compile_test_have_buildbot_defaults() {
        let steps = steps_of(
        "steps.Configure{}, steps.Compile{}, steps.Test{}, steps.Compile{command='ninja', \
         warningPattern='^W: ', maxWarnCount=3, directoryEnterPattern='enter (.*)', \
         directoryLeavePattern='leave', suppressionFile='supp.txt'}, steps.Test{warningPattern=false}",
    );
        let command = |s: &StepConfig| match &s.kind {
            StepKind::Configure(shell) | StepKind::Compile(shell, _) | StepKind::Test(shell, _) => {
                value(&shell.command)
            }
            other => panic!("{other:?}"),
        };
        let warnings = |s: &StepConfig| match &s.kind {
            StepKind::Compile(_, w) | StepKind::Test(_, w) => w.clone(),
            other => panic!("{other:?}"),
        };
        let [configure, compile, test, custom, quiet] = &steps[..] else {
            panic!()
        };
        assert_eq!(command(configure), json!(["./configure"]));
        assert_eq!(configure.common.name, "configure");
        assert_eq!(
            configure.common.description.as_deref(),
            Some(&["configuring".to_string()][..])
        );
        assert!(configure.common.halt_on_failure && configure.common.flunk_on_failure);

        assert_eq!(command(compile), json!(["make", "all"]));
        assert_eq!(compile.common.name, "compile");
        assert_eq!(
            compile.common.description_done.as_deref(),
            Some(&["compile".to_string()][..])
        );
        assert!(compile.common.halt_on_failure);
        let w = warnings(compile);
        assert_eq!(
            w.warning_pattern.as_ref().unwrap().source(),
            "(?i).*warning[: ].*"
        );
        assert!(w
            .warning_pattern
            .as_ref()
            .unwrap()
            .matches_start("foo.c:1: Warning: x"));
        assert!(w
            .directory_enter_pattern
            .is_match("make[1]: Entering directory '/src'"));
        assert_eq!(w.max_warn_count, None);
        assert!(w.suppression_file.is_none());

        assert_eq!(command(test), json!(["make", "test"]));
        assert_eq!(test.common.name, "test");
        assert!(!test.common.halt_on_failure && test.common.warn_on_failure);

        assert_eq!(command(custom), json!("ninja"));
        let w = warnings(custom);
        assert_eq!(w.warning_pattern.as_ref().unwrap().source(), "^W: ");
        assert_eq!(w.max_warn_count, Some(3));
        assert_eq!(w.directory_enter_pattern.source(), "enter (.*)");
        assert_eq!(w.directory_leave_pattern.source(), "leave");
        assert_eq!(
            value(w.suppression_file.as_ref().unwrap()),
            json!("supp.txt")
        );
        assert!(warnings(quiet).warning_pattern.is_none());
    }

    #[test]
    fn shell_sequence_runs_shell_args() {
        let s = step(
            r#"steps.ShellSequence{commands={
    util.ShellArg{command={"make", "clean"}, logname="clean", haltOnFailure=true,
      flunkOnFailure=false, warnOnFailure=true, warnOnWarnings=true, flunkOnWarnings=true},
    util.ShellArg("make", "build")},
  env={A="1"}, timeout=10}"#,
        );
        let StepKind::ShellSequence { commands, shell } = &s.kind else {
            panic!("{:?}", s.kind)
        };
        assert_eq!(s.common.name, "generic");
        let (a, b) = (&commands[0], &commands[1]);
        assert_eq!(value(&a.command), json!(["make", "clean"]));
        assert_eq!(a.logname.as_deref(), Some("clean"));
        assert!(a.halt_on_failure && !a.flunk_on_failure && a.warn_on_failure);
        assert!(a.warn_on_warnings && a.flunk_on_warnings);
        assert_eq!(a.location.line, 2);
        assert_eq!(value(&b.command), json!("make"));
        assert_eq!(b.logname.as_deref(), Some("build"));
        assert!(!b.halt_on_failure && b.flunk_on_failure && !b.warn_on_failure);
        assert_eq!(map_values(&shell.env), json!({"A": "1"}));
        assert_eq!(shell.timeout, Some(10));
    }

    #[test]
    fn set_property_from_command_takes_a_property_or_a_function() {
        let steps = steps_of(
            r#"steps.SetPropertyFromCommand{command="git rev-parse HEAD", property="rev", strip=false,
  includeStdout=false, includeStderr=true},
  steps.SetPropertyFromCommand{command={"env"}, extract_fn=function(rc, out, err) return {} end}"#,
        );
        let StepKind::SetPropertyFromCommand(shell, p) = &steps[0].kind else {
            panic!()
        };
        assert_eq!(steps[0].common.name, "setproperty");
        assert_eq!(value(&shell.command), json!("git rev-parse HEAD"));
        assert!(matches!(&p.target, PropertyTarget::Property(r) if value(r) == json!("rev")));
        assert!(!p.strip && !p.include_stdout && p.include_stderr);
        let StepKind::SetPropertyFromCommand(_, p) = &steps[1].kind else {
            panic!()
        };
        let PropertyTarget::Extract(f) = &p.target else {
            panic!()
        };
        assert_eq!(f.location().line, 3);
        // As Buildbot: a function sees stderr too.
        assert!(p.strip && p.include_stdout && p.include_stderr);
    }

    #[test]
    fn master_shell_command_takes_every_option() {
        let steps = steps_of(
            r#"steps.MasterShellCommand({"deploy", "now"}, {env={X="1"}, usePTY=true,
  interruptSignal="INT", logEnviron=false, runtime_timeout=60, name="deploy"}),
  steps.MasterShellCommand{command="ls"}"#,
        );
        let StepKind::MasterShellCommand(m) = &steps[0].kind else {
            panic!()
        };
        assert_eq!(value(&m.command), json!(["deploy", "now"]));
        assert_eq!(map_values(&m.env), json!({"X": "1"}));
        assert!(m.use_pty && !m.log_environ);
        assert_eq!(
            (m.interrupt_signal.as_str(), m.runtime_timeout),
            ("INT", 60)
        );
        assert_eq!(steps[0].common.name, "deploy");
        let StepKind::MasterShellCommand(m) = &steps[1].kind else {
            panic!()
        };
        assert!(!m.use_pty && m.log_environ);
        assert_eq!(
            (m.interrupt_signal.as_str(), m.runtime_timeout),
            ("KILL", 3600)
        );
        let c = &steps[1].common;
        assert_eq!(c.name, "MasterShellCommand");
        assert_eq!(c.description.as_deref(), Some(&["Running".to_string()][..]));
        assert!(c.halt_on_failure && c.flunk_on_failure);
    }
}
