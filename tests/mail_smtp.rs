//! `SmtpTransport` against a real SMTP server (aiosmtpd) on loopback, without TLS: plain
//! delivery, AUTH, batches over one connection, refusals of recipients and messages for
//! now and for good, and a relay that goes away.

#[path = "support/smtp.rs"]
mod smtp;

use std::time::Duration;

use moonbot::db::Refusal;
use moonbot::status::outbox::Outcome::{self, Accepted, Failed, Refused};
use smtp::{deliver, message, transport, SmtpOptions, SmtpServer};

const WAIT: Duration = Duration::from_secs(30);

fn relay(server: &SmtpServer) -> String {
    format!("relayhost='localhost', smtpPort={}", server.port())
}

#[tokio::test]
async fn delivers_to_the_address_part_of_each_recipient() {
    let server = SmtpServer::start(SmtpOptions::default());
    let transport = transport(&relay(&server));
    let sent = message(
        7,
        "Build Bot <bot@example.org>",
        &["Dev One <dev@example.org>", "ops@example.org"],
    );
    assert_eq!(
        deliver(&transport, std::slice::from_ref(&sent)).await,
        Ok(vec![Accepted])
    );

    let received = server.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    let mail = &received[0];
    assert_eq!(mail.mail_from, "bot@example.org");
    assert_eq!(mail.rcpt_tos, ["dev@example.org", "ops@example.org"]);
    assert_eq!(mail.header("subject"), Some("build 7 failed"));
    assert_eq!(mail.header("From"), Some("Build Bot <bot@example.org>"));
    assert_eq!(mail.parts.len(), 1);
    assert_eq!(mail.parts[0].content_type, "text/plain");
    assert_eq!(mail.parts[0].content, "Build 7 failed.\n");
    assert_eq!(mail.raw.as_bytes(), sent.body);
}

#[tokio::test]
async fn authenticates_and_reports_refused_credentials() {
    let auth = Some(("bot".to_string(), "s3cret".to_string()));
    let server = SmtpServer::start(SmtpOptions {
        auth: auth.clone(),
        ..Default::default()
    });
    let port = server.port();
    let batch = [
        message(1, "bot@example.org", &["dev@example.org"]),
        message(2, "bot@example.org", &["ops@example.org"]),
    ];

    let wrong = transport(&format!(
        "{}, smtpUser='bot', smtpPassword='guess'",
        relay(&server)
    ));
    let error = format!(
        "smtp relay localhost:{port}: AUTH failed: 535 5.7.8 Authentication credentials invalid"
    );
    assert_eq!(deliver(&wrong, &batch).await, Err(error));

    // Without credentials the relay refuses each MAIL with 530: the message waits for a
    // configuration with credentials rather than dying.
    let anonymous = transport(&relay(&server));
    let results = deliver(&anonymous, &batch[..1]).await.unwrap();
    let Failed(refusal) = &results[0] else {
        panic!("{results:?}")
    };
    assert!(
        refusal.starts_with(&format!(
            "smtp relay localhost:{port}: MAIL FROM <bot@example.org> refused: 530"
        )),
        "{refusal}"
    );
    assert!(server.received().is_empty());

    let right = transport(&format!(
        "{}, smtpUser='bot', smtpPassword='s3cret'",
        relay(&server)
    ));
    assert_eq!(deliver(&right, &batch).await, Ok(vec![Accepted, Accepted]));
    let received = server.wait_for(2, WAIT).await;
    assert_eq!(received[0].rcpt_tos, ["dev@example.org"]);
    assert_eq!(received[1].rcpt_tos, ["ops@example.org"]);

    // A relay offering only LOGIN gets LOGIN (PLAIN is preferred when offered).
    let login_only = SmtpServer::start(SmtpOptions {
        auth,
        auth_mechanisms: vec!["LOGIN".into()],
        ..Default::default()
    });
    let right = transport(&format!(
        "{}, smtpUser='bot', smtpPassword='s3cret'",
        relay(&login_only)
    ));
    assert_eq!(deliver(&right, &batch[..1]).await, Ok(vec![Accepted]));
    login_only.wait_for(1, WAIT).await;
}

#[tokio::test]
async fn a_batch_goes_over_one_connection() {
    let server = SmtpServer::start(SmtpOptions::default());
    let transport = transport(&relay(&server));
    let batch: Vec<_> = (1..=5)
        .map(|id| message(id, "bot@example.org", &[&format!("dev{id}@example.org")]))
        .collect();
    assert_eq!(deliver(&transport, &batch).await, Ok(vec![Accepted; 5]));
    let received = server.wait_for(5, WAIT).await;
    let subjects: Vec<_> = received
        .iter()
        .map(|m| m.header("Subject").unwrap())
        .collect();
    let expected: Vec<_> = (1..=5).map(|id| format!("build {id} failed")).collect();
    assert_eq!(subjects, expected);
    let first_session = received[0].session;
    assert!(
        received.iter().all(|m| m.session == first_session),
        "{:?}",
        received.iter().map(|m| m.session).collect::<Vec<_>>()
    );

    // The next batch is a new connection.
    assert_eq!(deliver(&transport, &batch[..1]).await, Ok(vec![Accepted]));
    let received = server.wait_for(6, WAIT).await;
    assert_ne!(received[5].session, first_session);
}

