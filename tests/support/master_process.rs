//! A master running as its own process (`moonbot start --nodaemon`), for tests that kill it.
//!
//! Include it with `#[path = "support/master_process.rs"] mod master_process;`.
// Each test file uses part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts the master of `dir` in the foreground, its log in `dir/stderr.log` (appended to,
/// so a restart keeps what the killed one said).
pub fn spawn_master(dir: &Path, env: &[(&str, &str)]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("stderr.log"))
        .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_moonbot"));
    command
        .args(["start", "--nodaemon"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .env("MOONBOT_LOG", "info");
    for (name, value) in env {
        command.env(name, value);
    }
    command.spawn().unwrap()
}

/// kill -9, and the zombie reaped.
pub fn kill(mut master: Child) {
    master.kill().unwrap();
    master.wait().unwrap();
}
