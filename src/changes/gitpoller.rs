//! `changes.GitPoller`, as Buildbot 4's `changes/gitpoller.py` does it: fetch the followed
//! refs of the remote into a bare repository under tracking refs of our own, then turn every
//! commit not reachable from the last revisions seen into a change, oldest first. The last
//! revision of each branch is kept in the database, so a restart does not replay history;
//! the very first poll only records the heads.

use std::collections::{BTreeMap, HashMap};
use std::future::pending;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::process::Command;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::build::{GitBranches, GitPoller, ValueOrFunction};
use crate::db::ChangeSpec;
use crate::model::Change;
use crate::runtime::Context;
use crate::script::renderable::display;
use crate::script::{Arg, RenderData, Renderable};

/// A running GitPoller. [`GitPollerService::poll`] is one poll; [`GitPollerService::run`]
/// polls every `pollInterval` until stopped, taking new configs between polls.
pub struct GitPollerService {
    ctx: Context,
    config: GitPoller,
    /// Absolute: the configured workdir under the master's base directory.
    workdir: PathBuf,
    encoding: TextEncoding,
    /// The `object_state` name the last revisions are kept under.
    state_object: String,
    /// Branch -> last revision seen; loaded from the database on the first poll.
    last_rev: Option<BTreeMap<String, String>>,
    stop: CancellationToken,
}

impl GitPollerService {
    /// Fails for an `encoding` we cannot decode.
    pub fn new(
        ctx: Context,
        config: &GitPoller,
        stop: CancellationToken,
    ) -> anyhow::Result<GitPollerService> {
        let encoding = encoding_of(config)?;
        Ok(GitPollerService {
            workdir: ctx.basedir.join(&config.workdir),
            state_object: format!("GitPoller:{}", config.name),
            ctx,
            config: config.clone(),
            encoding,
            last_rev: None,
            stop,
        })
    }

    /// Polls at launch if asked, then every `pollInterval` (plus the random delay) and when
    /// `poll_now` is notified, logging one line per failed poll, until the stop token is
    /// cancelled. A new config from
    /// `updates` applies from the next poll, with the last revisions seen kept; a new
    /// interval counts from the end of the last poll. `poll_now` wakes it for a poll at once
    /// (the `poller` change hook); the interval then counts from that poll.
    pub async fn run(mut self, mut updates: watch::Receiver<GitPoller>, poll_now: Arc<Notify>) {
        tracing::info!(
            poller = %self.config.name,
            workdir = %self.workdir.display(),
            "GitPoller watching {}",
            self.config.repourl
        );
        let mut last_poll = Instant::now();
        let mut next_poll = match self.config.poll_at_launch {
            true => last_poll,
            false => last_poll + self.interval(),
        } + self.random_delay();
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => break,
                config = next_config(&mut updates) => {
                    let timing = self.timing();
                    self.apply(config);
                    if self.timing() != timing {
                        next_poll = last_poll + self.interval() + self.random_delay();
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(next_poll) => {}
                _ = poll_now.notified() => {}
            }
            if let Err(e) = self.poll().await {
                tracing::warn!(poller = %self.config.name, "poll failed: {e:#}");
            }
            last_poll = Instant::now();
            next_poll = last_poll + self.interval() + self.random_delay();
        }
    }

    /// Takes a new config of the same name: where to fetch from and what to follow change
    /// from the next poll; the last revisions seen stay, so nothing is replayed.
    fn apply(&mut self, config: GitPoller) {
        match encoding_of(&config) {
            Ok(encoding) => self.encoding = encoding,
            Err(error) => tracing::warn!(poller = %config.name, "{error:#}; keeping the encoding"),
        }
        self.workdir = self.ctx.basedir.join(&config.workdir);
        self.config = config;
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(self.config.poll_interval)
    }

    /// The options that say when to poll.
    fn timing(&self) -> (u64, u64, u64) {
        (
            self.config.poll_interval,
            self.config.poll_random_delay_min,
            self.config.poll_random_delay_max,
        )
    }

