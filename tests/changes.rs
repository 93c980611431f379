//! Change sources against real peers: GitPoller with the git binary on repositories in temp
//! dirs, PBChangeSource over HTTP on 127.0.0.1 fed by the sendchange client, all storing into
//! a real SQLite database and announcing on the bus.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use moonbot::bus::{Event, Subscription};
use moonbot::changes::{
    send_change, sendchange, ChangeMessage, GitPollerService, RunningSource, SendError,
    SendchangeArgs,
};
use moonbot::config::build::ChangeSourceConfig;
use moonbot::db::Db;
use moonbot::runtime::{Context, Control, Polls, Reconfigured, Service, Shared};
use moonbot::script::ScriptHost;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

/// A master context over `basedir` with the given config (its `c` is BuildmasterConfig).
async fn context(basedir: &Path, config: &str) -> Context {
    let source = format!("local c = BuildmasterConfig\n{config}");
    let loaded = moonbot::config::load_source("master.cfg.lua", &source, basedir)
        .unwrap_or_else(|errors| panic!("{errors}"));
    let config = Arc::new(loaded.config);
    let db = Db::open("sqlite:///state.sqlite", basedir).await.unwrap();
    let script = ScriptHost::start(loaded.lua, config.script_limits).unwrap();
    let masterid = db.start_master("test:master", &[]).await.unwrap().masterid;
    Context::new(Shared {
        db,
        bus: Default::default(),
        control: Control::channel().0,
        polls: Polls::channel().0,
        script,
        config: moonbot::runtime::SharedConfig::new((*config).clone()),
        basedir: basedir.to_path_buf(),
        masterid: masterid.into(),
        shutdown: CancellationToken::new(),
        source_endpoints: Default::default(),
    })
}

fn git(repo: &Path, args: &[&str], date: &str) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_AUTHOR_DATE", date)
        .env("GIT_COMMITTER_DATE", date)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", repo)
        .env("GIT_COMMITTER_NAME", "Com Mitter")
        .env("GIT_COMMITTER_EMAIL", "cm@example.org")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A repository with one commit on `main`; returns its path.
fn upstream(dir: &Path) -> std::path::PathBuf {
    let repo = dir.join("upstream");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"], "");
    commit(
        &repo,
        "README",
        "start",
        "Up Stream <up@example.org>",
        1_600_000_000,
    );
    repo
}

/// Commits `file` with `message` by `author` at `when`; returns the new revision.
fn commit(repo: &Path, file: &str, message: &str, author: &str, when: i64) -> String {
    let path = repo.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, format!("{message}\n")).unwrap();
    git(repo, &["add", file], "");
    let date = format!("@{when} +0000");
    git(
        repo,
        &["commit", "-q", "--author", author, "-m", message],
        &date,
    );
    git(repo, &["rev-parse", "HEAD"], "")
}

fn poller(ctx: &Context, index: usize) -> GitPollerService {
    match &ctx.config.current().change_sources[index] {
        ChangeSourceConfig::GitPoller(config) => {
            GitPollerService::new(ctx.clone(), config, ctx.shutdown.child_token()).unwrap()
        }
        other => panic!("source {index} is a {}", other.kind()),
    }
}

async fn next_event(events: &mut Subscription) -> Arc<Event> {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event in time")
        .unwrap()
}

async fn change_count(db: &Db) -> usize {
    let mut count = 0;
    while db.change(count as i64 + 1).await.is_ok() {
        count += 1;
    }
    count
}

