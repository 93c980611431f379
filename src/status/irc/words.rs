//! The bot's conversation (Buildbot's `words.py`): commands and their replies, read from
//! storage and carried out through `Control`, apart from the IRC connection.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Map, Value};

use crate::config::build::SchedulerConfig;
use crate::config::status::{IrcConfig, NotifyEvent};
use crate::db::Db;
use crate::model::BuildResult;
use crate::runtime::Context;

/// What the chat logic and the announcer share, kept across reconfigs.
pub struct Shared {
    pub name: String,
    pub config: RwLock<Arc<IrcConfig>>,
    pub subscriptions: Mutex<Subscriptions>,
    /// Who asked to hear about a build when it finishes (`watch`, `force build`).
    pub watches: Mutex<Vec<Watch>>,
    /// Channels joined by `join` (lowercase), announced to with the default events.
    pub joined: Mutex<BTreeSet<String>>,
}

/// A request to be told when a build (or a forced buildset's build) finishes.
#[derive(Clone, Debug, PartialEq)]
pub struct Watch {
    pub what: Watched,
    /// A channel or a nick.
    pub target: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Watched {
    Build(i64),
    Buildset(i64),
}

impl Shared {
    pub fn config(&self) -> Arc<IrcConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The events announced to `target` (a channel or a nick): what it chose with
    /// `notify`, else the config's `notify_events` for the configured channels and
    /// `pm_to_nicks` and channels joined by command, else none.
    pub fn events_of(&self, target: &str) -> BTreeSet<NotifyEvent> {
        let key = target.to_lowercase();
        let subscriptions = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(events) = subscriptions.0.get(&key) {
            return events.clone();
        }
        let config = self.config();
        let configured = config
            .channels
            .iter()
            .any(|c| c.channel.to_lowercase() == key)
            || config.pm_to_nicks.iter().any(|n| n.to_lowercase() == key)
            || self
                .joined
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&key);
        match configured {
            true => config.notify_events.clone(),
            false => BTreeSet::new(),
        }
    }

    /// Every target that may be announced to: configured channels and nicks, channels
    /// joined by command, and whoever chose events with `notify`.
    pub fn targets(&self) -> Vec<String> {
        let config = self.config();
        let mut seen = BTreeSet::new();
        let mut targets = Vec::new();
        let joined = self
            .joined
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let chosen: Vec<String> = self
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .keys()
            .cloned()
            .collect();
        let all = config
            .channels
            .iter()
            .map(|c| c.channel.clone())
            .chain(config.pm_to_nicks.iter().cloned())
            .chain(joined)
            .chain(chosen);
        for target in all {
            if seen.insert(target.to_lowercase()) {
                targets.push(target);
            }
        }
        targets
    }
}

/// Each target's chosen events (lowercase target to events), stored as the state
/// `status/NAME` `notify`, so that they survive reconnects, reconfigs and restarts.
#[derive(Clone, Debug, Default)]
pub struct Subscriptions(pub BTreeMap<String, BTreeSet<NotifyEvent>>);

const STATE_KEY: &str = "notify";

impl Subscriptions {
    pub async fn load(db: &Db, name: &str) -> anyhow::Result<Subscriptions> {
        let stored = db.get_state(&format!("status/{name}"), STATE_KEY).await?;
        let mut subscriptions = Subscriptions::default();
        let Some(Value::Object(targets)) = stored else {
            return Ok(subscriptions);
        };
        for (target, events) in targets {
            let events = events
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| NotifyEvent::parse(e.as_str()?))
                .collect();
            subscriptions.0.insert(target, events);
        }
        Ok(subscriptions)
    }

    async fn store(&self, db: &Db, name: &str) -> anyhow::Result<()> {
        let value: Map<String, Value> = self
            .0
            .iter()
            .map(|(target, events)| {
                let names = events.iter().map(|e| Value::from(e.to_string())).collect();
                (target.clone(), Value::Array(names))
            })
            .collect();
        db.set_state(&format!("status/{name}"), STATE_KEY, &Value::Object(value))
            .await?;
        Ok(())
    }
}

/// A command and who gave it where.
pub struct Request<'a> {
    pub from: &'a str,
    /// Where the reply goes: the channel, or the nick for a private message.
    pub reply_to: &'a str,
    pub text: &'a str,
}

/// What the bot answers, and what the connection must do.
#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    pub lines: Vec<String>,
    /// An error: sent as a NOTICE in a channel with `noticeOnChannel`.
    pub error: bool,
    pub join: Option<String>,
    pub leave: Option<String>,
}

