//! The process runner against real processes: exit codes, environment, limits, kills,
//! streaming, watched log files and memory under a flood of output.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use moonbot::process::{self, Chunk, CommandLine, CommandSpec, LineBuffer, Outcome, Signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Every run in these tests finishes well within this.
const TEST_LIMIT: Duration = Duration::from_secs(30);

struct Finished {
    outcome: Outcome,
    chunks: Vec<Chunk>,
    elapsed: Duration,
}

impl Finished {
    fn header(&self) -> String {
        self.chunks
            .iter()
            .filter_map(|c| match c {
                Chunk::Header(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    fn stdout(&self) -> String {
        self.bytes(|c| match c {
            Chunk::Stdout(data) => Some(data),
            _ => None,
        })
    }

    fn stderr(&self) -> String {
        self.bytes(|c| match c {
            Chunk::Stderr(data) => Some(data),
            _ => None,
        })
    }

    fn logfiles(&self) -> BTreeMap<String, String> {
        let mut logs = BTreeMap::<String, String>::new();
        for chunk in &self.chunks {
            if let Chunk::LogFile(name, data) = chunk {
                logs.entry(name.clone())
                    .or_default()
                    .push_str(&String::from_utf8_lossy(data));
            }
        }
        logs
    }

    fn bytes(&self, pick: impl Fn(&Chunk) -> Option<&Vec<u8>>) -> String {
        let all: Vec<u8> = self
            .chunks
            .iter()
            .filter_map(pick)
            .flatten()
            .copied()
            .collect();
        String::from_utf8(all).expect("utf-8 output")
    }

    /// The pid the command printed as its first line (a background child's `$!`).
    fn printed_pid(&self) -> i32 {
        let stdout = self.stdout();
        let first = stdout.lines().next().expect("a pid line");
        first.trim().parse().expect("a pid")
    }
}

fn shell(script: &str, workdir: &Path) -> CommandSpec {
    CommandSpec::new(CommandLine::Shell(script.to_owned()), workdir)
}

fn argv(words: &[&str], workdir: &Path) -> CommandSpec {
    let words = words.iter().map(|w| w.to_string()).collect();
    CommandSpec::new(CommandLine::Argv(words), workdir)
}

async fn run(spec: CommandSpec) -> Finished {
    run_interrupting(spec, |_| false).await
}

/// Runs the command, cancelling its interrupt token once `interrupt_after` accepts a chunk.
async fn run_interrupting(spec: CommandSpec, interrupt_after: impl Fn(&Chunk) -> bool) -> Finished {
    let started = Instant::now();
    let (sink, mut chunks_in) = mpsc::channel(16);
    let interrupt = CancellationToken::new();
    let token = interrupt.clone();
    let runner = tokio::spawn(async move { process::run(&spec, sink, token).await });
    let collect = async {
        let mut chunks = Vec::new();
        while let Some(chunk) = chunks_in.recv().await {
            if interrupt_after(&chunk) {
                interrupt.cancel();
            }
            chunks.push(chunk);
        }
        chunks
    };
    let chunks = tokio::time::timeout(TEST_LIMIT, collect)
        .await
        .expect("command finished in time");
    let outcome = runner.await.expect("runner task");
    Finished {
        outcome,
        chunks,
        elapsed: started.elapsed(),
    }
}

fn is_stdout_containing(chunk: &Chunk, text: &str) -> bool {
    matches!(chunk, Chunk::Stdout(data) if String::from_utf8_lossy(data).contains(text))
}

/// Alive means present and not a zombie waiting for its parent.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        }
        Err(_) => false,
    }
}

async fn assert_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} is still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn exit_codes_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let ok = run(argv(&["true"], dir.path())).await;
    assert_eq!(ok.outcome, Outcome::Exited(0));
    assert!(ok.header().contains("program finished with exit code 0\n"));

    let failed = run(shell("exit 3", dir.path())).await;
    assert_eq!(failed.outcome, Outcome::Exited(3));
    let header = failed.header();
    assert!(
        header.contains("program finished with exit code 3\nelapsedTime="),
        "{header}"
    );

    let signalled = run(shell("kill -USR1 $$", dir.path())).await;
    assert_eq!(signalled.outcome, Outcome::Signalled(libc::SIGUSR1));
    let header = signalled.header();
    assert!(header.contains(&format!("process killed by signal {}\n", libc::SIGUSR1)));
    assert!(header.contains("program finished with exit code -1\n"));
}

