//! HTTP pushes over TLS: a peer's self-signed certificate put in `SSL_CERT_FILE` is
//! trusted as itself, as for mail relays; one that is not there is refused. Its own test
//! binary, so that setting the variable races with no other test.

#[path = "support/http.rs"]
mod http;
#[path = "support/smtp.rs"]
mod smtp;

use http::HttpServer;
use moonbot::db::OutboxMessage;
use moonbot::status::outbox::{Outcome, Transport};
use moonbot::status::push::transport::{request_meta, Auth, HttpTransport};

fn status(url: &str) -> OutboxMessage {
    OutboxMessage {
        id: 1,
        reporter: "GitHubStatus".into(),
        kind: "http".into(),
        dedup_key: "o/r/abc/ci#build:1:started".into(),
        summary: "pending".into(),
        meta: request_meta(&format!("{url}repos/o/r/statuses/abc"), "application/json"),
        body: br#"{"state":"pending"}"#.to_vec(),
        state: "pending".into(),
        attempts: 0,
        created_at: 0.0,
        next_attempt_at: 0.0,
        sent_at: None,
        last_error: None,
        retry_recipients: None,
        refused_recipients: Vec::new(),
    }
}

#[tokio::test]
async fn a_peer_whose_self_signed_certificate_is_trusted_gets_statuses_over_https_and_another_not()
{
    let certs = tempfile::tempdir().unwrap();
    let names = "DNS:localhost,IP:127.0.0.1";
    let (trusted, trusted_key) = smtp::self_signed(certs.path(), "trusted", names);
    let (stranger, stranger_key) = smtp::self_signed(certs.path(), "stranger", names);
    std::env::set_var("SSL_CERT_FILE", &trusted);

    let server = HttpServer::start_tls(&trusted, &trusted_key);
    let transport =
        HttpTransport::new(&server.url(), Auth::Token("t0k".into()), &[], false).unwrap();
    assert_eq!(
        transport.send(&mut (), &status(&server.url())).await,
        Outcome::Accepted
    );
    let taken = server.taken();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].header("authorization"), Some("token t0k"));

    let other = HttpServer::start_tls(&stranger, &stranger_key);
    let transport =
        HttpTransport::new(&other.url(), Auth::Token("t0k".into()), &[], false).unwrap();
    match transport.send(&mut (), &status(&other.url())).await {
        Outcome::Failed(error) => assert!(error.contains("UnknownIssuer"), "{error}"),
        outcome => panic!("a certificate not trusted was accepted: {outcome:?}"),
    }
    assert!(other.requests().is_empty());
}
