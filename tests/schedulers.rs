//! The schedulers against a real SQLite database, a real bus and the real script host: a
//! config defines them, changes are stored and announced as change sources do, and the
//! buildsets they submit are read back from storage.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use moonbot::bus::{Bus, Subscription};
use moonbot::config::build::{Schedule, SchedulerConfig};
use moonbot::config::{self};
use moonbot::data::{self, Resource};
use moonbot::db::{ChangeSpec, Db, SourceStampSpec};
use moonbot::model::Properties;
use moonbot::runtime::{Context, Control, Polls, Reconfigured, Service, Shared};
use moonbot::schedulers::{self, RunningScheduler, TriggerRequest};
use moonbot::script::ScriptHost;

/// Three builders the schedulers of each test can name.
const BUILDERS: &str = r#"
local c = BuildmasterConfig
c['workers']:append(worker.LocalWorker("local"))
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{ command = { "true" } })
for _, name in ipairs({ "a", "b", "c" }) do
  c['builders']:append(util.BuilderConfig{ name = name, workernames = { "local" }, factory = f })
end
"#;

/// The config of the three builders and the schedulers `lua` defines, in a fresh VM.
fn load(dir: &Path, lua: &str) -> config::LoadedConfig {
    let source = format!("{BUILDERS}\n{lua}");
    config::load_source("master.cfg.lua", &source, dir)
        .unwrap_or_else(|errors| panic!("config errors:\n{errors}"))
}

/// A master's shared state over the database in `dir`, with the schedulers `lua` defines.
async fn context(dir: &Path, lua: &str) -> Context {
    Context::new(shared(dir, lua).await)
}

/// What [`context`] holds, for a test to change before it is shared.
async fn shared(dir: &Path, lua: &str) -> Shared {
    let loaded = load(dir, lua);
    let config = Arc::new(loaded.config);
    let db = Db::open("sqlite:///state.sqlite", dir).await.unwrap();
    let script = ScriptHost::start(loaded.lua, config.script_limits).unwrap();
    let masterid = db.start_master("test:master", &[]).await.unwrap().masterid;
    let (control, _requests) = Control::channel();
    Shared {
        db,
        bus: Bus::default(),
        control,
        polls: Polls::channel().0,
        script,
        config: moonbot::runtime::SharedConfig::new((*config).clone()),
        basedir: dir.to_path_buf(),
        masterid: masterid.into(),
        shutdown: CancellationToken::new(),
        source_endpoints: Default::default(),
    }
}

/// Starts every scheduler of the config.
async fn start_all(ctx: &Context) -> Vec<RunningScheduler> {
    let mut running = Vec::new();
    for scheduler in &ctx.config.current().schedulers {
        running.push(RunningScheduler::start(ctx, scheduler).await.unwrap());
    }
    running
}

/// Shuts the master down and waits until the schedulers are gone.
async fn stop(ctx: &Context, running: Vec<RunningScheduler>) {
    ctx.shutdown.cancel();
    for scheduler in running {
        tokio::time::timeout(Duration::from_secs(5), scheduler.stop())
            .await
            .expect("the scheduler stops");
    }
}

/// What a reconfig does for the schedulers: the new VM replaces the old one, the new config
/// becomes the current one, and each running scheduler is handed its new config.
async fn reconfig(
    ctx: &Context,
    running: &mut [RunningScheduler],
    loaded: config::LoadedConfig,
) -> Vec<Reconfigured> {
    ctx.script.replace_vm(loaded.lua).await.unwrap();
    let config = Arc::new(loaded.config);
    ctx.config.replace(config.clone());
    let mut outcomes = Vec::new();
    for (scheduler, new) in running.iter_mut().zip(&config.schedulers) {
        let outcome = tokio::time::timeout(Duration::from_secs(5), scheduler.reconfigure(ctx, new))
            .await
            .expect("the scheduler takes its new config")
            .unwrap();
        outcomes.push(outcome);
    }
    outcomes
}

fn change(branch: &str, revision: &str, files: &[&str]) -> ChangeSpec {
    ChangeSpec {
        author: "alice <alice@example.org>".into(),
        comments: format!("commit {revision}"),
        branch: Some(branch.into()),
        revision: Some(revision.into()),
        repository: "https://example.org/repo.git".into(),
        files: files.iter().map(|f| f.to_string()).collect(),
        ..ChangeSpec::default()
    }
}

/// Stores a change and announces it, as a change source does.
async fn add_change(ctx: &Context, spec: ChangeSpec) -> i64 {
    let id = ctx.db.add_change(&spec).await.unwrap();
    data::publish(&ctx.db, &ctx.bus, Resource::Change(id), "new")
        .await
        .unwrap();
    id
}

/// The next buildset announced within `within`, if any.
async fn next_buildset(events: &mut Subscription, within: Duration) -> Option<i64> {
    let wait = async {
        loop {
            let event = events.recv().await.expect("the bus is open");
            let parts: Vec<&str> = event.parts().collect();
            if let ["buildsets", id, "new"] = parts.as_slice() {
                return id.parse().unwrap();
            }
        }
    };
    tokio::time::timeout(within, wait).await.ok()
}

async fn expect_buildset(events: &mut Subscription) -> i64 {
    next_buildset(events, Duration::from_secs(10))
        .await
        .expect("a buildset is submitted")
}

