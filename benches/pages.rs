//! The web pages' figures (issue 12), printed by `scripts/bench`: requests per second and
//! latency under `wrk` for the pages people keep open, with 100,000 builds stored on 20
//! builders, the master pinned to one core; and the time from a build's end to its colour
//! changing in a waterfall open in headless Chromium.
//!
//! The history is copied from real builds: the master (in-process, SQLite in a temp dir)
//! first runs 500 real builds (25 changes on 20 builders, two steps each, through a
//! SingleBranchScheduler), then SQL copies those builds with everything the pages read
//! (changes, sourcestamps, buildsets, requests, properties, steps, logs and their chunks)
//! under fresh ids, build numbers and revisions, each copy later than the one before, until
//! 100,000 builds are stored.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use moonbot::db::ChangeSpec;
use moonbot::db::{Pool, Transaction};
use moonbot::master::Master;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[path = "support/wrk.rs"]
mod wrk;
use wrk::wrk_pinned;
// Only its CPU clock is used here.
#[allow(dead_code)]
#[path = "support/builds.rs"]
mod builds;

const CHANGES: usize = 25;
const BUILDERS: usize = 20;
/// The builds stored when the pages are measured: the real ones and their copies.
const STORED: usize = 100_000;
/// The core the master runs on; `wrk` and Chromium run on the others.
const MASTER_CORE: usize = 0;
/// Builds whose end is watched in an open waterfall.
const WATCHED: usize = 5;
const WAIT: Duration = Duration::from_secs(300);