#[tokio::test]
async fn each_recipient_counts_and_a_refusal_for_good_is_not_retried() {
    let server = SmtpServer::start(SmtpOptions {
        refuse_rcpt: vec!["gone@example.org".into()],
        defer_rcpt: vec!["busy@example.org".into(), "later@example.org".into()],
        ..Default::default()
    });
    let port = server.port();
    let relay_said = |text: &str| format!("smtp relay localhost:{port}: {text}");
    let refusal = |recipient: &str, answer: &str| Refusal {
        recipient: recipient.into(),
        answer: relay_said(answer),
    };
    let gone = "<gone@example.org>: 550 5.1.1 <gone@example.org>: Recipient address rejected";
    let busy = "<busy@example.org>: 450 4.2.1 <busy@example.org>: Mailbox busy, try again later";
    let later = "<later@example.org>: 450 4.2.1 <later@example.org>: Mailbox busy, try again later";
    let transport = transport(&relay(&server));
    let batch = [
        message(1, "bot@example.org", &["dev@example.org"]),
        message(2, "bot@example.org", &["Gone <gone@example.org>"]),
        // Some recipients refused for good: the others still get it.
        message(
            3,
            "bot@example.org",
            &["gone@example.org", "ops@example.org"],
        ),
        // Refused for now: retried for that recipient alone.
        message(
            4,
            "bot@example.org",
            &["busy@example.org", "ops@example.org"],
        ),
        message(
            5,
            "bot@example.org",
            &["later@example.org", "gone@example.org"],
        ),
        message(6, "bot@example.org", &["nobody"]),
    ];
    let outcomes = deliver(&transport, &batch).await.unwrap();
    let expected: Vec<Outcome> = vec![
        Accepted,
        Refused(relay_said(&format!("every recipient refused: {gone}"))),
        Outcome::Partly {
            retry: vec![],
            refused: vec![refusal("gone@example.org", gone)],
        },
        Outcome::Partly {
            retry: vec![refusal("busy@example.org", busy)],
            refused: vec![],
        },
        Outcome::Partly {
            retry: vec![refusal("later@example.org", later)],
            refused: vec![refusal("gone@example.org", gone)],
        },
        Refused(relay_said("recipient 'nobody' is not an address")),
    ];
    assert_eq!(outcomes, expected);
    let received = server.wait_for(3, WAIT).await;
    let sent: Vec<_> = received
        .iter()
        .map(|m| (m.header("Subject").unwrap(), m.rcpt_tos.clone()))
        .collect();
    assert_eq!(
        sent,
        [
            ("build 1 failed", vec!["dev@example.org".to_string()]),
            ("build 3 failed", vec!["ops@example.org".to_string()]),
            ("build 4 failed", vec!["ops@example.org".to_string()]),
        ]
    );
    assert!(received.iter().all(|m| m.session == received[0].session));

    // The next attempt of 4 goes to the deferred recipient alone, and 5 to its own.
    let mut retried = batch[3].clone();
    retried.retry_recipients = Some(vec!["busy@example.org".into()]);
    let mut retried_too = batch[4].clone();
    retried_too.retry_recipients = Some(vec!["later@example.org".into()]);
    assert_eq!(
        deliver(&transport, &[retried, retried_too]).await,
        Ok(vec![Accepted, Accepted])
    );
    let received = server.wait_for(5, WAIT).await;
    assert_eq!(received[3].rcpt_tos, ["busy@example.org"]);
    assert_eq!(received[4].rcpt_tos, ["later@example.org"]);
}

#[tokio::test]
async fn a_message_the_relay_refuses_for_good_is_refused_and_the_batch_goes_on() {
    let server = SmtpServer::start(SmtpOptions {
        refuse_message: true,
        ..Default::default()
    });
    let port = server.port();
    let transport = transport(&relay(&server));
    let batch = [
        message(1, "bot@example.org", &["dev@example.org"]),
        message(2, "bot@example.org", &["ops@example.org"]),
    ];
    let refused = Refused(format!(
        "smtp relay localhost:{port}: message refused: 554 5.7.1 Message refused by policy"
    ));
    assert_eq!(
        deliver(&transport, &batch).await,
        Ok(vec![refused.clone(), refused])
    );
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn a_connection_lost_mid_batch_breaks_the_session() {
    let server = SmtpServer::start(SmtpOptions {
        drop_after: Some(2),
        ..Default::default()
    });
    let port = server.port();
    let transport = transport(&relay(&server));
    let batch: Vec<_> = (1..=4)
        .map(|id| message(id, "bot@example.org", &["dev@example.org"]))
        .collect();
    let outcomes = deliver(&transport, &batch).await.unwrap();
    assert_eq!(outcomes[..2], [Accepted, Accepted]);
    let Outcome::Broken(lost) = &outcomes[2] else {
        panic!("{outcomes:?}")
    };
    assert!(
        lost.starts_with(&format!("smtp relay localhost:{port}: ")) && !lost.contains('\n'),
        "{lost}"
    );
    assert_eq!(outcomes.len(), 3);
    assert_eq!(server.received().len(), 2);

    // The next session reconnects.
    assert_eq!(
        deliver(&transport, &batch[2..]).await,
        Ok(vec![Accepted, Accepted])
    );
    assert_eq!(server.wait_for(4, WAIT).await.len(), 4);
}

#[tokio::test]
async fn a_stopped_relay_cannot_be_opened_until_it_is_back() {
    let mut server = SmtpServer::start(SmtpOptions::default());
    let port = server.port();
    let transport = transport(&relay(&server));
    let batch = [
        message(1, "bot@example.org", &["dev@example.org"]),
        message(2, "bot@example.org", &["ops@example.org"]),
    ];
    server.stop();
    let error = deliver(&transport, &batch).await.unwrap_err();
    assert!(
        error.starts_with(&format!("smtp relay localhost:{port}: cannot connect: ")),
        "{error}"
    );
    assert!(error.to_lowercase().contains("refused"), "{error}");

    server.restart();
    assert_eq!(server.port(), port);
    assert_eq!(
        deliver(&transport, &batch).await,
        Ok(vec![Accepted, Accepted])
    );
    assert_eq!(server.wait_for(2, WAIT).await.len(), 2);
}