/// A stored buildset, as the tests look at it.
#[derive(Debug)]
struct Buildset {
    reason: String,
    scheduler: String,
    parent_buildid: Option<i64>,
    builders: Vec<String>,
    priorities: Vec<i64>,
    waited_for: Vec<i64>,
    properties: Properties,
    ssids: Vec<i64>,
}

async fn buildset(ctx: &Context, bsid: i64) -> Buildset {
    let (reason, scheduler, parent_buildid): (String, String, Option<i64>) =
        sqlx::query_as("SELECT reason, scheduler, parent_buildid FROM buildsets WHERE id = $1")
            .bind(bsid)
            .fetch_one(&ctx.db.pool)
            .await
            .unwrap();
    let requests: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT b.name, r.priority, r.waited_for FROM buildrequests r \
         JOIN builders b ON b.id = r.builderid WHERE r.buildsetid = $1 ORDER BY b.name",
    )
    .bind(bsid)
    .fetch_all(&ctx.db.pool)
    .await
    .unwrap();
    let ssids: Vec<i64> = sqlx::query_scalar(
        "SELECT sourcestampid FROM buildset_sourcestamps WHERE buildsetid = $1 \
         ORDER BY sourcestampid",
    )
    .bind(bsid)
    .fetch_all(&ctx.db.pool)
    .await
    .unwrap();
    Buildset {
        reason,
        scheduler,
        parent_buildid,
        builders: requests.iter().map(|r| r.0.clone()).collect(),
        priorities: requests.iter().map(|r| r.1).collect(),
        waited_for: requests.iter().map(|r| r.2).collect(),
        properties: ctx.db.buildset_properties(bsid).await.unwrap(),
        ssids,
    }
}

async fn change_ssid(ctx: &Context, changeid: i64) -> i64 {
    ctx.db.change(changeid).await.unwrap().1
}

fn scheduler(ctx: &Context, name: &str) -> SchedulerConfig {
    ctx.config
        .current()
        .schedulers
        .iter()
        .find(|s| s.name() == name)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_change_on_the_branch_is_built_at_once_with_its_sourcestamp_and_properties() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        dir.path(),
        r#"
        c['schedulers']:append(schedulers.SingleBranchScheduler{
          name = "main", branch = "main", builderNames = { "a", "b" },
          properties = { team = "core" }, priority = 5,
        })
        "#,
    )
    .await;
    let mut events = ctx.bus.subscribe();
    let running = start_all(&ctx).await;

    add_change(&ctx, change("dev", "d1", &["x.c"])).await;
    let mut on_main = change("main", "m1", &["x.c"]);
    on_main.properties = vec![("ticket".into(), json!(42), "Change".into())];
    let changeid = add_change(&ctx, on_main).await;

    let bsid = expect_buildset(&mut events).await;
    let bs = buildset(&ctx, bsid).await;
    assert_eq!(bs.builders, ["a", "b"]);
    assert_eq!(bs.priorities, [5, 5]);
    assert_eq!(bs.scheduler, "main");
    assert_eq!(
        bs.reason,
        "The SingleBranchScheduler scheduler named 'main' triggered this build"
    );
    assert_eq!(bs.ssids, [change_ssid(&ctx, changeid).await]);
    let stamps = ctx.db.buildset_sourcestamps(bsid).await.unwrap();
    assert_eq!(stamps[0].revision.as_deref(), Some("m1"));
    assert_eq!(stamps[0].changes[0].number, changeid);
    let props = &bs.properties;
    assert_eq!(props.get("scheduler"), Some(&json!("main")));
    assert_eq!(props.source("scheduler"), Some("Scheduler"));
    assert_eq!(props.get("team"), Some(&json!("core")));
    assert_eq!(props.source("team"), Some("Scheduler"));
    assert_eq!(props.get("ticket"), Some(&json!(42)));
    assert_eq!(props.source("ticket"), Some("Change"));

    // The change on "dev" made nothing, and neither does another one.
    add_change(&ctx, change("dev", "d2", &["x.c"])).await;
    assert_eq!(
        next_buildset(&mut events, Duration::from_millis(500)).await,
        None
    );
    // The requests were announced for the builders to pick up.
    let requests: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM buildrequests")
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap();
    assert_eq!(requests, 2);
    stop(&ctx, running).await;
}

#[tokio::test]
async fn change_filters_select_by_fields_patterns_and_functions() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        dir.path(),
        r#"
        c['schedulers']:append(schedulers.SingleBranchScheduler{
          name = "releases", builderNames = { "a" },
          change_filter = util.ChangeFilter{
            branch_re = "^release/",
            repository = "https://example.org/repo.git",
            filter_fn = function(change) return change.who ~= "bot" end,
            property_not_eq = { skip = "yes" },
          },
        })
        "#,
    )
    .await;
    let mut events = ctx.bus.subscribe();
    let running = start_all(&ctx).await;

    add_change(&ctx, change("main", "r0", &[])).await;
    let mut by_bot = change("release/1.0", "r1", &[]);
    by_bot.author = "bot".into();
    add_change(&ctx, by_bot).await;
    let mut skipped = change("release/1.0", "r2", &[]);
    skipped.properties = vec![("skip".into(), json!("yes"), "Change".into())];
    add_change(&ctx, skipped).await;
    let mut elsewhere = change("release/1.0", "r3", &[]);
    elsewhere.repository = "https://example.org/other.git".into();
    add_change(&ctx, elsewhere).await;
    let wanted = add_change(&ctx, change("release/1.0", "r4", &[])).await;

    let bsid = expect_buildset(&mut events).await;
    assert_eq!(
        buildset(&ctx, bsid).await.ssids,
        [change_ssid(&ctx, wanted).await]
    );
    assert_eq!(
        next_buildset(&mut events, Duration::from_millis(500)).await,
        None
    );
    stop(&ctx, running).await;
}

