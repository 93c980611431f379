//! The steps that run commands: ShellCommand, Configure, Compile, Test, ShellSequence,
//! SetPropertyFromCommand and MasterShellCommand, over the build's `WorkerLink` (the
//! master's own processes for MasterShellCommand).
//!
//! Output streams into the step's logs as the process writes it, through a bounded
//! channel: a command that prints hundreds of megabytes waits on its pipe rather than
//! filling the master's memory.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use regex::Regex;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{LogWriter, StepOutcome, StepRun};
use crate::config::build::{
    PropertyFromCommand, PropertyTarget, ShellOptions, ShellStep, WarningCounting,
};
use crate::model::BuildResult;
use crate::process::{Chunk, CommandLine, CommandSpec, LineBuffer, Outcome, Signal};
use crate::script::{Arg, Renderable};
use crate::workers::WorkerLink;

/// Chunks in flight between a process and its logs.
const CHUNKS_IN_FLIGHT: usize = 16;
/// What SetPropertyFromCommand keeps of a command's output.
const MAX_CAPTURE: usize = 1024 * 1024;

/// What a finished command left behind for the step to judge.
pub struct Ran {
    pub outcome: Outcome,
    pub results: BuildResult,
    /// Stdout lines that matched the warning pattern, when counting.
    pub warnings: Vec<String>,
    /// Stdout and stderr text, when captured.
    pub stdout: String,
    pub stderr: String,
    /// Lines of stdout, for the test counters.
    pub test_counts: TestCounts,
}

/// Options of one command run, beyond the command itself.
#[derive(Default)]
pub struct Capture<'a> {
    pub warnings: Option<&'a WarningCounting>,
    pub stdout: bool,
    pub stderr: bool,
    pub count_tests: bool,
    /// Runs on the master's machine whatever the build's worker (MasterShellCommand).
    pub on_master: bool,
    /// The command is CopyDirectory's copy from the first path to the second (`cpdir` on a
    /// remote worker).
    pub copy: Option<(&'a Path, &'a Path)>,
}