#[tokio::test]
async fn git_poller_reports_new_commits_oldest_first_and_never_twice() {
    let dir = tempfile::tempdir().unwrap();
    let repo = upstream(dir.path());
    git(&repo, &["branch", "dev"], "");
    let url = repo.to_str().unwrap();
    let ctx = context(
        dir.path(),
        &format!(
            r#"c['change_source']:append(changes.GitPoller{{
                 repourl = "{url}", branches = {{ "main", "dev" }}, workdir = "gp",
                 project = "hello", category = "upstream" }})"#
        ),
    )
    .await;

    let mut first = poller(&ctx, 0);
    assert_eq!(first.poll().await.unwrap(), 0, "history is not news");
    let main_head = git(&repo, &["rev-parse", "main"], "");
    let heads = ctx
        .db
        .get_state(&format!("GitPoller:{url}"), "lastRev")
        .await;
    assert_eq!(
        heads.unwrap(),
        Some(json!({ "main": main_head, "dev": main_head }))
    );
    assert_eq!(change_count(&ctx.db).await, 0);
    assert!(
        dir.path().join("gp/HEAD").exists(),
        "a bare repository in the workdir"
    );

    let mut events = ctx.bus.subscribe();
    let m1 = commit(
        &repo,
        "src/a.c",
        "first on main\n\nwith a body",
        "Amy <amy@example.org>",
        1_700_000_000,
    );
    let m2 = commit(
        &repo,
        "café.txt",
        "second on main",
        "Bob <bob@example.org>",
        1_700_000_100,
    );
    git(&repo, &["checkout", "-q", "dev"], "");
    let d1 = commit(
        &repo,
        "dev.txt",
        "on dev",
        "Dee <dee@example.org>",
        1_700_000_200,
    );
    git(&repo, &["checkout", "-q", "main"], "");

    assert_eq!(first.poll().await.unwrap(), 3);
    // Branches in ref order (dev, main), each branch's commits oldest first; the comments
    // are subject and body as Buildbot reads them (`%s%n%b`).
    let expected = [
        (
            &d1,
            "dev",
            "Dee <dee@example.org>",
            "on dev",
            "dev.txt",
            1_700_000_200,
        ),
        (
            &m1,
            "main",
            "Amy <amy@example.org>",
            "first on main\nwith a body",
            "src/a.c",
            1_700_000_000,
        ),
        (
            &m2,
            "main",
            "Bob <bob@example.org>",
            "second on main",
            "café.txt",
            1_700_000_100,
        ),
    ];
    for (index, (revision, branch, author, comments, file, when)) in expected.iter().enumerate() {
        let id = index as i64 + 1;
        let (change, _) = ctx.db.change(id).await.unwrap();
        assert_eq!(change.revision.as_deref(), Some(revision.as_str()));
        assert_eq!(change.branch.as_deref(), Some(*branch));
        assert_eq!(change.who, *author);
        assert_eq!(change.comments, *comments);
        assert_eq!(change.files, vec![file.to_string()]);
        assert_eq!(change.when, *when);
        assert_eq!(change.project, "hello");
        assert_eq!(change.category.as_deref(), Some("upstream"));
        assert_eq!(change.repository, url);
        assert_eq!(
            next_event(&mut events).await.key,
            format!("changes/{id}/new")
        );
    }

    // A restart: a new poller over the same database knows what was seen, so a commit made
    // while it was down is reported, and nothing before it again.
    drop(first);
    let m3 = commit(
        &repo,
        "README",
        "third on main",
        "Amy <amy@example.org>",
        1_700_000_300,
    );
    let mut restarted = poller(&ctx, 0);
    assert_eq!(restarted.poll().await.unwrap(), 1);
    assert_eq!(restarted.poll().await.unwrap(), 0);
    assert_eq!(change_count(&ctx.db).await, 4);
    let (change, _) = ctx.db.change(4).await.unwrap();
    assert_eq!(change.revision, Some(m3));
    assert_eq!(next_event(&mut events).await.key, "changes/4/new");
}

#[tokio::test]
async fn git_poller_fails_a_poll_with_gits_message_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-repo");
    let ctx = context(
        dir.path(),
        &format!(
            r#"c['change_source']:append(changes.GitPoller{{ repourl = "{}" }})"#,
            missing.display()
        ),
    )
    .await;
    let mut service = poller(&ctx, 0);
    let error = format!("{:#}", service.poll().await.unwrap_err());
    assert!(error.contains("ls-remote"), "{error}");
    assert!(error.contains("no-such-repo"), "{error}");
    // Once the repository exists, the same poller works.
    std::fs::create_dir(&missing).unwrap();
    git(&missing, &["init", "-q", "-b", "trunk"], "");
    commit(&missing, "f", "one", "A <a@example.org>", 1_600_000_000);
    assert_eq!(service.poll().await.unwrap(), 0);
    commit(&missing, "f", "two", "A <a@example.org>", 1_600_000_001);
    assert_eq!(service.poll().await.unwrap(), 1);
    let (change, _) = ctx.db.change(1).await.unwrap();
    // The remote's default branch, found through its HEAD.
    assert_eq!(change.branch.as_deref(), Some("trunk"));
}

