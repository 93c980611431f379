//! Running a master as a service: `start` in the background (daemon) or the foreground,
//! `stop`, the pid file, signals and the rotated log file.
//!
//! Like Buildbot's `buildbot start`, the command that starts a daemon waits until the master
//! logs that it is up (or fails) and reports that, so a broken config is seen at once.
//! The daemon tells its starter through a pipe rather than by the starter tailing the log.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::master::{Outcome, RECONFIG_FILE};
use tokio_util::sync::CancellationToken;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::CONFIG_FILE;
use crate::master;
use crate::runtime::RotatingLog;

/// The file holding the running master's process id, in its base directory.
pub const PID_FILE: &str = "moonbot.pid";
/// The daemon's log file, in its base directory; rotated copies are `moonbot.log.1` (newest)
/// to `moonbot.log.10`.
pub const LOG_FILE: &str = "moonbot.log";
/// The environment variable holding the log filter (`RUST_LOG` syntax).
pub const LOG_ENV: &str = "MOONBOT_LOG";
/// The line `master::run` logs once every service is up: the daemon is ready when it is seen.
const MASTER_STARTED: &str = "master started";
const MASTER_TARGET: &str = "moonbot::master";

/// How `start` runs the master.
#[derive(Clone, Debug)]
pub struct StartOptions {
    /// Detach and log to `moonbot.log`; otherwise stay in the foreground and log to stderr.
    pub daemon: bool,
    /// How long the starting command waits for the daemon to report it is up.
    pub start_timeout: Duration,
}

/// What `stop` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// No master was running (a stale pid file was removed).
    NotRunning,
    /// The master with this process id was asked to stop and is gone.
    Stopped(i32),
}

/// Starts the master of `basedir`. With `daemon`, returns once the daemon reports it is up
/// (Ok, with its pid) or failed (Err, with the master's error, e.g. config errors with their
/// `file:line`). In the foreground, returns when the master has stopped.
///
/// Must be called before any thread is started: the daemon is made with `fork`.
pub fn start(basedir: &Path, options: &StartOptions) -> anyhow::Result<Option<i32>> {
    let basedir = master_dir(basedir)?;
    let filter = log_filter()?;
    if let Some(pid) = running_pid(&basedir) {
        bail!(
            "the master in {} is already running (pid {pid})",
            basedir.display()
        );
    }
    if options.daemon {
        daemonize(&basedir, filter, options.start_timeout).map(Some)
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(io::stderr)
            .with_ansi(io::stderr().is_terminal())
            .with_target(false)
            .init();
        let pid_file = PidFile::create(&basedir)?;
        serve(&basedir, &pid_file).map(|()| None)
    }
}

