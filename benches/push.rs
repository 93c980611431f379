//! GitHubStatus figures (issue 15), printed by `scripts/bench`: commit statuses delivered
//! per second for 1,000 finished builds, and the wait from a build's end to its status
//! arriving while the peer is healthy.
//!
//! The peer is a minimal HTTP recorder in this process (201 to every POST), so the figures
//! are the master's cost, not a web server's. `scripts/bench` runs this bench pinned to
//! one core.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use moonbot::db::{now, SourceStampSpec};
use moonbot::master::Master;
use tokio_util::sync::CancellationToken;

#[path = "support/builds.rs"]
mod builds;
use builds::{cpu_seconds, run_builds};

const BUILDS: usize = 1_000;
const PACED_BUILDS: usize = 100;
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

/// A builder `b` of one trivial step; with `peer`, a GitHubStatus posting to it.
fn config(peer: Option<u16>) -> String {
    let status = match peer {
        Some(port) => format!(
            "c['status'] = {{ status.GitHubStatus{{ token = 't0k', repoOwner = 'moon', \
             repoName = 'lander', baseURL = 'http://127.0.0.1:{port}/' }} }}"
        ),
        None => String::new(),
    };
    format!(
        r#"
local c = BuildmasterConfig
c['buildbotURL'] = "http://ci.example.org/"
c['workers'] = {{ worker.LocalWorker("local", {{ max_builds = 4 }}) }}
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{{ name = "compile", command = {{ "true" }} }})
c['builders'] = {{
  util.BuilderConfig{{ name = "b", workernames = {{ "local" }}, factory = f, collapseRequests = false }},
}}
{status}
"#
    )
}

async fn run() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    let recorder = Recorder::start().await?;
    println!(
        "moonbot push benchmark (release, {} cores available to it)",
        std::thread::available_parallelism()?.get()
    );

    std::fs::write(dir.join("master.cfg.lua"), config(None))?;
    let mut master = Master::start(dir, CancellationToken::new()).await?;
    run_builds(&master, "b", commits(0..BUILDS)).await?;
    std::fs::write(dir.join("master.cfg.lua"), config(Some(recorder.port)))?;
    let outcome = master.reconfig().await;
    anyhow::ensure!(outcome.ok, "reconfig failed: {outcome:?}");

    // Each build's `finished` event again, at once: the target renders each status,
    // writes it to the outbox, and delivery posts them in order.
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    for buildid in 1..=BUILDS as i64 {
        master.context.bus.publish(
            format!("builds/{buildid}/finished"),
            serde_json::json!({ "buildid": buildid }),
        );
    }
    recorder.wait_for(BUILDS).await?;
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "  {BUILDS} finished builds' GitHub commit statuses (one HTTP recorder on loopback): \
         {:.0} statuses/s, {:.2} ms CPU per status",
        BUILDS as f64 / elapsed.as_secs_f64(),
        cpu * 1000.0 / BUILDS as f64
    );

    // One build at a time, the peer healthy: from the build's end to its final status.
    let mut waits = Vec::with_capacity(PACED_BUILDS);
    for n in 0..PACED_BUILDS {
        let sha = revision(BUILDS + n);
        run_builds(&master, "b", commits(BUILDS + n..BUILDS + n + 1)).await?;
        let complete_at: f64 =
            sqlx::query_scalar("SELECT complete_at FROM builds ORDER BY id DESC LIMIT 1")
                .fetch_one(&master.context.db.pool)
                .await?;
        let arrived = recorder.final_status(&sha).await?;
        waits.push(arrived - complete_at);
    }
    waits.sort_by(f64::total_cmp);
    println!(
        "  build end to its status at the peer, {PACED_BUILDS} builds one at a time: \
         median {:.2} ms, p99 {:.2} ms",
        waits[waits.len() / 2] * 1000.0,
        waits[waits.len() * 99 / 100] * 1000.0
    );
    master.context.shutdown.cancel();
    master.wait().await?;
    Ok(())
}

/// A sourcestamp of each commit in `numbers`.
fn commits(numbers: std::ops::Range<usize>) -> Vec<SourceStampSpec> {
    numbers
        .map(|n| SourceStampSpec {
            revision: Some(revision(n)),
            ..SourceStampSpec::default()
        })
        .collect()
}

/// The commit of the `n`th build.
fn revision(n: usize) -> String {
    format!("{n:040x}")
}

/// One status the recorder took: its commit, state and Unix arrival time.
type Taken = (String, String, f64);

/// An HTTP server that answers 201 to every status and remembers it.
struct Recorder {
    port: u16,
    taken: Arc<Mutex<Vec<Taken>>>,
}

impl Recorder {
    async fn start() -> anyhow::Result<Recorder> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let taken: Arc<Mutex<Vec<Taken>>> = Arc::default();
        let app = axum::Router::new()
            .route("/repos/{owner}/{repo}/statuses/{sha}", post(record))
            .with_state(taken.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Recorder { port, taken })
    }

    fn count(&self) -> usize {
        self.taken.lock().unwrap().len()
    }

    async fn wait_for(&self, count: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        while self.count() < count {
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {} of {count} statuses arrived",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// When the final status of `sha` arrived, waiting for it; an error names a final
    /// status other than success (the build failed) or, after `WAIT`, every state `sha`
    /// got, so that a failed run says which of the two went wrong.
    async fn final_status(&self, sha: &str) -> anyhow::Result<f64> {
        let deadline = Instant::now() + WAIT;
        loop {
            let states: Vec<(String, f64)> = self
                .taken
                .lock()
                .unwrap()
                .iter()
                .filter(|(s, _, _)| s == sha)
                .map(|(_, state, at)| (state.clone(), *at))
                .collect();
            if let Some((state, at)) = states.iter().find(|(state, _)| state != "pending") {
                anyhow::ensure!(state == "success", "the build of {sha} ended {state}");
                return Ok(*at);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no final status for {sha}; its statuses: {:?}",
                states.iter().map(|(state, _)| state).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

async fn record(
    State(taken): State<Arc<Mutex<Vec<Taken>>>>,
    Path((_, _, sha)): Path<(String, String, String)>,
    body: String,
) -> StatusCode {
    let at = now();
    let state = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|status| status["state"].as_str().map(str::to_string))
        .unwrap_or_default();
    taken.lock().unwrap().push((sha, state, at));
    StatusCode::CREATED
}