#[tokio::test]
async fn only_tags_and_pushes_without_commits() {
    let dir = tempfile::tempdir().unwrap();
    let repo = upstream(dir.path());
    git(&repo, &["tag", "v1"], "");
    let url = repo.to_str().unwrap();
    let ctx = context(
        dir.path(),
        &format!(
            r#"c['change_source']:append(changes.GitPoller{{
                 repourl = "{url}", only_tags = true, name = "tags" }})
               c['change_source']:append(changes.GitPoller{{
                 repourl = "{url}", only_tags = true, name = "pushes",
                 buildPushesWithNoCommits = true }})"#
        ),
    )
    .await;
    let (mut tags, mut pushes) = (poller(&ctx, 0), poller(&ctx, 1));
    assert_eq!(tags.poll().await.unwrap(), 0);
    assert_eq!(pushes.poll().await.unwrap(), 0);
    // A new tag on a commit already seen: no new commit, but a push.
    git(&repo, &["tag", "v2"], "");
    assert_eq!(tags.poll().await.unwrap(), 0);
    assert_eq!(pushes.poll().await.unwrap(), 1);
    let (change, _) = ctx.db.change(1).await.unwrap();
    assert_eq!(change.branch.as_deref(), Some("refs/tags/v2"));
    assert_eq!(change.revision, Some(git(&repo, &["rev-parse", "v1"], "")));
    // A branch commit is not a tag.
    commit(&repo, "f", "untagged", "A <a@example.org>", 1_700_000_000);
    assert_eq!(tags.poll().await.unwrap(), 0);
    let tagged = commit(&repo, "f", "tagged", "A <a@example.org>", 1_700_000_001);
    git(&repo, &["tag", "v3"], "");
    assert_eq!(tags.poll().await.unwrap(), 2, "both commits up to the tag");
    let (change, _) = ctx.db.change(3).await.unwrap();
    assert_eq!(change.revision, Some(tagged));
    assert_eq!(change.branch.as_deref(), Some("refs/tags/v3"));
}

#[tokio::test]
async fn a_started_poller_polls_on_its_own_until_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let repo = upstream(dir.path());
    let url = repo.to_str().unwrap();
    let ctx = context(
        dir.path(),
        &format!(
            r#"c['change_source']:append(changes.GitPoller{{
                 repourl = "{url}", branches = true, pollInterval = 1, pollAtLaunch = true,
                 category = function(change) return change.branch .. "-" .. #change.files end }})"#
        ),
    )
    .await;
    let mut events = ctx.bus.subscribe();
    let running = RunningSource::start(&ctx, &ctx.config.current().change_sources[0])
        .await
        .unwrap();
    assert_eq!(running.local_addr(), None);
    let state = format!("GitPoller:{url}");
    tokio::time::timeout(WAIT, async {
        while ctx.db.get_state(&state, "lastRev").await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the launch poll records the heads");
    git(&repo, &["checkout", "-q", "-b", "feature"], "");
    let revision = commit(
        &repo,
        "x/y.c",
        "feature work",
        "Fay <fay@example.org>",
        1_700_000_000,
    );

    let event = next_event(&mut events).await;
    assert_eq!(event.key, "changes/1/new");
    let (change, _) = ctx.db.change(1).await.unwrap();
    assert_eq!(change.revision, Some(revision));
    assert_eq!(change.branch.as_deref(), Some("feature"));
    assert_eq!(change.category.as_deref(), Some("feature-1"));

    ctx.shutdown.cancel();
    tokio::time::timeout(WAIT, running.stop())
        .await
        .expect("the poller stops on shutdown");
}

#[tokio::test]
async fn poll_now_wakes_a_git_poller_and_a_lua_poller_before_their_hour_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let repo = upstream(dir.path());
    let url = repo.to_str().unwrap();
    let ctx = context(
        dir.path(),
        &format!(
            r#"c['change_source']:append(changes.GitPoller{{ repourl = "{url}", pollInterval = 3600 }})
c['change_source']:append(changes.PollingChangeSource{{ name = "lua", pollInterval = 3600,
  poll = function(self) self:setState("polls", self:getState("polls", 0) + 1) end }})
c['change_source']:append(changes.ChangeSource{{ name = "push" }})"#
        ),
    )
    .await;
    let config = ctx.config.current();
    let mut running = Vec::new();
    for source in &config.change_sources {
        running.push(RunningSource::start(&ctx, source).await.unwrap());
    }
    assert_eq!(
        running
            .iter()
            .map(RunningSource::poll_now)
            .collect::<Vec<_>>(),
        [true, true, false]
    );
    tokio::time::timeout(WAIT, async {
        while ctx
            .db
            .get_state(&format!("GitPoller:{url}"), "lastRev")
            .await
            .unwrap()
            .is_none()
            || ctx
                .db
                .get_state("LuaChangeSource:lua", "polls")
                .await
                .unwrap()
                .is_none()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("both pollers poll when asked");
    for source in running {
        tokio::time::timeout(WAIT, source.stop())
            .await
            .expect("the source stops");
    }
}

const PB_CONFIG: &str = r#"
c['change_source']:append(changes.PBChangeSource{
  port = "tcp:0:interface=127.0.0.1", user = "alice", passwd = "sekrit", prefix = "trunk/" })
c['change_source']:append(changes.PBChangeSource{ name = "second", port = "tcp:0:interface=127.0.0.1" })
"#;

/// One raw HTTP request to the source; the status and the body as JSON.
async fn raw_post(
    addr: std::net::SocketAddr,
    auth: &str,
    method: &str,
    body: &str,
) -> (u16, Value) {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(auth);
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} /changes HTTP/1.1\r\nHost: test\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1;
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.into())),
    )
}