impl Answer {
    fn say(text: impl Into<String>) -> Answer {
        Answer {
            lines: vec![text.into()],
            ..Answer::default()
        }
    }

    fn error(text: impl Into<String>) -> Answer {
        Answer {
            lines: vec![format!("Error: {}", text.into())],
            error: true,
            ..Answer::default()
        }
    }
}

const COMMANDS: &[(&str, &str)] = &[
    ("list", "list builders - List configured builders"),
    ("status", "status [BUILDER|all] - List status of a builder (or all builders)"),
    ("watch", "watch BUILDER - announce the completion of the running build"),
    ("last", "last BUILDER - the last build of a builder and its result"),
    ("join", "join CHANNEL - join another channel"),
    ("leave", "leave CHANNEL - leave a channel"),
    ("notify", "notify on|off|list [EVENT]... - announce events here: started, finished, success, warnings, failure, exception, and xToY transitions (successToFailure, ...)"),
    ("help", "help COMMAND - give help for a command, or 'help commands'"),
    ("force", "force build [--branch=BRANCH] [--revision=REVISION] [--props=K=V,...] BUILDER REASON - force a build"),
    ("stop", "stop build BUILDER REASON - stop a running build"),
    ("shutdown", "shutdown check|start|stop|now - shut the master down"),
    ("source", "source - the source code of this bot"),
    ("version", "version - the version of this bot"),
];

/// Answers one command.
pub async fn answer(ctx: &Context, shared: &Shared, request: &Request<'_>) -> Answer {
    let mut words = request.text.split_whitespace();
    let command = words.next().unwrap_or_default().to_lowercase();
    let args: Vec<&str> = words.collect();
    let config = shared.config();
    let result = match command.as_str() {
        "list" => list(ctx, &args).await,
        "status" => status(ctx, &args).await,
        "last" => last(ctx, &args).await,
        "watch" => watch(ctx, shared, request, &args).await,
        "join" => join(&args),
        "leave" => leave(&args),
        "notify" => notify(ctx, shared, request, &args).await,
        "help" => Ok(help(&args)),
        "force" if config.allow_force => force(ctx, shared, request, &args).await,
        "stop" if config.allow_force => stop(ctx, &args).await,
        "force" | "stop" => Err("force and stop are disabled (allowForce is false)".into()),
        "shutdown" if config.allow_shutdown => shutdown(ctx, &args).await,
        "shutdown" => Err("shutdown is disabled (allowShutdown is false)".into()),
        "source" => Ok(Answer::say(
            "moonbot, a Buildbot-style build master; its source comes with this master's \
             distribution (GPL-2.0)",
        )),
        "version" => Ok(Answer::say(format!(
            "moonbot version {}",
            env!("CARGO_PKG_VERSION")
        ))),
        "" => Err("say 'help commands' for what I understand".into()),
        other => Err(format!(
            "unrecognized command '{other}'; say 'help commands' for what I understand"
        )),
    };
    result.unwrap_or_else(Answer::error)
}

type Reply = Result<Answer, String>;

fn help(args: &[&str]) -> Answer {
    match args.first() {
        None | Some(&"commands") => {
            let names: Vec<&str> = COMMANDS.iter().map(|(name, _)| *name).collect();
            Answer::say(format!("Buildbot commands: {}", names.join(", ")))
        }
        Some(command) => match COMMANDS.iter().find(|(name, _)| name == command) {
            Some((_, usage)) => Answer::say(format!("Usage: {usage}")),
            None => Answer::error(format!("no such command '{command}'")),
        },
    }
}

async fn list(ctx: &Context, args: &[&str]) -> Reply {
    if args.first() != Some(&"builders") {
        return Err("try 'list builders'".into());
    }
    let names: Vec<String> = configured_builders(ctx);
    Ok(Answer::say(format!(
        "Configured builders: {}",
        names.join(" ")
    )))
}

fn configured_builders(ctx: &Context) -> Vec<String> {
    ctx.config
        .current()
        .builders
        .iter()
        .map(|b| b.name.clone())
        .collect()
}

/// The builder named `name`: its id, or an error naming the known ones.
async fn builder_id(ctx: &Context, name: Option<&&str>) -> Result<(String, i64), String> {
    let Some(name) = name else {
        return Err("name a builder (say 'list builders')".into());
    };
    let known = configured_builders(ctx);
    if !known.iter().any(|k| k == name) {
        return Err(format!("no such builder '{name}' (say 'list builders')"));
    }
    let id = ctx.db.builder_id(name).await.map_err(storage)?;
    Ok((name.to_string(), id))
}

