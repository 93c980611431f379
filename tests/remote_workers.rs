//! Remote workers: the real `buildbot-worker` 4.3 from PyPI (installed by `scripts/test`
//! into `/var/tmp/moonbot-worker-venv`) connects over msgpack-over-WebSocket and runs
//! builds.

#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use moonbot::model::BuildResult;
use serde_json::{json, Value};
use support::{complete, submit, TestMaster, WAIT};

const VENV: &str = "/var/tmp/moonbot-worker-venv";

/// A free loopback port for the master's msgpack listener (the worker must be told it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `buildbot-worker` process; killed when dropped.
struct RealWorker {
    dir: PathBuf,
    process: Option<Child>,
}

impl RealWorker {
    fn create(parent: &Path, name: &str, password: &str, port: u16) -> RealWorker {
        let dir = parent.join(name);
        let status = Command::new(format!("{VENV}/bin/buildbot-worker"))
            .args([
                "create-worker",
                "--protocol",
                "msgpack_experimental_v7",
                "--maxretries",
                "0",
            ])
            .arg(&dir)
            .arg(format!("127.0.0.1:{port}"))
            .args([name, password])
            .stdout(Stdio::null())
            .status()
            .expect("buildbot-worker is installed (scripts/test installs it)");
        assert!(status.success(), "create-worker failed");
        let mut worker = RealWorker { dir, process: None };
        worker.start();
        worker
    }

    fn start(&mut self) {
        let process = Command::new(format!("{VENV}/bin/twistd"))
            .args([
                "--nodaemon",
                "--no_save",
                "--pidfile=",
                "--logfile=twistd.log",
                "-y",
                "buildbot.tac",
            ])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.process = Some(process);
    }

    /// SIGKILL: the worker vanishes without a word.
    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// SIGTERM, as `buildbot-worker stop` sends: the worker closes its connection and exits.
    fn stop(&mut self) {
        if let Some(process) = &self.process {
            let status = Command::new("kill").arg(process.id().to_string()).status();
            assert!(status.unwrap().success(), "cannot signal the worker");
            assert!(self.exits(), "the worker still runs after SIGTERM");
        }
    }

    /// Waits for the worker's process to end by itself; false if it still runs after WAIT.
    fn exits(&mut self) -> bool {
        let Some(process) = self.process.as_mut() else {
            return true;
        };
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if process.try_wait().unwrap().is_some() {
                self.process = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("twistd.log")).unwrap_or_default()
    }
}

impl Drop for RealWorker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn config(port: u16, workers: &str, builders: &str) -> String {
    format!(
        r#"
local c = BuildmasterConfig
c['protocols'] = {{ msgpack_experimental_v7 = {{ port = 'tcp:{port}:interface=127.0.0.1' }} }}
c['workers'] = {{ {workers} }}
c['builders'] = {{ {builders} }}
c['status'] = {{ status.WebStatus{{http_port="tcp:0:interface=127.0.0.1", authz=util.Authz{{default_action=true}}}} }}
"#
    )
}