#[tokio::test]
async fn sendchange_reaches_a_pb_change_source() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), PB_CONFIG).await;
    let mut events = ctx.bus.subscribe();
    let first = RunningSource::start(&ctx, &ctx.config.current().change_sources[0])
        .await
        .unwrap();
    let second = RunningSource::start(&ctx, &ctx.config.current().change_sources[1])
        .await
        .unwrap();
    let addr = first.local_addr().unwrap();
    assert_ne!(
        addr,
        second.local_addr().unwrap(),
        "each source has its own port"
    );
    let master = addr.to_string();

    let change = ChangeMessage {
        who: "Carl <carl@example.org>".into(),
        files: vec!["trunk/src/a.c".into(), "branches/old/b.c".into()],
        comments: "fix the frobnicator".into(),
        branch: Some("main".into()),
        revision: Some("1234abcd".into()),
        category: Some("fixes".into()),
        when: Some(1_650_000_000.0),
        properties: [("ticket".to_string(), json!("42"))].into(),
        repository: "https://example.org/r.git".into(),
        project: "frob".into(),
        revlink: Some("https://example.org/r/1234abcd".into()),
        codebase: Some("frobcode".into()),
        vc: Some("git".into()),
        ..ChangeMessage::default()
    };
    let id = send_change(&master, "alice", "sekrit", &change)
        .await
        .unwrap();
    let (stored, _) = ctx.db.change(id).await.unwrap();
    assert_eq!(stored.who, "Carl <carl@example.org>");
    assert_eq!(stored.files, vec!["src/a.c"], "prefix applied");
    assert_eq!(stored.comments, "fix the frobnicator");
    assert_eq!(stored.branch.as_deref(), Some("main"));
    assert_eq!(stored.revision.as_deref(), Some("1234abcd"));
    assert_eq!(stored.category.as_deref(), Some("fixes"));
    assert_eq!(stored.when, 1_650_000_000);
    assert_eq!(stored.properties, vec![("ticket".to_string(), json!("42"))]);
    assert_eq!(stored.repository, "https://example.org/r.git");
    assert_eq!(stored.project, "frob");
    assert_eq!(
        stored.revlink.as_deref(),
        Some("https://example.org/r/1234abcd")
    );
    assert_eq!(stored.codebase, "frobcode");
    assert_eq!(
        next_event(&mut events).await.key,
        format!("changes/{id}/new")
    );

    match send_change(&master, "alice", "wrong", &change).await {
        Err(SendError::Rejected {
            status: 401,
            message,
        }) => {
            assert!(message.contains("password"), "{message}")
        }
        other => panic!("a wrong password was {other:?}"),
    }
    let (status, body) = raw_post(addr, "alice:wrong", "POST", "{}").await;
    assert_eq!((status, body["error"].is_string()), (401, true));

    // Bad input is refused, saying what was wrong, and the server goes on.
    let (status, body) = raw_post(addr, "alice:sekrit", "POST", "{not json").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("bad change"),
        "{body}"
    );
    let (status, body) = raw_post(addr, "alice:sekrit", "POST", r#"{"files": []}"#).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("who"), "{body}");
    let (status, body) = raw_post(
        addr,
        "alice:sekrit",
        "POST",
        r#"{"who": "x", "when": "soon"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("invalid type"),
        "{body}"
    );
    let (status, _) = raw_post(addr, "alice:sekrit", "GET", "").await;
    assert_eq!(status, 405);
    assert_eq!(change_count(&ctx.db).await, 1, "nothing bad was stored");

    // The default credentials on the second source, through the command's own function.
    let args = SendchangeArgs {
        master: second.local_addr().unwrap().to_string(),
        auth: "change:changepw".into(),
        who: "Dora".into(),
        repository: String::new(),
        vc: None,
        project: String::new(),
        branch: Some("dev".into()),
        category: None,
        codebase: None,
        revision: Some("feed".into()),
        revision_file: None,
        properties: vec!["reason:late:night".into()],
        comments: Some("from the command".into()),
        logfile: None,
        when: None,
        revlink: String::new(),
        files: vec!["trunk/kept-as-is".into()],
    };
    sendchange(args.clone()).await.unwrap();
    let (stored, _) = ctx.db.change(2).await.unwrap();
    assert_eq!(stored.who, "Dora");
    assert_eq!(
        stored.files,
        vec!["trunk/kept-as-is"],
        "no prefix on this source"
    );
    assert_eq!(
        stored.properties,
        vec![("reason".to_string(), json!("late:night"))]
    );
    assert!(
        (stored.when - moonbot::db::now() as i64).abs() < 60,
        "now when not given"
    );

    let refused = sendchange(SendchangeArgs {
        auth: "change:nope".into(),
        ..args.clone()
    })
    .await
    .unwrap_err();
    assert!(
        format!("{refused:#}").starts_with("change not sent"),
        "{refused:#}"
    );

    first.stop().await;
    second.stop().await;
    let closed = send_change(&master, "alice", "sekrit", &change).await;
    assert!(
        matches!(closed, Err(SendError::Connect { .. })),
        "{closed:?}"
    );
}

