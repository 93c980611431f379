//! Config and script-host costs, printed as figures (run by `scripts/bench`):
//! checkconfig of the sample and of a generated 500-builder config, and one messageFormatter
//! call through the script host.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moonbot::config::load_source;
use moonbot::config::status::StatusTarget;
use moonbot::model::{
    BuildInfo, BuildResult, BuilderInfo, Change, LogInfo, LogSource, MasterInfo, SourceStamp,
    StepInfo,
};
use moonbot::script::{Arg, HostLimits, ScriptHost};

/// Runs `f` `runs` times after one warm-up; returns the median time.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

/// A config with `n` builders, each with three steps, one scheduler per ten builders, and a
/// MailNotifier.
fn generated_config(n: usize) -> String {
    let mut lua = String::from("local c = BuildmasterConfig\nc['workers']:append(worker.LocalWorker('local', {max_builds=4}))\n");
    for i in 0..n {
        lua.push_str(&format!(
            "do local f = util.BuildFactory()\n\
             f:addStep(steps.Git{{repourl='https://example.org/r{i}.git', mode='incremental'}})\n\
             f:addStep(steps.ShellCommand{{command={{'make', util.Interpolate('-j%(prop:jobs:-2)s')}}, haltOnFailure=true}})\n\
             f:addStep(steps.ShellCommand{{name='test', command='make test'}})\n\
             c['builders']:append(util.BuilderConfig{{name='b{i}', workernames={{'local'}}, factory=f, tags={{'t{}'}}}}) end\n",
            i % 7
        ));
    }
    for s in 0..n.div_ceil(10) {
        let names: Vec<String> = (s * 10..(s * 10 + 10).min(n))
            .map(|i| format!("'b{i}'"))
            .collect();
        lua.push_str(&format!(
            "c['schedulers']:append(schedulers.SingleBranchScheduler{{name='s{s}', branch='main', builderNames={{{}}}}})\n",
            names.join(",")
        ));
    }
    lua.push_str(
        "c['status']:append(status.MailNotifier{fromaddr='ci@example.org', mode={'problem'}})\n",
    );
    lua
}

struct Text(String);

impl LogSource for Text {
    fn text(&self) -> anyhow::Result<String> {
        Ok(self.0.clone())
    }
}

/// A finished, failed build of three steps with a 200-line stdio log on the last one.
fn failed_build() -> Arc<BuildInfo> {
    let log = |name: &str, lines: usize| LogInfo {
        name: name.into(),
        finished: true,
        source: Arc::new(Text(
            (0..lines)
                .map(|i| format!("line {i} of output\n"))
                .collect(),
        )),
    };
    let step = |name: &str, results, lines| StepInfo {
        name: name.into(),
        results: Some(results),
        text: vec![name.into()],
        started_at: Some(1.0),
        complete_at: Some(2.0),
        logs: vec![log("stdio", lines)],
    };
    Arc::new(BuildInfo {
        builder: BuilderInfo {
            id: 1,
            name: "runtests".into(),
            tags: vec![],
        },
        number: 7,
        reason: "a change".into(),
        results: Some(BuildResult::Failure),
        text: vec!["failed".into(), "test".into()],
        started_at: 1.0,
        complete_at: Some(3.0),
        worker_name: "local".into(),
        sourcestamps: vec![SourceStamp {
            branch: Some("main".into()),
            revision: Some("abc123".into()),
            repository: "https://example.org/hello.git".into(),
            changes: vec![Change {
                who: "alice".into(),
                comments: "fix".into(),
                files: vec!["a.c".into()],
                ..Default::default()
            }],
            ..Default::default()
        }],
        steps: vec![
            step("git", BuildResult::Success, 5),
            step("compile", BuildResult::Success, 20),
            step("test", BuildResult::Failure, 200),
        ],
        ..Default::default()
    })
}

/// The mean cost of one `messageFormatter` call of `example` through the script host.
fn formatter_call(root: &Path, example: &str, calls: u32) -> Duration {
    let source = std::fs::read_to_string(root.join("examples").join(example)).unwrap();
    let loaded = load_source(example, &source, root).unwrap();
    let formatter = loaded
        .config
        .status
        .iter()
        .find_map(|t| match t {
            StatusTarget::MailNotifier(mail) => mail.message_formatter.clone(),
            _ => None,
        })
        .unwrap();
    let host = ScriptHost::start(loaded.lua, HostLimits::default()).unwrap();
    let master = Arc::new(MasterInfo {
        title: "CI".into(),
        buildbot_url: "http://localhost:8010/".into(),
        builders: vec![BuilderInfo {
            id: 1,
            name: "runtests".into(),
            tags: vec![],
        }],
        ..Default::default()
    });
    let build = failed_build();
    let args = || {
        vec![
            Arg::from("failing"),
            Arg::from("runtests"),
            Arg::Build(build.clone()),
            Arg::from(BuildResult::Failure.code()),
            Arg::Master(master.clone()),
        ]
    };
    host.call::<serde_json::Value>(&formatter, args())
        .wait()
        .unwrap();
    let start = Instant::now();
    for _ in 0..calls {
        host.call::<serde_json::Value>(&formatter, args())
            .wait()
            .unwrap();
    }
    start.elapsed() / calls
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sample = std::fs::read_to_string(root.join("master.cfg.lua")).unwrap();
    let t = median(200, || {
        load_source("master.cfg.lua", &sample, root).unwrap();
    });
    println!(
        "checkconfig, sample master.cfg.lua:       {:>9.3} ms (median of 200)",
        t.as_secs_f64() * 1e3
    );

    let big = generated_config(500);
    let t = median(20, || {
        let loaded = load_source("master.cfg.lua", &big, root).unwrap();
        assert_eq!(loaded.config.builders.len(), 500);
    });
    println!(
        "checkconfig, 500 builders:                {:>9.3} ms (median of 20)",
        t.as_secs_f64() * 1e3
    );

    let t = formatter_call(root, "mail_short_formatter.lua", 20_000);
    println!(
        "messageFormatter call, short example:     {:>9.3} µs (mean of 20000)",
        t.as_secs_f64() * 1e6
    );
    let t = formatter_call(root, "mail_html_formatter.lua", 2_000);
    println!(
        "messageFormatter call, HTML example:      {:>9.3} µs (mean of 2000)",
        t.as_secs_f64() * 1e6
    );
}
