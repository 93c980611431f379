//! MailNotifier figures (issue 5), printed by `scripts/bench`: mails delivered per second
//! for 1,000 finished builds rendered by the spec's HTML `messageFormatter`, and the time a
//! message waits in the outbox while the relay is healthy.
//!
//! The relay is a minimal SMTP sink in this process, so the figures are the master's cost,
//! not a mail server's. `scripts/bench` runs this bench pinned to one core.

use std::path::Path;
use std::time::Instant;

use moonbot::db::SourceStampSpec;
use moonbot::master::Master;
use tokio_util::sync::CancellationToken;

#[path = "support/builds.rs"]
mod builds;
#[path = "support/smtp_sink.rs"]
mod smtp_sink;
use builds::{cpu_seconds, run_builds};
use smtp_sink::Sink;

const BUILDS: usize = 1_000;
const PACED_BUILDS: usize = 100;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

/// A builder `b` that prints 100 lines and fails, so the HTML formatter has a log tail to
/// show; the MailNotifier mails about `notified` only.
fn config(relay_port: u16, notified: &str) -> anyhow::Result<String> {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mail_html_formatter.lua"),
    )?;
    let example = example.replace(
        "fromaddr = \"buildbot@example.org\",",
        &format!(
            "fromaddr = \"buildbot@example.org\", relayhost = \"127.0.0.1\", \
             smtpPort = {relay_port}, builders = {{ \"{notified}\" }},"
        ),
    );
    Ok(format!(
        r#"
local c = BuildmasterConfig
c['buildbotURL'] = "http://ci.example.org/"
c['workers'] = {{ worker.LocalWorker("local", {{ max_builds = 4 }}) }}
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{{ name = "compile", command = {{ "sh", "-c", "seq 1 100; exit 1" }} }})
c['builders'] = {{
  util.BuilderConfig{{ name = "b", workernames = {{ "local" }}, factory = f, collapseRequests = false }},
  util.BuilderConfig{{ name = "other", workernames = {{ "local" }}, factory = f }},
}}
{example}
"#
    ))
}

async fn run() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    let sink = Sink::start().await?;
    println!(
        "moonbot mail benchmark (release, {} cores available to it)",
        std::thread::available_parallelism()?.get()
    );

    std::fs::write(dir.join("master.cfg.lua"), config(sink.port, "other")?)?;
    let mut master = Master::start(dir, CancellationToken::new()).await?;
    run_builds(&master, "b", vec![SourceStampSpec::default(); BUILDS]).await?;

    std::fs::write(dir.join("master.cfg.lua"), config(sink.port, "b")?)?;
    let outcome = master.reconfig().await;
    anyhow::ensure!(outcome.ok, "reconfig failed: {outcome:?}");

    // Each build's `finished` event again, at once: the notifier snapshots the build, runs
    // the formatter (which reads the log's tail), writes the outbox row; delivery batches.
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    for buildid in 1..=BUILDS as i64 {
        master.context.bus.publish(
            format!("builds/{buildid}/finished"),
            serde_json::json!({ "buildid": buildid }),
        );
    }
    sink.wait_for(BUILDS).await?;
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "  {BUILDS} finished builds mailed with the HTML messageFormatter (100-line stdio, \
         one SMTP sink on loopback): {:.0} mails/s, {:.2} ms CPU per mail",
        BUILDS as f64 / elapsed.as_secs_f64(),
        cpu * 1000.0 / BUILDS as f64
    );

    // One build at a time, the relay healthy: how long each mail waits in the outbox.
    let first_paced = BUILDS as i64 + 1;
    for _ in 0..PACED_BUILDS {
        run_builds(&master, "b", vec![SourceStampSpec::default()]).await?;
    }
    sink.wait_for(BUILDS + PACED_BUILDS).await?;
    let mut waits: Vec<f64> = sqlx::query_scalar(
        "SELECT sent_at - created_at FROM outbox WHERE state = 'sent' AND id >= $1",
    )
    .bind(first_paced)
    .fetch_all(&master.context.db.pool)
    .await?;
    waits.sort_by(f64::total_cmp);
    anyhow::ensure!(
        waits.len() == PACED_BUILDS,
        "{} paced mails sent",
        waits.len()
    );
    println!(
        "  outbox wait, written to accepted by the relay, {PACED_BUILDS} builds one at a time: \
         median {:.2} ms, p99 {:.2} ms",
        waits[waits.len() / 2] * 1000.0,
        waits[waits.len() * 99 / 100] * 1000.0
    );
    master.context.shutdown.cancel();
    master.wait().await?;
    Ok(())
}
