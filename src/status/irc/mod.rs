//! `status.IRC`: a bot that answers questions about builds, forces and stops them when
//! allowed, and announces builds to channels and nicks.
//!
//! As Buildbot keeps `words.py` apart from `irc.py`, the conversation ([`words`]) is apart
//! from the connection ([`connection`]). Commands are answered over the live connection.
//! Announcements go through the shared pipeline: the generator hands started and finished
//! builds (with the `tags` filter) to the [`Announcer`], which decides with each target's
//! notify events (its own choice, stored, or the config's defaults) who hears of them and
//! writes one outbox message per build, event and target (keyed so it is never repeated);
//! the outbox's delivery task sends them over the kept connection ([`IrcTransport`]), so
//! what is announced while the bot is disconnected goes out after it reconnects. The same
//! words go to a channel or nick at most once a minute.

pub mod connection;
pub mod words;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::connection::{Connection, Incoming, Link, Settings};
use self::words::{Request, Shared, Subscriptions, Watched};
use super::generator::{Finished, Report, Reporter, Wanted};
use super::outbox::{Outcome, Transport};
use super::{snapshot, Pipeline};
use crate::config::same_options;
use crate::config::status::{IrcChannel, IrcConfig, NotifyEvent};
use crate::db::{NewMessage, OutboxMessage};
use crate::model::{BuildInfo, BuildResult, MasterInfo};
use crate::runtime::{Context, Reconfigured, Service};

/// A running IRC bot.
pub struct Irc {
    pipeline: Pipeline<Announcer, IrcTransport>,
    connection: Connection,
    link: Link,
    shared: Arc<Shared>,
    /// Kept across reconfigs, which replace the transport.
    recent: Arc<Mutex<RecentAnnouncements>>,
    conversation: JoinHandle<()>,
    /// Cancelled first when stopping, so that delivery stops waiting for a connection.
    closing: CancellationToken,
}

impl Service for Irc {
    type Config = IrcConfig;

    fn name_of(config: &IrcConfig) -> &str {
        config.name.as_deref().unwrap_or("IRC")
    }

    async fn start(ctx: &Context, config: &IrcConfig) -> anyhow::Result<Irc> {
        let name = Irc::name_of(config).to_string();
        let shared = Arc::new(Shared {
            name: name.clone(),
            config: RwLock::new(Arc::new(config.clone())),
            subscriptions: Mutex::new(Subscriptions::load(&ctx.db, &name).await?),
            watches: Mutex::new(Vec::new()),
            joined: Mutex::new(BTreeSet::new()),
        });
        let (incoming, commands) = mpsc::unbounded_channel();
        let (connection, link) = Connection::spawn(name.clone(), Settings::new(config), incoming);
        let conversation = tokio::spawn(converse(
            ctx.clone(),
            shared.clone(),
            link.clone(),
            commands,
        ));
        let closing = CancellationToken::new();
        let recent = Arc::new(Mutex::new(RecentAnnouncements::default()));
        let transport = IrcTransport {
            link: link.clone(),
            closing: closing.clone(),
            recent: recent.clone(),
        };
        let announcer = Announcer::new(ctx, shared.clone()).await?;
        Ok(Irc {
            pipeline: Pipeline::start(ctx, &name, announcer, transport),
            connection,
            link,
            shared,
            recent,
            conversation,
            closing,
        })
    }

    /// Keeps the connection unless the server, the nick or the login changed; joins and
    /// leaves channels in place. Subscriptions and queued announcements stay.
    async fn reconfigure(
        &mut self,
        ctx: &Context,
        config: &IrcConfig,
    ) -> anyhow::Result<Reconfigured> {
        let unchanged = same_options(self.shared.config().as_ref(), config);
        *self
            .shared
            .config
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(config.clone());
        self.link.reconfigure(Settings::new(config));
        let transport = IrcTransport {
            link: self.link.clone(),
            closing: self.closing.clone(),
            recent: self.recent.clone(),
        };
        let announcer = Announcer::new(ctx, self.shared.clone()).await?;
        self.pipeline.replace(ctx, announcer, transport);
        Ok(match unchanged {
            true => Reconfigured::Unchanged,
            false => Reconfigured::Changed,
        })
    }

