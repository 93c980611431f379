//! Reviews delivered with the system `ssh` client, as Buildbot does: `ssh -p PORT
//! user@server gerrit review ...`. The server's version, asked once per transport, decides
//! between `--label NAME=VALUE` (Gerrit 2.6 and later) and the older `--verified` and
//! `--code-review` flags.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::OnceCell;

use super::Review;
use crate::config::status::GerritStatusPushConfig;
use crate::db::OutboxMessage;
use crate::status::outbox::{Outcome, Transport};

/// How long one ssh call may take, connecting included, before it counts as broken.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// ssh's exit status when it, not the remote command, failed (refused connection, bad key).
const SSH_FAILED: i32 = 255;

/// Runs `ssh` for each review.
pub struct SshTransport {
    server: String,
    username: String,
    port: u16,
    identity_file: Option<String>,
    /// Written from `ssh_known_hosts`; with it, only those keys are accepted.
    known_hosts: Option<PathBuf>,
    /// Whether the server takes `--label` (asked once, at the first delivery).
    takes_labels: OnceCell<bool>,
}

impl SshTransport {
    /// `known_hosts` is where `ssh_known_hosts` is written, if given.
    pub fn new(config: &GerritStatusPushConfig, known_hosts: PathBuf) -> anyhow::Result<Self> {
        let known_hosts = match &config.ssh_known_hosts {
            Some(keys) => {
                std::fs::write(&known_hosts, format!("{}\n", keys.trim_end())).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot write ssh_known_hosts to {}: {e}",
                        known_hosts.display()
                    )
                })?;
                Some(known_hosts)
            }
            None => None,
        };
        Ok(SshTransport {
            server: config.server.clone(),
            username: config.username.clone(),
            port: config.port,
            identity_file: config.identity_file.clone(),
            known_hosts,
            takes_labels: OnceCell::new(),
        })
    }

    fn peer(&self) -> String {
        format!("ssh://{}@{}:{}", self.username, self.server, self.port)
    }

    /// Runs `remote` (words, quoted here for the remote side) on the server; its output, or
    /// what failed and whether it was ssh itself (connection, authentication).
    async fn run(&self, remote: &[String]) -> Result<String, (bool, String)> {
        let mut command = Command::new("ssh");
        command
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"])
            .arg("-p")
            .arg(self.port.to_string());
        if let Some(identity) = &self.identity_file {
            command.arg("-i").arg(identity);
        }
        if let Some(known_hosts) = &self.known_hosts {
            command
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
                .args(["-o", "StrictHostKeyChecking=yes"]);
        }
        command
            .arg("--")
            .arg(format!("{}@{}", self.username, self.server))
            .arg(remote_command(remote))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = match tokio::time::timeout(CALL_TIMEOUT, command.output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(error)) => return Err((true, format!("cannot run ssh: {error}"))),
            Err(_) => return Err((true, format!("no answer in {}s", CALL_TIMEOUT.as_secs()))),
        };
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = stderr
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        let code = output.status.code();
        Err((
            code == Some(SSH_FAILED) || code.is_none(),
            format!("exit status {}: {said}", code.unwrap_or(-1)),
        ))
    }
}

impl Transport for SshTransport {
    type Session = ();

    /// Asks the server's version the first time.
    async fn open(&self) -> Result<(), String> {
        self.takes_labels
            .get_or_try_init(|| async {
                let words = ["gerrit".to_string(), "version".to_string()];
                match self.run(&words).await {
                    Ok(answer) => Ok(takes_labels(&answer)),
                    Err((_, error)) => Err(format!("{}: gerrit version: {error}", self.peer())),
                }
            })
            .await
            .map(|_| ())
    }

