//! `status.IRC`: a bot that answers status queries and announces builds on IRC.

use std::collections::BTreeSet;
use std::fmt;

use mlua::{Lua, MultiValue, Value};

use super::shared::{filter_list, read_name};
use super::StatusTarget;
use crate::config::errors::unknown;
use crate::config::kwargs::{constructor, describe};
use crate::config::{define, Kwargs, Location, Namespaces};
use crate::model::BuildResult;

/// `status.IRC(host, nick, {...})`.
#[derive(Clone, Debug)]
pub struct IrcConfig {
    pub name: Option<String>,
    pub host: String,
    pub nick: String,
    pub channels: Vec<IrcChannel>,
    /// Nicks sent the announcements privately.
    pub pm_to_nicks: Vec<String>,
    pub port: u16,
    /// Enables `force build` and `stop build`.
    pub allow_force: bool,
    /// Enables `shutdown`.
    pub allow_shutdown: bool,
    /// Builder tags announced (`tags`, formerly `categories`); empty, all.
    pub tags: Vec<String>,
    /// Sent to NickServ to claim the nick, or used for SASL PLAIN when the server offers it.
    pub password: Option<String>,
    /// Log in with SASL PLAIN or not at all: a server that does not offer it, or refuses the
    /// login, is a failed connection.
    pub use_sasl: bool,
    /// What is announced unasked.
    pub notify_events: BTreeSet<NotifyEvent>,
    /// Errors go to the channel as notices rather than messages.
    pub notice_on_channel: bool,
    pub show_blame_list: bool,
    /// Name builds by their revisions rather than their numbers.
    pub use_revisions: bool,
    pub use_ssl: bool,
    /// Seconds before reconnecting after a lost connection; absent, random in 1..5.
    pub lost_delay: Option<f64>,
    /// Seconds before reconnecting after a failed connection; absent, random in 45..60.
    pub failed_delay: Option<f64>,
    pub use_colors: bool,
    pub location: Location,
}

/// A channel to join, with its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IrcChannel {
    pub channel: String,
    pub password: Option<String>,
}

/// A build event the bot can announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NotifyEvent {
    Started,
    Finished,
    Success,
    Warnings,
    Failure,
    Exception,
    /// `successToFailure` and the like: the previous build had `from`, this one `to`.
    Transition {
        from: BuildResult,
        to: BuildResult,
    },
}

/// The results `xToY` events name.
const TRANSITION_RESULTS: [BuildResult; 4] = [
    BuildResult::Success,
    BuildResult::Warnings,
    BuildResult::Failure,
    BuildResult::Exception,
];

impl NotifyEvent {
    pub fn parse(name: &str) -> Option<NotifyEvent> {
        let simple = match name {
            "started" => Some(NotifyEvent::Started),
            "finished" => Some(NotifyEvent::Finished),
            "success" => Some(NotifyEvent::Success),
            "warnings" => Some(NotifyEvent::Warnings),
            "failure" => Some(NotifyEvent::Failure),
            "exception" => Some(NotifyEvent::Exception),
            _ => None,
        };
        simple.or_else(|| {
            let (from, to) = name.split_once("To")?;
            let from = TRANSITION_RESULTS.into_iter().find(|r| r.name() == from)?;
            let to = TRANSITION_RESULTS
                .into_iter()
                .find(|r| capitalized(r.name()) == to)?;
            Some(NotifyEvent::Transition { from, to })
        })
    }