impl StepRun<'_> {
    /// Renders the command and runs it in `workdir`, streaming into a new stdio log named
    /// `logname`.
    pub async fn run_command(
        &self,
        command: &Renderable,
        shell: &ShellOptions,
        workdir: &Path,
        logname: &str,
        capture: Capture<'_>,
    ) -> Result<Ran, String> {
        let command = command_line(self.build.render(command).await?)?;
        let mut stdio = self.log(logname, true).await?;
        let ran = self
            .run_in_log(&mut stdio, command, shell, workdir, capture)
            .await?;
        self.end_log_with_step(stdio);
        Ok(ran)
    }

    /// Runs one command into an open stdio log (a source step runs several into one).
    pub async fn run_in_log(
        &self,
        stdio: &mut LogWriter,
        command: CommandLine,
        shell: &ShellOptions,
        workdir: &Path,
        capture: Capture<'_>,
    ) -> Result<Ran, String> {
        let mut env = Vec::new();
        for (name, value) in self
            .build
            .env
            .iter()
            .map(|(k, v)| (k, v))
            .chain(shell.env.iter())
        {
            env.push((name.clone(), env_value(self.build.render(value).await?)));
        }
        let interrupt_signal: Signal = shell
            .interrupt_signal
            .parse()
            .map_err(|e| format!("interruptSignal: {e}"))?;
        let spec = CommandSpec {
            env,
            timeout: shell.timeout.map(Duration::from_secs),
            max_time: shell.max_time.map(Duration::from_secs),
            interrupt_signal,
            sigterm_time: shell.sigterm_time.map(Duration::from_secs),
            initial_stdin: shell.initial_stdin.clone(),
            logfiles: shell
                .logfiles
                .iter()
                .map(|(name, file)| (name.clone(), workdir.join(&file.filename), file.follow))
                .collect(),
            log_environ: shell.log_environ,
            ..CommandSpec::new(command, workdir)
        };
        let mut logfiles = BTreeMap::new();
        for name in shell.logfiles.keys() {
            logfiles.insert(
                name.clone(),
                (self.log(name, false).await?, LineBuffer::new()),
            );
        }
        let (sender, mut receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let worker = if capture.on_master {
            &WorkerLink::Local
        } else {
            &self.build.worker
        };
        let stop = self.build.stop.clone();
        let copy = capture.copy;
        let runner = async {
            match copy {
                Some((from, to)) => worker.copy_dir(&spec, from, to, sender, stop).await,
                None => worker.run(&spec, sender, stop).await,
            }
        };
        let mut reader = Reader::new(capture, shell);
        let consume = async {
            while let Some(chunk) = receiver.recv().await {
                reader.take(chunk, stdio, &mut logfiles).await?;
            }
            reader.flush(stdio).await
        };
        let (outcome, consumed) = tokio::join!(runner, consume);
        consumed?;
        for (_, (mut log, mut lines)) in logfiles {
            if let Some(rest) = lines.flush() {
                log.line('o', &rest).await.map_err(|e| e.to_string())?;
            }
            self.end_log_with_step(log);
        }
        let results = match &outcome {
            Outcome::Exited(code) => shell
                .decode_rc
                .0
                .get(&i64::from(*code))
                .copied()
                .unwrap_or(BuildResult::Failure),
            Outcome::Interrupted => BuildResult::Cancelled,
            Outcome::WorkerLost => BuildResult::Retry,
            _ => BuildResult::Failure,
        };
        Ok(Ran {
            outcome,
            results,
            warnings: reader.warnings,
            stdout: reader.stdout,
            stderr: reader.stderr,
            test_counts: reader.tests,
        })
    }

    /// ShellCommand, Configure, Compile and Test.
    pub async fn shell(
        &self,
        step: &ShellStep,
        warnings: Option<&WarningCounting>,
        count_tests: bool,
    ) -> Result<StepOutcome, String> {
        let workdir = self.build.workdir(self.config).await?;
        let capture = Capture {
            warnings,
            count_tests,
            ..Capture::default()
        };
        let ran = self
            .run_command(&step.command, &step.shell, &workdir, "stdio", capture)
            .await?;
        let mut results = ran.results;
        if let Some(counting) = warnings {
            results = self
                .judge_warnings(counting, &ran.warnings, results)
                .await?;
        }
        if count_tests {
            results = self.record_tests(&ran.test_counts, results);
        }
        Ok(StepOutcome {
            results,
            summary: self.summary_for(&step.command, &ran, results).await,
        })
    }

    /// ShellSequence: each command in turn, in one step, each with its own log; a command's
    /// flunk/halt options decide how its failure counts.
    pub async fn sequence(
        &self,
        commands: &[crate::config::build::ShellArg],
        shell: &ShellOptions,
    ) -> Result<StepOutcome, String> {
        let workdir = self.build.workdir(self.config).await?;
        let mut overall = BuildResult::Success;
        for (index, arg) in commands.iter().enumerate() {
            let logname = arg.logname.clone().unwrap_or_else(|| {
                if index == 0 {
                    "stdio".into()
                } else {
                    format!("stdio{index}")
                }
            });
            let ran = self
                .run_command(&arg.command, shell, &workdir, &logname, Capture::default())
                .await?;
            let counted = match ran.results {
                BuildResult::Failure if arg.flunk_on_failure => BuildResult::Failure,
                BuildResult::Failure if arg.warn_on_failure => BuildResult::Warnings,
                BuildResult::Failure => BuildResult::Success,
                other => other,
            };
            overall = overall.worst(counted);
            if ran.results == BuildResult::Cancelled
                || (ran.results == BuildResult::Failure && arg.halt_on_failure)
            {
                break;
            }
        }
        Ok(StepOutcome::of(overall))
    }

    /// SetPropertyFromCommand: the command's output becomes a property, or `extract_fn`
    /// turns it into several.
    pub async fn property_from_command(
        &self,
        step: &ShellStep,
        target: &PropertyFromCommand,
    ) -> Result<StepOutcome, String> {
        let workdir = self.build.workdir(self.config).await?;
        let capture = Capture {
            stdout: target.include_stdout,
            stderr: target.include_stderr,
            ..Capture::default()
        };
        let ran = self
            .run_command(&step.command, &step.shell, &workdir, "stdio", capture)
            .await?;
        let rc = match ran.outcome {
            Outcome::Exited(code) => i64::from(code),
            _ => -1,
        };
        let source = "SetPropertyFromCommand Step";
        match &target.target {
            PropertyTarget::Property(name) => {
                if ran.results == BuildResult::Success {
                    let name = self.build.render_string(name).await?;
                    let mut text = ran.stdout.clone();
                    text.push_str(&ran.stderr);
                    let text = if target.strip {
                        text.trim().to_string()
                    } else {
                        text
                    };
                    self.build.set_property(&name, Value::String(text), source);
                }
            }
            PropertyTarget::Extract(function) => {
                let args = vec![
                    Arg::Json(rc.into()),
                    Arg::Json(ran.stdout.clone().into()),
                    Arg::Json(ran.stderr.clone().into()),
                ];
                let value = self
                    .build
                    .ctx
                    .script
                    .call::<Value>(function, args)
                    .await
                    .map_err(|e| format!("extract_fn failed: {e}"))?;
                match value {
                    Value::Object(properties) => {
                        for (name, value) in properties {
                            self.build.set_property(&name, value, source);
                        }
                    }
                    Value::Null => {}
                    other => {
                        return Err(format!(
                            "extract_fn must return a table of properties, got {other}"
                        ))
                    }
                }
            }
        }
        Ok(StepOutcome::of(ran.results))
    }

    /// MasterShellCommand: the command runs on the master, in its base directory.
    pub async fn master_shell(
        &self,
        step: &crate::config::build::MasterShellCommand,
    ) -> Result<StepOutcome, String> {
        let shell = ShellOptions {
            max_time: Some(step.runtime_timeout),
            interrupt_signal: step.interrupt_signal.clone(),
            ..plain_shell(step.env.clone(), None, step.log_environ)
        };
        let workdir = match &self.config.common.workdir {
            Some(dir) => self
                .build
                .ctx
                .basedir
                .join(self.build.render_string(dir).await?),
            None => self.build.ctx.basedir.clone(),
        };
        let ran = self
            .run_command(
                &step.command,
                &shell,
                &workdir,
                "stdio",
                Capture {
                    on_master: true,
                    ..Capture::default()
                },
            )
            .await?;
        Ok(StepOutcome::of(ran.results))
    }

    /// Compile and Test: the warnings log, the `warnings-count` property, `maxWarnCount`.
    async fn judge_warnings(
        &self,
        counting: &WarningCounting,
        warnings: &[String],
        results: BuildResult,
    ) -> Result<BuildResult, String> {
        let count = warnings.len() as u64;
        if count > 0 {
            let mut log = self.log(&format!("warnings ({count})"), false).await?;
            for line in warnings {
                log.line('o', line).await.map_err(|e| e.to_string())?;
            }
            log.finish().await.map_err(|e| e.to_string())?;
        }
        let previous = self
            .build
            .properties()
            .get("warnings-count")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        self.build.set_property(
            "warnings-count",
            Value::from(previous + count),
            "WarningCountingShellCommand",
        );
        Ok(match counting.max_warn_count {
            Some(max) if count > max => results.worst(BuildResult::Failure),
            _ if count > 0 => results.worst(BuildResult::Warnings),
            _ => results,
        })
    }

    /// Test: the counts found in the output become properties.
    fn record_tests(&self, counts: &TestCounts, results: BuildResult) -> BuildResult {
        let source = "Test";
        let set =
            |name: &str, value: u64| self.build.set_property(name, Value::from(value), source);
        set(
            "tests-total",
            counts.passed + counts.failed + counts.skipped,
        );
        set("tests-passed", counts.passed);
        set("tests-failed", counts.failed);
        set("tests-skipped", counts.skipped);
        if counts.failed > 0 {
            results.worst(BuildResult::Failure)
        } else {
            results
        }
    }

    /// Buildbot's shell summary: `descriptionDone`, else the command's first words quoted;
    /// why it was killed when it was.
    async fn summary_for(
        &self,
        command: &Renderable,
        ran: &Ran,
        results: BuildResult,
    ) -> Option<String> {
        let common = &self.config.common;
        let mut summary = match &common.description_done {
            Some(words) => words.join(" "),
            None => describe_command(&self.build.render(command).await.ok()?),
        };
        if let Some(suffix) = &common.description_suffix {
            summary.push(' ');
            summary.push_str(&suffix.join(" "));
        }
        match &ran.outcome {
            Outcome::TimedOut { .. } | Outcome::MaxTimeExceeded(_) => {
                summary.push_str(" (timed out)")
            }
            Outcome::SpawnFailed(_) => summary.push_str(" (failed to start)"),
            _ if results != BuildResult::Success => summary.push_str(&format!(" ({results})")),
            _ => {}
        }
        Some(summary)
    }
}

