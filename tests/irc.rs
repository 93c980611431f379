//! The IRC bot end to end: real builds, a real IRC server (ngircd) on loopback, and a
//! person in the channel played by a plain IRC client.

#[path = "support/irc.rs"]
mod irc;
mod support;

use std::time::Duration;

use irc::{Client, IrcServer, KeyedChannel};
use moonbot::master::Master;
use moonbot::model::BuildResult;
use serde_json::json;
use support::{complete, submit, TestMaster};

const BOT: &str = "bb";
const CHANNEL: &str = "#ci";

/// Builders `b` and `c` whose one step exits with the build property `rc` (0 success, 1
/// warnings, 2 failure, 3 exception), a ForceScheduler for `b`, and the IRC bot with
/// `options` (Lua table fields) on `port`.
fn config(port: u16, options: &str) -> String {
    // Quick reconnects, unless the test sets its own delays.
    let delays = match options.contains("Delay") {
        true => "",
        false => "lostDelay=0.2, failedDelay=0.3, ",
    };
    format!(
        r#"
local c = BuildmasterConfig
c['buildbotURL'] = 'http://ci.example.org/'
c['www'] = {{port='tcp:0:interface=127.0.0.1'}}
c['workers'] = {{worker.LocalWorker('local')}}
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{{name='run', warnOnWarnings=true, decodeRC={{[0]=util.SUCCESS, [1]=util.WARNINGS, [2]=util.FAILURE, [3]=util.EXCEPTION}},
  command={{'sh', '-c', util.Interpolate('sleep %(prop:sleep:-0)s; exit %(prop:rc:-0)s')}}}})
c['builders'] = {{
  util.BuilderConfig{{name='b', workernames={{'local'}}, factory=f}},
  util.BuilderConfig{{name='c', workernames={{'local'}}, factory=f, tags={{'slow'}}}},
}}
c['schedulers'] = {{schedulers.ForceScheduler{{name='force', builderNames={{'b'}},
  properties={{util.StringParameter{{name='rc', default='0'}}}}}}}}
c['outbox'] = {{retryDelay=0.1, maxRetryDelay=0.3}}
c['status'] = {{status.IRC{{host='127.0.0.1', port={port}, nick='{BOT}', useColors=false,
  {delays}{options}}}}}
"#
    )
}

/// Runs one build of `builder` exiting with `rc`.
async fn build(master: &Master, builder: &str, rc: i64) -> BuildResult {
    let bsid = submit(master, &[builder], &[("rc", json!(rc))]).await;
    complete(master, bsid).await
}

