//! The REST API against a real SQLite database and a real HTTP server on 127.0.0.1:0, with
//! the control requests answered by a task standing in for the engine; what only a running
//! engine writes (workers' `connected_to`) is read from a real master.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use moonbot::bus::Bus;
use moonbot::db::{BuildsetSpec, ChangeSpec, Db};
use moonbot::model::Properties;
use moonbot::runtime::{Context, Control, ControlError, ControlRequest, Polls, Shared};
use moonbot::script::ScriptHost;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

mod support;

const CONFIG: &str = r#"
local c = BuildmasterConfig
c['workers']:append(worker.LocalWorker("bot1"))
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{ command = { "true" } })
c['builders']:append(util.BuilderConfig{ name = "linux", workernames = { "bot1" }, factory = f })
c['builders']:append(util.BuilderConfig{ name = "mac", workernames = { "bot1" }, factory = f })
c['schedulers']:append(schedulers.ForceScheduler{
  name = "force", builderNames = { "linux", "mac" },
  properties = { util.StringParameter{ name = "pr", label = "PR", default = "1" } },
})
c['status']:append(status.WebStatus{ http_port = "tcp:0:interface=127.0.0.1", authz = util.Authz{ default_action = true } })
"#;

/// Every wait of these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

/// A control request as the stand-in engine received it.
#[derive(Debug, PartialEq)]
enum Seen {
    Force(String, serde_json::Map<String, Value>),
    Stop(i64, String),
    Rebuild(i64),
    Cancel(i64, String),
}

struct Fixture {
    base: String,
    client: reqwest::Client,
    db: Db,
    seen: mpsc::UnboundedReceiver<Seen>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    ids: Ids,
    _dir: tempfile::TempDir,
}

/// What the fixture stored.
struct Ids {
    linux: i64,
    mac: i64,
    worker: i64,
    master: i64,
    change: i64,
    ssid: i64,
    bsid: i64,
    brid: i64,
    stdio: i64,
    big: i64,
}

/// Answers control requests as the engine would, refusing some to test the error paths.
async fn engine(mut requests: mpsc::Receiver<ControlRequest>, seen: mpsc::UnboundedSender<Seen>) {
    while let Some(request) = requests.recv().await {
        match request {
            ControlRequest::Force {
                scheduler,
                params,
                reply,
            } => {
                let refused = params.get("reason") == Some(&json!("fail"));
                let _ = seen.send(Seen::Force(scheduler, params));
                let _ = reply.send(if refused {
                    Err(ControlError::bad_request("'reason' is not acceptable"))
                } else {
                    Ok((42, BTreeMap::from([(1, 43), (2, 44)])))
                });
            }
            ControlRequest::StopBuild {
                buildid,
                reason,
                reply,
            } => {
                let _ = seen.send(Seen::Stop(buildid, reason));
                let _ = reply.send(if buildid == 2 {
                    Err(ControlError {
                        status: 409,
                        message: "build 2 is already finished".into(),
                    })
                } else {
                    Ok(())
                });
            }
            ControlRequest::CleanShutdown { reply, .. } => {
                let _ = reply.send(Ok(false));
            }
            ControlRequest::Rebuild { buildid, reply } => {
                let _ = seen.send(Seen::Rebuild(buildid));
                let _ = reply.send(Ok((50, BTreeMap::from([(1, 51)]))));
            }
            ControlRequest::CancelRequest {
                buildrequestid,
                reason,
                reply,
            } => {
                let _ = seen.send(Seen::Cancel(buildrequestid, reason.clone()));
                let _ = reply.send(Err(ControlError::unavailable(
                    "the master is shutting down",
                )));
            }
            // The web's other controls are tested against a real engine (tests/web_authz.rs).
            _ => panic!("the REST tests send only force, stop, rebuild and cancel"),
        }
    }
}

async fn exec(db: &Db, sql: &str) {
    sqlx::query(sql).execute(&db.pool).await.unwrap();
}

impl Fixture {
    async fn start() -> Fixture {
        let (fixture, gate) = Fixture::start_held(moonbot::www::FIRST_REQUESTS).await;
        gate.open();
        fixture
    }

    /// A fixture whose web server holds its requests, as during a master's start, until
    /// the gate opens; a request taken within `window` after it is one of the first.
    async fn start_held(window: Duration) -> (Fixture, moonbot::www::StartGate) {
        let dir = tempfile::tempdir().unwrap();
        let loaded = moonbot::config::load_source("master.cfg.lua", CONFIG, dir.path()).unwrap();
        let config = Arc::new(loaded.config);
        let script = ScriptHost::start(loaded.lua, config.script_limits).unwrap();
        let db = Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap();
        let ids = fill(&db).await;
        let (control, requests) = Control::channel();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(engine(requests, seen_tx));
        let shutdown = CancellationToken::new();
        let context = Context::new(Shared {
            db: db.clone(),
            bus: Bus::default(),
            control,
            polls: Polls::channel().0,
            script,
            config: moonbot::runtime::SharedConfig::new((*config).clone()),
            basedir: dir.path().to_path_buf(),
            masterid: ids.master.into(),
            shutdown: shutdown.clone(),
            source_endpoints: Default::default(),
        });
        let listener = moonbot::www::bind(&context).await.unwrap().unwrap();
        let base = format!("http://{}/api/v2", listener.local_addr().unwrap());
        let (gate, held) = moonbot::www::start_gate(window);
        let server = tokio::spawn(moonbot::www::serve(context, listener, held));
        let fixture = Fixture {
            base,
            client: reqwest::Client::new(),
            db,
            seen,
            shutdown,
            server,
            ids,
            _dir: dir,
        };
        (fixture, gate)
    }

    async fn request(&self, path: &str) -> (u16, Value) {
        let response = timeout(
            WAIT,
            self.client.get(format!("{}/{path}", self.base)).send(),
        )
        .await
        .unwrap()
        .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
        (status, body)
    }