/// Shell options for commands a step makes up itself (source checkouts, master commands).
pub fn plain_shell(
    env: BTreeMap<String, Renderable>,
    timeout: Option<u64>,
    log_environ: bool,
) -> ShellOptions {
    ShellOptions {
        env,
        want_stdout: true,
        want_stderr: true,
        use_pty: None,
        logfiles: BTreeMap::new(),
        lazylogfiles: false,
        timeout,
        max_time: None,
        max_lines: None,
        log_environ,
        interrupt_signal: "KILL".into(),
        sigterm_time: None,
        initial_stdin: None,
        decode_rc: Default::default(),
    }
}

/// A rendered command: a string runs through the shell, a list is the argument vector
/// (nested lists flattened, numbers as text).
fn command_line(value: Value) -> Result<CommandLine, String> {
    fn flatten(value: Value, into: &mut Vec<String>) {
        match value {
            Value::Array(items) => items.into_iter().for_each(|item| flatten(item, into)),
            Value::String(s) => into.push(s),
            Value::Null => {}
            other => into.push(other.to_string()),
        }
    }
    match value {
        Value::String(s) if !s.trim().is_empty() => Ok(CommandLine::Shell(s)),
        value @ Value::Array(_) => {
            let mut argv = Vec::new();
            flatten(value, &mut argv);
            if argv.is_empty() {
                return Err("the command renders to an empty list".into());
            }
            Ok(CommandLine::Argv(argv))
        }
        other => Err(format!(
            "the command must render to a string or a list, got {other}"
        )),
    }
}