/// A server, a person `alice` in `#ci`, and a master whose bot has joined it.
async fn setup(options: &str) -> (tempfile::TempDir, IrcServer, Client, TestMaster) {
    let dir = tempfile::tempdir().unwrap();
    let server = IrcServer::ngircd(dir.path(), None, &[]).await;
    let mut alice = Client::connect(server.port, "alice").await;
    alice.join(CHANNEL).await;
    let master = TestMaster::start(&config(server.port, options)).await;
    alice.wait_join(BOT, CHANNEL).await;
    (dir, server, alice, master)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_command_is_answered_where_it_was_asked() {
    let (_dir, _server, mut alice, master) = setup("channels={'#ci'}").await;
    assert_eq!(build(&master, "b", 2).await, BuildResult::Failure);

    let ask = |command: &'static str| command;
    assert_eq!(
        alice.ask(BOT, CHANNEL, ask("list builders")).await,
        "Configured builders: b c"
    );
    alice.say(CHANNEL, "bb, status all").await;
    assert_eq!(
        alice.message_from(BOT, CHANNEL).await,
        "b: idle, last build #1: failure"
    );
    assert_eq!(alice.message_from(BOT, CHANNEL).await, "c: idle");
    let last = alice.ask(BOT, CHANNEL, "last b").await;
    assert!(
        last.starts_with("last build #1 of b: failure, finished "),
        "{last}"
    );
    assert!(alice
        .ask(BOT, CHANNEL, "help commands")
        .await
        .starts_with("Buildbot commands: list, status, watch, last, join, leave, notify"));
    assert!(alice
        .ask(BOT, CHANNEL, "help force")
        .await
        .starts_with("Usage: force build [--branch=BRANCH]"));
    assert_eq!(
        alice.ask(BOT, CHANNEL, "version").await,
        format!("moonbot version {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(alice.ask(BOT, CHANNEL, "source").await.contains("moonbot"));
    assert_eq!(
        alice.ask(BOT, CHANNEL, "dance").await,
        "Error: unrecognized command 'dance'; say 'help commands' for what I understand"
    );
    assert_eq!(
        alice.ask(BOT, CHANNEL, "status nosuch").await,
        "Error: no such builder 'nosuch' (say 'list builders')"
    );
    assert_eq!(
        alice.ask(BOT, CHANNEL, "force build b because").await,
        "Error: force and stop are disabled (allowForce is false)"
    );
    assert_eq!(
        alice.ask(BOT, CHANNEL, "shutdown now").await,
        "Error: shutdown is disabled (allowShutdown is false)"
    );

    // A private message is answered privately; a channel line not addressed to the bot is
    // not answered at all.
    alice.say(CHANNEL, "list builders, please").await;
    alice.say(BOT, "last c").await;
    let line = alice.expect(|l| l.from == BOT).await;
    assert!(line.is_message(BOT, "alice"), "{line:?}");
    assert_eq!(line.text, "c: no builds yet");

    // `status` of a running build names its step and an ETA from the earlier build.
    let bsid = submit(&master, &["b"], &[("sleep", json!(3))]).await;
    let running = loop {
        let answer = alice.ask(BOT, CHANNEL, "status b").await;
        // Between the build's start and its first step's, there is no step to name.
        if answer.contains("running") && answer.contains("(step") {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        running.starts_with("b: running build #2 (step run), ETA "),
        "{running}"
    );
    assert_eq!(
        alice.ask(BOT, CHANNEL, "watch b").await,
        "watching build #2 of b until it finishes"
    );
    complete(&master, bsid).await;
    let watched = alice.message_from(BOT, CHANNEL).await;
    assert!(
        watched.starts_with("build #2 of b is complete: Success"),
        "{watched}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_are_announced_by_the_channels_notify_events_and_transitions() {
    let (_dir, _server, mut alice, master) = setup(
        "channels={'#ci'}, notify_events={started=1, successToFailure=1, failureToSuccess=1, \
         exception=1, warningsToException=1}",
    )
    .await;
    for rc in [0, 2, 2, 0, 1, 3] {
        build(&master, "b", rc).await;
    }
    let said: Vec<String> = alice
        .lines_within(Duration::from_secs(3))
        .await
        .into_iter()
        .filter(|l| l.is_message(BOT, CHANNEL))
        .map(|l| l.text)
        .collect();
    let url = |n: i64| format!("http://ci.example.org/#builders/1/builds/{n}");
    assert_eq!(
        said,
        [
            "build #1 of b started".to_string(),
            "build #2 of b started".to_string(),
            format!(
                "build #2 of b is complete: Failure ['sh -c ...' (failure)] - {}",
                url(2)
            ),
            "build #3 of b started".to_string(),
            "build #4 of b started".to_string(),
            format!(
                "build #4 of b is complete: Success [build successful] - {}",
                url(4)
            ),
            "build #5 of b started".to_string(),
            "build #6 of b started".to_string(),
            format!(
                "build #6 of b is complete: Exception ['sh -c ...' (exception)] - {}",
                url(6)
            ),
        ],
        "every line: {:#?}",
        alice.seen
    );

    // The channel chooses its own events; they are listed and kept.
    assert_eq!(
        alice.ask(BOT, CHANNEL, "notify off started exception").await,
        "The following events are being notified: successToFailure, warningsToException, failureToSuccess"
    );
    assert_eq!(
        alice.ask(BOT, CHANNEL, "notify on finished").await,
        "The following events are being notified: finished, successToFailure, warningsToException, failureToSuccess"
    );
    build(&master, "c", 0).await;
    let said = alice.message_from(BOT, CHANNEL).await;
    assert!(
        said.starts_with("build #1 of c is complete: Success"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_made_privately_survives_a_master_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = IrcServer::ngircd(dir.path(), None, &[]).await;
    let mut alice = Client::connect(server.port, "alice").await;
    let base = tempfile::tempdir().unwrap();
    let config = config(server.port, "channels={'#ci'}");
    let master = support::start(base.path(), &config).await;
    alice.say(BOT, "notify on failure").await;
    assert_eq!(
        alice.message_from(BOT, "alice").await,
        "The following events are being notified: failure"
    );
    master.context.shutdown.cancel();
    master.wait().await.unwrap();

    let master = support::start(base.path(), &config).await;
    build(&master, "b", 0).await;
    build(&master, "b", 2).await;
    let said = alice.message_from(BOT, "alice").await;
    assert!(
        said.starts_with("build #2 of b is complete: Failure"),
        "{said}"
    );
    alice.say(BOT, "notify list").await;
    assert_eq!(
        alice.message_from(BOT, "alice").await,
        "The following events are being notified: failure"
    );
    master.context.shutdown.cancel();
    master.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_finishes_while_the_server_is_down_is_announced_after_reconnecting() {
    // The bot reconnects 4 s after it lost the server: long after the server is back and
    // alice has joined, so she is in the channel when the announcements come.
    let (_dir, mut server, alice, master) =
        setup("channels={'#ci'}, notify_events={finished=1}, lostDelay=4, failedDelay=0.3").await;
    drop(alice);
    server.kill();
    build(&master, "b", 2).await;
    build(&master, "c", 0).await;
    server.restart().await;
    let mut alice = Client::connect(server.port, "alice").await;
    alice.join(CHANNEL).await;
    let first = alice.message_from(BOT, CHANNEL).await;
    assert!(
        first.starts_with("build #1 of b is complete: Failure"),
        "{first}"
    );
    let second = alice.message_from(BOT, CHANNEL).await;
    assert!(
        second.starts_with("build #1 of c is complete: Success"),
        "{second}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconfig_joins_a_new_keyed_channel_without_reconnecting_and_a_new_nick_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let keyed = [KeyedChannel {
        name: "#secret",
        key: "sesame",
    }];
    let server = IrcServer::ngircd(dir.path(), None, &keyed).await;
    let mut alice = Client::connect(server.port, "alice").await;
    alice.send("JOIN #secret sesame").await;
    alice.expect(|l| l.command == "366").await;
    alice.join(CHANNEL).await;
    let options = "channels={'#ci'}, notify_events={finished=1}";
    let mut master = TestMaster::start(&config(server.port, options)).await;
    alice.wait_join(BOT, CHANNEL).await;

    let options =
        "channels={'#ci', {channel='#secret', password='sesame'}}, notify_events={finished=1}";
    std::fs::write(
        master.dir().join("master.cfg.lua"),
        config(server.port, options),
    )
    .unwrap();
    let outcome = master.reconfig().await;
    assert_eq!(outcome.line, "reconfig complete (+0 ~1 -0 services)");
    alice.wait_join(BOT, "#secret").await;
    build(&master, "b", 0).await;
    let said = alice.message_from(BOT, "#secret").await;
    assert!(
        said.starts_with("build #1 of b is complete: Success"),
        "{said}"
    );
    let quits = alice
        .seen
        .iter()
        .filter(|l| l.contains(" QUIT ") || l.contains(&format!(":{BOT}!")) && l.contains(" NICK "))
        .count();
    assert_eq!(quits, 0, "the bot reconnected: {:#?}", alice.seen);

    // An unchanged config keeps everything as it is.
    let outcome = master.reconfig().await;
    assert_eq!(outcome.line, "reconfig complete (+0 ~0 -0 services)");

    // A new nick is a new login: the bot quits and comes back under it.
    let renamed = config(server.port, options).replace("nick='bb'", "nick='bb2'");
    std::fs::write(master.dir().join("master.cfg.lua"), renamed).unwrap();
    let outcome = master.reconfig().await;
    assert_eq!(outcome.line, "reconfig complete (+0 ~1 -0 services)");
    alice.expect(|l| l.command == "QUIT" && l.from == BOT).await;
    alice.wait_join("bb2", CHANNEL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_build_is_owned_by_the_nick_and_announced_to_it_when_done() {
    let (_dir, _server, mut alice, master) = setup("channels={'#ci'}, allowForce=true").await;
    let answer = alice
        .ask(BOT, CHANNEL, "force build --props=rc=2 b needs a rerun")
        .await;
    assert!(
        answer.starts_with("build of b forced (buildset "),
        "{answer}"
    );
    let done = alice.message_from(BOT, CHANNEL).await;
    assert!(
        done.starts_with("build #1 of b is complete: Failure"),
        "{done}"
    );
    assert!(done.ends_with(" - Blamelist: alice"), "{done}");
    assert_eq!(
        alice
            .ask(BOT, CHANNEL, "force build --props=color=red b")
            .await,
        "Error: the ForceScheduler 'force' has no property 'color'"
    );

    let web = master.web_address.expect("the REST API listens");
    let builds: serde_json::Value =
        reqwest::get(format!("http://{web}/api/v2/builds?property=owner"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(builds["builds"][0]["properties"]["owner"][0], "alice");

    assert_eq!(
        alice.ask(BOT, CHANNEL, "stop build b now").await,
        "Error: no build of b is running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_identifies_to_nickserv_with_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let server = IrcServer::ngircd(dir.path(), None, &[]).await;
    // ngircd has no services: a client under NickServ's name receives what the bot sends it.
    let mut nickserv = Client::connect(server.port, "NickServ").await;
    let options = "channels={'#ci'}, password='mysecret'";
    let _master = TestMaster::start(&config(server.port, options)).await;
    assert_eq!(
        nickserv.message_from(BOT, "NickServ").await,
        "IDENTIFY mysecret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_joined_and_left_on_request_and_a_running_build_is_stopped() {
    let (_dir, _server, mut alice, master) =
        setup("channels={'#ci'}, allowForce=true, noticeOnChannel=true").await;
    alice.say(CHANNEL, "bb: dance").await;
    let error = alice.expect(|l| l.from == BOT).await;
    assert!(
        error.is_message(BOT, CHANNEL) && error.command == "NOTICE",
        "{error:?}"
    );
    alice.say(CHANNEL, "bb: list builders").await;
    let answer = alice.expect(|l| l.from == BOT).await;
    assert_eq!(answer.text, "Configured builders: b c");
    assert_eq!(answer.command, "PRIVMSG", "only errors are notices");

    alice.join("#other").await;
    // The JOIN and PART go before the reply, which waits its turn in the paced queue.
    assert_eq!(
        alice.ask(BOT, CHANNEL, "join #other").await,
        "joining #other"
    );
    assert!(alice
        .seen
        .contains(&format!(":{BOT}!~{BOT}@127.0.0.1 JOIN :#other")));
    assert_eq!(
        alice.ask(BOT, CHANNEL, "leave #other").await,
        "leaving #other"
    );
    assert!(alice
        .seen
        .iter()
        .any(|l| l.starts_with(&format!(":{BOT}!~{BOT}@127.0.0.1 PART #other"))));

    let bsid = submit(&master, &["b"], &[("sleep", json!(30))]).await;
    while !alice
        .ask(BOT, CHANNEL, "status b")
        .await
        .contains("running")
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        alice.ask(BOT, CHANNEL, "stop build b not needed").await,
        "build #1 of b interrupted"
    );
    assert_eq!(complete(&master, bsid).await, BuildResult::Cancelled);
}

/// Queues a build of `b` for a change by Carol at `revision`; answers its buildset.
async fn queue_revision(master: &Master, revision: &str) -> i64 {
    use moonbot::changes::submit as submit_change;
    use moonbot::db::{BuildsetSpec, ChangeSpec};

    let ctx = &master.context;
    let spec = ChangeSpec {
        author: "Carol <carol@example.org>".into(),
        comments: "fix".into(),
        branch: Some("main".into()),
        revision: Some(revision.into()),
        ..ChangeSpec::default()
    };
    let changeid = submit_change(ctx, spec).await.unwrap();
    let ssid: i64 = sqlx::query_scalar("SELECT sourcestampid FROM changes WHERE changeid = $1")
        .bind(changeid)
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap();
    let spec = BuildsetSpec {
        reason: "change".into(),
        scheduler: "test".into(),
        sourcestamp_ids: vec![ssid],
        builder_ids: vec![ctx.db.builder_id("b").await.unwrap()],
        ..BuildsetSpec::default()
    };
    let (bsid, brids) = ctx.db.add_buildset(&spec).await.unwrap();
    for brid in brids.values() {
        moonbot::data::publish(
            &ctx.db,
            &ctx.bus,
            moonbot::data::Resource::BuildRequest(*brid),
            "new",
        )
        .await
        .unwrap();
    }
    bsid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_name_revisions_and_blame_the_authors_when_asked() {
    let (_dir, _server, mut alice, master) = setup(
        "channels={'#ci'}, pm_to_nicks={'alice'}, notify_events={finished=1}, useRevisions=true",
    )
    .await;
    let bsid = queue_revision(&master, "0123456789abcdef0123456789abcdef01234567").await;
    complete(&master, bsid).await;
    let expected = "build containing revision(s) [0123456] on b is complete: Success \
                    [build successful] - http://ci.example.org/#builders/1/builds/1 - \
                    Blamelist: Carol <carol@example.org>";
    assert_eq!(alice.message_from(BOT, CHANNEL).await, expected);
    // pm_to_nicks hear the same, privately.
    assert_eq!(alice.message_from(BOT, "alice").await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_holds_new_builds_until_called_off_and_stops_the_master_when_builds_end() {
    let (_dir, _server, mut alice, master) = setup("channels={'#ci'}, allowShutdown=true").await;
    assert_eq!(
        alice.ask(BOT, CHANNEL, "shutdown stop").await,
        "No shutdown in progress"
    );
    let first = submit(&master, &["b"], &[("sleep", json!(2))]).await;
    while !alice
        .ask(BOT, CHANNEL, "status b")
        .await
        .contains("running")
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        alice.ask(BOT, CHANNEL, "shutdown start").await,
        "Clean shutdown started: no new builds start, and the master stops when the running ones end"
    );
    assert_eq!(
        alice.ask(BOT, CHANNEL, "shutdown check").await,
        "A clean shutdown is under way: the master stops when the running builds end"
    );
    // Builder c is free, but nothing starts during a clean shutdown.
    let held = submit(&master, &["c"], &[("sleep", json!(1))]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        alice.ask(BOT, CHANNEL, "status c").await,
        "c: idle, 1 pending"
    );
    assert_eq!(
        alice.ask(BOT, CHANNEL, "shutdown stop").await,
        "Clean shutdown called off: builds start again"
    );
    assert_eq!(complete(&master, first).await, BuildResult::Success);
    assert_eq!(complete(&master, held).await, BuildResult::Success);
    assert!(!master.context.shutdown.is_cancelled());

    // Started again, the shutdown waits for the running build, which ends as it would.
    let last = submit(&master, &["b"], &[("sleep", json!(1))]).await;
    while !alice
        .ask(BOT, CHANNEL, "status b")
        .await
        .contains("running")
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    alice.ask(BOT, CHANNEL, "shutdown start").await;
    assert!(!master.context.shutdown.is_cancelled());
    assert_eq!(complete(&master, last).await, BuildResult::Success);
    tokio::time::timeout(Duration::from_secs(10), master.context.shutdown.cancelled())
        .await
        .expect("the master shuts down once the last build ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_announcement_within_a_minute_is_said_to_a_channel_once() {
    let (_dir, _server, mut alice, master) =
        setup("channels={'#ci'}, notify_events={started=1}, useRevisions=true").await;
    // Two builds of one revision read the same when they start.
    for _ in 0..2 {
        let bsid = queue_revision(&master, "0123456789abcdef0123456789abcdef01234567").await;
        complete(&master, bsid).await;
    }
    let other = queue_revision(&master, "89abcdef0123456789abcdef0123456789abcdef").await;
    complete(&master, other).await;
    let said: Vec<String> = alice
        .lines_within(Duration::from_secs(2))
        .await
        .into_iter()
        .filter(|l| l.is_message(BOT, CHANNEL))
        .map(|l| l.text)
        .collect();
    assert_eq!(
        said,
        [
            "build containing revision(s) [0123456] on b started",
            "build containing revision(s) [89abcde] on b started",
        ]
    );
}