/// The config `lua` defines (its `c` is BuildmasterConfig), in a fresh VM.
fn load(basedir: &Path, lua: &str) -> moonbot::config::LoadedConfig {
    let source = format!("local c = BuildmasterConfig\n{lua}");
    moonbot::config::load_source("master.cfg.lua", &source, basedir)
        .unwrap_or_else(|errors| panic!("{errors}"))
}

/// What a reconfig does for one change source: the new VM and config replace the old
/// ones, then the running source is handed its new config.
async fn reconfig(
    ctx: &Context,
    running: &mut RunningSource,
    loaded: moonbot::config::LoadedConfig,
) -> Reconfigured {
    ctx.script.replace_vm(loaded.lua).await.unwrap();
    let config = Arc::new(loaded.config);
    ctx.config.replace(config.clone());
    let new = config
        .change_sources
        .iter()
        .find(|source| source.name() == running.name())
        .expect("the source is still configured");
    tokio::time::timeout(WAIT, running.reconfigure(ctx, new))
        .await
        .expect("the source takes its new config")
        .unwrap()
}

#[tokio::test]
async fn a_poller_takes_a_new_interval_in_place_without_replaying_history() {
    let dir = tempfile::tempdir().unwrap();
    let repo = upstream(dir.path());
    let url = repo.to_str().unwrap().to_string();
    let poller = |interval: u64| {
        format!(
            r#"c['change_source']:append(changes.GitPoller{{
                 repourl = "{url}", branches = {{ "main" }}, pollInterval = {interval},
                 pollAtLaunch = true }})"#
        )
    };
    let ctx = context(dir.path(), &poller(3600)).await;
    let mut events = ctx.bus.subscribe();
    let mut running = RunningSource::start(&ctx, &ctx.config.current().change_sources[0])
        .await
        .unwrap();
    let state = format!("GitPoller:{url}");
    let launch_head = git(&repo, &["rev-parse", "HEAD"], "");
    tokio::time::timeout(WAIT, async {
        while ctx.db.get_state(&state, "lastRev").await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the launch poll records the heads");
    assert_eq!(
        ctx.db.get_state(&state, "lastRev").await.unwrap(),
        Some(json!({ "main": launch_head }))
    );
    let revision = commit(&repo, "b.c", "more", "Bo <bo@example.org>", 1_700_000_000);

    // The next poll is an hour away until the interval shrinks.
    assert_eq!(
        reconfig(&ctx, &mut running, load(dir.path(), &poller(3600))).await,
        Reconfigured::Unchanged
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), events.recv())
            .await
            .is_err(),
        "no poll before the interval is over"
    );
    assert_eq!(
        reconfig(&ctx, &mut running, load(dir.path(), &poller(1))).await,
        Reconfigured::Changed
    );
    let event = next_event(&mut events).await;
    assert_eq!(event.key, "changes/1/new");
    let (change, _) = ctx.db.change(1).await.unwrap();
    assert_eq!(change.revision.as_deref(), Some(revision.as_str()));
    // Further polls find nothing new: the first commit was never replayed.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(change_count(&ctx.db).await, 1);
    assert_eq!(
        ctx.db.get_state(&state, "lastRev").await.unwrap(),
        Some(json!({ "main": revision }))
    );
    tokio::time::timeout(WAIT, running.stop())
        .await
        .expect("the poller stops");
}

