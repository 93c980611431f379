//! What the integration tests against a running master share: start one on a config, queue
//! builds as a scheduler would, wait for them; golden files.
// Each test file uses part of this module.
#![allow(dead_code)]

pub mod golden;

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::Duration;

use moonbot::data::{publish, Resource};
use moonbot::db::{BuildsetSpec, SourceStampSpec};
use moonbot::master::Master;
use moonbot::model::{BuildResult, Properties};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The longest any test waits for a build.
pub const WAIT: Duration = Duration::from_secs(30);

/// Writes `config` as the master's config and starts the master in this process.
pub async fn start(dir: &Path, config: &str) -> Master {
    std::fs::write(dir.join("master.cfg.lua"), config).unwrap();
    Master::start(dir, CancellationToken::new()).await.unwrap()
}

/// A master running in this process on a temporary directory of its own. Dropping it stops
/// the master, waits for it (on a multi-threaded runtime, as the tests use) and fails the
/// test unless it stopped cleanly, then removes the directory.
pub struct TestMaster {
    master: Option<Master>,
    dir: tempfile::TempDir,
}

impl TestMaster {
    pub async fn start(config: &str) -> TestMaster {
        TestMaster::start_in(tempfile::tempdir().unwrap(), config).await
    }

    /// Starts in a directory the test has already filled (a repository, files to upload).
    pub async fn start_in(dir: tempfile::TempDir, config: &str) -> TestMaster {
        let master = start(dir.path(), config).await;
        TestMaster {
            master: Some(master),
            dir,
        }
    }

    /// The base directory: `master.cfg.lua`, the database, the workers' directories.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Deref for TestMaster {
    type Target = Master;

    fn deref(&self) -> &Master {
        self.master.as_ref().unwrap()
    }
}

impl DerefMut for TestMaster {
    fn deref_mut(&mut self) -> &mut Master {
        self.master.as_mut().unwrap()
    }
}

impl Drop for TestMaster {
    fn drop(&mut self) {
        let Some(master) = self.master.take() else {
            return;
        };
        master.context.shutdown.cancel();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        match runtime.runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => {
                let stopped = tokio::task::block_in_place(|| runtime.block_on(master.wait()));
                if !std::thread::panicking() {
                    stopped.expect("the master stops cleanly");
                }
            }
            // A single-threaded runtime cannot wait here: the master ends with it.
            _ => drop(runtime.spawn(master.wait())),
        }
    }
}

/// Submits a buildset for the named builders (branch `main`) as a scheduler would.
pub async fn submit(master: &Master, builders: &[&str], properties: &[(&str, Value)]) -> i64 {
    let ctx = &master.context;
    let mut ids = Vec::new();
    for name in builders {
        ids.push(ctx.db.builder_id(name).await.unwrap());
    }
    let spec = BuildsetSpec {
        reason: "test".into(),
        scheduler: "test".into(),
        new_sourcestamps: vec![SourceStampSpec {
            branch: Some("main".into()),
            ..Default::default()
        }],
        properties: Properties::from_pairs(properties.iter().map(|(k, v)| (*k, v.clone())), "Test"),
        builder_ids: ids,
        ..Default::default()
    };
    let (bsid, brids) = ctx.db.add_buildset(&spec).await.unwrap();
    for brid in brids.values() {
        publish(&ctx.db, &ctx.bus, Resource::BuildRequest(*brid), "new")
            .await
            .unwrap();
    }
    bsid
}

/// Waits for a buildset to complete and returns its result.
pub async fn complete(master: &Master, bsid: i64) -> BuildResult {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(result) = master.context.db.buildset_result(bsid).await.unwrap() {
                return result;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the buildset completes")
}

/// The JSON a GET of `url` answers (a REST resource of a running master).
pub async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// Runs one SQL statement on the SQLite database of a master running as its own process
/// (through Python's sqlite3, so the test holds no connection of its own); the rows as JSON.
pub fn sql(dir: &Path, query: &str) -> Vec<Value> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sqlite3,sys,json\nwith sqlite3.connect(sys.argv[1]) as db: print(json.dumps(db.execute(sys.argv[2]).fetchall()))"])
        .arg(dir.join("state.sqlite"))
        .arg(query)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{query}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