    /// Every event name, for "did you mean".
    fn all_names() -> Vec<String> {
        let mut names: Vec<String> = [
            "started",
            "finished",
            "success",
            "warnings",
            "failure",
            "exception",
        ]
        .map(String::from)
        .into();
        for from in TRANSITION_RESULTS {
            for to in TRANSITION_RESULTS {
                names.push(NotifyEvent::Transition { from, to }.to_string());
            }
        }
        names
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

impl fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyEvent::Started => f.write_str("started"),
            NotifyEvent::Finished => f.write_str("finished"),
            NotifyEvent::Success => f.write_str("success"),
            NotifyEvent::Warnings => f.write_str("warnings"),
            NotifyEvent::Failure => f.write_str("failure"),
            NotifyEvent::Exception => f.write_str("exception"),
            NotifyEvent::Transition { from, to } => {
                write!(f, "{}To{}", from.name(), capitalized(to.name()))
            }
        }
    }
}

pub const IRC_OPTIONS: &[&str] = &[
    "host",
    "nick",
    "channels",
    "pm_to_nicks",
    "port",
    "allowForce",
    "allowShutdown",
    "tags",
    "categories",
    "password",
    "useSASL",
    "notify_events",
    "noticeOnChannel",
    "showBlameList",
    "useRevisions",
    "useSSL",
    "lostDelay",
    "failedDelay",
    "useColors",
    "name",
];
const CHANNEL_OPTIONS: &[&str] = &["channel", "password"];

pub fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    define(
        &ns.status,
        "IRC",
        constructor(lua, "status.IRC", parse_irc)?,
    )
}

fn parse_irc(lua: &Lua, args: MultiValue) -> Option<StatusTarget> {
    // Buildbot also takes `channels` third, but then a table of misspelt options would pass for
    // a list of channels; the spec always names it.
    let mut kw = Kwargs::new(lua, "IRC", args, &["host", "nick"], IRC_OPTIONS);
    let name = read_name(&mut kw);
    let host: String = kw.required("host");
    let nick: String = kw.required("nick");
    let (channels, channels_ok) = read_channels(&mut kw);
    let notify_events = read_notify_events(&mut kw);
    let lost_delay = read_delay(&mut kw, "lostDelay");
    let failed_delay = read_delay(&mut kw, "failedDelay");
    let config = IrcConfig {
        name,
        host,
        nick,
        channels,
        pm_to_nicks: kw.optional("pm_to_nicks").unwrap_or_default(),
        port: kw.optional_or("port", 6667),
        allow_force: kw.optional_or("allowForce", false),
        allow_shutdown: kw.optional_or("allowShutdown", false),
        tags: filter_list(&mut kw, &["tags", "categories"]),
        password: kw.optional("password"),
        use_sasl: kw.optional_or("useSASL", false),
        notify_events,
        notice_on_channel: kw.optional_or("noticeOnChannel", false),
        show_blame_list: kw.optional_or("showBlameList", true),
        use_revisions: kw.optional_or("useRevisions", false),
        use_ssl: kw.optional_or("useSSL", false),
        lost_delay,
        failed_delay,
        use_colors: kw.optional_or("useColors", true),
        location: kw.location(),
    };
    if config.use_sasl && config.password.is_none() {
        kw.error("option 'useSASL' needs 'password', the account's password");
    }
    let ok = kw.finish();
    (ok && channels_ok).then(|| StatusTarget::Irc(Box::new(config)))
}