    fn random_delay(&self) -> Duration {
        let (min, max) = (
            self.config.poll_random_delay_min,
            self.config.poll_random_delay_max,
        );
        Duration::from_secs(if max > min {
            fastrand::u64(min..=max)
        } else {
            min
        })
    }

    /// One poll: returns the number of changes submitted. A failure on one branch is logged
    /// and the others go on; a failure to reach the remote fails the poll.
    pub async fn poll(&mut self) -> anyhow::Result<usize> {
        let lock = workdir_lock(&self.workdir);
        let _guard = lock.lock().await;
        let fetched = tokio::select! {
            fetched = self.fetch() => fetched?,
            // The git processes are killed when their futures are dropped.
            _ = self.stop.cancelled() => return Ok(0),
        };
        let Some((refs, trim_heads)) = fetched else {
            return Ok(0);
        };
        let mut last_rev = match self.last_rev.take() {
            Some(last_rev) => last_rev,
            None => self.load_last_rev().await?,
        };
        tracing::debug!(poller = %self.config.name, "processing changes from {}", self.config.repourl);
        let mut heads = BTreeMap::new();
        let mut submitted = 0;
        for reference in refs {
            let branch = match trim_heads {
                true => reference
                    .strip_prefix("refs/heads/")
                    .unwrap_or(&reference)
                    .to_string(),
                false => reference.clone(),
            };
            let result = async {
                let tracker = tracker_ref(&self.config.repourl, &reference);
                let head = self.git_text(&["rev-parse", &tracker]).await?;
                heads.insert(branch.clone(), head.clone());
                self.process_changes(&head, &branch, &mut last_rev).await
            }
            .await;
            match result {
                Ok(count) => submitted += count,
                Err(e) => tracing::warn!(
                    poller = %self.config.name,
                    "cannot poll branch {branch} of {}: {e:#}",
                    self.config.repourl
                ),
            }
        }
        let state = serde_json::to_value(&heads).expect("a map of strings is JSON");
        self.last_rev = Some(heads);
        self.ctx
            .db
            .set_state(&self.state_object, "lastRev", &state)
            .await
            .with_context(|| {
                format!("cannot record the last revisions of {}", self.state_object)
            })?;
        Ok(submitted)
    }

    async fn load_last_rev(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let stored = self
            .ctx
            .db
            .get_state(&self.state_object, "lastRev")
            .await
            .with_context(|| format!("cannot read the last revisions of {}", self.state_object))?;
        Ok(match stored {
            Some(value) => serde_json::from_value(value).with_context(|| {
                format!("the last revisions of {} are corrupt", self.state_object)
            })?,
            None => BTreeMap::new(),
        })
    }