#[tokio::test]
async fn a_restart_without_the_tree_stable_timer_forgets_the_changes_kept_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let kept_changes = |ctx: &Context| {
        let pool = ctx.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT changeid FROM scheduler_changes")
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    let ctx = context(
        dir.path(),
        r#"
        c['schedulers']:append(schedulers.SingleBranchScheduler{
          name = "stable", branch = "main", treeStableTimer = 60, builderNames = { "a" },
        })
    "#,
    )
    .await;
    let running = start_all(&ctx).await;
    let waiting = add_change(&ctx, change("main", "s1", &["a.c"])).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while kept_changes(&ctx).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change is classified"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(&ctx, running).await;
    assert_eq!(kept_changes(&ctx).await, [waiting]);

    let ctx = context(
        dir.path(),
        r#"
        c['schedulers']:append(schedulers.SingleBranchScheduler{
          name = "stable", branch = "main", builderNames = { "a" },
        })
    "#,
    )
    .await;
    let mut events = ctx.bus.subscribe();
    let running = start_all(&ctx).await;
    assert_eq!(kept_changes(&ctx).await, Vec::<i64>::new());
    assert_eq!(
        next_buildset(&mut events, Duration::from_millis(500)).await,
        None,
        "a change classified for the old timer is not built"
    );
    stop(&ctx, running).await;
}

#[tokio::test]
async fn the_tree_stable_timer_batches_changes_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let lua = r#"
        c['schedulers']:append(schedulers.SingleBranchScheduler{
          name = "stable", branch = "main", treeStableTimer = 1, builderNames = { "a" },
        })
    "#;
    let ctx = context(dir.path(), lua).await;
    let mut events = ctx.bus.subscribe();
    let running = start_all(&ctx).await;

    let started = tokio::time::Instant::now();
    add_change(&ctx, change("main", "s1", &["a.c"])).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    add_change(&ctx, change("main", "s2", &["b.c"])).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let last = add_change(&ctx, change("main", "s3", &["c.c"])).await;
    let bsid = expect_buildset(&mut events).await;
    // The timer restarted with each change: one build, a second after the last change.
    assert!(started.elapsed() >= Duration::from_millis(1700));
    assert_eq!(
        buildset(&ctx, bsid).await.ssids,
        [change_ssid(&ctx, last).await]
    );
    assert_eq!(
        next_buildset(&mut events, Duration::from_millis(1500)).await,
        None
    );
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM scheduler_changes")
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap();
    assert_eq!(kept, 0, "built changes are forgotten");

    // A change whose timer has not fired when the master stops is built after the restart.
    let pending = add_change(&ctx, change("main", "s4", &["d.c"])).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop(&ctx, running).await;
    let kept: Vec<i64> = sqlx::query_scalar("SELECT changeid FROM scheduler_changes")
        .fetch_all(&ctx.db.pool)
        .await
        .unwrap();
    assert_eq!(kept, [pending]);

    let ctx = context(dir.path(), lua).await;
    let mut events = ctx.bus.subscribe();
    let running = start_all(&ctx).await;
    let bsid = expect_buildset(&mut events).await;
    assert_eq!(
        buildset(&ctx, bsid).await.ssids,
        [change_ssid(&ctx, pending).await]
    );
    stop(&ctx, running).await;
}

#[tokio::test]
async fn file_is_important_decides_which_changes_build() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        dir.path(),
        r#"
        local function code_changed(change)
          for _, file in ipairs(change.files) do
            if file:match("%.c$") then return true end
          end
          return false
        end
        c['schedulers']:append(schedulers.SingleBranchScheduler{
          name = "code", branch = "main", builderNames = { "a" },
          fileIsImportant = code_changed,
        })
        c['schedulers']:append(schedulers.SingleBranchScheduler{
          name = "only-code", branch = "dev", treeStableTimer = 1, builderNames = { "b" },
          fileIsImportant = code_changed, onlyImportant = true,
        })
        c['schedulers']:append(schedulers.SingleBranchScheduler{
          name = "broken", branch = "broken", builderNames = { "c" },
          fileIsImportant = function(change) error("no idea") end,
        })
        "#,
    )
    .await;
    let mut events = ctx.bus.subscribe();
    let running = start_all(&ctx).await;

    // Without a timer, an unimportant change builds nothing.
    add_change(&ctx, change("main", "m1", &["README"])).await;
    let code = add_change(&ctx, change("main", "m2", &["main.c"])).await;
    let bsid = expect_buildset(&mut events).await;
    let bs = buildset(&ctx, bsid).await;
    assert_eq!(
        (bs.scheduler.as_str(), bs.ssids),
        ("code", vec![change_ssid(&ctx, code).await])
    );

    // With onlyImportant, an unimportant change is not even kept for the build.
    let important = add_change(&ctx, change("dev", "d1", &["lib.c"])).await;
    add_change(&ctx, change("dev", "d2", &["NEWS"])).await;
    let bsid = expect_buildset(&mut events).await;
    let bs = buildset(&ctx, bsid).await;
    assert_eq!(bs.scheduler, "only-code");
    assert_eq!(bs.ssids, [change_ssid(&ctx, important).await]);

    // A failing function takes the change as important.
    let broken = add_change(&ctx, change("broken", "b1", &["README"])).await;
    let bsid = expect_buildset(&mut events).await;
    let bs = buildset(&ctx, bsid).await;
    assert_eq!(
        (bs.scheduler.as_str(), bs.ssids),
        ("broken", vec![change_ssid(&ctx, broken).await])
    );
    stop(&ctx, running).await;
}

