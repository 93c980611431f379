//! Every `Db` method on both databases the master supports: SQLite in a temporary
//! directory, and PostgreSQL through `MOONBOT_TEST_POSTGRES_URL` (set by `scripts/test`),
//! where each test gets a database of its own, dropped afterwards.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use moonbot::bus::Bus;
use moonbot::data::builds::{claim_and_add_build, BuildOn};
use moonbot::db::{
    now, Batch, BuildsetSpec, ChangeSpec, Db, DbError, Dialect, MasterEvent, NewMessage, Refusal,
    SourceStampSpec,
};
use moonbot::model::Properties;
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};

const POSTGRES_ENV: &str = "MOONBOT_TEST_POSTGRES_URL";

/// A database for one test, removed when dropped.
struct TestDb {
    db: Db,
    /// The `db_url` the master's config would name.
    db_url: String,
    basedir: tempfile::TempDir,
    /// The admin URL and name of a PostgreSQL database made for this test.
    postgres: Option<(String, String)>,
}

impl TestDb {
    async fn sqlite() -> TestDb {
        let basedir = tempfile::tempdir().unwrap();
        let db_url = "sqlite:///state.sqlite".to_string();
        let db = Db::open(&db_url, basedir.path()).await.unwrap();
        assert_eq!(db.dialect, Dialect::Sqlite);
        assert!(basedir.path().join("state.sqlite").is_file());
        TestDb {
            db,
            db_url,
            basedir,
            postgres: None,
        }
    }

    async fn postgres() -> TestDb {
        let admin_url = std::env::var(POSTGRES_ENV).unwrap_or_else(|_| {
            panic!(
                "{POSTGRES_ENV} is not set: the storage tests need a PostgreSQL server; run \
                 them with scripts/test, which installs and starts one and sets it"
            )
        });
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "moonbot_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {admin_url}: {e}"));
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        admin.close().await.unwrap();
        let db_url = with_database(&admin_url, &name);
        let basedir = tempfile::tempdir().unwrap();
        let db = Db::open(&db_url, basedir.path()).await.unwrap();
        assert_eq!(db.dialect, Dialect::Postgres);
        TestDb {
            db,
            db_url,
            basedir,
            postgres: Some((admin_url, name)),
        }
    }

    /// Opens the same database again, as a restarted master does.
    async fn reopen(&self) -> Db {
        Db::open(&self.db_url, self.basedir.path()).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs outside async code (and also when a test panics): use a runtime of its
        // own on a thread of its own. FORCE ends this test's pooled connections.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let mut admin = PgConnection::connect(&admin_url).await?;
                    admin
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await?;
                    admin.close().await
                })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("cannot drop a test database: {error}");
        }
    }
}

/// `admin_url` with its database replaced by `name`.
fn with_database(admin_url: &str, name: &str) -> String {
    let (url, query) = admin_url.split_once('?').unwrap_or((admin_url, ""));
    let (server, _database) = url.rsplit_once('/').expect("a database in the URL");
    if query.is_empty() {
        format!("{server}/{name}")
    } else {
        format!("{server}/{name}?{query}")
    }
}

async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

/// Runs one test body on SQLite and on PostgreSQL, as `NAME::sqlite` and `NAME::postgres`.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::TestDb::sqlite().await).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::$name(super::TestDb::postgres().await).await;
            }
        }
    )*};
}

on_both_databases!(
    migrations_apply_once,
    a_change_comes_back_as_stored,
    the_changes_of_a_push_come_back_each_with_its_own_sourcestamp,
    a_buildset_keeps_its_sourcestamps_properties_and_requests,
    registry_ids_are_stable,
    log_lines_come_back_across_chunks,
    state_is_kept_and_overwritten,
    a_whole_build_runs_on_this_database,
    the_outbox_keeps_messages_until_sent,
    properties_past_one_statements_rows_are_all_stored,
    worker_connects_and_disconnects_and_master_events_are_recorded_with_their_time,
    only_the_newest_event_horizon_events_of_each_worker_and_master_are_kept,
    the_pages_own_reads_answer_on_this_database,
    several_builders_pending_requests_come_in_one_read_at_most_so_many_of_each,
    a_scheduler_claimed_again_keeps_its_id_and_names_the_master_that_claimed_it_last,
);

/// A start registers each scheduler and marks it as its own in one statement once the
/// scheduler is stored, with its own row; its first start inserts it.
async fn a_scheduler_claimed_again_keeps_its_id_and_names_the_master_that_claimed_it_last(
    test: TestDb,
) {
    let db = &test.db;
    let first = db
        .start_master("host:/srv/first", &[])
        .await
        .unwrap()
        .masterid;
    let second = db
        .start_master("host:/srv/second", &[])
        .await
        .unwrap()
        .masterid;
    let master_of = |id: i64| async move {
        sqlx::query_scalar::<_, Option<i64>>("SELECT masterid FROM schedulers WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap()
    };
    let force = db.claim_scheduler("force", first, false).await.unwrap();
    assert_eq!(master_of(force).await, Some(first));
    let nightly = db.claim_scheduler("nightly", first, false).await.unwrap();
    assert_ne!(nightly, force);
    assert_eq!(
        db.claim_scheduler("force", second, false).await.unwrap(),
        force
    );
    assert_eq!(master_of(force).await, Some(second));
    assert_eq!(
        master_of(nightly).await,
        Some(first),
        "only the one claimed"
    );
    assert_eq!(db.scheduler_id("force").await.unwrap(), force);

    // A start claims the stored ones it names in its own round trip, deleting the changes
    // classified for those that forget them; one not stored yet is left to its own claim.
    for schedulerid in [force, nightly] {
        sqlx::query(
            "INSERT INTO scheduler_changes (schedulerid, changeid, important) VALUES ($1, 1, 1)",
        )
        .bind(schedulerid)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let claims = [("force", false), ("nightly", true), ("new", false)];
    let started = db.start_master("host:/srv/first", &claims).await.unwrap();
    assert_eq!(started.masterid, first);
    let claimed: BTreeMap<_, _> = started.schedulers.into_iter().collect();
    assert_eq!(
        claimed,
        BTreeMap::from([
            ("force".to_string(), force),
            ("nightly".to_string(), nightly)
        ])
    );
    assert_eq!(master_of(force).await, Some(first));
    assert_eq!(master_of(nightly).await, Some(first));
    let classified = |id: i64| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM scheduler_changes WHERE schedulerid = $1",
        )
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap()
    };
    assert_eq!((classified(force).await, classified(nightly).await), (1, 0));
}

