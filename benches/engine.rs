//! The running master's figures (issue 3), printed by `scripts/bench`: build throughput,
//! change-to-build latency, REST reads under a real load generator (`wrk`), start-up time
//! and resident memory. Each figure is printed with the workload that produced it.
//!
//! Memory is measured first, while the process is still fresh, because freed memory is
//! not always given back to the system and later figures would inflate it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use moonbot::db::{ChangeSpec, Db};

#[path = "support/smtp_sink.rs"]
mod smtp_sink;
#[path = "support/wrk.rs"]
mod wrk;
use moonbot::master::Master;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use wrk::wrk;

/// The longest any single wait may take before the benchmark gives up.
const WAIT: Duration = Duration::from_secs(120);
const FORCED_BUILDS: usize = 200;
const CHANGES: usize = 100;
const STORED_BUILDS: i64 = 10_000;
const STARTS: usize = 10;
/// Issue 19's workload, as it was run beside Laminar: builds spread over `JOBS` builders.
const JOB_BUILDS: usize = 200;
const JOBS: usize = 10;
const RECONFIGS: usize = 10;

/// The sample config's shape: a LocalWorker, a builder, two schedulers, WebStatus on port 0.
const SAMPLE_LIKE: &str = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local", { max_builds = 2 }) }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{ name = "hello", command = { "sh", "-c", util.Interpolate("echo build %(prop:buildnumber)s") }, haltOnFailure = true })
f:addStep(steps.ShellCommand{ name = "test", command = "uname -a && ls -la" })
c['builders'] = { util.BuilderConfig{ name = "runtests", workernames = { "local" }, factory = f } }
c['schedulers'] = {
  schedulers.SingleBranchScheduler{ name = "all", change_filter = util.ChangeFilter{ branch = "main" }, builderNames = { "runtests" } },
  schedulers.ForceScheduler{ name = "force", builderNames = { "runtests" } },
}
c['status'] = { status.WebStatus{ http_port = "tcp:0:interface=127.0.0.1", authz = util.Authz{ default_action = true } } }
"#;

/// Two trivial steps on a LocalWorker with room for four builds; no request collapses.
const TRIVIAL: &str = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local", { max_builds = 4 }) }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{ name = "one", command = { "true" } })
f:addStep(steps.ShellCommand{ name = "two", command = { "true" } })
c['builders'] = { util.BuilderConfig{ name = "b", workernames = { "local" }, factory = f, collapseRequests = false } }
c['schedulers'] = {
  schedulers.ForceScheduler{ name = "force", builderNames = { "b" } },
  schedulers.SingleBranchScheduler{ name = "main", change_filter = util.ChangeFilter{ branch = "main" }, builderNames = { "b" } },
}
"#;

fn main() -> anyhow::Result<()> {
    // The master's warnings explain a failed build; RUST_LOG shows more.
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
    println!("moonbot engine benchmark (release, {} cores)", cores());
    // `cargo bench --bench engine -- jobs` measures issue 19's figures alone.
    if std::env::args().skip(1).any(|arg| arg == "jobs") {
        return job_figures(scratch.path()).await;
    }
    // `cargo bench --bench engine -- daemon`: only the daemon's start-up and memory
    // (figures 4 and 5); with `MOONBOT_BENCH_KEEP` set, its base directory is kept and
    // named, to start the same master under a profiler.
    if std::env::args().skip(1).any(|arg| arg == "daemon") {
        let binary = moonbot_binary()
            .ok_or_else(|| anyhow::anyhow!("no `moonbot start --nodaemon` to measure"))?;
        let dir = scratch.path().join("process");
        process_figures(&binary, &dir).await?;
        if std::env::var_os("MOONBOT_BENCH_KEEP").is_some() {
            println!("  base directory kept: {}", dir.display());
            let _ = scratch.keep();
        }
        return Ok(());
    }
    // `cargo bench --bench engine -- --remote-only`: only the remote worker's throughput,
    // for working on that path without waiting for the other figures.
    if std::env::args().any(|arg| arg == "--remote-only") {
        anyhow::ensure!(
            Path::new(WORKER_VENV).join("bin/twistd").exists(),
            "no buildbot-worker in {WORKER_VENV}: scripts/test installs it"
        );
        let mut problems = Vec::new();
        let remote = scratch.path().join("remote");
        build_throughput(&remote, &mut problems, Some(free_port()?)).await?;
        return report_problems(&problems);
    }
    let binary = moonbot_binary();

    let sample = scratch.path().join("sample");
    start_up_and_memory(&sample).await?;
    rest_reads(&sample).await?;
    match &binary {
        Some(binary) => process_figures(binary, &scratch.path().join("process")).await?,
        None => println!(
            "  (no `moonbot start --nodaemon` in target/release/moonbot yet: start-up and memory \
             are measured in-process only)"
        ),
    }
    if let Some(binary) = &binary {
        reconfig_latency(binary, &scratch.path().join("reconfig")).await?;
    }
    let trivial = scratch.path().join("trivial");
    let mut problems = Vec::new();
    build_throughput(&trivial, &mut problems, None).await?;
    change_latency(&trivial).await?;
    if Path::new(WORKER_VENV).join("bin/twistd").exists() {
        let remote = scratch.path().join("remote");
        build_throughput(&remote, &mut problems, Some(free_port()?)).await?;
    } else {
        println!("  (no buildbot-worker in {WORKER_VENV}: scripts/test installs it; the remote-worker figure is skipped)");
    }
    report_problems(&problems)?;
    job_figures(scratch.path()).await
}

