//! Running a step's command as a real process, the way Buildbot's worker runs `shell`.
//!
//! [`run`] starts the command in its own process group, streams its stdout, stderr and
//! watched log files into a bounded channel as they are written, enforces the no-output
//! (`timeout`) and total (`maxTime`) limits, and kills the whole group on a limit or an
//! interrupt, escalating to SIGKILL. A running group is held on the `lifeline`, which
//! kills it if the master dies. The header text (command line, directory, environment,
//! exit code, elapsed time) is what Buildbot's worker and master write, so a step log reads
//! the same.
//!
//! **Architecture invariant:** memory stays bounded whatever a command prints: each stream
//! has one read buffer, and a slow consumer makes the runner wait, which stops the child on
//! its full pipe.

mod display;
mod environ;
mod lifeline;
mod lines;
mod logfile;

use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::pin::pin;
use std::process::{ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, Command};
use tokio::sync::mpsc::Sender;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub use lines::{LineBuffer, MAX_LINE_BYTES};
use logfile::LogFileWatcher;

/// The size of one read from a pipe or log file, and so of one [`Chunk`] at most.
const READ_SIZE: usize = 64 * 1024;

/// How often watched log files are checked for new content.
const LOGFILE_POLL: Duration = Duration::from_millis(250);

/// How long a signal gets to end the process group before the next, harsher one
/// (Buildbot's `BACKUP_TIMEOUT`).
const KILL_GRACE: Duration = Duration::from_secs(5);

/// What to run: a shell string (`/bin/sh -c`) or an argv run directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    Shell(String),
    Argv(Vec<String>),
}

impl CommandLine {
    fn argv(&self) -> Vec<&str> {
        match self {
            CommandLine::Shell(script) => vec!["/bin/sh", "-c", script],
            CommandLine::Argv(argv) => argv.iter().map(String::as_str).collect(),
        }
    }
}

/// A command with everything the worker needs to run it; values are rendered already.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub command: CommandLine,
    /// Must exist: a missing workdir ends the run with [`Outcome::SpawnFailed`].
    pub workdir: PathBuf,
    /// Changes to the master's environment: `None` removes the variable; `${NAME}` in a
    /// value expands from the master's environment; list values are joined by the caller.
    pub env: Vec<(String, Option<String>)>,
    /// Kill the command after this long without output (Buildbot's `timeout`).
    pub timeout: Option<Duration>,
    /// Kill the command after this long in total (Buildbot's `maxTime`).
    pub max_time: Option<Duration>,
    /// The signal a kill sends first (Buildbot's `interruptSignal`).
    pub interrupt_signal: Signal,
    /// Send SIGTERM first and wait this long before `interrupt_signal` (Buildbot's
    /// `sigtermTime`).
    pub sigterm_time: Option<Duration>,
    /// Written to the command's stdin, which is then closed; without it stdin is empty.
    pub initial_stdin: Option<String>,
    /// Log files to watch: name, path (relative to the workdir), and whether to stream only
    /// what is appended after the start rather than the whole file once it changes.
    pub logfiles: Vec<(String, PathBuf, bool)>,
    /// Whether the header lists the environment.
    pub log_environ: bool,
}

impl CommandSpec {
    /// A command with Buildbot's defaults for everything but the limits, which the caller
    /// sets (Buildbot's 1200 s `timeout` default belongs to the step).
    pub fn new(command: CommandLine, workdir: impl Into<PathBuf>) -> Self {
        Self {
            command,
            workdir: workdir.into(),
            env: Vec::new(),
            timeout: None,
            max_time: None,
            interrupt_signal: Signal::KILL,
            sigterm_time: None,
            initial_stdin: None,
            logfiles: Vec::new(),
            log_environ: true,
        }
    }
}

/// A signal to stop a command with, named as Buildbot names them (`"KILL"`, `"TERM"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(i32);

const SIGNAL_NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ABRT", libc::SIGABRT),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
];

impl Signal {
    pub const KILL: Signal = Signal(libc::SIGKILL);
    pub const TERM: Signal = Signal(libc::SIGTERM);
    pub const INT: Signal = Signal(libc::SIGINT);

    pub fn number(self) -> i32 {
        self.0
    }
}

