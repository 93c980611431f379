//! Load from `wrk` in its own process, shared by the benches that measure HTTP: its
//! requests per second and latency percentiles, and the command that produced them.

use std::process::Command;

/// What `wrk` reported for one run.
pub struct Load {
    pub command: String,
    pub requests_per_second: f64,
    pub p50: String,
    pub p99: String,
    /// Empty, or wrk's complaint about failed or non-2xx responses.
    pub errors: String,
}

/// Runs wrk from its own process: 2 threads, 32 connections, 10 s, with the latency
/// distribution; `accept` sets the Accept header (none gets indented text, as curl does).
#[allow(dead_code)]
pub fn wrk(url: &str, accept: Option<&str>) -> anyhow::Result<Load> {
    run("wrk", Vec::new(), url, accept, 32)
}

/// [`wrk`] with `connections` connections (one thread when there is one), run by `taskset`
/// on `cores` (a list such as `1,2`), away from a master pinned to another core.
#[allow(dead_code)]
pub fn wrk_pinned(url: &str, cores: &str, connections: usize) -> anyhow::Result<Load> {
    let prefix = vec!["-c".into(), cores.into(), "wrk".into()];
    run("taskset", prefix, url, None, connections)
}

fn run(
    program: &str,
    mut args: Vec<String>,
    url: &str,
    accept: Option<&str>,
    connections: usize,
) -> anyhow::Result<Load> {
    args.extend([
        format!("-t{}", connections.min(2)),
        format!("-c{connections}"),
        "-d10s".into(),
        "--latency".into(),
    ]);
    if let Some(accept) = accept {
        args.extend(["-H".into(), format!("Accept: {accept}")]);
    }
    args.push(url.into());
    let command = format!(
        "{program} {}",
        args.iter()
            .map(|arg| if arg.contains(' ') {
                format!("'{arg}'")
            } else {
                arg.clone()
            })
            .collect::<Vec<_>>()
            .join(" ")
    );
    let output = Command::new(program)
        .args(&args)
        .output()
        .map_err(|error| anyhow::anyhow!("cannot run wrk (scripts/bench installs it): {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(output.status.success(), "{command} failed: {text}");
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(|rest| rest.trim().to_string())
            .ok_or_else(|| anyhow::anyhow!("no '{prefix}' in wrk's output:\n{text}"))
    };
    let requests_per_second = field("Requests/sec:")?.parse()?;
    let errors = text
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("Non-2xx") || line.starts_with("Socket errors"))
        .map(|line| format!(" [{line}]"))
        .collect();
    Ok(Load {
        p50: field("50%")?,
        p99: field("99%")?,
        command,
        requests_per_second,
        errors,
    })
}
