//! Step processes end with the master, however it ends (kill -9 included).
//!
//! One small watcher process per master process, `/bin/sh` running [`WATCHER`], reads the
//! process groups of running commands from a pipe (`+PGID` when one starts, `-PGID` when it
//! ends). The master holds the only write end, so when the master dies the kernel closes it,
//! the watcher reads end of file, and it kills every group still listed, grandchildren
//! included.
//!
//! Why not `PR_SET_PDEATHSIG` on each group leader: it reaches only the leader, not the
//! background children of `sh -c 'sleep 300 & sleep 300'`; it fires when the *thread* that
//! forked exits, not the process; and setting it needs a `pre_exec` hook, which makes std
//! fork the whole master instead of using posix_spawn. Why not a record of groups in the base
//! directory, killed at the next start: the steps would run until then (and overlap a build
//! of another master on the same directory), and a pgid read back after a reboot may name an
//! unrelated process. The watcher lists only groups whose leader has not been reaped, so a
//! pgid it kills is still the step's.
//!
//! The watcher is started (or found running) before a command is spawned, not when its group
//! is listed: starting it then was a process start between the spawn and the listing, and a
//! master killed meanwhile left the step running with nobody to end it.
//!
//! The watcher ignores the signals a terminal or a service manager sends to everything, so it
//! lives as long as the master; if it dies anyway, the next command's spawn or listing starts
//! another one and hands it the groups running then.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

/// The watcher: keeps the listed groups in `live`, and kills them at end of input.
const WATCHER: &str = r#"trap '' HUP INT QUIT TERM
live=" "
while read -r op pgid; do
  case $op in
    +) live="$live$pgid " ;;
    -) case $live in *" $pgid "*) live="${live%% $pgid *} ${live#* $pgid }" ;; esac ;;
  esac
done
for pgid in $live; do kill -9 -"$pgid" 2>/dev/null; done
"#;

struct Lifeline {
    watcher: Option<(Child, ChildStdin)>,
    /// The groups running now, to hand to a watcher started after the first one died.
    live: BTreeSet<i32>,
}

static LIFELINE: Mutex<Lifeline> = Mutex::new(Lifeline {
    watcher: None,
    live: BTreeSet::new(),
});

/// Makes sure a watcher runs before a command is spawned, so that [`hold`] only writes a line.
pub(super) fn prepare() {
    let mut lifeline = LIFELINE.lock().unwrap_or_else(|e| e.into_inner());
    let running = match &mut lifeline.watcher {
        Some((child, _)) => matches!(child.try_wait(), Ok(None)),
        None => false,
    };
    if !running {
        lifeline.restart();
    }
}

/// Lists a command's process group to be killed if the master dies before [`release`].
pub(super) fn hold(pgid: i32) {
    let mut lifeline = LIFELINE.lock().unwrap_or_else(|e| e.into_inner());
    lifeline.live.insert(pgid);
    lifeline.send(&format!("+ {pgid}\n"));
}

/// Takes a group off the list once its leader has been waited for (or killed): its pgid may
/// be reused as soon as the group is empty.
pub(super) fn release(pgid: i32) {
    let mut lifeline = LIFELINE.lock().unwrap_or_else(|e| e.into_inner());
    if lifeline.live.remove(&pgid) {
        lifeline.send(&format!("- {pgid}\n"));
    }
}

impl Lifeline {
    /// Writes a line to the watcher, starting another (with every live group) when the write
    /// fails. A line is a few bytes, far below the pipe's buffer, so the write does not block.
    fn send(&mut self, line: &str) {
        if let Some((_, stdin)) = &mut self.watcher {
            if stdin.write_all(line.as_bytes()).is_ok() {
                return;
            }
        }
        self.restart();
    }

    /// Replaces a watcher that ended (or was never started) with one told every live group.
    fn restart(&mut self) {
        if let Some((mut child, _)) = self.watcher.take() {
            tracing::warn!("the step watcher ended; starting another");
            let _ = child.kill();
            let _ = child.wait();
        }
        match start_watcher() {
            Ok((child, mut stdin)) => {
                let listing: String = self.live.iter().map(|g| format!("+ {g}\n")).collect();
                if let Err(error) = stdin.write_all(listing.as_bytes()) {
                    tracing::warn!(%error, "cannot reach the step watcher");
                }
                self.watcher = Some((child, stdin));
            }
            Err(error) => tracing::warn!(
                %error,
                "cannot start the step watcher: running steps will outlive a master that crashes"
            ),
        }
    }
}

fn start_watcher() -> std::io::Result<(Child, ChildStdin)> {
    let mut child = Command::new("/bin/sh")
        .args(["-c", WATCHER])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own group: a terminal's Ctrl-C reaches the master, which stops steps itself.
        .process_group(0)
        .spawn()?;
    let stdin = child.stdin.take().expect("stdin is piped");
    Ok((child, stdin))
}