/// A signal name that is not one a command can be stopped with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal '{0}' (known: HUP, INT, QUIT, ABRT, KILL, USR1, USR2, ALRM, TERM)")]
pub struct UnknownSignal(pub String);

impl FromStr for Signal {
    type Err = UnknownSignal;

    /// Accepts `TERM` or `SIGTERM`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let bare = name.strip_prefix("SIG").unwrap_or(name);
        SIGNAL_NAMES
            .iter()
            .find(|(known, _)| *known == bare)
            .map(|&(_, number)| Signal(number))
            .ok_or_else(|| UnknownSignal(name.to_owned()))
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match SIGNAL_NAMES.iter().find(|&&(_, number)| number == self.0) {
            Some((name, _)) => write!(f, "SIG{name}"),
            None => write!(f, "signal {}", self.0),
        }
    }
}

/// One piece of a command's output, in the order it happened. Header text comes in whole
/// lines ending in `\n`; the others are raw bytes as read, to split with [`LineBuffer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Header(String),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// New content of a watched log file, by its name.
    LogFile(String, Vec<u8>),
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    /// Killed by a signal nobody here sent.
    Signalled(i32),
    /// Killed after printing nothing for this long.
    TimedOut {
        no_output: Duration,
    },
    /// Killed after running this long in total.
    MaxTimeExceeded(Duration),
    /// Killed because the interrupt token was cancelled.
    Interrupted,
    /// Never started: missing workdir, program not found, not executable.
    SpawnFailed(String),
    /// Waiting for the process failed, so how it ended is unknown.
    Lost(String),
    /// The remote worker running it disconnected: the build is retried.
    WorkerLost,
}

