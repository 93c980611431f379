//! The IRC bot over TLS to ngircd's TLS port, with a self-signed certificate trusted the
//! way an operator would trust it, through `SSL_CERT_FILE`; a server whose certificate is
//! not trusted is never talked to. Setting the variable is only sound while no other
//! thread reads the environment, so this binary holds one test.

#[path = "support/irc.rs"]
mod irc;
#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::time::Duration;

use irc::{Client, IrcServer};
use support::TestMaster;

fn config(port: u16) -> String {
    format!(
        r#"
local c = BuildmasterConfig
c['workers'] = {{worker.LocalWorker('local')}}
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{{name='run', command={{'true'}}}})
c['builders'] = {{util.BuilderConfig{{name='b', workernames={{'local'}}, factory=f}}}}
c['status'] = {{status.IRC{{host='127.0.0.1', port={port}, nick='bb', useSSL=true,
  channels={{'#ci'}}, lostDelay=0.2, failedDelay=0.3}}}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_talks_tls_to_a_server_whose_certificate_is_trusted_and_only_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let own = smtp::self_signed(dir.path(), "own", "DNS:localhost,IP:127.0.0.1");
    let stranger = smtp::self_signed(dir.path(), "stranger", "DNS:localhost,IP:127.0.0.1");
    std::env::set_var("SSL_CERT_FILE", &own.0);
    std::env::remove_var("SSL_CERT_DIR");

    let own_dir = tempfile::tempdir().unwrap();
    let server = IrcServer::ngircd(own_dir.path(), Some((&own.0, &own.1)), &[]).await;
    let mut alice = Client::connect(server.port, "alice").await;
    alice.join("#ci").await;
    let master = TestMaster::start(&config(server.tls_port.unwrap())).await;
    alice.wait_join("bb", "#ci").await;
    assert_eq!(
        alice.ask("bb", "#ci", "list builders").await,
        "Configured builders: b"
    );
    drop(master);

    let stranger_dir = tempfile::tempdir().unwrap();
    let server =
        IrcServer::ngircd(stranger_dir.path(), Some((&stranger.0, &stranger.1)), &[]).await;
    let mut alice = Client::connect(server.port, "alice").await;
    alice.join("#ci").await;
    let _master = TestMaster::start(&config(server.tls_port.unwrap())).await;
    let joined: Vec<_> = alice
        .lines_within(Duration::from_secs(2))
        .await
        .into_iter()
        .filter(|l| l.command == "JOIN")
        .collect();
    assert!(
        joined.is_empty(),
        "joined over an untrusted connection: {joined:?}"
    );
}