/// After a build the engine reads the pending requests of every builder with a free worker
/// in one statement, at most as many of each as it can start: in build order (priority,
/// then age), the claimed and complete ones left out.
async fn several_builders_pending_requests_come_in_one_read_at_most_so_many_of_each(test: TestDb) {
    let db = &test.db;
    let builders = [
        db.builder_id("linux").await.unwrap(),
        db.builder_id("windows").await.unwrap(),
    ];
    let spec = |builderid: i64, priority: i64| BuildsetSpec {
        reason: "queued".into(),
        scheduler: "force".into(),
        new_sourcestamps: vec![SourceStampSpec::default()],
        builder_ids: vec![builderid],
        priority,
        ..BuildsetSpec::default()
    };
    let mut linux = Vec::new();
    for priority in [0, 5, 0] {
        let (_, requests) = db.add_buildset(&spec(builders[0], priority)).await.unwrap();
        linux.push(requests[&builders[0]]);
    }
    let (_, requests) = db.add_buildset(&spec(builders[1], 0)).await.unwrap();
    let windows = requests[&builders[1]];
    let masterid = db.start_master("master", &[]).await.unwrap().masterid;
    assert!(db.claim_requests(&[linux[0]], masterid).await.unwrap());

    let ids = |pending: &[moonbot::db::PendingRequest]| -> Vec<i64> {
        pending.iter().map(|r| r.id).collect()
    };
    let first = db.pending_requests_of(&builders, 1).await.unwrap();
    assert_eq!(
        ids(&first[&builders[0]]),
        [linux[1]],
        "the higher priority first"
    );
    assert_eq!(ids(&first[&builders[1]]), [windows]);
    let all = db
        .pending_requests_of(&builders[..1], i64::MAX)
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "only the builders asked about");
    assert_eq!(ids(&all[&builders[0]]), [linux[1], linux[2]]);
    assert_eq!(
        all[&builders[0]],
        db.pending_requests(builders[0]).await.unwrap()
    );
}

/// The pages' own statements (`www/pages/store.rs`) on this database, through a master
/// serving them: a property filter, the waterfall's worker events, `/json`'s builder node.
async fn the_pages_own_reads_answer_on_this_database(test: TestDb) {
    let config = format!(
        r#"
local c = BuildmasterConfig
c['db_url'] = "{url}"
c['workers'] = {{ worker.LocalWorker("local") }}
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{{name="hello", command={{"echo", "hello"}}}})
c['builders'] = {{ util.BuilderConfig{{name="b", workernames={{"local"}}, factory=f}} }}
c['schedulers'] = {{ schedulers.ForceScheduler{{name="force", builderNames={{"b"}}}} }}
c['status'] = {{ status.WebStatus{{http_port="tcp:0:interface=127.0.0.1", numbuilds=2}} }}
"#,
        url = test.db_url
    );
    let basedir = test.basedir.path();
    std::fs::write(basedir.join("master.cfg.lua"), config).unwrap();
    let master =
        moonbot::master::Master::start(basedir, tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
    let ctx = &master.context;
    for owner in [
        "ann <a@example.org>",
        "ben <b@example.org>",
        "ben <b@example.org>",
    ] {
        let params = serde_json::json!({"builderNames": ["b"], "username": owner});
        let (bsid, _) = ctx
            .control
            .force("force", params.as_object().unwrap().clone())
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while ctx.db.buildset_result(bsid).await.unwrap().is_none() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the buildset completes");
    }
    let base = format!("http://{}", master.web_address.unwrap());
    let page = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            let response = reqwest::get(&url).await.unwrap();
            assert_eq!(response.status().as_u16(), 200, "{url}");
            response.text().await.unwrap()
        }
    };
    let link = regex::Regex::new(r#"href="/builders/b/builds/(\d+)""#).unwrap();
    let numbers = |page: &str| -> Vec<i64> {
        link.captures_iter(page)
            .map(|c| c[1].parse().unwrap())
            .collect()
    };
    let ann = page("/builders/b?property.owner=ann%20%3Ca%40example.org%3E").await;
    assert_eq!(numbers(&ann), [1], "{ann}");
    let waterfall = page("/waterfall?show_events=true").await;
    assert!(
        waterfall.contains(r#"connect <a href="/workers/local">local</a>"#),
        "{waterfall}"
    );
    let builder: Value = serde_json::from_str(&page("/json/builders/b").await).unwrap();
    assert_eq!(builder["cachedBuilds"], json!([2, 3]));
    assert_eq!(builder["state"], "idle");
    let last: Value = serde_json::from_str(&page("/json/builders/b/builds/-3").await).unwrap();
    assert_eq!(last["number"], 1);
    master.context.shutdown.cancel();
    master.wait().await.unwrap();
}

/// The waterfall's events: each change of a worker's `connected_to` is recorded with its
/// time, and a master that starts after a crash records the disconnect of the workers it
/// finds still attached to it; a master's events are recorded with theirs.
async fn worker_connects_and_disconnects_and_master_events_are_recorded_with_their_time(
    test: TestDb,
) {
    let db = &test.db;
    let (worker, other) = (
        db.worker_id("w1").await.unwrap(),
        db.worker_id("w2").await.unwrap(),
    );
    let master = db.start_master("master", &[]).await.unwrap().masterid;
    let before = now();
    db.set_worker_connected(worker, Some(master)).await.unwrap();
    db.set_worker_connected(worker, None).await.unwrap();
    db.set_worker_connected(worker, Some(master)).await.unwrap();
    db.set_worker_connected(other, Some(master)).await.unwrap();
    let mut batch = Batch::new();
    db.push_disconnect_workers_of(&mut batch, master);
    batch.run(db).await.unwrap();
    let events: Vec<(i64, String, f64)> =
        sqlx::query_as("SELECT workerid, event, at FROM worker_events ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let what: Vec<(i64, &str)> = events.iter().map(|(w, e, _)| (*w, e.as_str())).collect();
    let mut last_two = what[4..].to_vec();
    last_two.sort();
    assert_eq!(
        (&what[..4], last_two.as_slice()),
        (
            [
                (worker, "connect"),
                (worker, "disconnect"),
                (worker, "connect"),
                (other, "connect"),
            ]
            .as_slice(),
            [(worker, "disconnect"), (other, "disconnect")].as_slice(),
        )
    );
    assert!(events.iter().all(|(.., at)| *at >= before && *at <= now()));
    db.record_master_event(master, MasterEvent::Reconfig)
        .await
        .unwrap();
    let (masterid, event, at): (i64, String, f64) =
        sqlx::query_as("SELECT masterid, event, at FROM master_events")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((masterid, event.as_str()), (master, "reconfig"));
    assert!(at >= before && at <= now());
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM workers WHERE connected_masterid IS NOT NULL"
        )
        .await,
        0
    );
}