    /// Makes the bare repository and fetches the followed refs into it: the refs (and whether
    /// `refs/heads/` is to be trimmed from them to name branches), or `None` when the remote
    /// has none of them.
    async fn fetch(&self) -> anyhow::Result<Option<(Vec<String>, bool)>> {
        let workdir = self.workdir.to_string_lossy().into_owned();
        self.git(&["init", "--bare", "--quiet", &workdir], None, None)
            .await?;
        let ssh = SshFiles::prepare(&self.ctx, &self.config, &self.workdir).await?;
        let ssh_command = ssh.as_ref().map(SshFiles::command);
        let (refs, trim_heads) = self.remote_refs(ssh_command.as_deref()).await?;
        if refs.is_empty() {
            return Ok(None);
        }
        let mut args = vec!["fetch".to_string(), self.config.repourl.clone()];
        args.extend(
            refs.iter()
                .map(|r| format!("+{r}:{}", tracker_ref(&self.config.repourl, r))),
        );
        args.push("--".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.git(&args, Some(&self.workdir), ssh_command.as_deref())
            .await?;
        Ok(Some((refs, trim_heads)))
    }

    async fn remote_refs(&self, ssh: Option<&str>) -> anyhow::Result<(Vec<String>, bool)> {
        let url = self.config.repourl.as_str();
        let list = |patterns: Vec<String>| async move {
            let mut args = vec!["ls-remote", "--refs", url];
            args.extend(patterns.iter().map(String::as_str));
            let rows = self.git_decoded(&args, None, ssh).await?;
            anyhow::Ok(
                rows.lines()
                    .filter_map(|row| row.split_once('\t').map(|(_, r)| r.to_string()))
                    .collect::<Vec<String>>(),
            )
        };
        Ok(match &self.config.branches {
            GitBranches::Named(names) => (
                list(names.iter().map(|b| format!("refs/heads/{b}")).collect()).await?,
                true,
            ),
            GitBranches::All => (list(vec!["refs/heads/*".into()]).await?, false),
            GitBranches::Tags => (
                list(Vec::new())
                    .await?
                    .into_iter()
                    .filter(|r| r.starts_with("refs/tags/"))
                    .collect(),
                false,
            ),
            GitBranches::Matching(callback) => {
                let mut chosen = Vec::new();
                for reference in list(Vec::new()).await? {
                    let answer: serde_json::Value = self
                        .ctx
                        .script
                        .call(callback, vec![Arg::from(reference.as_str())])
                        .await
                        .with_context(|| format!("option 'branches' on ref {reference}"))?;
                    // Lua's truth: only nil and false say no.
                    if !matches!(
                        answer,
                        serde_json::Value::Null | serde_json::Value::Bool(false)
                    ) {
                        chosen.push(reference);
                    }
                }
                (chosen, false)
            }
            GitBranches::Default => {
                let rows = self
                    .git_decoded(&["ls-remote", "--symref", url, "HEAD"], None, ssh)
                    .await?;
                // `ref: refs/heads/main<TAB>HEAD`, then `<hash><TAB>HEAD`.
                let parts: Vec<&str> = rows.split_whitespace().take(3).collect();
                let head = match parts.as_slice() {
                    ["ref:", reference, "HEAD"] => reference.to_string(),
                    _ => "HEAD".to_string(),
                };
                (vec![head], false)
            }
        })
    }

    /// Submits the commits of `branch` up to `head` that no last-seen revision reaches.
    async fn process_changes(
        &self,
        head: &str,
        branch: &str,
        last_rev: &mut BTreeMap<String, String>,
    ) -> anyhow::Result<usize> {
        // The first poll ever: history is not news.
        if last_rev.is_empty() {
            return Ok(0);
        }
        let mut seen: Vec<String> = last_rev.values().map(|rev| format!("^{rev}")).collect();
        seen.sort();
        let mut args = vec![
            "log",
            "--ignore-missing",
            "--first-parent",
            "--format=%H",
            head,
        ];
        args.extend(seen.iter().map(String::as_str));
        args.push("--");
        let output = self.git_text(&args).await?;
        let mut revisions: Vec<String> =
            output.split_whitespace().rev().map(String::from).collect();
        if revisions.is_empty() && self.config.build_pushes_with_no_commits {
            match last_rev.get(branch) {
                Some(known) if known == head => {}
                known => {
                    tracing::info!(
                        poller = %self.config.name,
                        "rebuilding {head} for {} branch {branch}",
                        if known.is_none() { "new" } else { "updated" }
                    );
                    revisions.push(head.to_string());
                }
            }
        }
        last_rev.insert(branch.to_string(), head.to_string());
        if !revisions.is_empty() {
            tracing::info!(
                poller = %self.config.name,
                "processing {} changes from {} branch {branch}",
                revisions.len(),
                self.config.repourl
            );
        }
        for revision in &revisions {
            let spec = self.commit_change(revision, branch).await?;
            super::submit(&self.ctx, spec).await?;
        }
        Ok(revisions.len())
    }

    /// The change a commit makes.
    async fn commit_change(&self, revision: &str, branch: &str) -> anyhow::Result<ChangeSpec> {
        let details = self
            .git_decoded(
                &[
                    "log",
                    "--no-walk",
                    "--format=%ct%x00%aN <%aE>%x00%cN <%cE>%x00%s%n%b",
                    revision,
                    "--",
                ],
                Some(&self.workdir),
                None,
            )
            .await?;
        let [timestamp, author, committer, comments] = details
            .splitn(4, '\0')
            .collect::<Vec<_>>()
            .try_into()
            .map_err(|_| {
                anyhow::anyhow!("unexpected git log output for {revision}: {details:?}")
            })?;
        let when = match self.config.usetimestamps {
            true => Some(timestamp.trim().parse::<i64>().with_context(|| {
                format!("commit {revision} has no timestamp (git said {timestamp:?})")
            })? as f64),
            false => None,
        };
        let files = self
            .git(
                &[
                    "log",
                    "--name-only",
                    "--no-walk",
                    "--format=%n",
                    "-m",
                    "--first-parent",
                    revision,
                    "--",
                ],
                Some(&self.workdir),
                None,
            )
            .await?;
        let files = files
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| self.encoding.decode(&unquote_path(line)))
            .collect();
        let mut spec = ChangeSpec {
            author: author.trim().to_string(),
            committer: Some(committer.trim().to_string()),
            comments: comments.trim().to_string(),
            branch: Some(
                branch
                    .strip_prefix("refs/heads/")
                    .unwrap_or(branch)
                    .to_string(),
            ),
            revision: Some(revision.to_string()),
            when,
            repository: self.config.repourl.clone(),
            project: self.config.project.clone(),
            files,
            ..ChangeSpec::default()
        };
        spec.category = self.category(&spec).await?;
        Ok(spec)
    }

