//! The HTTP push targets end to end: real builds, a real HTTP server on loopback
//! (`support/http_server.py`) that records each request and answers as scripted: exact
//! requests and bodies, retries after a peer was down, GitHub's rate limit, restarts.

#[path = "support/http.rs"]
mod http;
#[path = "support/master_process.rs"]
mod master_process;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use http::{HttpServer, Request};
use moonbot::data::{publish, Resource};
use moonbot::db::{BuildsetSpec, SourceStampSpec};
use moonbot::master::Master;
use moonbot::model::{BuildResult, Properties};
use serde_json::{json, Value};
use support::{complete, golden, TestMaster, WAIT};

/// A builder `b` whose one step waits until the file named by the build property `gate`
/// exists (see [`Gate`]), then exits with the build property `rc` (0 success, 2 failure).
fn config(status: &str) -> String {
    format!(
        r#"
local c = BuildmasterConfig
c['buildbotURL'] = 'http://ci.example.org/'
c['title'] = 'Moon'
c['www'] = {{port='tcp:0:interface=127.0.0.1'}}
c['workers'] = {{worker.LocalWorker('local', {{max_builds=1}})}}
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{{name='run', decodeRC={{[0]=util.SUCCESS, [2]=util.FAILURE}},
  command={{'sh', '-c', util.Interpolate('while [ -n "%(prop:gate:-)s" ] && [ ! -e "%(prop:gate:-)s" ]; do sleep 0.02; done; exit %(prop:rc:-0)s')}}}})
c['builders'] = {{util.BuilderConfig{{name='b', workernames={{'local'}}, factory=f}}}}
c['outbox'] = {{retryDelay=0.1, maxRetryDelay=0.3}}
{status}
"#
    )
}

/// A file a build of `b` waits for: the build runs until the test opens it, however slow
/// the machine, so a status about the running build goes before the result's.
struct Gate(std::path::PathBuf);

impl Gate {
    fn new(master: &TestMaster) -> Gate {
        Gate(master.dir().join("gate"))
    }

    /// The build property that makes a build wait for it.
    fn property(&self) -> (&'static str, Value) {
        ("gate", json!(self.0))
    }

    fn open(&self) {
        std::fs::write(&self.0, "").unwrap();
    }
}

/// Runs one build of `b` on `revision` exiting with `rc`; answers its result.
async fn build(
    master: &Master,
    revision: &str,
    rc: i64,
    properties: &[(&str, Value)],
) -> BuildResult {
    let (bsid, _) = queue(master, revision, rc, properties).await;
    complete(master, bsid).await
}

/// Queues a build of `b` on `revision` exiting with `rc`, as a scheduler would; answers
/// the buildset and its request.
async fn queue(
    master: &Master,
    revision: &str,
    rc: i64,
    properties: &[(&str, Value)],
) -> (i64, i64) {
    queue_from(
        master,
        "https://example.org/moon.git",
        revision,
        rc,
        properties,
    )
    .await
}

/// [`queue`] of a build of `repository`.
async fn queue_from(
    master: &Master,
    repository: &str,
    revision: &str,
    rc: i64,
    properties: &[(&str, Value)],
) -> (i64, i64) {
    let (bsid, brid) = store_request(master, repository, revision, rc, properties).await;
    let ctx = &master.context;
    publish(&ctx.db, &ctx.bus, Resource::BuildRequest(brid), "new")
        .await
        .unwrap();
    (bsid, brid)
}

/// A build request as [`queue_from`] stores it, not announced yet.
async fn store_request(
    master: &Master,
    repository: &str,
    revision: &str,
    rc: i64,
    properties: &[(&str, Value)],
) -> (i64, i64) {
    let ctx = &master.context;
    let mut pairs: Vec<(&str, Value)> = vec![("rc", json!(rc))];
    pairs.extend(properties.iter().cloned());
    let spec = BuildsetSpec {
        reason: "test".into(),
        scheduler: "test".into(),
        new_sourcestamps: vec![SourceStampSpec {
            branch: Some("main".into()),
            revision: Some(revision.into()),
            repository: repository.into(),
            ..SourceStampSpec::default()
        }],
        properties: Properties::from_pairs(pairs, "Test"),
        builder_ids: vec![ctx.db.builder_id("b").await.unwrap()],
        ..BuildsetSpec::default()
    };
    let (bsid, brids) = ctx.db.add_buildset(&spec).await.unwrap();
    (bsid, *brids.values().next().unwrap())
}

