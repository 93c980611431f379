//! IRC bot figures (issue 14), printed by `scripts/bench`: the time from a build's end to
//! its announcement reaching a person in the channel while the bot is connected and its
//! send queue empty, and announcements per second when many are due at once (the bot's
//! flood pacing is then the limit).
//!
//! The server is a real ngircd on loopback and the person a plain IRC client, both from
//! the IRC tests' support module.

#[path = "../tests/support/irc.rs"]
mod irc;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use irc::{Client, IrcServer};
use moonbot::data::{publish, Resource};
use moonbot::db::{BuildsetSpec, SourceStampSpec};
use moonbot::master::Master;
use moonbot::runtime::Context;
use tokio_util::sync::CancellationToken;

const PACED_BUILDS: usize = 100;
const FLOOD_BUILDS: usize = 40;
/// Between paced builds: the bot's pacing earns back the line the last one spent.
const PAUSE: Duration = Duration::from_millis(600);
const WAIT: Duration = Duration::from_secs(300);

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

/// A builder `b` of one trivial step, and the bot announcing every finished build in `#ci`.
fn config(port: u16) -> String {
    format!(
        r##"
local c = BuildmasterConfig
c['buildbotURL'] = "http://ci.example.org/"
c['workers'] = {{ worker.LocalWorker("local", {{ max_builds = 4 }}) }}
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{{ name = "compile", command = {{ "true" }} }})
c['builders'] = {{
  util.BuilderConfig{{ name = "b", workernames = {{ "local" }}, factory = f, collapseRequests = false }},
}}
c['status'] = {{ status.IRC{{ host = "127.0.0.1", port = {port}, nick = "bb", useColors = false,
  channels = {{ "#ci" }}, notify_events = {{ finished = 1 }} }} }}
"##
    )
}

async fn run() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let server = IrcServer::ngircd(scratch.path(), None, &[]).await;
    let mut alice = Client::connect(server.port, "alice").await;
    alice.join("#ci").await;
    let master_dir = tempfile::tempdir()?;
    std::fs::write(
        master_dir.path().join("master.cfg.lua"),
        config(server.port),
    )?;
    let master = Master::start(master_dir.path(), CancellationToken::new()).await?;
    alice.wait_join("bb", "#ci").await;
    println!(
        "moonbot IRC benchmark (release, {} cores available to it, ngircd on loopback)",
        std::thread::available_parallelism()?.get()
    );

    // One build at a time, the bot's queue empty: from the build's end to the line in #ci.
    let mut waits = Vec::with_capacity(PACED_BUILDS);
    for n in 1..=PACED_BUILDS {
        run_builds(&master.context, 1).await?;
        let complete_at: f64 =
            sqlx::query_scalar("SELECT complete_at FROM builds ORDER BY id DESC LIMIT 1")
                .fetch_one(&master.context.db.pool)
                .await?;
        let announced = format!("build #{n} of b is complete");
        alice
            .expect(|l| l.is_message("bb", "#ci") && l.text.starts_with(&announced))
            .await;
        waits.push(unix_now() - complete_at);
        tokio::time::sleep(PAUSE).await;
    }
    waits.sort_by(f64::total_cmp);
    println!(
        "  build end to its announcement in the channel, {PACED_BUILDS} builds one at a time \
         ({} ms apart): median {:.2} ms, p99 {:.2} ms",
        PAUSE.as_millis(),
        waits[waits.len() / 2] * 1000.0,
        waits[waits.len() * 99 / 100] * 1000.0
    );

    // Many due at once: the rate the channel hears them at, set by the bot's pacing.
    let started = Instant::now();
    let ctx = master.context.clone();
    let builds = tokio::spawn(async move { run_builds(&ctx, FLOOD_BUILDS).await });
    let mut first = None;
    for _ in 0..FLOOD_BUILDS {
        alice
            .expect(|l| l.is_message("bb", "#ci") && l.text.contains(" is complete: "))
            .await;
        first.get_or_insert_with(Instant::now);
    }
    let last = Instant::now();
    builds.await??;
    let first = first.expect("at least one announcement");
    println!(
        "  {FLOOD_BUILDS} builds queued at once: their announcements in {:.2} s, {:.2} \
         announcements/s after the first",
        (last - started).as_secs_f64(),
        (FLOOD_BUILDS - 1) as f64 / (last - first).as_secs_f64()
    );
    master.context.shutdown.cancel();
    master.wait().await?;
    Ok(())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Queues `count` builds of `b` and waits for every one to finish.
async fn run_builds(ctx: &Context, count: usize) -> anyhow::Result<()> {
    let builderid = ctx.db.builder_id("b").await?;
    let mut buildsets = Vec::with_capacity(count);
    for _ in 0..count {
        let spec = BuildsetSpec {
            reason: "bench".into(),
            scheduler: "bench".into(),
            new_sourcestamps: vec![SourceStampSpec::default()],
            builder_ids: vec![builderid],
            ..BuildsetSpec::default()
        };
        let (bsid, brids) = ctx.db.add_buildset(&spec).await?;
        for brid in brids.values() {
            publish(&ctx.db, &ctx.bus, Resource::BuildRequest(*brid), "new").await?;
        }
        buildsets.push(bsid);
    }
    let deadline = Instant::now() + WAIT;
    for bsid in buildsets {
        while ctx.db.buildset_result(bsid).await?.is_none() {
            anyhow::ensure!(Instant::now() < deadline, "buildset {bsid} never finished");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(())
}