    /// GETs a path that must succeed.
    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.request(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// The `field` of each item of a collection.
    async fn column(&self, path: &str, field: &str) -> Vec<Value> {
        let body = self.get(path).await;
        let (_, items) = body
            .as_object()
            .and_then(|map| map.iter().find(|(key, _)| *key != "meta"))
            .unwrap_or_else(|| panic!("{path}: {body}"));
        let items = items.as_array().unwrap();
        items.iter().map(|item| item[field].clone()).collect()
    }

    async fn rpc(&self, path: &str, body: Value) -> (u16, Value) {
        let response = timeout(
            WAIT,
            self.client
                .post(format!("{}/{path}", self.base))
                .json(&body)
                .send(),
        )
        .await
        .unwrap()
        .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn next_seen(&mut self) -> Seen {
        timeout(WAIT, self.seen.recv()).await.unwrap().unwrap()
    }
}

/// Two builders, a worker, a change, a buildset with a request, 25 builds of `linux` (ids
/// 1..=25, numbers 1..=25, odd ones finished), steps and logs for build 1.
async fn fill(db: &Db) -> Ids {
    let master = db
        .start_master("host:/srv/master", &[])
        .await
        .unwrap()
        .masterid;
    exec(
        db,
        "UPDATE masters SET active = 1, last_active = 1700000000.5",
    )
    .await;
    let linux = db.builder_id("linux").await.unwrap();
    let mac = db.builder_id("mac").await.unwrap();
    let worker = db.worker_id("bot1").await.unwrap();
    db.update_builder(
        linux,
        Some("Linux builds"),
        &["unix".into(), "fast".into()],
        &[worker],
    )
    .await
    .unwrap();
    db.update_builder(mac, None, &[], &[]).await.unwrap();
    exec(db, "UPDATE workers SET info = '{\"host\": \"h1\"}'").await;
    let scheduler = db.scheduler_id("force").await.unwrap();
    exec(
        db,
        &format!("UPDATE schedulers SET masterid = {master} WHERE id = {scheduler}"),
    )
    .await;
    db.changesource_id("poller").await.unwrap();
    let change = db
        .add_change(&ChangeSpec {
            author: "alice <alice@example.org>".into(),
            comments: "fix the frobnicator".into(),
            branch: Some("main".into()),
            revision: Some("abc123".into()),
            when: Some(1_700_000_100.7),
            repository: "https://example.org/repo.git".into(),
            project: "proj".into(),
            files: vec!["a.c".into(), "b.c".into()],
            properties: vec![("ticket".into(), json!(7), "Change".into())],
            ..ChangeSpec::default()
        })
        .await
        .unwrap();
    let ssid = db.change(change).await.unwrap().1;
    let mut properties = Properties::new();
    properties.set("owner", json!("alice"), "Force Build Form");
    properties.set("pr", json!("12"), "Force Build Form");
    let (bsid, brids) = db
        .add_buildset(&BuildsetSpec {
            reason: "a build was forced".into(),
            scheduler: "force".into(),
            sourcestamp_ids: vec![ssid],
            properties,
            builder_ids: vec![linux],
            ..BuildsetSpec::default()
        })
        .await
        .unwrap();
    let brid = brids[&linux];
    for n in 1..=25 {
        let (complete_at, results) = if n % 2 == 1 {
            (format!("{}.9", 2000 + n), (n % 3).to_string())
        } else {
            ("NULL".into(), "NULL".into())
        };
        exec(
            db,
            &format!(
                "INSERT INTO builds (number, builderid, buildrequestid, workerid, masterid, \
                 started_at, complete_at, state_string, results) VALUES \
                 ({n}, {linux}, {brid}, {worker}, {master}, {}.5, {complete_at}, 'state {n}', {results})",
                1000 + n
            ),
        )
        .await;
    }
    exec(
        db,
        "INSERT INTO build_properties (buildid, name, value, source) VALUES \
         (1, 'branch', '\"main\"', 'Build'), (1, 'got_revision', '\"abc123\"', 'Git'), \
         (2, 'branch', '\"dev\"', 'Build')",
    )
    .await;
    exec(
        db,
        "INSERT INTO steps (number, name, buildid, started_at, complete_at, state_string, \
         results, urls, hidden) VALUES \
         (0, 'git', 1, 1001.5, 1002.5, 'update', 0, '[]', 0), \
         (1, 'compile', 1, 1002.5, NULL, 'compiling', NULL, \
          '[{\"name\": \"report\", \"url\": \"http://r/1\"}]', 1)",
    )
    .await;
    let stdio = db.add_log(2, "stdio", "stdio", "s").await.unwrap();
    db.append_log(stdio, "hmake all\nocc -c a.c\nea.c:1: warning\n")
        .await
        .unwrap();
    db.finish_log(stdio, "").await.unwrap();
    let big = db
        .add_log(2, "big output", "big_output", "t")
        .await
        .unwrap();
    let lines: String = (0..2500).map(|i| format!("line {i}\n")).collect();
    db.append_log(big, &lines).await.unwrap();
    Ids {
        linux,
        mac,
        worker,
        master,
        change,
        ssid,
        bsid,
        brid,
        stdio,
        big,
    }
}

#[tokio::test]
async fn resources_have_buildbots_shapes() {
    let f = Fixture::start().await;
    let Ids {
        linux,
        mac,
        worker,
        master,
        change,
        ssid,
        bsid,
        brid,
        stdio,
        ..
    } = f.ids;
    let body = f.get("builds/1").await;
    assert_eq!(
        body,
        json!({"builds": [{
            "buildid": 1, "number": 1, "builderid": linux, "buildrequestid": brid,
            "workerid": worker, "masterid": master, "started_at": 1001, "complete": true,
            "complete_at": 2001, "locks_duration_s": 0, "state_string": "state 1",
            "results": 1, "properties": {}
        }], "meta": {}})
    );
    let build2 = &f.get("builds/2").await["builds"][0];
    assert_eq!(
        (
            &build2["complete"],
            &build2["complete_at"],
            &build2["results"]
        ),
        (&json!(false), &Value::Null, &Value::Null)
    );
    let sourcestamp = json!({
        "ssid": ssid, "branch": "main", "revision": "abc123", "project": "proj",
        "repository": "https://example.org/repo.git", "codebase": "", "created_at": 1700000100,
        "patch": null
    });
    assert_eq!(
        f.get(&format!("changes/{change}")).await["changes"][0],
        json!({
            "changeid": change, "author": "alice <alice@example.org>", "committer": null,
            "comments": "fix the frobnicator", "branch": "main", "revision": "abc123",
            "revlink": null, "when_timestamp": 1700000100, "category": null,
            "repository": "https://example.org/repo.git", "codebase": "", "project": "proj",
            "files": ["a.c", "b.c"], "properties": {"ticket": [7, "Change"]},
            "parent_changeids": [], "sourcestamp": sourcestamp
        })
    );
    let buildset = &f.get(&format!("buildsets/{bsid}")).await["buildsets"][0];
    assert_eq!(buildset["sourcestamps"], json!([sourcestamp]));
    assert_eq!(
        (
            &buildset["reason"],
            &buildset["complete"],
            &buildset["parent_buildid"]
        ),
        (&json!("a build was forced"), &json!(false), &Value::Null)
    );
    assert!(buildset["submitted_at"].is_i64());
    let request = &f.get(&format!("buildrequests/{brid}")).await["buildrequests"][0];
    assert_eq!(
        (
            &request["buildsetid"],
            &request["builderid"],
            &request["claimed"],
            &request["properties"]
        ),
        (&json!(bsid), &json!(linux), &json!(false), &Value::Null)
    );
    assert_eq!(
        f.get("builders").await,
        json!({"builders": [
            {"builderid": linux, "name": "linux", "masterids": [master],
             "description": "Linux builds", "description_format": null,
             "description_html": null, "projectid": null, "tags": ["unix", "fast"]},
            {"builderid": mac, "name": "mac", "masterids": [master], "description": null,
             "description_format": null, "description_html": null, "projectid": null,
             "tags": []}
        ], "meta": {"total": 2}})
    );
    assert_eq!(
        f.get("workers").await["workers"],
        json!([{"workerid": worker, "name": "bot1", "workerinfo": {"host": "h1"},
                "paused": false, "pause_reason": null, "graceful": false,
                "connected_to": [],
                "configured_on": [{"masterid": master, "builderid": linux}]}])
    );
    let master_json = json!({"masterid": master, "name": "host:/srv/master", "active": true,
                             "last_active": 1700000000, "last_reconfig": null});
    assert_eq!(f.get("masters").await["masters"], json!([master_json]));
    assert_eq!(
        f.get("schedulers").await["schedulers"],
        json!([{"schedulerid": 1, "name": "force", "enabled": true, "master": master_json}])
    );
    assert_eq!(
        f.get("changesources").await["changesources"],
        json!([{"changesourceid": 1, "name": "poller", "master": null}])
    );
    assert_eq!(
        f.get("builds/1/steps").await["steps"][1],
        json!({"stepid": 2, "number": 1, "name": "compile", "buildid": 1,
               "started_at": 1002, "locks_acquired_at": 1002, "complete": false,
               "complete_at": null, "state_string": "compiling", "results": null,
               "urls": [{"name": "report", "url": "http://r/1"}], "hidden": true})
    );
    assert_eq!(
        f.get(&format!("logs/{stdio}")).await["logs"][0],
        json!({"logid": stdio, "name": "stdio", "slug": "stdio", "stepid": 2,
               "complete": true, "num_lines": 3, "type": "s"})
    );
    let force = &f.get("forceschedulers/force").await["forceschedulers"][0];
    assert_eq!(
        (
            &force["name"],
            &force["button_name"],
            &force["builder_names"],
            &force["enabled"]
        ),
        (
            &json!("force"),
            &json!("force"),
            &json!(["linux", "mac"]),
            &json!(true)
        )
    );
    let fields = force["all_fields"].as_array().unwrap();
    let names: Vec<&Value> = fields[0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["fullName"])
        .collect();
    assert_eq!(
        names,
        [&json!("username"), &json!("reason"), &json!("priority")]
    );
    assert_eq!(fields[0]["type"], "nested");
    assert_eq!(
        (
            &fields[0]["fields"][1]["type"],
            &fields[0]["fields"][1]["default"]
        ),
        (&json!("text"), &json!("force build"))
    );
    let codebase: Vec<&Value> = fields[1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["name"])
        .collect();
    assert_eq!(
        codebase,
        [
            &json!("branch"),
            &json!("project"),
            &json!("repository"),
            &json!("revision")
        ]
    );
    assert_eq!(fields[1]["columns"], 2);
    assert_eq!(
        (
            &fields[2]["name"],
            &fields[2]["label"],
            &fields[2]["default"],
            &fields[2]["required"]
        ),
        (&json!("pr"), &json!("PR"), &json!("1"), &json!(false))
    );
    assert_eq!(
        f.column("builders/2/forceschedulers", "name").await,
        [json!("force")]
    );
    f.shutdown.cancel();
    timeout(WAIT, f.server).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn nested_paths_name_the_same_resources() {
    let f = Fixture::start().await;
    let Ids {
        linux,
        worker,
        master,
        change,
        ssid,
        bsid,
        brid,
        stdio,
        ..
    } = f.ids;
    let build3 = f.get("builds/3").await;
    assert_eq!(f.get(&format!("builders/{linux}/builds/3")).await, build3);
    assert_eq!(f.get("builders/linux/builds/3").await, build3);
    let all = f.get("builds").await;
    assert_eq!(all["meta"]["total"], 25);
    for path in [
        format!("builders/{linux}/builds"),
        "builders/linux/builds".into(),
        format!("workers/{worker}/builds"),
        format!("buildrequests/{brid}/builds"),
        format!("changes/{change}/builds"),
    ] {
        assert_eq!(f.get(&path).await, all, "{path}");
    }
    assert_eq!(f.get("builders/mac/builds").await["meta"]["total"], 0);
    assert_eq!(f.get("builders/nosuch/builds").await["meta"]["total"], 0);
    assert_eq!(f.get("builds/1/triggered_builds").await["meta"]["total"], 0);
    let step = f.get("steps/2").await;
    assert_eq!(f.get("builds/1/steps/1").await, step);
    assert_eq!(f.get("builds/1/steps/compile").await, step);
    assert_eq!(f.get("builders/linux/builds/1/steps/compile").await, step);
    let log = f.get(&format!("logs/{stdio}")).await;
    assert_eq!(f.get("steps/2/logs/stdio").await, log);
    assert_eq!(f.get("builds/1/steps/compile/logs/stdio").await, log);
    assert_eq!(
        f.get(&format!("builders/{linux}/builds/1/steps/1/logs/stdio"))
            .await,
        log
    );
    assert_eq!(
        f.column("builds/1/steps/compile/logs", "slug").await,
        [json!("stdio"), json!("big_output")]
    );
    assert_eq!(
        f.column("builds/1/changes", "changeid").await,
        [json!(change)]
    );
    assert_eq!(
        f.column(&format!("sourcestamps/{ssid}/changes"), "changeid")
            .await,
        [json!(change)]
    );
    assert_eq!(
        f.column(&format!("buildsets/{bsid}/sourcestamps"), "ssid")
            .await,
        [json!(ssid)]
    );
    assert_eq!(
        f.column(&format!("builders/{linux}/buildrequests"), "buildrequestid")
            .await,
        [json!(brid)]
    );
    assert_eq!(
        f.column(&format!("builders/{linux}/workers"), "name").await,
        [json!("bot1")]
    );
    assert_eq!(
        f.column(&format!("masters/{master}/builders"), "name")
            .await,
        [json!("linux"), json!("mac")]
    );
    assert_eq!(
        f.column(&format!("masters/{}/builders", master + 1), "name")
            .await,
        Vec::<Value>::new(),
        "a master that is not active has no builders"
    );
    assert_eq!(
        f.column(&format!("workers/{worker}/builders"), "name")
            .await,
        [json!("linux")]
    );
    assert_eq!(
        f.column(&format!("builders/{linux}/masters"), "masterid")
            .await,
        [json!(master)]
    );
    assert_eq!(
        f.get("workers/bot1").await,
        f.get(&format!("workers/{worker}")).await
    );
    assert_eq!(
        f.request(&format!("builders/{}/workers/bot1", f.ids.mac))
            .await
            .0,
        404
    );
    assert_eq!(
        f.request(&format!("masters/{}/schedulers/1", master + 1))
            .await
            .0,
        404
    );
    f.get(&format!("masters/{master}/schedulers/1")).await;
}

#[tokio::test]
async fn query_parameters_filter_order_page_and_select() {
    let f = Fixture::start().await;
    let numbers = |values: Vec<Value>| {
        values
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    let page = f.get("builds?order=-number&limit=5&offset=2").await;
    assert_eq!(page["meta"]["total"], 25);
    let got: Vec<i64> = page["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["number"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [23, 22, 21, 20, 19]);
    let cases: &[(&str, Vec<i64>)] = &[
        ("builds?number__lt=4", vec![1, 2, 3]),
        ("builds?number__le=2", vec![1, 2]),
        ("builds?number__gt=23", vec![24, 25]),
        ("builds?number__ge=24&order=-number", vec![25, 24]),
        ("builds?number=3", vec![3]),
        ("builds?number=3&number=5", vec![3, 5]),
        ("builds?number__in=7&number__in=9", vec![7, 9]),
        ("builds?number__ne=1&number__lt=4", vec![2, 3]),
        (
            "builds?number__notin=1&number__notin=2&number__lt=5",
            vec![3, 4],
        ),
        ("builds?complete=true&number__lt=6", vec![1, 3, 5]),
        ("builds?complete__eq=no&number__lt=6", vec![2, 4]),
        ("builds?results=0&order=number", vec![3, 9, 15, 21]),
        (
            "builds?state_string__contains=state 2&number__lt=22",
            vec![2, 20, 21],
        ),
        ("builds?started_at__ge=1024", vec![24, 25]),
        ("builds?complete_at__lt=2004", vec![1, 3]),
        (
            "builds?order=results&order=-number&limit=4",
            vec![24, 22, 20, 18],
        ),
    ];
    for (path, expected) in cases {
        assert_eq!(&numbers(f.column(path, "number").await), expected, "{path}");
    }
    assert_eq!(
        f.get("builds?complete=1&limit=2").await["meta"]["total"],
        13
    );
    let selected = f.get("builds/1?field=buildid&field=number").await;
    assert_eq!(selected["builds"], json!([{"buildid": 1, "number": 1}]));
    let selected = f.get("builds?field=number&order=-number&limit=1").await;
    assert_eq!(selected["builds"], json!([{"number": 25}]));
    // Properties only when asked, and only those asked.
    assert_eq!(
        f.get("builds/1?property=branch").await["builds"][0]["properties"],
        json!({"branch": ["main", "Build"]})
    );
    let props = f.get("builds?property=*&number__lt=4").await;
    let props: Vec<&Value> = props["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["properties"])
        .collect();
    assert_eq!(
        props,
        [
            &json!({"branch": ["main", "Build"], "got_revision": ["abc123", "Git"]}),
            &json!({"branch": ["dev", "Build"]}),
            &json!({}),
        ]
    );
    assert_eq!(
        f.get(&format!("buildrequests/{}?property=pr", f.ids.brid))
            .await["buildrequests"][0]["properties"],
        json!({"pr": ["12", "Force Build Form"]})
    );
    // Fields without a column are filtered and paged in memory, with the same meaning.
    let tagged = f.get("builders?tags__contains=unix&limit=1").await;
    assert_eq!(
        (
            tagged["meta"]["total"].clone(),
            tagged["builders"][0]["name"].clone()
        ),
        (json!(1), json!("linux"))
    );
    assert_eq!(
        f.column("changes?files__contains=b.c", "changeid").await,
        [json!(f.ids.change)]
    );
    assert!(f
        .column("changes?files__contains=z.c", "changeid")
        .await
        .is_empty());
    assert_eq!(
        f.column("builders?order=-name", "name").await,
        [json!("mac"), json!("linux")]
    );
    // Compact JSON for clients that accept it, indented text for the others.
    let response = f
        .client
        .get(format!("{}/builds/1", f.base))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert!(!response.text().await.unwrap().contains('\n'));
    let response = f
        .client
        .get(format!("{}/builds/1", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert!(response.text().await.unwrap().contains("\n  \"builds\""));
}

#[tokio::test]
async fn log_contents_and_raw_text() {
    let f = Fixture::start().await;
    let Ids { stdio, big, .. } = f.ids;
    assert_eq!(
        f.get(&format!("logs/{stdio}/contents")).await,
        json!({"logchunks": [{"logid": stdio, "firstline": 0,
            "content": "hmake all\nocc -c a.c\nea.c:1: warning\n"}], "meta": {}})
    );
    assert_eq!(
        f.get("builds/1/steps/compile/logs/stdio/contents?offset=1&limit=1")
            .await["logchunks"][0],
        json!({"logid": stdio, "firstline": 1, "content": "occ -c a.c\n"})
    );
    assert_eq!(
        f.request(&format!("logs/{stdio}/contents?offset=5&limit=0"))
            .await
            .0,
        404
    );
    let response = f
        .client
        .get(format!("{}/logs/{stdio}/raw", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=linux_build_1_step_compile_log_stdio"
    );
    assert_eq!(
        response.text().await.unwrap(),
        "Builder: linux\nBuild number: 1\nWorker name: bot1\nmake all\ncc -c a.c\na.c:1: warning\n"
    );
    let response = f
        .client
        .get(format!("{}/steps/2/logs/big_output/raw_inline", f.base))
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("content-disposition").is_none());
    let text = response.text().await.unwrap();
    let expected: String = (0..2500).map(|i| format!("line {i}\n")).collect();
    assert_eq!(text, expected);
    assert_eq!(
        f.get(&format!("logs/{big}")).await["logs"][0]["num_lines"],
        2500
    );
    assert_eq!(f.request("logs/999/raw").await.0, 404);
}

#[tokio::test]
async fn errors_say_what_was_wrong() {
    let f = Fixture::start().await;
    let cases = [
        ("nosuch", 404, "invalid path: nosuch"),
        ("builds/", 404, "invalid path: builds/"),
        ("builds/999", 404, "build not found: builds/999"),
        (
            "builders/nosuch/builds/1",
            404,
            "build not found: builders/nosuch/builds/1",
        ),
        ("builds/1/steps/9", 404, "step not found: builds/1/steps/9"),
        ("builds/999/steps/x/logs", 200, ""),
        (
            "forceschedulers/nosuch",
            404,
            "forcescheduler not found: forceschedulers/nosuch",
        ),
        (
            "builds?colour=red",
            400,
            "unrecognized query parameter 'colour'",
        ),
        ("builds?number=abc", 400, "invalid filter value for number"),
        ("builds?limit=ten", 400, "invalid limit"),
        ("builds?order=-size", 400, "no such field 'size'"),
        (
            "builds?field=number&order=buildid",
            400,
            "cannot order on un-selected fields",
        ),
        ("builds/1?number=1", 400, "this is not a collection"),
    ];
    for (path, status, message) in cases {
        let (got, body) = f.request(path).await;
        assert_eq!(got, status, "{path}: {body}");
        if status != 200 {
            assert_eq!(body, json!({"error": message}), "{path}");
        }
    }
}

#[tokio::test]
async fn control_calls_reach_the_engine_and_its_answers_come_back() {
    let mut f = Fixture::start().await;
    let call = |method: &str, params: Value| json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
    let (status, body) = f
        .rpc(
            "forceschedulers/force",
            call("force", json!({"builderid": 1, "reason": "try", "pr": "9"})),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"jsonrpc": "2.0", "id": 1, "result": [42, {"1": 43, "2": 44}]})
        )
    );
    let Seen::Force(scheduler, params) = f.next_seen().await else {
        panic!("not a force request");
    };
    assert_eq!(scheduler, "force");
    assert_eq!(
        Value::Object(params),
        json!({"builderid": 1, "reason": "try", "pr": "9", "owner": "anonymous"})
    );
    let (status, body) = f
        .rpc(
            "forceschedulers/force",
            call("force", json!({"reason": "fail"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        json!({"code": -32602, "message": "'reason' is not acceptable"})
    );
    f.next_seen().await;
    let (status, body) = f
        .rpc("forceschedulers/nosuch", call("force", json!({})))
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!(-32600))
    );

    let (status, body) = f
        .rpc(
            "builders/linux/builds/3",
            call("stop", json!({"reason": "enough"})),
        )
        .await;
    assert_eq!((status, body["result"].clone()), (200, Value::Null));
    assert_eq!(f.next_seen().await, Seen::Stop(3, "enough".into()));
    let (status, body) = f.rpc("builds/2", call("stop", json!({}))).await;
    assert_eq!(
        (status, body["error"]["message"].clone()),
        (409, json!("build 2 is already finished"))
    );
    assert_eq!(f.next_seen().await, Seen::Stop(2, "no reason".into()));
    let (status, _) = f.rpc("builds/999", call("stop", json!({}))).await;
    assert_eq!(status, 404);

    let (status, body) = f.rpc("builds/4", call("rebuild", json!({}))).await;
    assert_eq!(
        (status, body["result"].clone()),
        (200, json!([50, {"1": 51}]))
    );
    assert_eq!(f.next_seen().await, Seen::Rebuild(4));

    let brid = f.ids.brid;
    let (status, body) = f
        .rpc(
            &format!("buildrequests/{brid}"),
            call("cancel", json!({"reason": "dup"})),
        )
        .await;
    assert_eq!(status, 503);
    assert_eq!(
        body["error"],
        json!({"code": -32603, "message": "the master is shutting down"})
    );
    assert_eq!(f.next_seen().await, Seen::Cancel(brid, "dup".into()));

    let (status, _) = f.rpc("workers/nosuch", call("stop", json!({}))).await;
    assert_eq!(status, 404);

    let (status, body) = f.rpc("builds/4", call("explode", json!({}))).await;
    assert_eq!(
        (status, body["error"].clone()),
        (
            501,
            json!({"code": -32601, "message": "action: explode is not supported"})
        )
    );
    let (status, body) = f
        .rpc(
            "builds/4",
            json!({"jsonrpc": "2.0", "method": "stop", "id": 3}),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"jsonrpc": "2.0", "error": {"code": -32600, "message": "missing key 'params'"}})
        )
    );
    let (status, body) = f.rpc("builds/4", json!([1])).await;
    assert_eq!(
        (status, body["error"]["message"].clone()),
        (400, json!("JSONRPC batch requests are not supported"))
    );
    let response = f
        .client
        .post(format!("{}/builds/4", f.base))
        .header("Content-Type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32700);
    let response = f
        .client
        .post(format!("{}/builds/4", f.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Invalid content-type (use application/json)"
    );
    // The database is untouched by control calls: the engine owns the changes.
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM buildsets")
        .fetch_one(&f.db.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn no_web_server_without_a_web_status() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = moonbot::config::load_source("master.cfg.lua", "", dir.path()).unwrap();
    let config = Arc::new(loaded.config);
    let context = Context::new(Shared {
        db: Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap(),
        bus: Bus::default(),
        control: Control::channel().0,
        polls: Polls::channel().0,
        script: ScriptHost::start(loaded.lua, config.script_limits).unwrap(),
        config: moonbot::runtime::SharedConfig::new((*config).clone()),
        basedir: dir.path().to_path_buf(),
        masterid: 1.into(),
        shutdown: CancellationToken::new(),
        source_endpoints: Default::default(),
    });
    assert!(moonbot::www::bind(&context).await.unwrap().is_none());
}

// ---- pages the database writes as JSON ---------------------------------------------------

const POSTGRES_ENV: &str = "MOONBOT_TEST_POSTGRES_URL";

/// A PostgreSQL database of the test's own, dropped when this is.
struct PostgresDb {
    admin_url: String,
    name: String,
}

impl PostgresDb {
    async fn create() -> (PostgresDb, Db) {
        use sqlx::{Connection, Executor};
        let admin_url = std::env::var(POSTGRES_ENV).unwrap_or_else(|_| {
            panic!(
                "{POSTGRES_ENV} is not set: this test needs a PostgreSQL server; run it with \
                 scripts/test, which starts one and sets it"
            )
        });
        let name = format!("moonbot_rest_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        admin.close().await.unwrap();
        let (url, query) = admin_url.split_once('?').unwrap_or((&admin_url, ""));
        let (server, _) = url.rsplit_once('/').expect("a database in the URL");
        let db_url = match query {
            "" => format!("{server}/{name}"),
            query => format!("{server}/{name}?{query}"),
        };
        let db = Db::open(&db_url, std::path::Path::new("/")).await.unwrap();
        (PostgresDb { admin_url, name }, db)
    }
}

impl Drop for PostgresDb {
    fn drop(&mut self) {
        use sqlx::{Connection, Executor};
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Outside async code (and also after a panic): a runtime on a thread of its own.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
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

/// Builds and steps with every kind of value: NULLs, fractional times, strings that need
/// escaping, JSON columns spaced in different ways.
async fn fill_for_json(db: &Db) {
    let texts = [
        "plain",
        "a \"quote\" and a \\ backslash",
        "line\nbreak\tand tab\r",
        "control \u{1} \u{1f} del \u{7f}",
        "unicode é ü 漢字 🦀 / slash",
        "",
    ];
    // Negative numbers stand for NULL: the values bound are never NULL.
    for n in 1..=30i64 {
        let started = 1_000.0 + n as f64 * 10.75;
        let complete = n % 3 != 0;
        sqlx::query(
            "INSERT INTO builds (number, builderid, buildrequestid, workerid, masterid, \
             started_at, complete_at, locks_duration_s, state_string, results) \
             VALUES ($1, $2, $3, CASE WHEN $4 < 0 THEN NULL ELSE $4 END, 1, $5, \
             CASE WHEN $6 < 0 THEN NULL ELSE $6 END, $7, $8, \
             CASE WHEN $9 < 0 THEN NULL ELSE $9 END)",
        )
        .bind(n)
        .bind(1 + n % 2)
        .bind(100 + n)
        .bind(if n % 5 == 0 { -1 } else { 3i64 })
        .bind(started)
        .bind(if complete { started + 5.5 } else { -1.0 })
        .bind(n as f64 * 0.75)
        .bind(format!("{} {n}", texts[n as usize % texts.len()]))
        .bind(if complete { n % 4 } else { -1 })
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let urls = [
        "[]",
        "[{\"name\": \"report\", \"url\": \"http://r/1\"}]",
        "[ { \"name\":\"a \\\"b\\\"\",\"url\":\"http://r/2?x=1&y=[2]\" } , {\"name\": \"c\", \"url\": \"d\"} ]",
    ];
    for n in 0..6i64 {
        let started = if n == 5 { -1.0 } else { 2_000.25 + n as f64 };
        let complete = n % 2 == 0 && started > 0.0;
        sqlx::query(
            "INSERT INTO steps (number, name, buildid, started_at, complete_at, state_string, \
             results, urls, hidden) VALUES ($1, $2, 1, CASE WHEN $3 < 0 THEN NULL ELSE $3 END, \
             CASE WHEN $4 < 0 THEN NULL ELSE $4 END, $5, CASE WHEN $6 < 0 THEN NULL ELSE $6 END, \
             $7, $8)",
        )
        .bind(n)
        .bind(format!("step {n}"))
        .bind(started)
        .bind(if complete { started + 1.0 } else { -1.0 })
        .bind(texts[n as usize % texts.len()])
        .bind(if complete { n } else { -1 })
        .bind(urls[n as usize % urls.len()])
        .bind(n % 2)
        .execute(&db.pool)
        .await
        .unwrap();
    }
}

fn parse_query(text: &str, entity: &moonbot::data::Entity) -> moonbot::data::Query {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect();
    moonbot::data::Query::parse(&pairs, entity, true).unwrap()
}

/// Each page the database writes as JSON is, byte for byte, the page of JSON values the
/// general path reads, serialized; and what the SQL cannot do falls back to that path.
async fn database_json_equals_values(db: &Db) {
    use moonbot::data::builds::{self, BuildsOf};
    fill_for_json(db).await;
    let build_queries = [
        "",
        "limit=5",
        "limit=5&offset=3",
        "offset=28",
        "limit=0",
        "order=-number&limit=7",
        "order=-started_at&order=number",
        "complete=true",
        "complete=false&limit=3",
        "results__ne=0&order=-buildid",
        "state_string__contains=quote",
        "field=number&field=complete&limit=4",
        "field=buildid&field=properties",
        "workerid__in=3&number__gt=5&number__lt=12",
        "complete_at__ge=1100&limit=4&offset=1",
    ];
    let of_all = BuildsOf::default();
    let of_builder = BuildsOf {
        builderid: Some(2),
        ..BuildsOf::default()
    };
    for of in [&of_all, &of_builder] {
        for text in build_queries {
            let query = parse_query(text, &builds::BUILD);
            let values = builds::builds(db, of, &query).await.unwrap();
            let page = builds::builds_json(db, of, &query)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("builds?{text} was not written by the database"));
            assert_eq!(
                page.array,
                serde_json::to_string(&values.items).unwrap(),
                "{of:?} builds?{text}"
            );
            assert_eq!(page.total, values.total, "{of:?} builds?{text}");
        }
    }
    for text in ["property=*", "property=branch&limit=2"] {
        let query = parse_query(text, &builds::BUILD);
        assert_eq!(
            builds::builds_json(db, &of_all, &query).await.unwrap(),
            None
        );
    }
    for text in [
        "",
        "limit=2&offset=1",
        "hidden=true",
        "field=urls&field=name",
        "order=-number",
        "complete=no&field=complete&field=locks_acquired_at&field=stepid",
    ] {
        let query = parse_query(text, &builds::STEP);
        let values = builds::steps(db, 1, &query).await.unwrap();
        let page = builds::steps_json(db, 1, &query).await.unwrap().unwrap();
        assert_eq!(
            page.array,
            serde_json::to_string(&values.items).unwrap(),
            "steps?{text}"
        );
        assert_eq!(page.total, values.total, "steps?{text}");
    }
}

#[tokio::test]
async fn database_json_equals_values_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open("sqlite:///state.sqlite", dir.path())
        .await
        .unwrap();
    database_json_equals_values(&db).await;
}

#[tokio::test]
async fn database_json_equals_values_on_postgres() {
    let (_database, db) = PostgresDb::create().await;
    database_json_equals_values(&db).await;
}

/// Pages the database writes are answered as the others: indented as serde_json indents,
/// or compact for clients that accept JSON.
#[tokio::test]
async fn database_json_is_answered_as_values_are() {
    let f = Fixture::start().await;
    for path in ["builds?limit=3", "builds/1/steps", "builds?limit=0"] {
        let url = format!("{}/{path}", f.base);
        let text = timeout(WAIT, async {
            f.client.get(&url).send().await?.text().await
        })
        .await
        .unwrap()
        .unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            text,
            serde_json::to_string_pretty(&value).unwrap(),
            "{path}"
        );
        let compact = timeout(WAIT, async {
            f.client
                .get(&url)
                .header("Accept", "application/json")
                .send()
                .await?
                .text()
                .await
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(compact, serde_json::to_string(&value).unwrap(), "{path}");
    }
    let steps = f.get("builds/1/steps").await;
    assert_eq!(steps["meta"]["total"], 2);
    assert_eq!(steps["steps"][1]["hidden"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_show_the_master_they_are_attached_to_until_they_are_detached() {
    let dir = tempfile::tempdir().unwrap();
    let config = |workers: &str| {
        format!(
            r#"
local c = BuildmasterConfig
c['workers'] = {{ {workers} }}
c['status'] = {{ status.WebStatus{{http_port="tcp:0:interface=127.0.0.1", authz=util.Authz{{default_action=true}}}} }}
"#
        )
    };
    let both = config(r#"worker.LocalWorker("w1"), worker.LocalWorker("w2")"#);
    let mut master = support::start(dir.path(), &both).await;
    let api = format!("http://{}/api/v2", master.web_address.unwrap());
    let masterid = master.context.masterid.get();
    let connected = || async {
        let body = support::get_json(&format!("{api}/workers")).await;
        body["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| (w["name"].clone(), w["connected_to"].clone()))
            .collect::<Vec<_>>()
    };
    // A start answers before its workers' rows are written; they attach just after.
    let both_attached = vec![
        (json!("w1"), json!([{ "masterid": masterid }])),
        (json!("w2"), json!([{ "masterid": masterid }])),
    ];
    let deadline = std::time::Instant::now() + WAIT;
    while connected().await != both_attached {
        assert!(
            std::time::Instant::now() < deadline,
            "the workers never attached: {:?}",
            connected().await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::write(
        dir.path().join("master.cfg.lua"),
        config(r#"worker.LocalWorker("w1")"#),
    )
    .unwrap();
    let outcome = master.reconfig().await;
    assert!(outcome.ok, "{}", outcome.line);
    assert_eq!(
        connected().await,
        vec![
            (json!("w1"), json!([{ "masterid": masterid }])),
            (json!("w2"), json!([]))
        ]
    );
    let db = master.context.db.clone();
    master.context.shutdown.cancel();
    master.wait().await.unwrap();
    let attached: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM workers WHERE connected_masterid IS NOT NULL")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(attached, 0, "a stopped master holds no worker");
}

/// A master is active from its registration on; a start that fails after it (its workers'
/// port taken) leaves it inactive, and the next start, active again. A web port taken
/// fails the start before the registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_fails_leaves_its_master_inactive_and_the_next_one_active() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let with_status = |status: &str| {
        format!(
            "local c = BuildmasterConfig\n\
             c['protocols'] = {{ msgpack_experimental_v7 = {{ port = 'tcp:{port}:interface=127.0.0.1' }} }}\n\
             c['status'] = {{ {status} }}\n"
        )
    };
    // Starts a master on `config`, a start that must fail: its error, and the masters'
    // `active` flags it left.
    let basedir = dir.path();
    let failed_start = |config: String| async move {
        std::fs::write(basedir.join("master.cfg.lua"), config).unwrap();
        let error = moonbot::master::Master::start(basedir, CancellationToken::new())
            .await
            .err()
            .expect("the start fails");
        let db = Db::open("sqlite:///state.sqlite", basedir).await.unwrap();
        let active: Vec<i64> = sqlx::query_scalar("SELECT active FROM masters")
            .fetch_all(&db.pool)
            .await
            .unwrap();
        db.close().await;
        (format!("{error:#}"), active)
    };
    let (error, active) = failed_start(with_status(&format!(
        "status.WebStatus{{http_port='tcp:{port}:interface=127.0.0.1'}}"
    )))
    .await;
    assert!(error.contains("cannot listen"), "{error}");
    assert_eq!(active, Vec::<i64>::new(), "not registered");

    // The web server on a free port, the workers' port taken: the engine fails after the
    // registration.
    let config = with_status("status.WebStatus{http_port='tcp:0:interface=127.0.0.1'}");
    let (error, active) = failed_start(config.clone()).await;
    assert!(error.contains("listen"), "{error}");
    assert_eq!(active, [0]);

    drop(taken);
    let master = support::start(dir.path(), &config).await;
    let masters = support::get_json(&format!(
        "http://{}/api/v2/masters",
        master.web_address.unwrap()
    ))
    .await;
    assert_eq!(masters["masters"][0]["active"], true, "{masters}");
    master.context.shutdown.cancel();
    master.wait().await.unwrap();
}

/// A request taken just after the start's gate opens (a probe that saw the port accept) is
/// one of the start's first: the work the start left for later waits for its answer too.
/// With none, that work waits only for the window to pass.
#[tokio::test]
async fn the_work_a_start_leaves_waits_for_a_request_taken_as_it_opens() {
    use tokio::io::AsyncWriteExt;
    // A window as long as the test, so that the request surely falls within it.
    let (f, gate) = Fixture::start_held(Duration::from_secs(60)).await;
    let address = f
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/api/v2");
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    let answered = gate.open();
    // Its body never comes: the handler waits for it, unanswered.
    slow.write_all(
        b"POST /api/v2/forceschedulers/force HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n",
    )
    .await
    .unwrap();
    let waiting = tokio::spawn(answered.wait());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "done before the first request's answer"
    );
    let call = format!(
        "{:<100}",
        r#"{"jsonrpc": "2.0", "method": "force", "id": 1}"#
    );
    slow.write_all(call.as_bytes()).await.unwrap();
    timeout(WAIT, waiting)
        .await
        .expect("done once the request is answered")
        .unwrap();

    let (_f, gate) = Fixture::start_held(Duration::from_millis(50)).await;
    timeout(WAIT, gate.open().wait())
        .await
        .expect("with no request, the window passes");
}

/// Requests that come while the master starts are read and held, and answered once it has
/// started; the work the start leaves for later waits until they are, a client gone away
/// included. A start that fails answers them 503.
#[tokio::test]
async fn requests_during_a_start_are_held_until_it_is_done_then_counted_out() {
    use tokio::io::AsyncWriteExt;
    let (f, gate) = Fixture::start_held(moonbot::www::FIRST_REQUESTS).await;
    let held = tokio::spawn(f.client.get(format!("{}/builders", f.base)).send());
    let address = f
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/api/v2");
    let mut gone = tokio::net::TcpStream::connect(address).await.unwrap();
    gone.write_all(b"GET /api/v2/builders HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!held.is_finished(), "answered before the start");
    drop(gone);
    let answered = gate.open();
    let response = timeout(WAIT, held).await.unwrap().unwrap().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let builders: Value = response.json().await.unwrap();
    assert_eq!(builders["meta"]["total"], 2);
    timeout(WAIT, answered.wait())
        .await
        .expect("every held request counted out");

    let (f, gate) = Fixture::start_held(moonbot::www::FIRST_REQUESTS).await;
    let held = tokio::spawn(f.client.get(format!("{}/builders", f.base)).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(gate);
    let response = timeout(WAIT, held).await.unwrap().unwrap().unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "the master failed to start");
    timeout(WAIT, f.server)
        .await
        .expect("the server stops after a failed start")
        .unwrap()
        .unwrap();
}