/// Prints why figures are not valid, and fails the bench if any is not.
fn report_problems(problems: &[String]) -> anyhow::Result<()> {
    for problem in problems {
        println!("INVALID: {problem}");
    }
    anyhow::ensure!(
        problems.is_empty(),
        "some figures are not valid (see above)"
    );
    Ok(())
}

/// Issue 19's figures: the master as its own process, without and with mail. The
/// master is this build's `moonbot`, or `MOONBOT_BENCH_BINARY` (another commit's, or a
/// wrapper that runs it under a profiler) to compare.
async fn job_figures(scratch: &Path) -> anyhow::Result<()> {
    let binary = std::env::var_os("MOONBOT_BENCH_BINARY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_moonbot")),
        PathBuf::from,
    );
    jobs_throughput(&binary, &scratch.join("jobs"), None).await?;
    let sink = smtp_sink::Sink::start().await?;
    jobs_throughput(&binary, &scratch.join("jobs-mailed"), Some(&sink)).await
}

/// `JOBS` builders of two steps, `true` and `echo hello`, on a LocalWorker running four
/// builds at once; with `sink`, a MailNotifier whose Lua formatter writes every build's
/// mail, to that SMTP server.
fn jobs_config(web_port: u16, sink: Option<&smtp_sink::Sink>) -> String {
    let mut config = format!(
        r#"
local c = BuildmasterConfig
c['workers'] = {{ worker.LocalWorker("local", {{ max_builds = 4 }}) }}
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{{ name = "true", command = {{ "true" }} }})
f:addStep(steps.ShellCommand{{ name = "hello", command = {{ "echo", "hello" }} }})
local names, builders = {{}}, {{}}
for n = 1, {JOBS} do
  names[n] = "job" .. n
  builders[n] = util.BuilderConfig{{ name = names[n], workernames = {{ "local" }}, factory = f, collapseRequests = false }}
end
c['builders'] = builders
c['schedulers'] = {{ schedulers.ForceScheduler{{ name = "force", builderNames = names }} }}
c['status'] = {{ status.WebStatus{{ http_port = "tcp:{web_port}:interface=127.0.0.1", authz = util.Authz{{ default_action = true }} }} }}
"#
    );
    if let Some(sink) = sink {
        config.push_str(&format!(
            r#"
local function formatter(mode, name, build, results, master_status)
  local result = util.Results[results]
  return {{ type = "plain", subject = ("%s #%d: %s"):format(name, build:getNumber(), result),
           body = ("Build %d of %s on %s: %s\n"):format(build:getNumber(), name, build:getSlavename(), result) }}
end
c['status']:append(status.MailNotifier{{ fromaddr = "ci@example.org", extraRecipients = {{ "dev@example.org" }},
  sendToInterestedUsers = false, mode = "all", relayhost = "127.0.0.1", smtpPort = {},
  messageFormatter = formatter }})
"#,
            sink.port
        ));
    }
    config
}

/// Issue 19's figures 1 and 2: `JOB_BUILDS` builds forced over one HTTP connection to
/// `moonbot start --nodaemon`, from the first force to the last buildset complete (and
/// with `sink`, the last mail accepted); the master's own CPU and its reaped children's
/// from `/proc/PID/stat`. Completion is read from the SQLite file, which costs the master
/// nothing.
async fn jobs_throughput(
    binary: &Path,
    dir: &Path,
    sink: Option<&smtp_sink::Sink>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    std::fs::write(dir.join("master.cfg.lua"), jobs_config(port, sink))?;
    let (child, _) = spawn_until_answering(binary, dir, port).await?;
    let measured = measure_jobs(child.id(), dir, port, sink).await;
    terminate(child)?;
    std::fs::remove_dir_all(dir)?;
    measured
}

