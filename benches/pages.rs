//! The web pages' figures (issue 12), printed by `scripts/bench`: requests per second and
//! latency under `wrk` for the pages people keep open, on a master in-process that has run
//! 200 real builds (50 changes on four builders, two steps each, through a
//! SingleBranchScheduler) on SQLite in a temp dir.

use std::path::Path;
use std::time::{Duration, Instant};

use moonbot::db::ChangeSpec;
use moonbot::master::Master;
use tokio_util::sync::CancellationToken;

#[path = "support/wrk.rs"]
mod wrk;
use wrk::wrk;

const CHANGES: usize = 50;
const BUILDERS: usize = 4;
const WAIT: Duration = Duration::from_secs(120);

const CONFIG: &str = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local", { max_builds = 4 }) }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{ name = "compile", command = { "echo", "compiled" } })
f:addStep(steps.ShellCommand{ name = "test", command = { "true" } })
local names = {}
for n = 1, 4 do
  local name = "b" .. n
  names[#names + 1] = name
  c['builders']:append(util.BuilderConfig{ name = name, workernames = { "local" }, factory = f,
    tags = { "bench" }, collapseRequests = false })
end
c['schedulers'] = {
  schedulers.SingleBranchScheduler{ name = "main", change_filter = util.ChangeFilter{ branch = "main" }, builderNames = names },
}
c['status'] = { status.WebStatus{ http_port = "tcp:0:interface=127.0.0.1" } }
"#;

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

async fn run() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("moonbot pages benchmark (release, {cores} cores)");
    let master = start(scratch.path()).await?;
    let builds = CHANGES * BUILDERS;
    let begin = Instant::now();
    for n in 0..CHANGES {
        moonbot::changes::submit(
            &master.context,
            ChangeSpec {
                author: format!("dev{} <dev{}@example.org>", n % 5, n % 5),
                comments: format!("change {n}, fixes #{n}"),
                branch: Some("main".into()),
                revision: Some(format!("{n:040x}")),
                repository: "https://example.org/hello.git".into(),
                project: "hello".into(),
                files: vec![format!("src/file{n}.c")],
                ..ChangeSpec::default()
            },
        )
        .await?;
    }
    wait_for_builds(&master, builds).await?;
    println!(
        "  ({builds} builds of {CHANGES} changes on {BUILDERS} builders run in {:.2} s)",
        begin.elapsed().as_secs_f64()
    );
    let address = master.web_address.expect("the config has a WebStatus");
    for path in [
        "/",
        "/waterfall",
        "/console",
        "/grid",
        "/builders",
        "/builders/b1/builds/25",
    ] {
        let load = wrk(&format!("http://{address}{path}"), None)?;
        println!(
            "page {path}, `{}`, {builds} builds stored: {:.0} pages/s, p50 {}, p99 {}{}",
            load.command, load.requests_per_second, load.p50, load.p99, load.errors
        );
    }
    master.context.shutdown.cancel();
    master.wait().await
}

async fn start(dir: &Path) -> anyhow::Result<Master> {
    std::fs::write(dir.join("master.cfg.lua"), CONFIG)?;
    Master::start(dir, CancellationToken::new()).await
}

/// Waits until `count` builds have finished.
async fn wait_for_builds(master: &Master, count: usize) -> anyhow::Result<()> {
    tokio::time::timeout(WAIT, async {
        loop {
            let done: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM builds WHERE complete_at IS NOT NULL")
                    .fetch_one(&master.context.db.pool)
                    .await?;
            if done as usize >= count {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("{count} builds did not finish within {WAIT:?}"))?
}