#[tokio::test]
async fn any_branch_keeps_one_timer_per_branch() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        dir.path(),
        r#"
        c['schedulers']:append(schedulers.AnyBranchScheduler{
          name = "any", treeStableTimer = 1, builderNames = { "a" },
        })
        "#,
    )
    .await;
    let mut events = ctx.bus.subscribe();
    let running = start_all(&ctx).await;

    add_change(&ctx, change("x", "x1", &[])).await;
    let y = add_change(&ctx, change("y", "y1", &[])).await;
    let x = add_change(&ctx, change("x", "x2", &[])).await;
    let mut built = Vec::new();
    for _ in 0..2 {
        let bsid = expect_buildset(&mut events).await;
        built.extend(buildset(&ctx, bsid).await.ssids);
    }
    built.sort();
    let mut expected = vec![change_ssid(&ctx, x).await, change_ssid(&ctx, y).await];
    expected.sort();
    assert_eq!(built, expected);
    assert_eq!(
        next_buildset(&mut events, Duration::from_millis(1500)).await,
        None
    );
    stop(&ctx, running).await;
}

const FORCE: &str = r#"
c['schedulers']:append(schedulers.ForceScheduler{
  name = "force", builderNames = { "a", "b" },
  properties = {
    util.StringParameter{ name = "target", required = true, regex = "^[a-z]+$" },
    util.IntParameter{ name = "jobs", default = 2 },
    util.ChoiceStringParameter{ name = "mode", choices = { "fast", "full" }, default = "fast" },
    util.BooleanParameter{ name = "clean" },
  },
})
"#;

fn params(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("params are an object"),
    }
}

fn force_scheduler(ctx: &Context) -> Box<moonbot::config::build::ForceScheduler> {
    match scheduler(ctx, "force") {
        SchedulerConfig::Force(force) => force,
        other => panic!("not a force scheduler: {other:?}"),
    }
}

#[tokio::test]
async fn force_builds_with_the_validated_fields() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), FORCE).await;
    let running = start_all(&ctx).await;
    let mut events = ctx.bus.subscribe();

    let (bsid, brids) = schedulers::force(
        &ctx,
        &force_scheduler(&ctx),
        params(json!({
            "builderNames": ["a"],
            "owner": "anonymous",
            "username": "Ann <ann@example.org>",
            "reason": "try it",
            "branch": "feature",
            "revision": "abc123",
            "target": "web",
            "jobs": "4",
            "clean": true,
        })),
        &|_| None,
    )
    .await
    .unwrap();
    assert_eq!(expect_buildset(&mut events).await, bsid);
    let builder_a = ctx.db.builder_id("a").await.unwrap();
    assert_eq!(brids.keys().copied().collect::<Vec<_>>(), [builder_a]);
    let bs = buildset(&ctx, bsid).await;
    assert_eq!(bs.builders, ["a"]);
    assert_eq!(
        bs.reason,
        "A build was forced by 'Ann <ann@example.org>': try it"
    );
    let props = &bs.properties;
    for (name, value) in [
        ("owner", json!("Ann <ann@example.org>")),
        ("reason", json!("try it")),
        ("target", json!("web")),
        ("jobs", json!(4)),
        ("mode", json!("fast")),
        ("clean", json!(true)),
    ] {
        assert_eq!(props.get(name), Some(&value), "property {name}");
        assert_eq!(
            props.source(name),
            Some("Force Build Form"),
            "source of {name}"
        );
    }
    assert_eq!(props.get("scheduler"), Some(&json!("force")));
    let stamps = ctx.db.buildset_sourcestamps(bsid).await.unwrap();
    assert_eq!(stamps.len(), 1);
    assert_eq!(stamps[0].branch.as_deref(), Some("feature"));
    assert_eq!(stamps[0].revision.as_deref(), Some("abc123"));

    // A logged-in user is the owner; `builderid` picks one builder; defaults fill the rest.
    let builder_b = ctx.db.builder_id("b").await.unwrap();
    let (bsid, brids) = schedulers::force(
        &ctx,
        &force_scheduler(&ctx),
        params(json!({ "builderid": builder_b, "owner": "bob@example.org", "target": "api" })),
        &|_| None,
    )
    .await
    .unwrap();
    assert_eq!(brids.keys().copied().collect::<Vec<_>>(), [builder_b]);
    let bs = buildset(&ctx, bsid).await;
    assert_eq!(bs.properties.get("owner"), Some(&json!("bob@example.org")));
    assert_eq!(bs.properties.get("reason"), Some(&json!("force build")));
    assert_eq!(bs.properties.get("jobs"), Some(&json!(2)));
    assert_eq!(bs.properties.get("clean"), Some(&json!(false)));
    let stamps = ctx.db.buildset_sourcestamps(bsid).await.unwrap();
    assert_eq!(
        (stamps[0].branch.clone(), stamps[0].revision.clone()),
        (None, None)
    );
    stop(&ctx, running).await;
}