/// The throughput phase of [`jobs_throughput`] against the master `pid`.
async fn measure_jobs(
    pid: u32,
    dir: &Path,
    port: u16,
    sink: Option<&smtp_sink::Sink>,
) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let database = sqlx::AnyPool::connect(&format!(
        "sqlite://{}?mode=ro",
        dir.join("state.sqlite").display()
    ))
    .await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let url = format!("http://127.0.0.1:{port}/api/v2/forceschedulers/force");
    let before = ProcessCpu::read(pid)?;
    let begin = Instant::now();
    for n in 0..JOB_BUILDS {
        let call = serde_json::json!({"jsonrpc": "2.0", "method": "force", "id": n,
            "params": {"builderNames": [format!("job{}", n % JOBS + 1)], "username": "bench <bench@example.org>"}});
        let answer = http.post(&url).json(&call).send().await?;
        anyhow::ensure!(
            answer.status().is_success(),
            "force answered {}",
            answer.status()
        );
    }
    loop {
        let complete: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM buildsets WHERE complete = 1")
            .fetch_one(&database)
            .await?;
        if complete == JOB_BUILDS as i64 {
            break;
        }
        anyhow::ensure!(
            begin.elapsed() < WAIT,
            "only {complete} of {JOB_BUILDS} builds finished"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if let Some(sink) = sink {
        sink.wait_for(JOB_BUILDS).await?;
    }
    let elapsed = begin.elapsed().as_secs_f64();
    let after = ProcessCpu::read(pid)?;
    let succeeded: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM builds WHERE results = 0 AND          (SELECT COUNT(*) FROM steps WHERE steps.buildid = builds.id AND results = 0) = 2",
    )
    .fetch_one(&database)
    .await?;
    let mut lost = Vec::new();
    if succeeded != JOB_BUILDS as i64 {
        lost.push(format!(
            "{succeeded} of {JOB_BUILDS} builds stored with both steps successful"
        ));
    }
    if sink.is_some() {
        let sent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE state = 'sent'")
            .fetch_one(&database)
            .await?;
        if sent != JOB_BUILDS as i64 {
            lost.push(format!("{sent} of {JOB_BUILDS} mails marked sent"));
        }
    }
    database.close().await;
    let per_build = |seconds: f64| seconds * 1000.0 / JOB_BUILDS as f64;
    let mailed = if sink.is_some() {
        ", a MailNotifier (Lua messageFormatter, mode all) mailing each to an SMTP sink on loopback"
    } else {
        ""
    };
    println!(
        "jobs: {JOB_BUILDS} builds forced over one HTTP connection to `moonbot start --nodaemon`, \
         {JOBS} builders of `true` and `echo hello` on a LocalWorker with max_builds=4, SQLite{mailed}: \
         {:.1} builds/s ({elapsed:.2} s); master CPU per build (utime+stime) {:.2} ms; \
         master plus reaped children {:.2} ms; the master's thread switches per build {:.0}",
        JOB_BUILDS as f64 / elapsed,
        per_build(after.own - before.own),
        per_build(after.own + after.children - before.own - before.children),
        (after.switches - before.switches) as f64 / JOB_BUILDS as f64,
    );
    anyhow::ensure!(
        lost.is_empty(),
        "the jobs figure is not valid: {}",
        lost.join("; ")
    );
    Ok(())
}

/// CPU seconds of another process, from `/proc/PID/stat`: its own (utime+stime) and its
/// children's that it reaped (cutime+cstime); and how often its threads were switched out
/// (each wake-up of a thread that had nothing to do costs one), summed over the threads
/// alive at the time.
struct ProcessCpu {
    own: f64,
    children: f64,
    switches: u64,
}

impl ProcessCpu {
    fn read(pid: u32) -> anyhow::Result<ProcessCpu> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The fields after the command name, which is in parentheses and may hold spaces;
        // the 14th to 17th fields of stat(5) are the 12th to 15th here.
        let rest = stat
            .rsplit_once(')')
            .ok_or_else(|| anyhow::anyhow!("no command name in /proc/{pid}/stat"))?
            .1;
        let ticks: Vec<f64> = rest
            .split_whitespace()
            .skip(11)
            .take(4)
            .map(|field| field.parse().unwrap_or_default())
            .collect();
        anyhow::ensure!(ticks.len() == 4, "short /proc/{pid}/stat");
        // SAFETY: sysconf only reads a constant of the system.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let mut switches = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            // A thread may end between the listing and the read.
            let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
                continue;
            };
            switches += status
                .lines()
                .filter(|line| line.contains("ctxt_switches:"))
                .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
        Ok(ProcessCpu {
            own: (ticks[0] + ticks[1]) / per_second,
            children: (ticks[2] + ticks[3]) / per_second,
            switches,
        })
    }
}

