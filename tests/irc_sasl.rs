//! SASL PLAIN against a real SASL stack: InspIRCd linked to Atheme's SaslServ, with an
//! account registered through NickServ. The masters run as their own processes so that
//! their logs can be read.

#[path = "support/irc.rs"]
mod irc;
#[path = "support/master_process.rs"]
mod master_process;

use std::path::Path;
use std::time::Duration;

use irc::{Client, ServicesNetwork};

fn write_config(dir: &Path, port: u16, password: &str) {
    let config = format!(
        r#"
local c = BuildmasterConfig
c['workers'] = {{worker.LocalWorker('local')}}
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{{name='run', command={{'true'}}}})
c['builders'] = {{util.BuilderConfig{{name='b', workernames={{'local'}}, factory=f}}}}
c['status'] = {{status.IRC{{host='127.0.0.1', port={port}, nick='bb', useSASL=true,
  password='{password}', channels={{'#ci'}}, lostDelay=0.2, failedDelay=30}}}}
"#
    );
    std::fs::write(dir.join("master.cfg.lua"), config).unwrap();
}

/// The master's log, once it holds `wanted` (or after 20 s).
async fn log_with(dir: &Path, wanted: &str) -> String {
    for _ in 0..200 {
        let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        if log.contains(wanted) {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_logs_in_with_sasl_and_a_wrong_password_is_refused_in_the_log() {
    let network_dir = tempfile::tempdir().unwrap();
    let network = ServicesNetwork::start(network_dir.path()).await;
    network.register("bb", "s3cret").await;
    let mut alice = Client::connect(network.port, "alice").await;
    alice.join("#ci").await;

    let good = tempfile::tempdir().unwrap();
    write_config(good.path(), network.port, "s3cret");
    let master = master_process::spawn_master(good.path(), &[]);
    alice.wait_join("bb", "#ci").await;
    alice.send("WHOIS bb").await;
    let account = alice.expect(|l| l.command == "330").await;
    master_process::kill(master);
    assert_eq!(account.params[1..3], ["bb", "bb"], "{account:?}");

    alice
        .expect(|l| l.command == "QUIT" && l.from == "bb")
        .await;
    let wrong = tempfile::tempdir().unwrap();
    write_config(wrong.path(), network.port, "guessed");
    let master = master_process::spawn_master(wrong.path(), &[]);
    let log = log_with(wrong.path(), "SASL login refused").await;
    let joined: Vec<_> = alice
        .lines_within(Duration::from_millis(500))
        .await
        .into_iter()
        .filter(|l| l.command == "JOIN")
        .collect();
    master_process::kill(master);
    assert!(
        log.contains("SASL login refused: SASL authentication failed"),
        "{log}"
    );
    assert!(joined.is_empty(), "joined without logging in: {joined:?}");
}
