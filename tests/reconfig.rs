//! Reconfig against running masters: in-process for the engine's side, and the real binary
//! for SIGHUP, `moonbot reconfig` and a crash.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use moonbot::master::Master;
use moonbot::model::BuildResult;

mod support;

use support::{complete as finished, get_json, sql, submit, TestMaster, WAIT};

fn config(builders: &str, extra: &str) -> String {
    format!(
        r#"
local c = BuildmasterConfig
c['workers'] = {{ worker.LocalWorker("local") }}
local slow = util.BuildFactory()
slow:addStep(steps.ShellCommand{{name="slow", command="sleep 1"}})
local quick = util.BuildFactory()
quick:addStep(steps.ShellCommand{{name="say", command={{"echo", util.renderer(function(props) return "v1 " .. props:getProperty("buildername") end)}}}})
c['builders'] = {{ {builders} }}
{extra}
"#
    )
}

const SLOW: &str = r#"util.BuilderConfig{name="slow", workernames={"local"}, factory=slow}"#;
const QUICK: &str = r#"util.BuilderConfig{name="quick", workernames={"local"}, factory=quick}"#;

/// Queues a build as a scheduler would.
async fn force(master: &Master, builder: &str) -> i64 {
    submit(master, &[builder], &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builder_added_while_another_builds_appears_and_the_build_goes_on() {
    let mut master = TestMaster::start(&config(SLOW, "")).await;
    let running = force(&master, "slow").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(
        master.dir().join("master.cfg.lua"),
        config(&format!("{SLOW}, {QUICK}"), ""),
    )
    .unwrap();
    let outcome = master.reconfig().await;
    assert_eq!(
        outcome.line, "reconfig complete (+1 ~0 -0 services)",
        "{outcome:?}"
    );
    assert_eq!(finished(&master, running).await, BuildResult::Success);
    let quick = force(&master, "quick").await;
    assert_eq!(finished(&master, quick).await, BuildResult::Success);
    let active: Vec<String> =
        sqlx::query_scalar("SELECT name FROM builders WHERE active = 1 ORDER BY name")
            .fetch_all(&master.context.db.pool)
            .await
            .unwrap();
    assert_eq!(active, ["quick", "slow"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_changes_nothing_and_every_error_names_its_line() {
    let mut master = TestMaster::start(&config(SLOW, "")).await;
    let cases = [
        (config(SLOW, "c['title'] = = 1"), vec!["master.cfg.lua:9:"]),
        (
            config(SLOW, "c['workers']:append(worker.LocalWorker('x', {max_bulds=1}))\nc['schedulers']:append(schedulers.Periodic{name='p', builderNames={'nosuch'}, periodicBuildTimer=60})"),
            vec!["master.cfg.lua:9: LocalWorker: unknown option 'max_bulds'", "master.cfg.lua:10:"],
        ),
        (config(SLOW, "c['db_url'] = 'sqlite:///other.sqlite'"), vec!["restart the master"]),
    ];
    for (text, expected) in cases {
        std::fs::write(master.dir().join("master.cfg.lua"), &text).unwrap();
        let outcome = master.reconfig().await;
        assert!(!outcome.ok);
        assert!(
            outcome
                .line
                .starts_with("reconfig aborted without changes: "),
            "{outcome:?}"
        );
        assert_eq!(outcome.errors.len(), expected.len(), "{outcome:?}");
        for (error, wanted) in outcome.errors.iter().zip(&expected) {
            assert!(error.contains(wanted), "{error} should contain {wanted}");
        }
        // The old config still runs, callbacks included.
        let bsid = force(&master, "slow").await;
        assert_eq!(finished(&master, bsid).await, BuildResult::Success);
    }
    let last: String = sqlx::query_scalar("SELECT last_reconfig FROM masters")
        .fetch_one(&master.context.db.pool)
        .await
        .unwrap();
    assert!(
        last.starts_with("reconfig aborted without changes: 1 error"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_renderer_is_used_by_the_next_build() {
    let mut master = TestMaster::start(&config(QUICK, "")).await;
    let first = force(&master, "quick").await;
    finished(&master, first).await;
    std::fs::write(
        master.dir().join("master.cfg.lua"),
        config(QUICK, "").replace("\"v1 \"", "\"v2 \""),
    )
    .unwrap();
    let outcome = master.reconfig().await;
    assert!(outcome.ok, "{outcome:?}");
    let second = force(&master, "quick").await;
    assert_eq!(finished(&master, second).await, BuildResult::Success);
    let lines: Vec<String> = sqlx::query_scalar("SELECT l.id FROM logs l ORDER BY l.id")
        .fetch_all(&master.context.db.pool)
        .await
        .map(|ids: Vec<i64>| ids.into_iter().map(|id| id.to_string()).collect())
        .unwrap();
    let db = &master.context.db;
    let first_log = db
        .log_lines(lines[0].parse().unwrap(), 0, i64::MAX)
        .await
        .unwrap();
    let second_log = db
        .log_lines(lines[1].parse().unwrap(), 0, i64::MAX)
        .await
        .unwrap();
    assert!(first_log.contains("\nov1 quick\n"), "{first_log}");
    assert!(second_log.contains("\nov2 quick\n"), "{second_log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builder_removed_while_it_builds_has_its_build_stopped_and_others_go_on() {
    const STUCK: &str = r#"util.BuilderConfig{name="slow", workernames={"local"}, factory=util.BuildFactory({
        steps.ShellCommand{command="touch ../started; sleep 60"} })}"#;
    let mut master = TestMaster::start(&config(&format!("{STUCK}, {QUICK}"), "")).await;
    let running = force(&master, "quick").await;
    let slow = force(&master, "slow").await;
    let started = master.dir().join("workers/local/slow/started");
    tokio::time::timeout(WAIT, async {
        while !started.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the slow build starts");
    std::fs::write(master.dir().join("master.cfg.lua"), config(QUICK, "")).unwrap();
    let outcome = master.reconfig().await;
    assert_eq!(
        outcome.line, "reconfig complete (+0 ~0 -1 services)",
        "{outcome:?}"
    );
    assert_eq!(finished(&master, slow).await, BuildResult::Cancelled);
    assert_eq!(finished(&master, running).await, BuildResult::Success);
    let active: i64 = sqlx::query_scalar("SELECT active FROM builders WHERE name = 'slow'")
        .fetch_one(&master.context.db.pool)
        .await
        .unwrap();
    assert_eq!(active, 0);
}

// ---- the real binary --------------------------------------------------------------------

fn moonbot(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_moonbot"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn pid(dir: &Path) -> i32 {
    std::fs::read_to_string(dir.join("moonbot.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn moonbot_reconfig_reports_errors_and_many_sighups_end_in_one_state() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    std::fs::write(base.join("master.cfg.lua"), config(SLOW, "")).unwrap();
    let dir_arg = base.to_str().unwrap();
    let out = moonbot(&["start", dir_arg]);
    assert!(out.status.success(), "{}", text(&out));
    let started = pid(base);

    std::fs::write(base.join("master.cfg.lua"), config(SLOW, "c['title'] = 5")).unwrap();
    let out = moonbot(&["reconfig", dir_arg]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("master.cfg.lua:9: c['title'] must be a string"),
        "{said}"
    );
    assert!(
        said.contains("reconfig aborted without changes: 1 error"),
        "{said}"
    );

    std::fs::write(
        base.join("master.cfg.lua"),
        config(&format!("{SLOW}, {QUICK}"), ""),
    )
    .unwrap();
    for _ in 0..10 {
        // SAFETY: signalling the master this test started.
        unsafe { libc::kill(started, libc::SIGHUP) };
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = moonbot(&["reconfig", dir_arg]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("reconfig complete"), "{}", text(&out));
    assert_eq!(pid(base), started, "the same process serves on");
    let log = std::fs::read_to_string(base.join("moonbot.log")).unwrap();
    let outcomes = log
        .lines()
        .filter(|l| {
            l.contains("reconfig complete")
                || l.contains("reconfig aborted")
                || l.contains("partially applied")
        })
        .count();
    let begun = log
        .lines()
        .filter(|l| l.contains("reconfig started"))
        .count();
    assert_eq!(outcomes, begun, "one outcome line per reconfig:\n{log}");
    assert!(
        !log.contains("ERROR")
            || log
                .lines()
                .filter(|l| l.contains("ERROR"))
                .all(|l| l.contains("title") || l.contains("aborted")),
        "{log}"
    );
    let active = sql(
        base,
        "SELECT name FROM builders WHERE active = 1 ORDER BY name",
    );
    assert_eq!(
        active,
        vec![serde_json::json!(["quick"]), serde_json::json!(["slow"])]
    );
    assert!(moonbot(&["stop", dir_arg]).status.success());
}

#[test]
fn a_build_running_when_the_master_is_killed_is_marked_retry_and_built_again() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    std::fs::write(
        base.join("master.cfg.lua"),
        config(
            SLOW,
            "c['status'] = { status.WebStatus{http_port='tcp:0:interface=127.0.0.1'} }",
        ),
    )
    .unwrap();
    let dir_arg = base.to_str().unwrap();
    // A request written while the master is stopped is picked up when it starts.
    assert!(moonbot(&["start", dir_arg]).status.success());
    assert!(moonbot(&["stop", dir_arg]).status.success());
    sql(
        base,
        "INSERT INTO buildsets (reason, submitted_at, complete, scheduler) VALUES ('t', 0, 0, 't')",
    );
    sql(base, "INSERT INTO buildrequests (buildsetid, builderid, priority, complete, submitted_at, waited_for) VALUES (1, 1, 0, 0, 0, 0)");
    assert!(moonbot(&["start", dir_arg]).status.success());
    let deadline = std::time::Instant::now() + WAIT;
    while sql(base, "SELECT id FROM steps WHERE started_at IS NOT NULL").is_empty() {
        assert!(std::time::Instant::now() < deadline, "the build starts");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: killing the master this test started.
    unsafe { libc::kill(pid(base), libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(300));
    let _ = std::fs::remove_file(base.join("moonbot.pid"));
    assert!(moonbot(&["start", dir_arg]).status.success());
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let complete = sql(base, "SELECT complete, results FROM buildsets WHERE id = 1");
        if complete == vec![serde_json::json!([1, 0])] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the buildset completes: {complete:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let builds = sql(
        base,
        "SELECT number, results, state_string FROM builds ORDER BY number",
    );
    assert_eq!(
        builds[0],
        serde_json::json!([1, 5, "interrupted: the master stopped while it ran"])
    );
    assert_eq!(builds[1][1], serde_json::json!(0));
    // Its running step ended as RETRY too, and every log it left open was closed.
    let steps = sql(
        base,
        "SELECT results, state_string LIKE '% (interrupted)' FROM steps \
         WHERE buildid = (SELECT id FROM builds WHERE number = 1) AND started_at IS NOT NULL",
    );
    assert_eq!(steps.last(), Some(&serde_json::json!([5, 1])), "{steps:?}");
    assert_eq!(
        sql(base, "SELECT id FROM logs WHERE complete = 0"),
        Vec::<serde_json::Value>::new()
    );
    assert!(moonbot(&["stop", dir_arg]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedulers_come_and_go_with_the_config() {
    let mut master = TestMaster::start(&config(SLOW, "")).await;
    let params = serde_json::json!({"builderNames": ["slow"], "username": "t <t@example.org>"});
    let params = params.as_object().unwrap().clone();
    let force =
        "c['schedulers'] = { schedulers.ForceScheduler{name='force', builderNames={'slow'}} }";
    std::fs::write(master.dir().join("master.cfg.lua"), config(SLOW, force)).unwrap();
    let outcome = master.reconfig().await;
    assert_eq!(
        outcome.line, "reconfig complete (+1 ~0 -0 services)",
        "{outcome:?}"
    );
    let (bsid, _) = master
        .context
        .control
        .force("force", params.clone())
        .await
        .unwrap();
    assert_eq!(finished(&master, bsid).await, BuildResult::Success);

    std::fs::write(master.dir().join("master.cfg.lua"), config(SLOW, "")).unwrap();
    let outcome = master.reconfig().await;
    assert_eq!(
        outcome.line, "reconfig complete (+0 ~0 -1 services)",
        "{outcome:?}"
    );
    let refused = master
        .context
        .control
        .force("force", params)
        .await
        .unwrap_err();
    assert_eq!(refused.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_after_a_reconfig_that_adds_a_builder_requests_each_builder_by_its_stored_id() {
    // The engine hands a force the ids of the builders it registered, read nowhere else.
    let scheduler = |names: &str| {
        format!("c['schedulers'] = {{ schedulers.ForceScheduler{{name='force', builderNames={{{names}}}}} }}")
    };
    let mut master = TestMaster::start(&config(QUICK, &scheduler("'quick'"))).await;
    std::fs::write(
        master.dir().join("master.cfg.lua"),
        config(&format!("{SLOW}, {QUICK}"), &scheduler("'slow', 'quick'")),
    )
    .unwrap();
    let outcome = master.reconfig().await;
    assert!(outcome.line.starts_with("reconfig complete"), "{outcome:?}");
    let params =
        serde_json::json!({"builderNames": ["slow", "quick"], "username": "t <t@example.org>"});
    let (bsid, _) = master
        .context
        .control
        .force("force", params.as_object().unwrap().clone())
        .await
        .unwrap();
    assert_eq!(finished(&master, bsid).await, BuildResult::Success);
    let requested: Vec<String> = sqlx::query_scalar(
        "SELECT b.name FROM buildrequests r JOIN builders b ON b.id = r.builderid \
         WHERE r.buildsetid = $1 ORDER BY b.name",
    )
    .bind(bsid)
    .fetch_all(&master.context.db.pool)
    .await
    .unwrap();
    assert_eq!(requested, ["quick", "slow"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_running_through_a_reconfig_still_calls_its_own_lua() {
    let steps = r#"
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{name="wait", command="sleep 1"})
f:addStep(steps.ShellCommand{name="after", command={"echo", util.renderer(function(props) return "old " .. props:getProperty("buildnumber") end)}})
c['builders']:append(util.BuilderConfig{name="lua", workernames={"local"}, factory=f})
"#;
    let mut master = TestMaster::start(&config(QUICK, steps)).await;
    let bsid = force(&master, "lua").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let edited = config(QUICK, &steps.replace("\"old \"", "\"new \""));
    std::fs::write(master.dir().join("master.cfg.lua"), edited).unwrap();
    let outcome = master.reconfig().await;
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(finished(&master, bsid).await, BuildResult::Success);
    let logid: i64 = sqlx::query_scalar(
        "SELECT l.id FROM logs l JOIN steps s ON s.id = l.stepid WHERE s.name = 'after'",
    )
    .fetch_one(&master.context.db.pool)
    .await
    .unwrap();
    let text = master
        .context
        .db
        .log_lines(logid, 0, i64::MAX)
        .await
        .unwrap();
    assert!(
        text.contains("\noold 1\n"),
        "the build keeps the steps it started with: {text}"
    );
    let next = force(&master, "lua").await;
    assert_eq!(finished(&master, next).await, BuildResult::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_masters_endpoint_shows_the_last_outcome_and_the_bus_announces_it() {
    let web = "c['status'] = { status.WebStatus{http_port='tcp:0:interface=127.0.0.1'} }";
    let mut master = TestMaster::start(&config(SLOW, web)).await;
    let api = format!("http://{}/api/v2", master.web_address.unwrap());
    let masters = get_json(&format!("{api}/masters")).await;
    assert_eq!(masters["masters"][0]["last_reconfig"], "started");
    let mut events = master.context.bus.subscribe();
    std::fs::write(
        master.dir().join("master.cfg.lua"),
        config(&format!("{SLOW}, {QUICK}"), web),
    )
    .unwrap();
    let outcome = master.reconfig().await;
    let event = events.recv().await.unwrap();
    assert_eq!(
        event.key,
        format!("masters/{}/reconfig", master.context.masterid.get())
    );
    assert_eq!(event.message["last_reconfig"], outcome.line.as_str());
    let masters = get_json(&format!("{api}/masters")).await;
    assert_eq!(
        masters["masters"][0]["last_reconfig"],
        "reconfig complete (+1 ~0 -0 services)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_that_only_moved_to_other_lines_are_unchanged_and_an_edited_formatter_is_changed()
{
    let services = |formatter_body: &str| {
        format!(
            r#"
c['schedulers']:append(schedulers.ForceScheduler{{name="force", builderNames={{"quick"}}}})
c['status']:append(status.MailNotifier{{fromaddr="bb@example.org", relayhost="127.0.0.1",
    smtpPort=1, extraRecipients={{"dev@example.org"}},
    messageFormatter=function(mode, name, build, results, master_status)
        return {{body="{formatter_body}", type="plain"}}
    end}})
"#
        )
    };
    let mut master = TestMaster::start(&config(QUICK, &services("v1"))).await;
    let file = master.dir().join("master.cfg.lua");
    let moved = format!("-- a comment\n\n\n{}", config(QUICK, &services("v1")));
    std::fs::write(&file, moved).unwrap();
    let outcome = master.reconfig().await;
    assert_eq!(
        outcome.line, "reconfig complete (+0 ~0 -0 services)",
        "{outcome:?}"
    );
    std::fs::write(&file, config(QUICK, &services("v2"))).unwrap();
    let outcome = master.reconfig().await;
    assert_eq!(
        outcome.line, "reconfig complete (+0 ~1 -0 services)",
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builders_edited_or_brought_back_while_the_master_was_stopped_are_recorded_as_configured() {
    // A start skips the builders storage already holds as configured: an edited one, or
    // one a reconfig had deactivated, must not be skipped.
    let dir = tempfile::tempdir().unwrap();
    let config = |edited: &str, others: &str| {
        format!(
            r#"
local c = BuildmasterConfig
c['workers'] = {{ worker.LocalWorker("local"), worker.LocalWorker("other") }}
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{{name="say", command={{"echo", "hi"}}}})
c['builders'] = {{ util.BuilderConfig{{name="edited", factory=f, {edited}}}, {others} }}
"#
        )
    };
    let kept = r#"util.BuilderConfig{name="kept", workernames={"local"}, factory=f}"#;
    let back = r#"util.BuilderConfig{name="back", workernames={"other"}, factory=f}"#;
    let as_first = r#"workernames={"local"}, description="one", tags={"a"}"#;
    let stop = |master: Master| async move {
        master.context.shutdown.cancel();
        master.wait().await.unwrap();
    };
    let mut master =
        support::start(dir.path(), &config(as_first, &format!("{kept}, {back}"))).await;
    std::fs::write(dir.path().join("master.cfg.lua"), config(as_first, kept)).unwrap();
    let outcome = master.reconfig().await;
    assert!(outcome.ok, "{outcome:?}");
    stop(master).await;
    let ids = sql(dir.path(), "SELECT name, id FROM builders ORDER BY name");
    assert_eq!(
        sql(dir.path(), "SELECT name FROM builders WHERE active = 0"),
        [serde_json::json!(["back"])]
    );

    let edited = r#"workernames={"local", "other"}, description="two", tags={"a", "b"}"#;
    let master = support::start(dir.path(), &config(edited, &format!("{kept}, {back}"))).await;
    stop(master).await;
    assert_eq!(
        sql(
            dir.path(),
            "SELECT b.name, b.description, b.tags, b.active, COUNT(bw.workerid) \
             FROM builders b LEFT JOIN builder_workers bw ON bw.builderid = b.id \
             GROUP BY b.id ORDER BY b.name"
        ),
        [
            serde_json::json!(["back", null, "[]", 1, 1]),
            serde_json::json!(["edited", "two", "[\"a\",\"b\"]", 1, 2]),
            serde_json::json!(["kept", null, "[]", 1, 1]),
        ]
    );
    assert_eq!(
        sql(dir.path(), "SELECT name, id FROM builders ORDER BY name"),
        ids,
        "every builder keeps its id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_reconfig_shows_on_the_waterfall_in_every_column_unless_events_are_hidden() {
    let web = "c['status'] = { status.WebStatus{http_port='tcp:0:interface=127.0.0.1'} }";
    let mut master = TestMaster::start(&config(SLOW, web)).await;
    let waterfall = format!("http://{}/waterfall", master.web_address.unwrap());
    let page = |query: &'static str| {
        let url = format!("{waterfall}{query}");
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    std::fs::write(
        master.dir().join("master.cfg.lua"),
        config(&format!("{SLOW}, {QUICK}"), web),
    )
    .unwrap();
    assert!(master.reconfig().await.ok);
    std::fs::write(master.dir().join("master.cfg.lua"), "c['title'] = = 1").unwrap();
    assert!(!master.reconfig().await.ok);

    let shown = page("").await;
    let reconfig = "<span class=\"event\">master reconfig</span>";
    let started = "<span class=\"event\">master started</span>";
    assert_eq!(
        shown.matches(reconfig).count(),
        2,
        "one successful reconfig, in both builders' columns: {shown}"
    );
    assert_eq!(shown.matches(started).count(), 2, "{shown}");
    assert!(
        shown.find(reconfig) < shown.find(started),
        "newest on top: {shown}"
    );
    let asked = page("?show_events=true").await;
    assert_eq!(asked.matches(reconfig).count(), 2, "{asked}");
    let hidden = page("?show_events=false").await;
    assert!(!hidden.contains("class=\"event\""), "{hidden}");
}

/// `c['eventHorizon']` bounds a master's stored events from its start, and a reconfig that
/// changes it applies to the events written after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_horizon_keeps_the_newest_master_events_and_a_reconfig_changes_it() {
    let mut master = TestMaster::start(&config(SLOW, "c['eventHorizon'] = 2")).await;
    let kept = |master: &TestMaster| {
        let pool = master.context.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT event FROM master_events ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(kept(&master).await, ["started"]);
    for _ in 0..2 {
        assert!(master.reconfig().await.ok);
    }
    assert_eq!(kept(&master).await, ["reconfig", "reconfig"]);
    std::fs::write(
        master.dir().join("master.cfg.lua"),
        config(SLOW, "c['eventHorizon'] = 3"),
    )
    .unwrap();
    assert!(master.reconfig().await.ok);
    assert!(master.reconfig().await.ok);
    assert_eq!(kept(&master).await, ["reconfig", "reconfig", "reconfig"]);
}

/// A start opens the default `state.sqlite`, when it exists, while the config is
/// evaluated; a config that names another database must still get that one, and leave
/// the default file as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_whose_config_names_another_database_than_the_state_sqlite_beside_it_runs_on_the_one_named(
) {
    let dir = tempfile::tempdir().unwrap();
    let default = moonbot::db::Db::open("sqlite:///state.sqlite", dir.path())
        .await
        .unwrap();
    default.close().await;
    let named = config(QUICK, "c['db_url'] = 'sqlite:///other.sqlite'");
    let master = TestMaster::start_in(dir, &named).await;
    let builders = |file: &str| {
        let url = format!("sqlite:///{file}");
        let dir = master.dir().to_path_buf();
        async move {
            let db = moonbot::db::Db::open(&url, &dir).await.unwrap();
            let names: Vec<String> = sqlx::query_scalar("SELECT name FROM builders")
                .fetch_all(&db.pool)
                .await
                .unwrap();
            db.close().await;
            names
        }
    };
    assert_eq!(builders("other.sqlite").await, ["quick"]);
    assert!(builders("state.sqlite").await.is_empty());
    let bsid = force(&master, "quick").await;
    assert_eq!(finished(&master, bsid).await, BuildResult::Success);
}