#[tokio::test]
async fn argv_is_not_interpreted_and_shell_is() {
    let dir = tempfile::tempdir().unwrap();
    let direct = run(argv(&["echo", "$HOME", "a  b"], dir.path())).await;
    assert_eq!(direct.outcome, Outcome::Exited(0));
    assert_eq!(direct.stdout(), "$HOME a  b\n");
    let header = direct.header();
    assert!(header.starts_with("echo '$HOME' 'a  b'\n"), "{header}");
    assert!(
        header.contains(" argv: ['echo', '$HOME', 'a  b']\n"),
        "{header}"
    );
    assert!(header.contains(&format!(" in dir {}\n", dir.path().display())));

    let piped = run(shell("echo $((1 + 2)) | tr 3 x", dir.path())).await;
    assert_eq!(piped.stdout(), "x\n");
    assert!(piped.header().starts_with("echo $((1 + 2)) | tr 3 x\n"));
}

#[tokio::test]
async fn environment_is_set_unset_and_expanded() {
    let dir = tempfile::tempdir().unwrap();
    let master_path = std::env::var("PATH").expect("PATH in the test environment");
    let mut spec = argv(&["/usr/bin/env"], dir.path());
    spec.env = vec![
        ("MOONBOT_GREETING".into(), Some("hello".into())),
        (
            "MOONBOT_SEARCH".into(),
            Some("/opt/tools:${PATH}${MOONBOT_UNSET_X}".into()),
        ),
        ("PATH".into(), None),
    ];
    let finished = run(spec).await;
    assert_eq!(finished.outcome, Outcome::Exited(0));
    let stdout = finished.stdout();
    let vars: BTreeMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(vars.get("MOONBOT_GREETING"), Some(&"hello"));
    let expected_search = format!("/opt/tools:{master_path}");
    assert_eq!(vars.get("MOONBOT_SEARCH"), Some(&expected_search.as_str()));
    assert_eq!(vars.get("PATH"), None);
    assert_eq!(vars.get("PWD"), Some(&dir.path().to_str().unwrap()));
    let header = finished.header();
    assert!(header.contains(" environment:\n"), "{header}");
    assert!(header.contains("\n  MOONBOT_GREETING=hello\n"), "{header}");

    let mut quiet = argv(&["true"], dir.path());
    quiet.log_environ = false;
    assert!(!run(quiet).await.header().contains("environment"));
}

#[tokio::test]
async fn missing_workdir_fails_to_spawn() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let finished = run(argv(&["true"], &missing)).await;
    let expected = format!("workdir '{}' does not exist", missing.display());
    assert_eq!(finished.outcome, Outcome::SpawnFailed(expected.clone()));
    assert!(finished.header().ends_with(&format!("{expected}\n")));
}

#[tokio::test]
async fn unknown_command_fails_to_spawn() {
    let dir = tempfile::tempdir().unwrap();
    let finished = run(argv(&["moonbot-no-such-command", "x"], dir.path())).await;
    let expected = "cannot run 'moonbot-no-such-command': No such file or directory";
    assert_eq!(finished.outcome, Outcome::SpawnFailed(expected.into()));
    let header = finished.header();
    assert!(header.contains(expected), "{header}");
    assert!(!header.contains("program finished"), "{header}");

    // Through the shell it is the shell that reports it, with its usual 127.
    let through_shell = run(shell("moonbot-no-such-command", dir.path())).await;
    assert_eq!(through_shell.outcome, Outcome::Exited(127));
    assert!(through_shell.stderr().contains("moonbot-no-such-command"));
}

#[tokio::test]
async fn no_output_timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = shell("sleep 30 & echo $!; wait", dir.path());
    spec.timeout = Some(Duration::from_secs(1));
    let finished = run(spec).await;
    assert_eq!(
        finished.outcome,
        Outcome::TimedOut {
            no_output: Duration::from_secs(1)
        }
    );
    assert!(
        finished.elapsed < Duration::from_secs(5),
        "{:?}",
        finished.elapsed
    );
    let header = finished.header();
    assert!(header.contains(" (timeout 1 sec)\n"), "{header}");
    assert!(
        header.contains(
            "\ncommand timed out: 1 seconds without output running 'sleep 30 & echo $!; wait', attempting to kill\n"
        ),
        "{header}"
    );
    assert!(header.contains("process killed by signal 9\nprogram finished with exit code -1\n"));
    assert_gone(finished.printed_pid()).await;
}