/// Issue 4's figure: SIGHUP to the outcome, on the sample-like config and on one with 500
/// builders, through the real binary (the outcome file is written with the log line).
async fn reconfig_latency(binary: &Path, dir: &Path) -> anyhow::Result<()> {
    let mut many = String::from(TRIVIAL);
    for n in 0..500 {
        many.push_str(&format!(
            "c['builders']:append(util.BuilderConfig{{ name = \"b{n}\", workernames = {{ \"local\" }}, factory = f }})\n"
        ));
    }
    for (name, config) in [
        ("sample-like config", SAMPLE_LIKE.to_string()),
        ("500 builders", many),
    ] {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        let config = config.replace("tcp:0:interface", &format!("tcp:{port}:interface"));
        let config = if config.contains("WebStatus") {
            config
        } else {
            format!("{config}\nc['status'] = {{ status.WebStatus{{ http_port = \"tcp:{port}:interface=127.0.0.1\", authz = util.Authz{{default_action = true}} }} }}\n")
        };
        std::fs::write(dir.join("master.cfg.lua"), &config)?;
        let (child, _) = spawn_until_answering(binary, dir, port).await?;
        let pid = libc::pid_t::try_from(child.id())?;
        let outcome_file = dir.join(moonbot::master::RECONFIG_FILE);
        let mut times = Vec::new();
        for round in 1..=RECONFIGS {
            // A changed file each time, as a user's edit.
            std::fs::write(
                dir.join("master.cfg.lua"),
                format!("{config}\n-- edit {round}\n"),
            )?;
            let begin = Instant::now();
            // SAFETY: kill(2) on our own child's pid; no memory is shared.
            unsafe { libc::kill(pid, libc::SIGHUP) };
            loop {
                let text = std::fs::read_to_string(&outcome_file).unwrap_or_default();
                let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if value["count"].as_u64() == Some(round as u64) {
                    anyhow::ensure!(value["ok"] == true, "reconfig failed: {value}");
                    break;
                }
                anyhow::ensure!(begin.elapsed() < WAIT, "no reconfig outcome");
                std::thread::sleep(Duration::from_micros(200));
            }
            times.push(begin.elapsed());
        }
        terminate(child)?;
        std::fs::remove_dir_all(dir)?;
        times.sort();
        println!(
            "reconfig latency, SIGHUP to outcome, `moonbot start --nodaemon` with the {name}, median of {RECONFIGS}: {:.1} ms (min {:.1}, max {:.1})",
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    }
    Ok(())
}

/// Figure 4 (in-process) and the idle half of figure 5.
async fn start_up_and_memory(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("master.cfg.lua"), SAMPLE_LIKE)?;
    // The first start creates the database; the timed ones find it.
    let master = Master::start(dir, CancellationToken::new()).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "resident memory, bench process with the sample-like master started and idle 1 s: {}",
        vm_rss("self")?
    );
    stop(master).await?;
    let mut times = Vec::new();
    for _ in 0..STARTS {
        let begin = Instant::now();
        let master = Master::start(dir, CancellationToken::new()).await?;
        times.push(begin.elapsed());
        stop(master).await?;
    }
    times.sort();
    println!(
        "start-up (Master::start, sample-like config, existing SQLite DB), median of {STARTS}: {:.1} ms (min {:.1}, max {:.1})",
        ms(times[STARTS / 2]),
        ms(times[0]),
        ms(times[STARTS - 1])
    );
    Ok(())
}

/// Figure 3 and the loaded half of figure 5.
async fn rest_reads(dir: &Path) -> anyhow::Result<()> {
    let master = Master::start(dir, CancellationToken::new()).await?;
    let begin = Instant::now();
    store_builds(&master.context.db, "runtests", STORED_BUILDS).await?;
    println!(
        "  (stored {STORED_BUILDS} builds with their buildsets, requests and properties in {:.2} s)",
        begin.elapsed().as_secs_f64()
    );
    let address = master.web_address.expect("the config has a WebStatus");
    let url = format!("http://{address}/api/v2/builds?limit=50");
    for accept in [None, Some("application/json")] {
        let load = wrk(&url, accept)?;
        println!(
            "REST reads, `{}` against the in-process master, {STORED_BUILDS} builds stored: {:.0} req/s, p50 {}, p99 {}{}",
            load.command, load.requests_per_second, load.p50, load.p99, load.errors
        );
    }
    println!(
        "resident memory, bench process after {STORED_BUILDS} builds stored and those wrk bursts: {}",
        vm_rss("self")?
    );
    stop(master).await
}

/// Builders in the daemon's config (issue 19's workload): the sample-like config's one and
/// as many more on the same factory.
const DAEMON_BUILDERS: usize = 20;
/// How long the daemon idles before its memory is read, as issue 19 measured Laminar.
const IDLE: Duration = Duration::from_secs(5);