    /// `category`: a fixed string, or what `fn(change)` returns for the change to be.
    async fn category(&self, spec: &ChangeSpec) -> anyhow::Result<Option<String>> {
        match &self.config.category {
            None => Ok(None),
            Some(ValueOrFunction::Value(category)) => Ok(Some(category.clone())),
            Some(ValueOrFunction::Function(callback)) => {
                let change = Change {
                    who: spec.author.clone(),
                    revision: spec.revision.clone(),
                    branch: spec.branch.clone(),
                    when: spec
                        .when
                        .map_or_else(|| crate::db::now() as i64, |w| w as i64),
                    files: spec.files.clone(),
                    comments: spec.comments.clone(),
                    repository: spec.repository.clone(),
                    project: spec.project.clone(),
                    ..Change::default()
                };
                let category: serde_json::Value = self
                    .ctx
                    .script
                    .call(callback, vec![Arg::Change(Arc::new(change))])
                    .await
                    .context("option 'category'")?;
                Ok(match category {
                    serde_json::Value::Null => None,
                    other => Some(display(&other)),
                })
            }
        }
    }

    /// A git command in the workdir, its output decoded and trimmed (as Buildbot does).
    async fn git_text(&self, args: &[&str]) -> anyhow::Result<String> {
        self.git_decoded(args, Some(&self.workdir), None).await
    }

    async fn git_decoded(
        &self,
        args: &[&str],
        cwd: Option<&Path>,
        ssh_command: Option<&str>,
    ) -> anyhow::Result<String> {
        let output = self.git(args, cwd, ssh_command).await?;
        Ok(self.encoding.decode(&output).trim().to_string())
    }

