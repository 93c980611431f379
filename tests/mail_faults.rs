//! Mail delivery under faults, against a real SMTP server (aiosmtpd): a master killed with
//! -9 in the middle of a batch, recipients a relay refuses for now or for good, messages it
//! refuses for good, and the REST listing of what did not reach everyone.

#[path = "support/master_process.rs"]
mod master_process;
#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use moonbot::db::{Db, NewMessage};
use moonbot::master::Master;
use moonbot::model::BuildResult;
use serde_json::{json, Value};
use smtp::{self_signed, SmtpOptions, SmtpServer, Tls};
use support::{complete, submit, TestMaster, WAIT};

/// A builder `b` whose build fails, and a MailNotifier mailing each failure to `to`.
fn config(port: u16, to: &str, outbox: &str) -> String {
    format!(
        r#"
local c = BuildmasterConfig
c['title'] = 'Moon'
c['www'] = {{port='tcp:0:interface=127.0.0.1'}}
c['workers'] = {{worker.LocalWorker('local')}}
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{{name='fail', command={{'false'}}}})
c['builders'] = {{util.BuilderConfig{{name='b', workernames={{'local'}}, factory=f}}}}
c['outbox'] = {outbox}
c['status'] = {{status.MailNotifier{{fromaddr='bb@example.org', relayhost='127.0.0.1',
  smtpPort={port}, sendToInterestedUsers=false, extraRecipients={to}, mode={{'failing'}}}}}}
"#
    )
}

async fn failed_build(master: &Master) {
    let bsid = submit(master, &["b"], &[]).await;
    assert_eq!(complete(master, bsid).await, BuildResult::Failure);
}

/// The MailNotifier's messages as `/api/v2/reporters/MailNotifier/messages` lists them.
async fn listed(master: &Master) -> Vec<Value> {
    let url = format!(
        "http://{}/api/v2/reporters/MailNotifier/messages",
        master.web_address.unwrap()
    );
    let answer: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    answer["messages"].as_array().unwrap().clone()
}

/// The newest message listed, once it was tried.
async fn tried(master: &Master) -> Option<Value> {
    let newest = listed(master).await.first().cloned()?;
    (newest["attempts"].as_i64() > Some(0)).then_some(newest)
}

/// Polls `probe` until it answers something, for at most [`WAIT`].
async fn wait_until<T, Fut: std::future::Future<Output = Option<T>>>(probe: impl Fn() -> Fut) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `count` mails (`mail 1`, ...) to `list@example.org` into the outbox of the
/// master in `dir`, as its MailNotifier would have before it went down.
async fn queue_mails(dir: &Path, count: usize) {
    let db = Db::open("sqlite:///state.sqlite", dir).await.unwrap();
    for n in 1..=count {
        let body = format!(
            "From: bb@example.org\r\nTo: list@example.org\r\nSubject: mail {n}\r\n\r\n\
             Mail {n}.\r\n"
        );
        db.add_outbox_message(&NewMessage {
            reporter: "MailNotifier".into(),
            kind: "mail".into(),
            dedup_key: format!("build:{n}"),
            summary: format!("mail {n}"),
            meta: json!({"from": "bb@example.org", "to": ["list@example.org"]}),
            body: body.into_bytes(),
        })
        .await
        .unwrap();
    }
}

/// A config with only a MailNotifier, for a master whose mail is queued by the test.
fn mail_only(relay: &str) -> String {
    format!(
        "local c = BuildmasterConfig\n\
         c['status'] = {{status.MailNotifier{{fromaddr='bb@example.org', \
           extraRecipients={{'list@example.org'}}, {relay}}}}}\n"
    )
}

