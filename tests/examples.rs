//! The sample config and every example must pass `moonbot checkconfig`, run as users run it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn checkconfig(path: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_moonbot"))
        .arg("checkconfig")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn sample_config_is_good() {
    let (ok, stdout, stderr) = checkconfig(&root().join("master.cfg.lua"));
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("Config file is good!\n1 builders, 2 schedulers, 1 status targets"),
        "{stdout}"
    );
}

#[test]
fn every_example_is_good() {
    let mut examples: Vec<_> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    examples.sort();
    let examples: Vec<_> = examples
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "lua"))
        .collect();
    assert!(examples.len() >= 10, "only {} examples", examples.len());
    for example in examples {
        let (ok, stdout, stderr) = checkconfig(&example);
        assert!(ok, "{}: {stderr}", example.display());
        assert!(
            stdout.starts_with("Config file is good!"),
            "{}: {stdout}",
            example.display()
        );
    }
}

#[test]
fn create_master_writes_a_config_that_checks() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("m");
    let out = Command::new(env!("CARGO_BIN_EXE_moonbot"))
        .arg("create-master")
        .arg(&base)
        .output()
        .unwrap();
    assert!(out.status.success());
    let (ok, stdout, stderr) = checkconfig(&base);
    assert!(
        ok && stdout.starts_with("Config file is good!"),
        "{stdout}{stderr}"
    );
    // A second create-master must not overwrite the user's file.
    let again = Command::new(env!("CARGO_BIN_EXE_moonbot"))
        .arg("create-master")
        .arg(&base)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn checkconfig_lists_every_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("master.cfg.lua");
    std::fs::write(
        &file,
        "c = BuildmasterConfig\nc['title'] = 5\nc['buildbotURL'] = 'http://x'\nc['tittle'] = 'x'\nc['lua'] = {timeout=0}\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = checkconfig(&file);
    assert!(!ok, "{stdout}");
    assert_eq!(
        stderr,
        "master.cfg.lua:2: c['title'] must be a string, got number 5\n\
         master.cfg.lua:3: c['buildbotURL'] must end with '/' (got 'http://x')\n\
         master.cfg.lua:4: unknown BuildmasterConfig key 'tittle' (did you mean 'title'?)\n\
         master.cfg.lua:5: c['lua']['timeout'] must be from 0 to 3600 seconds, got 0\n"
    );
}