    /// Runs git; fails with its exit status and stderr.
    async fn git(
        &self,
        args: &[&str],
        cwd: Option<&Path>,
        ssh_command: Option<&str>,
    ) -> anyhow::Result<Vec<u8>> {
        let mut command = Command::new(&self.config.gitbin);
        command
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            // A poller has nobody to type a password: fail instead of waiting.
            .env("GIT_TERMINAL_PROMPT", "0");
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        if let Some(ssh) = ssh_command {
            command.env("GIT_SSH_COMMAND", ssh);
        }
        let what = format!("{} {}", self.config.gitbin, args.join(" "));
        let output = command
            .output()
            .await
            .with_context(|| format!("cannot run {what}"))?;
        if !output.status.success() {
            bail!(
                "{what} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(output.stdout)
    }
}

/// Pollers that share a workdir (the default `gitpoller-work`) take turns with it, so that
/// two fetches never race for the repository's lock files.
fn workdir_lock(workdir: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    locks.entry(workdir.to_path_buf()).or_default().clone()
}

/// Where the poller keeps its copy of `reference` of `repourl`: under `refs/buildbot/`,
/// named after the URL, so that pollers of several repositories can share one workdir.
fn tracker_ref(repourl: &str, reference: &str) -> String {
    let (prefix, name) = match reference.strip_prefix("refs/") {
        Some(name) => ("refs/buildbot", name),
        None => ("refs/buildbot/raw", reference),
    };
    format!("{prefix}/{}/{name}", quote_url(repourl))
}

/// Python's `urllib.parse.quote(value, '')` with `~` quoted too: a URL as one ref component.
fn quote_url(url: &str) -> String {
    url.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Git quotes unusual paths C-style (`"caf\303\251.txt"`); this gives back the raw bytes.
fn unquote_path(line: &[u8]) -> Vec<u8> {
    let Some(inner) = line
        .strip_prefix(b"\"")
        .and_then(|rest| rest.strip_suffix(b"\""))
    else {
        return line.to_vec();
    };
    let mut bytes = Vec::with_capacity(inner.len());
    let mut rest = inner;
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'\\' {
            bytes.push(b);
            continue;
        }
        let Some((&escaped, tail)) = rest.split_first() else {
            bytes.push(b'\\');
            break;
        };
        rest = tail;
        match escaped {
            b'0'..=b'7' => {
                let digits: Vec<u8> = std::iter::once(escaped)
                    .chain(rest.iter().copied().take_while(u8::is_ascii_digit).take(2))
                    .collect();
                rest = &rest[digits.len() - 1..];
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                bytes.push(value as u8);
            }
            b'a' => bytes.push(0x07),
            b'b' => bytes.push(0x08),
            b't' => bytes.push(b'\t'),
            b'n' => bytes.push(b'\n'),
            b'v' => bytes.push(0x0b),
            b'f' => bytes.push(0x0c),
            b'r' => bytes.push(b'\r'),
            other => bytes.push(other),
        }
    }
    bytes
}

/// The encoding the poller decodes git's output with; fails for one we cannot decode.
pub(super) fn encoding_of(config: &GitPoller) -> anyhow::Result<TextEncoding> {
    TextEncoding::from_label(&config.encoding).with_context(|| {
        format!(
            "GitPoller '{}': encoding '{}' is not supported (use utf-8 or latin-1)",
            config.name, config.encoding
        )
    })
}

/// The next config; never once the poller's [`super::RunningSource`] is gone.
async fn next_config(updates: &mut watch::Receiver<GitPoller>) -> GitPoller {
    match updates.changed().await {
        Ok(()) => updates.borrow_and_update().clone(),
        Err(_) => pending().await,
    }
}

/// The text encodings `encoding` may name (Python codec names, any case, `_` or `-`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TextEncoding {
    Utf8,
    Latin1,
}

impl TextEncoding {
    fn from_label(label: &str) -> Option<TextEncoding> {
        match label.to_ascii_lowercase().replace('_', "-").as_str() {
            "utf-8" | "utf8" | "u8" | "ascii" | "us-ascii" => Some(TextEncoding::Utf8),
            "latin-1" | "latin1" | "l1" | "iso-8859-1" | "iso8859-1" | "8859" => {
                Some(TextEncoding::Latin1)
            }
            _ => None,
        }
    }