#[tokio::test]
async fn force_refuses_bad_fields_naming_each() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), FORCE).await;
    let force = force_scheduler(&ctx);
    let cases = [
        (
            json!({ "username": "Ann <ann@example.org>" }),
            vec!["target"],
        ),
        (
            json!({ "username": "Ann <ann@example.org>", "target": "Web" }),
            vec!["target"],
        ),
        (
            json!({ "username": "Ann <ann@example.org>", "target": "web", "jobs": "many" }),
            vec!["jobs"],
        ),
        (
            json!({ "username": "ann", "target": "web", "mode": "slow" }),
            vec!["mode", "username"],
        ),
    ];
    for (given, names) in cases {
        let error = schedulers::force(&ctx, &force, params(given.clone()), &|_| None)
            .await
            .expect_err("bad parameters are refused");
        assert_eq!(error.status, 400, "{given}");
        for name in names {
            assert!(
                error.message.contains(&format!("{name}:")),
                "{given}: {}",
                error.message
            );
        }
    }
    let error = schedulers::force(
        &ctx,
        &force,
        params(json!({ "builderNames": ["zzz"], "target": "web", "owner": "bob" })),
        &|_| None,
    )
    .await
    .unwrap_err();
    assert_eq!(error.status, 400);
    assert!(error.message.contains("builderNames"), "{}", error.message);
    let error =
        schedulers::force_named(&ctx, "nope", params(json!({ "target": "web" })), &|_| None)
            .await
            .unwrap_err();
    assert_eq!(error.status, 404);
    let error =
        schedulers::force_named(&ctx, "force", params(json!({ "owner": "bob" })), &|_| None)
            .await
            .unwrap_err();
    assert_eq!(error.status, 400);
    assert!(error.message.contains("target:"), "{}", error.message);
    let buildsets: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM buildsets")
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap();
    assert_eq!(buildsets, 0);
}

#[tokio::test]
async fn periodic_builds_every_interval_and_resumes_from_the_last_build() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        dir.path(),
        r#"
        c['schedulers']:append(schedulers.Periodic{
          name = "often", periodicBuildTimer = 1, builderNames = { "a" },
        })
        c['schedulers']:append(schedulers.Periodic{
          name = "hourly", periodicBuildTimer = 3600, builderNames = { "b" },
        })
        "#,
    )
    .await;
    let mut events = ctx.bus.subscribe();
    let running = start_all(&ctx).await;
    let started = tokio::time::Instant::now();
    let mut by_scheduler = std::collections::BTreeMap::<String, usize>::new();
    while by_scheduler.get("often").copied().unwrap_or(0) < 3 {
        let bsid = expect_buildset(&mut events).await;
        let bs = buildset(&ctx, bsid).await;
        *by_scheduler.entry(bs.scheduler).or_default() += 1;
    }
    // The first build is at once, then one a second.
    assert!(started.elapsed() >= Duration::from_millis(1900));
    assert_eq!(by_scheduler.get("hourly"), Some(&1));
    let last = ctx
        .db
        .get_state("Periodic:hourly", "last_build")
        .await
        .unwrap();
    assert!(last.and_then(|v| v.as_f64()).is_some());
    stop(&ctx, running).await;

    // After a restart the hourly one waits for its hour; the other one carries on.
    let ctx = context(
        dir.path(),
        r#"
        c['schedulers']:append(schedulers.Periodic{
          name = "hourly", periodicBuildTimer = 3600, builderNames = { "b" },
        })
        "#,
    )
    .await;
    let mut events = ctx.bus.subscribe();
    let running = start_all(&ctx).await;
    assert_eq!(
        next_buildset(&mut events, Duration::from_millis(1500)).await,
        None
    );
    stop(&ctx, running).await;
}