    /// Delivers what can go now, then says QUIT; the rest stays in the outbox.
    async fn stop(self) {
        self.closing.cancel();
        self.pipeline.stop().await;
        self.connection.stop().await;
        let _ = self.conversation.await;
    }
}

/// Answers each command as it comes, each in its own task: a slow answer (a force waits
/// for the engine) holds up no other.
async fn converse(
    ctx: Context,
    shared: Arc<Shared>,
    link: Link,
    mut commands: mpsc::UnboundedReceiver<Incoming>,
) {
    while let Some(incoming) = commands.recv().await {
        let (ctx, shared, link) = (ctx.clone(), shared.clone(), link.clone());
        tokio::spawn(async move {
            let reply_to = incoming.channel.as_deref().unwrap_or(&incoming.from);
            let request = Request {
                from: &incoming.from,
                reply_to,
                text: &incoming.text,
            };
            let answer = words::answer(&ctx, &shared, &request).await;
            if let Some(channel) = answer.join {
                shared
                    .joined
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(channel.to_lowercase());
                link.join(IrcChannel {
                    channel,
                    password: None,
                });
            }
            if let Some(channel) = answer.leave {
                shared
                    .joined
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&channel.to_lowercase());
                link.leave(channel);
            }
            let notice =
                answer.error && incoming.channel.is_some() && shared.config().notice_on_channel;
            for line in answer.lines {
                link.say(Some(incoming.generation), reply_to, &line, notice);
            }
        });
    }
}

/// Turns started and finished builds into announcements in the outbox.
struct Announcer {
    shared: Arc<Shared>,
    config: Arc<IrcConfig>,
    master: Arc<MasterInfo>,
    wanted: Wanted,
}

impl Reporter for Announcer {
    fn wanted(&self) -> &Wanted {
        &self.wanted
    }

    async fn report(&self, ctx: &Context, report: Report) -> anyhow::Result<bool> {
        match report {
            Report::Started { buildid, build } => {
                let text = format!("{} started", self.build_name(&build, "of"));
                let fired = BTreeSet::from([NotifyEvent::Started]);
                self.announce(ctx, buildid, "started", &fired, &[], &text)
                    .await
            }
            Report::Finished(finished) => self.finished(ctx, finished).await,
            Report::BuildsetComplete { .. } => Ok(false),
        }
    }
}

impl Announcer {
    async fn new(ctx: &Context, shared: Arc<Shared>) -> anyhow::Result<Announcer> {
        let config = shared.config();
        Ok(Announcer {
            master: super::master_info(&ctx.db, &ctx.config.current()).await?,
            wanted: Wanted {
                started: true,
                finished: true,
                tags: config.tags.clone(),
                ..Wanted::default()
            },
            config,
            shared,
        })
    }

    async fn finished(&self, ctx: &Context, finished: Finished) -> anyhow::Result<bool> {
        let Finished {
            buildid,
            build,
            results,
            ..
        } = finished;
        let previous = snapshot::previous_finished(&ctx.db, build.builder.id, build.number)
            .await?
            .and_then(|(_, results)| results);
        let fired = fired_events(results, previous);
        let bsid: i64 = sqlx::query_scalar(
            "SELECT r.buildsetid FROM builds b JOIN buildrequests r ON r.id = b.buildrequestid \
             WHERE b.id = $1",
        )
        .bind(buildid)
        .fetch_one(&ctx.db.pool)
        .await?;
        let watchers: Vec<String> = {
            let mut watches = self
                .shared
                .watches
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let (matching, rest) = std::mem::take(&mut *watches).into_iter().partition(|w| {
                matches!(w.what, Watched::Build(id) if id == buildid)
                    || matches!(w.what, Watched::Buildset(id) if id == bsid)
            });
            *watches = rest;
            matching
                .into_iter()
                .map(|w: words::Watch| w.target)
                .collect()
        };
        let text = self.finished_text(&build, results);
        self.announce(ctx, buildid, "finished", &fired, &watchers, &text)
            .await
    }

    /// `build #12 of NAME`, or with `useRevisions` `build containing revision(s) [abc1234]
    /// on NAME` (`of`/`on` is `preposition` for the number form).
    fn build_name(&self, build: &BuildInfo, preposition: &str) -> String {
        let revisions: Vec<String> = build
            .sourcestamps
            .iter()
            .filter_map(|ss| ss.revision.as_deref())
            .map(short_revision)
            .collect();
        let builder = &build.builder.name;
        match self.config.use_revisions && !revisions.is_empty() {
            true => format!(
                "build containing revision(s) [{}] on {builder}",
                revisions.join(", ")
            ),
            false => format!("build #{} {preposition} {builder}", build.number),
        }
    }

