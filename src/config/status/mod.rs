//! Status targets: `status.WebStatus`, `status.MailNotifier`, `status.IRC`, `status.PBListener`,
//! `status.StatusPush`, `status.HttpStatusPush`, `status.GerritStatusPush`,
//! `status.GitHubStatus`, `status.StashStatusPush`, with `c['www']` read as a WebStatus.
//!
//! Each constructor parses its arguments into a typed `*Config` (Buildbot 0.8's options, names
//! and defaults) wrapped in a [`StatusTarget`]; the running services are built from those.

mod authz;
mod gerrit;
mod github;
mod irc;
mod mail;
mod pb_listener;
mod shared;
mod stash;
mod status_push;
mod web;

use std::collections::{BTreeMap, BTreeSet};

use mlua::{Lua, UserData};

use super::{ClassOptions, Location, Namespaces};

pub use authz::{AuthConfig, AuthzAction, AuthzConfig, AuthzRule};
pub use gerrit::{GerritStatusPushConfig, SummaryCallback};
pub use github::{github_repository, GitHubStatusConfig};
pub use irc::{IrcChannel, IrcConfig, NotifyEvent};
pub use mail::{AddLogs, DomainLookup, EmailLookup, ExtraHeader, MailMode, MailNotifierConfig};
pub use pb_listener::PbListenerConfig;
pub use shared::LuaHandle;
pub use stash::StashStatusPushConfig;
pub use status_push::{HttpPayload, HttpStatusPushConfig, PushOptions, StatusPushConfig};
pub use web::{
    ChangeHookDialect, CommentLink, CommentLinkRule, GitHubHook, HookCodebase, HookCredentials,
    RevLink, UrlMap, WebStatusConfig,
};

/// One entry of `c['status']` (or `c['services']`).
#[derive(Clone, Debug)]
pub enum StatusTarget {
    WebStatus(Box<WebStatusConfig>),
    MailNotifier(Box<MailNotifierConfig>),
    Irc(Box<IrcConfig>),
    PbListener(Box<PbListenerConfig>),
    StatusPush(Box<StatusPushConfig>),
    HttpStatusPush(Box<HttpStatusPushConfig>),
    GerritStatusPush(Box<GerritStatusPushConfig>),
    GitHubStatus(Box<GitHubStatusConfig>),
    StashStatusPush(Box<StashStatusPushConfig>),
}

impl UserData for StatusTarget {}
crate::config_object!(
    StatusTarget,
    "status target (status.MailNotifier{...}, ...)"
);

/// Applies `$body` to the config inside any variant, bound as `$config`.
macro_rules! each_target {
    ($target:expr, $config:ident => $body:expr) => {
        match $target {
            StatusTarget::WebStatus($config) => $body,
            StatusTarget::MailNotifier($config) => $body,
            StatusTarget::Irc($config) => $body,
            StatusTarget::PbListener($config) => $body,
            StatusTarget::StatusPush($config) => $body,
            StatusTarget::HttpStatusPush($config) => $body,
            StatusTarget::GerritStatusPush($config) => $body,
            StatusTarget::GitHubStatus($config) => $body,
            StatusTarget::StashStatusPush($config) => $body,
        }
    };
}

impl StatusTarget {
    /// The class name users write, e.g. `MailNotifier`.
    pub fn kind(&self) -> &'static str {
        match self {
            StatusTarget::WebStatus(_) => "WebStatus",
            StatusTarget::MailNotifier(_) => "MailNotifier",
            StatusTarget::Irc(_) => "IRC",
            StatusTarget::PbListener(_) => "PBListener",
            StatusTarget::StatusPush(_) => "StatusPush",
            StatusTarget::HttpStatusPush(_) => "HttpStatusPush",
            StatusTarget::GerritStatusPush(_) => "GerritStatusPush",
            StatusTarget::GitHubStatus(_) => "GitHubStatus",
            StatusTarget::StashStatusPush(_) => "StashStatusPush",
        }
    }

    /// The service name: the reconfig diff key, the outbox key and the URL segment. Until
    /// [`assign_default_names`] has run, an unnamed target answers its class name.
    pub fn name(&self) -> &str {
        self.given_name().unwrap_or(self.kind())
    }

    /// The `name` option, or the default name once assigned.
    fn given_name(&self) -> Option<&str> {
        each_target!(self, config => config.name.as_deref())
    }

    fn name_slot(&mut self) -> &mut Option<String> {
        each_target!(self, config => &mut config.name)
    }

    pub fn location(&self) -> &Location {
        each_target!(self, config => &config.location)
    }

    /// The builders this target is limited to (its `builders` option); empty means all.
    pub fn builders(&self) -> &[String] {
        match self {
            StatusTarget::MailNotifier(config) => &config.builders,
            StatusTarget::GerritStatusPush(config) => &config.builders,
            _ => &[],
        }
    }
}

