//! MailNotifier end to end: real builds, a real SMTP server (aiosmtpd) on loopback, mail
//! parsed back with Python's MIME parser.

#[path = "support/master_process.rs"]
mod master_process;
#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use master_process::spawn_master;
use moonbot::changes::submit as submit_change;
use moonbot::db::{BuildsetSpec, ChangeSpec};
use moonbot::master::Master;
use moonbot::model::BuildResult;
use serde_json::{json, Value};
use smtp::{ReceivedMail, SmtpOptions, SmtpServer, Tls};
use support::{complete, sql, submit, TestMaster, WAIT};

/// A builder `b` whose one step exits with the build property `rc` (0 success, 1
/// warnings, 2 failure, 3 exception), printing two lines first.
fn config(port: u16, status: &str) -> String {
    format!(
        r#"
local c = BuildmasterConfig
c['buildbotURL'] = 'http://ci.example.org/'
c['title'] = 'Moon'
c['www'] = {{port='tcp:0:interface=127.0.0.1'}}
c['workers'] = {{worker.LocalWorker('local')}}
local function factory()
  local f = util.BuildFactory()
  f:addStep(steps.ShellCommand{{name='run', warnOnWarnings=true, decodeRC={{[0]=util.SUCCESS, [1]=util.WARNINGS, [2]=util.FAILURE, [3]=util.EXCEPTION}},
    command={{'sh', '-c', util.Interpolate('echo first line; echo second line; exit %(prop:rc:-0)s')}}}})
  return f
end
c['builders'] = {{
  util.BuilderConfig{{name='b', workernames={{'local'}}, factory=factory(), tags={{'fast'}}}},
  util.BuilderConfig{{name='c', workernames={{'local'}}, factory=factory()}},
  util.BuilderConfig{{name='d', workernames={{'local'}}, factory=factory()}},
}}
c['outbox'] = {{retryDelay=0.1, maxRetryDelay=0.3}}
local relay = {{relayhost='127.0.0.1', smtpPort={port}}}
local function mail(options)
  for k, v in pairs(relay) do options[k] = options[k] == nil and v or options[k] end
  return status.MailNotifier(options)
end
{status}
"#
    )
}

/// Runs one build of `builder` exiting with `rc`; answers its result.
async fn build(master: &Master, builder: &str, rc: i64) -> BuildResult {
    let bsid = submit(master, &[builder], &[("rc", json!(rc))]).await;
    complete(master, bsid).await
}

/// Stores a change as a change source would; answers its sourcestamp.
async fn change_sourcestamp(master: &Master, spec: ChangeSpec) -> i64 {
    let ctx = &master.context;
    let changeid = submit_change(ctx, spec).await.unwrap();
    sqlx::query_scalar("SELECT sourcestampid FROM changes WHERE changeid = $1")
        .bind(changeid)
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap()
}

/// Queues a build of `b` on an existing sourcestamp, as a scheduler would.
async fn submit_on(master: &Master, ssid: i64, reason: &str, properties: &[(&str, Value)]) -> i64 {
    let ctx = &master.context;
    let spec = BuildsetSpec {
        reason: reason.into(),
        scheduler: "test".into(),
        sourcestamp_ids: vec![ssid],
        properties: moonbot::model::Properties::from_pairs(
            properties.iter().map(|(k, v)| (*k, v.clone())),
            "Test",
        ),
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

fn header<'a>(mail: &'a ReceivedMail, name: &str) -> &'a str {
    mail.header(name)
        .unwrap_or_else(|| panic!("no {name} header in {}", mail.raw))
}