    fn finished_text(&self, build: &BuildInfo, results: BuildResult) -> String {
        let mut text = format!(
            "{} is complete: {}",
            self.build_name(build, "of"),
            self.colored(results)
        );
        if !build.text.is_empty() {
            text.push_str(&format!(" [{}]", build.text.join(" ")));
        }
        text.push_str(&format!(
            " - {}",
            self.master.build_url(build.builder.id, build.number)
        ));
        if self.config.show_blame_list {
            let blamed = responsible_users(build);
            if !blamed.is_empty() {
                text.push_str(&format!(" - Blamelist: {}", blamed.join(", ")));
            }
        }
        text
    }

    /// The result's name, in its mIRC colour with `useColors`.
    fn colored(&self, results: BuildResult) -> String {
        let name = capitalized(results.name());
        if !self.config.use_colors {
            return name;
        }
        let color = match results {
            BuildResult::Success => "03",
            BuildResult::Warnings => "07",
            BuildResult::Failure => "04",
            BuildResult::Exception => "06",
            _ => "14",
        };
        format!("\x03{color}{name}\x0f")
    }

    /// Writes one message per target that wants one of `fired` or watches the build.
    async fn announce(
        &self,
        ctx: &Context,
        buildid: i64,
        what: &str,
        fired: &BTreeSet<NotifyEvent>,
        watchers: &[String],
        text: &str,
    ) -> anyhow::Result<bool> {
        let mut targets: Vec<String> = self
            .shared
            .targets()
            .into_iter()
            .filter(|target| !self.shared.events_of(target).is_disjoint(fired))
            .collect();
        for watcher in watchers {
            if !targets.iter().any(|t| t.eq_ignore_ascii_case(watcher)) {
                targets.push(watcher.clone());
            }
        }
        let mut written = false;
        for target in targets {
            let added = ctx
                .db
                .add_outbox_message(&NewMessage {
                    reporter: self.shared.name.clone(),
                    kind: "irc".into(),
                    dedup_key: format!("build:{buildid}:{what}:{}", target.to_lowercase()),
                    summary: format!("{what} build {buildid} to {target}"),
                    meta: json!({ "to": target }),
                    body: text.as_bytes().to_vec(),
                })
                .await?;
            written |= added.is_some();
        }
        Ok(written)
    }
}

/// The notify events a finished build fires: `finished`, its result's, and the `xToY`
/// transition from the previous finished build's result when that differs.
pub fn fired_events(results: BuildResult, previous: Option<BuildResult>) -> BTreeSet<NotifyEvent> {
    let mut fired = BTreeSet::from([NotifyEvent::Finished]);
    let own = |result: BuildResult| match result {
        BuildResult::Success => Some(NotifyEvent::Success),
        BuildResult::Warnings => Some(NotifyEvent::Warnings),
        BuildResult::Failure => Some(NotifyEvent::Failure),
        BuildResult::Exception => Some(NotifyEvent::Exception),
        _ => None,
    };
    fired.extend(own(results));
    if let Some(previous) = previous.filter(|&p| p != results) {
        if own(previous).is_some() && own(results).is_some() {
            fired.insert(NotifyEvent::Transition {
                from: previous,
                to: results,
            });
        }
    }
    fired
}

/// A revision as people quote it: commit hashes cut to 7 characters.
fn short_revision(revision: &str) -> String {
    match revision.len() > 7 && revision.chars().all(|c| c.is_ascii_hexdigit()) {
        true => revision[..7].to_string(),
        false => revision.to_string(),
    }
}