async fn status(ctx: &Context, args: &[&str]) -> Reply {
    let names = match args.first() {
        None | Some(&"all") => configured_builders(ctx),
        Some(name) => vec![builder_id(ctx, Some(name)).await?.0],
    };
    let mut lines = Vec::with_capacity(names.len());
    for name in names {
        let id = ctx.db.builder_id(&name).await.map_err(storage)?;
        lines.push(builder_status(ctx, &name, id).await?);
    }
    Ok(Answer {
        lines,
        ..Answer::default()
    })
}

/// `NAME: idle, last build #N success` or what its running builds are doing: their current
/// step and the time left, from the average duration of its last finished builds.
async fn builder_status(ctx: &Context, name: &str, id: i64) -> Result<String, String> {
    let pool = &ctx.db.pool;
    let running: Vec<(i64, i64, f64)> = sqlx::query_as(
        "SELECT id, number, started_at FROM builds WHERE builderid = $1 AND complete_at IS NULL \
         ORDER BY number",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .map_err(storage)?;
    if running.is_empty() {
        let queued: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM buildrequests WHERE builderid = $1 AND complete = 0",
        )
        .bind(id)
        .fetch_one(pool)
        .await
        .map_err(storage)?;
        let last = match last_build(ctx, id).await? {
            Some((number, results, _)) => {
                format!(", last build #{number}: {}", results_name(results))
            }
            None => String::new(),
        };
        let queued = match queued {
            0 => String::new(),
            n => format!(", {n} pending"),
        };
        return Ok(format!("{name}: idle{last}{queued}"));
    }
    let average: Option<f64> = sqlx::query_scalar(
        "SELECT AVG(complete_at - started_at) FROM (SELECT complete_at, started_at FROM builds \
         WHERE builderid = $1 AND complete_at IS NOT NULL ORDER BY number DESC LIMIT 3) AS recent",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .map_err(storage)?;
    let mut parts = Vec::new();
    for (buildid, number, started_at) in running {
        let step: Option<String> = sqlx::query_scalar(
            "SELECT name FROM steps WHERE buildid = $1 AND started_at IS NOT NULL \
             AND complete_at IS NULL ORDER BY number DESC LIMIT 1",
        )
        .bind(buildid)
        .fetch_optional(pool)
        .await
        .map_err(storage)?;
        let mut part = format!("build #{number}");
        if let Some(step) = step {
            part.push_str(&format!(" (step {step})"));
        }
        if let Some(average) = average {
            let left = (started_at + average - crate::db::now()).max(0.0);
            part.push_str(&format!(", ETA {}", duration(left)));
        }
        parts.push(part);
    }
    Ok(format!("{name}: running {}", parts.join(", ")))
}

/// The builder's last finished build: number, result, when it finished.
async fn last_build(ctx: &Context, id: i64) -> Result<Option<(i64, Option<i64>, f64)>, String> {
    sqlx::query_as(
        "SELECT number, results, complete_at FROM builds WHERE builderid = $1 \
         AND complete_at IS NOT NULL ORDER BY number DESC LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&ctx.db.pool)
    .await
    .map_err(storage)
}

fn results_name(code: Option<i64>) -> &'static str {
    code.and_then(BuildResult::from_code)
        .map_or("unknown", BuildResult::name)
}

/// A storage error: logged in full, answered without internals.
fn storage(error: impl std::fmt::Display) -> String {
    tracing::warn!("IRC: cannot read storage for a command: {error}");
    "cannot read the build database right now".into()
}

/// `3m 20s`, `45s`, `2h 5m`.
pub fn duration(seconds: f64) -> String {
    let seconds = seconds.round() as u64;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m {}s", seconds / 60, seconds % 60),
        _ => format!("{}h {}m", seconds / 3600, seconds % 3600 / 60),
    }
}

async fn last(ctx: &Context, args: &[&str]) -> Reply {
    let (name, id) = builder_id(ctx, args.first()).await?;
    Ok(Answer::say(match last_build(ctx, id).await? {
        None => format!("{name}: no builds yet"),
        Some((number, results, complete_at)) => format!(
            "last build #{number} of {name}: {}, finished {} ago",
            results_name(results),
            duration(crate::db::now() - complete_at)
        ),
    }))
}

