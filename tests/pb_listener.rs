//! PBListener and `moonbot statuslog`: the real binary as master and as client.

#[path = "support/master_process.rs"]
mod master_process;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use master_process::{kill, spawn_master};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, web: u16, pb: u16) {
    let config = format!(
        r#"
local c = BuildmasterConfig
c['www'] = {{port={web}}}
c['workers'] = {{worker.LocalWorker('local')}}
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{{name='run', command={{'echo', 'hi'}}}})
c['builders'] = {{util.BuilderConfig{{name='b', workernames={{'local'}}, factory=f}}}}
c['schedulers'] = {{schedulers.ForceScheduler{{name='force', builderNames={{'b'}}}}}}
c['status'] = {{status.PBListener{{port='tcp:{pb}:interface=127.0.0.1', user='alice', passwd='s3cret'}}}}
"#
    );
    std::fs::write(dir.join("master.cfg.lua"), config).unwrap();
}

/// Forces a build through the web server's JSON-RPC, retrying while the master starts.
fn force(web: u16) {
    let body = json!({"jsonrpc": "2.0", "method": "force", "id": 1, "params": {"builderid": 1}});
    let url = format!("http://127.0.0.1:{web}/api/v2/forceschedulers/force");
    let client = reqwest::Client::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = runtime.block_on(client.post(&url).json(&body).send());
        if answer.is_ok_and(|answer| answer.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "the master never took the force");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `moonbot statuslog` with its output on a channel: stdout lines as they are, stderr lines
/// prefixed with `stderr: `.
fn statuslog(pb: u16, auth: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moonbot"))
        .args([
            "statuslog",
            "--master",
            &format!("127.0.0.1:{pb}"),
            "--auth",
            auth,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, receiver) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let errors = lines.clone();
    std::thread::spawn(move || forward(stdout, "", lines));
    std::thread::spawn(move || forward(stderr, "stderr: ", errors));
    (child, receiver)
}

fn forward(from: impl std::io::Read, prefix: &str, to: mpsc::Sender<String>) {
    for line in BufReader::new(from).lines() {
        let Ok(line) = line else { return };
        if to.send(format!("{prefix}{line}")).is_err() {
            return;
        }
    }
}

/// Reads lines until statuslog says it is connected (and so sees every later event).
fn wait_connected(lines: &mpsc::Receiver<String>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).expect("statuslog connects");
        if line.starts_with("stderr: statuslog: connected") {
            return;
        }
    }
}

/// Reads lines until a build's `new` and then its `finished` event went by; answers the
/// build's key.
fn wait_for_build(lines: &mpsc::Receiver<String>) -> String {
    let deadline = Instant::now() + WAIT;
    let mut started: Option<String> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("a build's events are printed");
        let key = line.split(' ').next().unwrap_or("");
        let parts: Vec<&str> = key.split('/').collect();
        if let ["builds", id, event] = parts[..] {
            match (event, &started) {
                ("new", _) => started = Some(id.to_string()),
                ("finished", Some(new)) if new == id => return key.to_string(),
                _ => {}
            }
        }
    }
}

#[test]
fn statuslog_prints_a_forced_build_and_again_after_the_master_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (web, pb) = (free_port(), free_port());
    write_config(dir.path(), web, pb);
    let master = spawn_master(dir.path(), &[]);
    let (mut client, lines) = statuslog(pb, "alice:s3cret");
    wait_connected(&lines);
    force(web);
    let first = wait_for_build(&lines);
    kill(master);
    let master = spawn_master(dir.path(), &[]);
    wait_connected(&lines);
    force(web);
    let second = wait_for_build(&lines);
    assert_ne!(first, second);
    kill(master);
    client.kill().unwrap();
    client.wait().unwrap();
}

#[test]
fn statuslog_with_a_wrong_password_is_refused_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (web, pb) = (free_port(), free_port());
    write_config(dir.path(), web, pb);
    let master = spawn_master(dir.path(), &[]);
    // Wait until the master listens: its force answers then.
    force(web);
    let output = Command::new(env!("CARGO_BIN_EXE_moonbot"))
        .args([
            "statuslog",
            "--master",
            &format!("127.0.0.1:{pb}"),
            "--auth",
            "alice:s3cre",
        ])
        .output()
        .unwrap();
    kill(master);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("wrong user or password"), "{stderr}");
}
