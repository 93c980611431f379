//! `status.GerritStatusPush`: reviews sent back to Gerrit over SSH when builds finish.

use mlua::{Lua, MultiValue, Value};

use super::shared::{filter_list, read_name, LuaHandle};
use super::StatusTarget;
use crate::config::kwargs::{constructor, mismatch, FromOption, OptionError};
use crate::config::{define, Kwargs, Location, Namespaces};
use crate::script::Callback;

/// `status.GerritStatusPush(server, username, {...})`.
#[derive(Clone, Debug)]
pub struct GerritStatusPushConfig {
    pub name: Option<String>,
    /// The Gerrit SSH server.
    pub server: String,
    pub username: String,
    pub port: u16,
    /// `(builderName, build, result, status, arg) -> {message=, labels={...}}`, a review
    /// per build; absent, none.
    pub review_cb: Option<Callback>,
    pub review_arg: Option<LuaHandle>,
    /// `(builderName, build, arg) -> message`, sent when a build starts; absent, nothing.
    pub start_cb: Option<Callback>,
    pub start_arg: Option<LuaHandle>,
    /// The review summarizing a buildset.
    pub summary_cb: SummaryCallback,
    pub summary_arg: Option<LuaHandle>,
    /// The SSH identity file; absent, ssh's own choice.
    pub identity_file: Option<String>,
    /// The server's host keys in `known_hosts` form (Buildbot 4's `ssh_known_hosts`): the
    /// only keys accepted; absent, the user's own known hosts and ssh config decide.
    pub ssh_known_hosts: Option<String>,
    /// Builders reported on; empty, all.
    pub builders: Vec<String>,
    /// Who Gerrit mails about the review (`--notify`): NONE, OWNER, OWNER_REVIEWERS or ALL.
    pub notify: Option<String>,
    /// Give the callbacks the builds' steps.
    pub want_steps: bool,
    /// Give the callbacks the steps' logs.
    pub want_logs: bool,
    pub location: Location,
}

/// `summaryCB`: Buildbot sends a summary review by default, so absent and switched off
/// (`summaryCB=false`) differ.
#[derive(Clone, Debug)]
pub enum SummaryCallback {
    /// Buildbot's `defaultSummaryCB`: one line per build and Verified +1 or -1.
    BuiltIn,
    /// `(buildInfoList, results, status, arg) -> {message=, labels={...}}`.
    Lua(Callback),
    Off,
}