/// `c['eventHorizon']` bounds the events stored: the newest of each worker and of each
/// master are kept, older ones deleted as each new one is written, whether one worker's
/// state changes or every worker of a master is found disconnected.
async fn only_the_newest_event_horizon_events_of_each_worker_and_master_are_kept(test: TestDb) {
    let db = &test.db;
    db.set_event_horizon(3);
    let (worker, other) = (
        db.worker_id("w1").await.unwrap(),
        db.worker_id("w2").await.unwrap(),
    );
    let (master, other_master) = (
        db.start_master("m1", &[]).await.unwrap().masterid,
        db.start_master("m2", &[]).await.unwrap().masterid,
    );
    for _ in 0..3 {
        db.set_worker_connected(worker, Some(master)).await.unwrap();
        db.set_worker_connected(worker, None).await.unwrap();
    }
    db.set_worker_connected(other, Some(master)).await.unwrap();
    db.set_worker_connected(worker, Some(master)).await.unwrap();
    let events_of = |workerid: i64| async move {
        sqlx::query_scalar::<_, String>(
            "SELECT event FROM worker_events WHERE workerid = $1 ORDER BY id",
        )
        .bind(workerid)
        .fetch_all(&db.pool)
        .await
        .unwrap()
    };
    assert_eq!(
        events_of(worker).await,
        ["connect", "disconnect", "connect"]
    );
    assert_eq!(events_of(other).await, ["connect"]);
    let mut batch = Batch::new();
    db.push_disconnect_workers_of(&mut batch, master);
    batch.run(db).await.unwrap();
    assert_eq!(
        events_of(worker).await,
        ["disconnect", "connect", "disconnect"]
    );
    assert_eq!(events_of(other).await, ["connect", "disconnect"]);
    for _ in 0..4 {
        db.record_master_event(master, MasterEvent::Reconfig)
            .await
            .unwrap();
    }
    db.record_master_event(other_master, MasterEvent::Started)
        .await
        .unwrap();
    db.record_master_event(master, MasterEvent::Started)
        .await
        .unwrap();
    let master_events: Vec<(i64, String)> =
        sqlx::query_as("SELECT masterid, event FROM master_events ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let of = |masterid: i64| -> Vec<&str> {
        master_events
            .iter()
            .filter(|(m, _)| *m == masterid)
            .map(|(_, e)| e.as_str())
            .collect()
    };
    assert_eq!(of(master), ["reconfig", "reconfig", "started"]);
    assert_eq!(of(other_master), ["started"]);
}