const CONFIG: &str = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local", { max_builds = 8 }) }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{ name = "compile", command = { "echo", "compiled" } })
f:addStep(steps.ShellCommand{ name = "test", command = { "true" } })
local names = {}
for n = 1, 20 do
  local name = string.format("b%02d", n)
  names[#names + 1] = name
  c['builders']:append(util.BuilderConfig{ name = name, workernames = { "local" }, factory = f,
    tags = { "bench" }, collapseRequests = false })
end
c['schedulers'] = {
  schedulers.SingleBranchScheduler{ name = "main", change_filter = util.ChangeFilter{ branch = "main" }, builderNames = names },
}
c['status'] = { status.WebStatus{ http_port = "tcp:0:interface=127.0.0.1" } }
"#;

/// The pages measured, each under load from `wrk`.
const PAGES: &[&str] = &[
    "/",
    "/waterfall",
    "/builders",
    "/builders/b01",
    "/console",
    "/one_line_per_build",
    "/grid",
    "/builders/b01/builds/4000",
];

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    pin_to_core(MASTER_CORE)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

/// Pins this thread, and so every thread it starts (the runtime's, SQLite's), to one core.
fn pin_to_core(core: usize) -> anyhow::Result<()> {
    // SAFETY: the set is a plain bit mask, zeroed then written by CPU_SET.
    let result = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    anyhow::ensure!(
        result == 0,
        "cannot pin the master to core {core}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// The cores other than the master's, as `taskset` reads them. (The process's own
/// parallelism counts only the core it is pinned to.)
fn other_cores() -> String {
    // SAFETY: sysconf only reads a system value.
    let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    let others: Vec<String> = (0..cores)
        .filter(|c| *c != MASTER_CORE)
        .map(|c| c.to_string())
        .collect();
    if others.is_empty() {
        MASTER_CORE.to_string()
    } else {
        others.join(",")
    }
}

async fn run() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    println!("moonbot pages benchmark (release, master pinned to core {MASTER_CORE})");
    let master = start(scratch.path()).await?;
    let real = CHANGES * BUILDERS;
    let begin = Instant::now();
    for n in 0..CHANGES {
        submit_change(&master, n).await?;
    }
    wait_for_builds(&master.context.db.pool, real).await?;
    println!(
        "  ({real} real builds of {CHANGES} changes on {BUILDERS} builders run in {:.2} s)",
        begin.elapsed().as_secs_f64()
    );
    let begin = Instant::now();
    let copies = STORED / real - 1;
    multiply_history(&master.context.db.pool, copies).await?;
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM builds")
        .fetch_one(&master.context.db.pool)
        .await?;
    println!(
        "  (copied into {stored} builds, {copies} copies of the real ones, in {:.2} s)",
        begin.elapsed().as_secs_f64()
    );
    let address = master.web_address.expect("the config has a WebStatus");
    let cores = other_cores();
    // `BENCH_PAGES=/console,/waterfall` loads only those pages and leaves the browser out:
    // for profiling one page (`perf record -p PID` while it is loaded).
    let only = std::env::var("BENCH_PAGES").ok();
    let pages: Vec<&str> = match &only {
        Some(list) => list.split(',').collect(),
        None => PAGES.to_vec(),
    };
    for path in pages {
        let url = format!("http://{address}{path}");
        let cpu = builds::cpu_seconds();
        let load = wrk_pinned(&url, &cores, 32)?;
        let cpu = builds::cpu_seconds() - cpu;
        // wrk runs for 10 s: the pages it counts are its rate times that.
        let per_page = cpu / (load.requests_per_second * 10.0) * 1000.0;
        println!(
            "page {path}, `{}`, {stored} builds stored: {:.0} pages/s, p50 {}, p99 {}{}; \
             {per_page:.2} ms of the master's CPU a page",
            load.command, load.requests_per_second, load.p50, load.p99, load.errors
        );
        let alone = wrk_pinned(&url, &cores, 1)?;
        println!(
            "page {path}, `{}` (one request at a time): p50 {}, p99 {}{}",
            alone.command, alone.p50, alone.p99, alone.errors
        );
    }
    if only.is_some() {
        master.context.shutdown.cancel();
        return master.wait().await;
    }
    let seen = watch_builds_end(&master, &format!("http://{address}/waterfall")).await?;
    println!(
        "build end to its colour in an open /waterfall (headless Chromium, {WATCHED} builds): {}",
        seen.iter()
            .map(|s| format!("{:.0} ms", s.colour))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for s in &seen {
        let fetches: Vec<String> = s
            .fetches
            .iter()
            .map(|(start, end)| format!("{start:.0}..{end:.0}"))
            .collect();
        println!(
            "  on the bus at {:.1} ms, green at {:.0} ms by {}; the page's fetches (ms): [{}]",
            s.bus,
            s.colour,
            s.by,
            fetches.join(", ")
        );
    }
    master.context.shutdown.cancel();
    master.wait().await
}

async fn start(dir: &Path) -> anyhow::Result<Master> {
    std::fs::write(dir.join("master.cfg.lua"), CONFIG)?;
    Master::start(dir, CancellationToken::new()).await
}

async fn submit_change(master: &Master, n: usize) -> anyhow::Result<()> {
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
    Ok(())
}

/// Waits until `count` builds have finished.
async fn wait_for_builds(pool: &Pool, count: usize) -> anyhow::Result<()> {
    tokio::time::timeout(WAIT, async {
        loop {
            let done: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM builds WHERE complete_at IS NOT NULL")
                    .fetch_one(pool)
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

/// Copies the stored history `copies` times, in one transaction. The real builds move back
/// in time by `copies` times the span they took, and copy `k` is `k` spans later, so that
/// the last copy ends when the real builds did and ids grow with time, as they do in a
/// master's own history. Each copy has its own ids (the table's largest id times `k` added),
/// build numbers (the largest number times `k` added) and revisions (the copy's number in
/// the first 8 hex digits), so it reads as builds of other changes.
async fn multiply_history(pool: &Pool, copies: usize) -> anyhow::Result<()> {
    let max = |table: &str, column: &str| {
        let sql = format!("SELECT COALESCE(MAX({column}), 0) FROM {table}");
        async move { sqlx::query_scalar::<_, i64>(&sql).fetch_one(pool).await }
    };
    let (changes, stamps, sets) = (
        max("changes", "changeid").await?,
        max("sourcestamps", "id").await?,
        max("buildsets", "id").await?,
    );
    let (requests, builds, number) = (
        max("buildrequests", "id").await?,
        max("builds", "id").await?,
        max("builds", "number").await?,
    );
    let (steps, logs) = (max("steps", "id").await?, max("logs", "id").await?);
    let first: f64 = sqlx::query_scalar("SELECT MIN(when_timestamp) FROM changes")
        .fetch_one(pool)
        .await?;
    let last: f64 = sqlx::query_scalar("SELECT MAX(complete_at) FROM builds")
        .fetch_one(pool)
        .await?;
    let span = (last - first).ceil() + 1.0;
    let back = span * copies as f64;
    let revision = |column: &str| format!("printf('%08x', g.k) || substr({column}, 9)");
    let copy = "WITH RECURSIVE g(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM g WHERE k < $1) ";
    let shift = [
        "UPDATE changes SET when_timestamp = when_timestamp - $1",
        "UPDATE sourcestamps SET created_at = created_at - $1",
        "UPDATE buildsets SET submitted_at = submitted_at - $1, complete_at = complete_at - $1",
        "UPDATE buildrequests SET submitted_at = submitted_at - $1, \
         claimed_at = claimed_at - $1, complete_at = complete_at - $1",
        "UPDATE builds SET started_at = started_at - $1, complete_at = complete_at - $1",
        "UPDATE steps SET started_at = started_at - $1, complete_at = complete_at - $1",
    ];
    let inserts = [
        format!(
            "INSERT INTO changes SELECT changeid + g.k * {changes}, author, committer, comments, \
             branch, {rev}, revlink, when_timestamp + g.k * {span}, category, repository, \
             codebase, project, files, properties, sourcestampid + g.k * {stamps}, \
             parent_changeid + g.k * {changes} FROM changes, g",
            rev = revision("revision"),
        ),
        format!(
            "INSERT INTO sourcestamps SELECT id + g.k * {stamps}, branch, {rev}, repository, \
             codebase, project, patchid, created_at + g.k * {span} FROM sourcestamps, g",
            rev = revision("revision"),
        ),
        format!(
            "INSERT INTO buildsets SELECT id + g.k * {sets}, external_idstring, reason, \
             submitted_at + g.k * {span}, complete, complete_at + g.k * {span}, results, \
             parent_buildid + g.k * {builds}, parent_relationship, scheduler FROM buildsets, g"
        ),
        format!(
            "INSERT INTO buildset_properties SELECT buildsetid + g.k * {sets}, name, value, \
             source FROM buildset_properties, g"
        ),
        format!(
            "INSERT INTO buildset_sourcestamps SELECT buildsetid + g.k * {sets}, \
             sourcestampid + g.k * {stamps} FROM buildset_sourcestamps, g"
        ),
        format!(
            "INSERT INTO buildrequests SELECT id + g.k * {requests}, buildsetid + g.k * {sets}, \
             builderid, priority, complete, results, submitted_at + g.k * {span}, \
             complete_at + g.k * {span}, waited_for, claimed_by_masterid, \
             claimed_at + g.k * {span} FROM buildrequests, g"
        ),
        format!(
            "INSERT INTO builds SELECT id + g.k * {builds}, number + g.k * {number}, builderid, \
             buildrequestid + g.k * {requests}, workerid, masterid, started_at + g.k * {span}, \
             complete_at + g.k * {span}, locks_duration_s, state_string, results FROM builds, g"
        ),
        format!(
            "INSERT INTO build_properties SELECT buildid + g.k * {builds}, name, \
             CASE name WHEN 'buildnumber' THEN CAST(CAST(value AS INTEGER) + g.k * {number} AS TEXT) \
             WHEN 'revision' THEN '\"' || {rev} ELSE value END, source \
             FROM build_properties, g",
            rev = revision("substr(value, 2)"),
        ),
        format!(
            "INSERT INTO steps SELECT id + g.k * {steps}, number, name, buildid + g.k * {builds}, \
             started_at + g.k * {span}, complete_at + g.k * {span}, state_string, results, \
             urls, hidden FROM steps, g"
        ),
        format!(
            "INSERT INTO logs SELECT id + g.k * {logs}, name, slug, stepid + g.k * {steps}, \
             complete, num_lines, type FROM logs, g"
        ),
        format!(
            "INSERT INTO logchunks SELECT logid + g.k * {logs}, first_line, last_line, content, \
             compressed FROM logchunks, g"
        ),
    ];
    let mut transaction = Transaction::begin(pool.acquire().await?, "BEGIN IMMEDIATE").await?;
    for sql in shift {
        sqlx::query(sql)
            .bind(back)
            .execute(&mut *transaction)
            .await?;
    }
    for sql in inserts {
        sqlx::query(&format!("{copy}{sql}"))
            .bind(copies as i64)
            .execute(&mut *transaction)
            .await?;
    }
    transaction.commit().await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}

/// One watched build's end, in milliseconds after `complete_at` was stored (the time the
/// build's row was written, which precedes its commit).
struct Seen {
    /// On the master's bus (`builds/N/finished`), as a subscriber in the master's process
    /// sees it.
    bus: f64,
    /// Green in the page.
    colour: f64,
    /// Whether the page turned it green from the event (`recolour`) or from a page it fetched.
    by: String,
    /// The fetches of the page under way from 300 ms before the end: start and end.
    fetches: Vec<(f64, f64)>,
}

/// Opens `/waterfall` in headless Chromium, then submits a change `WATCHED` times and
/// measures, for builder b01's build of it, the time from its end (`complete_at` in
/// storage) to the page showing it green (a MutationObserver in the page notes the time,
/// and whether a class changed or a fetched page replaced the link), with the time the
/// master's bus carried the end and the page's fetches around it. Both clocks are this
/// machine's.
async fn watch_builds_end(master: &Master, url: &str) -> anyhow::Result<Vec<Seen>> {
    let (_driver, client, _profile) = browser().await?;
    client.goto(url).await?;
    let pool = &master.context.db.pool;
    let builderid: i64 = sqlx::query_scalar("SELECT id FROM builders WHERE name = 'b01'")
        .fetch_one(pool)
        .await?;
    let mut seen = Vec::new();
    for n in 0..WATCHED {
        let number: i64 =
            sqlx::query_scalar("SELECT MAX(number) + 1 FROM builds WHERE builderid = $1")
                .bind(builderid)
                .fetch_one(pool)
                .await?;
        let selector = format!("a.result.success[href='/builders/b01/builds/{number}']");
        client
            .execute(
                "window.turnedAt = null; window.turnedBy = null; var selector = arguments[0];
                 performance.clearResourceTimings();
                 new MutationObserver(function (records, observer) {
                   var link = document.querySelector(selector);
                   if (!link) return;
                   window.turnedAt = Date.now();
                   window.turnedBy = records.some(function (r) {
                     return r.type === 'attributes' && r.target === link;
                   }) ? 'recolour' : 'fetch';
                   observer.disconnect();
                 }).observe(document.body, { childList: true, subtree: true, attributes: true, attributeFilter: ['class'] });",
                vec![json!(selector)],
            )
            .await?;
        let mut bus = master.context.bus.subscribe();
        let on_bus = tokio::spawn(async move {
            while let Ok(event) = bus.recv().await {
                if event.key.ends_with("/finished")
                    && event.key.starts_with("builds/")
                    && event.message["builderid"] == builderid
                    && event.message["number"] == number
                {
                    return Some(epoch_ms());
                }
            }
            None
        });
        submit_change(master, CHANGES + n).await?;
        client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(&selector))
            .await?;
        let page = client
            .execute(
                "return [window.turnedAt, window.turnedBy,
                   performance.getEntriesByType('resource')
                     .filter(function (e) { return e.initiatorType === 'fetch'; })
                     .map(function (e) { return [performance.timeOrigin + e.startTime, performance.timeOrigin + e.responseEnd]; })];",
                vec![],
            )
            .await?;
        let turned = page[0]
            .as_f64()
            .ok_or_else(|| anyhow::anyhow!("the page turned green before it was watched"))?;
        let ended: f64 = sqlx::query_scalar(
            "SELECT complete_at FROM builds WHERE builderid = $1 AND number = $2",
        )
        .bind(builderid)
        .bind(number)
        .fetch_one(pool)
        .await?;
        let ended = ended * 1000.0;
        let bus = tokio::time::timeout(Duration::from_secs(5), on_bus)
            .await??
            .ok_or_else(|| anyhow::anyhow!("the bus closed before build {number} ended"))?;
        let fetches = page[2]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| Some((f[0].as_f64()? - ended, f[1].as_f64()? - ended)))
            .filter(|(_, end)| *end > -300.0)
            .collect();
        seen.push(Seen {
            bus: bus - ended,
            colour: turned - ended,
            by: page[1].as_str().unwrap_or("?").to_string(),
            fetches,
        });
        // The other builders' builds of the change end before the next one is watched.
        wait_for_builds(pool, STORED + (n + 1) * BUILDERS).await?;
    }
    client.close().await?;
    Ok(seen)
}

/// Now, in milliseconds since the epoch.
fn epoch_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |t| t.as_secs_f64() * 1000.0)
}

/// Flags Chromium needs to run headless as root in a container, with nothing of its own
/// talking to the network.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// A Chromium session through a chromedriver of its own on the cores the master does not
/// use; both live as long as the first value.
async fn browser() -> anyhow::Result<(tokio::process::Child, fantoccini::Client, tempfile::TempDir)>
{
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let driver = tokio::process::Command::new("taskset")
        .args([
            "-c",
            &other_cores(),
            "chromedriver",
            &format!("--port={port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut ready = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::ensure!(ready, "chromedriver does not listen on {port}");
    let profile = tempfile::tempdir()?;
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": "/usr/bin/chromium", "args": args }),
    );
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let client = ClientBuilder::rustls()?
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await?;
    Ok((driver, client, profile))
}
