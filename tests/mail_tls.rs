//! `SmtpTransport` over TLS against a real SMTP server (aiosmtpd) on loopback: STARTTLS and
//! implicit TLS with the test CA trusted, and a certificate that is not trusted.
//!
//! The CA is trusted the way an operator would, through `SSL_CERT_FILE`. Setting it is only
//! sound while no other thread reads the environment, so every case runs in the one test of
//! this binary, in order.

#[path = "support/smtp.rs"]
mod smtp;

use std::time::Duration;

use moonbot::status::outbox::Transport;
use smtp::{message, transport, SmtpOptions, SmtpServer, Tls};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn tls_relays() {
    let credentials = Some(("bot".to_string(), "s3cret".to_string()));
    let starttls = SmtpServer::start(SmtpOptions {
        tls: Tls::Starttls,
        auth: credentials.clone(),
        ..Default::default()
    });
    let smtps = SmtpServer::start(SmtpOptions {
        tls: Tls::Smtps,
        auth: credentials.clone(),
        ..Default::default()
    });
    // Each server has its own CA; these two are left out of the trusted file.
    let untrusted = SmtpServer::start(SmtpOptions {
        tls: Tls::Starttls,
        auth: credentials.clone(),
        ..Default::default()
    });
    let untrusted_smtps = SmtpServer::start(SmtpOptions {
        tls: Tls::Smtps,
        auth: credentials,
        ..Default::default()
    });
    let plain = SmtpServer::start(SmtpOptions::default());

    let trusted_dir = tempfile::tempdir().unwrap();
    let trusted = trusted_dir.path().join("trusted.pem");
    let mut roots = std::fs::read(starttls.ca_file()).unwrap();
    roots.extend(std::fs::read(smtps.ca_file()).unwrap());
    std::fs::write(&trusted, roots).unwrap();
    std::env::set_var("SSL_CERT_FILE", &trusted);
    std::env::remove_var("SSL_CERT_DIR");

    let batch = [
        message(1, "bot@example.org", &["dev@example.org"]),
        message(2, "bot@example.org", &["ops@example.org"]),
    ];
    let login = "smtpUser='bot', smtpPassword='s3cret'";

    // STARTTLS, then AUTH (the server offers AUTH only once encrypted).
    let transport_starttls = transport(&format!(
        "relayhost='localhost', smtpPort={}, useTls=true, {login}",
        starttls.port()
    ));
    assert_eq!(
        transport_starttls.deliver(&batch).await,
        vec![Ok(()), Ok(())]
    );
    let received = starttls.wait_for(2, WAIT).await;
    assert_eq!(received[0].session, received[1].session);
    assert_eq!(received[1].rcpt_tos, ["ops@example.org"]);

    // Implicit TLS, the certificate checked against the IP address it names.
    let transport_smtps = transport(&format!(
        "relayhost='127.0.0.1', smtpPort={}, useSmtps=true, {login}",
        smtps.port()
    ));
    assert_eq!(transport_smtps.deliver(&batch).await, vec![Ok(()), Ok(())]);
    assert_eq!(smtps.wait_for(2, WAIT).await.len(), 2);

    // A certificate from an unknown CA: the whole batch fails, naming the verification.
    let transport_untrusted = transport(&format!(
        "relayhost='localhost', smtpPort={}, useTls=true, {login}",
        untrusted.port()
    ));
    let results = transport_untrusted.deliver(&batch).await;
    let prefix = format!(
        "smtp relay localhost:{}: STARTTLS failed: invalid peer certificate: ",
        untrusted.port()
    );
    for result in &results {
        let error = result.as_ref().unwrap_err();
        assert!(
            error.starts_with(&prefix) && error.contains("UnknownIssuer"),
            "{error}"
        );
    }
    assert_eq!(results.len(), 2);
    assert!(untrusted.received().is_empty());

    // The same over implicit TLS.
    let transport_untrusted_smtps = transport(&format!(
        "relayhost='localhost', smtpPort={}, useSmtps=true, {login}",
        untrusted_smtps.port()
    ));
    let results = transport_untrusted_smtps.deliver(&batch[..1]).await;
    let error = results[0].as_ref().unwrap_err();
    assert!(
        error.starts_with(&format!(
            "smtp relay localhost:{}: cannot connect: invalid peer certificate: ",
            untrusted_smtps.port()
        )) && error.contains("UnknownIssuer"),
        "{error}"
    );
    assert!(untrusted_smtps.received().is_empty());

    // useTls against a relay that does not offer STARTTLS: nothing goes out in clear.
    let transport_no_starttls = transport(&format!(
        "relayhost='localhost', smtpPort={}, useTls=true, {login}",
        plain.port()
    ));
    assert_eq!(
        transport_no_starttls.deliver(&batch[..1]).await,
        vec![Err(format!(
            "smtp relay localhost:{}: STARTTLS is not offered, and useTls requires it",
            plain.port()
        ))]
    );
    assert!(plain.received().is_empty());
}
