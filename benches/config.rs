//! Config and script-host costs, printed as figures (run by `scripts/bench`):
//! checkconfig of the sample and of a generated 500-builder config.

use std::path::Path;
use std::time::{Duration, Instant};

use moonbot::config::load_source;

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
        let names: Vec<String> = (s * 10..(s * 10 + 10).min(n)).map(|i| format!("'b{i}'")).collect();
        lua.push_str(&format!(
            "c['schedulers']:append(schedulers.SingleBranchScheduler{{name='s{s}', branch='main', builderNames={{{}}}}})\n",
            names.join(",")
        ));
    }
    lua.push_str("c['status']:append(status.MailNotifier{fromaddr='ci@example.org', mode={'problem'}})\n");
    lua
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sample = std::fs::read_to_string(root.join("master.cfg.lua")).unwrap();
    let t = median(200, || {
        load_source("master.cfg.lua", &sample, root).unwrap();
    });
    println!("checkconfig, sample master.cfg.lua:       {:>9.3} ms (median of 200)", t.as_secs_f64() * 1e3);

    let big = generated_config(500);
    let t = median(20, || {
        let loaded = load_source("master.cfg.lua", &big, root).unwrap();
        assert_eq!(loaded.config.builders.len(), 500);
    });
    println!("checkconfig, 500 builders:                {:>9.3} ms (median of 20)", t.as_secs_f64() * 1e3);
}