/// Sends SIGTERM to the master of `basedir` and waits up to `timeout` for it to be gone.
pub fn stop(basedir: &Path, timeout: Duration) -> anyhow::Result<Stopped> {
    let basedir = master_dir(basedir)?;
    let path = basedir.join(PID_FILE);
    let Some(pid) = read_pid(&path) else {
        return Ok(Stopped::NotRunning);
    };
    if !process_alive(pid) {
        remove_pid_file(&path, pid);
        return Ok(Stopped::NotRunning);
    }
    // SAFETY: kill has no memory effects; the pid came from the master's own pid file.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ESRCH) {
            return Err(error).with_context(|| format!("cannot signal the master (pid {pid})"));
        }
    }
    let deadline = Instant::now() + timeout;
    while process_alive(pid) {
        if Instant::now() >= deadline {
            bail!(
                "the master (pid {pid}) is still running {}s after SIGTERM; see {}",
                timeout.as_secs(),
                basedir.join(LOG_FILE).display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // A master that died without cleaning up leaves its pid file behind.
    remove_pid_file(&path, pid);
    Ok(Stopped::Stopped(pid))
}

/// Asks the master of `basedir` to reconfig (SIGHUP), then waits up to `timeout` for the
/// outcome it writes to `moonbot.reconfig`, and returns that outcome.
pub fn reconfig(basedir: &Path, timeout: Duration) -> anyhow::Result<Outcome> {
    let basedir = master_dir(basedir)?;
    let Some(pid) = running_pid(&basedir) else {
        bail!("no master is running in {}", basedir.display());
    };
    let outcome_file = basedir.join(RECONFIG_FILE);
    let read = || -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(&outcome_file).ok()?).ok()
    };
    let count = |value: &Option<serde_json::Value>| {
        value
            .as_ref()
            .and_then(|v| v["count"].as_u64())
            .unwrap_or(0)
    };
    let before = count(&read());
    // SAFETY: kill has no memory effects; the pid came from the master's own pid file.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        let error = io::Error::last_os_error();
        return Err(error).with_context(|| format!("cannot signal the master (pid {pid})"));
    }
    let deadline = Instant::now() + timeout;
    loop {
        let current = read();
        if count(&current) > before {
            let value = current.unwrap_or_default();
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            return Ok(Outcome {
                ok: value["ok"].as_bool().unwrap_or(false),
                line: text(&value["line"]),
                errors: value["errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(text)
                    .collect(),
            });
        }
        if Instant::now() >= deadline || !process_alive(pid) {
            bail!(
                "no reconfig outcome from the master (pid {pid}) after {}s; see {}",
                timeout.as_secs(),
                basedir.join(LOG_FILE).display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The canonical base directory, which must hold a config.
fn master_dir(basedir: &Path) -> anyhow::Result<PathBuf> {
    let dir = basedir
        .canonicalize()
        .with_context(|| format!("no master directory {}", basedir.display()))?;
    if !dir.join(CONFIG_FILE).is_file() {
        bail!(
            "{} is not a master directory: it has no {CONFIG_FILE} (make one with: moonbot create-master {})",
            dir.display(),
            basedir.display()
        );
    }
    Ok(dir)
}

/// The log filter from `MOONBOT_LOG`, `info` when unset; a bad filter is an error.
fn log_filter() -> anyhow::Result<EnvFilter> {
    EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .with_env_var(LOG_ENV)
        .from_env()
        .map_err(|error| anyhow::anyhow!("invalid {LOG_ENV}: {error}"))
}

/// Forks the daemon and waits for its report; returns its pid.
fn daemonize(basedir: &Path, filter: EnvFilter, timeout: Duration) -> anyhow::Result<i32> {
    let (report_read, report_write) = pipe().context("cannot make a pipe for the daemon")?;
    // SAFETY: the process has one thread (see `start`), so the child may go on running
    // ordinary Rust code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()).context("cannot fork the daemon"),
        0 => {
            drop(report_read);
            become_daemon(basedir, filter, report_write)
        }
        child => {
            drop(report_write);
            // SAFETY: reaps the short-lived intermediate child; a null status is allowed.
            unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
            await_report(report_read, basedir, timeout)
        }
    }
}

/// Reads the daemon's report: `ok PID`, or `error` and the error's text. The pipe closing
/// without one means the daemon died.
fn await_report(mut pipe: File, basedir: &Path, timeout: Duration) -> anyhow::Result<i32> {
    let log = basedir.join(LOG_FILE);
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = sender.send(pipe.read_to_string(&mut text).map(|_| text));
    });
    let report = match receiver.recv_timeout(timeout) {
        Ok(report) => report.context("cannot read the daemon's report")?,
        Err(_) => bail!(
            "the master has not reported that it is up after {}s; it may still be starting: \
             look for '{MASTER_STARTED}' in {}",
            timeout.as_secs(),
            log.display()
        ),
    };
    if let Some(pid) = report.strip_prefix("ok ") {
        return pid
            .trim()
            .parse()
            .with_context(|| format!("the daemon sent a bad pid '{pid}'"));
    }
    match report.strip_prefix("error\n") {
        Some(error) => bail!(
            "the master in {} failed to start:\n{}",
            basedir.display(),
            error.trim_end()
        ),
        None => bail!("the master exited while starting; see {}", log.display()),
    }
}

/// The forked child: detaches, runs the master, and never returns.
fn become_daemon(basedir: &Path, filter: EnvFilter, report: File) -> ! {
    let report = Arc::new(Report(Mutex::new(Some(report))));
    // SAFETY: setsid and fork have no memory effects; the process is single-threaded.
    unsafe {
        libc::setsid();
        // A second fork: the daemon is not a session leader, so it can never acquire a
        // controlling terminal. The intermediate child exits at once.
        match libc::fork() {
            -1 => {
                report.failed(&format!(
                    "cannot fork the daemon: {}",
                    io::Error::last_os_error()
                ));
                libc::_exit(1);
            }
            0 => {}
            _ => libc::_exit(0),
        }
    }
    let code = match run_daemon(basedir, filter, &report) {
        Ok(()) => 0,
        Err(error) => {
            let text = format!("{error:#}");
            tracing::error!("the master failed: {}", text.trim_end());
            report.failed(&text);
            1
        }
    };
    std::process::exit(code)
}

fn run_daemon(basedir: &Path, filter: EnvFilter, report: &Arc<Report>) -> anyhow::Result<()> {
    detach_stdio()?;
    std::env::set_current_dir(basedir)
        .with_context(|| format!("cannot change to {}", basedir.display()))?;
    let log = RotatingLog::open(
        basedir.join(LOG_FILE),
        RotatingLog::DEFAULT_MAX_BYTES,
        RotatingLog::DEFAULT_KEEP,
    )?;
    let started = Targets::new().with_target(MASTER_TARGET, Level::INFO);
    Registry::default()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(Mutex::new(log))
                .with_ansi(false)
                .with_target(false)
                .with_filter(filter),
        )
        .with(ReadyOnStart(Arc::clone(report)).with_filter(started))
        .init();
    // stderr is /dev/null now: a panic's message goes to the log instead.
    std::panic::set_hook(Box::new(|panic| tracing::error!("panic: {panic}")));
    let pid_file = PidFile::create(basedir)?;
    let result = serve(basedir, &pid_file);
    // Remove the pid file before the starter hears of a failure: it may look at once.
    drop(pid_file);
    result
}