/// Build and buildset properties are written many rows to a statement: more than one
/// statement holds must all arrive, and a build's later write replaces values in place.
async fn properties_past_one_statements_rows_are_all_stored(test: TestDb) {
    let db = &test.db;
    let mut properties = Properties::new();
    for n in 0..450 {
        properties.set(format!("p{n}"), json!({"n": n, "text": "it's"}), "Test");
    }
    let builderid = db.builder_id("linux").await.unwrap();
    let spec = BuildsetSpec {
        reason: "many properties".into(),
        scheduler: "force".into(),
        new_sourcestamps: vec![SourceStampSpec::default()],
        properties: properties.clone(),
        builder_ids: vec![builderid],
        ..BuildsetSpec::default()
    };
    let (bsid, requests) = db.add_buildset(&spec).await.unwrap();
    assert_eq!(
        db.buildset_properties(bsid).await.unwrap().as_dict(),
        properties.as_dict()
    );

    let (workerid, masterid) = (
        db.worker_id("local").await.unwrap(),
        db.start_master("master", &[]).await.unwrap().masterid,
    );
    let on = BuildOn {
        builderid,
        workerid,
        masterid,
    };
    let bus = Bus::default();
    let pending = db.pending_requests(builderid).await.unwrap();
    assert_eq!(pending[0].id, requests[&builderid]);
    let build = claim_and_add_build(db, &bus, &pending[0], &on)
        .await
        .unwrap()
        .expect("the request was pending");
    assert_eq!(build.number, 1);
    // What the build is made from is read in the claim's round trip.
    assert_eq!(build.buildset_properties.as_dict(), properties.as_dict());
    assert_eq!(build.sourcestamps.len(), 1);
    db.set_build_properties(build.buildid, &properties)
        .await
        .unwrap();
    assert_eq!(
        db.build_properties(build.buildid).await.unwrap().as_dict(),
        properties.as_dict()
    );
    let mut changed = Properties::new();
    changed.set("p7", json!("seven"), "Step");
    changed.set("extra", json!(true), "Step");
    db.set_build_properties(build.buildid, &changed)
        .await
        .unwrap();
    properties.update(&changed);
    assert_eq!(
        db.build_properties(build.buildid).await.unwrap().as_dict(),
        properties.as_dict()
    );
    // The builder's next build is numbered after it.
    db.add_buildset(&spec).await.unwrap();
    let pending = db.pending_requests(builderid).await.unwrap();
    let next = claim_and_add_build(db, &bus, &pending[0], &on)
        .await
        .unwrap()
        .expect("the request was pending");
    assert_eq!(next.number, 2);
    // A start after a crash finishes both builds as RETRY and puts their requests back in
    // the queue; the start after it finds nothing left to recover.
    let again = db.start_master("master", &[]).await.unwrap();
    assert_eq!(again.masterid, masterid);
    assert_eq!(again.interrupted, [build.buildid, next.buildid]);
    assert_eq!(db.pending_requests(builderid).await.unwrap().len(), 2);
    assert_eq!(
        db.start_master("master", &[]).await.unwrap().interrupted,
        Vec::<i64>::new()
    );
}

/// The outbox's queries: one row per reporter and key, due rows, failures, sent and dead
/// states, listings for one reporter or all (a NULL parameter PostgreSQL must type).
async fn the_outbox_keeps_messages_until_sent(test: TestDb) {
    let db = &test.db;
    let message = |reporter: &str, key: &str| NewMessage {
        reporter: reporter.into(),
        kind: "mail".into(),
        dedup_key: key.into(),
        summary: format!("{reporter} {key}"),
        meta: json!({"from": "bb@example.org", "to": ["a@example.org"]}),
        body: b"Subject: x\r\n\r\nnot UTF-8: \xff\r\n".to_vec(),
    };
    let first = db
        .add_outbox_message(&message("mail", "build:1"))
        .await
        .unwrap();
    assert!(first.is_some());
    assert_eq!(
        db.add_outbox_message(&message("mail", "build:1"))
            .await
            .unwrap(),
        None
    );
    let other = db
        .add_outbox_message(&message("irc", "build:1"))
        .await
        .unwrap();
    assert!(other.is_some());
    let due = db.due_outbox_messages("mail", now(), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].body, message("mail", "build:1").body);
    db.mark_outbox_failed(due[0].id, "refused", Some(now() + 60.0))
        .await
        .unwrap();
    assert!(db
        .due_outbox_messages("mail", now(), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(db.next_outbox_due("mail").await.unwrap().is_some());
    db.mark_outbox_sent(&[other.unwrap()]).await.unwrap();
    let unsent = db
        .outbox_messages(None, &["pending", "dead"])
        .await
        .unwrap();
    assert_eq!(unsent.len(), 1);
    assert_eq!(unsent[0].last_error.as_deref(), Some("refused"));
    db.mark_outbox_failed(due[0].id, "gave up", None)
        .await
        .unwrap();
    let dead = db.outbox_messages(Some("mail"), &["dead"]).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        db.unsent_outbox_counts().await.unwrap(),
        [("mail".to_string(), "dead".to_string(), 1)]
    );
    assert_eq!(db.next_outbox_due("mail").await.unwrap(), None);

    // A status about a queued request is written only while the request is.
    let spec = BuildsetSpec {
        reason: "queued".into(),
        scheduler: "force".into(),
        new_sourcestamps: vec![SourceStampSpec::default()],
        builder_ids: vec![db.builder_id("linux").await.unwrap()],
        ..BuildsetSpec::default()
    };
    let (_, requests) = db.add_buildset(&spec).await.unwrap();
    let brid = *requests.values().next().unwrap();
    let queued = |n: i64| message("github", &format!("request:{brid}:queued:{n}"));
    let while_queued = db.add_outbox_message_while_queued(&queued(1), brid).await;
    assert!(while_queued.unwrap().is_some());
    let masterid = db.start_master("claimer", &[]).await.unwrap().masterid;
    assert!(db.claim_requests(&[brid], masterid).await.unwrap());
    let once_claimed = db.add_outbox_message_while_queued(&queued(2), brid).await;
    assert_eq!(once_claimed.unwrap(), None);

    // Taken for some recipients: the rest retried alone, those refused for good recorded.
    let partly = db
        .add_outbox_message(&message("mail", "build:2"))
        .await
        .unwrap()
        .unwrap();
    let gone = Refusal {
        recipient: "gone@example.org".into(),
        answer: "550 no such user".into(),
    };
    let busy = vec!["busy@example.org".to_string()];
    db.mark_outbox_partly_sent(
        partly,
        &busy,
        std::slice::from_ref(&gone),
        "450 busy",
        Some(now()),
    )
    .await
    .unwrap();
    let due = db.due_outbox_messages("mail", now(), 10).await.unwrap();
    assert_eq!(due[0].retry_recipients, Some(busy));
    assert_eq!(due[0].refused_recipients, std::slice::from_ref(&gone));
    db.mark_outbox_partly_sent(
        partly,
        &[],
        std::slice::from_ref(&gone),
        "550 no such user",
        None,
    )
    .await
    .unwrap();
    let undelivered = db.undelivered_outbox_messages("mail").await.unwrap();
    assert_eq!(undelivered.len(), 2);
    assert_eq!(
        (undelivered[0].id, undelivered[0].state.as_str()),
        (partly, "sent")
    );
    assert!(db.has_outbox_messages("irc").await.unwrap());
    assert!(!db.has_outbox_messages("nope").await.unwrap());

    assert_eq!(db.prune_sent_outbox(now() + 1.0).await.unwrap(), 2);
}

