//! Change sources written in Lua against real peers: a git repository made by the test
//! (through `util.runProcess`), a JSON feed on a loopback HTTP server (through
//! `util.httpRequest`), POSTs to `/change_source/NAME` on the web server; restarts and
//! reconfigs of a master running in this process.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use moonbot::master::Master;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

mod support;

use support::{start, TestMaster, WAIT};

/// Waits until `check` holds, polling the master's storage; panics after [`WAIT`].
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let waited = tokio::time::timeout(WAIT, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

async fn state(master: &Master, source: &str, key: &str) -> Value {
    master
        .context
        .db
        .get_state(&format!("LuaChangeSource:{source}"), key)
        .await
        .unwrap()
        .unwrap_or(Value::Null)
}

/// `(author, revision)` of every change, oldest first.
async fn changes(master: &Master) -> Vec<(String, String)> {
    sqlx::query_as("SELECT author, revision FROM changes ORDER BY changeid")
        .fetch_all(&master.context.db.pool)
        .await
        .unwrap()
}

async fn stop(master: Master) {
    master.context.shutdown.cancel();
    master.wait().await.expect("the master stops cleanly");
}

fn git(repo: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", repo)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.org")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.org")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn commit(repo: &Path, file: &str) -> String {
    std::fs::write(repo.join(file), file).unwrap();
    git(repo, &["add", file]);
    git(repo, &["commit", "-q", "-m", &format!("add {file}")]);
    git(repo, &["rev-parse", "HEAD"])
}

/// A poller for a version-control system the master does not know, as a user writes one:
/// the head from `git ls-remote`, the commits since the last one seen from `git log`.
const GIT_POLLER: &str = r#"
c['change_source'] = { changes.PollingChangeSource{
  name = "lua-git", repo = REPO, pollInterval = 1, pollAtLaunch = true,
  poll = function(self)
    local heads = util.runProcess{"git", "ls-remote", self.repo, "refs/heads/main"}
    if heads.rc ~= 0 then
      error("ls-remote failed: " .. heads.stderr)
    end
    local head = heads.stdout:match("^(%x+)")
    local last = self:getState("lastRev")
    if last ~= nil and last ~= head then
      local log = util.runProcess{"git", "log", "--reverse", "--format=%H %an", last .. ".." .. head, workdir = self.repo}
      for revision, author in log.stdout:gmatch("(%x+) ([^\n]+)") do
        self:addChange{author = author, revision = revision, branch = "main", repository = self.repo}
      end
    end
    self:setState("lastRev", head)
  end,
}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lua_git_poller_makes_each_new_commit_a_change_once_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("upstream");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let first = commit(&repo, "a");
    let config = format!(
        "local c = BuildmasterConfig\nlocal REPO = {:?}\n{GIT_POLLER}",
        repo.display().to_string()
    );
    let master = start(dir.path(), &config).await;
    until("the first poll records the head", || async {
        state(&master, "lua-git", "lastRev").await == json!(first)
    })
    .await;
    let second = commit(&repo, "b");
    until("the second commit is a change", || async {
        !changes(&master).await.is_empty()
    })
    .await;
    stop(master).await;

    let third = commit(&repo, "c");
    let master = start(dir.path(), &config).await;
    until("the commit made while stopped is seen", || async {
        state(&master, "lua-git", "lastRev").await == json!(third)
    })
    .await;
    assert_eq!(
        changes(&master).await,
        [("Ada".to_string(), second), ("Ada".to_string(), third)]
    );
    stop(master).await;
}

/// A JSON feed on a loopback HTTP server: the entries it lists, and how often it was read.
#[derive(Clone, Default)]
struct Feed {
    entries: Arc<Mutex<Vec<Value>>>,
    reads: Arc<Mutex<usize>>,
}

