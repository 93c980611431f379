//! What the benches that drive an in-process master share: queueing builds as a scheduler
//! would and waiting for them, and the process's CPU time.

use std::time::{Duration, Instant};

use moonbot::data::{publish, Resource};
use moonbot::db::{BuildsetSpec, SourceStampSpec};
use moonbot::master::Master;
use moonbot::model::Properties;

const WAIT: Duration = Duration::from_secs(300);

/// Queues one build of `builder` per sourcestamp and waits for every one to finish.
pub async fn run_builds(
    master: &Master,
    builder: &str,
    sourcestamps: Vec<SourceStampSpec>,
) -> anyhow::Result<()> {
    let ctx = &master.context;
    let builderid = ctx.db.builder_id(builder).await?;
    let mut buildsets = Vec::with_capacity(sourcestamps.len());
    for sourcestamp in sourcestamps {
        let spec = BuildsetSpec {
            reason: "bench".into(),
            scheduler: "bench".into(),
            new_sourcestamps: vec![sourcestamp],
            properties: Properties::new(),
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

/// The process's user and system CPU time so far.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
