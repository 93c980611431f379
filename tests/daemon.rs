//! `moonbot start`, `stop` and `restart` on real processes: the daemon, its pid file, its
//! log and its database, signals, and the errors a user sees.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod support;

const MOONBOT: &str = env!("CARGO_BIN_EXE_moonbot");
const TIMEOUT: Duration = Duration::from_secs(60);

/// A master with no status target, so tests running at once never fight for a port.
const CONFIG: &str = r#"
local c = BuildmasterConfig
c['workers']:append(worker.LocalWorker("local"))
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{ command = { "echo", "hello" } })
c['builders']:append(util.BuilderConfig{ name = "hello", workernames = { "local" }, factory = f })
c['schedulers']:append(schedulers.ForceScheduler{ name = "force", builderNames = { "hello" } })
"#;

/// A base directory made by `create-master`, with [`CONFIG`]. Dropping it kills any master
/// still running there, so a failed test leaves no daemon behind.
struct MasterDir {
    dir: tempfile::TempDir,
}

impl MasterDir {
    fn new() -> MasterDir {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterDir { dir };
        let out = master.moonbot(&["create-master"]);
        assert!(out.status.success(), "create-master: {}", text(&out.stderr));
        std::fs::write(master.path().join("master.cfg.lua"), CONFIG).unwrap();
        master
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// Runs `moonbot ARGS... DIR` to its end.
    fn moonbot(&self, args: &[&str]) -> Output {
        self.moonbot_logging(args, "info")
    }

    /// Runs `moonbot ARGS... DIR` with `MOONBOT_LOG` set to `filter`.
    fn moonbot_logging(&self, args: &[&str], filter: &str) -> Output {
        let mut command = Command::new(MOONBOT);
        command
            .args(args)
            .arg(self.path())
            .env("MOONBOT_LOG", filter);
        run(command)
    }

    fn pid(&self) -> i32 {
        let text = std::fs::read_to_string(self.file("moonbot.pid")).expect("moonbot.pid");
        text.trim().parse().expect("a pid in moonbot.pid")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.file("moonbot.log")).unwrap_or_default()
    }