impl Feed {
    async fn serve(&self) -> String {
        let feed = self.clone();
        let app = Router::new().route(
            "/feed.json",
            get(move || {
                let feed = feed.clone();
                async move {
                    *feed.reads.lock().unwrap() += 1;
                    Json(Value::Array(feed.entries.lock().unwrap().clone()))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}/feed.json")
    }

    fn push(&self, id: u64, author: &str) {
        self.entries
            .lock()
            .unwrap()
            .push(json!({"id": id, "author": author, "title": format!("entry {id}")}));
    }

    fn reads(&self) -> usize {
        *self.reads.lock().unwrap()
    }
}

const FEED_POLLER: &str = r#"
c['change_source'] = { changes.PollingChangeSource{
  name = "feed", feed = FEED, pollInterval = 1, pollAtLaunch = true,
  poll = function(self)
    local response = util.httpRequest{url = self.feed, headers = {Accept = "application/json"}, timeout = 10}
    if response.status ~= 200 then
      error("the feed answered " .. response.status)
    end
    local last = self:getState("lastId", 0)
    for _, entry in ipairs(util.jsonDecode(response.body)) do
      if entry.id > last then
        self.master.data.updates.addChange{author = entry.author, revision = tostring(entry.id),
          comments = entry.title, files = {}, branch = "main", src = "feed"}
        last = entry.id
      end
    end
    self:setState("lastId", last)
  end,
}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lua_poller_of_an_http_json_feed_submits_each_entry_once_across_a_restart() {
    let feed = Feed::default();
    let url = feed.serve().await;
    feed.push(1, "ada");
    feed.push(2, "bob");
    let dir = tempfile::tempdir().unwrap();
    let config = format!("local c = BuildmasterConfig\nlocal FEED = {url:?}\n{FEED_POLLER}");
    let master = start(dir.path(), &config).await;
    until("both entries are changes", || async {
        changes(&master).await.len() == 2
    })
    .await;
    feed.push(3, "cy");
    until("the new entry is a change", || async {
        changes(&master).await.len() == 3
    })
    .await;
    stop(master).await;

    let reads = feed.reads();
    let master = start(dir.path(), &config).await;
    // Polls run one after another: two more reads mean one whole poll after the restart.
    until("a poll after the restart has ended", || async {
        feed.reads() >= reads + 2
    })
    .await;
    let expected: Vec<(String, String)> = [("ada", "1"), ("bob", "2"), ("cy", "3")]
        .iter()
        .map(|(a, r)| (a.to_string(), r.to_string()))
        .collect();
    assert_eq!(changes(&master).await, expected);
    stop(master).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_that_raises_leaves_the_source_polling() {
    let master = TestMaster::start(
        r#"local c = BuildmasterConfig
c['change_source'] = { changes.PollingChangeSource{
  name = "flaky", pollInterval = 1, pollAtLaunch = true,
  poll = function(self)
    local n = self:getState("polls", 0) + 1
    self:setState("polls", n)
    error("the feed is down (poll " .. n .. ")")
  end,
}}
"#,
    )
    .await;
    until("the source polled three times", || async {
        state(&master, "flaky", "polls").await.as_i64() >= Some(3)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_waiting_on_a_slow_process_holds_up_no_other_source() {
    let master = TestMaster::start(
        r#"local c = BuildmasterConfig
c['change_source'] = {
  changes.PollingChangeSource{
    name = "slow", pollInterval = 1, pollAtLaunch = true,
    poll = function(self)
      self:setState("slow", "started")
      util.runProcess{"sleep", "600", timeout = 900}
      self:setState("slow", "done")
    end,
  },
  changes.PollingChangeSource{
    name = "fast", pollInterval = 1, pollAtLaunch = true,
    poll = function(self)
      local n = self:getState("polls", 0) + 1
      self:addChange{author = "fast", revision = tostring(n), branch = "main"}
      self:setState("polls", n)
    end,
  },
}
"#,
    )
    .await;
    until("the slow poll waits on its process", || async {
        state(&master, "slow", "slow").await == json!("started")
    })
    .await;
    let polls = state(&master, "fast", "polls").await.as_i64().unwrap_or(0);
    until("the fast source polled twice more", || async {
        state(&master, "fast", "polls").await.as_i64() >= Some(polls + 2)
    })
    .await;
    assert_eq!(state(&master, "slow", "slow").await, json!("started"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_to_a_push_source_makes_a_change_that_starts_a_build() {
    let master = TestMaster::start(
        r#"local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local") }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{command = {"true"}})
c['builders'] = { util.BuilderConfig{name = "b", workernames = {"local"}, factory = f} }
c['schedulers'] = { schedulers.AnyBranchScheduler{name = "s", builderNames = {"b"}} }
c['status'] = { status.WebStatus{http_port = "tcp:0:interface=127.0.0.1"} }
c['change_source'] = { changes.ChangeSource{
  name = "hook",
  describe = function(self) return "pushes from the forge" end,
  startService = function(self)
    self:callLater(0.1, function(self) self:setState("timer", "fired") end)
  end,
  handleRequest = function(self, request)
    if request.method ~= "POST" then
      return {status = 405, body = {error = "POST only"}}
    end
    local push = util.jsonDecode(request.body)
    local id = self:addChange{author = push.author, revision = push.rev, branch = "main",
      files = {"README"}, properties = {pushed_by = push.author}}
    return {status = 200, body = {change = id, path = request.path}}
  end,
}}
"#,
    )
    .await;
    until("the timer of startService fired", || async {
        state(&master, "hook", "timer").await == json!("fired")
    })
    .await;
    let base = format!("http://{}/change_source/hook", master.web_address.unwrap());
    let client = reqwest::Client::new();
    let refused = client.get(&base).send().await.unwrap();
    assert_eq!(refused.status(), 405);
    let answer = client
        .post(format!("{base}/push"))
        .body(json!({"author": "ada", "rev": "abc123"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["path"], "/push");
    let change = body["change"].as_i64().unwrap();
    until("a build of the change succeeds", || async {
        let done: Vec<(i64,)> = sqlx::query_as(
            "SELECT results FROM buildsets WHERE complete = 1 AND id IN \
             (SELECT b.buildsetid FROM buildset_sourcestamps b JOIN changes c \
              ON c.sourcestampid = b.sourcestampid WHERE c.changeid = $1)",
        )
        .bind(change)
        .fetch_all(&master.context.db.pool)
        .await
        .unwrap();
        done == [(0,)]
    })
    .await;
    let unknown = client
        .post(format!(
            "http://{}/change_source/nope",
            master.web_address.unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

async fn reconfig(master: &mut TestMaster, config: String) -> moonbot::master::Outcome {
    std::fs::write(master.dir().join("master.cfg.lua"), config).unwrap();
    tokio::time::timeout(WAIT, master.reconfig())
        .await
        .expect("the reconfig does not wait for the poll")
}

/// A poller whose poll waits ten minutes, counting its starts and stops in its state and its
/// polls as lines of `polls.log` in `dir`: a poll that has stored nothing is abandoned at once.
fn watcher(dir: &Path, url: &str, note: &str) -> String {
    let log = dir.join("polls.log").display().to_string();
    format!(
        r#"local c = BuildmasterConfig
local function count(self, key) self:setState(key, self:getState(key, 0) + 1) end
c['change_source'] = {{ changes.PollingChangeSource{{
  name = "watch", url = {url:?}, note = {note:?}, compare_attrs = {{"url"}},
  pollInterval = 3600, pollAtLaunch = true,
  startService = function(self) count(self, "starts") end,
  stopService = function(self) count(self, "stops") end,
  poll = function(self)
    util.runProcess{{"sh", "-c", "echo poll >> " .. {log:?} .. " && exec sleep 600", timeout = 900}}
  end,
}} }}
"#
    )
}

/// How many polls the [`watcher`] in `dir` began.
fn polls(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("polls.log"))
        .map(|log| log.lines().count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconfig_restarts_a_lua_poller_only_when_a_compare_attr_changed_and_waits_for_no_poll() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_path_buf();
    let mut master =
        TestMaster::start_in(dir, &watcher(&home, "https://one.example", "first")).await;
    until("the poll at launch is under way", || async {
        polls(&home) == 1
    })
    .await;
    // Another field, not in compare_attrs: the source keeps running, its timer too.
    let outcome = reconfig(&mut master, watcher(&home, "https://one.example", "second")).await;
    assert_eq!(outcome.line, "reconfig complete (+0 ~0 -0 services)");
    assert_eq!(state(&master, "watch", "starts").await, json!(1));
    assert_eq!(state(&master, "watch", "stops").await, Value::Null);

    let outcome = reconfig(&mut master, watcher(&home, "https://two.example", "second")).await;
    assert_eq!(outcome.line, "reconfig complete (+0 ~1 -0 services)");
    until("the new source started and polled at launch", || async {
        polls(&home) == 2
    })
    .await;
    assert_eq!(state(&master, "watch", "stops").await, json!(1));
    assert_eq!(state(&master, "watch", "starts").await, json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_master_abandons_a_poll_waiting_on_a_process() {
    let dir = tempfile::tempdir().unwrap();
    let master = start(dir.path(), &watcher(dir.path(), "https://one.example", "n")).await;
    until("the poll at launch is under way", || async {
        polls(dir.path()) == 1
    })
    .await;
    let shutdown: CancellationToken = master.context.shutdown.clone();
    shutdown.cancel();
    tokio::time::timeout(WAIT, master.wait())
        .await
        .expect("the master stops without waiting for the poll")
        .unwrap();
}

/// A poll that stops between its `addChange` and its `setState` would report its change
/// again at the next start: a poll that has stored something is let finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_master_lets_a_poll_that_stored_a_change_finish_and_keep_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"local c = BuildmasterConfig
c['change_source'] = { changes.PollingChangeSource{
  name = "between", pollInterval = 1, pollAtLaunch = true,
  poll = function(self)
    local n = self:getState("seen", 0) + 1
    self:addChange{author = "between", revision = tostring(n), branch = "main"}
    util.runProcess{"sleep", "1"}
    self:setState("seen", n)
  end,
} }
"#;
    let master = start(dir.path(), config).await;
    until("the poll stored its change", || async {
        !changes(&master).await.is_empty()
    })
    .await;
    stop(master).await;
    let master = start(dir.path(), config).await;
    until("the next start polled", || async {
        changes(&master).await.len() >= 2
    })
    .await;
    let revisions: Vec<String> = changes(&master).await.into_iter().map(|(_, r)| r).collect();
    assert_eq!(revisions[..2], ["1", "2"]);
    stop(master).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_waiting_longer_than_the_lua_time_limit_is_not_timed_out_but_a_loop_is() {
    let master = TestMaster::start(
        r#"local c = BuildmasterConfig
c['lua'] = {timeout = 0.5}
c['change_source'] = {
  changes.PollingChangeSource{
    name = "waits", pollInterval = 3600, pollAtLaunch = true,
    poll = function(self)
      local result = util.runProcess{"sleep", "1"}
      self:setState("rc", result.rc)
    end,
  },
  changes.PollingChangeSource{
    name = "spins", pollInterval = 1, pollAtLaunch = true,
    poll = function(self)
      self:setState("polls", self:getState("polls", 0) + 1)
      while true do end
    end,
  },
}
"#,
    )
    .await;
    until("the waiting poll has ended", || async {
        state(&master, "waits", "rc").await == json!(0)
    })
    .await;
    until(
        "the spinning source was stopped and polled again",
        || async { state(&master, "spins", "polls").await.as_i64() >= Some(2) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_are_errors_a_poll_can_catch_at_its_own_line() {
    let master = TestMaster::start(
        r#"local c = BuildmasterConfig
c['change_source'] = { changes.PollingChangeSource{
  name = "errors", pollInterval = 3600, pollAtLaunch = true,
  poll = function(self)
    local seen = {}
    local function try(f)
      local ok, message = pcall(f)
      seen[#seen + 1] = ok and "ok" or message
    end
    try(function() util.runProcess{"/nonexistent/tool"} end)
    try(function() util.runProcess{"sleep", "5", timeout = 0.2} end)
    try(function() util.httpRequest{url = "http://127.0.0.1:1/"} end)
    try(function() self:addChange{author = "a", nonsense = 1} end)
    try(function() util.runProcess("git") end)
    local inner = coroutine.wrap(function() util.runProcess{"true"} end)
    try(inner)
    self:setState("seen", seen)
  end,
}}
"#,
    )
    .await;
    until("the poll recorded what it caught", || async {
        !state(&master, "errors", "seen").await.is_null()
    })
    .await;
    let seen = state(&master, "errors", "seen").await;
    let seen: Vec<&str> = seen
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let expected = [
        "master.cfg.lua:10: util.runProcess: cannot run '/nonexistent/tool'",
        "master.cfg.lua:11: util.runProcess: 'sleep 5' timed out after 200ms",
        "master.cfg.lua:12: util.httpRequest: GET http://127.0.0.1:1/: ",
        "master.cfg.lua:13: addChange: unknown field `nonsense`",
        "master.cfg.lua:14: util.runProcess takes a table",
        "master.cfg.lua:15: util.runProcess can only be called from a change source's functions",
    ];
    assert_eq!(seen.len(), expected.len(), "{seen:#?}");
    for (seen, expected) in seen.iter().zip(expected) {
        assert!(
            seen.starts_with(expected),
            "{seen}\nshould start with\n{expected}"
        );
    }
}