#[tokio::test]
async fn nightly_fires_at_its_cron_times_with_monday_as_day_zero() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        dir.path(),
        r#"
        c['schedulers']:append(schedulers.Nightly{
          name = "weekly", hour = 3, minute = 30, dayOfWeek = 0, builderNames = { "a" },
        })
        c['schedulers']:append(schedulers.Nightly{
          name = "twice", hour = { 9, 21 }, builderNames = { "a" },
        })
        "#,
    )
    .await;
    let times = |name: &str| match scheduler(&ctx, name) {
        SchedulerConfig::Nightly(timed) => match &timed.schedule {
            Schedule::Nightly { at, .. } => (**at).clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    // Wednesday 31 January 2024, noon.
    let after = Utc.with_ymd_and_hms(2024, 1, 31, 12, 0, 0).unwrap();
    let weekly = times("weekly");
    let next = schedulers::cron::next_fire(&weekly, &after).unwrap();
    assert_eq!(next, Utc.with_ymd_and_hms(2024, 2, 5, 3, 30, 0).unwrap());
    let next = schedulers::cron::next_fire(&weekly, &next).unwrap();
    assert_eq!(next, Utc.with_ymd_and_hms(2024, 2, 12, 3, 30, 0).unwrap());
    let twice = times("twice");
    let next = schedulers::cron::next_fire(&twice, &after).unwrap();
    assert_eq!(next, Utc.with_ymd_and_hms(2024, 1, 31, 21, 0, 0).unwrap());
    let next = schedulers::cron::next_fire(&twice, &next).unwrap();
    assert_eq!(next, Utc.with_ymd_and_hms(2024, 2, 1, 9, 0, 0).unwrap());
}

#[tokio::test]
async fn a_nightly_build_missed_while_down_runs_at_start_unless_nothing_changed() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        dir.path(),
        r#"
        c['schedulers']:append(schedulers.Nightly{
          name = "nightly", hour = 3, builderNames = { "a" },
        })
        c['schedulers']:append(schedulers.Nightly{
          name = "if-changed", hour = 3, onlyIfChanged = true, builderNames = { "b" },
        })
        "#,
    )
    .await;
    // Both last built two days ago: their 3 o'clock builds since then were missed.
    let two_days_ago = moonbot::db::now() - 2.0 * 86400.0;
    for object in ["Nightly:nightly", "Nightly:if-changed"] {
        ctx.db
            .set_state(object, "last_build", &json!(two_days_ago))
            .await
            .unwrap();
    }
    let mut events = ctx.bus.subscribe();
    let running = start_all(&ctx).await;
    let bsid = expect_buildset(&mut events).await;
    let bs = buildset(&ctx, bsid).await;
    assert_eq!(bs.scheduler, "nightly");
    assert_eq!(
        bs.reason,
        "The Nightly scheduler named 'nightly' triggered this build"
    );
    // The onlyIfChanged one saw no change, so it skipped its build.
    assert_eq!(
        next_buildset(&mut events, Duration::from_millis(1000)).await,
        None
    );
    let last = ctx
        .db
        .get_state("Nightly:if-changed", "last_build")
        .await
        .unwrap()
        .and_then(|v| v.as_f64())
        .unwrap();
    assert!(last > two_days_ago, "the skipped build time is recorded");
    stop(&ctx, running).await;
}

#[tokio::test]
async fn triggerable_builds_what_the_trigger_step_sends() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        dir.path(),
        r#"
        c['schedulers']:append(schedulers.Triggerable{
          name = "trig", builderNames = { "c" },
          codebases = { app = {}, lib = { repository = "https://example.org/lib.git", branch = "stable" } },
          properties = { kind = "triggered" },
        })
        "#,
    )
    .await;
    let running = start_all(&ctx).await;
    let mut events = ctx.bus.subscribe();
    let mut properties = Properties::new();
    properties.set("reason", json!("because the parent said so"), "Trigger");
    properties.set("kind", json!("from-parent"), "Trigger");
    let request = TriggerRequest {
        sourcestamps: vec![SourceStampSpec {
            codebase: "app".into(),
            branch: Some("main".into()),
            revision: Some("feedbeef".into()),
            repository: "https://example.org/app.git".into(),
            project: "app".into(),
        }],
        properties,
        parent_buildid: Some(7),
        parent_relationship: Some("Triggered from".into()),
        waited_for: true,
    };
    let (bsid, brids) = schedulers::trigger(&ctx, "trig", request).await.unwrap();
    assert_eq!(expect_buildset(&mut events).await, bsid);
    assert_eq!(brids.len(), 1);
    let bs = buildset(&ctx, bsid).await;
    assert_eq!(bs.reason, "because the parent said so");
    assert_eq!(bs.parent_buildid, Some(7));
    assert_eq!(bs.waited_for, [1]);
    assert_eq!(bs.properties.get("kind"), Some(&json!("from-parent")));
    assert_eq!(bs.properties.source("kind"), Some("Trigger"));
    let stamps = ctx.db.buildset_sourcestamps(bsid).await.unwrap();
    let described: Vec<(String, Option<String>, Option<String>, String)> = stamps
        .into_iter()
        .map(|s| (s.codebase, s.branch, s.revision, s.repository))
        .collect();
    assert_eq!(
        described,
        [
            (
                "app".to_string(),
                Some("main".to_string()),
                Some("feedbeef".to_string()),
                "https://example.org/app.git".to_string()
            ),
            (
                "lib".to_string(),
                Some("stable".to_string()),
                None,
                "https://example.org/lib.git".to_string()
            ),
        ]
    );

    let error = schedulers::trigger(&ctx, "nope", TriggerRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error.status, 404);
    stop(&ctx, running).await;
}

/// Marks a buildset complete with `results` and announces it, as the engine does.
async fn complete(ctx: &Context, bsid: i64, results: i64) {
    sqlx::query("UPDATE buildsets SET complete = 1, complete_at = $1, results = $2 WHERE id = $3")
        .bind(moonbot::db::now())
        .bind(results)
        .bind(bsid)
        .execute(&ctx.db.pool)
        .await
        .unwrap();
    data::publish(&ctx.db, &ctx.bus, Resource::Buildset(bsid), "complete")
        .await
        .unwrap();
}