/// Points stdin, stdout and stderr at /dev/null, so the daemon holds no terminal and no
/// pipe of the command that started it.
fn detach_stdio() -> anyhow::Result<()> {
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("cannot open /dev/null")?;
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors; `null` stays open across the calls.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } == -1 {
            return Err(io::Error::last_os_error()).context("cannot redirect stdio");
        }
    }
    Ok(())
}

/// Runs the master until SIGTERM or SIGINT. Called in the process that stays.
fn serve(basedir: &Path, pid_file: &PidFile) -> anyhow::Result<()> {
    tracing::info!(
        basedir = %basedir.display(),
        pid = pid_file.pid,
        "moonbot {} starting",
        env!("CARGO_PKG_VERSION")
    );
    // Two worker threads rather than current_thread: a service that holds its thread for a
    // while (compressing a large log chunk inline, a Lua render awaited in a loop) must not
    // stall the web server and the other services; two match the small machines a master
    // runs on, and the Lua VM and SQLite already have threads of their own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = ShutdownSignals::install().context("cannot install signal handlers")?;
        tokio::spawn(signals.watch(shutdown.clone(), pid_file.path.clone()));
        master::run(basedir, shutdown).await
    })
}

/// SIGTERM (systemd, `moonbot stop`) and SIGINT (Ctrl-C) ask for a clean shutdown.
struct ShutdownSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl ShutdownSignals {
    /// Installed before the master starts, so a signal at any time after is a clean stop.
    fn install() -> io::Result<ShutdownSignals> {
        Ok(ShutdownSignals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }

    /// The first signal cancels `shutdown`; a second one, for a shutdown that hangs,
    /// exits at once.
    async fn watch(mut self, shutdown: CancellationToken, pid_path: PathBuf) {
        let name = self.next().await;
        tracing::info!(signal = name, "shutting down");
        shutdown.cancel();
        let name = self.next().await;
        tracing::warn!(
            signal = name,
            "second signal while shutting down: exiting now"
        );
        remove_pid_file(&pid_path, std::process::id() as i32);
        std::process::exit(1);
    }
}

/// The running master's pid file: created when it starts, removed when it ends.
struct PidFile {
    path: PathBuf,
    pid: i32,
}

impl PidFile {
    /// Writes this process's id; refuses when the file names a live process, replaces a
    /// stale one.
    fn create(basedir: &Path) -> anyhow::Result<PidFile> {
        let path = basedir.join(PID_FILE);
        let pid = std::process::id() as i32;
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    writeln!(file, "{pid}")
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    return Ok(PidFile { path, pid });
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    if let Some(other) = read_pid(&path).filter(|&other| process_alive(other)) {
                        bail!(
                            "the master in {} is already running (pid {other})",
                            basedir.display()
                        );
                    }
                    std::fs::remove_file(&path)
                        .with_context(|| format!("cannot remove stale {}", path.display()))?;
                }
                Err(error) => {
                    return Err(error).with_context(|| format!("cannot create {}", path.display()))
                }
            }
        }
        bail!("{} keeps reappearing", path.display())
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        remove_pid_file(&self.path, self.pid);
    }
}