#[tokio::test]
async fn max_time_kills_a_command_that_keeps_printing() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = shell(
        "sleep 30 & echo $!; while true; do echo tick; sleep 0.1; done",
        dir.path(),
    );
    spec.timeout = Some(Duration::from_secs(1));
    spec.max_time = Some(Duration::from_millis(1500));
    let finished = run(spec).await;
    assert_eq!(
        finished.outcome,
        Outcome::MaxTimeExceeded(Duration::from_millis(1500))
    );
    assert!(
        finished.elapsed < Duration::from_secs(5),
        "{:?}",
        finished.elapsed
    );
    let header = finished.header();
    assert!(
        header.contains("(timeout 1 sec) (maxTime 1.5 secs)\n"),
        "{header}"
    );
    assert!(
        header.contains("command timed out: 1.5 seconds elapsed running"),
        "{header}"
    );
    assert!(finished.stdout().matches("tick").count() >= 5);
    assert_gone(finished.printed_pid()).await;
}

#[tokio::test]
async fn interrupt_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let spec = shell("sleep 30 & echo $!; wait", dir.path());
    let finished = run_interrupting(spec, |c| matches!(c, Chunk::Stdout(_))).await;
    assert_eq!(finished.outcome, Outcome::Interrupted);
    let header = finished.header();
    assert!(
        header.contains("\ncommand interrupted, attempting to kill\n"),
        "{header}"
    );
    assert!(
        header.contains("program finished with exit code -1\n"),
        "{header}"
    );
    assert_gone(finished.printed_pid()).await;
}

#[tokio::test]
async fn interrupt_signal_term_lets_the_command_clean_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = shell(
        // "ready" comes from a process that has already exec'd, so the trap
        // the shell's forked child inherits for a moment cannot swallow the TERM.
        "trap 'echo cleaning up; exit 3' TERM; sh -c 'echo ready; exec sleep 30' & wait",
        dir.path(),
    );
    spec.interrupt_signal = "TERM".parse().unwrap();
    let finished = run_interrupting(spec, |c| is_stdout_containing(c, "ready")).await;
    assert_eq!(finished.outcome, Outcome::Interrupted);
    assert_eq!(finished.stdout(), "ready\ncleaning up\n");
    assert!(finished
        .header()
        .contains("program finished with exit code 3\n"));
    assert!(
        finished.elapsed < Duration::from_secs(4),
        "{:?}",
        finished.elapsed
    );
}

#[tokio::test]
async fn sigterm_time_escalates_to_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = shell(
        "trap 'echo ignoring TERM' TERM; echo ready; while true; do sleep 0.1; done",
        dir.path(),
    );
    spec.interrupt_signal = Signal::KILL;
    spec.sigterm_time = Some(Duration::from_millis(500));
    let finished = run_interrupting(spec, |c| is_stdout_containing(c, "ready")).await;
    assert_eq!(finished.outcome, Outcome::Interrupted);
    assert!(
        finished.stdout().contains("ignoring TERM"),
        "{}",
        finished.stdout()
    );
    let header = finished.header();
    assert!(header.contains("process killed by signal 9\n"), "{header}");
    assert!(
        finished.elapsed < Duration::from_secs(4),
        "{:?}",
        finished.elapsed
    );
}

#[tokio::test]
async fn dropping_the_run_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let spec = shell("sleep 30 & echo $!; wait", dir.path());
    let (sink, mut chunks) = mpsc::channel(16);
    let running = process::run(&spec, sink, CancellationToken::new());
    let first_stdout = async {
        loop {
            match chunks.recv().await {
                Some(Chunk::Stdout(data)) => return String::from_utf8(data).unwrap(),
                Some(_) => continue,
                None => panic!("command ended early"),
            }
        }
    };
    let pid: i32 = tokio::select! {
        outcome = running => panic!("command ended: {outcome:?}"),
        line = tokio::time::timeout(TEST_LIMIT, first_stdout) => line.unwrap().trim().parse().unwrap(),
    };
    assert_gone(pid).await;
}