/// Figures 4 and 5 for what users run: `moonbot start --nodaemon` as its own process, with
/// issue 19's workload: the sample-like config with 20 builders and 10,000 builds stored.
async fn process_figures(binary: &Path, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    let mut config = SAMPLE_LIKE.replace("tcp:0:", &format!("tcp:{port}:"));
    for n in 2..=DAEMON_BUILDERS {
        config.push_str(&format!(
            "c['builders']:append(util.BuilderConfig{{ name = \"runtests-{n}\", workernames = {{ \"local\" }}, factory = f }})\n"
        ));
    }
    std::fs::write(dir.join("master.cfg.lua"), config)?;
    // Create the database and the stored builds with an in-process master, then stop it
    // and close the database as the daemon does at its stop (SQLite checkpoints its log).
    let master = Master::start(dir, CancellationToken::new()).await?;
    store_builds(&master.context.db, "runtests", STORED_BUILDS).await?;
    let db = master.context.db.clone();
    stop(master).await?;
    db.close().await;

    let command = format!("{} start --nodaemon {}", binary.display(), dir.display());
    let mut times = Vec::new();
    for _ in 0..STARTS {
        let (child, elapsed) = spawn_until_answering(binary, dir, port).await?;
        times.push(elapsed);
        terminate(child)?;
    }
    times.sort();
    println!(
        "start-up, `{command}` until the REST API answers, {DAEMON_BUILDERS} builders, {STORED_BUILDS} builds stored, median of {STARTS}: {:.1} ms (min {:.1}, max {:.1})",
        ms(times[STARTS / 2]),
        ms(times[0]),
        ms(times[STARTS - 1])
    );
    let (child, _) = spawn_until_answering(binary, dir, port).await?;
    tokio::time::sleep(IDLE).await;
    let pid = child.id().to_string();
    let idle = vm_rss(&pid)?;
    let load = wrk(
        &format!("http://127.0.0.1:{port}/api/v2/builds?limit=50"),
        None,
    )?;
    let loaded = vm_rss(&pid)?;
    terminate(child)?;
    println!(
        "resident memory of `{command}`, {DAEMON_BUILDERS} builders, {STORED_BUILDS} builds stored: idle {} s after start {idle}; after `{}` ({:.0} req/s, p99 {}) {loaded}, {:.2} times idle",
        IDLE.as_secs(),
        load.command,
        load.requests_per_second,
        load.p99,
        loaded.total as f64 / idle.total as f64
    );
    Ok(())
}

