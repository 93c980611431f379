//! A step that prints 200 MB: the master's memory stays bounded and the log is whole. In a
//! file of its own, so no other test's master shares the process whose memory it measures.

use std::time::Duration;

mod support;

use support::{submit, TestMaster};

/// The resident memory of this process (the master runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_printing_200_megabytes_keeps_the_master_small_and_the_log_whole() {
    let config = r#"
local c = BuildmasterConfig
c['workers'] = { worker.LocalWorker("local") }
local f = util.BuildFactory()
f:addStep(steps.ShellCommand{name="flood", command="yes 'a line of output that repeats' | head -c 200000000", logEnviron=false})
c['builders'] = { util.BuilderConfig{name="flood", workernames={"local"}, factory=f} }
"#;
    let master = TestMaster::start(config).await;
    let before = rss_kib();
    let bsid = submit(&master, &["flood"], &[]).await;
    let peak = tokio::time::timeout(Duration::from_secs(120), async {
        let mut peak = before;
        loop {
            peak = peak.max(rss_kib());
            if master
                .context
                .db
                .buildset_result(bsid)
                .await
                .unwrap()
                .is_some()
            {
                return peak;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the build finishes");
    assert!(
        peak - before < 100 * 1024,
        "the master grew by {} KiB",
        peak - before
    );
    let lines: i64 = sqlx::query_scalar("SELECT num_lines FROM logs WHERE name = 'stdio'")
        .fetch_one(&master.context.db.pool)
        .await
        .unwrap();
    // 200,000,000 bytes of 31-byte lines, plus the header lines.
    assert!(lines > 200_000_000 / 31, "{lines} lines");
}