/// Mails that arrived, by their first recipient, as the `X-Build` header of each.
fn by_recipient(mails: &[ReceivedMail]) -> BTreeMap<String, Vec<String>> {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for mail in mails {
        seen.entry(header(mail, "To").to_string())
            .or_default()
            .push(header(mail, "X-Build").to_string());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mode_mails_exactly_the_builds_it_names() {
    let server = SmtpServer::start(SmtpOptions::default());
    let modes = [
        "change",
        "failing",
        "passing",
        "problem",
        "warnings",
        "exception",
    ];
    let status: String = modes
        .iter()
        .map(|mode| {
            format!(
                "c['status']:append(mail{{name='{mode}', fromaddr='bb@example.org', \
                 sendToInterestedUsers=false, mode={{'{mode}'}}, builders={{'b'}}, \
                 extraRecipients={{'{mode}@example.org'}}, \
                 extraHeaders={{['X-Build']=util.Interpolate('%(prop:buildnumber)s')}}}})\n"
            )
        })
        .collect();
    let master = TestMaster::start(&config(server.port(), &status)).await;
    use BuildResult::*;
    let sequence = [
        (0, Success),
        (2, Failure),
        (2, Failure),
        (0, Success),
        (1, Warnings),
        (3, Exception),
    ];
    for (rc, expected) in sequence {
        assert_eq!(build(&master, "b", rc).await, expected);
    }
    // A build of another builder is mailed about by none of them.
    assert_eq!(build(&master, "c", 2).await, Failure);
    let expected: BTreeMap<String, Vec<String>> = [
        ("change", vec!["2", "4", "5", "6"]),
        ("exception", vec!["6"]),
        ("failing", vec!["2", "3"]),
        ("passing", vec!["1", "4"]),
        ("problem", vec!["2"]),
        ("warnings", vec!["5"]),
    ]
    .into_iter()
    .map(|(mode, builds)| {
        (
            format!("{mode}@example.org"),
            builds.into_iter().map(String::from).collect(),
        )
    })
    .collect();
    let total = expected.values().map(Vec::len).sum();
    let mails = server.wait_for(total, WAIT).await;
    let mut seen = by_recipient(&mails);
    seen.values_mut().for_each(|builds| builds.sort());
    assert_eq!(seen, expected);
    // Nothing more comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.received().len(), total);

    // The built-in message of the first failure says what a developer needs.
    let first_failure = mails
        .iter()
        .find(|m| header(m, "To") == "problem@example.org")
        .unwrap();
    assert_eq!(
        header(first_failure, "Subject"),
        "buildbot failure in Moon on b"
    );
    assert_eq!(header(first_failure, "From"), "bb@example.org");
    assert_eq!(first_failure.mail_from, "bb@example.org");
    assert_eq!(first_failure.rcpt_tos, ["problem@example.org"]);
    let body = &first_failure.parts[0].content;
    for needed in [
        "The Buildbot has detected a new failure on builder b while building Moon.",
        "http://ci.example.org/#builders/1/builds/2",
        "Buildbot URL: http://ci.example.org/",
        "Buildslave for this Build: local",
        "Build Reason: test",
        "BUILD FAILED",
        "http://ci.example.org/#builders/1/builds/2/steps/0/logs/stdio",
    ] {
        assert!(body.contains(needed), "{needed:?} not in:\n{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_build_getter_tags_and_failing_formatters_each_decide_their_mail() {
    let server = SmtpServer::start(SmtpOptions::default());
    let notifier = |name: &str, options: &str| {
        format!(
            "c['status']:append(mail{{name='{name}', fromaddr='bb@example.org', \
             sendToInterestedUsers=false, extraRecipients={{'{name}@example.org'}}, \
             extraHeaders={{['X-Build']=util.Interpolate('%(prop:buildnumber)s')}}, {options}}})\n"
        )
    };
    let status = [
        notifier(
            "none",
            "mode={'change'}, previousBuildGetter=function(build) return nil end",
        ),
        notifier(
            "getter",
            "mode={'change'}, previousBuildGetter=function(build) return build:getPreviousBuild() end",
        ),
        notifier(
            "broken",
            "mode={'failing'}, messageFormatter=function() error('formatter broke') end",
        ),
        notifier(
            "shape",
            "mode={'failing'}, messageFormatter=function() return 42 end",
        ),
        notifier("tagged", "mode={'failing'}, tags={'fast'}"),
    ]
    .concat();
    let master = TestMaster::start(&config(server.port(), &status)).await;
    assert_eq!(build(&master, "b", 0).await, BuildResult::Success);
    assert_eq!(build(&master, "b", 2).await, BuildResult::Failure);
    // Builder c has no tags: only the untagged notifiers mail about it.
    assert_eq!(build(&master, "c", 2).await, BuildResult::Failure);
    let mails = server.wait_for(6, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.received().len(), 6);
    let mut seen = by_recipient(&mails);
    let mut expected: BTreeMap<String, Vec<String>> = ["broken", "getter", "shape", "tagged"]
        .into_iter()
        .map(|name| (format!("{name}@example.org"), vec!["2".to_string()]))
        .collect();
    for name in ["broken", "shape"] {
        let builds = expected.get_mut(&format!("{name}@example.org")).unwrap();
        builds.insert(0, "1".to_string());
    }
    seen.values_mut().for_each(|builds| builds.sort());
    assert_eq!(seen, expected);
    for mail in mails
        .iter()
        .filter(|m| header(m, "To") != "getter@example.org")
    {
        let body = &mail.parts[0].content;
        assert!(
            body.starts_with("The Buildbot has detected a failed build on builder "),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interested_users_get_to_extras_cc_and_logs_and_patches_are_attached() {
    let server = SmtpServer::start(SmtpOptions::default());
    let status = "c['status']:append(mail{fromaddr='bb@example.org', lookup='example.org', \
                  extraRecipients={'list@example.org'}, mode={'failing'}, addLogs={'run.stdio'}})\n\
                  c['status']:append(mail{name='quiet', fromaddr='bb@example.org', \
                  extraRecipients={'only@example.org'}, sendToInterestedUsers=false, \
                  addLogs=true, addPatch=false, mode={'failing'}})\n\
                  local directory = {known={alice='alice@corp.example'}}\n\
                  function directory:getAddress(name) return self.known[name] end\n\
                  c['status']:append(mail{name='lookup', fromaddr='bb@example.org', \
                  lookup=directory, addPatch=false, mode={'failing'}})";
    let master = TestMaster::start(&config(server.port(), status)).await;
    let ctx = &master.context;
    let ssid = change_sourcestamp(
        &master,
        ChangeSpec {
            author: "alice".into(),
            comments: "break it".into(),
            branch: Some("main".into()),
            revision: Some("abc123".into()),
            repository: "https://example.org/repo.git".into(),
            ..ChangeSpec::default()
        },
    )
    .await;
    let patch = b"--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+new\n";
    let patchid: i64 = sqlx::query_scalar(
        "INSERT INTO patches (patchlevel, patch, author, comment) VALUES (1, $1, 'bob', 'try') \
         RETURNING id",
    )
    .bind(&patch[..])
    .fetch_one(&ctx.db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE sourcestamps SET patchid = $1 WHERE id = $2")
        .bind(patchid)
        .bind(ssid)
        .execute(&ctx.db.pool)
        .await
        .unwrap();
    let owner = json!("Carol <carol@elsewhere.org>");
    let bsid = submit_on(&master, ssid, "try", &[("rc", json!(2)), ("owner", owner)]).await;
    assert_eq!(complete(&master, bsid).await, BuildResult::Failure);
    let mails = server.wait_for(3, WAIT).await;
    let to_users = mails
        .iter()
        .find(|m| header(m, "To").contains("alice@example.org"))
        .expect("a mail to the interested users");
    assert_eq!(
        header(to_users, "To"),
        "Carol <carol@elsewhere.org>, alice@example.org, bob@example.org"
    );
    assert_eq!(header(to_users, "Cc"), "list@example.org");
    let mut envelope = to_users.rcpt_tos.clone();
    envelope.sort();
    assert_eq!(
        envelope,
        [
            "alice@example.org",
            "bob@example.org",
            "carol@elsewhere.org",
            "list@example.org"
        ]
    );
    let attachments: Vec<_> = to_users
        .parts
        .iter()
        .filter_map(|p| {
            Some((
                p.filename.clone()?,
                p.content_type.as_str(),
                p.content.as_str(),
            ))
        })
        .collect();
    assert_eq!(
        attachments,
        [
            (
                "run.stdio".to_string(),
                "text/plain",
                "first line\nsecond line\n"
            ),
            (
                "source patch".to_string(),
                "text/x-diff",
                std::str::from_utf8(patch).unwrap()
            ),
        ]
    );

    let quiet = mails
        .iter()
        .find(|m| header(m, "To") == "only@example.org")
        .expect("a mail to the extra recipient only");
    assert_eq!(quiet.header("Cc"), None);
    assert_eq!(quiet.rcpt_tos, ["only@example.org"]);
    let names: Vec<_> = quiet
        .parts
        .iter()
        .filter_map(|p| p.filename.as_deref())
        .collect();
    assert_eq!(names, ["run.stdio"]);

    // A Lua lookup: only the names it answers an address for are mailed.
    let looked_up = mails
        .iter()
        .find(|m| header(m, "To") == "alice@corp.example")
        .expect("a mail to the address the Lua lookup gave");
    assert_eq!(looked_up.rcpt_tos, ["alice@corp.example"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_set_summary_sends_one_mail_for_a_buildset_of_three_builders() {
    let server = SmtpServer::start(SmtpOptions::default());
    let status = "c['status']:append(mail{fromaddr='bb@example.org', buildSetSummary=true, \
                  sendToInterestedUsers=false, extraRecipients={'list@example.org'}, mode={'all'}})";
    let master = TestMaster::start(&config(server.port(), status)).await;
    let bsid = submit(&master, &["b", "c", "d"], &[("rc", json!(2))]).await;
    assert_eq!(complete(&master, bsid).await, BuildResult::Failure);
    let mails = server.wait_for(1, WAIT).await;
    let body = &mails[0].parts[0].content;
    for builder in ["b", "c", "d"] {
        let line = format!("The Buildbot has detected a failed build on builder {builder} ");
        assert_eq!(body.matches(&line).count(), 1, "{line:?} once in:\n{body}");
    }
    assert_eq!(
        header(&mails[0], "Subject"),
        "buildbot failure in Moon on Buildset Complete: test"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_waits_for_a_relay_that_is_down_and_arrives_once_each() {
    let mut server = SmtpServer::start(SmtpOptions::default());
    let status = "c['status']:append(mail{fromaddr='bb@example.org', sendToInterestedUsers=false, \
                  extraRecipients={'list@example.org'}, mode={'failing'}, \
                  extraHeaders={['X-Build']=util.Interpolate('%(prop:buildnumber)s')}})";
    let master = TestMaster::start(&config(server.port(), status)).await;
    server.stop();
    for _ in 0..10 {
        assert_eq!(build(&master, "b", 2).await, BuildResult::Failure);
    }
    let url = format!(
        "http://{}/api/v2/reporters/MailNotifier/messages",
        master.web_address.unwrap()
    );
    let listed = wait_until(|| async {
        let answer = get_json(&url).await;
        let messages = answer["messages"].as_array().unwrap().clone();
        let tried = messages.iter().all(|m| m["attempts"].as_i64() > Some(0));
        (messages.len() == 10 && tried).then_some(messages)
    })
    .await;
    assert!(listed.iter().all(|m| m["state"] == "pending"));
    assert!(
        listed[0]["last_error"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{}", server.port())),
        "{}",
        listed[0]
    );
    server.restart();
    let mails = server.wait_for(10, WAIT).await;
    let mut builds: Vec<u32> = mails
        .iter()
        .map(|m| header(m, "X-Build").parse().unwrap())
        .collect();
    builds.sort();
    assert_eq!(builds, (1..=10).collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.received().len(), 10);
    let answer = get_json(&url).await;
    assert_eq!(answer["messages"], json!([]));
}

/// A MailNotifier keeps its SMTP session a moment for the next mail; one the relay dropped
/// meanwhile is replaced within the same attempt (a failed attempt would wait the ten
/// minutes of `retryDelay`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_mail_takes_the_last_ones_session_or_a_new_one_if_the_relay_dropped_it() {
    let mut server = SmtpServer::start(SmtpOptions::default());
    let status = "c['outbox'] = {retryDelay=600, maxRetryDelay=600}\n\
                  c['status']:append(mail{fromaddr='bb@example.org', sendToInterestedUsers=false, \
                  extraRecipients={'list@example.org'}, mode={'failing'}})";
    let master = TestMaster::start(&config(server.port(), status)).await;
    for n in 1..=2 {
        assert_eq!(build(&master, "b", 2).await, BuildResult::Failure);
        server.wait_for(n, WAIT).await;
    }
    let mails = server.received();
    assert_eq!(mails[0].session, mails[1].session);

    server.restart();
    assert_eq!(build(&master, "b", 2).await, BuildResult::Failure);
    let mails = server.wait_for(3, WAIT).await;
    assert!(mails[2].session > mails[1].session);
    let url = format!(
        "http://{}/api/v2/reporters/MailNotifier/messages",
        master.web_address.unwrap()
    );
    assert_eq!(get_json(&url).await["messages"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_that_keeps_failing_ends_dead_with_its_last_error_and_is_listed() {
    let server = SmtpServer::start(SmtpOptions {
        auth: Some(("bb".into(), "right".into())),
        ..SmtpOptions::default()
    });
    let status = "c['outbox'] = {retryDelay=0.1, maxRetryDelay=0.2, giveUpAfter=1}\n\
                  c['status']:append(mail{fromaddr='bb@example.org', sendToInterestedUsers=false, \
                  extraRecipients={'list@example.org'}, mode={'failing'}, \
                  smtpUser='bb', smtpPassword='wrong'})";
    let master = TestMaster::start(&config(server.port(), status)).await;
    assert_eq!(build(&master, "b", 2).await, BuildResult::Failure);
    let base = format!("http://{}/api/v2", master.web_address.unwrap());
    let dead = wait_until(|| async {
        let url = format!("{base}/reporters/MailNotifier/messages?state=dead");
        let answer = get_json(&url).await;
        answer["messages"].as_array().unwrap().first().cloned()
    })
    .await;
    assert_eq!(dead["about"], "build:1");
    assert_eq!(dead["summary"], "buildbot failure in Moon on b");
    assert_eq!(dead["recipients"], json!(["list@example.org"]));
    let error = dead["last_error"].as_str().unwrap();
    assert!(error.contains("535"), "{error}");
    let reporters = get_json(&format!("{base}/reporters")).await;
    assert_eq!(
        reporters["reporters"],
        json!([{"name": "MailNotifier", "kind": "MailNotifier", "configured": true,
                "pending": 0, "dead": 1}])
    );
    assert!(server.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconfig_changes_the_next_mail_and_a_new_relay_gets_the_queued_ones() {
    let mut old_relay = SmtpServer::start(SmtpOptions::default());
    let new_relay = SmtpServer::start(SmtpOptions::default());
    let status = |port: u16, recipient: &str, formatter: &str| {
        format!(
            "c['status']:append(status.MailNotifier{{fromaddr='bb@example.org', relayhost='127.0.0.1', \
             smtpPort={port}, sendToInterestedUsers=false, extraRecipients={{'{recipient}'}}, \
             mode={{'failing'}}, messageFormatter=function() return {{body='{formatter}'}} end}})"
        )
    };
    let cfg = |port, recipient, formatter| config(0, &status(port, recipient, formatter));
    let mut master = TestMaster::start(&cfg(old_relay.port(), "one@example.org", "first")).await;
    assert_eq!(build(&master, "b", 2).await, BuildResult::Failure);
    let mails = old_relay.wait_for(1, WAIT).await;
    assert_eq!(mails[0].parts[0].content.trim_end(), "first");

    // The relay goes down with a mail queued; the new config names another relay, another
    // recipient and another formatter.
    old_relay.stop();
    assert_eq!(build(&master, "b", 2).await, BuildResult::Failure);
    std::fs::write(
        master.dir().join("master.cfg.lua"),
        cfg(new_relay.port(), "two@example.org", "second"),
    )
    .unwrap();
    let outcome = master.reconfig().await;
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(outcome.line, "reconfig complete (+0 ~1 -0 services)");
    assert_eq!(build(&master, "b", 2).await, BuildResult::Failure);
    let mails = new_relay.wait_for(2, WAIT).await;
    let mut got: Vec<(String, String)> = mails
        .iter()
        .map(|m| {
            (
                header(m, "To").to_string(),
                m.parts[0].content.trim_end().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("one@example.org".to_string(), "first".to_string()),
            ("two@example.org".to_string(), "second".to_string())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_formatter_of_the_spec_sends_its_page() {
    let server = SmtpServer::start(SmtpOptions::default());
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mail_html_formatter.lua"),
    )
    .unwrap()
    .replace(
        "fromaddr = \"buildbot@example.org\",",
        &format!(
            "fromaddr = \"buildbot@example.org\", relayhost='127.0.0.1', smtpPort={},",
            server.port()
        ),
    );
    let config = config(0, "") + &example;
    let master = TestMaster::start(&config).await;
    let ssid = change_sourcestamp(
        &master,
        ChangeSpec {
            author: "Alice <alice@example.org>".into(),
            comments: "Fix the frobnicator".into(),
            branch: Some("master".into()),
            revision: Some("abc123".into()),
            when: Some(1_700_000_000.0),
            repository: "https://example.org/repo.git".into(),
            project: "demo".into(),
            files: vec!["src/a.c".into(), "src/b.c".into()],
            ..ChangeSpec::default()
        },
    )
    .await;
    let bsid = submit_on(&master, ssid, "the change", &[("rc", json!(2))]).await;
    assert_eq!(complete(&master, bsid).await, BuildResult::Failure);
    let mails = server.wait_for(1, WAIT).await;
    let part = &mails[0].parts[0];
    assert_eq!(part.content_type, "text/html");
    support::golden::check("tests/golden/mail/html_formatter_build.html", &part.content);
}

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// Polls `probe` until it answers something, for at most [`WAIT`].
async fn wait_until<T, F, Fut>(probe: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- the real binary: kill -9, TLS with a private CA, a runaway formatter -------------

fn wait_for_file_text(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never appeared in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Forces a build through the web server's JSON-RPC, retrying while the master starts.
fn force(web_port: u16, rc: i64) {
    let body = json!({"jsonrpc": "2.0", "method": "force", "id": 1,
                      "params": {"builderid": 1, "username": "me <me@example.org>", "rc": rc}});
    let url = format!("http://127.0.0.1:{web_port}/api/v2/forceschedulers/force");
    let client = reqwest::Client::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = runtime.block_on(client.post(&url).json(&body).send());
        if answer.is_ok_and(|answer| answer.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "the master never took the force");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// [`SmtpServer::wait_for`] outside async code.
fn wait_blocking(server: &SmtpServer, count: usize) -> Vec<ReceivedMail> {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(server.wait_for(count, WAIT))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn mail_queued_when_the_master_is_killed_arrives_after_the_restart() {
    let mut server = SmtpServer::start(SmtpOptions::default());
    let web = free_port();
    // The three builds take turns on the worker: none may collapse into another.
    let status = format!(
        "c['www'] = {{port={web}}}\n\
         c['collapseRequests'] = false\n\
         c['schedulers'] = {{schedulers.ForceScheduler{{name='force', builderNames={{'b'}}, \
           properties={{util.IntParameter{{name='rc', default=0}}}}}}}}\n\
         c['status']:append(mail{{fromaddr='bb@example.org', sendToInterestedUsers=false, \
           extraRecipients={{'list@example.org'}}, mode={{'failing'}}}})"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("master.cfg.lua"),
        config(server.port(), &status),
    )
    .unwrap();
    server.stop();
    let mut master = spawn_master(dir.path(), &[]);
    for _ in 0..3 {
        force(web, 2);
    }
    let deadline = Instant::now() + WAIT;
    let pending = || {
        sql(
            dir.path(),
            "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
        )
    };
    while pending()[0][0].as_i64() < Some(3) {
        assert!(Instant::now() < deadline, "three mails never queued");
        std::thread::sleep(Duration::from_millis(100));
    }
    master.kill().unwrap();
    master.wait().unwrap();
    server.restart();
    let mut master = spawn_master(dir.path(), &[]);
    let mails = wait_blocking(&server, 3);
    assert_eq!(mails.len(), 3);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.received().len(), 3);
    master.kill().unwrap();
    master.wait().unwrap();
}

#[test]
fn over_starttls_with_a_private_ca_a_runaway_formatter_gives_way_to_the_built_in_message() {
    let server = SmtpServer::start(SmtpOptions {
        tls: Tls::Starttls,
        auth: Some(("bb".into(), "secret".into())),
        ..SmtpOptions::default()
    });
    let web = free_port();
    let status = format!(
        "c['lua'] = {{timeout=0.5}}\n\
         c['www'] = {{port={web}}}\n\
         c['schedulers'] = {{schedulers.ForceScheduler{{name='force', builderNames={{'b'}}, \
           properties={{util.IntParameter{{name='rc', default=0}}}}}}}}\n\
         local function spin(mode, name, build, results, master_status)\n\
           while true do end\n\
         end\n\
         c['status']:append(mail{{relayhost='localhost', fromaddr='bb@example.org', \
           sendToInterestedUsers=false, extraRecipients={{'list@example.org'}}, mode={{'failing'}}, \
           useTls=true, smtpUser='bb', smtpPassword='secret', messageFormatter=spin, \
           dumpMailsToLog=true}})"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = config(server.port(), &status);
    let spin_line = config
        .lines()
        .position(|line| line.contains("while true do end"))
        .unwrap()
        + 1;
    std::fs::write(dir.path().join("master.cfg.lua"), &config).unwrap();
    let ca = server.ca_file();
    let mut master = spawn_master(dir.path(), &[("SSL_CERT_FILE", ca.to_str().unwrap())]);
    force(web, 2);
    let mails = wait_blocking(&server, 1);
    assert!(
        mails[0].parts[0]
            .content
            .contains("The Buildbot has detected a failed build on builder b"),
        "{}",
        mails[0].raw
    );
    let log = wait_for_file_text(&dir.path().join("stderr.log"), "messageFormatter");
    assert!(
        log.contains(&format!("master.cfg.lua:{spin_line}")),
        "the log does not name line {spin_line}:\n{log}"
    );
    // dumpMailsToLog: the mail as written to the outbox.
    wait_for_file_text(
        &dir.path().join("stderr.log"),
        "Subject: buildbot failure in Moon on b",
    );
    master.kill().unwrap();
    master.wait().unwrap();
}