/// Figure 1: forced builds finished per second, and the master's CPU per build.
/// A build that did not succeed is added to `problems`: the figure is then not valid.
/// With `remote_port`, the same on one real `buildbot-worker` over msgpack.
async fn build_throughput(
    dir: &Path,
    problems: &mut Vec<String>,
    remote_port: Option<u16>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    // A worker runs one build of a builder at a time: four builders fill its four slots.
    let builders = ["b", "b-2", "b-3", "b-4"];
    let mut config = TRIVIAL.replace(
        r#"name = "force", builderNames = { "b" }"#,
        r#"name = "force", builderNames = { "b", "b-2", "b-3", "b-4" }"#,
    );
    for name in &builders[1..] {
        config.push_str(&format!(
            "c['builders']:append(util.BuilderConfig{{ name = \"{name}\", workernames = {{ \"local\" }}, factory = f, collapseRequests = false }})\n"
        ));
    }
    if let Some(port) = remote_port {
        config = config.replace(
            r#"worker.LocalWorker("local", { max_builds = 4 })"#,
            r#"worker.Worker("local", "pw", { max_builds = 4 })"#,
        );
        config.push_str(&format!(
            "c['protocols'] = {{ msgpack_experimental_v7 = {{ port = 'tcp:{port}:interface=127.0.0.1' }} }}\n"
        ));
    }
    std::fs::write(dir.join("master.cfg.lua"), config)?;
    let master = Master::start(dir, CancellationToken::new()).await?;
    let ctx = &master.context;
    let worker = match remote_port {
        Some(port) => Some(start_real_worker(dir, port, ctx).await?),
        None => None,
    };
    let mut events = ctx.bus.subscribe();
    let worker_before = worker
        .as_ref()
        .map(|w| ProcessUsage::of(w.id()))
        .transpose()?;
    let self_before = rusage(libc::RUSAGE_SELF);
    let children_before = rusage(libc::RUSAGE_CHILDREN);
    let begin = Instant::now();
    let mut buildsets = std::collections::HashSet::new();
    for n in 0..FORCED_BUILDS {
        let params = serde_json::json!({"builderNames": [builders[n % builders.len()]],
                                        "username": "bench <bench@example.org>"});
        let params = params.as_object().expect("an object").clone();
        let (bsid, _) = ctx.control.force("force", params).await?;
        buildsets.insert(bsid);
    }
    let mut complete = 0;
    tokio::time::timeout(WAIT, async {
        while complete < FORCED_BUILDS {
            match events.recv().await {
                Ok(event) => {
                    let parts: Vec<&str> = event.parts().collect();
                    if let ["buildsets", id, "complete"] = parts[..] {
                        if id.parse().is_ok_and(|id: i64| buildsets.contains(&id)) {
                            complete += 1;
                        }
                    }
                }
                // Builds ran while the forces were still being sent: count from storage.
                Err(RecvError::Lagged(_)) => {
                    let ids: Vec<String> = buildsets.iter().map(i64::to_string).collect();
                    let sql = format!(
                        "SELECT COUNT(*) FROM buildsets WHERE complete = 1 AND id IN ({})",
                        ids.join(",")
                    );
                    let stored: i64 = sqlx::query_scalar(&sql).fetch_one(&ctx.db.pool).await?;
                    complete = stored as usize;
                }
                Err(RecvError::Closed) => anyhow::bail!("the bus closed"),
            }
        }
        anyhow::Ok(())
    })
    .await
    .map_err(|_| anyhow::anyhow!("only {complete} of {FORCED_BUILDS} builds finished"))??;
    let elapsed = begin.elapsed().as_secs_f64();
    let master_cpu = rusage(libc::RUSAGE_SELF) - self_before;
    let children_cpu = rusage(libc::RUSAGE_CHILDREN) - children_before;
    let worker_usage = match (&worker, worker_before) {
        (Some(w), Some(before)) => Some(ProcessUsage::of(w.id())?.since(&before)),
        _ => None,
    };
    let failed: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT b.state_string, COALESCE(GROUP_CONCAT(s.name || ': ' || s.state_string, '; '), ''), \
         COUNT(DISTINCT b.id) FROM builds b LEFT JOIN steps s ON s.buildid = b.id AND s.results != 0 \
         WHERE b.results != 0 GROUP BY b.state_string",
    )
    .fetch_all(&ctx.db.pool)
    .await?;
    if !failed.is_empty() {
        let count: i64 = failed.iter().map(|(_, _, n)| n).sum();
        problems.push(format!(
            "{count} of {FORCED_BUILDS} forced builds did not succeed (state, failed steps, count): {failed:?}"
        ));
    }
    let on = if remote_port.is_some() {
        "one real buildbot-worker 4.3 over msgpack on loopback"
    } else {
        "a LocalWorker"
    };
    println!(
        "build throughput, {FORCED_BUILDS} forced builds of two `true` steps, four builders on {on} with max_builds=4, collapseRequests=false, first force to last buildset complete: {:.1} builds/s ({elapsed:.2} s)",
        FORCED_BUILDS as f64 / elapsed
    );
    if remote_port.is_some() {
        println!(
            "master CPU per build (getrusage RUSAGE_SELF user+sys): {:.2} ms (the worker's own CPU is not counted)",
            master_cpu * 1000.0 / FORCED_BUILDS as f64,
        );
        if let Some(usage) = worker_usage {
            let per_build = |seconds: f64| seconds * 1000.0 / FORCED_BUILDS as f64;
            println!(
                "the worker (/proc/PID/stat, schedstat): {:.2} ms CPU per build in its own process and {:.2} ms in its commands (forked, then `true`); its process was on a CPU {:.0}% of the run and waited for one {:.0}%",
                per_build(usage.own_cpu),
                per_build(usage.children_cpu),
                usage.on_cpu * 100.0 / elapsed,
                usage.waiting * 100.0 / elapsed,
            );
        }
    } else {
        println!(
            "master CPU per build (getrusage RUSAGE_SELF user+sys): {:.2} ms; the step processes (RUSAGE_CHILDREN): {:.2} ms per build",
            master_cpu * 1000.0 / FORCED_BUILDS as f64,
            children_cpu * 1000.0 / FORCED_BUILDS as f64
        );
    }
    if let Some(worker) = worker {
        terminate(worker)?;
    }
    stop(master).await
}

/// Where `scripts/test` installs buildbot-worker 4.3.
const WORKER_VENV: &str = "/var/tmp/moonbot-worker-venv";

