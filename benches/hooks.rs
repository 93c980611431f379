//! The change hooks' figures (issue 13), printed by `scripts/bench`: GitHub push webhooks
//! of two commits each, signed with a secret (`X-Hub-Signature-256`), POSTed to an
//! in-process master over loopback keep-alive connections; webhooks and changes accepted
//! per second, the time per POST, and the time from a POST to the build it starts.
//!
//! The client is a few lines of HTTP/1.1 over `TcpStream` with every request built and
//! signed before the clock starts, so that the figures are the master's.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use moonbot::master::Master;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The longest any single wait may take before the benchmark gives up.
const WAIT: Duration = Duration::from_secs(120);
const CONNECTIONS: usize = 8;
const WEBHOOKS_PER_CONNECTION: usize = 500;
const BUILD_WEBHOOKS: usize = 100;
const SECRET: &str = "bench-secret";

/// A builder that takes pushes to `main`; the throughput phase pushes to `master`, which
/// the scheduler looks at and leaves, so that builds do not compete with the hooks.
const CONFIG: &str = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local", { max_builds = 2 }) }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{ name = "one", command = { "true" } })
c['builders'] = { util.BuilderConfig{ name = "b", workernames = { "local" }, factory = f, collapseRequests = false } }
c['schedulers'] = {
  schedulers.SingleBranchScheduler{ name = "main", change_filter = util.ChangeFilter{ branch = "main" }, builderNames = { "b" } },
}
c['status'] = { status.WebStatus{ http_port = "tcp:0:interface=127.0.0.1",
  change_hook_dialects = { github = { secret = "bench-secret", strict = true } } } }
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
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("moonbot change hook benchmark ({profile}, {cores} cores)");
    let template = std::fs::read_to_string(webhooks()?.join("github_push_bench.json"))?;
    let scratch = tempfile::tempdir()?;
    std::fs::write(scratch.path().join("master.cfg.lua"), CONFIG)?;
    let master = Master::start(scratch.path(), CancellationToken::new()).await?;
    let address = master
        .web_address
        .ok_or_else(|| anyhow::anyhow!("the master has no web server"))?;

    // Throughput: every connection POSTs its share back to back.
    let mut batches = Vec::new();
    for connection in 0..CONNECTIONS {
        let requests: Vec<Vec<u8>> = (0..WEBHOOKS_PER_CONNECTION)
            .map(|i| {
                request(
                    &template,
                    connection * WEBHOOKS_PER_CONNECTION + i,
                    "master",
                )
            })
            .collect();
        batches.push(requests);
    }
    let begin = Instant::now();
    let clients: Vec<_> = batches
        .into_iter()
        .map(|requests| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(address).await?;
                stream.set_nodelay(true)?;
                let mut times = Vec::with_capacity(requests.len());
                for request in requests {
                    let sent = Instant::now();
                    post(&mut stream, &request).await?;
                    times.push(sent.elapsed());
                }
                anyhow::Ok(times)
            })
        })
        .collect();
    let mut times = Vec::new();
    for client in clients {
        times.extend(client.await??);
    }
    let elapsed = begin.elapsed().as_secs_f64();
    times.sort();
    let webhooks = times.len();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM changes")
        .fetch_one(&master.context.db.pool)
        .await?;
    anyhow::ensure!(
        stored as usize == 2 * webhooks,
        "{stored} changes stored for {webhooks} webhooks"
    );
    println!(
        "GitHub push webhooks (2 commits each, X-Hub-Signature-256 checked), {CONNECTIONS} keep-alive \
         connections x {WEBHOOKS_PER_CONNECTION} POSTs: {:.0} webhooks/s, {:.0} changes/s; \
         per POST p50 {:.2} ms, p99 {:.2} ms",
        webhooks as f64 / elapsed,
        stored as f64 / elapsed,
        ms(times[webhooks / 2]),
        ms(times[webhooks * 99 / 100]),
    );

    // Latency to a build: one push at a time to `main`, waiting for its builds to end. The
    // first one comes while the scheduler still works through the burst's changes, and is
    // reported apart.
    let mut events = master.context.bus.subscribe();
    let mut stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let mut latencies = Vec::with_capacity(BUILD_WEBHOOKS + 1);
    for i in 0..=BUILD_WEBHOOKS {
        let request = request(&template, CONNECTIONS * WEBHOOKS_PER_CONNECTION + i, "main");
        let sent = Instant::now();
        post(&mut stream, &request).await?;
        wait_for(&mut events, |key| {
            key.starts_with("builds/") && key.ends_with("/new")
        })
        .await?;
        latencies.push(sent.elapsed());
        // Each of the two changes makes a buildset; the next push must not race them.
        for _ in 0..2 {
            wait_for(&mut events, |key| {
                key.starts_with("buildsets/") && key.ends_with("/complete")
            })
            .await?;
        }
    }
    let after_burst = latencies.remove(0);
    latencies.sort();
    println!(
        "POST to build start, right after the burst (the scheduler catching up): {:.2} ms",
        ms(after_burst)
    );
    println!(
        "POST to build start, {BUILD_WEBHOOKS} more pushes to main one at a time, SingleBranchScheduler \
         without treeStableTimer, first byte sent to builds/N/new: median {:.2} ms, p99 {:.2} ms",
        ms(latencies[BUILD_WEBHOOKS / 2]),
        ms(latencies[BUILD_WEBHOOKS * 99 / 100]),
    );
    master.context.shutdown.cancel();
    master.wait().await
}

