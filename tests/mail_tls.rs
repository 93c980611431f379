//! `SmtpTransport` over TLS against a real SMTP server (aiosmtpd) on loopback: STARTTLS and
//! implicit TLS with the test CA trusted, a self-signed certificate trusted as itself (as
//! OpenSSL does), and certificates that are not trusted.
//!
//! The CA is trusted the way an operator would, through `SSL_CERT_FILE`. Setting it is only
//! sound while no other thread reads the environment, so every case runs in the one test of
//! this binary, in order.

#[path = "support/smtp.rs"]
mod smtp;

use std::time::Duration;

use moonbot::status::outbox::Outcome::Accepted;
use smtp::{
    deliver, expired_self_signed, message, self_signed, transport, SmtpOptions, SmtpServer, Tls,
};

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
        auth: credentials.clone(),
        ..Default::default()
    });
    let plain = SmtpServer::start(SmtpOptions::default());

    // Self-signed, as `openssl req -x509` makes them for a private relay: one trusted, one
    // trusted but for another name, one not in the store.
    let trusted_dir = tempfile::tempdir().unwrap();
    let own = self_signed(trusted_dir.path(), "own", "DNS:localhost,IP:127.0.0.1");
    let elsewhere = self_signed(trusted_dir.path(), "elsewhere", "DNS:relay.example.org");
    let stranger = self_signed(trusted_dir.path(), "stranger", "DNS:localhost,IP:127.0.0.1");
    let expired = expired_self_signed(trusted_dir.path());
    let self_signed_relay = |certificate: &(std::path::PathBuf, std::path::PathBuf)| {
        SmtpServer::start(SmtpOptions {
            tls: Tls::Starttls,
            certificate: Some(certificate.clone()),
            auth: credentials.clone(),
            ..Default::default()
        })
    };
    let own_relay = self_signed_relay(&own);
    let elsewhere_relay = self_signed_relay(&elsewhere);
    let stranger_relay = self_signed_relay(&stranger);
    let expired_relay = self_signed_relay(&expired);

    let trusted = trusted_dir.path().join("trusted.pem");
    let mut roots = std::fs::read(starttls.ca_file()).unwrap();
    roots.extend(std::fs::read(smtps.ca_file()).unwrap());
    roots.extend(std::fs::read(&own.0).unwrap());
    roots.extend(std::fs::read(&elsewhere.0).unwrap());
    roots.extend(std::fs::read(&expired.0).unwrap());
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
        deliver(&transport_starttls, &batch).await,
        Ok(vec![Accepted, Accepted])
    );
    let received = starttls.wait_for(2, WAIT).await;
    assert_eq!(received[0].session, received[1].session);
    assert_eq!(received[1].rcpt_tos, ["ops@example.org"]);

    // Implicit TLS, the certificate checked against the IP address it names.
    let transport_smtps = transport(&format!(
        "relayhost='127.0.0.1', smtpPort={}, useSmtps=true, {login}",
        smtps.port()
    ));
    assert_eq!(
        deliver(&transport_smtps, &batch).await,
        Ok(vec![Accepted, Accepted])
    );
    assert_eq!(smtps.wait_for(2, WAIT).await.len(), 2);

    // The self-signed certificate in the store: trusted as itself, over STARTTLS, by name
    // and by address.
    for host in ["localhost", "127.0.0.1"] {
        let transport_own = transport(&format!(
            "relayhost='{host}', smtpPort={}, useTls=true, {login}",
            own_relay.port()
        ));
        assert_eq!(
            deliver(&transport_own, &batch[..1]).await,
            Ok(vec![Accepted])
        );
    }
    assert_eq!(own_relay.wait_for(2, WAIT).await.len(), 2);

    // A trusted self-signed certificate is still checked for the relay's name.
    let transport_elsewhere = transport(&format!(
        "relayhost='localhost', smtpPort={}, useTls=true, {login}",
        elsewhere_relay.port()
    ));
    let error = deliver(&transport_elsewhere, &batch[..1])
        .await
        .unwrap_err();
    assert!(
        error.starts_with(&format!(
            "smtp relay localhost:{}: STARTTLS failed: invalid peer certificate: ",
            elsewhere_relay.port()
        )) && error.contains("not valid for name \"localhost\""),
        "{error}"
    );

    // ... and for its dates.
    let transport_expired = transport(&format!(
        "relayhost='localhost', smtpPort={}, useTls=true, {login}",
        expired_relay.port()
    ));
    let error = deliver(&transport_expired, &batch[..1]).await.unwrap_err();
    assert!(
        error.starts_with(&format!(
            "smtp relay localhost:{}: STARTTLS failed: invalid peer certificate: ",
            expired_relay.port()
        )) && error.contains("expired"),
        "{error}"
    );

    // A self-signed certificate that is not the one in the store is refused.
    let transport_stranger = transport(&format!(
        "relayhost='localhost', smtpPort={}, useTls=true, {login}",
        stranger_relay.port()
    ));
    let error = deliver(&transport_stranger, &batch[..1]).await.unwrap_err();
    assert!(
        error.starts_with(&format!(
            "smtp relay localhost:{}: STARTTLS failed: invalid peer certificate: ",
            stranger_relay.port()
        )) && error.contains("UnknownIssuer"),
        "{error}"
    );
    for refused in [&elsewhere_relay, &expired_relay, &stranger_relay] {
        assert!(refused.received().is_empty());
    }

    // A certificate from an unknown CA: no session, the error naming the verification.
    let transport_untrusted = transport(&format!(
        "relayhost='localhost', smtpPort={}, useTls=true, {login}",
        untrusted.port()
    ));
    let error = deliver(&transport_untrusted, &batch).await.unwrap_err();
    let prefix = format!(
        "smtp relay localhost:{}: STARTTLS failed: invalid peer certificate: ",
        untrusted.port()
    );
    assert!(
        error.starts_with(&prefix) && error.contains("UnknownIssuer"),
        "{error}"
    );
    assert!(untrusted.received().is_empty());

    // The same over implicit TLS.
    let transport_untrusted_smtps = transport(&format!(
        "relayhost='localhost', smtpPort={}, useSmtps=true, {login}",
        untrusted_smtps.port()
    ));
    let error = deliver(&transport_untrusted_smtps, &batch[..1])
        .await
        .unwrap_err();
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
        deliver(&transport_no_starttls, &batch[..1]).await,
        Err(format!(
            "smtp relay localhost:{}: STARTTLS is not offered, and useTls requires it",
            plain.port()
        ))
    );
    assert!(plain.received().is_empty());
}