/// The engine's queries, end to end: a master on this database runs a forced build with a
/// trigger, and its steps, logs and properties read back through the data API.
async fn a_whole_build_runs_on_this_database(test: TestDb) {
    let config = format!(
        r#"
local c = BuildmasterConfig
c['db_url'] = "{url}"
c['workers'] = {{ worker.LocalWorker("local") }}
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{{name="hello", command={{"echo", "hello"}}}})
f:addStep(steps.Trigger{{schedulerNames={{"child"}}, waitForFinish=true}})
local g = util.BuildFactory()
g:addStep(steps.SetProperty{{property="x", value="y"}})
c['builders'] = {{
  util.BuilderConfig{{name="parent", workernames={{"local"}}, factory=f}},
  util.BuilderConfig{{name="child", workernames={{"local"}}, factory=g}},
}}
c['schedulers'] = {{
  schedulers.ForceScheduler{{name="force", builderNames={{"parent"}}}},
  schedulers.Triggerable{{name="child", builderNames={{"child"}}}},
}}
"#,
        url = test.db_url
    );
    let basedir = test.basedir.path();
    std::fs::write(basedir.join("master.cfg.lua"), config).unwrap();
    let master =
        moonbot::master::Master::start(basedir, tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
    let ctx = &master.context;
    let params = serde_json::json!({"builderNames": ["parent"], "username": "a <a@example.org>"});
    let (bsid, _) = ctx
        .control
        .force("force", params.as_object().unwrap().clone())
        .await
        .unwrap();
    let result = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            if let Some(result) = ctx.db.buildset_result(bsid).await.unwrap() {
                return result;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the buildset completes");
    assert_eq!(result, moonbot::model::BuildResult::Success);
    let build = moonbot::status::snapshot::build_info(&ctx.db, 1)
        .await
        .unwrap();
    assert_eq!(build.steps.len(), 2);
    assert_eq!(
        build.properties.get("owner"),
        Some(&serde_json::json!("a <a@example.org>"))
    );
    let query =
        moonbot::data::query::Query::parse(&[], &moonbot::data::builds::BUILD, false).unwrap();
    let json = moonbot::data::builds::build(&ctx.db, 1, &query)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(json["state_string"], "build successful");
    assert_eq!(json["complete"], true);
    assert_eq!(
        count(
            &test.db,
            "SELECT COUNT(*) FROM builds WHERE complete_at IS NOT NULL"
        )
        .await,
        2
    );
    master.context.shutdown.cancel();
    master.wait().await.unwrap();
}

async fn migrations_apply_once(test: TestDb) {
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM moonbot_migrations")
        .fetch_all(&test.db.pool)
        .await
        .unwrap();
    assert_eq!(versions, vec![1, 2, 3, 4, 5]);
    let builder = test.db.builder_id("kept").await.unwrap();
    // Reopening is a no-op: nothing is applied twice and the data stays.
    let again = test.reopen().await;
    assert_eq!(
        count(&again, "SELECT COUNT(*) FROM moonbot_migrations").await,
        5
    );
    assert_eq!(again.builder_id("kept").await.unwrap(), builder);
    for table in [
        "masters",
        "builders",
        "workers",
        "builder_workers",
        "schedulers",
        "changesources",
        "patches",
        "sourcestamps",
        "changes",
        "scheduler_changes",
        "buildsets",
        "buildset_properties",
        "buildset_sourcestamps",
        "buildrequests",
        "builds",
        "build_properties",
        "steps",
        "logs",
        "logchunks",
        "object_state",
        "worker_events",
        "master_events",
    ] {
        let rows = count(&again, &format!("SELECT COUNT(*) FROM {table}")).await;
        assert_eq!(rows, i64::from(table == "builders"), "rows in {table}");
    }
}

fn full_change() -> ChangeSpec {
    ChangeSpec {
        author: "alice <alice@example.org>".into(),
        committer: Some("bob <bob@example.org>".into()),
        comments: "fix the frobnicator\n\nwith a body".into(),
        branch: Some("main".into()),
        revision: Some("0123456789abcdef".into()),
        revlink: Some("https://example.org/r/0123456789abcdef".into()),
        when: Some(1_700_000_000.25),
        category: Some("bugfix".into()),
        repository: "https://example.org/hello.git".into(),
        codebase: "hello".into(),
        project: "hello-project".into(),
        files: vec!["src/a.c".into(), "docs/ünïcode.md".into()],
        properties: vec![
            ("ticket".into(), json!(7), "Change".into()),
            ("reviewers".into(), json!(["carol", "dan"]), "Change".into()),
            (
                "meta".into(),
                json!({"ok": true, "ratio": 0.5}),
                "Gerrit".into(),
            ),
        ],
    }
}

async fn a_change_comes_back_as_stored(test: TestDb) {
    let db = &test.db;
    let spec = full_change();
    let id = db.add_change(&spec).await.unwrap();
    let (change, ssid) = db.change(id).await.unwrap();
    assert_eq!(change.number, id);
    assert_eq!(change.who, spec.author);
    assert_eq!(change.comments, spec.comments);
    assert_eq!(change.branch, spec.branch);
    assert_eq!(change.revision, spec.revision);
    assert_eq!(change.revlink, spec.revlink);
    assert_eq!(change.when, 1_700_000_000);
    assert_eq!(change.category, spec.category);
    assert_eq!(change.repository, spec.repository);
    assert_eq!(change.codebase, spec.codebase);
    assert_eq!(change.project, spec.project);
    assert_eq!(change.files, spec.files);
    let properties: BTreeMap<String, Value> = change.properties.into_iter().collect();
    let expected: BTreeMap<String, Value> = spec
        .properties
        .iter()
        .map(|(name, value, _source)| (name.clone(), value.clone()))
        .collect();
    assert_eq!(properties, expected);
    let committer: Option<String> =
        sqlx::query_scalar("SELECT committer FROM changes WHERE changeid = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(committer, spec.committer);
    let when: f64 = sqlx::query_scalar("SELECT when_timestamp FROM changes WHERE changeid = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(when, 1_700_000_000.25);

    // The change's sourcestamp describes the same code.
    let (branch, revision, repository, codebase, project): (
        Option<String>,
        Option<String>,
        String,
        String,
        String,
    ) = sqlx::query_as(
        "SELECT branch, revision, repository, codebase, project FROM sourcestamps WHERE id = $1",
    )
    .bind(ssid)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        (branch, revision, repository, codebase, project),
        (
            spec.branch.clone(),
            spec.revision.clone(),
            spec.repository.clone(),
            spec.codebase.clone(),
            spec.project.clone()
        )
    );

    // The fewest fields: NULLs and defaults come back as such; no time means now.
    let before = moonbot::db::now();
    let minimal = ChangeSpec {
        author: "eve".into(),
        ..ChangeSpec::default()
    };
    let second = db.add_change(&minimal).await.unwrap();
    assert!(second > id);
    let (change, second_ssid) = db.change(second).await.unwrap();
    assert_ne!(second_ssid, ssid);
    assert_eq!(change.who, "eve");
    assert_eq!((change.branch, change.revision), (None, None));
    assert_eq!((change.category, change.revlink), (None, None));
    assert!(change.files.is_empty() && change.properties.is_empty());
    assert!((before as i64..=moonbot::db::now() as i64 + 1).contains(&change.when));

    let missing = db.change(second + 100).await.unwrap_err();
    assert!(matches!(missing, DbError::NotFound(_)), "{missing}");
}

/// A push's changes go in as one INSERT per table, whose RETURNING rows come back in no
/// promised order: each change must still get the sourcestamp made for it, also when two
/// are alike but for their time, or alike altogether.
async fn the_changes_of_a_push_come_back_each_with_its_own_sourcestamp(test: TestDb) {
    let db = &test.db;
    let mut specs = Vec::new();
    for n in 0..150 {
        let mut spec = full_change();
        spec.author = format!("author {n}");
        spec.when = Some(1_700_000_000.0 + (n % 3) as f64 * 0.5);
        if n % 5 == 0 {
            spec.branch = None;
        }
        specs.push(spec);
    }
    let stored = db
        .add_changes(specs.clone(), Box::new(|_| {}))
        .await
        .unwrap();
    let mut sourcestamps = Vec::new();
    for (n, (change, spec)) in stored.iter().zip(&specs).enumerate() {
        let (read, sourcestampid) = db.change(change.changeid).await.unwrap();
        assert_eq!(read.who, spec.author, "change {n}");
        assert_eq!(sourcestampid, change.sourcestampid, "change {n}");
        let (branch, created_at): (Option<String>, f64) =
            sqlx::query_as("SELECT branch, created_at FROM sourcestamps WHERE id = $1")
                .bind(sourcestampid)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(
            (branch, created_at),
            (spec.branch.clone(), spec.when.unwrap())
        );
        sourcestamps.push(sourcestampid);
    }
    sourcestamps.sort_unstable();
    sourcestamps.dedup();
    assert_eq!(sourcestamps.len(), 150);
}

async fn a_buildset_keeps_its_sourcestamps_properties_and_requests(test: TestDb) {
    let db = &test.db;
    let changeid = db.add_change(&full_change()).await.unwrap();
    let (_, change_ssid) = db.change(changeid).await.unwrap();
    let builders = [
        db.builder_id("linux").await.unwrap(),
        db.builder_id("windows").await.unwrap(),
    ];
    let mut properties = Properties::new();
    properties.set("reason_code", json!(3), "Scheduler");
    properties.set("owner", json!("alice"), "Force Build Form");
    properties.set("flags", json!({"fast": true, "jobs": [1, 2]}), "Scheduler");
    let spec = BuildsetSpec {
        reason: "forced by alice".into(),
        scheduler: "force".into(),
        external_idstring: Some("ext-1".into()),
        sourcestamp_ids: vec![change_ssid],
        new_sourcestamps: vec![SourceStampSpec {
            codebase: "lib".into(),
            branch: Some("stable".into()),
            revision: None,
            repository: "https://example.org/lib.git".into(),
            project: "lib-project".into(),
        }],
        properties: properties.clone(),
        builder_ids: builders.to_vec(),
        priority: 5,
        parent_buildid: None,
        parent_relationship: None,
        waited_for: true,
    };
    let (bsid, requests) = db.add_buildset(&spec).await.unwrap();
    assert_eq!(requests.keys().copied().collect::<Vec<_>>(), {
        let mut ids = builders.to_vec();
        ids.sort();
        ids
    });
    assert_ne!(requests[&builders[0]], requests[&builders[1]]);

    assert_eq!(
        db.buildset_properties(bsid).await.unwrap().as_dict(),
        properties.as_dict()
    );

    let stamps = db.buildset_sourcestamps(bsid).await.unwrap();
    assert_eq!(stamps.len(), 2);
    // Ordered by codebase: the change's "hello", then the new "lib".
    assert_eq!(stamps[0].codebase, "hello");
    assert_eq!(stamps[0].revision.as_deref(), Some("0123456789abcdef"));
    assert_eq!(stamps[0].changes.len(), 1);
    assert_eq!(stamps[0].changes[0].number, changeid);
    assert_eq!(stamps[1].codebase, "lib");
    assert_eq!(stamps[1].branch.as_deref(), Some("stable"));
    assert_eq!(stamps[1].revision, None);
    assert_eq!(stamps[1].repository, "https://example.org/lib.git");
    assert_eq!(stamps[1].project, "lib-project");
    assert!(stamps[1].changes.is_empty());

    let (reason, scheduler, external, complete): (String, Option<String>, Option<String>, i64) =
        sqlx::query_as(
            "SELECT reason, scheduler, external_idstring, complete FROM buildsets WHERE id = $1",
        )
        .bind(bsid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        (
            reason.as_str(),
            scheduler.as_deref(),
            external.as_deref(),
            complete
        ),
        ("forced by alice", Some("force"), Some("ext-1"), 0)
    );
    for (&builderid, &brid) in &requests {
        let (bs, builder, priority, complete, waited_for): (i64, i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT buildsetid, builderid, priority, complete, waited_for \
                 FROM buildrequests WHERE id = $1",
            )
            .bind(brid)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(
            (bs, builder, priority, complete, waited_for),
            (bsid, builderid, 5, 0, 1)
        );
    }

    // A child buildset (a Trigger's): only new sourcestamps, no properties, one builder.
    let child = BuildsetSpec {
        reason: "triggered".into(),
        scheduler: "trigger".into(),
        new_sourcestamps: vec![SourceStampSpec::default()],
        builder_ids: vec![builders[0]],
        parent_buildid: Some(42),
        parent_relationship: Some("Triggered from".into()),
        ..BuildsetSpec::default()
    };
    let (child_id, child_requests) = db.add_buildset(&child).await.unwrap();
    assert!(child_id > bsid);
    assert_eq!(child_requests.len(), 1);
    assert!(db.buildset_properties(child_id).await.unwrap().is_empty());
    let stamps = db.buildset_sourcestamps(child_id).await.unwrap();
    assert_eq!(stamps.len(), 1);
    assert_eq!(
        (stamps[0].branch.clone(), stamps[0].codebase.as_str()),
        (None, "")
    );
    let (parent, relationship): (Option<i64>, Option<String>) =
        sqlx::query_as("SELECT parent_buildid, parent_relationship FROM buildsets WHERE id = $1")
            .bind(child_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        (parent, relationship.as_deref()),
        (Some(42), Some("Triggered from"))
    );
}

async fn registry_ids_are_stable(test: TestDb) {
    let db = &test.db;
    let linux = db.builder_id("linux").await.unwrap();
    let windows = db.builder_id("windows").await.unwrap();
    assert_ne!(linux, windows);
    assert_eq!(db.builder_id("linux").await.unwrap(), linux);
    let worker = db.worker_id("local").await.unwrap();
    assert_eq!(db.worker_id("local").await.unwrap(), worker);
    let other_worker = db.worker_id("remote").await.unwrap();
    assert_ne!(other_worker, worker);
    let scheduler = db.scheduler_id("force").await.unwrap();
    assert_eq!(db.scheduler_id("force").await.unwrap(), scheduler);
    let source = db.changesource_id("GitPoller:hello").await.unwrap();
    assert_eq!(db.changesource_id("GitPoller:hello").await.unwrap(), source);
    let master = db
        .start_master("host:/srv/master", &[])
        .await
        .unwrap()
        .masterid;
    assert_eq!(
        db.start_master("host:/srv/master", &[])
            .await
            .unwrap()
            .masterid,
        master
    );
    assert_ne!(
        db.start_master("other:/srv/master", &[])
            .await
            .unwrap()
            .masterid,
        master
    );
    // A restarted master sees the same ids.
    let again = test.reopen().await;
    assert_eq!(again.builder_id("windows").await.unwrap(), windows);
    assert_eq!(
        again
            .start_master("host:/srv/master", &[])
            .await
            .unwrap()
            .masterid,
        master
    );

    let tags = vec!["fast".to_string(), "ünïcode".to_string()];
    db.update_builder(
        linux,
        Some("builds on linux"),
        &tags,
        &[worker, other_worker],
    )
    .await
    .unwrap();
    let (description, stored_tags, active): (Option<String>, String, i64) =
        sqlx::query_as("SELECT description, tags, active FROM builders WHERE id = $1")
            .bind(linux)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(description.as_deref(), Some("builds on linux"));
    assert_eq!(
        serde_json::from_str::<Vec<String>>(&stored_tags).unwrap(),
        tags
    );
    assert_eq!(active, 1);
    let workers_of = |builderid: i64| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT workerid FROM builder_workers WHERE builderid = $1 ORDER BY workerid",
        )
        .bind(builderid)
        .fetch_all(&db.pool)
        .await
        .unwrap()
    };
    let mut both = vec![worker, other_worker];
    both.sort();
    assert_eq!(workers_of(linux).await, both);
    // A reconfig replaces the description, the tags and the worker list.
    db.update_builder(linux, None, &[], &[other_worker])
        .await
        .unwrap();
    let (description, stored_tags): (Option<String>, String) =
        sqlx::query_as("SELECT description, tags FROM builders WHERE id = $1")
            .bind(linux)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((description, stored_tags.as_str()), (None, "[]"));
    assert_eq!(workers_of(linux).await, vec![other_worker]);
    assert!(workers_of(windows).await.is_empty());
}

