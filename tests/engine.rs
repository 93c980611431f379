//! The build engine against a real master: real SQLite, real processes, real directories.

use std::path::Path;
use std::time::Duration;

use moonbot::data::{publish, Resource};
use moonbot::db::{BuildsetSpec, SourceStampSpec};
use moonbot::master::Master;
use moonbot::model::{BuildResult, Properties};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

async fn start(dir: &Path, config: &str) -> Master {
    std::fs::write(dir.join("master.cfg.lua"), config).unwrap();
    Master::start(dir, CancellationToken::new()).await.unwrap()
}

/// Submits a buildset for the named builders as a scheduler would.
async fn submit(master: &Master, builders: &[&str], properties: &[(&str, Value)]) -> i64 {
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
async fn complete(master: &Master, bsid: i64) -> BuildResult {
    let db = &master.context.db;
    tokio::time::timeout(WAIT, async {
        loop {
            let row: (i64, Option<i64>) =
                sqlx::query_as("SELECT complete, results FROM buildsets WHERE id = $1")
                    .bind(bsid)
                    .fetch_one(&db.pool)
                    .await
                    .unwrap();
            if row.0 == 1 {
                return BuildResult::from_code(row.1.unwrap()).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the buildset completes")
}

const PROPERTY_STEPS: &str = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local") }
c['properties'] = { project_name = "demo" }
local f = util.BuildFactory()
f:addStep(steps.SetProperty{property="greeting", value=util.Interpolate("hello %(prop:who)s on %(prop:buildername)s")})
f:addStep(steps.MakeDirectory{dir="made"})
f:addStep(steps.SetProperty{property="skipped", value="yes", doStepIf=function(step) return step:getProperty("who") == "nobody" end})
c['builders'] = { util.BuilderConfig{name="props", workernames={"local"}, factory=f, properties={level=3}} }
c['schedulers'] = { schedulers.ForceScheduler{name="force", builderNames={"props"}} }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_runs_its_steps_and_records_properties_with_sources() {
    let dir = tempfile::tempdir().unwrap();
    let master = start(dir.path(), PROPERTY_STEPS).await;
    let bsid = submit(&master, &["props"], &[("who", Value::from("alice"))]).await;
    assert_eq!(complete(&master, bsid).await, BuildResult::Success);

    let db = &master.context.db;
    let (buildid, number): (i64, i64) = sqlx::query_as("SELECT id, number FROM builds")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(number, 1);
    let properties = db.build_properties(buildid).await.unwrap();
    assert_eq!(
        properties.get("greeting"),
        Some(&Value::from("hello alice on props"))
    );
    assert_eq!(properties.source("greeting"), Some("SetProperty Step"));
    assert_eq!(properties.get("level"), Some(&Value::from(3)));
    assert_eq!(properties.source("level"), Some("Builder"));
    assert_eq!(properties.get("project_name"), Some(&Value::from("demo")));
    assert_eq!(properties.get("workername"), Some(&Value::from("local")));
    assert_eq!(properties.get("branch"), Some(&Value::from("main")));
    assert!(!properties.has("skipped"), "doStepIf false skips the step");
    assert!(dir.path().join("workers/local/props/made").is_dir());

    let steps: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, results FROM steps ORDER BY number")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        steps,
        vec![
            ("SetProperty".into(), 0),
            ("MakeDirectory".into(), 0),
            ("SetProperty".into(), 3)
        ]
    );
    let state: String = sqlx::query_scalar("SELECT state_string FROM builds")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(state, "build successful");

    let second = submit(&master, &["props"], &[]).await;
    complete(&master, second).await;
    let numbers: Vec<i64> = sqlx::query_scalar("SELECT number FROM builds ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(numbers, vec![1, 2]);
    master.context.shutdown.cancel();
    master.wait().await.unwrap();
}