/// Creates and starts a real buildbot-worker named `local` for the master on `port`, and
/// waits until it is attached.
async fn start_real_worker(
    dir: &Path,
    port: u16,
    ctx: &moonbot::runtime::Context,
) -> anyhow::Result<std::process::Child> {
    let worker_dir = dir.join("remote-worker");
    let created = std::process::Command::new(format!("{WORKER_VENV}/bin/buildbot-worker"))
        .args(["create-worker", "--protocol", "msgpack_experimental_v7"])
        .arg(&worker_dir)
        .arg(format!("127.0.0.1:{port}"))
        .args(["local", "pw"])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(created.success(), "buildbot-worker create-worker failed");
    let worker = std::process::Command::new(format!("{WORKER_VENV}/bin/twistd"))
        .args([
            "--nodaemon",
            "--no_save",
            "--pidfile=",
            "--logfile=twistd.log",
            "-y",
            "buildbot.tac",
        ])
        .current_dir(&worker_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let attached = async {
        loop {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM workers WHERE connected_masterid IS NOT NULL",
            )
            .fetch_one(&ctx.db.pool)
            .await?;
            if n == 1 {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, attached)
        .await
        .map_err(|_| anyhow::anyhow!("the buildbot-worker did not attach"))??;
    Ok(worker)
}

/// Figure 2: from `changes::submit` to the build's `builds/N/new`, one change at a time.
async fn change_latency(dir: &Path) -> anyhow::Result<()> {
    let master = Master::start(dir, CancellationToken::new()).await?;
    let ctx = &master.context;
    let mut events = ctx.bus.subscribe();
    let mut latencies = Vec::new();
    for i in 0..CHANGES {
        let change = ChangeSpec {
            author: "bench".into(),
            branch: Some("main".into()),
            revision: Some(format!("{i:040x}")),
            ..Default::default()
        };
        let begin = Instant::now();
        moonbot::changes::submit(ctx, change).await?;
        wait_for(&mut events, |key| {
            key.starts_with("builds/") && key.ends_with("/new")
        })
        .await?;
        latencies.push(begin.elapsed());
        // The next change must not race this build's end.
        wait_for(&mut events, |key| {
            key.starts_with("buildsets/") && key.ends_with("/complete")
        })
        .await?;
    }
    latencies.sort();
    println!(
        "change to build start, {CHANGES} changes on main one at a time, SingleBranchScheduler without treeStableTimer, changes::submit to builds/N/new: median {:.2} ms, p99 {:.2} ms",
        ms(latencies[CHANGES / 2]),
        ms(latencies[CHANGES * 99 / 100])
    );
    stop(master).await
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

/// Inserts `count` finished builds of `builder`, each with its buildset (two properties,
/// a sourcestamp), build request and three build properties, in one transaction.
async fn store_builds(db: &Db, builder: &str, count: i64) -> anyhow::Result<()> {
    let builderid = db.builder_id(builder).await?;
    let workerid = db.worker_id("local").await?;
    let masterid: i64 = sqlx::query_scalar("SELECT id FROM masters ORDER BY id LIMIT 1")
        .fetch_one(&db.pool)
        .await?;
    let first: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) FROM builds WHERE builderid = $1")
            .bind(builderid)
            .fetch_one(&db.pool)
            .await?;
    let mut tx = db.begin_write().await?;
    let start = moonbot::db::now() - count as f64 * 10.0;
    for i in 0..count {
        let at = start + i as f64 * 10.0;
        let ssid: i64 = sqlx::query_scalar(
            "INSERT INTO sourcestamps (branch, revision, repository, codebase, project, created_at) \
             VALUES ('main', $1, 'https://example.org/hello.git', '', 'hello', $2) RETURNING id",
        )
        .bind(format!("{i:040x}"))
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        let bsid: i64 = sqlx::query_scalar(
            "INSERT INTO buildsets (reason, submitted_at, complete, complete_at, results, scheduler) \
             VALUES ('The SingleBranchScheduler scheduler named ''all'' triggered this build', $1, 1, $2, 0, 'all') RETURNING id",
        )
        .bind(at)
        .bind(at + 5.0)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO buildset_sourcestamps (buildsetid, sourcestampid) VALUES ($1, $2)",
        )
        .bind(bsid)
        .bind(ssid)
        .execute(&mut *tx)
        .await?;
        for (name, value) in [("scheduler", "\"all\""), ("reason", "\"a change\"")] {
            sqlx::query(
                "INSERT INTO buildset_properties (buildsetid, name, value, source) VALUES ($1, $2, $3, 'Scheduler')",
            )
            .bind(bsid)
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        }
        let brid: i64 = sqlx::query_scalar(
            "INSERT INTO buildrequests (buildsetid, builderid, complete, results, submitted_at, complete_at, claimed_by_masterid, claimed_at) \
             VALUES ($1, $2, 1, 0, $3, $4, $5, $3) RETURNING id",
        )
        .bind(bsid)
        .bind(builderid)
        .bind(at)
        .bind(at + 5.0)
        .bind(masterid)
        .fetch_one(&mut *tx)
        .await?;
        let number = first + i + 1;
        let buildid: i64 = sqlx::query_scalar(
            "INSERT INTO builds (number, builderid, buildrequestid, workerid, masterid, started_at, complete_at, state_string, results) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'build successful', 0) RETURNING id",
        )
        .bind(number)
        .bind(builderid)
        .bind(brid)
        .bind(workerid)
        .bind(masterid)
        .bind(at + 0.1)
        .bind(at + 5.0)
        .fetch_one(&mut *tx)
        .await?;
        let props = [
            ("buildername", format!("\"{builder}\""), "Builder"),
            ("buildnumber", number.to_string(), "Build"),
            ("workername", "\"local\"".to_string(), "Worker"),
        ];
        for (name, value, source) in props {
            sqlx::query(
                "INSERT INTO build_properties (buildid, name, value, source) VALUES ($1, $2, $3, $4)",
            )
            .bind(buildid)
            .bind(name)
            .bind(value)
            .bind(source)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Starts `moonbot start --nodaemon DIR` and returns it once `/api/v2/builders` answers,
/// with the time that took.
async fn spawn_until_answering(
    binary: &Path,
    dir: &Path,
    port: u16,
) -> anyhow::Result<(std::process::Child, Duration)> {
    // Made before the clock starts: on two cores, the client's set-up beside the start
    // would be counted as the master's.
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/v2/builders");
    let begin = Instant::now();
    let child = Command::new(binary)
        .args(["start", "--nodaemon"])
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .spawn()?;
    loop {
        if let Ok(answer) = http.get(&url).send().await {
            if answer.status().is_success() {
                return Ok((child, begin.elapsed()));
            }
        }
        anyhow::ensure!(
            begin.elapsed() < WAIT,
            "{} did not answer on {url}",
            binary.display()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// SIGTERM, then waits for the exit (the process's clean stop).
fn terminate(mut child: std::process::Child) -> anyhow::Result<()> {
    let pid = libc::pid_t::try_from(child.id())?;
    // SAFETY: kill(2) on our own child's pid; no memory is shared.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    child.wait()?;
    Ok(())
}

/// `MOONBOT_BENCH_BINARY`, or `target/release/moonbot` (under `CARGO_TARGET_DIR` when set,
/// as cargo builds it), if it has the `start` command (`start --help` succeeds).
fn moonbot_binary() -> Option<PathBuf> {
    let binary = std::env::var_os("MOONBOT_BENCH_BINARY").map_or_else(
        || {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
                .join("release/moonbot")
        },
        PathBuf::from,
    );
    let help = Command::new(&binary)
        .args(["start", "--help"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&help.stdout);
    (help.status.success() && text.contains("--nodaemon")).then_some(binary)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn stop(master: Master) -> anyhow::Result<()> {
    master.context.shutdown.cancel();
    master.wait().await
}

/// Resident memory of a process, from `/proc/PID/status` (`pid` may be "self").
struct Resident {
    total: u64,
    /// Heap and stacks: what the master allocates.
    anon: u64,
    /// Mapped files, mostly executable code; the bench binary's code is larger than
    /// `moonbot`'s (it also links the HTTP client and the bench).
    file: u64,
}

impl std::fmt::Display for Resident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} MiB (anonymous {:.1} MiB, file-backed {:.1} MiB)",
            mib(self.total),
            mib(self.anon),
            mib(self.file)
        )
    }
}

fn vm_rss(pid: &str) -> anyhow::Result<Resident> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
            .ok_or_else(|| anyhow::anyhow!("no {name} in /proc/{pid}/status"))
    };
    Ok(Resident {
        total: field("VmRSS:")?,
        anon: field("RssAnon:")?,
        file: field("RssFile:")? + field("RssShmem:")?,
    })
}

/// User plus system CPU seconds of `who` (RUSAGE_SELF or RUSAGE_CHILDREN).
fn rusage(who: libc::c_int) -> f64 {
    // SAFETY: getrusage fills the zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// What a process used, in seconds: CPU of its own and of its reaped children
/// (`/proc/PID/stat`), and the kernel's time on a CPU and waiting for one (`schedstat`).
/// The last one says whether a slow worker was busy or only starved by the machine's load.
struct ProcessUsage {
    own_cpu: f64,
    children_cpu: f64,
    on_cpu: f64,
    waiting: f64,
}

impl ProcessUsage {
    fn of(pid: u32) -> anyhow::Result<ProcessUsage> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The fields after the command's name, which is in parentheses and may hold spaces:
        // utime, stime, cutime and cstime are the 14th to 17th fields of the whole line.
        let fields: Vec<f64> = stat
            .rsplit_once(')')
            .ok_or_else(|| anyhow::anyhow!("/proc/{pid}/stat has no ')'"))?
            .1
            .split_whitespace()
            .map(|field| field.parse().unwrap_or(0.0))
            .collect();
        anyhow::ensure!(fields.len() > 14, "/proc/{pid}/stat is short");
        // SAFETY: sysconf reads a constant of the system.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let schedstat: Vec<f64> = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))?
            .split_whitespace()
            .map(|field| field.parse().unwrap_or(0.0))
            .collect();
        anyhow::ensure!(schedstat.len() >= 2, "/proc/{pid}/schedstat is short");
        Ok(ProcessUsage {
            own_cpu: (fields[11] + fields[12]) / ticks,
            children_cpu: (fields[13] + fields[14]) / ticks,
            on_cpu: schedstat[0] / 1e9,
            waiting: schedstat[1] / 1e9,
        })
    }

    fn since(&self, before: &ProcessUsage) -> ProcessUsage {
        ProcessUsage {
            own_cpu: self.own_cpu - before.own_cpu,
            children_cpu: self.children_cpu - before.children_cpu,
            on_cpu: self.on_cpu - before.on_cpu,
            waiting: self.waiting - before.waiting,
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