/// Runs the command, streaming its output into `sink`, until it ends, a limit kills it, or
/// `interrupt` is cancelled. Dropping the returned future kills the process group.
pub async fn run(spec: &CommandSpec, sink: Sender<Chunk>, interrupt: CancellationToken) -> Outcome {
    let out = Output { sink: &sink };
    let argv_repr = display::command_repr(&spec.command);
    let env = environ::build(&spec.env, &spec.workdir);
    write_start_header(spec, &env, &argv_repr, &out).await;

    if let Err(reason) = check_workdir(spec) {
        return spawn_failed(reason, &out).await;
    }
    let argv = spec.command.argv();
    let Some((program, args)) = argv.split_first() else {
        return spawn_failed("cannot run an empty command".to_owned(), &out).await;
    };
    let mut watchers: Vec<LogFileWatcher> = spec
        .logfiles
        .iter()
        .map(|(name, path, follow)| LogFileWatcher::new(name, spec.workdir.join(path), *follow))
        .collect();

    let stdin = if spec.initial_stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    lifeline::prepare();
    let start = Instant::now();
    let mut command = Command::new(resolve_program(program, &env, &spec.workdir));
    env.apply(&mut command);
    let mut child = match command
        .args(args)
        .current_dir(&spec.workdir)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
    {
        Ok(child) => child,
        Err(error) => {
            let reason = format!("cannot run '{program}': {}", describe(&error));
            return spawn_failed(reason, &out).await;
        }
    };
    let pgid = child.id().map_or(0, |pid| pid as i32);
    let mut group = GroupGuard::new(pgid);
    tracing::debug!(pgid, command = %display::command_line(&spec.command), "command started");

    let activity = Activity::new(start);
    let mut stdout_pump = pin!(pump(child.stdout.take(), Chunk::Stdout, &out, &activity));
    let mut stderr_pump = pin!(pump(child.stderr.take(), Chunk::Stderr, &out, &activity));
    let initial_stdin = spec.initial_stdin.as_deref().unwrap_or_default();
    let mut stdin_feed = pin!(feed_stdin(child.stdin.take(), initial_stdin.as_bytes()));
    let (mut stdout_open, mut stderr_open, mut stdin_open) = (true, true, true);
    let mut exit: Option<ExitStatus> = None;
    let mut killing: Option<Killing> = None;
    let max_deadline = spec.max_time.map(|limit| start + limit);
    let mut logfile_poll = tokio::time::interval(LOGFILE_POLL);
    logfile_poll.set_missed_tick_behavior(MissedTickBehavior::Delay);

    // Like Buildbot, the command is over when the process has exited and every process
    // holding its output pipes has closed them.
    let ending = loop {
        if let (Some(status), false, false) = (exit, stdout_open, stderr_open) {
            break Ending::Finished(status);
        }
        let idle_deadline = match (&killing, spec.timeout) {
            (None, Some(timeout)) => Some(activity.last() + timeout),
            _ => None,
        };
        let kill_deadline = killing.as_ref().map(|k| k.deadline);
        tokio::select! {
            () = &mut stdout_pump, if stdout_open => stdout_open = false,
            () = &mut stderr_pump, if stderr_open => stderr_open = false,
            () = &mut stdin_feed, if stdin_open => stdin_open = false,
            status = child.wait(), if exit.is_none() => match status {
                Ok(status) => exit = Some(status),
                Err(error) => break Ending::Lost(format!("cannot wait for the process: {error}")),
            },
            () = sleep_until(idle_deadline) => {
                let timeout = spec.timeout.unwrap_or_default();
                if activity.sending() {
                    // Output is flowing; only the consumer is slow.
                    activity.touch();
                } else if Instant::now() >= activity.last() + timeout {
                    let reason = KillReason::NoOutput(timeout);
                    killing = Some(start_kill(reason, spec, &argv_repr, pgid, &out).await);
                }
            }
            () = sleep_until(max_deadline), if killing.is_none() => {
                let reason = KillReason::MaxTime(spec.max_time.unwrap_or_default());
                killing = Some(start_kill(reason, spec, &argv_repr, pgid, &out).await);
            }
            () = interrupt.cancelled(), if killing.is_none() => {
                killing = Some(start_kill(KillReason::Interrupt, spec, &argv_repr, pgid, &out).await);
            }
            () = sleep_until(kill_deadline) => {
                if let Some(k) = killing.as_mut() {
                    if let Some(signal) = k.escalate() {
                        tracing::info!(pgid, %signal, "process group still running, sending {signal}");
                        signal_group(pgid, signal);
                    } else {
                        break Ending::Lost(format!("{} failed to kill process", k.last_signal()));
                    }
                }
            }
            _ = logfile_poll.tick(), if !watchers.is_empty() => {
                for watcher in &mut watchers {
                    if watcher.poll(&out).await {
                        activity.touch();
                    }
                }
            }
        }
    };
    for watcher in &mut watchers {
        watcher.poll(&out).await;
    }
    group.armed = false;

    let rc = match &ending {
        Ending::Finished(status) => match status.signal() {
            Some(signal) => {
                out.header(format!("process killed by signal {signal}\n"))
                    .await;
                -1
            }
            // A killed command that still exits 0 must not pass for a success.
            None if killing.is_some() && status.code() == Some(0) => -1,
            None => status.code().unwrap_or(-1),
        },
        Ending::Lost(reason) => {
            tracing::warn!(pgid, "{reason}");
            out.header(format!("{reason}\nusing fake rc=-1\n")).await;
            -1
        }
    };
    let elapsed = start.elapsed();
    out.header(format!("program finished with exit code {rc}\n"))
        .await;
    out.header(format!("elapsedTime={:.6}\n", elapsed.as_secs_f64()))
        .await;
    tracing::debug!(
        pgid,
        rc,
        elapsed = elapsed.as_secs_f64(),
        "command finished"
    );

    match (killing.map(|k| k.reason), ending) {
        (Some(KillReason::NoOutput(no_output)), _) => Outcome::TimedOut { no_output },
        (Some(KillReason::MaxTime(limit)), _) => Outcome::MaxTimeExceeded(limit),
        (Some(KillReason::Interrupt), _) => Outcome::Interrupted,
        (None, Ending::Lost(reason)) => Outcome::Lost(reason),
        (None, Ending::Finished(status)) => match status.signal() {
            Some(signal) => Outcome::Signalled(signal),
            None => Outcome::Exited(rc),
        },
    }
}