/// Removes a pid file if it still names `pid` (a newer master may have replaced it).
fn remove_pid_file(path: &Path, pid: i32) {
    if read_pid(path) == Some(pid) {
        let _ = std::fs::remove_file(path);
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The pid of the master running in `basedir`, if its pid file names a live process.
fn running_pid(basedir: &Path) -> Option<i32> {
    read_pid(&basedir.join(PID_FILE)).filter(|&pid| process_alive(pid))
}

/// Whether `pid` is a process that has not exited. A zombie (exited, not yet reaped by its
/// parent, as happens to daemons under an init that does not reap) counts as gone.
fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    // /proc/PID/stat: "PID (COMMAND) STATE ...", where COMMAND may hold spaces and ')'.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false)
}

/// A pipe whose ends are closed on exec, so build steps the master runs do not hold them.
fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors, which are then owned by the Files.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nothing else.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// The daemon's channel to the command that started it; used once, then closed.
struct Report(Mutex<Option<File>>);

impl Report {
    fn send(&self, message: &str) {
        let mut pipe = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(mut file) = pipe.take() {
            // The starter may have given up waiting; nothing more to do then.
            let _ = file.write_all(message.as_bytes());
        }
    }

    fn ready(&self) {
        self.send(&format!("ok {}", std::process::id()));
    }

    fn failed(&self, error: &str) {
        self.send(&format!("error\n{error}"));
    }
}

/// Reports the daemon ready when the master logs that it has started.
struct ReadyOnStart(Arc<Report>);

impl<S: Subscriber> Layer<S> for ReadyOnStart {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut message = MessageText(String::new());
        event.record(&mut message);
        if event.metadata().target() == MASTER_TARGET && message.0 == MASTER_STARTED {
            self.0.ready();
        }
    }
}

/// Collects an event's message.
struct MessageText(String);

impl Visit for MessageText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_owned();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_is_refused_while_its_process_lives_and_replaced_when_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PID_FILE);
        // Our own process is alive: a pid file naming it means a running master.
        std::fs::write(&path, format!("{}\n", std::process::id())).unwrap();
        let error = PidFile::create(dir.path()).err().unwrap();
        assert!(error.to_string().contains("already running"), "{error}");
        // A process that has exited and been reaped is not.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id() as i32;
        child.wait().unwrap();
        assert!(!process_alive(dead));
        std::fs::write(&path, format!("{dead}\n")).unwrap();
        let pid_file = PidFile::create(dir.path()).unwrap();
        assert_eq!(read_pid(&path), Some(std::process::id() as i32));
        drop(pid_file);
        assert!(!path.exists());
    }
}