/// The payloads: `MOONBOT_WEBHOOKS`, or `shared/data/webhooks` above the repository.
fn webhooks() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MOONBOT_WEBHOOKS") {
        return Ok(dir.into());
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("shared/data/webhooks"))
        .find(|dir| dir.is_dir())
        .ok_or_else(|| anyhow::anyhow!("no shared/data/webhooks; set MOONBOT_WEBHOOKS"))
}

/// Push number `n` to `branch` as a signed HTTP request: its commits get revisions of
/// their own, so that every change is new.
fn request(template: &str, n: usize, branch: &str) -> Vec<u8> {
    let body = template
        .replace(
            "41a212ee83ca127e3c8cf465891ab7216a705f59",
            &format!("{:040x}", 2 * n),
        )
        .replace(
            "de8251ff97ee194a289832576287d6f8ad74e3d0",
            &format!("{:040x}", 2 * n + 1),
        )
        .replace("refs/heads/master", &format!("refs/heads/{branch}"));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key");
    mac.update(body.as_bytes());
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "POST /change_hook/github HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
         X-GitHub-Event: push\r\nX-Hub-Signature-256: sha256={signature}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends one request and reads its answer, which must be `202`.
async fn post(stream: &mut TcpStream, request: &[u8]) -> anyhow::Result<()> {
    stream.write_all(request).await?;
    let mut answer = Vec::with_capacity(256);
    let mut buffer = [0u8; 1024];
    let (head_end, length) = loop {
        let n = stream.read(&mut buffer).await?;
        anyhow::ensure!(n > 0, "the master closed the connection");
        answer.extend_from_slice(&buffer[..n]);
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&answer[..end])?;
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while answer.len() < head_end + length {
        let n = stream.read(&mut buffer).await?;
        anyhow::ensure!(n > 0, "the master closed the connection");
        answer.extend_from_slice(&buffer[..n]);
    }
    anyhow::ensure!(
        answer.starts_with(b"HTTP/1.1 202"),
        "the hook answered {}",
        String::from_utf8_lossy(&answer)
    );
    Ok(())
}

async fn wait_for(
    events: &mut moonbot::bus::Subscription,
    wanted: impl Fn(&str) -> bool,
) -> anyhow::Result<()> {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(event) if wanted(&event.key) => return Ok(()),
                Ok(_) => {}
                Err(error) => anyhow::bail!("the bus failed the bench: {error}"),
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("no awaited event within {WAIT:?}"))?
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