impl FromOption for SummaryCallback {
    fn expected() -> String {
        "a function, or false for no summary review".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::Boolean(false) => Ok(SummaryCallback::Off),
            Value::Function(_) => Callback::from_option(value, lua).map(SummaryCallback::Lua),
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

const NOTIFY_VALUES: &[&str] = &["NONE", "OWNER", "OWNER_REVIEWERS", "ALL"];

pub const GERRIT_STATUS_PUSH_OPTIONS: &[&str] = &[
    "server",
    "username",
    "reviewCB",
    "startCB",
    "port",
    "reviewArg",
    "startArg",
    "summaryCB",
    "summaryArg",
    "identity_file",
    "ssh_known_hosts",
    "builders",
    "notify",
    "wantSteps",
    "wantLogs",
    "name",
];

pub fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    define(
        &ns.status,
        "GerritStatusPush",
        constructor(lua, "status.GerritStatusPush", parse_gerrit)?,
    )
}

fn parse_gerrit(lua: &Lua, args: MultiValue) -> Option<StatusTarget> {
    let mut kw = Kwargs::new(
        lua,
        "GerritStatusPush",
        args,
        // Buildbot's positional order is the first nine options.
        &GERRIT_STATUS_PUSH_OPTIONS[..9],
        GERRIT_STATUS_PUSH_OPTIONS,
    );
    let name = read_name(&mut kw);
    let callbacks_given = [kw.has("reviewCB"), kw.has("startCB"), kw.has("summaryCB")];
    let review_cb: Option<Callback> = kw.optional("reviewCB");
    let start_cb: Option<Callback> = kw.optional("startCB");
    let summary_cb = kw.optional_or("summaryCB", SummaryCallback::BuiltIn);
    // An argument whose callback is missing would never be used (`summaryCB=false` has none).
    let summary_off = matches!(summary_cb, SummaryCallback::Off);
    for (arg, callback, has_callback) in [
        ("reviewArg", "reviewCB", callbacks_given[0]),
        ("startArg", "startCB", callbacks_given[1]),
        (
            "summaryArg",
            "summaryCB",
            callbacks_given[2] && !summary_off,
        ),
    ] {
        if kw.has(arg) && !has_callback {
            kw.error(format!(
                "option '{arg}' is only passed to a {callback} function, and none is given"
            ));
        }
    }
    let notify: Option<String> = kw.optional("notify");
    if let Some(notify) = &notify {
        if !NOTIFY_VALUES.contains(&notify.as_str()) {
            kw.error(format!(
                "option 'notify' must be one of {}, got '{notify}'",
                NOTIFY_VALUES.join(", ")
            ));
        }
    }
    let config = GerritStatusPushConfig {
        name,
        server: kw.required("server"),
        username: kw.required("username"),
        port: kw.optional_or("port", 29418),
        review_cb,
        review_arg: kw.optional("reviewArg"),
        start_cb,
        start_arg: kw.optional("startArg"),
        summary_cb,
        summary_arg: kw.optional("summaryArg"),
        identity_file: kw.optional("identity_file"),
        ssh_known_hosts: kw.optional("ssh_known_hosts"),
        builders: filter_list(&mut kw, &["builders"]),
        notify,
        want_steps: kw.optional_or("wantSteps", false),
        want_logs: kw.optional_or("wantLogs", false),
        location: kw.location(),
    };
    kw.finish()
        .then(|| StatusTarget::GerritStatusPush(Box::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::status::testing::{errors, lua_value, target};

    fn gerrit(snippet: &str) -> GerritStatusPushConfig {
        as_gerrit(target(snippet))
    }

    fn as_gerrit(target: StatusTarget) -> GerritStatusPushConfig {
        match target {
            StatusTarget::GerritStatusPush(config) => *config,
            other => panic!("expected a GerritStatusPush, got {other:?}"),
        }
    }

    #[test]
    fn a_reconfig_that_changes_only_an_arg_is_a_change() {
        let push = |arg: &str| {
            gerrit(&format!(
                "c['status'] = {{status.GerritStatusPush{{server='g', username='u', reviewCB=print, reviewArg={arg}}}}}"
            ))
        };
        let same = crate::config::same_options;
        assert!(same(&push("{a=1, b={'x'}}"), &push("{b={'x'}, a=1}")));
        assert!(!same(&push("{a=1, b={'x'}}"), &push("{a=1, b={'y'}}")));
        assert!(!same(&push("'x'"), &push("'y'")));
        assert!(!same(&push("1"), &push("'1'")));
        assert_eq!(
            format!("{:?}", push("'secret'").review_arg.unwrap()),
            "<lua string>"
        );
    }

    #[test]
    fn defaults_send_only_the_built_in_summary() {
        let config =
            gerrit("c['status'] = {status.GerritStatusPush('gerrit.example.org', 'buildbot')}");
        assert_eq!(config.name.as_deref(), Some("GerritStatusPush"));
        assert_eq!(config.server, "gerrit.example.org");
        assert_eq!(config.username, "buildbot");
        assert_eq!(config.port, 29418);
        assert!(config.review_cb.is_none() && config.review_arg.is_none());
        assert!(config.start_cb.is_none() && config.start_arg.is_none());
        assert!(matches!(config.summary_cb, SummaryCallback::BuiltIn));
        assert!(config.summary_arg.is_none());
        assert_eq!(config.identity_file, None);
        assert_eq!(config.ssh_known_hosts, None);
        assert!(config.builders.is_empty());
        assert_eq!(config.notify, None);
        assert!(!config.want_steps && !config.want_logs);
    }

    #[test]
    fn every_option() {
        // Kept out of c['status'], whose builders would have to exist.
        let config = as_gerrit(lua_value(
            "local function review(builderName, build, result, status, arg) return {} end
             local function start(builderName, build, arg) return 'started' end
             local function summary(buildInfoList, results, status, arg) return {} end
             value = status.GerritStatusPush{server='gerrit.example.org',
               username='buildbot', port=2222, reviewCB=review, reviewArg=true,
               startCB=start, startArg='https://ci.example.org/', summaryCB=summary,
               summaryArg={verbose=true}, identity_file='/home/bb/.ssh/gerrit',
               ssh_known_hosts='[gerrit.example.org]:2222 ssh-ed25519 AAAA',
               builders={'linux'}, notify='OWNER_REVIEWERS', wantSteps=true, wantLogs=true,
               name='gerrit'}",
        ));
        assert_eq!(config.name.as_deref(), Some("gerrit"));
        assert_eq!(config.port, 2222);
        assert_eq!(config.review_cb.unwrap().location().line, 1);
        assert_eq!(format!("{:?}", config.review_arg.unwrap()), "<lua boolean>");
        assert_eq!(config.start_cb.unwrap().location().line, 2);
        assert_eq!(format!("{:?}", config.start_arg.unwrap()), "<lua string>");
        assert!(matches!(config.summary_cb, SummaryCallback::Lua(f) if f.location().line == 3));
        assert_eq!(format!("{:?}", config.summary_arg.unwrap()), "<lua table>");
        assert_eq!(
            config.identity_file.as_deref(),
            Some("/home/bb/.ssh/gerrit")
        );
        assert_eq!(
            config.ssh_known_hosts.as_deref(),
            Some("[gerrit.example.org]:2222 ssh-ed25519 AAAA")
        );
        assert_eq!(config.builders, ["linux"]);
        assert_eq!(config.notify.as_deref(), Some("OWNER_REVIEWERS"));
        assert!(config.want_steps && config.want_logs);
    }

    #[test]
    fn positional_arguments_in_buildbot_order() {
        let config = gerrit(
            "local function review() end
             local function start() end
             local function summary() end
             c['status'] = {status.GerritStatusPush('g', 'u', review, start, 29419,
                                                    'r', 's', summary, 'm')}",
        );
        assert_eq!(config.port, 29419);
        assert!(config.review_cb.is_some() && config.start_cb.is_some());
        assert!(matches!(config.summary_cb, SummaryCallback::Lua(_)));
        assert_eq!(format!("{:?}", config.summary_arg.unwrap()), "<lua string>");
        let config = gerrit(
            "c['status'] = {status.GerritStatusPush{server='g', username='u', summaryCB=false}}",
        );
        assert!(matches!(config.summary_cb, SummaryCallback::Off));
    }

    #[test]
    fn the_spec_callbacks() {
        gerrit(
            "local function gerritReviewCB(builderName, build, result, status, arg)
               if result == util.RETRY then return {} end
               local message = 'Buildbot finished compiling your patchset\\n'
               message = message .. 'on configuration: ' .. builderName .. '\\n'
               message = message .. 'The result is: ' .. util.Results[result]:upper() .. '\\n'
               if arg then
                 message = message .. '\\nFor more details visit:\\n'
                 message = message .. status:getURLForThing(build) .. '\\n'
               end
               return {message=message, labels={Verified=(result == util.SUCCESS) and 1 or -1}}
             end
             local function gerritStartCB(builderName, build, arg)
               print('gerritStartCB...')
               return 'Buildbot started compiling your patchset\\non configuration: ' .. builderName .. '\\n'
             end
             local function gerritSummaryCB(buildInfoList, results, status, arg)
               local success, failure, msgs = false, false, {}
               for _, buildInfo in ipairs(buildInfoList) do
                 local msg = ('Builder %s %s (%s)'):format(buildInfo.name, buildInfo.resultText, buildInfo.text)
                 if buildInfo.url then msg = msg .. ' - ' .. buildInfo.url else msg = msg .. '.' end
                 table.insert(msgs, msg)
                 if buildInfo.result == util.SUCCESS then success = true else failure = true end
               end
               local verified = (success and not failure) and 1 or -1
               return {message=table.concat(msgs, '\\n\\n'), labels={Verified=verified}}
             end
             c['status']:append(status.GerritStatusPush{server='gerrit.example.org',
                 username='buildbot', reviewCB=gerritReviewCB, reviewArg=true,
                 startCB=gerritStartCB, summaryCB=gerritSummaryCB})",
        );
    }

    #[test]
    fn errors_are_exact() {
        let cases = [
            (
                "status.GerritStatusPush{wantLogs=true}",
                "master.cfg.lua:1: GerritStatusPush: missing required option 'server'\n\
                 master.cfg.lua:1: GerritStatusPush: missing required option 'username'",
            ),
            (
                "status.GerritStatusPush('g', 'u', {reviewArg=1})",
                "master.cfg.lua:1: GerritStatusPush: option 'reviewArg' is only passed to a reviewCB function, and none is given",
            ),
            (
                "status.GerritStatusPush('g', 'u', {startArg=1})",
                "master.cfg.lua:1: GerritStatusPush: option 'startArg' is only passed to a startCB function, and none is given",
            ),
            (
                "status.GerritStatusPush('g', 'u', {summaryArg=1})",
                "master.cfg.lua:1: GerritStatusPush: option 'summaryArg' is only passed to a summaryCB function, and none is given",
            ),
            (
                "status.GerritStatusPush('g', 'u', {summaryCB=false, summaryArg=1})",
                "master.cfg.lua:1: GerritStatusPush: option 'summaryArg' is only passed to a summaryCB function, and none is given",
            ),
            (
                "status.GerritStatusPush('g', 'u', {reviewCB=1, reviewArg=1})",
                "master.cfg.lua:1: GerritStatusPush: option 'reviewCB' must be a function, got number 1",
            ),
            (
                "status.GerritStatusPush('g', 'u', {summaryCB=true})",
                "master.cfg.lua:1: GerritStatusPush: option 'summaryCB' must be a function, or false for no summary review, got boolean true",
            ),
            (
                "status.GerritStatusPush('g', 'u', {reviewCB='review'})",
                "master.cfg.lua:1: GerritStatusPush: option 'reviewCB' must be a function, got string 'review'",
            ),
            (
                "status.GerritStatusPush('g', 'u', {notify='owner'})",
                "master.cfg.lua:1: GerritStatusPush: option 'notify' must be one of NONE, OWNER, OWNER_REVIEWERS, ALL, got 'owner'",
            ),
            (
                "status.GerritStatusPush('g', 'u', {port='ssh'})",
                "master.cfg.lua:1: GerritStatusPush: option 'port' must be an integer from 0 to 65535, got string 'ssh'",
            ),
            (
                "status.GerritStatusPush('g', 'u', {builders={}})",
                "master.cfg.lua:1: GerritStatusPush: option 'builders' is an empty list, which matches nothing (leave it out to mean all)",
            ),
        ];
        for (snippet, expected) in cases {
            assert_eq!(errors(snippet), expected, "{snippet}");
        }
    }
}
