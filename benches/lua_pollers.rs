//! Lua pollers at scale (issue 17), printed by `scripts/bench`: the master's CPU with 500
//! `PollingChangeSource`s reading a JSON feed from a loopback HTTP server, and the reconfig
//! time with all of them.
//!
//! The feed is served by Python's `http.server` in its own process, so the CPU measured
//! (getrusage RUSAGE_SELF of this process, which runs the master and nothing else) is the
//! master's alone. To measure many polls in a short run the pollers poll every
//! `SCALED_INTERVAL` seconds instead of 60: the CPU of one poll is what a measured window
//! took divided by the polls the server saw in it, and the figure at `pollInterval=60` is
//! 500 such polls a minute.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use moonbot::master::Master;
use tokio_util::sync::CancellationToken;

const POLLERS: usize = 500;
/// Seconds between two polls of a poller while measuring.
const SCALED_INTERVAL: u64 = 5;
/// The interval the figure is for.
const INTERVAL: u64 = 60;
const WINDOW: Duration = Duration::from_secs(30);
const RECONFIGS: usize = 10;

/// Serves `feed.json` and counts the requests, answering the count at `/count`.
const FEED_SERVER: &str = r#"
import http.server, json, sys, threading
count = 0
lock = threading.Lock()
feed = json.dumps([{"id": i, "author": "dev%d" % (i % 7), "title": "commit %d" % i} for i in range(1, 21)]).encode()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        global count
        if self.path == "/count":
            body = str(count).encode()
        else:
            with lock:
                count += 1
            body = feed
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
# The 500 pollers' first polls come at once: the default listen backlog (5) drops them.
http.server.ThreadingHTTPServer.request_queue_size = 1024
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// 500 pollers as a user writes them: read the feed, submit the entries after the last one
/// seen. The feed does not change, so after the first poll a poll reads, decodes and
/// compares, and stores nothing.
fn config(port: u16, interval: u64, note: &str) -> String {
    format!(
        r#"local c = BuildmasterConfig
c['lua'] = {{timeout = 5}}
local function poll(self)
  local response = util.httpRequest{{url = self.feed, timeout = 30}}
  if response.status ~= 200 then
    error("the feed answered " .. response.status)
  end
  local last = self:getState("lastId", 0)
  local newest = last
  for _, entry in ipairs(util.jsonDecode(response.body)) do
    if entry.id > last then
      newest = entry.id
    end
  end
  if newest ~= last then
    self:setState("lastId", newest)
  end
end
for i = 1, {POLLERS} do
  c['change_source']:append(changes.PollingChangeSource{{
    name = "feed-" .. i, feed = "http://127.0.0.1:{port}/feed.json?poller=" .. i,
    note = {note:?}, compare_attrs = {{"feed"}},
    pollInterval = {interval}, pollAtLaunch = true, pollRandomDelayMax = {delay},
    poll = poll,
  }})
end
"#,
        delay = interval - 1
    )
}

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

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn run() -> anyhow::Result<()> {
    println!(
        "moonbot Lua pollers benchmark (release, {} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut child = Command::new("python3")
        .args(["-c", FEED_SERVER])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("piped")),
        &mut line,
    )?;
    let _server = Server(child);
    let port: u16 = line.trim().parse()?;
    let client = reqwest::Client::new();
    let count = || async {
        let text = client
            .get(format!("http://127.0.0.1:{port}/count"))
            .send()
            .await?
            .text()
            .await?;
        anyhow::Ok(text.parse::<u64>()?)
    };

    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    std::fs::write(
        dir.join("master.cfg.lua"),
        config(port, SCALED_INTERVAL, "a"),
    )?;
    let started = Instant::now();
    let mut master = Master::start(dir, CancellationToken::new()).await?;
    println!(
        "  start-up with {POLLERS} Lua pollers: {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    // Every poller's first poll (which stores its last id) is behind us after one interval.
    tokio::time::sleep(Duration::from_secs(SCALED_INTERVAL + 2)).await;

    let polls_before = count().await?;
    let cpu_before = rusage();
    tokio::time::sleep(WINDOW).await;
    let cpu = rusage() - cpu_before;
    let polls = count().await? - polls_before;
    anyhow::ensure!(polls > 0, "no poll in {WINDOW:?}");
    let per_poll = cpu / polls as f64;
    let per_minute = per_poll * POLLERS as f64 * 60.0 / INTERVAL as f64;
    println!(
        "  {POLLERS} pollers at pollInterval={SCALED_INTERVAL}: {polls} polls in {}s, {:.1} polls/s, master CPU {:.2} s ({:.1}% of one core)",
        WINDOW.as_secs(),
        polls as f64 / WINDOW.as_secs_f64(),
        cpu,
        cpu * 100.0 / WINDOW.as_secs_f64()
    );
    println!(
        "  master CPU per poll (HTTP GET of a 20-entry JSON feed, decode, getState): {:.3} ms",
        per_poll * 1000.0
    );
    println!(
        "  => {POLLERS} pollers at pollInterval={INTERVAL}: {:.2} s of CPU per minute, {:.2}% of one core (aim < 2%)",
        per_minute,
        per_minute * 100.0 / 60.0
    );

    for (what, note) in [
        ("unchanged", "a"),
        ("a field outside compare_attrs edited in every poller", "b"),
    ] {
        let mut times = Vec::new();
        for round in 0..RECONFIGS {
            let note = if note == "a" {
                "a".to_string()
            } else {
                format!("{note}{round}")
            };
            std::fs::write(
                dir.join("master.cfg.lua"),
                config(port, SCALED_INTERVAL, &note),
            )?;
            let begin = Instant::now();
            let outcome = master.reconfig().await;
            times.push(begin.elapsed());
            anyhow::ensure!(outcome.ok, "reconfig failed: {}", outcome.line);
        }
        times.sort();
        println!(
            "  reconfig with {POLLERS} Lua pollers, {what}, polls under way: median of {RECONFIGS} {:.1} ms (min {:.1}, max {:.1}) (aim < 100 ms)",
            ms(times[RECONFIGS / 2]),
            ms(times[0]),
            ms(times[RECONFIGS - 1])
        );
    }
    master.context.shutdown.cancel();
    master.wait().await?;
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// User plus system CPU seconds of this process.
fn rusage() -> f64 {
    // SAFETY: getrusage fills the zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