async fn log_lines_come_back_across_chunks(test: TestDb) {
    let db = &test.db;
    let logid = db.add_log(7, "stdio", "stdio", "s").await.unwrap();
    let other = db.add_log(7, "summary", "summary", "t").await.unwrap();
    assert_ne!(logid, other);
    db.append_log(logid, "hecho hi\n").await.unwrap();
    // Not a complete line: nothing is stored.
    db.append_log(logid, "").await.unwrap();
    // Above 4 KiB: compressed.
    let long: String = (0..200)
        .map(|i| format!("oline {i} ünïcode ünïcode\n"))
        .collect();
    db.append_log(logid, &long).await.unwrap();
    db.append_log(logid, "eboom\nhexit 1\n").await.unwrap();
    db.append_log(other, "just text\n").await.unwrap();

    assert_eq!(db.log_lines(logid, 0, 0).await.unwrap(), "hecho hi\n");
    assert_eq!(
        db.log_lines(logid, 0, 2).await.unwrap(),
        "hecho hi\noline 0 ünïcode ünïcode\noline 1 ünïcode ünïcode\n"
    );
    assert_eq!(
        db.log_lines(logid, 200, 1000).await.unwrap(),
        "oline 199 ünïcode ünïcode\neboom\nhexit 1\n"
    );
    let all = db.log_lines(logid, 0, i64::MAX).await.unwrap();
    assert_eq!(all, format!("hecho hi\n{long}eboom\nhexit 1\n"));
    assert_eq!(db.log_lines(logid, 500, 600).await.unwrap(), "");
    assert_eq!(db.log_lines(other, 0, 10).await.unwrap(), "just text\n");

    let (num_lines, complete): (i64, i64) =
        sqlx::query_as("SELECT num_lines, complete FROM logs WHERE id = $1")
            .bind(logid)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((num_lines, complete), (203, 0));
    // The last lines and the completion are one write.
    assert_eq!(db.finish_log(logid, "olast\n").await.unwrap(), 204);
    let complete: i64 = sqlx::query_scalar("SELECT complete FROM logs WHERE id = $1")
        .bind(logid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(complete, 1);
    assert_eq!(db.log_lines(logid, 203, 203).await.unwrap(), "olast\n");
    assert_eq!(db.finish_log(other, "").await.unwrap(), 1);

    // Small chunks are stored as they are, big ones compressed.
    let methods: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT first_line, compressed FROM logchunks WHERE logid = $1 ORDER BY first_line",
    )
    .bind(logid)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(methods, vec![(0, 0), (1, 1), (201, 0), (203, 0)]);
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT content FROM logchunks WHERE logid = $1 AND first_line = 1")
            .bind(logid)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(stored.len() < long.len() / 2, "{} bytes", stored.len());

    let missing = db.append_log(other + 100, "x\n").await.unwrap_err();
    assert!(matches!(missing, DbError::NotFound(_)), "{missing}");
}