#[tokio::test]
async fn a_pb_change_source_keeps_its_listener_for_new_credentials_and_restarts_for_a_new_port() {
    let dir = tempfile::tempdir().unwrap();
    let source = |port: &str, passwd: &str| {
        format!(
            r#"c['change_source']:append(changes.PBChangeSource{{
                 name = "pb", port = "{port}", user = "alice", passwd = "{passwd}" }})"#
        )
    };
    let ctx = context(dir.path(), &source("tcp:0:interface=127.0.0.1", "old")).await;
    let mut running = RunningSource::start(&ctx, &ctx.config.current().change_sources[0])
        .await
        .unwrap();
    let addr = running.local_addr().unwrap();
    let master = addr.to_string();
    let change = ChangeMessage {
        who: "Carl".into(),
        files: vec!["a.c".into()],
        ..ChangeMessage::default()
    };
    send_change(&master, "alice", "old", &change).await.unwrap();

    let outcome = reconfig(
        &ctx,
        &mut running,
        load(dir.path(), &source("tcp:0:interface=127.0.0.1", "new")),
    )
    .await;
    assert_eq!(outcome, Reconfigured::Changed);
    assert_eq!(running.local_addr(), Some(addr), "the same listener");
    match send_change(&master, "alice", "old", &change).await {
        Err(SendError::Rejected { status: 401, .. }) => {}
        other => panic!("the old password was {other:?}"),
    }
    send_change(&master, "alice", "new", &change).await.unwrap();
    assert_eq!(change_count(&ctx.db).await, 2);

    // Another port: the reconfig stops this listener and starts one on the new port.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let moved = load(
        dir.path(),
        &source(&format!("tcp:{port}:interface=127.0.0.1"), "new"),
    );
    let outcome = reconfig(&ctx, &mut running, moved).await;
    assert_eq!(outcome, Reconfigured::NeedsRestart);
    tokio::time::timeout(WAIT, running.stop())
        .await
        .expect("the old listener stops");
    let restarted = RunningSource::start(&ctx, &ctx.config.current().change_sources[0])
        .await
        .unwrap();
    let moved_addr = restarted.local_addr().unwrap();
    assert_eq!(moved_addr.port(), port);
    send_change(&moved_addr.to_string(), "alice", "new", &change)
        .await
        .unwrap();
    assert!(matches!(
        send_change(&master, "alice", "new", &change).await,
        Err(SendError::Connect { .. })
    ));
    assert_eq!(change_count(&ctx.db).await, 3);
    restarted.stop().await;
}