#[tokio::test]
async fn dependent_builds_after_its_upstream_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        dir.path(),
        r#"
        local up = schedulers.SingleBranchScheduler{ name = "up", branch = "main", builderNames = { "a" } }
        c['schedulers']:append(up)
        c['schedulers']:append(schedulers.Dependent{ name = "down", upstream = up, builderNames = { "b" } })
        "#,
    )
    .await;
    let mut events = ctx.bus.subscribe();
    let running = start_all(&ctx).await;

    let changeid = add_change(&ctx, change("main", "u1", &[])).await;
    let upstream = expect_buildset(&mut events).await;
    assert_eq!(buildset(&ctx, upstream).await.scheduler, "up");
    complete(&ctx, upstream, 1).await;
    let downstream = expect_buildset(&mut events).await;
    let bs = buildset(&ctx, downstream).await;
    assert_eq!(bs.scheduler, "down");
    assert_eq!(bs.reason, "downstream");
    assert_eq!(bs.builders, ["b"]);
    assert_eq!(bs.ssids, [change_ssid(&ctx, changeid).await]);

    // A failed upstream buildset is not followed.
    add_change(&ctx, change("main", "u2", &[])).await;
    let upstream = expect_buildset(&mut events).await;
    complete(&ctx, upstream, 2).await;
    assert_eq!(
        next_buildset(&mut events, Duration::from_millis(800)).await,
        None
    );
    stop(&ctx, running).await;

    // One that succeeds while the master is down is followed at the next start.
    let lua = r#"
        local up = schedulers.SingleBranchScheduler{ name = "up", branch = "main", builderNames = { "a" } }
        c['schedulers']:append(up)
        c['schedulers']:append(schedulers.Dependent{ name = "down", upstream = up, builderNames = { "b" } })
    "#;
    let ctx = context(dir.path(), lua).await;
    let mut events = ctx.bus.subscribe();
    let running = start_all(&ctx).await;
    add_change(&ctx, change("main", "u3", &[])).await;
    let upstream = expect_buildset(&mut events).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop(&ctx, running).await;
    complete(&ctx, upstream, 0).await;

    let ctx = context(dir.path(), lua).await;
    let running = start_all(&ctx).await;
    // The follow-up is submitted while the scheduler starts.
    let downstream: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM buildsets WHERE scheduler = 'down' ORDER BY id")
            .fetch_all(&ctx.db.pool)
            .await
            .unwrap();
    assert_eq!(downstream.len(), 2);
    assert_eq!(
        buildset(&ctx, downstream[1]).await.ssids,
        buildset(&ctx, upstream).await.ssids
    );
    stop(&ctx, running).await;
}

/// The `masterid` of a scheduler's row: who runs it.
async fn scheduler_master(ctx: &Context, name: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT masterid FROM schedulers WHERE name = $1")
        .bind(name)
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_reconfig_keeps_the_pending_tree_stable_timer_and_builds_with_the_new_properties() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = |properties: &str| {
        format!(
            r#"c['schedulers']:append(schedulers.SingleBranchScheduler{{
                 name = "stable", branch = "main", treeStableTimer = 3, builderNames = {{ "a" }},
                 properties = {properties} }})"#
        )
    };
    let ctx = context(dir.path(), &scheduler(r#"{ edition = "old" }"#)).await;
    let mut events = ctx.bus.subscribe();
    let mut running = start_all(&ctx).await;

    let changed_at = tokio::time::Instant::now();
    let first = add_change(&ctx, change("main", "r1", &["a.c"])).await;
    let last = add_change(&ctx, change("main", "r2", &["b.c"])).await;
    assert_eq!(
        next_buildset(&mut events, Duration::from_millis(1000)).await,
        None
    );
    let new = load(dir.path(), &scheduler(r#"{ edition = "new", extra = 1 }"#));
    let outcomes = reconfig(&ctx, &mut running, new).await;
    assert_eq!(outcomes, [Reconfigured::Changed]);

    let bsid = expect_buildset(&mut events).await;
    // The timer started with the changes, not with the reconfig (it would fire at 4s).
    assert!(
        changed_at.elapsed() < Duration::from_millis(3800),
        "fired {:?} after the changes",
        changed_at.elapsed()
    );
    let built = buildset(&ctx, bsid).await;
    assert_eq!(built.ssids, [change_ssid(&ctx, last).await]);
    assert_eq!(built.builders, ["a"]);
    assert_eq!(
        built.properties.get("edition"),
        Some(&json!("new")),
        "{:?}",
        built.properties
    );
    assert_eq!(built.properties.get("extra"), Some(&json!(1)));
    assert!(first < last);
    assert_eq!(
        next_buildset(&mut events, Duration::from_millis(1500)).await,
        None,
        "one buildset for the pending changes"
    );
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM scheduler_changes")
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap();
    assert_eq!(kept, 0);
    stop(&ctx, running).await;
}

#[tokio::test]
async fn a_reconfig_with_a_new_vm_uses_the_new_file_is_important() {
    let dir = tempfile::tempdir().unwrap();
    // The function stays on the same line with another body: a change, and the new VM's
    // function is the one called.
    let scheduler = |test: &str| {
        format!(
            r#"c['schedulers']:append(schedulers.SingleBranchScheduler{{
                 name = "imp", branch = "main", builderNames = {{ "a" }},
                 fileIsImportant = function(change) return change.files[1] {test} "docs.txt" end }})"#
        )
    };
    let ctx = context(dir.path(), &scheduler("~=")).await;
    let mut events = ctx.bus.subscribe();
    let mut running = start_all(&ctx).await;
    add_change(&ctx, change("main", "d1", &["docs.txt"])).await;
    assert_eq!(
        next_buildset(&mut events, Duration::from_millis(800)).await,
        None,
        "docs are not important under the first config"
    );

    let outcomes = reconfig(&ctx, &mut running, load(dir.path(), &scheduler("=="))).await;
    assert_eq!(outcomes, [Reconfigured::Changed]);

    let code = add_change(&ctx, change("main", "c1", &["code.c"])).await;
    assert_eq!(
        next_buildset(&mut events, Duration::from_millis(800)).await,
        None,
        "code is not important under the new function"
    );
    let docs = add_change(&ctx, change("main", "d2", &["docs.txt"])).await;
    let bsid = expect_buildset(&mut events).await;
    assert_eq!(
        buildset(&ctx, bsid).await.ssids,
        [change_ssid(&ctx, docs).await]
    );
    assert!(code < docs);
    stop(&ctx, running).await;
}