/// `channels`: `{"#a", {channel="#b", password="key"}}`. The flag says whether every entry
/// was right (errors of the table entries are reported by their own reader).
fn read_channels(kw: &mut Kwargs) -> (Vec<IrcChannel>, bool) {
    let Some(value) = kw.raw("channels") else {
        return (Vec::new(), true);
    };
    // A list: as many entries as the sequence is long.
    let items: Option<Vec<Value>> = match &value {
        Value::Table(table) if table.clone().pairs::<Value, Value>().count() == table.raw_len() => {
            Some(table.clone().sequence_values().flatten().collect())
        }
        _ => None,
    };
    let Some(items) = items else {
        kw.error(format!(
            "option 'channels' must be a list of channels (\"#name\" or {{channel=\"#name\", password=...}}), got {}",
            describe(&value)
        ));
        return (Vec::new(), true);
    };
    let lua = kw.lua().clone();
    let mut ok = true;
    let mut channels = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let channel = match item {
            Value::String(s) => IrcChannel {
                channel: s.to_string_lossy(),
                password: None,
            },
            Value::Table(_) => {
                let object = format!("{}: channels item {}", kw.object(), index + 1);
                let mut item_kw = Kwargs::new(
                    &lua,
                    object,
                    MultiValue::from_vec(vec![item]),
                    &[],
                    CHANNEL_OPTIONS,
                );
                let channel = IrcChannel {
                    channel: item_kw.required("channel"),
                    password: item_kw.optional("password"),
                };
                if !item_kw.finish() {
                    ok = false;
                    continue;
                }
                channel
            }
            other => {
                kw.error(format!(
                    "option 'channels' item {} must be a channel name or {{channel=..., password=...}}, got {}",
                    index + 1,
                    describe(&other)
                ));
                continue;
            }
        };
        if !channel.channel.starts_with(['#', '&', '+', '!']) {
            kw.error(format!(
                "option 'channels' item {}: '{}' is not a channel name (they start with '#')",
                index + 1,
                channel.channel
            ));
            continue;
        }
        channels.push(channel);
    }
    (channels, ok)
}

/// `notify_events`: `{exception=1, successToFailure=true}` (an event set to `false` or `0`
/// stays off), or a list of event names.
fn read_notify_events(kw: &mut Kwargs) -> BTreeSet<NotifyEvent> {
    let Some(value) = kw.raw("notify_events") else {
        return BTreeSet::new();
    };
    let Value::Table(table) = &value else {
        kw.error(format!(
            "option 'notify_events' must be a table of event names to true, or a list of event names, got {}",
            describe(&value)
        ));
        return BTreeSet::new();
    };
    let mut named = Vec::new();
    for pair in table.clone().pairs::<Value, Value>() {
        let Ok((key, enabled)) = pair else { continue };
        match (key, enabled) {
            (Value::Integer(_), Value::String(name)) => named.push((name.to_string_lossy(), true)),
            (Value::String(name), enabled) => {
                let name = name.to_string_lossy();
                let on = match enabled {
                    Value::Boolean(b) => b,
                    Value::Integer(n) => n != 0,
                    Value::Number(n) => n != 0.0,
                    other => {
                        kw.error(format!(
                            "option 'notify_events' entry '{name}' must be true or 1, got {}",
                            describe(&other)
                        ));
                        continue;
                    }
                };
                named.push((name, on));
            }
            (key, _) => kw.error(format!(
                "option 'notify_events' must be a table of event names to true, or a list of event names, got key {}",
                describe(&key)
            )),
        }
    }
    named.sort();
    let known = NotifyEvent::all_names();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let mut events = BTreeSet::new();
    for (name, on) in named {
        match NotifyEvent::parse(&name) {
            Some(event) if on => {
                events.insert(event);
            }
            Some(_) => {}
            None => kw.error(format!(
                "option 'notify_events' has {}",
                unknown("event", &name, &known)
            )),
        }
    }
    events
}