/// A rendered environment value: lists join with ':' as Buildbot joins them with the path
/// separator; `false`/nil removes the variable.
fn env_value(value: Value) -> Option<String> {
    match value {
        Value::Null | Value::Bool(false) => None,
        Value::String(s) => Some(s),
        Value::Array(items) => Some(
            items
                .into_iter()
                .map(|v| {
                    v.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join(":"),
        ),
        other => Some(other.to_string()),
    }
}

/// Buildbot's `command_to_string`: the first two words of the command, quoted.
fn describe_command(command: &Value) -> String {
    let words: Vec<String> = match command {
        Value::String(s) => s.split_whitespace().map(String::from).collect(),
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut shown = words.iter().take(2).cloned().collect::<Vec<_>>().join(" ");
    if words.len() > 2 {
        shown.push_str(" ...");
    }
    format!("'{shown}'")
}

/// Test counts found in a test run's output (`3 passed`, `1 failed`, `2 skipped`, as
/// cargo, pytest and most runners print them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestCounts {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl TestCounts {
    fn scan(&mut self, line: &str) {
        static COUNT: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
        let count = COUNT.get_or_init(|| {
            Regex::new(r"(?i)\b(\d+) (passed|failed|failures?|errors?|skipped|ignored)\b")
                .expect("a valid pattern")
        });
        for found in count.captures_iter(line) {
            let n: u64 = found[1].parse().unwrap_or(0);
            match found[2].to_ascii_lowercase().as_str() {
                "passed" => self.passed += n,
                "skipped" | "ignored" => self.skipped += n,
                _ => self.failed += n,
            }
        }
    }
}

/// Turns chunks into log lines, and watches stdout for what the step needs.
struct Reader<'a> {
    capture: Capture<'a>,
    stdout_lines: LineBuffer,
    stderr_lines: LineBuffer,
    want_stdout: bool,
    want_stderr: bool,
    warnings: Vec<String>,
    stdout: String,
    stderr: String,
    tests: TestCounts,
}

impl<'a> Reader<'a> {
    fn new(capture: Capture<'a>, shell: &ShellOptions) -> Reader<'a> {
        Reader {
            capture,
            stdout_lines: LineBuffer::new(),
            stderr_lines: LineBuffer::new(),
            want_stdout: shell.want_stdout,
            want_stderr: shell.want_stderr,
            warnings: Vec::new(),
            stdout: String::new(),
            stderr: String::new(),
            tests: TestCounts::default(),
        }
    }

    async fn take(
        &mut self,
        chunk: Chunk,
        stdio: &mut LogWriter,
        logfiles: &mut BTreeMap<String, (LogWriter, LineBuffer)>,
    ) -> Result<(), String> {
        let io = |e: crate::db::DbError| e.to_string();
        match chunk {
            Chunk::Header(text) => stdio.text('h', &text).await.map_err(io)?,
            Chunk::Stdout(bytes) => {
                if self.capture.stdout {
                    keep(&mut self.stdout, &bytes);
                }
                for line in self.stdout_lines.push(&bytes) {
                    self.stdout_line(stdio, &line).await?;
                }
            }
            Chunk::Stderr(bytes) => {
                if self.capture.stderr {
                    keep(&mut self.stderr, &bytes);
                }
                for line in self.stderr_lines.push(&bytes) {
                    if self.want_stderr {
                        stdio.line('e', &line).await.map_err(io)?;
                    }
                }
            }
            Chunk::LogFile(name, bytes) => {
                if let Some((log, lines)) = logfiles.get_mut(&name) {
                    for line in lines.push(&bytes) {
                        log.line('o', &line).await.map_err(io)?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn stdout_line(&mut self, stdio: &mut LogWriter, line: &str) -> Result<(), String> {
        if let Some(pattern) = self
            .capture
            .warnings
            .and_then(|w| w.warning_pattern.as_ref())
        {
            if pattern.matches_start(line) {
                self.warnings.push(line.to_string());
            }
        }
        if self.capture.count_tests {
            self.tests.scan(line);
        }
        if self.want_stdout {
            stdio.line('o', line).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    async fn flush(&mut self, stdio: &mut LogWriter) -> Result<(), String> {
        if let Some(rest) = self.stdout_lines.flush() {
            self.stdout_line(stdio, &rest).await?;
        }
        if let Some(rest) = self.stderr_lines.flush() {
            if self.want_stderr {
                stdio.line('e', &rest).await.map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

/// Keeps captured output up to [`MAX_CAPTURE`] bytes.
fn keep(into: &mut String, bytes: &[u8]) {
    let room = MAX_CAPTURE.saturating_sub(into.len());
    into.push_str(&String::from_utf8_lossy(&bytes[..bytes.len().min(room)]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_render_to_shell_or_argv() {
        assert_eq!(
            command_line(Value::from("make all")).unwrap(),
            CommandLine::Shell("make all".into())
        );
        assert_eq!(
            command_line(serde_json::json!(["make", ["-j", 2]])).unwrap(),
            CommandLine::Argv(vec!["make".into(), "-j".into(), "2".into()])
        );
        assert!(command_line(serde_json::json!([])).is_err());
        assert!(command_line(Value::from(3)).is_err());
    }

    #[test]
    fn commands_are_described_by_their_first_words() {
        assert_eq!(describe_command(&Value::from("make")), "'make'");
        assert_eq!(
            describe_command(&serde_json::json!(["make", "-j", "2"])),
            "'make -j ...'"
        );
    }

    #[test]
    fn test_counts_are_read_from_common_runner_output() {
        let mut counts = TestCounts::default();
        counts.scan("test result: ok. 12 passed; 1 failed; 2 ignored; 0 measured");
        counts.scan("==== 3 passed, 1 skipped in 0.1s ====");
        assert_eq!(
            counts,
            TestCounts {
                passed: 15,
                failed: 1,
                skipped: 3
            }
        );
    }
}