#[tokio::test]
async fn a_periodic_scheduler_keeps_its_schedule_unless_its_timing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let periodic = |seconds: u64| {
        format!(
            r#"c['schedulers']:append(schedulers.Periodic{{
                 name = "hourly", periodicBuildTimer = {seconds}, builderNames = {{ "a" }} }})"#
        )
    };
    let ctx = context(dir.path(), &periodic(3600)).await;
    let mut events = ctx.bus.subscribe();
    let mut running = start_all(&ctx).await;
    let first = expect_buildset(&mut events).await;
    assert_eq!(buildset(&ctx, first).await.scheduler, "hourly");
    let last_build = ctx
        .db
        .get_state("Periodic:hourly", "last_build")
        .await
        .unwrap();
    assert!(last_build.is_some());

    let outcomes = reconfig(&ctx, &mut running, load(dir.path(), &periodic(3600))).await;
    assert_eq!(outcomes, [Reconfigured::Unchanged]);
    assert_eq!(
        next_buildset(&mut events, Duration::from_millis(1500)).await,
        None,
        "the next build is still an hour away"
    );
    assert_eq!(
        ctx.db
            .get_state("Periodic:hourly", "last_build")
            .await
            .unwrap(),
        last_build
    );

    // A shorter interval counts from the last build, which is already long enough ago.
    let outcomes = reconfig(&ctx, &mut running, load(dir.path(), &periodic(1))).await;
    assert_eq!(outcomes, [Reconfigured::Changed]);
    let second = expect_buildset(&mut events).await;
    assert_eq!(buildset(&ctx, second).await.scheduler, "hourly");

    // Another kind under the same name cannot be taken in place.
    let nightly = r#"c['schedulers']:append(schedulers.Nightly{
        name = "hourly", builderNames = { "a" }, minute = 0 })"#;
    let outcomes = reconfig(&ctx, &mut running, load(dir.path(), nightly)).await;
    assert_eq!(outcomes, [Reconfigured::NeedsRestart]);

    // Stopping one scheduler (not the master) ends its task and releases its row.
    assert_eq!(
        scheduler_master(&ctx, "hourly").await,
        Some(ctx.masterid.get())
    );
    let scheduler = running.pop().unwrap();
    tokio::time::timeout(Duration::from_secs(5), scheduler.stop())
        .await
        .expect("the scheduler stops");
    assert_eq!(scheduler_master(&ctx, "hourly").await, None);
    assert!(!ctx.shutdown.is_cancelled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_that_falls_behind_the_bus_still_builds_every_change_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut shared = shared(
        dir.path(),
        r#"
        c['schedulers']:append(schedulers.SingleBranchScheduler{
          name = "main", branch = "main", builderNames = { "a" },
        })
        "#,
    )
    .await;
    // A bus far shorter than the burst: the scheduler misses most of its events.
    shared.bus = Bus::new(8);
    let ctx = Context::new(shared);
    let running = start_all(&ctx).await;
    let mut messages = Vec::new();
    for n in 0..100 {
        let spec = change("main", &format!("r{n}"), &[]);
        let id = ctx.db.add_change(&spec).await.unwrap();
        let message = data::changes::change(&ctx.db, id).await.unwrap().unwrap();
        messages.push((id, message));
    }
    // All announced at once, faster than the scheduler takes them.
    for (id, message) in messages {
        data::announce(&ctx.bus, Resource::Change(id), "new", message);
    }
    let count = |sql: &'static str| {
        let pool = ctx.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while count("SELECT COUNT(*) FROM buildsets").await < 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} buildsets for 100 changes",
            count("SELECT COUNT(*) FROM buildsets").await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing more comes: no change was taken twice.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count("SELECT COUNT(*) FROM buildsets").await, 100);
    assert_eq!(
        count("SELECT COUNT(DISTINCT sourcestampid) FROM buildset_sourcestamps").await,
        100
    );
    stop(&ctx, running).await;
}