    fn start(&self) -> i32 {
        let out = self.moonbot(&["start"]);
        assert!(
            out.status.success(),
            "start failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let pid = self.pid();
        assert!(
            text(&out.stdout).contains(&format!("pid {pid}")),
            "{}",
            text(&out.stdout)
        );
        pid
    }
}

impl Drop for MasterDir {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(self.file("moonbot.pid"))
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
        {
            if alive(pid) {
                // SAFETY: kill has no memory effects.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Runs a command to its end, under [`TIMEOUT`].
fn run(mut command: Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait_with_output()));
    match receiver.recv_timeout(TIMEOUT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            // SAFETY: kill has no memory effects.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{command:?} did not finish in {TIMEOUT:?}");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether a process exists and has not exited (a zombie has: the daemon's parent is init,
/// which may reap it late).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').unwrap().1.split_whitespace().next();
            state != Some("Z")
        }
        Err(_) => false,
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn start_runs_a_detached_daemon_and_stop_ends_it() {
    let master = MasterDir::new();
    let pid = master.start();
    assert!(alive(pid), "the daemon {pid} is not running");
    // SAFETY: getsid only reads.
    let (daemon_session, our_session) = unsafe { (libc::getsid(pid), libc::getsid(0)) };
    assert_ne!(
        daemon_session, our_session,
        "the daemon has its own session"
    );
    let log = master.log();
    assert!(log.contains("INFO master started"), "{log}");
    assert!(log.contains(&format!("pid={pid}")), "{log}");
    assert!(master.file("state.sqlite").is_file());

    let out = master.moonbot(&["stop"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("master stopped (pid {pid})")
    );
    assert!(!alive(pid), "the daemon {pid} still runs after stop");
    assert!(!master.file("moonbot.pid").exists());
    let log = master.log();
    assert!(log.contains("shutting down signal=\"SIGTERM\""), "{log}");
    assert!(log.contains("INFO master stopped"), "{log}");
}

/// At most the frames of a stop's own writes (the master's row): anything more is log the
/// next start reads back before its first query.
const STOP_LOG_MAX: u64 = 32 + 4 * (24 + 4096);

#[test]
fn a_stopped_master_leaves_a_write_ahead_log_of_its_stop_alone_for_its_next_start_to_append_to() {
    let master = MasterDir::new();
    let log = master.file("state.sqlite-wal");
    for _ in 0..2 {
        let pid = master.start();
        assert!(log.exists(), "the running master writes through its log");
        let out = master.moonbot(&["stop"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(!alive(pid));
        // Kept, or the next start's first write begins a new log and syncs it to disk.
        let left = std::fs::metadata(&log).map_or(0, |m| m.len());
        assert!(
            (1..=STOP_LOG_MAX).contains(&left),
            "{} is left with {left} bytes",
            log.display()
        );
    }
    assert!(master.log().contains("INFO master started"));
}

#[test]
fn start_with_a_broken_config_prints_its_errors_and_fails() {
    let master = MasterDir::new();
    std::fs::write(
        master.file("master.cfg.lua"),
        "local c = BuildmasterConfig\nc['workers']:append(worker.LocalWorker('w', {bogus = 1}))\n",
    )
    .unwrap();
    let out = master.moonbot(&["start"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("master.cfg.lua:2: LocalWorker: unknown option 'bogus'"),
        "{stderr}"
    );
    assert!(!master.file("moonbot.pid").exists());
    assert!(master.log().contains("ERROR the master failed"));
}

#[test]
fn an_option_the_master_does_not_apply_is_a_checkconfig_warning_and_start_refuses_it() {
    let master = MasterDir::new();
    std::fs::write(
        master.file("master.cfg.lua"),
        format!(
            "{CONFIG}c['status']:append(status.GitHubStatusPush{{token = 't',\n\
             verify = false}})\n"
        ),
    )
    .unwrap();
    let warning = "master.cfg.lua:8: GitHubStatusPush: option 'verify' is not implemented yet";
    let check = master.moonbot(&["checkconfig"]);
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(
        text(&check.stderr).contains(&format!("warning: {warning}")),
        "{}",
        text(&check.stderr)
    );
    let out = master.moonbot(&["start"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(warning), "{stderr}");
    assert!(!master.file("moonbot.pid").exists());
}

#[test]
fn start_refuses_while_the_master_runs() {
    let master = MasterDir::new();
    let pid = master.start();
    let out = master.moonbot(&["start"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("already running (pid {pid})")),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(master.pid(), pid);
    assert!(alive(pid));
    assert!(master.moonbot(&["stop"]).status.success());
    assert!(!alive(pid));
}

#[test]
fn nodaemon_stays_in_the_foreground_and_exits_cleanly_on_sigterm() {
    let master = MasterDir::new();
    let mut child = Command::new(MOONBOT)
        .args(["start", "--nodaemon"])
        .arg(master.path())
        .env("MOONBOT_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (sender, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|line: &String| line.contains("master started"))
    {
        match lines.recv_timeout(TIMEOUT) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no 'master started' on stderr; got {seen:?}");
            }
        }
    }
    let pid = child.id() as i32;
    assert_eq!(
        master.pid(),
        pid,
        "the foreground master writes its pid file"
    );
    assert!(
        !master.file("moonbot.log").exists(),
        "it logs to stderr only"
    );

    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut status = None;
    wait_until("the foreground master exits", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(0));
    assert!(!master.file("moonbot.pid").exists());
    let rest: Vec<String> = lines.iter().collect();
    assert!(
        rest.iter().any(|line| line.contains("master stopped")),
        "{rest:?}"
    );
}

#[test]
fn restart_replaces_the_running_master() {
    let master = MasterDir::new();
    let first = master.start();
    let out = master.moonbot(&["restart"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let second = master.pid();
    assert_ne!(first, second);
    assert!(!alive(first), "the old master {first} still runs");
    assert!(alive(second), "the new master {second} is not running");
    assert!(master.moonbot(&["stop"]).status.success());
    assert!(!alive(second));
}

#[test]
fn stop_without_a_running_master_clears_a_stale_pid_file() {
    let master = MasterDir::new();
    let out = master.moonbot(&["stop"]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("master not running"),
        "{}",
        text(&out.stdout)
    );
    // A master killed without cleaning up left its pid file; the process is gone.
    let mut dead = Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    std::fs::write(master.file("moonbot.pid"), format!("{pid}\n")).unwrap();
    let out = master.moonbot(&["stop"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("master not running"));
    assert!(!master.file("moonbot.pid").exists());
    // And start then works.
    let pid = master.start();
    assert!(master.moonbot(&["stop"]).status.success());
    assert!(!alive(pid));
}

#[test]
fn moonbot_log_filters_the_log_without_hiding_readiness() {
    let master = MasterDir::new();
    let out = master.moonbot_logging(&["start"], "nonsense=[");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("invalid MOONBOT_LOG"),
        "{}",
        text(&out.stderr)
    );
    assert!(!master.file("moonbot.pid").exists());

    // The start line is below the filter, yet `start` still sees the master come up.
    let out = master.moonbot_logging(&["start"], "warn");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid = master.pid();
    assert!(master.moonbot(&["stop"]).status.success());
    assert!(!alive(pid));
    assert!(!master.log().contains("INFO"), "{}", master.log());
}

/// Every live (not zombie) process: its pid, parent and process group, from /proc.
fn processes() -> Vec<(i32, i32, i32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command name: state, ppid, pgrp.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        if fields[0] != "Z" {
            found.push((pid, fields[1].parse().unwrap(), fields[2].parse().unwrap()));
        }
    }
    found
}

fn group_members(pgid: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|&(_, _, group)| group == pgid)
        .map(|(pid, _, _)| pid)
        .collect()
}

/// The master's step watcher (`process/lifeline.rs`): its child running the watcher script.
fn watcher_of(master: i32) -> Option<i32> {
    processes().into_iter().find_map(|(pid, parent, _)| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        (parent == master && String::from_utf8_lossy(&cmdline).contains("trap '' HUP"))
            .then_some(pid)
    })
}

/// Kills a process group when dropped, so a failed test leaves no step running.
struct KillGroup(i32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if self.0 > 0 {
            // SAFETY: kill has no memory effects.
            unsafe { libc::kill(-self.0, libc::SIGKILL) };
        }
    }
}

/// Starts `moonbot start --nodaemon` on a config whose one builder runs `steps` (Lua step
/// constructors), with one build of it queued.
fn master_building(master: &MasterDir, steps: &str) -> std::process::Child {
    let config = format!(
        r#"
local c = BuildmasterConfig
c['workers']:append(worker.LocalWorker("local"))
local f = util.BuildFactory()
{steps}
c['builders']:append(util.BuilderConfig{{ name = "slow", workernames = {{ "local" }}, factory = f }})
"#
    );
    std::fs::write(master.file("master.cfg.lua"), config).unwrap();
    // The first start makes the database; a build is then queued as a scheduler would.
    master.start();
    assert!(master.moonbot(&["stop"]).status.success());
    support::sql(
        master.path(),
        "INSERT INTO buildsets (reason, submitted_at, complete, scheduler) VALUES ('t', 0, 0, 't')",
    );
    support::sql(
        master.path(),
        "INSERT INTO buildrequests (buildsetid, builderid, priority, complete, submitted_at, \
         waited_for) VALUES (1, 1, 0, 0, 0, 0)",
    );
    Command::new(MOONBOT)
        .args(["start", "--nodaemon"])
        .arg(master.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The step that writes its process group to `pgid_file` and leaves a child in the
/// background, and the group once it runs.
fn slow_step(pgid_file: &Path) -> String {
    format!(
        r#"f:addStep(steps.ShellCommand{{ command = "echo $$ > {}; sleep 300 & sleep 300" }})"#,
        pgid_file.display()
    )
}

fn wait_for_slow_step(pgid_file: &Path) -> i32 {
    let mut pgid = 0;
    wait_until("the step runs with a child in the background", || {
        pgid = std::fs::read_to_string(pgid_file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        pgid > 0 && group_members(pgid).len() >= 2
    });
    pgid
}

#[test]
fn a_step_and_its_children_end_when_the_master_is_killed() {
    let master = MasterDir::new();
    let pgid_file = master.file("step.pgid");
    let mut child = master_building(&master, &slow_step(&pgid_file));
    let pgid = wait_for_slow_step(&pgid_file);
    let _cleanup = KillGroup(pgid);
    assert_ne!(pgid, child.id() as i32, "the step has its own group");

    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    wait_until("no process of the step is left", || {
        group_members(pgid).is_empty()
    });
}

#[test]
fn a_step_watcher_that_was_killed_is_replaced_and_still_ends_the_steps() {
    let master = MasterDir::new();
    let (started, go) = (master.file("started"), master.file("go"));
    let pgid_file = master.file("step.pgid");
    let first = format!(
        r#"f:addStep(steps.ShellCommand{{ command = "touch {}; while [ ! -e {} ]; do sleep 0.05; done" }})"#,
        started.display(),
        go.display()
    );
    let mut child = master_building(&master, &format!("{first}\n{}", slow_step(&pgid_file)));
    let pid = child.id() as i32;
    wait_until("the first step runs", || started.exists());
    let old = watcher_of(pid).expect("the master runs a step watcher");
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(old, libc::SIGKILL) };
    wait_until("the watcher is gone", || watcher_of(pid).is_none());
    std::fs::write(&go, "").unwrap();

    let pgid = wait_for_slow_step(&pgid_file);
    let _cleanup = KillGroup(pgid);
    assert!(
        watcher_of(pid).is_some_and(|new| new != old),
        "a new watcher runs"
    );
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    child.wait().unwrap();
    wait_until("no process of the step is left", || {
        group_members(pgid).is_empty()
    });
}

/// Every C math function the binary defines itself (`src/math.rs`), called through Lua and
/// checked against glibc's answers: one wired to the wrong function, or with its arguments
/// swapped, fails the evaluation.
const MATH_CHECKS: &str = r#"
local function near(name, got, want)
  if math.abs(got - want) > 4e-16 * math.abs(want) then
    error(string.format("%s: %.17g, not %.17g", name, got, want))
  end
end
near("acos", math.acos(0.5), 1.0471975511965979)
near("asin", math.asin(0.5), 0.5235987755982989)
near("atan2", math.atan(1, 2), 0.4636476090008061)
near("cos", math.cos(1), 0.5403023058681398)
near("sin", math.sin(1), 0.8414709848078965)
near("tan", math.tan(1), 1.5574077246549023)
near("cosh", math.cosh(1), 1.5430806348152437)
near("sinh", math.sinh(1), 1.1752011936438014)
near("tanh", math.tanh(0.5), 0.46211715726000974)
near("exp", math.exp(1), 2.718281828459045)
near("log", math.log(10), 2.302585092994046)
near("log2", math.log(10, 2), 3.321928094887362)
near("log10", math.log(2, 10), 0.3010299956639812)
near("pow", 2 ^ 0.5, 1.4142135623730951)
local fraction, power = math.frexp(48)
near("frexp", fraction, 0.75)
assert(power == 6, "frexp: exponent " .. power .. ", not 6")
near("ldexp", math.ldexp(0.75, 6), 48)
"#;

#[test]
fn lua_math_answers_as_glibc_did_with_the_binary_s_own_math_functions() {
    let master = MasterDir::new();
    std::fs::write(master.file("master.cfg.lua"), MATH_CHECKS).unwrap();
    let out = master.moonbot(&["checkconfig"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn the_binary_maps_no_libm_for_its_few_math_functions() {
    // With this variable set, glibc's loader lists the libraries it would map and exits.
    let mut command = Command::new(MOONBOT);
    command.env("LD_TRACE_LOADED_OBJECTS", "1");
    let listing = text(&run(command).stdout);
    assert!(listing.contains("libc.so"), "{listing}");
    assert!(!listing.contains("libm.so"), "{listing}");
}
