//! The build engine against a real master: real SQLite, real processes, real directories.

use std::path::Path;
use std::time::Duration;

use moonbot::master::Master;
use moonbot::model::BuildResult;
use serde_json::Value;

mod support;

use support::{complete, start, submit, TestMaster, WAIT};

const PROPERTY_STEPS: &str = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local") }
c['properties'] = { project_name = "demo" }
local f = util.BuildFactory()
f:addStep(steps.SetProperty{property="greeting", value=util.Interpolate("hello %(prop:who)s on %(prop:buildername)s")})
f:addStep(steps.MakeDirectory{dir="made"})
f:addStep(steps.SetProperty{property="skipped", value="yes", doStepIf=function(step) return step:getProperty("who") == "nobody" end})
c['builders'] = { util.BuilderConfig{name="props", workernames={"local"}, factory=f, properties={level=3},
  defaultProperties={level=9, fallback="d"}} }
c['schedulers'] = { schedulers.ForceScheduler{name="force", builderNames={"props"}} }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_runs_its_steps_and_records_properties_with_sources() {
    let dir = tempfile::tempdir().unwrap();
    let master = TestMaster::start_in(dir, PROPERTY_STEPS).await;
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
    assert_eq!(properties.get("fallback"), Some(&Value::from("d")));
    assert_eq!(properties.get("project_name"), Some(&Value::from("demo")));
    assert_eq!(properties.get("workername"), Some(&Value::from("local")));
    assert_eq!(properties.get("branch"), Some(&Value::from("main")));
    assert!(!properties.has("skipped"), "doStepIf false skips the step");
    assert!(master.dir().join("workers/local/props/made").is_dir());

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
}