/// Names the targets that have no `name` option after their class, numbering the second and
/// later ones of a class in order (`MailNotifier`, `MailNotifier#2`, ...) and skipping names
/// the config gave explicitly. Run once on the whole list (`c['status']`, `c['services']` and
/// `c['www']`) before the duplicate-name check.
pub fn assign_default_names(targets: &mut [StatusTarget]) {
    let mut taken: BTreeSet<String> = targets
        .iter()
        .filter_map(|t| t.given_name().map(str::to_string))
        .collect();
    let mut counters: BTreeMap<&'static str, usize> = BTreeMap::new();
    for target in targets {
        if target.given_name().is_some() {
            continue;
        }
        let kind = target.kind();
        let counter = counters.entry(kind).or_insert(0);
        let name = loop {
            *counter += 1;
            let candidate = match *counter {
                1 => kind.to_string(),
                n => format!("{kind}#{n}"),
            };
            if !taken.contains(&candidate) {
                break candidate;
            }
        };
        taken.insert(name.clone());
        *target.name_slot() = Some(name);
    }
}

/// Every constructor this part registers, with its options.
pub const CLASSES: &[ClassOptions] = &[
    ClassOptions {
        name: "status.WebStatus",
        options: web::WEB_STATUS_OPTIONS,
    },
    ClassOptions {
        name: "status.Waterfall",
        options: web::WEB_STATUS_OPTIONS,
    },
    ClassOptions {
        name: "util.Authz",
        options: authz::AUTHZ_OPTIONS,
    },
    ClassOptions {
        name: "util.BasicAuth",
        options: authz::BASIC_AUTH_OPTIONS,
    },
    ClassOptions {
        name: "util.HTPasswdAuth",
        options: authz::HTPASSWD_AUTH_OPTIONS,
    },
    ClassOptions {
        name: "util.HTPasswdAprAuth",
        options: authz::HTPASSWD_AUTH_OPTIONS,
    },
    ClassOptions {
        name: "util.UsersAuth",
        options: authz::USERS_AUTH_OPTIONS,
    },
    ClassOptions {
        name: "status.MailNotifier",
        options: mail::MAIL_NOTIFIER_OPTIONS,
    },
    ClassOptions {
        name: "util.Domain",
        options: mail::DOMAIN_OPTIONS,
    },
    ClassOptions {
        name: "status.Domain",
        options: mail::DOMAIN_OPTIONS,
    },
    ClassOptions {
        name: "status.IRC",
        options: irc::IRC_OPTIONS,
    },
    ClassOptions {
        name: "status.PBListener",
        options: pb_listener::PB_LISTENER_OPTIONS,
    },
    ClassOptions {
        name: "status.StatusPush",
        options: status_push::STATUS_PUSH_OPTIONS,
    },
    ClassOptions {
        name: "status.HttpStatusPush",
        options: status_push::HTTP_STATUS_PUSH_OPTIONS,
    },
    ClassOptions {
        name: "status.GerritStatusPush",
        options: gerrit::GERRIT_STATUS_PUSH_OPTIONS,
    },
    ClassOptions {
        name: "status.GitHubStatus",
        options: github::GITHUB_STATUS_OPTIONS,
    },
    ClassOptions {
        name: "status.GitHubStatusPush",
        options: github::GITHUB_STATUS_PUSH_OPTIONS,
    },
    ClassOptions {
        name: "status.StashStatusPush",
        options: stash::STASH_STATUS_PUSH_OPTIONS,
    },
];

pub fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    authz::register(lua, ns)?;
    web::register(lua, ns)?;
    mail::register(lua, ns)?;
    irc::register(lua, ns)?;
    pb_listener::register(lua, ns)?;
    status_push::register(lua, ns)?;
    gerrit::register(lua, ns)?;
    github::register(lua, ns)?;
    stash::register(lua, ns)?;
    Ok(())
}

