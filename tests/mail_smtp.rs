//! `SmtpTransport` against a real SMTP server (aiosmtpd) on loopback, without TLS: plain
//! delivery, AUTH, batches over one connection, refusals and a relay that goes away.

#[path = "support/smtp.rs"]
mod smtp;

use std::time::Duration;

use moonbot::status::outbox::Transport;
use smtp::{message, transport, SmtpOptions, SmtpServer};

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
        transport.deliver(std::slice::from_ref(&sent)).await,
        vec![Ok(())]
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
    assert_eq!(
        wrong.deliver(&batch).await,
        vec![Err(error.clone()), Err(error)]
    );

    // Without credentials the relay refuses each MAIL; that is the message's failure.
    let anonymous = transport(&relay(&server));
    let results = anonymous.deliver(&batch[..1]).await;
    let refusal = results[0].as_ref().unwrap_err();
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
    assert_eq!(right.deliver(&batch).await, vec![Ok(()), Ok(())]);
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
    assert_eq!(right.deliver(&batch[..1]).await, vec![Ok(())]);
    login_only.wait_for(1, WAIT).await;
}

#[tokio::test]
async fn a_batch_goes_over_one_connection() {
    let server = SmtpServer::start(SmtpOptions::default());
    let transport = transport(&relay(&server));
    let batch: Vec<_> = (1..=5)
        .map(|id| message(id, "bot@example.org", &[&format!("dev{id}@example.org")]))
        .collect();
    assert_eq!(transport.deliver(&batch).await, vec![Ok(()); 5]);
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
    assert_eq!(transport.deliver(&batch[..1]).await, vec![Ok(())]);
    let received = server.wait_for(6, WAIT).await;
    assert_ne!(received[5].session, first_session);
}

#[tokio::test]
async fn a_refused_recipient_fails_only_its_message() {
    let server = SmtpServer::start(SmtpOptions {
        refuse_rcpt: vec!["gone@example.org".into()],
        ..Default::default()
    });
    let port = server.port();
    let transport = transport(&relay(&server));
    let batch = [
        message(1, "bot@example.org", &["dev@example.org"]),
        message(2, "bot@example.org", &["Gone <gone@example.org>"]),
        message(3, "bot@example.org", &["dev@example.org"]),
        // Some recipients refused: the others still get it.
        message(
            4,
            "bot@example.org",
            &["gone@example.org", "ops@example.org"],
        ),
        message(5, "bot@example.org", &["nobody"]),
    ];
    let results = transport.deliver(&batch).await;
    assert_eq!(
        results,
        vec![
            Ok(()),
            Err(format!(
                "smtp relay localhost:{port}: every recipient refused: <gone@example.org>: \
                 550 5.1.1 <gone@example.org>: Recipient address rejected"
            )),
            Ok(()),
            Ok(()),
            Err(format!(
                "smtp relay localhost:{port}: recipient 'nobody' is not an address"
            )),
        ]
    );
    let received = server.wait_for(3, WAIT).await;
    assert_eq!(received.len(), 3);
    let subjects: Vec<_> = received.iter().map(|m| m.header("Subject")).collect();
    assert_eq!(
        subjects,
        [
            Some("build 1 failed"),
            Some("build 3 failed"),
            Some("build 4 failed")
        ]
    );
    assert_eq!(received[2].rcpt_tos, ["ops@example.org"]);
    assert!(received.iter().all(|m| m.session == received[0].session));
}

#[tokio::test]
async fn a_connection_lost_mid_batch_fails_the_rest() {
    let server = SmtpServer::start(SmtpOptions {
        drop_after: Some(2),
        ..Default::default()
    });
    let port = server.port();
    let transport = transport(&relay(&server));
    let batch: Vec<_> = (1..=4)
        .map(|id| message(id, "bot@example.org", &["dev@example.org"]))
        .collect();
    let results = transport.deliver(&batch).await;
    assert_eq!(results[..2], [Ok(()), Ok(())]);
    let lost = results[2].as_ref().unwrap_err();
    assert!(
        lost.starts_with(&format!("smtp relay localhost:{port}: ")) && !lost.contains('\n'),
        "{lost}"
    );
    let rest = results[3].as_ref().unwrap_err();
    assert!(
        rest.starts_with(&format!(
            "smtp relay localhost:{port}: not sent, the connection broke: "
        )),
        "{rest}"
    );
    assert_eq!(server.received().len(), 2);

    // The next batch reconnects.
    assert_eq!(transport.deliver(&batch[2..]).await, vec![Ok(()), Ok(())]);
    assert_eq!(server.wait_for(4, WAIT).await.len(), 4);
}

#[tokio::test]
async fn a_stopped_relay_fails_the_batch_until_it_is_back() {
    let mut server = SmtpServer::start(SmtpOptions::default());
    let port = server.port();
    let transport = transport(&relay(&server));
    let batch = [
        message(1, "bot@example.org", &["dev@example.org"]),
        message(2, "bot@example.org", &["ops@example.org"]),
    ];
    server.stop();
    let results = transport.deliver(&batch).await;
    assert_eq!(results.len(), 2);
    for result in &results {
        let error = result.as_ref().unwrap_err();
        assert!(
            error.starts_with(&format!("smtp relay localhost:{port}: cannot connect: ")),
            "{error}"
        );
        assert!(error.to_lowercase().contains("refused"), "{error}");
    }
    assert_eq!(results[0], results[1]);

    server.restart();
    assert_eq!(server.port(), port);
    assert_eq!(transport.deliver(&batch).await, vec![Ok(()), Ok(())]);
    assert_eq!(server.wait_for(2, WAIT).await.len(), 2);
}