/// Runs `git` in `dir`, failing the test if it fails.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=Alice",
            "-c",
            "user.email=alice@example.org",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn log_text(master: &Master, step: &str, log: &str) -> String {
    let db = &master.context.db;
    let logid: i64 = sqlx::query_scalar(
        "SELECT l.id FROM logs l JOIN steps s ON s.id = l.stepid WHERE s.name = $1 AND l.name = $2 ORDER BY l.id DESC LIMIT 1",
    )
    .bind(step)
    .bind(log)
    .fetch_one(&db.pool)
    .await
    .unwrap_or_else(|_| panic!("no log {log} of step {step}"));
    db.log_lines(logid, 0, i64::MAX).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_steps_run_real_processes_and_stream_their_output() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "hello\n").unwrap();
    git(&repo, &["add", "README"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let head = git(&repo, &["rev-parse", "HEAD"]);
    let config = format!(
        r#"
local c = BuildmasterConfig
c['workers'] = {{ worker.LocalWorker("local") }}
local f = util.BuildFactory()
f:addStep(steps.Git{{repourl="{repo}", mode="full", method="fresh"}})
f:addStep(steps.ShellCommand{{name="hello", command={{"sh", "-c", util.Interpolate("cat README; echo to-err >&2; echo %(prop:buildername)s")}}}})
f:addStep(steps.Compile{{command="echo 'a.c:1: warning: unused'; echo ok"}})
f:addStep(steps.Test{{command="echo 'test result: ok. 4 passed; 0 failed; 1 ignored'"}})
f:addStep(steps.SetPropertyFromCommand{{command="printf 'v1.2\n'", property="version"}})
f:addStep(steps.SetPropertyFromCommand{{name="extract", command="echo x=1; echo oops >&2", extract_fn=function(rc, out, err) return {{rc=rc, out=out, err=err}} end}})
f:addStep(steps.FileUpload{{workersrc="README", masterdest="uploads/README"}})
f:addStep(steps.ShellCommand{{name="missing", command={{"no-such-command-here"}}, haltOnFailure=true}})
f:addStep(steps.ShellCommand{{name="after-halt", command="true"}})
f:addStep(steps.ShellCommand{{name="always", command="true", alwaysRun=true}})
c['builders'] = {{ util.BuilderConfig{{name="b", workernames={{"local"}}, factory=f}} }}
"#,
        repo = repo.display()
    );
    let master = TestMaster::start_in(dir, &config).await;
    let bsid = submit(&master, &["b"], &[]).await;
    assert_eq!(complete(&master, bsid).await, BuildResult::Failure);

    let db = &master.context.db;
    let steps: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, results FROM steps ORDER BY number")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let names: Vec<(&str, i64)> = steps.iter().map(|(n, r)| (n.as_str(), *r)).collect();
    assert_eq!(
        names,
        vec![
            ("git", 0),
            ("hello", 0),
            ("compile", 1),
            ("test", 0),
            ("setproperty", 0),
            ("extract", 0),
            ("upload", 0),
            ("missing", 2),
            ("always", 0)
        ]
    );
    let hello = log_text(&master, "hello", "stdio").await;
    assert!(hello.contains("\nohello\n"), "{hello}");
    assert!(hello.contains("\neto-err\n"), "{hello}");
    assert!(hello.contains("\nob\n"), "{hello}");
    assert!(hello.starts_with('h'), "the header comes first: {hello}");
    let missing = log_text(&master, "missing", "stdio").await;
    assert!(missing.contains("no-such-command-here"), "{missing}");

    let buildid: i64 = sqlx::query_scalar("SELECT id FROM builds")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let props = db.build_properties(buildid).await.unwrap();
    assert_eq!(props.get("got_revision"), Some(&Value::from(head)));
    assert_eq!(props.get("version"), Some(&Value::from("v1.2")));
    assert_eq!(props.get("warnings-count"), Some(&Value::from(1)));
    assert_eq!(props.get("tests-passed"), Some(&Value::from(4)));
    assert_eq!(props.get("rc"), Some(&Value::from(0)));
    assert_eq!(props.get("err"), Some(&Value::from("oops\n")));
    assert_eq!(
        std::fs::read_to_string(master.dir().join("uploads/README")).unwrap(),
        "hello\n"
    );
    let state: String = sqlx::query_scalar("SELECT state_string FROM builds")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(state.contains("(failed to start)"), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_sees_the_stored_build_its_logs_and_the_previous_finished_build() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local") }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{name="say", command="echo said; sleep 0.1; echo warned >&2"})
c['builders'] = { util.BuilderConfig{name="b", workernames={"local"}, factory=f} }
function describe(build)
  local step = build:getSteps()[1]
  local log = step:getLogs()[1]
  local previous = build:getPreviousBuild()
  return string.format("%s #%d %s %s [%s] prev=%s", build:getBuilder():getName(), build:getNumber(),
    step:getName(), log:getName(), log:getText(), previous and previous:getNumber() or "none")
end
"#;
    let master = TestMaster::start_in(dir, config).await;
    for _ in 0..2 {
        let bsid = submit(&master, &["b"], &[]).await;
        complete(&master, bsid).await;
    }
    let ctx = &master.context;
    let buildid: i64 = sqlx::query_scalar("SELECT id FROM builds WHERE number = 2")
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap();
    let build = moonbot::status::snapshot::build_info(&ctx.db, buildid)
        .await
        .unwrap();
    assert!(build.is_finished());
    let describe = {
        let loaded = moonbot::config::load_source("t.lua", config, master.dir()).unwrap();
        let f: mlua::Function = loaded.lua.globals().get("describe").unwrap();
        let callback = moonbot::script::Callback::new(&loaded.lua, &f).unwrap();
        ctx.script.replace_vm(loaded.lua).await.unwrap();
        callback
    };
    let text: Value = ctx
        .script
        .call(
            &describe,
            vec![moonbot::script::Arg::Build(std::sync::Arc::new(build))],
        )
        .await
        .unwrap();
    assert_eq!(text, Value::from("b #2 say stdio [said\nwarned\n] prev=1"));
}

const FLOW: &str = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local", {max_builds=2}) }
local parent = util.BuildFactory()
parent:addStep(steps.ShellCommand{name="work", command={"echo", util.Interpolate("branch=%(prop:branch)s owner=%(prop:owner)s")}})
parent:addStep(steps.Trigger{schedulerNames={"child"}, waitForFinish=true, set_properties={from_parent=util.Property("buildnumber")}})
local child = util.BuildFactory()
child:addStep(steps.ShellCommand{name="child-work", command=util.Interpolate("test %(prop:from_parent)s = 1")})
c['builders'] = {
  util.BuilderConfig{name="parent", workernames={"local"}, factory=parent},
  util.BuilderConfig{name="child", workernames={"local"}, factory=child},
}
c['schedulers'] = {
  schedulers.ForceScheduler{name="force", builderNames={"parent"}},
  schedulers.SingleBranchScheduler{name="main", change_filter=util.ChangeFilter{branch="main"}, builderNames={"parent"}},
  schedulers.Triggerable{name="child", builderNames={"child"}},
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_build_triggers_a_child_and_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let master = TestMaster::start_in(dir, FLOW).await;
    let ctx = &master.context;
    let params = serde_json::json!({"builderNames": ["parent"], "username": "bob <bob@example.org>", "reason": "try", "branch": "dev"});
    let (bsid, brids) = ctx
        .control
        .force("force", params.as_object().unwrap().clone())
        .await
        .unwrap();
    assert_eq!(brids.len(), 1);
    assert_eq!(complete(&master, bsid).await, BuildResult::Success);
    let work = log_text(&master, "work", "stdio").await;
    assert!(
        work.contains("obranch=dev owner=bob <bob@example.org>\n"),
        "{work}"
    );
    let child: (i64, Option<i64>) = sqlx::query_as(
        "SELECT b.results, s.parent_buildid FROM builds b JOIN buildrequests r ON r.id = b.buildrequestid \
         JOIN buildsets s ON s.id = r.buildsetid JOIN builders bl ON bl.id = b.builderid WHERE bl.name = 'child'",
    )
    .fetch_one(&ctx.db.pool)
    .await
    .unwrap();
    assert_eq!(child, (0, Some(1)));

    let bad = ctx
        .control
        .force("nosuch", serde_json::Map::new())
        .await
        .unwrap_err();
    assert_eq!(bad.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_main_starts_a_build_with_its_sourcestamp() {
    let dir = tempfile::tempdir().unwrap();
    let master = TestMaster::start_in(dir, FLOW).await;
    let ctx = &master.context;
    let mut events = ctx.bus.subscribe();
    let change = moonbot::db::ChangeSpec {
        author: "carol".into(),
        branch: Some("main".into()),
        revision: Some("abc123".into()),
        comments: "fix".into(),
        ..Default::default()
    };
    moonbot::changes::submit(ctx, change).await.unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.recv().await.unwrap();
            if event.key == "builds/1/finished" {
                return;
            }
        }
    })
    .await
    .expect("a build finishes");
    let buildid: i64 = sqlx::query_scalar("SELECT id FROM builds ORDER BY id LIMIT 1")
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap();
    let props = ctx.db.build_properties(buildid).await.unwrap();
    assert_eq!(props.get("revision"), Some(&Value::from("abc123")));
    assert_eq!(props.get("scheduler"), Some(&Value::from("main")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_running_build_cancels_it_and_kills_its_process() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local") }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{name="slow", command="sleep 60"})
f:addStep(steps.ShellCommand{name="never", command="true"})
c['builders'] = { util.BuilderConfig{name="slow", workernames={"local"}, factory=f} }
"#;
    let master = TestMaster::start_in(dir, config).await;
    let bsid = submit(&master, &["slow"], &[]).await;
    let ctx = &master.context;
    let buildid = tokio::time::timeout(WAIT, async {
        loop {
            let id: Option<i64> = sqlx::query_scalar("SELECT b.id FROM builds b JOIN steps s ON s.buildid = b.id WHERE s.started_at IS NOT NULL")
                .fetch_optional(&ctx.db.pool)
                .await
                .unwrap();
            if let Some(id) = id {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    ctx.control
        .stop_build(buildid, "enough".into())
        .await
        .unwrap();
    assert_eq!(complete(&master, bsid).await, BuildResult::Cancelled);
    let steps: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, results FROM steps ORDER BY number")
            .fetch_all(&ctx.db.pool)
            .await
            .unwrap();
    assert_eq!(steps, vec![("slow".to_string(), 6)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_forced_through_the_rest_api_shows_up_there_with_buildbot_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local") }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{name="hello", command={"echo", "hello"}})
c['builders'] = { util.BuilderConfig{name="runtests", workernames={"local"}, factory=f} }
c['schedulers'] = { schedulers.ForceScheduler{name="force", builderNames={"runtests"}} }
c['status'] = { status.WebStatus{http_port="tcp:0:interface=127.0.0.1", authz=util.Authz{default_action=true}} }
"#;
    let master = TestMaster::start_in(dir, config).await;
    let api = format!(
        "http://{}/api/v2",
        master.web_address.expect("a web server")
    );
    let http = reqwest::Client::new();
    let answer: Value = http
        .post(format!("{api}/forceschedulers/force"))
        .json(
            &serde_json::json!({"jsonrpc": "2.0", "method": "force", "id": 1,
            "params": {"builderid": 1, "username": "dev <dev@example.org>", "reason": "check"}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bsid = answer["result"][0]
        .as_i64()
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(complete(&master, bsid).await, BuildResult::Success);

    let builds: Value = http
        .get(format!("{api}/builders/runtests/builds?property=owner"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let build = &builds["builds"][0];
    assert_eq!(build["number"], 1);
    assert_eq!(build["results"], 0);
    assert_eq!(build["complete"], true);
    assert_eq!(build["state_string"], "build successful");
    assert_eq!(
        build["properties"]["owner"],
        serde_json::json!(["dev <dev@example.org>", "Force Build Form"])
    );
    assert_eq!(builds["meta"]["total"], 1);
    let steps: Value = http
        .get(format!("{api}/builds/1/steps"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(steps["steps"][0]["name"], "hello");
    assert_eq!(steps["steps"][0]["state_string"], "'echo hello'");
    let raw = http
        .get(format!("{api}/builds/1/steps/hello/logs/stdio/raw"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(raw.contains("\nhello\n"), "{raw}");
    let missing = http.get(format!("{api}/builds/99")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_requests_collapse_and_lua_picks_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("w1", {max_builds=1}), worker.LocalWorker("w2") }
local slow = util.BuildFactory()
slow:addStep(steps.ShellCommand{name="slow", command="sleep 0.5"})
c['builders'] = {
  util.BuilderConfig{name="busy", workernames={"w1"}, factory=slow},
  util.BuilderConfig{name="picky", workernames={"w1", "w2"}, factory=slow,
    nextWorker=function(builder, workers, request)
      for _, w in ipairs(workers) do if w.name == "w2" then return w end end
    end},
}
"#;
    let master = TestMaster::start_in(dir, config).await;
    // The first request occupies the only worker; the next three wait, and the newest
    // collapses the two before it.
    let first = submit(&master, &["busy"], &[]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiting = [
        submit(&master, &["busy"], &[]).await,
        submit(&master, &["busy"], &[]).await,
        submit(&master, &["busy"], &[]).await,
    ];
    // As in Buildbot, a buildset whose request was skipped still completes with SUCCESS:
    // the request carries the SKIPPED.
    for bsid in [first].iter().chain(&waiting) {
        complete(&master, *bsid).await;
    }
    let results: Vec<i64> = sqlx::query_scalar("SELECT results FROM buildrequests ORDER BY id")
        .fetch_all(&master.context.db.pool)
        .await
        .unwrap();
    assert_eq!(results, vec![0, 3, 3, 0]);

    let picky = submit(&master, &["picky"], &[]).await;
    complete(&master, picky).await;
    let worker: String = sqlx::query_scalar(
        "SELECT w.name FROM builds b JOIN workers w ON w.id = b.workerid JOIN builders bl ON bl.id = b.builderid WHERE bl.name = 'picky'",
    )
    .fetch_one(&master.context.db.pool)
    .await
    .unwrap();
    assert_eq!(worker, "w2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_running_build_finish_and_starts_no_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local", {max_builds=1}) }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{name="work", command="sleep 1"})
c['builders'] = { util.BuilderConfig{name="b", workernames={"local"}, factory=f, collapseRequests=false} }
"#;
    let master = start(dir.path(), config).await;
    let running = submit(&master, &["b"], &[]).await;
    let queued = submit(&master, &["b"], &[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let db = master.context.db.clone();
    master.context.shutdown.cancel();
    tokio::time::timeout(WAIT, master.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        db.buildset_result(running).await.unwrap(),
        Some(BuildResult::Success)
    );
    assert_eq!(db.buildset_result(queued).await.unwrap(), None);
    let builds: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM builds")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(builds, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_events_carry_the_log_as_the_rest_api_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local") }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{name="say", command="echo one; echo two"})
c['builders'] = { util.BuilderConfig{name="b", workernames={"local"}, factory=f} }
"#;
    let master = TestMaster::start_in(dir, config).await;
    let mut events = master.context.bus.subscribe();
    let bsid = submit(&master, &["b"], &[]).await;
    complete(&master, bsid).await;
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    let finished = seen
        .iter()
        .find(|e| e.key.ends_with("/finished"))
        .expect("a logs/N/finished event");
    let logid = finished.message["logid"].as_i64().unwrap();
    let stored = moonbot::data::builds::log(&master.context.db, logid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(finished.message, stored);
    assert!(seen.iter().any(|e| e.key == format!("logs/{logid}/append")));
    assert!(seen
        .iter()
        .any(|e| e.key.starts_with("steps/") && e.key.ends_with("/logs/stdio/new")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_s_logs_are_stored_whole_and_finished_before_the_step_is_announced_finished() {
    let dir = tempfile::tempdir().unwrap();
    // The logs' last lines and ends are written with the step's end, in its round trip.
    let config = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local") }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{name="say", command="printf 'a\\nb\\n' > out.txt; echo one; echo two",
  logfiles={out="out.txt"}})
f:addStep(steps.ShellCommand{name="last", command="echo three"})
c['builders'] = { util.BuilderConfig{name="b", workernames={"local"}, factory=f} }
"#;
    let master = TestMaster::start_in(dir, config).await;
    let mut events = master.context.bus.subscribe();
    let bsid = submit(&master, &["b"], &[]).await;
    complete(&master, bsid).await;
    let mut keys = Vec::new();
    while let Ok(event) = events.try_recv() {
        keys.push(event.key.clone());
    }
    let logs: Vec<(i64, i64, String, i64, i64)> = sqlx::query_as(
        "SELECT l.id, s.id, l.name, l.complete, l.num_lines FROM logs l \
         JOIN steps s ON s.id = l.stepid ORDER BY l.id",
    )
    .fetch_all(&master.context.db.pool)
    .await
    .unwrap();
    assert_eq!(logs.len(), 3, "{logs:?}");
    for (logid, stepid, name, complete, num_lines) in &logs {
        assert_eq!(*complete, 1, "log {name} is complete");
        let at = |key: String| keys.iter().position(|k| *k == key);
        let log_finished = at(format!("logs/{logid}/finished"))
            .unwrap_or_else(|| panic!("log {name} announced finished: {keys:?}"));
        let step_finished = at(format!("steps/{stepid}/finished"))
            .unwrap_or_else(|| panic!("step {stepid} announced finished: {keys:?}"));
        assert!(log_finished < step_finished, "{keys:?}");
        if name == "out" {
            assert_eq!(*num_lines, 2);
        }
    }
    assert_eq!(log_text(&master, "say", "out").await, "a\nb\n");
    let stdio = log_text(&master, "say", "stdio").await;
    assert!(stdio.contains("oone\notwo\n"), "{stdio}");
    assert!(log_text(&master, "last", "stdio")
        .await
        .contains("othree\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_step_that_fails_before_its_command_keeps_no_empty_stdio_log() {
    let dir = tempfile::tempdir().unwrap();
    // A shell step's stdio log is stored with the step, before its command is rendered.
    let config = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local") }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{name="broken", command={"echo", util.renderer(function() error("no command") end)}})
f:addStep(steps.ShellCommand{name="fine", command="echo ok", alwaysRun=true})
c['builders'] = { util.BuilderConfig{name="b", workernames={"local"}, factory=f} }
"#;
    let master = TestMaster::start_in(dir, config).await;
    let bsid = submit(&master, &["b"], &[]).await;
    assert_eq!(complete(&master, bsid).await, BuildResult::Exception);
    let logs: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT s.name, l.name, l.complete FROM logs l JOIN steps s ON s.id = l.stepid \
         ORDER BY l.id",
    )
    .fetch_all(&master.context.db.pool)
    .await
    .unwrap();
    let logs: Vec<(&str, &str, i64)> = logs
        .iter()
        .map(|(step, log, complete)| (step.as_str(), log.as_str(), *complete))
        .collect();
    assert_eq!(
        logs,
        [("broken", "err.text", 1), ("fine", "stdio", 1)],
        "the broken step's unused stdio log is gone"
    );
    assert!(log_text(&master, "broken", "err.text")
        .await
        .contains("no command"));
    assert!(log_text(&master, "fine", "stdio").await.contains("ok"));
}

/// Forces a build of `builders` through the REST API's JSON-RPC; the buildset id.
async fn force_over_rest(api: &str, builders: &[&str]) -> i64 {
    let answer: Value = reqwest::Client::new()
        .post(format!("{api}/forceschedulers/force"))
        .json(
            &serde_json::json!({"jsonrpc": "2.0", "method": "force", "id": 1,
            "params": {"builderNames": builders, "reason": "test"}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["result"][0]
        .as_i64()
        .unwrap_or_else(|| panic!("{answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_of_one_builder_take_turns_on_a_worker_with_room_for_four() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local", {max_builds=4}) }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{name="lock", command="mkdir lockdir || exit 1; sleep 2; rmdir lockdir"})
c['builders'] = {
  util.BuilderConfig{name="b", workernames={"local"}, factory=f, collapseRequests=false},
  util.BuilderConfig{name="other", workernames={"local"}, factory=f},
}
c['schedulers'] = { schedulers.ForceScheduler{name="force", builderNames={"b", "other"}} }
c['status'] = { status.WebStatus{http_port="tcp:0:interface=127.0.0.1", authz=util.Authz{default_action=true}} }
"#;
    let master = TestMaster::start_in(dir, config).await;
    let api = format!("http://{}/api/v2", master.web_address.unwrap());
    let mut forced = Vec::new();
    for _ in 0..4 {
        forced.push(force_over_rest(&api, &["b"]).await);
    }
    forced.push(force_over_rest(&api, &["other"]).await);
    for bsid in forced {
        assert_eq!(complete(&master, bsid).await, BuildResult::Success);
    }
    let db = &master.context.db;
    let spans: Vec<(String, i64, f64, f64)> = sqlx::query_as(
        "SELECT bl.name, b.results, b.started_at, b.complete_at FROM builds b \
         JOIN builders bl ON bl.id = b.builderid ORDER BY b.started_at",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        spans.iter().all(|s| s.1 == 0),
        "every build succeeds: {spans:?}"
    );
    let of_b: Vec<_> = spans.iter().filter(|s| s.0 == "b").collect();
    assert_eq!(of_b.len(), 4, "{spans:?}");
    for pair in of_b.windows(2) {
        assert!(pair[1].2 >= pair[0].3, "builds of b overlapped: {spans:?}");
    }
    // max_builds still lets another builder run beside them.
    let other = spans.iter().find(|s| s.0 == "other").unwrap();
    assert!(
        of_b.iter().any(|b| b.2 < other.3 && other.2 < b.3),
        "the other builder waited for b: {spans:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_collapse_requests_is_the_default_of_builders_that_set_none() {
    let config = r#"
local c = BuildmasterConfig
c['collapseRequests'] = false
c['workers'] = { worker.LocalWorker("local") }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{name="slow", command="sleep 0.5"})
c['builders'] = {
  util.BuilderConfig{name="global", workernames={"local"}, factory=f},
  util.BuilderConfig{name="own", workernames={"local"}, factory=f, collapseRequests=true},
  util.BuilderConfig{name="lua", workernames={"local"}, factory=f,
    collapseRequests=function(master, builder, new, old) return builder.name == "lua" end},
}
"#;
    let master = TestMaster::start(config).await;
    // Per builder: one request takes the worker, three wait, then the newest arrives.
    for builder in ["global", "own", "lua"] {
        let mut bsids = Vec::new();
        for _ in 0..4 {
            bsids.push(submit(&master, &[builder], &[]).await);
            if bsids.len() == 1 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        for bsid in bsids {
            complete(&master, bsid).await;
        }
    }
    assert_eq!(
        request_results(&master, "global").await,
        vec![0, 0, 0, 0],
        "false for all"
    );
    assert_eq!(
        request_results(&master, "own").await,
        vec![0, 3, 3, 0],
        "the builder's true wins"
    );
    assert_eq!(
        request_results(&master, "lua").await,
        vec![0, 3, 3, 0],
        "the builder's function wins"
    );
    drop(master);

    // A global function applies to builders without their own rule.
    let config = r#"
local c = BuildmasterConfig
c['collapseRequests'] = function(master, builder, new, old) return builder.name == "yes" end
c['workers'] = { worker.LocalWorker("local") }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{name="slow", command="sleep 0.5"})
c['builders'] = {
  util.BuilderConfig{name="yes", workernames={"local"}, factory=f},
  util.BuilderConfig{name="no", workernames={"local"}, factory=f},
}
"#;
    let master = TestMaster::start(config).await;
    for builder in ["yes", "no"] {
        let mut bsids = Vec::new();
        for _ in 0..3 {
            bsids.push(submit(&master, &[builder], &[]).await);
            if bsids.len() == 1 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        for bsid in bsids {
            complete(&master, bsid).await;
        }
    }
    assert_eq!(request_results(&master, "yes").await, vec![0, 3, 0]);
    assert_eq!(request_results(&master, "no").await, vec![0, 0, 0]);
}

/// The results of a builder's build requests, oldest first.
async fn request_results(master: &Master, builder: &str) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT r.results FROM buildrequests r JOIN builders b ON b.id = r.builderid \
         WHERE b.name = $1 ORDER BY r.id",
    )
    .bind(builder)
    .fetch_all(&master.context.db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forcing_a_builder_the_scheduler_does_not_have_refuses_the_whole_call() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local") }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{name="hello", command="true"})
c['builders'] = { util.BuilderConfig{name="b", workernames={"local"}, factory=f} }
c['schedulers'] = { schedulers.ForceScheduler{name="force", builderNames={"b"}} }
c['status'] = { status.WebStatus{http_port="tcp:0:interface=127.0.0.1", authz=util.Authz{default_action=true}} }
"#;
    let master = TestMaster::start_in(dir, config).await;
    let api = format!("http://{}/api/v2", master.web_address.unwrap());
    let response = reqwest::Client::new()
        .post(format!("{api}/forceschedulers/force"))
        .json(
            &serde_json::json!({"jsonrpc": "2.0", "method": "force", "id": 1,
            "params": {"builderNames": ["b", "nonexistent"]}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "builderNames: scheduler 'force' has no builder named 'nonexistent' (its builders: b)",
        "{body}"
    );
    let buildsets: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM buildsets")
        .fetch_one(&master.context.db.pool)
        .await
        .unwrap();
    assert_eq!(buildsets, 0, "nothing was forced");
    assert!(force_over_rest(&api, &["b"]).await > 0);
}