    fn decode(self, bytes: &[u8]) -> String {
        match self {
            TextEncoding::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
            TextEncoding::Latin1 => bytes.iter().map(|&b| char::from(b)).collect(),
        }
    }
}

/// `sshPrivateKey` and `sshHostKey`/`sshKnownHosts` written to a private directory of the
/// workdir for the length of one poll (removed on drop), and the ssh command that uses them.
struct SshFiles {
    dir: PathBuf,
    key: PathBuf,
    known_hosts: Option<PathBuf>,
}

impl SshFiles {
    async fn prepare(
        ctx: &Context,
        config: &GitPoller,
        workdir: &Path,
    ) -> anyhow::Result<Option<SshFiles>> {
        let Some(private_key) = &config.ssh_private_key else {
            return Ok(None);
        };
        let render = |renderable: &Renderable| {
            let pending = ctx.script.render(renderable, RenderData::default());
            async move { anyhow::Ok(display(&pending.await?)) }
        };
        let mut key = render(private_key)
            .await
            .context("option 'sshPrivateKey'")?;
        if !key.ends_with('\n') && !key.ends_with('\r') {
            key.push('\n');
        }
        let known_hosts = match (&config.ssh_host_key, &config.ssh_known_hosts) {
            (Some(host_key), _) => Some(format!(
                "* {}",
                render(host_key).await.context("option 'sshHostKey'")?
            )),
            (None, Some(known)) => Some(render(known).await.context("option 'sshKnownHosts'")?),
            (None, None) => None,
        };
        let dir = workdir.join(format!(
            ".moonbot-ssh-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let files = SshFiles {
            key: dir.join("ssh-key"),
            known_hosts: known_hosts.as_ref().map(|_| dir.join("ssh-known-hosts")),
            dir,
        };
        files
            .write(&key, known_hosts.as_deref())
            .with_context(|| format!("cannot write the ssh files in {}", files.dir.display()))?;
        Ok(Some(files))
    }

    fn write(&self, key: &str, known_hosts: Option<&str>) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        std::fs::DirBuilder::new().mode(0o700).create(&self.dir)?;
        let private = |path: &Path, text: &str| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?
                .write_all(text.as_bytes())
        };
        private(&self.key, key)?;
        if let (Some(path), Some(text)) = (&self.known_hosts, known_hosts) {
            private(path, text)?;
        }
        Ok(())
    }

    /// Buildbot's `getSshCommand`: batch mode, our key, our known hosts.
    fn command(&self) -> String {
        let mut command = format!("ssh -o BatchMode=yes -i \"{}\"", self.key.display());
        if let Some(known_hosts) = &self.known_hosts {
            command += &format!(" -o \"UserKnownHostsFile={}\"", known_hosts.display());
        }
        command
    }
}

impl Drop for SshFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_paths_come_back_as_bytes() {
        assert_eq!(unquote_path(b"plain.txt"), b"plain.txt");
        assert_eq!(
            TextEncoding::Utf8.decode(&unquote_path(br#""caf\303\251.txt""#)),
            "café.txt"
        );
        assert_eq!(unquote_path(br#""a\"b\\c\td""#), b"a\"b\\c\td");
    }

    #[test]
    fn tracker_refs_are_named_after_the_url() {
        assert_eq!(
            tracker_ref("https://example.org/a b~.git", "refs/heads/main"),
            "refs/buildbot/https%3A%2F%2Fexample.org%2Fa%20b%7E.git/heads/main"
        );
        assert_eq!(
            tracker_ref("/srv/r", "HEAD"),
            "refs/buildbot/raw/%2Fsrv%2Fr/HEAD"
        );
    }

    #[test]
    fn ssh_files_are_private_and_gone_after_the_poll() {
        use std::os::unix::fs::PermissionsExt as _;
        let workdir = tempfile::tempdir().unwrap();
        let dir = workdir.path().join(".moonbot-ssh-test");
        let files = SshFiles {
            key: dir.join("ssh-key"),
            known_hosts: Some(dir.join("ssh-known-hosts")),
            dir: dir.clone(),
        };
        files.write("KEY\n", Some("* ssh-ed25519 AAAA")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&files.key), 0o600);
        assert_eq!(std::fs::read_to_string(&files.key).unwrap(), "KEY\n");
        assert_eq!(
            files.command(),
            format!(
                "ssh -o BatchMode=yes -i \"{}\" -o \"UserKnownHostsFile={}\"",
                dir.join("ssh-key").display(),
                dir.join("ssh-known-hosts").display()
            )
        );
        drop(files);
        assert!(!dir.exists());
    }

    #[test]
    fn encodings_by_python_name() {
        assert_eq!(TextEncoding::from_label("UTF_8"), Some(TextEncoding::Utf8));
        assert_eq!(
            TextEncoding::from_label("ISO-8859-1"),
            Some(TextEncoding::Latin1)
        );
        assert_eq!(TextEncoding::Latin1.decode(&[0x63, 0xe9]), "cé");
        assert_eq!(TextEncoding::from_label("koi8-r"), None);
    }
}