/// Waits until `server` took a status in `state` for `sha`; answers every status taken.
async fn wait_for_state(server: &HttpServer, sha: &str, state: &str) -> Vec<Request> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let taken = server.taken();
        if taken
            .iter()
            .any(|r| r.path.ends_with(sha) && r.json()["state"] == state)
        {
            return taken;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {state} status for {sha}: {:#?}",
            server.requests()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The statuses about builds (a queued request's may have been superseded by its build's).
fn of_builds(requests: Vec<Request>) -> Vec<Request> {
    requests
        .into_iter()
        .filter(|r| r.json()["description"] != "Build queued.")
        .collect()
}

/// The bodies of `requests` as one pretty JSON list, for a golden file.
fn bodies(requests: &[Request]) -> String {
    let list: Vec<Value> = requests.iter().map(Request::json).collect();
    serde_json::to_string_pretty(&list).unwrap() + "\n"
}

/// The outbox rows of `reporter` in `state`.
async fn rows(master: &Master, reporter: &str, state: &str) -> usize {
    master
        .context
        .db
        .outbox_messages(Some(reporter), &[state])
        .await
        .unwrap()
        .len()
}

fn github(server: &HttpServer, extra: &str) -> String {
    format!(
        "c['status'] = {{status.GitHubStatus{{token='t0k', \
           repoOwner=util.Interpolate('%(prop:owner)s'), repoName='moon', \
           startDescription=util.Interpolate('%(prop:buildername)s started'), \
           endDescription='done', baseURL='{}api/v3' {extra}}}}}",
        server.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_gets_pending_then_the_result_for_the_commit_with_the_token() {
    let server = HttpServer::start();
    let master = TestMaster::start(&config(&github(&server, ""))).await;
    let gate = Gate::new(&master);
    let (bsid, _) = queue(
        &master,
        "abc123",
        2,
        &[("owner", json!("octo")), gate.property()],
    )
    .await;
    // The pending status goes before the result could supersede it.
    wait_for_state(&server, "abc123", "pending").await;
    gate.open();
    assert_eq!(complete(&master, bsid).await, BuildResult::Failure);
    let taken = of_builds(wait_for_state(&server, "abc123", "failure").await);
    for request in &taken {
        assert_eq!(request.path, "/api/v3/repos/octo/moon/statuses/abc123");
        assert_eq!(request.header("authorization"), Some("token t0k"));
        assert_eq!(
            request.header("accept"),
            Some("application/vnd.github+json")
        );
        assert_eq!(request.header("content-type"), Some("application/json"));
    }
    golden::check("tests/golden/push/github.json", &bodies(&taken));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildbot_4_github_status_push_finds_the_repository_in_the_sourcestamp() {
    let server = HttpServer::start();
    let status = format!(
        "c['status'] = {{status.GitHubStatusPush{{token='t0k', context='ci/moon', \
           baseURL='{}api/v3'}}}}",
        server.url()
    );
    let master = TestMaster::start(&config(&status)).await;
    let (bsid, _) = queue_from(&master, "git@github.com:moon/lander.git", "abc123", 0, &[]).await;
    complete(&master, bsid).await;
    let taken = wait_for_state(&server, "abc123", "success").await;
    let last = taken.last().unwrap();
    assert_eq!(last.path, "/api/v3/repos/moon/lander/statuses/abc123");
    assert_eq!(last.json()["context"], "ci/moon");
    assert_eq!(last.header("authorization"), Some("token t0k"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_sends_nothing_for_a_build_whose_owner_renders_empty() {
    let server = HttpServer::start();
    let master = TestMaster::start(&config(&github(&server, ""))).await;
    build(&master, "abc123", 0, &[]).await;
    build(&master, "def456", 0, &[("owner", json!("octo"))]).await;
    wait_for_state(&server, "def456", "success").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // def456's pending status may be superseded by its success before it is sent, on a
    // loaded machine: how many arrive is not the point, whose they are is.
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert!(
        paths
            .iter()
            .all(|p| p == "/api/v3/repos/octo/moon/statuses/def456"),
        "{paths:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_for_a_peer_down_during_the_whole_build_arrives_once_as_the_last_state() {
    let mut server = HttpServer::start();
    let master = TestMaster::start(&config(&github(&server, ", context='ci/moon'"))).await;
    server.stop();
    build(&master, "abc123", 0, &[("owner", json!("octo"))]).await;
    // Both statuses are written; the pending one, not taken, is superseded by the result.
    let deadline = std::time::Instant::now() + WAIT;
    while rows(&master, "GitHubStatus", "superseded").await < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "pending never superseded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.restart();
    let taken = server.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let taken_now = server.taken();
    assert_eq!(taken_now.len(), 1, "{taken_now:#?}");
    assert_eq!(taken[0].json()["state"], "success");
    assert_eq!(taken[0].json()["context"], "ci/moon");
    assert_eq!(rows(&master, "GitHubStatus", "pending").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_rate_limit_holds_every_status_until_its_retry_after() {
    let server = HttpServer::start();
    server.script(json!([{
        "status": 403,
        "headers": {"Retry-After": "2"},
        "body": "{\"message\": \"You have exceeded a secondary rate limit.\"}"
    }]));
    let master = TestMaster::start(&config(&github(&server, ""))).await;
    build(&master, "abc123", 0, &[("owner", json!("octo"))]).await;
    build(&master, "def456", 2, &[("owner", json!("octo"))]).await;
    wait_for_state(&server, "def456", "failure").await;
    let requests = server.requests();
    let limited = &requests[0];
    assert_eq!(limited.answered, Some(403));
    for later in &requests[1..] {
        assert!(
            later.at - limited.at >= 1.9,
            "request {} came {:.2} s after the rate limit",
            later.n,
            later.at - limited.at
        );
    }
    // Each commit's last state, once each; the rate-limited pending one was superseded
    // or sent, never dead.
    let finals: BTreeMap<String, Value> = server
        .taken()
        .iter()
        .map(|r| (r.path.clone(), r.json()["state"].clone()))
        .collect();
    assert_eq!(finals["/api/v3/repos/octo/moon/statuses/abc123"], "success");
    assert_eq!(finals["/api/v3/repos/octo/moon/statuses/def456"], "failure");
    assert_eq!(rows(&master, "GitHubStatus", "dead").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_refused_with_422_is_dead_at_once_and_the_next_still_goes() {
    let server = HttpServer::start();
    server.script(json!([{"status": 422, "body": "{\"message\": \"Validation Failed\"}"}]));
    let master = TestMaster::start(&config(&github(&server, ""))).await;
    // The first status taken is refused, whichever of the first commit's it is (a fast
    // build's final status may supersede the others before any went): the next commit's
    // still go.
    let owner = [("owner", json!("octo"))];
    build(&master, "abc123", 0, &owner).await;
    build(&master, "def456", 0, &owner).await;
    wait_for_state(&server, "def456", "success").await;
    let dead = master
        .context
        .db
        .outbox_messages(Some("GitHubStatus"), &["dead"])
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let error = dead[0].last_error.as_deref().unwrap();
    assert!(
        error.contains("422 Unprocessable Entity: {\"message\": \"Validation Failed\"}"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_request_shows_pending_at_once_and_a_cancelled_one_an_error() {
    let server = HttpServer::start();
    let master = TestMaster::start(&config(&github(&server, ""))).await;
    // The one worker slot is busy for long enough that the next request waits.
    let owner = ("owner", json!("octo"));
    let gate = Gate::new(&master);
    let (running, _) = queue(&master, "abc123", 0, &[owner.clone(), gate.property()]).await;
    let (_, waiting) = queue(&master, "def456", 0, std::slice::from_ref(&owner)).await;
    let (_, cancelled) = queue(&master, "0ff1ce", 0, &[owner]).await;
    let queued = wait_for_state(&server, "def456", "pending").await;
    let queued = queued.iter().find(|r| r.path.ends_with("def456")).unwrap();
    assert_eq!(
        queued.json(),
        json!({
            "state": "pending",
            "description": "Build queued.",
            "context": "buildbot/b",
            "target_url": format!("http://ci.example.org/#buildrequests/{waiting}"),
        })
    );
    master
        .context
        .control
        .cancel_request(cancelled, "not wanted".into())
        .await
        .unwrap();
    let taken = wait_for_state(&server, "0ff1ce", "error").await;
    let last = taken
        .iter()
        .rev()
        .find(|r| r.path.ends_with("0ff1ce"))
        .unwrap();
    assert_eq!(last.json()["description"], "Build request cancelled.");
    gate.open();
    complete(&master, running).await;
    wait_for_state(&server, "def456", "success").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stash_gets_inprogress_then_the_result_per_commit_with_basic_auth() {
    let server = HttpServer::start();
    let status = format!(
        "c['status'] = {{status.StashStatusPush('{}', 'bob', 's3cret')}}",
        server.url()
    );
    let master = TestMaster::start(&config(&status)).await;
    let gate = Gate::new(&master);
    let (bsid, _) = queue(&master, "abc123", 2, &[gate.property()]).await;
    server.wait_for(1, WAIT).await;
    gate.open();
    complete(&master, bsid).await;
    let taken = server.wait_for(2, WAIT).await;
    for request in &taken {
        assert_eq!(request.path, "/rest/build-status/1.0/commits/abc123");
        // base64("bob:s3cret")
        assert_eq!(
            request.header("authorization"),
            Some("Basic Ym9iOnMzY3JldA==")
        );
    }
    golden::check("tests/golden/push/stash.json", &bodies(&taken));
}

/// The packets of an HttpStatusPush request.
fn packets(request: &Request) -> Vec<Value> {
    let form: BTreeMap<String, String> = form_urlencoded::parse(request.body.as_bytes())
        .into_owned()
        .collect();
    serde_json::from_str(&form["packets"]).unwrap()
}

/// `value` with its times and temporary paths replaced, so a golden file holds.
fn without_times(value: Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| match k.as_str() {
                    "times" | "timestamp" | "started" => (k, json!("<time>")),
                    _ => (k, without_times(v)),
                })
                .collect(),
        ),
        // The worker's directory is the test's temporary one.
        Value::Array(items) if items.first() == Some(&json!("builddir")) => {
            json!(["builddir", "<dir>", items.last()])
        }
        Value::Array(items) => Value::Array(items.into_iter().map(without_times).collect()),
        other => other,
    }
}

fn http_push(server: &HttpServer) -> String {
    http_push_with(server, "")
}

fn http_push_with(server: &HttpServer, extra: &str) -> String {
    format!(
        "c['status'] = {{status.HttpStatusPush{{serverUrl='{}submit', user='bb', password='pw', \
           headers={{['X-Team']='moon'}}, extra_post_params={{secret='s3'}}, \
           bufferDelay=0.2, retryDelay=0.1 {extra}}}}}",
        server.url()
    )
}

/// Waits until `server` took requests carrying `count` events, and a little more to see
/// that no more come; answers the requests taken.
async fn wait_for_events(server: &HttpServer, count: usize) -> Vec<Request> {
    let deadline = std::time::Instant::now() + WAIT;
    while server
        .taken()
        .iter()
        .map(|r| packets(r).len())
        .sum::<usize>()
        < count
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{count} events did not arrive: {:#?}",
            server.requests()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let taken = server.taken();
    assert_eq!(taken.iter().map(|r| packets(r).len()).sum::<usize>(), count);
    taken
}

/// The `id`s of the events `requests` carried, request by request.
fn ids(requests: &[Request]) -> Vec<Vec<i64>> {
    requests
        .iter()
        .map(|r| {
            packets(r)
                .iter()
                .map(|p| p["id"].as_i64().unwrap())
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_push_posts_waiting_events_together_up_to_chunk_size_and_one_alone_after_a_failure() {
    let mut server = HttpServer::start();
    let master = TestMaster::start(&config(&http_push_with(&server, ", chunkSize=3"))).await;
    server.stop();
    build(&master, "abc123", 0, &[]).await;
    build(&master, "def456", 0, &[]).await;
    build(&master, "0ff1ce", 0, &[]).await;
    // The peer must have failed a request before it comes back.
    let deadline = std::time::Instant::now() + WAIT;
    while support::sql(master.dir(), "SELECT MAX(attempts) FROM outbox")[0][0].as_i64() < Some(1) {
        assert!(std::time::Instant::now() < deadline, "no request failed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    server.restart();
    let taken = wait_for_events(&server, 6).await;
    // The first request after the failures carries one event; then chunks of three.
    assert_eq!(ids(&taken), [vec![1], vec![2, 3, 4], vec![5, 6]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildbot_4_payload_posts_the_build_as_json_when_it_starts_and_finishes() {
    let server = HttpServer::start();
    let status = format!(
        "c['status'] = {{status.HttpStatusPush{{serverUrl='{}submit', payload='build'}}}}",
        server.url()
    );
    let master = TestMaster::start(&config(&status)).await;
    build(&master, "abc123", 2, &[]).await;
    let taken = server.wait_for(2, WAIT).await;
    let [started, finished] = [taken[0].json(), taken[1].json()];
    assert_eq!(taken[0].header("content-type"), Some("application/json"));
    assert_eq!(started["complete"], false);
    assert_eq!(started["builder"]["name"], "b");
    assert_eq!(finished["complete"], true);
    assert_eq!(finished["results"], 2);
    assert_eq!(finished["number"], 1);
    assert_eq!(finished["properties"]["rc"], json!([2, "Test"]));
    assert_eq!(
        finished["url"],
        "http://ci.example.org/#builders/1/builds/1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_beyond_max_memory_and_disk_items_are_dropped_oldest_first_and_listed_dead() {
    let mut server = HttpServer::start();
    let master = TestMaster::start(&config(&http_push_with(
        &server,
        ", maxMemoryItems=1, maxDiskItems=2",
    )))
    .await;
    server.stop();
    build(&master, "abc123", 0, &[]).await;
    build(&master, "def456", 0, &[]).await;
    build(&master, "0ff1ce", 0, &[]).await;
    // The last build's finished event is written just after its buildset completes.
    let deadline = std::time::Instant::now() + WAIT;
    while rows(&master, "HttpStatusPush", "pending").await
        + rows(&master, "HttpStatusPush", "dead").await
        < 6
    {
        assert!(
            std::time::Instant::now() < deadline,
            "six events never written"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(rows(&master, "HttpStatusPush", "dead").await, 3);
    let dead = master
        .context
        .db
        .outbox_messages(Some("HttpStatusPush"), &["dead"])
        .await
        .unwrap();
    assert!(dead.iter().all(|m| m.last_error.as_deref()
        == Some("dropped: the queue holds at most 3 events (maxMemoryItems + maxDiskItems)")));
    server.restart();
    let taken = wait_for_events(&server, 3).await;
    let delivered: Vec<i64> = ids(&taken).concat();
    assert_eq!(delivered, [4, 5, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_push_events_reach_a_peer_that_failed_once_each_in_order() {
    let server = HttpServer::start();
    server.script(json!([{"status": 500}, {"status": 503}, {"status": 500}]));
    let master = TestMaster::start(&config(&http_push(&server))).await;
    build(&master, "abc123", 0, &[]).await;
    build(&master, "def456", 2, &[]).await;
    let taken = wait_for_events(&server, 4).await;
    let events: Vec<(String, i64)> = taken
        .iter()
        .flat_map(packets)
        .map(|packet| {
            (
                packet["event"].as_str().unwrap().into(),
                packet["id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("buildStarted".to_string(), 1),
            ("buildFinished".to_string(), 2),
            ("buildStarted".to_string(), 3),
            ("buildFinished".to_string(), 4),
        ]
    );
    let first = &taken[0];
    assert_eq!(first.path, "/submit");
    assert_eq!(first.header("authorization"), Some("Basic YmI6cHc="));
    assert_eq!(first.header("x-team"), Some("moon"));
    assert_eq!(
        first.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert!(first.body.ends_with("&secret=s3"), "{}", first.body);
    let finished = without_times(Value::Array(
        taken
            .iter()
            .flat_map(packets)
            .filter(|p| p["id"] == 2)
            .collect(),
    ));
    golden::check(
        "tests/golden/push/http_build_finished.json",
        &(serde_json::to_string_pretty(&finished).unwrap() + "\n"),
    );
}

async fn stop(master: Master) {
    master.context.shutdown.cancel();
    master.wait().await.unwrap();
}

async fn start(dir: &Path, config: &str) -> Master {
    support::start(dir, config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_pending_at_a_restart_go_after_it_once_each_in_order() {
    let mut server = HttpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&http_push(&server));
    let master = start(dir.path(), &config).await;
    server.stop();
    build(&master, "abc123", 0, &[]).await;
    build(&master, "def456", 0, &[]).await;
    stop(master).await;
    server.restart();
    let master = start(dir.path(), &config).await;
    let taken = wait_for_events(&server, 4).await;
    assert_eq!(ids(&taken).concat(), [1, 2, 3, 4]);
    stop(master).await;
}

/// A StatusPush whose callback pops nothing while the file `hold` exists, and otherwise
/// pops its chunk, raising (so popping nothing) unless each event is the next one by `id`,
/// with its build: what a VM pops is therefore every event once, in order. A config's Lua
/// cannot write files, so the test reads what was popped from the outbox rows.
fn lua_push(hold: &Path) -> String {
    format!(
        r#"
local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end
local next_id = 1
local function push(self)
  if exists('{hold}') then
    self:queueNextServerPush()
    return
  end
  for _, e in ipairs(self.queue:popChunk()) do
    assert(e.id == next_id, 'event ' .. tostring(e.id) .. ' offered before ' .. next_id)
    assert(e.payload.build.number, 'an event without its build')
    next_id = next_id + 1
  end
  self:queueNextServerPush()
end
c['status'] = {{status.StatusPush{{serverPushCb=push, bufferDelay=0, retryDelay=0.1}}}}
"#,
        hold = hold.display()
    )
}

/// `EVENT ID BUILDNUMBER` for each StatusPush event popped (sent), by id.
async fn popped(master: &Master) -> Vec<String> {
    let mut sent = master
        .context
        .db
        .outbox_messages(Some("StatusPush"), &["sent"])
        .await
        .unwrap();
    sent.sort_by_key(|m| m.id);
    sent.iter()
        .map(|m| {
            let event: Value = serde_json::from_slice(&m.body).unwrap();
            format!(
                "{} {} {}",
                event["event"].as_str().unwrap(),
                event["id"],
                event["payload"]["build"]["number"]
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_push_cb_pops_every_event_once_in_order_across_a_restart() {
    let files = tempfile::tempdir().unwrap();
    let hold = files.path().join("hold");
    std::fs::write(&hold, "").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&lua_push(&hold));
    let master = start(dir.path(), &config).await;
    build(&master, "abc123", 0, &[]).await;
    build(&master, "def456", 2, &[]).await;
    // Offered while held: popped nothing, so still queued.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(popped(&master).await, Vec::<String>::new());
    assert_eq!(rows(&master, "StatusPush", "pending").await, 4);
    stop(master).await;
    std::fs::remove_file(&hold).unwrap();
    let master = start(dir.path(), &config).await;
    let mut expected = vec![
        "buildStarted 1 1",
        "buildFinished 2 1",
        "buildStarted 3 2",
        "buildFinished 4 2",
    ];
    let deadline = std::time::Instant::now() + WAIT;
    while popped(&master).await.len() < expected.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "events did not all arrive"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    build(&master, "0ff1ce", 0, &[]).await;
    expected.extend(["buildStarted 5 3", "buildFinished 6 3"]);
    while popped(&master).await.len() < expected.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "events did not all arrive"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(popped(&master).await, expected);
    assert_eq!(rows(&master, "StatusPush", "pending").await, 0);
    stop(master).await;
}

/// Whether a GitHub status of a build's success waits in the outbox.
async fn success_waits(master: &Master) -> bool {
    let waiting = master
        .context
        .db
        .outbox_messages(Some("GitHubStatus"), &["pending"])
        .await
        .unwrap();
    waiting
        .iter()
        .any(|message| String::from_utf8_lossy(&message.body).contains(r#""state":"success""#))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconfig_keeps_waiting_statuses_and_the_new_options_take_the_next_build() {
    let mut server = HttpServer::start();
    let mut master = TestMaster::start(&config(&github(&server, ", context='old'"))).await;
    server.stop();
    build(&master, "abc123", 0, &[("owner", json!("octo"))]).await;
    // The build's result waits in the outbox before the reconfig: the build's end, announced
    // just after its buildset is complete, would otherwise reach the new target too.
    let deadline = std::time::Instant::now() + WAIT;
    while !success_waits(&master).await {
        assert!(std::time::Instant::now() < deadline, "no result waits");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let file = master.dir().join("master.cfg.lua");
    let write = |status: &str| std::fs::write(&file, config(status)).unwrap();
    write(&github(&server, ", context='new'"));
    let outcome = master.reconfig().await;
    assert_eq!(
        outcome.line, "reconfig complete (+0 ~1 -0 services)",
        "{outcome:?}"
    );
    server.restart();
    let taken = wait_for_state(&server, "abc123", "success").await;
    assert!(
        taken.iter().all(|r| r.json()["context"] == "old"),
        "{taken:#?}"
    );
    build(&master, "def456", 0, &[("owner", json!("octo"))]).await;
    let taken = wait_for_state(&server, "def456", "success").await;
    let last = taken.last().unwrap();
    assert_eq!(last.json()["context"], "new");

    // A target removed with statuses waiting keeps them in the outbox.
    server.stop();
    build(&master, "0ff1ce", 0, &[("owner", json!("octo"))]).await;
    write("");
    let outcome = master.reconfig().await;
    assert_eq!(
        outcome.line, "reconfig complete (+0 ~0 -1 services)",
        "{outcome:?}"
    );
    assert!(rows(&master, "GitHubStatus", "pending").await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_claimed_before_its_queued_status_is_written_gets_none_to_supersede_its_builds() {
    let server = HttpServer::start();
    let master = TestMaster::start(&config(&github(&server, ""))).await;
    let ctx = &master.context;
    // Claimed before the target hears that it was queued, as when the engine is quicker
    // than the target: a queued status written now would come after its build's statuses
    // and supersede the final one.
    let owner = ("owner", json!("octo"));
    let repository = "https://example.org/moon.git";
    let properties = std::slice::from_ref(&owner);
    let (_, brid) = store_request(&master, repository, "fed789", 0, properties).await;
    assert!(ctx
        .db
        .claim_requests(&[brid], ctx.masterid.get())
        .await
        .unwrap());
    publish(&ctx.db, &ctx.bus, Resource::BuildRequest(brid), "new")
        .await
        .unwrap();
    // The target hears of requests in order: once the next one is built and reported, it
    // has heard of this one.
    build(&master, "a11ce5", 0, properties).await;
    wait_for_state(&server, "a11ce5", "success").await;
    let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE dedup_key LIKE $1")
        .bind(format!("%#request:{brid}:queued"))
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap();
    assert_eq!(queued, 0, "{:#?}", server.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_queued_or_cancelled_while_the_target_was_away_are_reported_when_it_returns() {
    let server = HttpServer::start();
    let with_github = config(&github(&server, ""));
    let mut master = TestMaster::start(&with_github).await;
    let owner = ("owner", json!("octo"));
    let gate = Gate::new(&master);
    let (running, _) = queue(&master, "abc123", 0, &[owner.clone(), gate.property()]).await;
    wait_for_state(&server, "abc123", "pending").await;
    let file = master.dir().join("master.cfg.lua");
    std::fs::write(&file, config("")).unwrap();
    assert_eq!(
        master.reconfig().await.line,
        "reconfig complete (+0 ~0 -1 services)"
    );
    // While no GitHubStatus runs: one request waits behind the running build, one is
    // cancelled before it was built.
    queue(&master, "def456", 0, std::slice::from_ref(&owner)).await;
    let (_, cancelled) = queue(&master, "0ff1ce", 0, &[owner]).await;
    master
        .context
        .control
        .cancel_request(cancelled, "not wanted".into())
        .await
        .unwrap();
    std::fs::write(&file, &with_github).unwrap();
    assert_eq!(
        master.reconfig().await.line,
        "reconfig complete (+1 ~0 -0 services)"
    );
    let taken = wait_for_state(&server, "def456", "pending").await;
    assert!(
        taken
            .iter()
            .any(|r| r.path.ends_with("def456") && r.json()["description"] == "Build queued."),
        "{taken:#?}"
    );
    wait_for_state(&server, "0ff1ce", "error").await;
    gate.open();
    complete(&master, running).await;
    wait_for_state(&server, "def456", "success").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_started_while_the_target_was_away_gets_its_start_status_when_it_returns() {
    let server = HttpServer::start();
    let with_github = config(&github(&server, ""));
    let mut master = TestMaster::start(&with_github).await;
    std::fs::write(master.dir().join("master.cfg.lua"), config("")).unwrap();
    assert_eq!(
        master.reconfig().await.line,
        "reconfig complete (+0 ~0 -1 services)"
    );
    let owner = ("owner", json!("octo"));
    let gate = Gate::new(&master);
    let (running, _) = queue(&master, "abc123", 0, &[owner, gate.property()]).await;
    let deadline = std::time::Instant::now() + WAIT;
    while support::sql(master.dir(), "SELECT COUNT(*) FROM builds")[0][0] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the build never started"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    std::fs::write(master.dir().join("master.cfg.lua"), &with_github).unwrap();
    assert_eq!(
        master.reconfig().await.line,
        "reconfig complete (+1 ~0 -0 services)"
    );
    let taken = wait_for_state(&server, "abc123", "pending").await;
    assert_eq!(taken[0].json()["description"], "b started", "{taken:#?}");
    gate.open();
    complete(&master, running).await;
    wait_for_state(&server, "abc123", "success").await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Forces a build of `revision` through the web server's JSON-RPC, retrying while the
/// master starts.
async fn force(web_port: u16, revision: &str) {
    let body = json!({"jsonrpc": "2.0", "method": "force", "id": 1,
                      "params": {"builderid": 1, "revision": revision}});
    let url = format!("http://127.0.0.1:{web_port}/api/v2/forceschedulers/force");
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let answer = client.post(&url).json(&body).send().await;
        if answer.is_ok_and(|answer| answer.status().is_success()) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the master never took the force"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_queued_when_the_master_is_killed_arrive_after_the_restart_once_each_as_the_last_state(
) {
    let mut server = HttpServer::start();
    let web = free_port();
    let status = format!(
        "c['www'] = {{port={web}}}\n\
         c['collapseRequests'] = false\n\
         c['schedulers'] = {{schedulers.ForceScheduler{{name='force', builderNames={{'b'}}}}}}\n\
         c['status'] = {{status.GitHubStatus{{token='t0k', repoOwner='moon', repoName='moon', \
           baseURL='{}api/v3'}}}}",
        server.url()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("master.cfg.lua"), config(&status)).unwrap();
    server.stop();
    let master = master_process::spawn_master(dir.path(), &[]);
    for revision in ["a1", "b2", "c3"] {
        force(web, revision).await;
    }
    // Each commit's started and finished statuses were written (and its queued one, unless
    // its build started before the request was looked at); only the last of each waits,
    // the others superseded.
    let deadline = std::time::Instant::now() + WAIT;
    let count = |condition: &str| {
        support::sql(
            dir.path(),
            &format!("SELECT COUNT(*) FROM outbox WHERE {condition}"),
        )[0][0]
            .as_i64()
    };
    while count("state = 'superseded'") < Some(3)
        || count("state = 'pending'") != Some(3)
        || count("state = 'pending' AND summary LIKE 'success %'") != Some(3)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "three final statuses never queued: {:?}",
            support::sql(dir.path(), "SELECT state, summary FROM outbox")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    master_process::kill(master);
    server.restart();
    let master = master_process::spawn_master(dir.path(), &[]);
    let taken = server.wait_for(3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    master_process::kill(master);
    assert_eq!(server.taken().len(), 3, "{:#?}", server.requests());
    let statuses: Vec<(String, String)> = taken
        .iter()
        .map(|r| (r.path.clone(), r.json()["state"].as_str().unwrap().into()))
        .collect();
    let expected: Vec<(String, String)> = ["a1", "b2", "c3"]
        .iter()
        .map(|sha| {
            (
                format!("/api/v3/repos/moon/moon/statuses/{sha}"),
                "success".into(),
            )
        })
        .collect();
    assert_eq!(statuses, expected);
}