#[test]
fn a_master_killed_mid_batch_sends_each_mail_and_repeats_at_most_the_one_in_flight() {
    let server = SmtpServer::start(SmtpOptions {
        pause: Some(0.5),
        ..SmtpOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let relay = format!("relayhost='127.0.0.1', smtpPort={}", server.port());
    std::fs::write(dir.path().join("master.cfg.lua"), mail_only(&relay)).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(queue_mails(dir.path(), 30));

    let master = master_process::spawn_master(dir.path(), &[]);
    runtime.block_on(server.wait_for(4, WAIT));
    master_process::kill(master);
    let master = master_process::spawn_master(dir.path(), &[]);
    let subjects = |mails: &[smtp::ReceivedMail]| {
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for mail in mails {
            *count
                .entry(mail.header("Subject").unwrap().into())
                .or_default() += 1;
        }
        count
    };
    let deadline = Instant::now() + WAIT;
    while subjects(&server.received()).len() < 30 {
        assert!(
            Instant::now() < deadline,
            "not every mail arrived: {:?}",
            subjects(&server.received())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Anything repeated would have come right after.
    std::thread::sleep(Duration::from_secs(1));
    master_process::kill(master);
    let received = server.received();
    let repeated: Vec<_> = subjects(&received)
        .into_iter()
        .filter(|(_, count)| *count > 1)
        .collect();
    assert!(
        received.len() <= 31 && repeated.iter().all(|(_, count)| *count == 2),
        "{} mails arrived for 30, repeated: {repeated:?}",
        received.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_refused_for_now_is_listed_pending_and_retried_alone() {
    let server = SmtpServer::start(SmtpOptions {
        defer_rcpt: vec!["busy@example.org".into()],
        ..SmtpOptions::default()
    });
    let to = "{'list@example.org', 'busy@example.org'}";
    let outbox = "{retryDelay=1, maxRetryDelay=1}";
    let master = TestMaster::start(&config(server.port(), to, outbox)).await;
    failed_build(&master).await;

    let first = server.wait_for(1, WAIT).await;
    assert_eq!(first[0].rcpt_tos, ["list@example.org"]);
    let pending = wait_until(|| async { tried(&master).await }).await;
    assert_eq!(pending["state"], "pending");
    assert_eq!(pending["pending_recipients"], json!(["busy@example.org"]));
    assert_eq!(pending["refused_recipients"], json!([]));
    let error = pending["last_error"].as_str().unwrap();
    assert!(error.contains("<busy@example.org>: 450 4.2.1"), "{error}");

    let both = server.wait_for(2, WAIT).await;
    assert_eq!(both[1].rcpt_tos, ["busy@example.org"]);
    assert_eq!(both[1].header("Subject"), first[0].header("Subject"));
    wait_until(|| async { listed(&master).await.is_empty().then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_refused_for_good_is_dead_at_once_with_the_relays_answer() {
    let server = SmtpServer::start(SmtpOptions {
        refuse_message: true,
        ..SmtpOptions::default()
    });
    let outbox = "{retryDelay=0.1, maxRetryDelay=0.1, giveUpAfter=86400}";
    let master = TestMaster::start(&config(server.port(), "{'list@example.org'}", outbox)).await;
    failed_build(&master).await;
    let dead = wait_until(|| async { tried(&master).await }).await;
    assert_eq!(dead["state"], "dead", "{dead}");
    assert_eq!(dead["attempts"], 1);
    assert_eq!(dead["pending_recipients"], json!([]));
    let error = dead["last_error"].as_str().unwrap();
    assert!(
        error.ends_with("message refused: 554 5.7.1 Message refused by policy"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(listed(&master).await[0]["attempts"], 1, "retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_refused_for_good_is_listed_and_the_others_get_the_mail_once() {
    let server = SmtpServer::start(SmtpOptions {
        refuse_rcpt: vec!["gone@example.org".into()],
        ..SmtpOptions::default()
    });
    let to = "{'gone@example.org', 'list@example.org'}";
    let outbox = "{retryDelay=0.1, maxRetryDelay=0.1}";
    let master = TestMaster::start(&config(server.port(), to, outbox)).await;
    failed_build(&master).await;
    let received = server.wait_for(1, WAIT).await;
    assert_eq!(received[0].rcpt_tos, ["list@example.org"]);
    let sent = wait_until(|| async { tried(&master).await }).await;
    assert_eq!(sent["state"], "sent");
    assert_eq!(sent["pending_recipients"], json!([]));
    let refused = &sent["refused_recipients"];
    assert_eq!(refused[0]["recipient"], "gone@example.org", "{sent}");
    let answer = refused[0]["answer"].as_str().unwrap();
    assert!(
        answer.ends_with(
            "<gone@example.org>: 550 5.1.1 <gone@example.org>: Recipient address rejected"
        ),
        "{answer}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_messages_of_an_unknown_reporter_are_not_found() {
    let server = SmtpServer::start(SmtpOptions::default());
    let master = TestMaster::start(&config(server.port(), "{'list@example.org'}", "{}")).await;
    let base = format!("http://{}/api/v2/reporters", master.web_address.unwrap());
    let answer = reqwest::get(format!("{base}/nope/messages")).await.unwrap();
    assert_eq!(answer.status(), 404);
    let body: Value = answer.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
    // A configured reporter with nothing in the outbox is known, its list empty.
    let answer = reqwest::get(format!("{base}/MailNotifier/messages"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["messages"], json!([]));
}

#[test]
fn a_master_mails_over_starttls_to_a_relay_whose_self_signed_certificate_it_trusts() {
    let dir = tempfile::tempdir().unwrap();
    let certificate = self_signed(dir.path(), "relay", "DNS:localhost,IP:127.0.0.1");
    let server = SmtpServer::start(SmtpOptions {
        tls: Tls::Starttls,
        auth: Some(("bb".into(), "secret".into())),
        certificate: Some(certificate.clone()),
        ..SmtpOptions::default()
    });
    let relay = format!(
        "relayhost='localhost', smtpPort={}, useTls=true, smtpUser='bb', smtpPassword='secret'",
        server.port()
    );
    std::fs::write(dir.path().join("master.cfg.lua"), mail_only(&relay)).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(queue_mails(dir.path(), 1));
    let trusted = certificate.0.to_str().unwrap();
    let master = master_process::spawn_master(dir.path(), &[("SSL_CERT_FILE", trusted)]);
    let mails = runtime.block_on(server.wait_for(1, WAIT));
    master_process::kill(master);
    assert_eq!(mails[0].header("Subject"), Some("mail 1"));
}