fn read_delay(kw: &mut Kwargs, name: &str) -> Option<f64> {
    let delay: f64 = kw.optional(name)?;
    if delay < 0.0 {
        kw.error(format!("option '{name}' must not be negative, got {delay}"));
    }
    Some(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::status::testing::{errors, target};

    fn irc(snippet: &str) -> IrcConfig {
        match target(snippet) {
            StatusTarget::Irc(config) => *config,
            other => panic!("expected an IRC, got {other:?}"),
        }
    }

    fn events(config: &IrcConfig) -> Vec<String> {
        config
            .notify_events
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn defaults() {
        let config = irc("c['status'] = {status.IRC('irc.example.org', 'bot')}");
        assert_eq!(config.name.as_deref(), Some("IRC"));
        assert_eq!(
            (config.host.as_str(), config.nick.as_str()),
            ("irc.example.org", "bot")
        );
        assert!(config.channels.is_empty() && config.pm_to_nicks.is_empty());
        assert_eq!(config.port, 6667);
        assert!(!config.allow_force && !config.allow_shutdown);
        assert!(config.tags.is_empty());
        assert_eq!(config.password, None);
        assert!(!config.use_sasl);
        assert!(config.notify_events.is_empty());
        assert!(!config.notice_on_channel);
        assert!(config.show_blame_list);
        assert!(!config.use_revisions && !config.use_ssl);
        assert_eq!((config.lost_delay, config.failed_delay), (None, None));
        assert!(config.use_colors);
    }

    #[test]
    fn every_option() {
        let config = irc(
            "c['status'] = {status.IRC{host='irc.example.org', nick='bb', name='irc-main',
               channels={'#plain', {channel='#example2', password='somesecretpassword'}},
               pm_to_nicks={'alice', 'bob'}, port=6697, allowForce=true, allowShutdown=true,
               tags={'release'}, password='mysecretnickservpassword', useSASL=true,
               notify_events={started=true, finished=1, success=true, failure=true,
                              exception=1, warnings=true, successToFailure=1,
                              failureToSuccess=true, warningsToException=1, exceptionToWarnings=false},
               noticeOnChannel=true, showBlameList=false, useRevisions=true, useSSL=true,
               lostDelay=2.5, failedDelay=50, useColors=false}}",
        );
        assert_eq!(config.name.as_deref(), Some("irc-main"));
        assert_eq!(
            config.channels,
            [
                IrcChannel {
                    channel: "#plain".into(),
                    password: None
                },
                IrcChannel {
                    channel: "#example2".into(),
                    password: Some("somesecretpassword".into())
                },
            ]
        );
        assert_eq!(config.pm_to_nicks, ["alice", "bob"]);
        assert_eq!(config.port, 6697);
        assert!(config.allow_force && config.allow_shutdown);
        assert_eq!(config.tags, ["release"]);
        assert_eq!(config.password.as_deref(), Some("mysecretnickservpassword"));
        assert!(config.use_sasl);
        assert_eq!(
            events(&config),
            [
                "started",
                "finished",
                "success",
                "warnings",
                "failure",
                "exception",
                "successToFailure",
                "warningsToException",
                "failureToSuccess"
            ]
        );
        assert!(config.notice_on_channel);
        assert!(!config.show_blame_list);
        assert!(config.use_revisions && config.use_ssl);
        assert_eq!(
            (config.lost_delay, config.failed_delay),
            (Some(2.5), Some(50.0))
        );
        assert!(!config.use_colors);
    }

    #[test]
    fn categories_and_event_lists() {
        let config = irc(
            "c['status'] = {status.IRC('irc.example.org', 'bb', {channels={'#a', '&b'},
               categories={'x'}, notify_events={'exception', 'successToWarnings'}})}",
        );
        assert_eq!(config.channels.len(), 2);
        assert_eq!(config.tags, ["x"]);
        assert_eq!(events(&config), ["exception", "successToWarnings"]);
    }

    #[test]
    fn every_transition_parses_and_prints_back() {
        let names = NotifyEvent::all_names();
        assert_eq!(names.len(), 22);
        for name in names {
            assert_eq!(NotifyEvent::parse(&name).unwrap().to_string(), name);
        }
        assert_eq!(NotifyEvent::parse("successtoFailure"), None);
        assert_eq!(NotifyEvent::parse("SuccessToFailure"), None);
        assert_eq!(NotifyEvent::parse("skippedToSuccess"), None);
    }

    #[test]
    fn errors_are_exact() {
        let cases = [
            ("status.IRC{port=6667}", "master.cfg.lua:1: IRC: missing required option 'host'\nmaster.cfg.lua:1: IRC: missing required option 'nick'"),
            (
                "status.IRC('h', 'n', {notify_events={sucess=1}})",
                "master.cfg.lua:1: IRC: option 'notify_events' has unknown event 'sucess' (did you mean 'success'?)",
            ),
            (
                "status.IRC('h', 'n', {notify_events={successTofailure=1}})",
                "master.cfg.lua:1: IRC: option 'notify_events' has unknown event 'successTofailure' (did you mean 'successToFailure'?)",
            ),
            (
                "status.IRC('h', 'n', {notify_events={success='yes'}})",
                "master.cfg.lua:1: IRC: option 'notify_events' entry 'success' must be true or 1, got string 'yes'",
            ),
            (
                "status.IRC('h', 'n', {notify_events='success'})",
                "master.cfg.lua:1: IRC: option 'notify_events' must be a table of event names to true, or a list of event names, got string 'success'",
            ),
            (
                "status.IRC('h', 'n', {channels={channel='#x'}})",
                "master.cfg.lua:1: IRC: option 'channels' must be a list of channels (\"#name\" or {channel=\"#name\", password=...}), got table",
            ),
            (
                "status.IRC('h', 'n', {channels={{name='#x'}}})",
                "master.cfg.lua:1: IRC: channels item 1: missing required option 'channel'\nmaster.cfg.lua:1: IRC: channels item 1: unknown option 'name'",
            ),
            (
                "status.IRC('h', 'n', {channels={{channel='#x', pasword='k'}}})",
                "master.cfg.lua:1: IRC: channels item 1: unknown option 'pasword' (did you mean 'password'?)",
            ),
            (
                "status.IRC('h', 'n', {channels={'#ok', 'example'}})",
                "master.cfg.lua:1: IRC: option 'channels' item 2: 'example' is not a channel name (they start with '#')",
            ),
            (
                "status.IRC('h', 'n', {channels={7}})",
                "master.cfg.lua:1: IRC: option 'channels' item 1 must be a channel name or {channel=..., password=...}, got number 7",
            ),
            (
                "status.IRC('h', 'n', {lostDelay=-1})",
                "master.cfg.lua:1: IRC: option 'lostDelay' must not be negative, got -1",
            ),
            (
                "status.IRC('h', 'n', {failedDelay='soon'})",
                "master.cfg.lua:1: IRC: option 'failedDelay' must be a number, got string 'soon'",
            ),
            (
                "status.IRC('h', 'n', {tags={'a'}, categories={'b'}})",
                "master.cfg.lua:1: IRC: options 'tags' and 'categories' are the same; give only one",
            ),
            (
                "status.IRC('h', 'n', {useSASL=true})",
                "master.cfg.lua:1: IRC: option 'useSASL' needs 'password', the account's password",
            ),
            (
                "status.IRC('h', 'n', {useSsl=true})",
                "master.cfg.lua:1: IRC: unknown option 'useSsl' (did you mean 'useSSL'?)",
            ),
        ];
        for (snippet, expected) in cases {
            assert_eq!(errors(snippet), expected, "{snippet}");
        }
    }

    #[test]
    fn the_spec_examples() {
        let config = irc(
            "c['status']:append(status.IRC{host='irc.example.com', nick='bb',
                 channels={{channel='#example1'},
                           {channel='#example2', password='somesecretpassword'}}})",
        );
        assert_eq!(config.channels.len(), 2);
        let config = irc("local irc = status.IRC('irc.example.org', 'botnickname', {
                 useColors=false,
                 channels={{channel='#example1'},
                           {channel='#example2', password='somesecretpassword'}},
                 password='mysecretnickservpassword',
                 notify_events={
                   exception=1,
                   successToFailure=1,
                   failureToSuccess=1,
                 }})
             c['status']:append(irc)");
        assert_eq!(
            events(&config),
            ["exception", "successToFailure", "failureToSuccess"]
        );
        assert!(!config.use_colors);
    }
}