async fn state_is_kept_and_overwritten(test: TestDb) {
    let db = &test.db;
    assert_eq!(
        db.get_state("GitPoller:hello", "lastRev").await.unwrap(),
        None
    );
    let revisions = json!({"main": "abc", "dev": "def"});
    db.set_state("GitPoller:hello", "lastRev", &revisions)
        .await
        .unwrap();
    db.set_state("GitPoller:hello", "count", &json!(1))
        .await
        .unwrap();
    db.set_state("GitPoller:other", "lastRev", &json!(null))
        .await
        .unwrap();
    assert_eq!(
        db.get_state("GitPoller:hello", "lastRev").await.unwrap(),
        Some(revisions)
    );
    db.set_state("GitPoller:hello", "lastRev", &json!({"main": "ghi"}))
        .await
        .unwrap();
    assert_eq!(
        db.get_state("GitPoller:hello", "lastRev").await.unwrap(),
        Some(json!({"main": "ghi"}))
    );
    assert_eq!(
        db.get_state("GitPoller:hello", "count").await.unwrap(),
        Some(json!(1))
    );
    assert_eq!(
        db.get_state("GitPoller:other", "lastRev").await.unwrap(),
        Some(Value::Null)
    );
    assert_eq!(
        count(db, "SELECT COUNT(*) FROM object_state").await,
        3,
        "an overwrite replaces the row"
    );
    // It survives a restart.
    let again = test.reopen().await;
    assert_eq!(
        again.get_state("GitPoller:hello", "count").await.unwrap(),
        Some(json!(1))
    );
}