/// The header Buildbot's worker writes before starting a command.
async fn write_start_header(
    spec: &CommandSpec,
    env: &environ::Environ,
    argv_repr: &str,
    out: &Output<'_>,
) {
    out.header(format!("{}\n", display::command_line(&spec.command)))
        .await;
    let mut in_dir = format!(" in dir {}", spec.workdir.display());
    for (label, limit) in [("timeout", spec.timeout), ("maxTime", spec.max_time)] {
        if let Some(limit) = limit {
            let unit = if limit == Duration::from_secs(1) {
                "sec"
            } else {
                "secs"
            };
            in_dir.push_str(&format!(" ({label} {} {unit})", display::seconds(limit)));
        }
    }
    out.header(in_dir + "\n").await;
    let logfiles = display::logfiles_repr(&spec.logfiles);
    out.header(format!(" watching logfiles {logfiles}\n")).await;
    out.header(format!(" argv: {argv_repr}\n")).await;
    if spec.log_environ {
        let mut listing = String::from(" environment:\n");
        for (name, value) in env.iter() {
            for part in [
                "  ",
                &name.to_string_lossy(),
                "=",
                &value.to_string_lossy(),
                "\n",
            ] {
                listing.push_str(part);
            }
        }
        out.header(listing).await;
    }
    if let Some(stdin) = spec.initial_stdin.as_ref().filter(|s| !s.is_empty()) {
        out.header(format!(" writing {} bytes to stdin\n", stdin.len()))
            .await;
    }
    out.header(" using PTY: False\n").await;
}

/// Checks on this thread, as [`resolve_program`] does: a `stat` costs less than the two
/// thread switches of tokio's blocking pool.
fn check_workdir(spec: &CommandSpec) -> Result<(), String> {
    let shown = spec.workdir.display();
    match std::fs::metadata(&spec.workdir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(format!("workdir '{shown}' is not a directory")),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            Err(format!("workdir '{shown}' does not exist"))
        }
        Err(error) => Err(format!("workdir '{shown}': {}", describe(&error))),
    }
}

async fn spawn_failed(reason: String, out: &Output<'_>) -> Outcome {
    tracing::warn!("{reason}");
    out.header(format!("{reason}\n")).await;
    Outcome::SpawnFailed(reason)
}

/// An OS error without Rust's " (os error N)" suffix, as a user reads it.
fn describe(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(suffix) => text[..suffix].to_owned(),
        None => text,
    }
}

/// Where output goes. A consumer that went away does not stop the command: its output is
/// dropped so the child never blocks on a full pipe.
struct Output<'a> {
    sink: &'a Sender<Chunk>,
}

impl Output<'_> {
    async fn send(&self, chunk: Chunk) {
        let _ = self.sink.send(chunk).await;
    }

    async fn header(&self, text: impl Into<String>) {
        self.send(Chunk::Header(text.into())).await;
    }
}

/// When output was last seen, shared by the stream readers and the no-output timer.
struct Activity {
    start: Instant,
    last_nanos: AtomicU64,
    /// Readers waiting for the consumer; while one waits, the command is not idle.
    sending: AtomicUsize,
}

impl Activity {
    fn new(start: Instant) -> Self {
        Self {
            start,
            last_nanos: AtomicU64::new(0),
            sending: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let nanos = self.start.elapsed().as_nanos() as u64;
        self.last_nanos.store(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed))
    }

    fn sending(&self) -> bool {
        self.sending.load(Ordering::Relaxed) > 0
    }
}

/// Copies one pipe into the sink, one read at a time, waiting for the consumer between reads.
async fn pump(
    pipe: Option<impl AsyncRead + Unpin>,
    channel: fn(Vec<u8>) -> Chunk,
    out: &Output<'_>,
    activity: &Activity,
) {
    let Some(mut pipe) = pipe else { return };
    // Read into spare capacity, never zeroed: a command's two streams would otherwise
    // clear 128 KiB for the few bytes most commands print.
    let mut buffer = Vec::with_capacity(READ_SIZE);
    loop {
        buffer.clear();
        match pipe.read_buf(&mut buffer).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot read command output");
                return;
            }
        };
        activity.touch();
        activity.sending.fetch_add(1, Ordering::Relaxed);
        out.send(channel(buffer.as_slice().to_vec())).await;
        activity.sending.fetch_sub(1, Ordering::Relaxed);
        activity.touch();
    }
}