async fn get(master: &TestMaster, path: &str) -> Value {
    let api = format!("http://{}/api/v2", master.web_address.unwrap());
    reqwest::get(format!("{api}/{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until `check` holds of the REST resource at `path`.
async fn wait_for(
    master: &TestMaster,
    path: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let waited = tokio::time::timeout(WAIT, async {
        loop {
            let body = get(master, path).await;
            if check(&body) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("timed out waiting for {what} at {path}"))
}

fn attached(body: &Value, name: &str) -> bool {
    body["workers"].as_array().is_some_and(|workers| {
        workers.iter().any(|w| {
            w["name"] == name && w["connected_to"].as_array().is_some_and(|c| !c.is_empty())
        })
    })
}

fn detached(body: &Value, name: &str) -> bool {
    body["workers"].as_array().is_some_and(|workers| {
        workers
            .iter()
            .any(|w| w["name"] == name && w["connected_to"] == json!([]))
    })
}

async fn log_text(master: &TestMaster, buildid: i64, step: i64, log: &str) -> String {
    let body = get(
        master,
        &format!("builds/{buildid}/steps/{step}/logs/{log}/contents"),
    )
    .await;
    body["logchunks"]
        .as_array()
        .map(|chunks| {
            chunks
                .iter()
                .filter_map(|c| c["content"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_worker_attaches_shows_its_info_and_runs_a_shell_build_with_its_output_logged() {
    let port = free_port();
    let master = TestMaster::start(&config(
        port,
        r#"worker.Worker("w1", "sekrit")"#,
        r#"util.BuilderConfig{name="b", workernames={"w1"}, factory=util.BuildFactory({
            steps.ShellCommand{command="echo hello from $(basename $(pwd)); echo oops >&2; exit 3", decodeRC={[3]=0}},
            steps.MakeDirectory{dir="made/here"},
            steps.ShellCommand{command={"test", "-d", "../made/here"}},
            steps.RemoveDirectory{dir="made"},
            steps.ShellCommand{command={"test", "!", "-e", "../made"}},
        })}"#,
    ))
    .await;
    let work = tempfile::tempdir().unwrap();
    let worker = RealWorker::create(work.path(), "w1", "sekrit", port);
    let workers = wait_for(&master, "workers", "w1 attached", |b| attached(b, "w1")).await;
    let info = &workers["workers"][0]["workerinfo"];
    assert_eq!(info["version"], "4.3.0", "{workers}");
    assert!(
        info["environ"].is_null(),
        "the worker's environment stays private"
    );

    let bsid = submit(&master, &["b"], &[]).await;
    let result = complete(&master, bsid).await;
    assert_eq!(
        result,
        BuildResult::Success,
        "{}",
        get(&master, "builds/1/steps").await
    );
    let stdio = log_text(&master, 1, 0, "stdio").await;
    assert!(stdio.contains("ohello from build\n"), "{stdio}");
    assert!(stdio.contains("eoops\n"), "{stdio}");
    assert!(worker.dir.join("b/build").is_dir());
    assert!(!worker.dir.join("b/made").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_worker_answers_a_ping_and_a_graceful_shutdown_stops_it() {
    let port = free_port();
    let master = TestMaster::start(&config(
        port,
        r#"worker.Worker("w1", "pw"), worker.Worker("w2", "pw")"#,
        r#"util.BuilderConfig{name="b", workernames={"w1", "w2"}, factory=util.BuildFactory({
            steps.ShellCommand{command="true"},
        })}"#,
    ))
    .await;
    let work = tempfile::tempdir().unwrap();
    let worker = RealWorker::create(work.path(), "w1", "pw", port);
    wait_for(&master, "workers", "w1 attached", |b| attached(b, "w1")).await;
    let api = format!("http://{}/api/v2", master.web_address.unwrap());
    let call = |path: &str, method: &str| {
        reqwest::Client::new()
            .post(format!("{api}/{path}"))
            .json(&json!({"jsonrpc": "2.0", "method": method, "params": {}, "id": 1}))
            .send()
    };
    let pinged: Value = call("builders/1", "ping")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        pinged["result"],
        json!({"workers": {"w1": true, "w2": false}}),
        "w2 never attached"
    );
    let response = call("workers/1", "stop").await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    wait_for(&master, "workers", "w1 gone", |b| detached(b, "w1")).await;
    assert!(
        worker
            .log()
            .contains("shutting down on command from master"),
        "{}",
        worker.log()
    );
}

/// The waterfall's rows of events (`<tr class="event">`), each as its cells' text.
fn event_rows(page: &str) -> Vec<Vec<String>> {
    let tags = regex::Regex::new(r"<[^>]*>").unwrap();
    page.split("<tr class=\"event\">")
        .skip(1)
        .map(|row| {
            let row = row.split("</tr>").next().unwrap_or_default();
            row.split("<td>")
                .skip(1)
                .map(|cell| tags.replace_all(cell, "").trim().to_string())
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_workers_connect_and_disconnect_show_in_its_builders_waterfall_column_unless_events_are_hidden(
) {
    let port = free_port();
    let master = TestMaster::start(&config(
        port,
        r#"worker.Worker("w1", "pw"), worker.Worker("w2", "pw")"#,
        r#"util.BuilderConfig{name="b", workernames={"w1"}, factory=util.BuildFactory({
            steps.ShellCommand{command="true"},
        })},
        util.BuilderConfig{name="c", workernames={"w2"}, factory=util.BuildFactory({
            steps.ShellCommand{command="true"},
        })}"#,
    ))
    .await;
    let work = tempfile::tempdir().unwrap();
    let mut worker = RealWorker::create(work.path(), "w1", "pw", port);
    wait_for(&master, "workers", "w1 attached", |b| attached(b, "w1")).await;
    worker.stop();
    wait_for(&master, "workers", "w1 gone", |b| detached(b, "w1")).await;
    let page = |query: &'static str| {
        let url = format!("http://{}/waterfall{query}", master.web_address.unwrap());
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let shown = page("?show_events=true").await;
    let rows: Vec<Vec<String>> = event_rows(&shown)
        .into_iter()
        .map(|cells| cells[1..].to_vec())
        .filter(|cells| cells[0] != "master started")
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["disconnect w1".to_string(), String::new()],
            vec!["connect w1".to_string(), String::new()],
        ],
        "newest first, in b's column and not in c's (w2 never connected):\n{shown}"
    );
    assert_eq!(
        event_rows(&page("").await).len(),
        rows.len() + 1,
        "shown by default, with the master's start"
    );
    let hidden = page("?show_events=false").await;
    assert!(event_rows(&hidden).is_empty(), "{hidden}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_a_wrong_password_is_refused() {
    let port = free_port();
    let master = TestMaster::start(&config(port, r#"worker.Worker("w1", "right")"#, "")).await;
    let work = tempfile::tempdir().unwrap();
    let worker = RealWorker::create(work.path(), "w1", "wrong", port);
    let log = tokio::time::timeout(WAIT, async {
        loop {
            let log = worker.log();
            if log.contains("401") {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the worker logs the refusal");
    assert!(log.contains("401"), "{log}");
    assert!(detached(&get(&master, "workers").await, "w1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_from_the_api_interrupts_the_command_on_the_worker() {
    let port = free_port();
    let master = TestMaster::start(&config(
        port,
        r#"worker.Worker("w1", "pw")"#,
        r#"util.BuilderConfig{name="b", workernames={"w1"}, factory=util.BuildFactory({
            steps.ShellCommand{command="touch started; sleep 60; touch finished"},
        })}"#,
    ))
    .await;
    let work = tempfile::tempdir().unwrap();
    let worker = RealWorker::create(work.path(), "w1", "pw", port);
    wait_for(&master, "workers", "w1 attached", |b| attached(b, "w1")).await;
    let bsid = submit(&master, &["b"], &[]).await;
    let started = worker.dir.join("b/build/started");
    tokio::time::timeout(WAIT, async {
        while !started.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the command starts on the worker");
    let api = format!("http://{}/api/v2", master.web_address.unwrap());
    let response = reqwest::Client::new()
        .post(format!("{api}/builds/1"))
        .json(&json!({"jsonrpc": "2.0", "method": "stop", "params": {"reason": "enough"}, "id": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(complete(&master, bsid).await, BuildResult::Cancelled);
    assert!(!worker.dir.join("b/build/finished").exists());
    let log = worker.log();
    assert!(log.contains("asked to interrupt current command"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconfig_that_removes_the_builder_interrupts_its_command_on_the_worker() {
    let port = free_port();
    let stuck = r#"util.BuilderConfig{name="stuck", workernames={"w1"}, factory=util.BuildFactory({
            steps.ShellCommand{command="touch started; sleep 60; touch finished"},
        })}"#;
    let kept = r#"util.BuilderConfig{name="kept", workernames={"w1"}, factory=util.BuildFactory({
            steps.ShellCommand{command="echo still here"},
        })}"#;
    let mut master = TestMaster::start(&config(
        port,
        r#"worker.Worker("w1", "pw")"#,
        &format!("{stuck}, {kept}"),
    ))
    .await;
    let work = tempfile::tempdir().unwrap();
    let worker = RealWorker::create(work.path(), "w1", "pw", port);
    wait_for(&master, "workers", "w1 attached", |b| attached(b, "w1")).await;
    let bsid = submit(&master, &["stuck"], &[]).await;
    let started = worker.dir.join("stuck/build/started");
    tokio::time::timeout(WAIT, async {
        while !started.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the command starts on the worker");
    std::fs::write(
        master.dir().join("master.cfg.lua"),
        config(port, r#"worker.Worker("w1", "pw")"#, kept),
    )
    .unwrap();
    let outcome = master.reconfig().await;
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(complete(&master, bsid).await, BuildResult::Cancelled);
    let log = worker.log();
    assert!(log.contains("asked to interrupt current command"), "{log}");
    assert!(!worker.dir.join("stuck/build/finished").exists());
    let bsid = submit(&master, &["kept"], &[]).await;
    assert_eq!(complete(&master, bsid).await, BuildResult::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_build_retries_the_build_and_builds_it_again_once_restarted() {
    let port = free_port();
    let master = TestMaster::start(&config(
        port,
        r#"worker.Worker("w1", "pw")"#,
        r#"util.BuilderConfig{name="b", workernames={"w1"}, factory=util.BuildFactory({
            steps.ShellCommand{command="if [ -e ../second ]; then exit 0; fi; touch ../second started; sleep 60"},
        })}"#,
    ))
    .await;
    let work = tempfile::tempdir().unwrap();
    let mut worker = RealWorker::create(work.path(), "w1", "pw", port);
    wait_for(&master, "workers", "w1 attached", |b| attached(b, "w1")).await;
    let bsid = submit(&master, &["b"], &[]).await;
    let started = worker.dir.join("b/build/started");
    tokio::time::timeout(WAIT, async {
        while !started.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the command starts on the worker");
    worker.kill();
    let builds = wait_for(&master, "builds", "the first build to end", |b| {
        b["builds"][0]["complete"] == true
    })
    .await;
    assert_eq!(
        builds["builds"][0]["results"],
        json!(BuildResult::Retry.code())
    );
    wait_for(&master, "workers", "w1 detached", |b| detached(b, "w1")).await;
    worker.start();
    assert_eq!(
        complete(&master, bsid).await,
        BuildResult::Success,
        "{}",
        worker.log()
    );
    let builds = get(&master, "builds").await;
    assert_eq!(builds["meta"]["total"], 2, "{builds}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_spread_over_two_workers_by_max_builds() {
    let port = free_port();
    let builders: String = (1..=4)
        .map(|n| {
            format!(
                r#"util.BuilderConfig{{name="b{n}", workernames={{"w1", "w2"}}, factory=util.BuildFactory({{
                    steps.ShellCommand{{command="sleep 1"}} }})}},"#
            )
        })
        .collect();
    let master = TestMaster::start(&config(
        port,
        r#"worker.Worker("w1", "pw", {max_builds=1}), worker.Worker("w2", "pw", {max_builds=1})"#,
        &builders,
    ))
    .await;
    let work = tempfile::tempdir().unwrap();
    let _w1 = RealWorker::create(work.path(), "w1", "pw", port);
    let _w2 = RealWorker::create(work.path(), "w2", "pw", port);
    wait_for(&master, "workers", "both attached", |b| {
        attached(b, "w1") && attached(b, "w2")
    })
    .await;
    let bsid = submit(&master, &["b1", "b2", "b3", "b4"], &[]).await;
    assert_eq!(complete(&master, bsid).await, BuildResult::Success);
    let builds = get(&master, "builds").await;
    let mut per_worker = std::collections::BTreeMap::<i64, Vec<(f64, f64)>>::new();
    for build in builds["builds"].as_array().unwrap() {
        per_worker
            .entry(build["workerid"].as_i64().unwrap())
            .or_default()
            .push((
                build["started_at"].as_f64().unwrap(),
                build["complete_at"].as_f64().unwrap(),
            ));
    }
    assert_eq!(per_worker.len(), 2, "both workers built: {builds}");
    for spans in per_worker.values_mut() {
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in spans.windows(2) {
            assert!(pair[1].0 >= pair[0].1, "max_builds=1 overlapped: {builds}");
        }
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A hand-made worker: the upgrade with Basic auth, then answers to the master's handshake
/// requests up to its `print`.
async fn fake_worker(port: u16, name: &str, password: &str) -> Socket {
    use base64::Engine as _;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let mut request = format!("ws://127.0.0.1:{port}/")
        .into_client_request()
        .unwrap();
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"));
    request.headers_mut().insert(
        "Authorization",
        format!("Basic {credentials}").parse().unwrap(),
    );
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut socket, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    loop {
        match answer_one(&mut socket).await {
            Some(op) if op == "print" => return socket,
            Some(_) => {}
            None => panic!("the master closed the connection during the handshake"),
        }
    }
}

/// Answers the master's next request (info for `get_worker_info`, nothing for the others);
/// its op, or `None` once the connection is closed.
async fn answer_one(socket: &mut Socket) -> Option<String> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let bytes = loop {
        match socket.next().await {
            Some(Ok(Message::Binary(bytes))) => break bytes,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    };
    let message = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
    let get = |key: &str| {
        message
            .as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v.clone())
    };
    let op = get("op").unwrap().as_str().unwrap().to_string();
    let result = if op == "get_worker_info" {
        rmpv::Value::Map(vec![("version".into(), "fake".into())])
    } else {
        rmpv::Value::Nil
    };
    let response = rmpv::Value::Map(vec![
        ("op".into(), "response".into()),
        ("seq_number".into(), get("seq_number").unwrap()),
        ("result".into(), result),
    ]);
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &response).unwrap();
    socket.send(Message::Binary(bytes.into())).await.ok()?;
    Some(op)
}

async fn answer_until_closed(mut socket: Socket) {
    while answer_one(&mut socket).await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_oversized_message_closes_that_connection_only() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let port = free_port();
    let master = TestMaster::start(&config(
        port,
        r#"worker.Worker("real", "pw"), worker.Worker("f1", "pw"), worker.Worker("f2", "pw")"#,
        r#"util.BuilderConfig{name="b", workernames={"real"}, factory=util.BuildFactory({
            steps.ShellCommand{command="echo fine"} })}"#,
    ))
    .await;
    let work = tempfile::tempdir().unwrap();
    let _real = RealWorker::create(work.path(), "real", "pw", port);
    let mut f1 = fake_worker(port, "f1", "pw").await;
    let mut f2 = fake_worker(port, "f2", "pw").await;
    wait_for(&master, "workers", "all attached", |b| {
        attached(b, "real") && attached(b, "f1") && attached(b, "f2")
    })
    .await;

    f1.send(Message::Binary(vec![0xc1, 0x00].into()))
        .await
        .unwrap();
    wait_for(&master, "workers", "f1 detached", |b| detached(b, "f1")).await;
    let _ = f2
        .send(Message::Binary(vec![0u8; 17 * 1024 * 1024].into()))
        .await;
    wait_for(&master, "workers", "f2 detached", |b| detached(b, "f2")).await;

    let workers = get(&master, "workers").await;
    assert!(attached(&workers, "real"), "{workers}");
    let bsid = submit(&master, &["b"], &[]).await;
    assert_eq!(complete(&master, bsid).await, BuildResult::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_of_an_attached_worker_is_refused_while_the_first_answers() {
    let port = free_port();
    let master = TestMaster::start(&config(port, r#"worker.Worker("f", "pw")"#, "")).await;
    let first = fake_worker(port, "f", "pw").await;
    let first = tokio::spawn(answer_until_closed(first));
    wait_for(&master, "workers", "f attached", |b| attached(b, "f")).await;
    let second = fake_worker(port, "f", "pw").await;
    tokio::time::timeout(WAIT, answer_until_closed(second))
        .await
        .expect("the second connection is closed");
    assert!(!first.is_finished(), "the first connection is kept");
    assert!(attached(&get(&master, "workers").await, "f"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_to_the_worker_and_back_byte_for_byte() {
    let port = free_port();
    let master = TestMaster::start(&config(
        port,
        r#"worker.Worker("w1", "pw")"#,
        r#"util.BuilderConfig{name="b", workernames={"w1"}, factory=util.BuildFactory({
            steps.FileDownload{mastersrc="in.bin", workerdest="sub/got.bin", blocksize=4096, mode=tonumber("600", 8)},
            steps.FileUpload{workersrc="sub/got.bin", masterdest="out/back.bin", blocksize=1000},
            steps.FileUpload{workersrc="missing.bin", masterdest="never.bin", flunkOnFailure=false},
        })}"#,
    ))
    .await;
    // Every byte value, and more than a few blocks.
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(master.dir().join("in.bin"), &data).unwrap();
    let work = tempfile::tempdir().unwrap();
    let worker = RealWorker::create(work.path(), "w1", "pw", port);
    wait_for(&master, "workers", "w1 attached", |b| attached(b, "w1")).await;
    let bsid = submit(&master, &["b"], &[]).await;
    let result = complete(&master, bsid).await;
    assert_eq!(
        result,
        BuildResult::Success,
        "{}\n{}",
        log_text(&master, 1, 0, "stdio").await,
        worker.log()
    );
    let on_worker = worker.dir.join("b/build/sub/got.bin");
    assert_eq!(std::fs::read(&on_worker).unwrap(), data);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&on_worker).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read(master.dir().join("out/back.bin")).unwrap(),
        data
    );
    let steps = get(&master, "builds/1/steps").await;
    assert_eq!(
        steps["steps"][2]["results"],
        json!(BuildResult::Failure.code()),
        "{steps}"
    );
    assert!(!master.dir().join("never.bin").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reconnects_by_itself_to_a_restarted_master_and_builds_resume() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        port,
        r#"worker.Worker("w1", "pw")"#,
        r#"util.BuilderConfig{name="b", workernames={"w1"}, factory=util.BuildFactory({
            steps.SetPropertyFromCommand{command="echo remote", property="where"},
        })}"#,
    );
    let master = support::start(dir.path(), &config).await;
    let work = tempfile::tempdir().unwrap();
    let _worker = RealWorker::create(work.path(), "w1", "pw", port);
    let attached_to = |master: &moonbot::master::Master| {
        let db = master.context.db.clone();
        async move {
            tokio::time::timeout(WAIT, async {
                loop {
                    let n: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM workers WHERE connected_masterid IS NOT NULL",
                    )
                    .fetch_one(&db.pool)
                    .await
                    .unwrap();
                    if n == 1 {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .expect("the worker attaches")
        }
    };
    attached_to(&master).await;
    master.context.shutdown.cancel();
    master.wait().await.unwrap();

    let master = support::start(dir.path(), &config).await;
    attached_to(&master).await;
    let bsid = submit(&master, &["b"], &[]).await;
    assert_eq!(complete(&master, bsid).await, BuildResult::Success);
    let (value,): (String,) =
        sqlx::query_as("SELECT value FROM build_properties WHERE name = 'where'")
            .fetch_one(&master.context.db.pool)
            .await
            .unwrap();
    assert_eq!(value, r#""remote""#);
    master.context.shutdown.cancel();
    master.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_git_step_checks_out_on_the_worker_then_updates_the_checkout() {
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
            .args(args)
            .current_dir(repo.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.path().join("file.txt"), "one\n").unwrap();
    git(&["add", "file.txt"]);
    git(&["commit", "-q", "-m", "one"]);
    let port = free_port();
    let master = TestMaster::start(&config(
        port,
        r#"worker.Worker("w1", "pw")"#,
        &format!(
            r#"util.BuilderConfig{{name="b", workernames={{"w1"}}, factory=util.BuildFactory({{
            steps.Git{{repourl="{}", branch="main"}},
            steps.ShellCommand{{command="test -f file.txt"}},
            steps.Git{{repourl="{}", branch="main", mode="full", method="copy", workdir="copied"}},
            steps.ShellCommand{{command="test -f file.txt", workdir="copied"}},
        }})}}"#,
            repo.path().display(),
            repo.path().display()
        ),
    ))
    .await;
    let work = tempfile::tempdir().unwrap();
    let worker = RealWorker::create(work.path(), "w1", "pw", port);
    wait_for(&master, "workers", "w1 attached", |b| attached(b, "w1")).await;
    for _ in 0..2 {
        let bsid = submit(&master, &["b"], &[]).await;
        let result = complete(&master, bsid).await;
        assert_eq!(
            result,
            BuildResult::Success,
            "{}\n{}",
            get(&master, "builds/1/steps").await,
            log_text(&master, 1, 0, "err_text").await
        );
    }
    assert!(worker.dir.join("b/build/.git").is_dir());
    assert!(worker.dir.join("b/copied/file.txt").is_file());
}

/// What a directory holds, for comparing trees: each path with its kind, bytes (or link
/// target) and permission bits.
fn tree(root: &Path) -> std::collections::BTreeMap<String, (String, Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = std::collections::BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let mode = meta.permissions().mode() & 0o7777;
            let entry = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                ("link".into(), target.display().to_string().into_bytes(), 0)
            } else if meta.is_dir() {
                pending.push(path.clone());
                ("dir".into(), Vec::new(), mode)
            } else {
                ("file".into(), std::fs::read(&path).unwrap(), mode)
            };
            found.insert(name, entry);
        }
    }
    found
}

/// Every transfer step and CopyDirectory, for one builder `b` on worker `w1`.
const TRANSFER_STEPS: &str = r#"util.BuilderConfig{name="b", workernames={"w1"}, factory=util.BuildFactory({
    steps.ShellCommand{command="mkdir -p tree/sub tree/empty && printf 'plain\n' > tree/a.txt && head -c 70000 /dev/urandom > tree/sub/blob && chmod 750 tree/sub/blob && ln -s a.txt tree/link"},
    steps.DirectoryUpload{workersrc="tree", masterdest="up/plain", blocksize=1000},
    steps.DirectoryUpload{workersrc="tree", masterdest="up/gz", compress="gz"},
    steps.DirectoryUpload{workersrc="tree", masterdest="up/bz2", compress="bz2"},
    steps.StringDownload{s="h\195\169llo\n", workerdest="down/s.txt", mode="0640"},
    steps.JSONStringDownload{o={a={1, 2}, b="\195\169"}, workerdest="down/o.json"},
    steps.JSONPropertiesDownload{workerdest="down/props.json"},
    steps.MultipleFileUpload{workersrcs={"tree/a.txt", "tree/sub"}, masterdest="multi", mode="0600"},
    steps.MultipleFileUpload{workersrcs={"tree/*.txt", "tree/s*"}, glob=true, masterdest="globbed"},
    steps.CopyDirectory{src="build/tree", dest="copied/tree"},
    steps.MultipleFileUpload{workersrcs={"nothing*"}, glob=true, masterdest="none"},
    steps.DirectoryUpload{workersrc="tree", masterdest="small", maxsize=1000, haltOnFailure=false, flunkOnFailure=false},
})}"#;

/// Runs [`TRANSFER_STEPS`] once and checks every byte that moved; `builder_dir` is where the
/// worker keeps builder `b`'s directory.
async fn check_transfer_steps(master: &TestMaster, builder_dir: &Path) {
    let bsid = submit(master, &["b"], &[]).await;
    complete(master, bsid).await;
    let steps = get(master, "builds/1/steps").await;
    let results: Vec<i64> = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["results"].as_i64().unwrap())
        .collect();
    let ok = BuildResult::Success.code();
    let mut expected = vec![ok; 12];
    expected[10] = BuildResult::Skipped.code();
    expected[11] = BuildResult::Failure.code();
    let mut logs = String::new();
    for step in 0..12 {
        logs.push_str(&log_text(master, 1, step, "stdio").await);
        logs.push_str(&log_text(master, 1, step, "err_text").await);
    }
    assert_eq!(results, expected, "{steps}\n{logs}");

    let on_worker = tree(&builder_dir.join("build/tree"));
    assert_eq!(on_worker.len(), 5, "{:?}", on_worker.keys());
    for uploaded in ["up/plain", "up/gz", "up/bz2"] {
        assert_eq!(tree(&master.dir().join(uploaded)), on_worker, "{uploaded}");
    }
    assert_eq!(tree(&builder_dir.join("copied/tree")), on_worker);
    assert!(!master.dir().join("small/a.txt").exists());

    use std::os::unix::fs::PermissionsExt;
    let down = builder_dir.join("build/down");
    assert_eq!(
        std::fs::read(down.join("s.txt")).unwrap(),
        "héllo\n".as_bytes()
    );
    let mode = std::fs::metadata(down.join("s.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    assert_eq!(
        std::fs::read_to_string(down.join("o.json")).unwrap(),
        r#"{"a": [1, 2], "b": "\u00e9"}"#
    );
    let props: Value =
        serde_json::from_str(&std::fs::read_to_string(down.join("props.json")).unwrap()).unwrap();
    assert_eq!(props["properties"]["buildername"], "b", "{props}");
    assert_eq!(props["properties"]["workername"], "w1", "{props}");
    assert!(props["sourcestamps"].is_array(), "{props}");

    let multi = master.dir().join("multi");
    assert_eq!(std::fs::read(multi.join("a.txt")).unwrap(), b"plain\n");
    let mode = std::fs::metadata(multi.join("a.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let sub = |t: &std::collections::BTreeMap<String, (String, Vec<u8>, u32)>| {
        t.iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("sub/")?.to_string(), v.clone())))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(tree(&multi.join("sub")), sub(&on_worker));
    let globbed = tree(&master.dir().join("globbed"));
    assert_eq!(
        globbed.keys().collect::<Vec<_>>(),
        ["a.txt", "sub", "sub/blob"],
        "{:?}",
        globbed.keys()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_strings_and_json_move_byte_for_byte_through_a_real_worker() {
    let port = free_port();
    let master = TestMaster::start(&config(
        port,
        r#"worker.Worker("w1", "pw")"#,
        TRANSFER_STEPS,
    ))
    .await;
    let work = tempfile::tempdir().unwrap();
    let worker = RealWorker::create(work.path(), "w1", "pw", port);
    wait_for(&master, "workers", "w1 attached", |b| attached(b, "w1")).await;
    check_transfer_steps(&master, &worker.dir.join("b")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_strings_and_json_move_byte_for_byte_on_the_local_worker() {
    let master = TestMaster::start(&config(
        free_port(),
        r#"worker.LocalWorker("w1")"#,
        TRANSFER_STEPS,
    ))
    .await;
    let builder_dir = master.dir().join("workers/w1/b");
    check_transfer_steps(&master, &builder_dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_from_the_api_finishes_its_build_then_is_shut_down() {
    let port = free_port();
    let master = TestMaster::start(&config(
        port,
        r#"worker.Worker("w1", "pw"), worker.LocalWorker("local")"#,
        r#"util.BuilderConfig{name="b", workernames={"w1"}, factory=util.BuildFactory({
            steps.ShellCommand{command="touch started; while [ ! -e go ]; do sleep 0.05; done"},
        })}"#,
    ))
    .await;
    let work = tempfile::tempdir().unwrap();
    let mut worker = RealWorker::create(work.path(), "w1", "pw", port);
    let workers = wait_for(&master, "workers", "w1 attached", |b| attached(b, "w1")).await;
    let id_of = |name: &str| {
        workers["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == name)
            .unwrap()["workerid"]
            .as_i64()
            .unwrap()
    };
    let bsid = submit(&master, &["b"], &[]).await;
    let build_dir = worker.dir.join("b/build");
    tokio::time::timeout(WAIT, async {
        while !build_dir.join("started").exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the build starts on the worker");

    let api = format!("http://{}/api/v2", master.web_address.unwrap());
    let action = |workerid: i64, method: &str| {
        reqwest::Client::new()
            .post(format!("{api}/workers/{workerid}"))
            .json(&json!({"jsonrpc": "2.0", "method": method, "params": {"reason": "maintenance"}, "id": 1}))
            .send()
    };
    let response = action(id_of("w1"), "stop").await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // Asked to stop, the worker still finishes the build it runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(attached(&get(&master, "workers").await, "w1"));
    std::fs::write(build_dir.join("go"), "").unwrap();
    assert_eq!(complete(&master, bsid).await, BuildResult::Success);
    assert!(worker.exits(), "the worker shuts down: {}", worker.log());
    assert!(
        worker
            .log()
            .contains("worker shutting down on command from master"),
        "{}",
        worker.log()
    );
    wait_for(&master, "workers", "w1 detached", |b| detached(b, "w1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_gone_for_its_missing_timeout_is_mailed_to_its_notify_addresses() {
    let server = smtp::SmtpServer::start(smtp::SmtpOptions::default());
    let port = free_port();
    let with_mail = |worker: &str| {
        config(port, worker, "").replace(
            "c['status'] = {",
            &format!(
                "c['status'] = {{ status.MailNotifier{{fromaddr='ci@example.org', relayhost='127.0.0.1', smtpPort={}}},",
                server.port()
            ),
        )
    };
    // Notified only once attached, so that the timer running while it first connects
    // cannot mail.
    let mut master = TestMaster::start(&with_mail(r#"worker.Worker("w1", "pw")"#)).await;
    let work = tempfile::tempdir().unwrap();
    let mut worker = RealWorker::create(work.path(), "w1", "pw", port);
    wait_for(&master, "workers", "w1 attached", |b| attached(b, "w1")).await;
    std::fs::write(
        master.dir().join("master.cfg.lua"),
        with_mail(r#"worker.Worker("w1", "pw", {notify_on_missing={"ops@example.org", "dev@example.org"}, missing_timeout=1})"#),
    )
    .unwrap();
    let outcome = master.reconfig().await;
    assert!(outcome.ok, "{outcome:?}");

    worker.kill();
    let mails = server.wait_for(1, WAIT).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.mail_from, "ci@example.org");
    let mut to = mail.rcpt_tos.clone();
    to.sort();
    assert_eq!(to, ["dev@example.org", "ops@example.org"]);
    assert_eq!(mail.header("Subject"), Some("Buildbot worker w1 missing"));
    let body = &mail.parts[0].content;
    assert!(
        body.contains("has noticed that the worker named w1 went away"),
        "{body}"
    );
    assert!(body.contains("The admin on record"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_never_finish_the_handshake_are_capped_and_attached_workers_are_unharmed() {
    use tokio::io::AsyncReadExt;

    /// The master's `MAX_HANDSHAKES`.
    const CAP: usize = 64;
    let port = free_port();
    let master = TestMaster::start(&config(
        port,
        r#"worker.Worker("f1", "pw"), worker.Worker("f2", "pw")"#,
        "",
    ))
    .await;
    let first = fake_worker(port, "f1", "pw").await;
    let first = tokio::spawn(answer_until_closed(first));
    wait_for(&master, "workers", "f1 attached", |b| attached(b, "f1")).await;

    let mut silent = Vec::new();
    for _ in 0..CAP {
        silent.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    let mut over = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    // Well within the 30 s a connection gets for its handshake, after which it would be
    // closed with or without the cap.
    let read = tokio::time::timeout(Duration::from_secs(10), over.read(&mut byte))
        .await
        .expect("the connection over the cap is closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(!first.is_finished(), "the attached worker is kept");

    // Once the silent sockets go, a worker gets through again.
    drop(silent);
    let second = tokio::time::timeout(WAIT, async {
        loop {
            let attempt = tokio::spawn(fake_worker(port, "f2", "pw"));
            match attempt.await {
                Ok(socket) => return socket,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("a worker attaches after the silent sockets closed");
    let _second = tokio::spawn(answer_until_closed(second));
    wait_for(&master, "workers", "f2 attached", |b| attached(b, "f2")).await;
}