#[tokio::test]
async fn a_pb_change_source_closes_a_connection_that_trickles_its_headers() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), PB_CONFIG).await;
    let source = RunningSource::start(&ctx, &ctx.config.current().change_sources[0])
        .await
        .unwrap();
    let mut stream = tokio::net::TcpStream::connect(source.local_addr().unwrap())
        .await
        .unwrap();
    stream
        .write_all(b"POST /changes HTTP/1.1\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(
        moonbot::runtime::http::HEADER_TIMEOUT * 2,
        stream.read_to_end(&mut rest),
    )
    .await
    .expect("the source closes the connection")
    .unwrap();
    assert!(started.elapsed() < moonbot::runtime::http::HEADER_TIMEOUT + Duration::from_secs(5));
    source.stop().await;
}

/// A change with every field a change source can set, `n` telling it apart.
fn full_change(n: usize) -> moonbot::db::ChangeSpec {
    moonbot::db::ChangeSpec {
        author: format!("Alice <alice{n}@example.org>"),
        committer: Some("Bob <bob@example.org>".into()),
        comments: format!("commit {n}"),
        branch: Some("main".into()),
        revision: Some(format!("{n:040x}")),
        revlink: Some(format!("https://example.org/commit/{n}")),
        when: Some(1_600_000_000.75 + n as f64),
        category: Some("tag".into()),
        repository: "https://example.org/repo.git".into(),
        codebase: "app".into(),
        project: "proj".into(),
        files: vec!["a.c".into(), "dir/b.c".into()],
        properties: vec![
            ("ticket".into(), json!(n), "Change".into()),
            ("nested".into(), json!({"k": [1, "two"]}), "hook".into()),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_announced_as_the_rest_api_and_the_schedulers_read_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "").await;
    let mut events = ctx.bus.subscribe();
    let ids = moonbot::changes::submit_all(&ctx, vec![full_change(1), full_change(2)])
        .await
        .unwrap();
    for id in ids {
        let event = next_event(&mut events).await;
        assert_eq!(event.key, format!("changes/{id}/new"));
        let stored = moonbot::data::changes::change(&ctx.db, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(event.message, stored);
        assert_eq!(
            moonbot::data::changes::change_of(&event.message),
            Some(ctx.db.change(id).await.unwrap())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_are_each_answered_with_their_own_changes_announced_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "").await;
    let mut events = ctx.bus.subscribe();
    let pushes: Vec<_> = (0..40)
        .map(|push| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let specs = vec![full_change(2 * push), full_change(2 * push + 1)];
                (
                    push,
                    moonbot::changes::submit_all(&ctx, specs).await.unwrap(),
                )
            })
        })
        .collect();
    for push in pushes {
        let (push, ids) = push.await.unwrap();
        assert_eq!(ids.len(), 2);
        for (offset, id) in ids.into_iter().enumerate() {
            let (change, _) = ctx.db.change(id).await.unwrap();
            assert_eq!(change.revision, Some(format!("{:040x}", 2 * push + offset)));
        }
    }
    let mut announced = Vec::new();
    for _ in 0..80 {
        let event = next_event(&mut events).await;
        announced.push(event.id_of("changes", "new").unwrap());
    }
    assert_eq!(announced, (1..=80).collect::<Vec<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_storage_refuses_fails_alone_among_pushes_committed_together() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "").await;
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON changes WHEN NEW.comments = 'refused' \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    )
    .execute(&ctx.db.pool)
    .await
    .unwrap();
    let mut events = ctx.bus.subscribe();
    let pushes: Vec<_> = (0..20)
        .map(|push| {
            let ctx = ctx.clone();
            let mut second = full_change(2 * push + 1);
            if push % 5 == 3 {
                second.comments = "refused".into();
            }
            tokio::spawn(async move {
                let specs = vec![full_change(2 * push), second];
                (push, moonbot::changes::submit_all(&ctx, specs).await)
            })
        })
        .collect();
    let mut stored = 0;
    for push in pushes {
        let (push, outcome) = push.await.unwrap();
        match outcome {
            Ok(ids) => {
                assert_ne!(push % 5, 3, "push {push} was stored");
                stored += ids.len();
            }
            Err(error) => {
                assert_eq!(push % 5, 3, "push {push} failed: {error:#}");
                assert!(format!("{error:#}").contains("refused by the test"));
            }
        }
    }
    assert_eq!(stored, 32);
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM changes")
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap();
    assert_eq!(count, 32);
    for _ in 0..32 {
        next_event(&mut events).await;
    }
    assert!(
        events.try_recv().is_err(),
        "no change of a refused push is announced"
    );
}