/// Writes the initial stdin, then closes it so the command sees end of input.
async fn feed_stdin(stdin: Option<ChildStdin>, data: &[u8]) {
    let Some(mut stdin) = stdin else { return };
    if let Err(error) = stdin.write_all(data).await {
        // The command exited or closed stdin without reading it all; that is its choice.
        tracing::debug!(%error, "command did not read all of its stdin");
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

enum Ending {
    Finished(ExitStatus),
    Lost(String),
}

#[derive(Debug, Clone, Copy)]
enum KillReason {
    NoOutput(Duration),
    MaxTime(Duration),
    Interrupt,
}

/// A kill in progress: the signals to send in turn, each with the time it gets.
struct Killing {
    reason: KillReason,
    plan: Vec<(Signal, Duration)>,
    step: usize,
    deadline: Instant,
}

impl Killing {
    /// Moves to the next signal, if any is left.
    fn escalate(&mut self) -> Option<Signal> {
        let &(signal, grace) = self.plan.get(self.step + 1)?;
        self.step += 1;
        self.deadline = Instant::now() + grace;
        Some(signal)
    }

    fn last_signal(&self) -> Signal {
        self.plan[self.step].0
    }
}

/// Announces the kill as Buildbot does and sends the first signal: SIGTERM when
/// `sigterm_time` is set, else the interrupt signal; SIGKILL comes last if nothing else works.
async fn start_kill(
    reason: KillReason,
    spec: &CommandSpec,
    argv_repr: &str,
    pgid: i32,
    out: &Output<'_>,
) -> Killing {
    let message = match reason {
        KillReason::NoOutput(limit) => format!(
            "command timed out: {} seconds without output running {argv_repr}",
            display::seconds(limit)
        ),
        KillReason::MaxTime(limit) => format!(
            "command timed out: {} seconds elapsed running {argv_repr}",
            display::seconds(limit)
        ),
        KillReason::Interrupt => "command interrupted".to_owned(),
    };
    tracing::info!(pgid, "{message}, attempting to kill");
    out.header(format!("\n{message}, attempting to kill\n"))
        .await;

    let mut plan = Vec::new();
    if let Some(sigterm_time) = spec.sigterm_time {
        plan.push((Signal::TERM, sigterm_time));
    }
    plan.push((spec.interrupt_signal, KILL_GRACE));
    if spec.interrupt_signal != Signal::KILL {
        plan.push((Signal::KILL, KILL_GRACE));
    }
    let (first, grace) = plan[0];
    signal_group(pgid, first);
    Killing {
        reason,
        plan,
        step: 0,
        deadline: Instant::now() + grace,
    }
}

fn signal_group(pgid: i32, signal: Signal) {
    if pgid <= 0 {
        return;
    }
    // SAFETY: killpg only sends a signal, to the group our child leads.
    if unsafe { libc::killpg(pgid, signal.0) } != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(pgid, %signal, %error, "cannot signal process group");
        }
    }
}

/// Kills the process group if `run` is dropped before the command ended, so a cancelled
/// step leaves nothing running; until then the group is on the [`lifeline`], so it also
/// ends if the master dies.
struct GroupGuard {
    pgid: i32,
    armed: bool,
}

impl GroupGuard {
    fn new(pgid: i32) -> GroupGuard {
        if pgid > 0 {
            lifeline::hold(pgid);
        }
        GroupGuard { pgid, armed: true }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pgid, Signal::KILL);
        }
        if self.pgid > 0 {
            lifeline::release(self.pgid);
        }
    }
}

/// The program as a path, looked up in the step's own PATH: std's Command falls back from
/// posix_spawn (vfork) to fork, which copies the master's page tables, when the environment
/// sets PATH and the program is a bare name. Unresolved names go through unchanged, so
/// spawning reports them as not found.
fn resolve_program(program: &str, env: &environ::Environ, workdir: &std::path::Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return PathBuf::from(program);
    }
    let path = env
        .get("PATH")
        .unwrap_or_else(|| std::ffi::OsStr::new("/usr/bin:/bin"));
    std::env::split_paths(path)
        .map(|dir| workdir.join(dir).join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| PathBuf::from(program))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_buildbot_name() {
        assert_eq!("KILL".parse(), Ok(Signal::KILL));
        assert_eq!("SIGTERM".parse(), Ok(Signal::TERM));
        assert_eq!(Signal::INT.to_string(), "SIGINT");
        let error = "BOGUS".parse::<Signal>().unwrap_err();
        assert!(error.to_string().starts_with("unknown signal 'BOGUS'"));
    }
}