/// `c['www'] = {port=...}`, Buildbot 0.9's web server, read as the equivalent WebStatus.
pub fn read_www(lua: &Lua, value: mlua::Value, location: Location) -> Option<StatusTarget> {
    web::read_www(lua, value, location)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Evaluating snippets for the tests of this part.

    use std::path::Path;

    use super::StatusTarget;
    use crate::config::{load_source, FromOption, LoadedConfig, OptionError};

    /// `c` is defined on the snippet's first line, so line numbers stay the snippet's own.
    fn load(snippet: &str) -> Result<LoadedConfig, crate::config::ConfigErrors> {
        let source = format!("local c = BuildmasterConfig; {snippet}");
        load_source("master.cfg.lua", &source, Path::new("."))
    }

    /// The status targets of a snippet that must load cleanly.
    pub fn targets(snippet: &str) -> Vec<StatusTarget> {
        match load(snippet) {
            Ok(loaded) => loaded.config.status,
            Err(errors) => panic!("unexpected errors:\n{errors}"),
        }
    }

    /// The only status target of a snippet.
    pub fn target(snippet: &str) -> StatusTarget {
        let mut targets = targets(snippet);
        assert_eq!(targets.len(), 1, "expected one status target");
        targets.remove(0)
    }

    /// The global `value` a snippet sets, converted.
    pub fn lua_value<T: FromOption>(snippet: &str) -> T {
        let loaded = match load(snippet) {
            Ok(loaded) => loaded,
            Err(errors) => panic!("unexpected errors:\n{errors}"),
        };
        let value: mlua::Value = loaded.lua.globals().get("value").expect("global 'value'");
        match T::from_option(value, &loaded.lua) {
            Ok(v) => v,
            Err(OptionError::Wrong(why)) => panic!("value {why}"),
            Err(OptionError::Reported) => panic!("value is invalid"),
        }
    }

    /// The errors of a snippet that must fail, one per line.
    pub fn errors(snippet: &str) -> String {
        match load(snippet) {
            Ok(_) => panic!("expected errors from:\n{snippet}"),
            Err(errors) => errors.to_string().trim_end().to_string(),
        }
    }

    /// The not-implemented warnings of a snippet that loads.
    pub fn unimplemented(snippet: &str) -> Vec<String> {
        match load(snippet) {
            Ok(loaded) => loaded.unimplemented.iter().map(|e| e.to_string()).collect(),
            Err(errors) => panic!("unexpected errors:\n{errors}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{lua_value, targets};
    use super::*;

    /// Targets built in Lua but kept out of `c['status']`, where two unnamed ones of a class
    /// would clash before `assign_default_names` runs.
    fn unassigned(snippet: &str) -> Vec<StatusTarget> {
        lua_value::<Vec<StatusTarget>>(snippet)
    }

    #[test]
    fn default_names_number_each_class_in_order() {
        let mut list = unassigned(
            "value = {
               status.MailNotifier{fromaddr='a@example.org'},
               status.IRC('irc.example.org', 'bot'),
               status.MailNotifier{fromaddr='b@example.org'},
               status.MailNotifier{fromaddr='c@example.org', name='MailNotifier#3'},
               status.MailNotifier{fromaddr='d@example.org'},
               status.WebStatus(8010),
             }",
        );
        assign_default_names(&mut list);
        let names: Vec<&str> = list.iter().map(StatusTarget::name).collect();
        assert_eq!(
            names,
            [
                "MailNotifier",
                "IRC",
                "MailNotifier#2",
                "MailNotifier#3",
                "MailNotifier#4",
                "WebStatus"
            ]
        );
    }

    #[test]
    fn an_explicit_name_is_kept_and_kind_location_builders_answer() {
        let list = targets(
            "c['status'] = {
               status.MailNotifier{fromaddr='a@example.org', name='mail-devs'},
               status.PBListener(9988),
             }",
        );
        assert_eq!(list[0].name(), "mail-devs");
        assert_eq!(list[0].kind(), "MailNotifier");
        assert_eq!(list[0].location().to_string(), "master.cfg.lua:2");
        assert_eq!(list[1].name(), "PBListener");
        assert!(list[1].builders().is_empty());
    }

    #[test]
    fn name_errors() {
        use super::testing::errors;
        assert_eq!(
            errors("status.PBListener{port=1, name=''}"),
            "master.cfg.lua:1: PBListener: option 'name' must be a non-empty name without '/', got ''"
        );
        assert_eq!(
            errors("status.PBListener{port=1, name='a/b'}"),
            "master.cfg.lua:1: PBListener: option 'name' must be a non-empty name without '/', got 'a/b'"
        );
        assert_eq!(
            errors("status.PBListener{port=1, name=7}"),
            "master.cfg.lua:1: PBListener: option 'name' must be a string, got number 7"
        );
    }

    #[test]
    fn every_option_names_the_type_it_wants() {
        const BOOL: &str = "must be a boolean, got number 1";
        const STRING: &str = "must be a string, got number 1";
        const STRINGS: &str = "must be a list of strings, got string 'x'";
        const FUNCTION: &str = "must be a function, got number 1";
        const NUMBER: &str = "must be a number, got string 'x'";
        const USIZE: &str = "must be an integer from 0 to 18446744073709551615, got number -1";
        const U16: &str = "must be an integer from 0 to 65535, got string 'x'";
        const RENDERABLE: &str = "must be a string, number, boolean, table or renderable \
                                  (util.Interpolate, util.Property, ...), got function";
        // (object, call up to the option, the rest of the call, option, value, message)
        let web = ("WebStatus", "status.WebStatus{http_port=8010, ", "}");
        let mail = (
            "MailNotifier",
            "status.MailNotifier{fromaddr='a@b.org', ",
            "}",
        );
        let irc = ("IRC", "status.IRC('h', 'n', {", "})");
        let pb = ("PBListener", "status.PBListener{port=1, ", "}");
        let push = ("StatusPush", "status.StatusPush{serverPushCb=print, ", "}");
        let http = (
            "HttpStatusPush",
            "status.HttpStatusPush{serverUrl='http://x', ",
            "}",
        );
        let gerrit = (
            "GerritStatusPush",
            "status.GerritStatusPush{server='g', username='u', ",
            "}",
        );
        let github = (
            "GitHubStatus",
            "status.GitHubStatus{token='t', repoOwner='o', repoName='r', ",
            "}",
        );
        let stash = (
            "StashStatusPush",
            "status.StashStatusPush{base_url='http://s', user='u', password='p', ",
            "}",
        );
        let authz = ("util.Authz", "util.Authz{useHttpHeader=true, ", "}");
        let rows = [
            (web, "allowForce", "1", BOOL),
            (web, "public_html", "1", STRING),
            (web, "num_events", "-1", USIZE),
            (web, "num_events_max", "-1", USIZE),
            (web, "order_console_by_time", "1", BOOL),
            (web, "repositories", "1", "must be a table of names to URLs or a function, got number 1"),
            (web, "changecommentlink", "1", "must be a {regex, replacement, title} triple, a table of project names to triples, or a function, got number 1"),
            (web, "rotateLength", "-1", "must be an integer from 0 to 18446744073709551615, got number -1"),
            (web, "maxRotatedFiles", "-1", "must be an integer from 0 to 4294967295, got number -1"),
            (web, "template_dirs", "'x'", STRINGS),
            (mail, "sendToInterestedUsers", "1", BOOL),
            (mail, "subject", "1", STRING),
            (mail, "builders", "'x'", STRINGS),
            (mail, "tags", "'x'", STRINGS),
            (mail, "categories", "'x'", STRINGS),
            (mail, "addPatch", "1", BOOL),
            (mail, "buildSetSummary", "1", BOOL),
            (mail, "relayhost", "1", STRING),
            (mail, "useTls", "1", BOOL),
            (mail, "useSmtps", "1", BOOL),
            (mail, "previousBuildGetter", "1", FUNCTION),
            (mail, "dumpMailsToLog", "1", BOOL),
            (irc, "pm_to_nicks", "'x'", STRINGS),
            (irc, "port", "'x'", U16),
            (irc, "allowForce", "1", BOOL),
            (irc, "allowShutdown", "1", BOOL),
            (irc, "password", "1", STRING),
            (irc, "noticeOnChannel", "1", BOOL),
            (irc, "showBlameList", "1", BOOL),
            (irc, "useRevisions", "1", BOOL),
            (irc, "useSSL", "1", BOOL),
            (irc, "useColors", "1", BOOL),
            (pb, "user", "1", STRING),
            (pb, "passwd", "1", STRING),
            (push, "path", "1", STRING),
            (push, "filter", "1", BOOL),
            (push, "retryDelay", "'x'", NUMBER),
            (http, "debug", "1", BOOL),
            (http, "maxMemoryItems", "-1", USIZE),
            (http, "maxDiskItems", "-1", USIZE),
            (http, "maxHttpRequestSize", "-1", USIZE),
            (http, "bufferDelay", "'x'", NUMBER),
            (gerrit, "startCB", "1", FUNCTION),
            (gerrit, "identity_file", "1", STRING),
            (gerrit, "notify", "1", STRING),
            (gerrit, "wantSteps", "1", BOOL),
            (gerrit, "wantLogs", "1", BOOL),
            (github, "sha", "print", RENDERABLE),
            (github, "startDescription", "print", RENDERABLE),
            (github, "endDescription", "print", RENDERABLE),
            (github, "baseURL", "1", STRING),
            (stash, "name", "1", STRING),
            (authz, "httpLoginUrl", "1", STRING),
            (authz, "default_action", "'x'", "must be true, false, 'auth' or a function, got string 'x'"),
        ];
        for ((object, opening, closing), option, value, message) in rows {
            let snippet = format!("{opening}{option}={value}{closing}");
            assert_eq!(
                super::testing::errors(&snippet),
                format!("master.cfg.lua:1: {object}: option '{option}' {message}"),
                "{snippet}"
            );
        }
        // Every action of util.Authz.
        for action in AuthzAction::ALL {
            let snippet = format!("util.Authz{{{}=1}}", action.name());
            assert_eq!(
                super::testing::errors(&snippet),
                format!(
                    "master.cfg.lua:1: util.Authz: option '{}' must be true, false, 'auth' or a function, got number 1",
                    action.name()
                )
            );
        }
        // Required and positional options.
        for (snippet, expected) in [
            ("status.WebStatus{http_port=true}", "master.cfg.lua:1: WebStatus: option 'http_port' must be a port number or 'tcp:PORT:interface=ADDR', got boolean true"),
            ("status.MailNotifier{fromaddr=1}", "master.cfg.lua:1: MailNotifier: option 'fromaddr' must be a string, got number 1"),
            ("status.IRC(1, 'n')", "master.cfg.lua:1: IRC: option 'host' must be a string, got number 1"),
            ("status.IRC('h', 1)", "master.cfg.lua:1: IRC: option 'nick' must be a string, got number 1"),
            ("status.GerritStatusPush(1, 'u')", "master.cfg.lua:1: GerritStatusPush: option 'server' must be a string, got number 1"),
            ("status.GerritStatusPush('g', 1)", "master.cfg.lua:1: GerritStatusPush: option 'username' must be a string, got number 1"),
            ("status.GitHubStatus{token=1, repoOwner='o', repoName='r'}", "master.cfg.lua:1: GitHubStatus: option 'token' must be a string, got number 1"),
            ("status.GitHubStatus{token='t', repoOwner=print, repoName='r'}", &format!("master.cfg.lua:1: GitHubStatus: option 'repoOwner' {RENDERABLE}")),
            ("status.StashStatusPush(1, 'u', 'p')", "master.cfg.lua:1: StashStatusPush: option 'base_url' must be a string, got number 1"),
            ("status.StashStatusPush('http://s', 1, 'p')", "master.cfg.lua:1: StashStatusPush: option 'user' must be a string, got number 1"),
            ("util.Authz{useHttpHeader=1}", "master.cfg.lua:1: util.Authz: option 'useHttpHeader' must be a boolean, got number 1"),
            ("util.HTPasswdAuth(1)", "master.cfg.lua:1: util.HTPasswdAuth: option 'file' must be a string, got number 1"),
            ("util.HTPasswdAprAuth(1)", "master.cfg.lua:1: util.HTPasswdAprAuth: option 'file' must be a string, got number 1"),
            ("util.Domain(1)", "master.cfg.lua:1: util.Domain: option 'domain' must be a string, got number 1"),
            ("status.Domain(1)", "master.cfg.lua:1: status.Domain: option 'domain' must be a string, got number 1"),
        ] {
            assert_eq!(super::testing::errors(snippet), expected, "{snippet}");
        }
    }

    #[test]
    fn every_class_is_registered_under_its_name() {
        for class in CLASSES {
            let (namespace, name) = class.name.split_once('.').unwrap();
            let snippet = format!(
                "assert(type(rawget(buildbot.{namespace}, '{name}')) == 'function', '{}')",
                class.name
            );
            super::testing::targets(&snippet);
        }
    }

    #[test]
    fn the_spec_status_list_example() {
        // The opening example of both spec pages; the older one names the web server by its
        // 0.7 name, Waterfall.
        for web in ["WebStatus", "Waterfall"] {
            let list = targets(&format!(
                "c['status'] = {{}}
             c['status']:append(status.{web}{{http_port=8010}})
             local m = status.MailNotifier{{fromaddr='buildbot@localhost',
                                           extraRecipients={{'builds@lists.example.com'}},
                                           sendToInterestedUsers=false}}
             c['status']:append(m)
             c['status']:append(status.IRC{{host='irc.example.com', nick='bb',
                                           channels={{{{channel='#example1'}},
                                                     {{channel='#example2',
                                                      password='somesecretpassword'}}}}}})"
            ));
            let kinds: Vec<&str> = list.iter().map(StatusTarget::kind).collect();
            assert_eq!(kinds, ["WebStatus", "MailNotifier", "IRC"]);
        }
    }
}