#[tokio::test]
async fn stdin_is_written_then_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = argv(&["cat"], dir.path());
    spec.initial_stdin = Some("line one\nline two\n".into());
    let finished = run(spec).await;
    assert_eq!(finished.outcome, Outcome::Exited(0));
    assert_eq!(finished.stdout(), "line one\nline two\n");
    assert!(finished.header().contains(" writing 18 bytes to stdin\n"));

    // Without initial stdin, stdin is empty rather than inherited.
    assert_eq!(run(argv(&["cat"], dir.path())).await.stdout(), "");
}

#[tokio::test]
async fn stdout_and_stderr_stay_separate_channels() {
    let dir = tempfile::tempdir().unwrap();
    let script =
        "echo out1; sleep 0.05; echo err1 >&2; sleep 0.05; echo out2; sleep 0.05; echo err2 >&2";
    let finished = run(shell(script, dir.path())).await;
    assert_eq!(finished.stdout(), "out1\nout2\n");
    assert_eq!(finished.stderr(), "err1\nerr2\n");
    let order: Vec<&str> = finished
        .chunks
        .iter()
        .filter_map(|c| match c {
            Chunk::Stdout(_) => Some("out"),
            Chunk::Stderr(_) => Some("err"),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["out", "err", "out", "err"]);
}

#[tokio::test]
async fn logfiles_are_streamed_while_the_command_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("old.log"), "before the step\n").unwrap();
    let mut spec = shell(
        "echo first > build.log; echo appended >> old.log; sleep 0.8; echo second >> build.log; echo done",
        dir.path(),
    );
    spec.logfiles = vec![
        ("build".into(), "build.log".into(), false),
        ("old".into(), "old.log".into(), true),
    ];
    let finished = run(spec).await;
    assert_eq!(finished.outcome, Outcome::Exited(0));
    let logs = finished.logfiles();
    assert_eq!(
        logs.get("build").map(String::as_str),
        Some("first\nsecond\n")
    );
    assert_eq!(logs.get("old").map(String::as_str), Some("appended\n"));
    let first_log = finished
        .chunks
        .iter()
        .position(|c| matches!(c, Chunk::LogFile(name, _) if name == "build"))
        .unwrap();
    let done = finished
        .chunks
        .iter()
        .position(|c| is_stdout_containing(c, "done"))
        .unwrap();
    assert!(first_log < done, "the log file was only read at the end");
    let header = finished.header();
    assert!(
        header.contains(
            " watching logfiles {'build': 'build.log', 'old': {'filename': 'old.log', 'follow': True}}\n"
        ),
        "{header}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_output_to_a_slow_consumer_keeps_memory_bounded() {
    const TOTAL: usize = 200_000_000;
    const LINE: &str = "moonbot floods its log with lines of exactly one hundred bytes to test back-pressure, memory ......";
    assert_eq!(LINE.len() + 1, 100);
    let dir = tempfile::tempdir().unwrap();
    let spec = shell(&format!("yes '{LINE}' | head -c {TOTAL}"), dir.path());

    let baseline = vm_rss_kib();
    let (sink, mut chunks) = mpsc::channel(8);
    let runner =
        tokio::spawn(async move { process::run(&spec, sink, CancellationToken::new()).await });
    let consume = async {
        let (mut bytes, mut lines, mut peak, mut received) = (0usize, 0usize, baseline, 0usize);
        let mut buffer = LineBuffer::new();
        while let Some(chunk) = chunks.recv().await {
            if let Chunk::Stdout(data) = chunk {
                bytes += data.len();
                for line in buffer.push(&data) {
                    assert_eq!(line, LINE);
                    lines += 1;
                }
                received += 1;
                if received % 32 == 0 {
                    peak = peak.max(vm_rss_kib());
                    // Slower than the producer, so the runner has to wait for us.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        assert_eq!(buffer.flush(), None);
        (bytes, lines, peak)
    };
    let (bytes, lines, peak) = tokio::time::timeout(TEST_LIMIT, consume)
        .await
        .expect("consumed in time");
    assert_eq!(runner.await.unwrap(), Outcome::Exited(0));
    assert_eq!(bytes, TOTAL);
    assert_eq!(lines, TOTAL / 100);
    let growth_mib = (peak.saturating_sub(baseline)) / 1024;
    assert!(growth_mib < 100, "resident memory grew by {growth_mib} MiB");
}