/// The authors of the build's changes and its owners (who forced it), each once.
fn responsible_users(build: &BuildInfo) -> Vec<String> {
    let mut users: Vec<String> = build.changes().map(|c| c.who.clone()).collect();
    for name in ["owner", "owners"] {
        match build.properties.get(name) {
            Some(serde_json::Value::String(owner)) => users.push(owner.clone()),
            Some(serde_json::Value::Array(owners)) => {
                users.extend(owners.iter().filter_map(|o| o.as_str().map(String::from)))
            }
            _ => {}
        }
    }
    let mut seen = BTreeSet::new();
    users.retain(|user| !user.is_empty() && seen.insert(user.clone()));
    users
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// Sends announcements over the bot's connection, which it keeps between batches: opening a
/// session waits for the connection to be up, so what was announced while it was down goes
/// out once it is back.
struct IrcTransport {
    link: Link,
    closing: CancellationToken,
    recent: Arc<Mutex<RecentAnnouncements>>,
}

/// How long an announcement said to a channel or nick keeps the same words from being
/// said there again: two builds of one revision starting together (with `useRevisions`),
/// or a backlog sent after a reconnect, are heard once.
const REPEAT_WINDOW: Duration = Duration::from_secs(60);

/// The announcements said within [`REPEAT_WINDOW`], by target (lowercased) and text.
#[derive(Default)]
struct RecentAnnouncements {
    said: HashMap<(String, String), Instant>,
}

impl RecentAnnouncements {
    /// Whether `text` was said to `to` within the window; if not, it counts as said now.
    fn is_repeat(&mut self, to: &str, text: &str, now: Instant) -> bool {
        self.said
            .retain(|_, at| now.duration_since(*at) < REPEAT_WINDOW);
        let key = (to.to_lowercase(), text.to_string());
        match self.said.contains_key(&key) {
            true => true,
            false => {
                self.said.insert(key, now);
                false
            }
        }
    }
}

impl Transport for IrcTransport {
    /// The generation of the connection the session is on.
    type Session = u64;
    const KEEP_IDLE: Duration = Duration::MAX;

    async fn open(&self) -> Result<u64, String> {
        tokio::select! {
            up = self.link.wait_up() => up.ok_or_else(|| "the IRC connection has stopped".to_string()),
            () = self.closing.cancelled() => Err("the IRC bot is stopping".into()),
        }
    }

    async fn send(&self, session: &mut u64, message: &OutboxMessage) -> Outcome {
        let Some(to) = message.meta["to"].as_str() else {
            return Outcome::Refused("the message names no channel or nick".into());
        };
        let text = String::from_utf8_lossy(&message.body);
        let repeat = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_repeat(to, &text, Instant::now());
        if repeat {
            tracing::debug!(to, "announcement said there within a minute; not repeated");
            return Outcome::Accepted;
        }
        for written in self.link.say(Some(*session), to, &text, false) {
            if written.await.is_err() {
                return Outcome::Broken("the IRC connection broke before the message went".into());
            }
        }
        Outcome::Accepted
    }

    /// The connection is the bot's, not the session's: it stays up.
    async fn close(&self, _session: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use BuildResult::*;

    fn names(fired: BTreeSet<NotifyEvent>) -> Vec<String> {
        fired.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_finished_build_fires_its_result_and_the_change_from_the_previous_one() {
        assert_eq!(names(fired_events(Success, None)), ["finished", "success"]);
        assert_eq!(
            names(fired_events(Failure, Some(Failure))),
            ["finished", "failure"]
        );
        assert_eq!(
            names(fired_events(Failure, Some(Success))),
            ["finished", "failure", "successToFailure"]
        );
        assert_eq!(
            names(fired_events(Warnings, Some(Exception))),
            ["finished", "warnings", "exceptionToWarnings"]
        );
    }

    #[test]
    fn the_same_words_to_the_same_target_are_said_once_a_minute() {
        let mut recent = RecentAnnouncements::default();
        let start = Instant::now();
        assert!(!recent.is_repeat("#ci", "build #1 of b started", start));
        assert!(recent.is_repeat(
            "#CI",
            "build #1 of b started",
            start + Duration::from_secs(59)
        ));
        assert!(!recent.is_repeat("#other", "build #1 of b started", start));
        assert!(!recent.is_repeat("#ci", "build #2 of b started", start));
        assert!(!recent.is_repeat("#ci", "build #1 of b started", start + REPEAT_WINDOW));
    }

    #[test]
    fn revisions_are_shortened_only_when_they_are_hashes() {
        assert_eq!(short_revision("0123456789abcdef"), "0123456");
        assert_eq!(short_revision("v1.2.3-rc1"), "v1.2.3-rc1");
        assert_eq!(short_revision("abc"), "abc");
    }
}