    async fn send(&self, _: &mut (), message: &OutboxMessage) -> Outcome {
        let review: Review = match serde_json::from_slice(&message.body) {
            Ok(review) => review,
            Err(error) => return Outcome::Refused(format!("not a stored review: {error}")),
        };
        let takes_labels = self.takes_labels.get().copied().unwrap_or(true);
        let words = review_command(&review, takes_labels);
        match self.run(&words).await {
            Ok(_) => Outcome::Accepted,
            // The connection or the login failed: the next messages would fail the same way.
            Err((true, error)) => Outcome::Broken(format!("{}: {error}", self.peer())),
            // Gerrit ran the command and refused it (no such change, label not permitted).
            Err((false, error)) => {
                Outcome::Refused(format!("{}: gerrit review: {error}", self.peer()))
            }
        }
    }

    async fn close(&self, _: ()) {}
}

/// Whether `gerrit version`'s answer (`gerrit version 3.9.1`) is 2.6 or later; an answer
/// that cannot be read is taken as a recent server.
pub fn takes_labels(answer: &str) -> bool {
    let version = answer.trim().rsplit(' ').next().unwrap_or("");
    let mut numbers = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u64>());
    match (numbers.next(), numbers.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= (2, 6),
        _ => {
            tracing::warn!("cannot read Gerrit's version from {answer:?}; using --label");
            true
        }
    }
}

/// The words of `gerrit review` for `review`.
pub fn review_command(review: &Review, takes_labels: bool) -> Vec<String> {
    let mut words: Vec<String> = ["gerrit", "review", "--project"]
        .iter()
        .map(|w| w.to_string())
        .collect();
    words.push(review.project.clone());
    words.push("--message".into());
    words.push(review.message.clone());
    if let Some(notify) = &review.notify {
        words.push("--notify".into());
        words.push(notify.clone());
    }
    for (label, value) in &review.labels {
        if takes_labels {
            words.push("--label".into());
            words.push(format!("{label}={value}"));
            continue;
        }
        match label.to_ascii_lowercase().as_str() {
            "verified" => words.push("--verified".into()),
            "code-review" => words.push("--code-review".into()),
            _ => {
                tracing::warn!(
                    "label {label} left out: this Gerrit (before 2.6) takes only Verified and Code-Review"
                );
                continue;
            }
        }
        words.push(value.to_string());
    }
    words.push(review.revision.clone());
    words
}

/// The command line the remote side splits back into `words`: each word that is not plain
/// is single-quoted (a quote inside as `'\''`), which POSIX shells and Gerrit's own command
/// splitter read back unchanged, newlines and `$(...)` included.
pub fn remote_command(words: &[String]) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:+@,%".contains(c);
    words
        .iter()
        .map(|word| {
            if !word.is_empty() && word.chars().all(plain) {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_before_2_6_take_the_old_flags() {
        assert!(takes_labels("gerrit version 3.9.1\n"));
        assert!(takes_labels("gerrit version 2.6"));
        assert!(takes_labels("gerrit version 2.16-rc1"));
        assert!(!takes_labels("gerrit version 2.5.4"));
        assert!(takes_labels("something else"));
    }

    #[test]
    fn old_servers_get_verified_and_code_review_flags() {
        let review = Review {
            project: "p".into(),
            revision: "abc".into(),
            message: "m".into(),
            labels: [("Verified".to_string(), -1), ("Other".to_string(), 1)]
                .into_iter()
                .collect(),
            notify: Some("OWNER".into()),
        };
        assert_eq!(
            review_command(&review, false).join(" "),
            "gerrit review --project p --message m --notify OWNER --verified -1 abc"
        );
        assert_eq!(
            review_command(&review, true).join(" "),
            "gerrit review --project p --message m --notify OWNER --label Other=1 --label Verified=-1 abc"
        );
    }

    #[test]
    fn words_are_quoted_for_the_remote_side() {
        let words = ["gerrit", "it's $(rm -rf /)\n\"ok\"", ""].map(String::from);
        assert_eq!(
            remote_command(&words),
            "gerrit 'it'\\''s $(rm -rf /)\n\"ok\"' ''"
        );
    }
}