async fn watch(ctx: &Context, shared: &Shared, request: &Request<'_>, args: &[&str]) -> Reply {
    let (name, id) = builder_id(ctx, args.first()).await?;
    let running: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT id, number FROM builds WHERE builderid = $1 AND complete_at IS NULL ORDER BY number",
    )
    .bind(id)
    .fetch_all(&ctx.db.pool)
    .await
    .map_err(storage)?;
    if running.is_empty() {
        return Ok(Answer::say(format!("{name}: no build is running")));
    }
    let mut watches = shared.watches.lock().unwrap_or_else(|e| e.into_inner());
    let mut numbers = Vec::new();
    for (buildid, number) in running {
        watches.push(Watch {
            what: Watched::Build(buildid),
            target: request.reply_to.to_string(),
        });
        numbers.push(format!("#{number}"));
    }
    Ok(Answer::say(format!(
        "watching build {} of {name} until it finishes",
        numbers.join(", ")
    )))
}

fn join(args: &[&str]) -> Reply {
    match args.first() {
        Some(channel) if channel.starts_with(['#', '&', '+', '!']) => Ok(Answer {
            lines: vec![format!("joining {channel}")],
            join: Some(channel.to_string()),
            ..Answer::default()
        }),
        _ => Err("try 'join #CHANNEL'".into()),
    }
}

fn leave(args: &[&str]) -> Reply {
    match args.first() {
        Some(channel) if channel.starts_with(['#', '&', '+', '!']) => Ok(Answer {
            lines: vec![format!("leaving {channel}")],
            leave: Some(channel.to_string()),
            ..Answer::default()
        }),
        _ => Err("try 'leave #CHANNEL'".into()),
    }
}

async fn notify(ctx: &Context, shared: &Shared, request: &Request<'_>, args: &[&str]) -> Reply {
    let (action, names) = args
        .split_first()
        .ok_or("try 'notify on|off|list [EVENT]...'")?;
    let mut events = shared.events_of(request.reply_to);
    match *action {
        "list" => {}
        "on" | "off" => {
            let mut named = Vec::new();
            for name in names {
                named.push(NotifyEvent::parse(name).ok_or_else(|| {
                    format!("unknown event '{name}' (say 'help notify' for the events)")
                })?);
            }
            if named.is_empty() {
                return Err(format!("try 'notify {action} EVENT...'"));
            }
            for event in named {
                match *action {
                    "on" => events.insert(event),
                    _ => events.remove(&event),
                };
            }
            let snapshot = {
                let mut subscriptions = shared
                    .subscriptions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                subscriptions
                    .0
                    .insert(request.reply_to.to_lowercase(), events.clone());
                subscriptions.clone()
            };
            snapshot
                .store(&ctx.db, &shared.name)
                .await
                .map_err(|e| format!("cannot save the subscription: {e}"))?;
        }
        _ => return Err("try 'notify on|off|list [EVENT]...'".into()),
    }
    let names: Vec<String> = events.iter().map(ToString::to_string).collect();
    Ok(Answer::say(match names.is_empty() {
        true => "No events are being notified.".to_string(),
        false => format!(
            "The following events are being notified: {}",
            names.join(", ")
        ),
    }))
}

/// `force build [--branch=B] [--revision=R] [--props=K=V,...] BUILDER REASON` through the
/// first ForceScheduler that lists the builder, owned by the nick that asked.
async fn force(ctx: &Context, shared: &Shared, request: &Request<'_>, args: &[&str]) -> Reply {
    let usage = "try 'force build [--branch=BRANCH] [--revision=REVISION] [--props=K=V,...] BUILDER REASON'";
    let (first, rest) = args.split_first().ok_or(usage)?;
    if *first != "build" {
        return Err(usage.into());
    }
    let mut params = Map::new();
    let mut properties = Vec::new();
    let mut rest = rest.iter().peekable();
    while let Some(option) = rest.next_if(|word| word.starts_with("--")) {
        let (key, value) = option[2..].split_once('=').ok_or(usage)?;
        match key {
            "branch" | "revision" => {
                params.insert(key.to_string(), Value::from(value));
            }
            "props" => {
                for pair in value.split(',').filter(|p| !p.is_empty()) {
                    let (name, value) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("property '{pair}' is not NAME=VALUE"))?;
                    properties.push(name);
                    params.insert(name.to_string(), Value::from(value));
                }
            }
            other => return Err(format!("unknown option '--{other}'; {usage}")),
        }
    }
    let builder = rest.next().ok_or(usage)?;
    let (builder, _) = builder_id(ctx, Some(builder)).await?;
    let reason: Vec<&str> = rest.copied().collect();
    let current = ctx.config.current();
    let scheduler = current
        .schedulers
        .iter()
        .find_map(|s| match s {
            SchedulerConfig::Force(force) if force.base.builder_names.contains(&builder) => {
                Some(force)
            }
            _ => None,
        })
        .ok_or_else(|| format!("no ForceScheduler builds {builder}"))?;
    // A ForceScheduler sets only the properties it has fields for, as its web form does.
    if let Some(unknown) = properties
        .iter()
        .find(|name| !scheduler.properties.iter().any(|p| p.name == **name))
    {
        return Err(format!(
            "the ForceScheduler '{}' has no property '{unknown}'",
            scheduler.base.name
        ));
    }
    let scheduler = scheduler.base.name.clone();
    params.insert("builderNames".into(), Value::from(vec![builder.clone()]));
    params.insert("owner".into(), Value::from(request.from));
    params.insert("reason".into(), Value::from(reason.join(" ")));
    let (bsid, _) = ctx
        .control
        .force(&scheduler, params)
        .await
        .map_err(|e| format!("cannot force {builder}: {e}"))?;
    shared
        .watches
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Watch {
            what: Watched::Buildset(bsid),
            target: request.reply_to.to_string(),
        });
    Ok(Answer::say(format!(
        "build of {builder} forced (buildset {bsid}); I'll tell you when it finishes"
    )))
}

async fn stop(ctx: &Context, args: &[&str]) -> Reply {
    let usage = "try 'stop build BUILDER REASON'";
    let (first, rest) = args.split_first().ok_or(usage)?;
    if *first != "build" {
        return Err(usage.into());
    }
    let (builder, id) = builder_id(ctx, rest.first()).await?;
    let reason = rest[1..].join(" ");
    let running: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT id, number FROM builds WHERE builderid = $1 AND complete_at IS NULL ORDER BY number",
    )
    .bind(id)
    .fetch_all(&ctx.db.pool)
    .await
    .map_err(storage)?;
    if running.is_empty() {
        return Err(format!("no build of {builder} is running"));
    }
    let mut lines = Vec::new();
    for (buildid, number) in running {
        ctx.control
            .stop_build(buildid, format!("stopped from IRC: {reason}"))
            .await
            .map_err(|e| format!("cannot stop build #{number} of {builder}: {e}"))?;
        lines.push(format!("build #{number} of {builder} interrupted"));
    }
    Ok(Answer {
        lines,
        ..Answer::default()
    })
}

/// `start` is a clean shutdown (no new builds; the master stops when the running ones
/// end), which `stop` calls off; `now` shuts down at once, running builds getting
/// `SHUTDOWN_GRACE` to finish, and cannot be called off.
async fn shutdown(ctx: &Context, args: &[&str]) -> Reply {
    let clean = |set| async move {
        ctx.control
            .clean_shutdown(set)
            .await
            .map_err(|e| format!("cannot reach the engine: {e}"))
    };
    let line = match args.first().copied() {
        Some(_) if ctx.shutdown.is_cancelled() => match args[0] {
            "check" => "The master is shutting down now".to_string(),
            _ => {
                return Err("the master is already shutting down; that cannot be called off".into())
            }
        },
        Some("check") => match clean(None).await? {
            true => "A clean shutdown is under way: the master stops when the running builds end",
            false => "No shutdown in progress",
        }
        .to_string(),
        Some("start") => {
            clean(Some(true)).await?;
            "Clean shutdown started: no new builds start, and the master stops when the running ones end".into()
        }
        Some("stop") => match clean(None).await? {
            true => {
                clean(Some(false)).await?;
                "Clean shutdown called off: builds start again".into()
            }
            false => "No shutdown in progress".into(),
        },
        Some("now") => {
            ctx.shutdown.cancel();
            format!(
                "Shutting down now: running builds get {} s to finish",
                crate::engine::SHUTDOWN_GRACE.as_secs()
            )
        }
        _ => return Err("try 'shutdown check|start|stop|now'".into()),
    };
    Ok(Answer::say(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(4.4), "4s");
        assert_eq!(duration(200.0), "3m 20s");
        assert_eq!(duration(7500.0), "2h 5m");
    }

    #[test]
    fn help_lists_every_command_and_explains_one() {
        let all = help(&["commands"]).lines.concat();
        for (name, _) in COMMANDS {
            assert!(all.contains(name), "{name}");
        }
        assert!(help(&["notify"]).lines[0].starts_with("Usage: notify on|off|list"));
        assert!(help(&["dance"]).error);
    }
}
