//! `status.WebStatus`: the web pages, the change hooks and who may act on them; and
//! `c['www']`, Buildbot 0.9's web server key, read as the equivalent WebStatus.

use std::collections::BTreeMap;

use mlua::{Lua, MultiValue, Value};

use super::authz::{AuthConfig, AuthzConfig, AuthzRule};
use super::shared::read_name;
use super::StatusTarget;
use crate::config::errors::unknown;
use crate::config::kwargs::{constructor, describe, mismatch, FromOption, OptionError};
use crate::config::{
    define, report_error, ConfigError, Diagnostics, Kwargs, Location, Namespaces, PortSpec,
};
use crate::script::Callback;

/// `status.WebStatus{...}`.
#[derive(Clone, Debug)]
pub struct WebStatusConfig {
    pub name: Option<String>,
    /// Where the web server listens. Absent only beside `distrib_port`, which is not
    /// implemented, so a master that starts always has it.
    pub http_port: Option<PortSpec>,
    /// The deprecated switch that enables every action; folded into `authz`.
    pub allow_force: Option<bool>,
    /// Static files served beside the pages, relative to the base directory.
    pub public_html: String,
    /// How many builds most pages show.
    pub numbuilds: usize,
    /// How many events the waterfall shows by default.
    pub num_events: usize,
    /// The most events the waterfall shows, whatever the URL asks.
    pub num_events_max: Option<usize>,
    /// The deprecated login method beside `allowForce`; folded into `authz`.
    pub auth: Option<AuthConfig>,
    pub order_console_by_time: bool,
    pub changecommentlink: Option<CommentLink>,
    pub revlink: Option<RevLink>,
    pub projects: Option<UrlMap>,
    pub repositories: Option<UrlMap>,
    /// Who may do what: the `authz` option, or what `allowForce` and `auth` stand for.
    pub authz: AuthzConfig,
    /// Size in bytes at which `http.log` is rotated; absent, as the master's own log.
    pub rotate_length: Option<u64>,
    /// Rotated `http.log` files kept; absent, as the master's own log.
    pub max_rotated_files: Option<u32>,
    /// The enabled `/change_hook/DIALECT` endpoints, by dialect name.
    pub change_hook_dialects: BTreeMap<String, ChangeHookDialect>,
    /// Credentials the change hooks require (HTTP basic auth); empty, none.
    pub change_hook_auth: Vec<HookCredentials>,
    /// The feeds served: of `rss`, `atom` and `json`.
    pub provide_feeds: Vec<String>,
    /// Directories searched for page templates before the built-in ones (our stand-in for
    /// Buildbot's `templates/` directory and Jinja loaders), relative to the base directory.
    pub template_dirs: Vec<String>,
    pub location: Location,
}

impl WebStatusConfig {
    /// Buildbot's defaults, for pages served with no WebStatus in the config.
    pub fn default_for_pages() -> WebStatusConfig {
        WebStatusConfig::defaults(Location::default())
    }

    /// Buildbot's defaults, with nothing to listen on yet.
    fn defaults(location: Location) -> WebStatusConfig {
        WebStatusConfig {
            name: None,
            http_port: None,
            allow_force: None,
            public_html: "public_html".into(),
            numbuilds: 20,
            num_events: 200,
            num_events_max: None,
            auth: None,
            order_console_by_time: false,
            changecommentlink: None,
            revlink: None,
            projects: None,
            repositories: None,
            authz: AuthzConfig::default(),
            rotate_length: None,
            max_rotated_files: None,
            change_hook_dialects: BTreeMap::new(),
            change_hook_auth: Vec::new(),
            template_dirs: Vec::new(),
            provide_feeds: FEEDS.iter().map(|f| f.to_string()).collect(),
            location,
        }
    }
}

// ---- changecommentlink, revlink, projects, repositories --------------------------------

/// One ticket-link rule: a regex over the comment, the URL it yields (Python replacement
/// syntax, `\1` and `\g<0>`), and the link's title.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommentLinkRule {
    pub regex: String,
    pub replacement: String,
    pub title: String,
}

impl FromOption for CommentLinkRule {
    fn expected() -> String {
        "a {regex, replacement, title} triple".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        let items =
            Vec::<String>::from_option(value.clone(), lua).map_err(|_| mismatch::<Self>(&value))?;
        let Ok([regex, replacement, title]) = <[String; 3]>::try_from(items) else {
            return Err(mismatch::<Self>(&value));
        };
        if let Err(error) = regex::Regex::new(&regex) {
            return Err(OptionError::Wrong(format!(
                "has an invalid regular expression '{regex}': {}",
                regex_error(&error)
            )));
        }
        Ok(CommentLinkRule {
            regex,
            replacement,
            title,
        })
    }
}

/// The last line of a regex error, which says what is wrong.
fn regex_error(error: &regex::Error) -> String {
    let text = error.to_string();
    let last = text.lines().last().unwrap_or_default();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

/// `changecommentlink`: links to tickets in change comments.
#[derive(Clone, Debug)]
pub enum CommentLink {
    Rule(CommentLinkRule),
    PerProject(BTreeMap<String, CommentLinkRule>),
    /// Called with the comment text and the project; returns the text with links added.
    Function(Callback),
}

impl FromOption for CommentLink {
    fn expected() -> String {
        "a {regex, replacement, title} triple, a table of project names to triples, or a function"
            .into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::Function(_) => Callback::from_option(value, lua).map(CommentLink::Function),
            Value::Table(table) if table.raw_len() > 0 => {
                CommentLinkRule::from_option(value, lua).map(CommentLink::Rule)
            }
            Value::Table(_) => BTreeMap::from_option(value, lua).map(CommentLink::PerProject),
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

/// `revlink`: the URL of a revision.
#[derive(Clone, Debug)]
pub enum RevLink {
    /// A URL with one `%s` where the (URL-encoded) revision goes.
    Format(String),
    /// A format per repository.
    PerRepository(BTreeMap<String, String>),
    /// Called with the revision and the repository; returns the URL.
    Function(Callback),
}

/// Whether `format` takes exactly one `%s`, as Python's `format % revision` needs.
fn check_revlink_format(format: &str) -> Result<(), OptionError> {
    let mut placeholders = 0;
    let mut stray_percent = false;
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('%') => {}
                Some('s') => placeholders += 1,
                _ => stray_percent = true,
            }
        }
    }
    if placeholders == 1 && !stray_percent {
        Ok(())
    } else {
        Err(OptionError::Wrong(format!(
            "must have one %s where the revision goes (and %% for a literal %), got '{format}'"
        )))
    }
}

impl FromOption for RevLink {
    fn expected() -> String {
        "a URL format with %s, a table of repositories to such formats, or a function".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::Function(_) => Callback::from_option(value, lua).map(RevLink::Function),
            Value::String(s) => {
                let format = s.to_string_lossy();
                check_revlink_format(&format)?;
                Ok(RevLink::Format(format))
            }
            Value::Table(_) => {
                let formats = BTreeMap::<String, String>::from_option(value.clone(), lua)
                    .map_err(|_| mismatch::<Self>(&value))?;
                for (repository, format) in &formats {
                    check_revlink_format(format).map_err(|e| match e {
                        OptionError::Wrong(why) => {
                            OptionError::Wrong(format!("entry '{repository}' {why}"))
                        }
                        other => other,
                    })?;
                }
                Ok(RevLink::PerRepository(formats))
            }
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

/// `projects` and `repositories`: the URL of a project or repository name.
#[derive(Clone, Debug)]
pub enum UrlMap {
    Table(BTreeMap<String, String>),
    /// Called with the name; returns the URL.
    Function(Callback),
}

impl FromOption for UrlMap {
    fn expected() -> String {
        "a table of names to URLs or a function".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::Function(_) => Callback::from_option(value, lua).map(UrlMap::Function),
            Value::Table(_) => BTreeMap::from_option(value.clone(), lua)
                .map(UrlMap::Table)
                .map_err(|_| mismatch::<Self>(&value)),
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

// ---- change hooks --------------------------------------------------------------------

/// An enabled `/change_hook/DIALECT` endpoint and its options.
#[derive(Clone, Debug)]
pub enum ChangeHookDialect {
    /// Changes posted as form fields (`contrib/post_build_request.py`).
    Base,
    GitHub(Box<GitHubHook>),
    BitBucket,
    /// Bitbucket Cloud's current webhooks (Buildbot 4's `bitbucketcloud`).
    BitBucketCloud {
        codebase: Option<HookCodebase>,
    },
    GoogleCode {
        /// The project's Post-Commit Authentication Key.
        secret_key: String,
        /// Google Code sends no branch; this one is used.
        branch: String,
    },
    Poller {
        /// The pollers (by name, a GitPoller's repourl by default) the hook may trigger;
        /// absent, all.
        allowed: Option<Vec<String>>,
    },
    GitLab {
        /// Compared with the `X-Gitlab-Token` header when given.
        secret: Option<String>,
    },
    Gitorious,
}

/// The GitHub hook's options.
#[derive(Clone, Debug)]
pub struct GitHubHook {
    /// Checks the payload signature when given.
    pub secret: Option<String>,
    /// Ignores payloads without a valid signature.
    pub strict: bool,
    pub codebase: Option<HookCodebase>,
    /// `class`: Lua functions for events, by event name (`handle_blah` handles `blah`);
    /// they take precedence over the built-in ping, push and pull_request handlers, as a
    /// subclass's methods do.
    pub handlers: BTreeMap<String, Callback>,
    /// A push whose head commit message matches one of these makes no change.
    pub skips: Vec<regex::Regex>,
    /// The ref a pull request's change builds: `refs/pull/N/REF`.
    pub pullrequest_ref: String,
}

/// Buildbot's default `skips`: `[ci skip]` and `[skip ci]`, spaces allowed inside.
pub const DEFAULT_GITHUB_SKIPS: &[&str] = &[r"\[ *skip *ci *\]", r"\[ *ci *skip *\]"];

/// The GitHub hook's `class`: a table of `handle_EVENT` functions.
struct HookClass(BTreeMap<String, Callback>);

impl FromOption for HookClass {
    fn expected() -> String {
        "a table of handle_EVENT functions".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        let Value::Table(table) = &value else {
            return Err(mismatch::<Self>(&value));
        };
        let mut handlers = BTreeMap::new();
        for pair in table.clone().pairs::<Value, Value>() {
            let (key, function) = pair.map_err(|e| OptionError::Wrong(e.to_string()))?;
            let name = match &key {
                Value::String(name) => name.to_string_lossy(),
                other => {
                    return Err(OptionError::Wrong(format!(
                        "has key {}, not a handle_EVENT name",
                        describe(other)
                    )))
                }
            };
            let Some(event) = name.strip_prefix("handle_").filter(|e| !e.is_empty()) else {
                return Err(OptionError::Wrong(format!(
                    "has '{name}', not a handle_EVENT name (handle_push, handle_release, ...)"
                )));
            };
            let Value::Function(function) = &function else {
                return Err(OptionError::Wrong(format!(
                    "entry '{name}' must be a function, got {}",
                    describe(&function)
                )));
            };
            let callback =
                Callback::new(lua, function).map_err(|e| OptionError::Wrong(e.to_string()))?;
            handlers.insert(event.to_string(), callback);
        }
        Ok(HookClass(handlers))
    }
}

/// The GitHub hook's `codebase`: a name, or a function of the event payload.
#[derive(Clone, Debug)]
pub enum HookCodebase {
    Name(String),
    Function(Callback),
}

impl FromOption for HookCodebase {
    fn expected() -> String {
        "a codebase name or a function".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::String(_) => String::from_option(value, lua).map(HookCodebase::Name),
            Value::Function(_) => Callback::from_option(value, lua).map(HookCodebase::Function),
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

const DIALECTS: &[&str] = &[
    "base",
    "github",
    "bitbucket",
    "bitbucketcloud",
    "googlecode",
    "poller",
    "gitlab",
    "gitorious",
];
const GITHUB_HOOK_OPTIONS: &[&str] = &[
    "secret",
    "strict",
    "codebase",
    "class",
    "skips",
    "pullrequest_ref",
];
const BITBUCKETCLOUD_HOOK_OPTIONS: &[&str] = &["codebase"];
const GITLAB_HOOK_OPTIONS: &[&str] = &["secret"];
const GOOGLECODE_HOOK_OPTIONS: &[&str] = &["secret_key", "branch"];
const POLLER_HOOK_OPTIONS: &[&str] = &["allowed"];
const NO_OPTIONS: &[&str] = &[];

/// `change_hook_dialects`: `{github=true, poller={allowed={...}}}`. A dialect set to `false`
/// stays disabled. Returns `None` when anything was wrong (and reported).
fn read_change_hooks(kw: &mut Kwargs) -> Option<BTreeMap<String, ChangeHookDialect>> {
    let Some(value) = kw.raw("change_hook_dialects") else {
        return Some(BTreeMap::new());
    };
    let lua = kw.lua().clone();
    let Some(entries) = dialect_entries(&value) else {
        kw.error(format!(
            "option 'change_hook_dialects' must be a table of dialect names to true or an options table, got {}",
            describe(&value)
        ));
        return None;
    };
    let mut ok = true;
    let mut dialects = BTreeMap::new();
    for (name, value) in entries {
        let Some(&dialect) = DIALECTS.iter().find(|d| **d == name) else {
            kw.error(format!(
                "option 'change_hook_dialects' has {}",
                unknown("dialect", &name, DIALECTS)
            ));
            ok = false;
            continue;
        };
        let args = match value {
            Value::Boolean(false) => continue,
            Value::Boolean(true) => MultiValue::new(),
            Value::Table(_) => MultiValue::from_vec(vec![value]),
            other => {
                kw.error(format!(
                    "option 'change_hook_dialects' entry '{name}' must be true, false or a table of options, got {}",
                    describe(&other)
                ));
                ok = false;
                continue;
            }
        };
        let object = format!("{}: change hook '{dialect}'", kw.object());
        match read_dialect(&lua, dialect, object, args) {
            Some(parsed) => {
                dialects.insert(name, parsed);
            }
            None => ok = false,
        }
    }
    ok.then_some(dialects)
}

/// The entries of a table keyed by dialect name, sorted so that messages come in order.
fn dialect_entries(value: &Value) -> Option<BTreeMap<String, Value>> {
    let Value::Table(table) = value else {
        return None;
    };
    let mut entries = BTreeMap::new();
    for pair in table.clone().pairs::<Value, Value>() {
        match pair.ok()? {
            (Value::String(key), value) => entries.insert(key.to_string_lossy(), value),
            _ => return None,
        };
    }
    Some(entries)
}

fn read_dialect(
    lua: &Lua,
    dialect: &str,
    object: String,
    args: MultiValue,
) -> Option<ChangeHookDialect> {
    let allowed = match dialect {
        "github" => GITHUB_HOOK_OPTIONS,
        "googlecode" => GOOGLECODE_HOOK_OPTIONS,
        "poller" => POLLER_HOOK_OPTIONS,
        "bitbucketcloud" => BITBUCKETCLOUD_HOOK_OPTIONS,
        "gitlab" => GITLAB_HOOK_OPTIONS,
        _ => NO_OPTIONS,
    };
    let mut kw = Kwargs::new(lua, object, args, &[], allowed);
    let parsed = match dialect {
        "base" => ChangeHookDialect::Base,
        "bitbucket" => ChangeHookDialect::BitBucket,
        "bitbucketcloud" => ChangeHookDialect::BitBucketCloud {
            codebase: kw.optional("codebase"),
        },
        "gitlab" => ChangeHookDialect::GitLab {
            secret: kw.optional("secret"),
        },
        "gitorious" => ChangeHookDialect::Gitorious,
        "github" => {
            let secret: Option<String> = kw.optional("secret");
            let strict = kw.optional_or("strict", false);
            let codebase = kw.optional("codebase");
            let handlers = kw.optional::<HookClass>("class").map(|c| c.0);
            let patterns: Vec<String> = kw
                .optional("skips")
                .unwrap_or_else(|| DEFAULT_GITHUB_SKIPS.iter().map(|s| s.to_string()).collect());
            let mut skips = Vec::with_capacity(patterns.len());
            for pattern in &patterns {
                match regex::Regex::new(pattern) {
                    Ok(skip) => skips.push(skip),
                    Err(error) => kw.error(format!(
                        "option 'skips' has an invalid regular expression '{pattern}': {}",
                        regex_error(&error)
                    )),
                }
            }
            if strict && secret.is_none() {
                kw.error("option 'strict' needs a 'secret' to check signatures with");
            }
            ChangeHookDialect::GitHub(Box::new(GitHubHook {
                secret,
                strict,
                codebase,
                handlers: handlers.unwrap_or_default(),
                skips,
                pullrequest_ref: kw.optional_or("pullrequest_ref", "merge".to_string()),
            }))
        }
        "googlecode" => ChangeHookDialect::GoogleCode {
            secret_key: kw.required("secret_key"),
            branch: kw.optional_or("branch", "default".to_string()),
        },
        "poller" => ChangeHookDialect::Poller {
            allowed: kw.optional("allowed"),
        },
        _ => unreachable!("dialect names are checked against DIALECTS"),
    };
    kw.finish().then_some(parsed)
}

/// One `change_hook_auth` entry, a Twisted cred checker string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookCredentials {
    /// `file:PATH`: a file of `user:password` lines, relative to the base directory.
    File(String),
    /// `memory:USER:PASSWORD[:USER:PASSWORD...]`.
    Memory(Vec<(String, String)>),
}

impl HookCredentials {
    fn parse(spec: &str) -> Result<HookCredentials, String> {
        if let Some(path) = spec.strip_prefix("file:") {
            if !path.is_empty() {
                return Ok(HookCredentials::File(path.to_string()));
            }
        } else if let Some(pairs) = spec.strip_prefix("memory:") {
            let parts: Vec<&str> = pairs.split(':').collect();
            if parts.len() % 2 == 0 && parts.iter().all(|p| !p.is_empty()) {
                return Ok(HookCredentials::Memory(
                    parts
                        .chunks(2)
                        .map(|pair| (pair[0].to_string(), pair[1].to_string()))
                        .collect(),
                ));
            }
        }
        Err(format!(
            "'{spec}' is not supported (use 'file:PATH' or 'memory:USER:PASSWORD')"
        ))
    }
}

fn read_hook_auth(kw: &mut Kwargs) -> Vec<HookCredentials> {
    let specs: Vec<String> = kw.optional("change_hook_auth").unwrap_or_default();
    let mut credentials = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        match HookCredentials::parse(spec) {
            Ok(parsed) => credentials.push(parsed),
            Err(why) => kw.error(format!(
                "option 'change_hook_auth' item {} {why}",
                index + 1
            )),
        }
    }
    credentials
}

// ---- WebStatus -----------------------------------------------------------------------

pub const WEB_STATUS_OPTIONS: &[&str] = &[
    "http_port",
    "distrib_port",
    "allowForce",
    "public_html",
    "site",
    "numbuilds",
    "num_events",
    "num_events_max",
    "auth",
    "order_console_by_time",
    "changecommentlink",
    "revlink",
    "projects",
    "repositories",
    "authz",
    "rotateLength",
    "logRotateLength",
    "maxRotatedFiles",
    "change_hook_dialects",
    "change_hook_auth",
    "provide_feeds",
    "jinja_loaders",
    "template_dirs",
    "name",
];

/// The feeds a WebStatus serves unless `provide_feeds` names fewer.
const FEEDS: &[&str] = &["rss", "atom", "json"];

pub fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    // `Waterfall` is the 0.7 name the spec's opening example still uses; it is a WebStatus
    // (whose /waterfall page it was).
    for name in ["WebStatus", "Waterfall"] {
        let kind = if name == "WebStatus" {
            "status.WebStatus"
        } else {
            "status.Waterfall"
        };
        define(
            &ns.status,
            name,
            constructor(lua, kind, move |lua, args| {
                parse_web_status(lua, name, args)
            })?,
        )?;
    }
    Ok(())
}

fn parse_web_status(lua: &Lua, object: &str, args: MultiValue) -> Option<StatusTarget> {
    let mut kw = Kwargs::new(lua, object, args, &["http_port"], WEB_STATUS_OPTIONS);
    let mut config = WebStatusConfig::defaults(kw.location());
    config.name = read_name(&mut kw);
    if !kw.has("http_port") && !kw.has("distrib_port") {
        kw.error("needs 'http_port' (a port number or 'tcp:PORT:interface=ADDR')");
    }
    config.http_port = kw.optional("http_port");
    kw.unimplemented("distrib_port");
    if let Some(feeds) = kw.optional::<Vec<String>>("provide_feeds") {
        for feed in &feeds {
            if !FEEDS.contains(&feed.as_str()) {
                kw.error(format!(
                    "option 'provide_feeds' has {}",
                    unknown("feed", feed, FEEDS)
                ));
            }
        }
        config.provide_feeds = feeds;
    }
    kw.refuse(
        "site",
        "takes a twisted.web Site object, which a Lua config cannot provide",
    );
    kw.refuse(
        "jinja_loaders",
        "takes Jinja2 loader objects, which a Lua config cannot provide \
         (list template directories in template_dirs={...} instead)",
    );
    config.public_html = kw.optional_or("public_html", config.public_html);
    config.numbuilds = kw.optional_or("numbuilds", config.numbuilds);
    config.num_events = kw.optional_or("num_events", config.num_events);
    config.num_events_max = kw.optional("num_events_max");
    config.order_console_by_time = kw.optional_or("order_console_by_time", false);
    config.changecommentlink = kw.optional("changecommentlink");
    config.revlink = kw.optional("revlink");
    config.projects = kw.optional("projects");
    config.repositories = kw.optional("repositories");
    config.rotate_length = kw.alias(&["rotateLength", "logRotateLength"]);
    config.max_rotated_files = kw.optional("maxRotatedFiles");
    config.template_dirs = kw.optional("template_dirs").unwrap_or_default();
    let hooks = read_change_hooks(&mut kw);
    config.change_hook_auth = read_hook_auth(&mut kw);

    let authz_given = kw.has("authz");
    let auth_given = kw.has("auth");
    config.allow_force = kw.optional("allowForce");
    config.auth = kw.optional("auth");
    let authz: Option<AuthzConfig> = kw.optional("authz");
    // As Buildbot 0.8: `authz` says it all; otherwise `allowForce` (with `auth`, for logged-in
    // users only) enables every action.
    if authz_given {
        if config.allow_force.is_some() {
            kw.error("options 'allowForce' and 'authz' exclude each other; give the actions in util.Authz{...}");
        }
        if auth_given {
            kw.error("give 'auth' inside util.Authz{auth=...}, not beside 'authz'");
        }
    } else if config.allow_force == Some(true) {
        config.authz = match &config.auth {
            Some(auth) => AuthzConfig::new(AuthzRule::Auth, Some(auth.clone())),
            None => AuthzConfig::new(AuthzRule::Allow, None),
        };
    } else if auth_given {
        kw.error(
            "option 'auth' does nothing without allowForce=true; \
             use authz=util.Authz{auth=..., forceBuild='auth'}",
        );
    }
    if let Some(authz) = authz {
        config.authz = authz;
    }
    let ok = kw.finish();
    config.change_hook_dialects = hooks?;
    ok.then(|| StatusTarget::WebStatus(Box::new(config)))
}

// ---- c['www'] ------------------------------------------------------------------------

const WWW_OPTIONS: &[&str] = &[
    "port",
    "plugins",
    "auth",
    "authz",
    "change_hook_dialects",
    "change_hook_auth",
    "logRotateLength",
    "maxRotatedFiles",
];

/// `c['www'] = {port=8010, ...}` as a WebStatus. It is read after the config has run, so its
/// messages are pointed at the line that assigned `c['www']`.
pub(super) fn read_www(lua: &Lua, value: Value, location: Location) -> Option<StatusTarget> {
    if !matches!(value, Value::Table(_)) {
        report_error(
            lua,
            ConfigError::at(
                location,
                format!(
                    "c['www'] must be a table of web server options, got {}",
                    describe(&value)
                ),
            ),
        );
        return None;
    }
    let marks = lua
        .app_data_ref::<Diagnostics>()
        .map(|d| (d.errors.len(), d.unimplemented.len()));
    let mut kw = Kwargs::new(
        lua,
        "c['www']",
        MultiValue::from_vec(vec![value]),
        &[],
        WWW_OPTIONS,
    );
    let placeholder = kw.location();
    let target = read_www_options(&mut kw, location.clone());
    let ok = kw.finish();
    if let (Some((errors, unimplemented)), Some(mut diagnostics)) =
        (marks, lua.app_data_mut::<Diagnostics>())
    {
        let repoint = |list: &mut [ConfigError]| {
            for error in list {
                if error.location.as_ref() == Some(&placeholder) {
                    error.location = Some(location.clone());
                }
            }
        };
        repoint(&mut diagnostics.errors[errors..]);
        repoint(&mut diagnostics.unimplemented[unimplemented..]);
    }
    target.filter(|_| ok)
}

fn read_www_options(kw: &mut Kwargs, location: Location) -> Option<StatusTarget> {
    let mut config = WebStatusConfig::defaults(location);
    config.http_port = kw.required_opt("port");
    kw.unimplemented("plugins");
    config.rotate_length = kw.optional("logRotateLength");
    config.max_rotated_files = kw.optional("maxRotatedFiles");
    let hooks = read_change_hooks(kw);
    config.change_hook_auth = read_hook_auth(kw);
    let auth_given = kw.has("auth");
    config.auth = kw.optional("auth");
    let authz: Option<AuthzConfig> = kw.optional("authz");
    // Here `auth` is how users log in and `authz` what they may do, as in Buildbot 0.9.
    config.authz = match (authz, &config.auth) {
        (Some(mut authz), Some(auth)) => {
            if authz.auth.is_some() {
                kw.error("give the login method once: in 'auth' or in util.Authz{auth=...}");
            }
            authz.auth = Some(auth.clone());
            authz
        }
        (Some(authz), None) => authz,
        (None, Some(auth)) => AuthzConfig::new(AuthzRule::Auth, Some(auth.clone())),
        (None, None) if auth_given => return None,
        // Buildbot 0.9 and later allow what no rule forbids.
        (None, None) => AuthzConfig::new(AuthzRule::Allow, None),
    };
    config.change_hook_dialects = hooks?;
    Some(StatusTarget::WebStatus(Box::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::status::testing::{errors, target, unimplemented};
    use crate::config::status::AuthzAction;

    fn web(snippet: &str) -> WebStatusConfig {
        match target(snippet) {
            StatusTarget::WebStatus(config) => *config,
            other => panic!("expected a WebStatus, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let config = web("c['status'] = {status.WebStatus(8080)}");
        assert_eq!(config.http_port, Some(PortSpec::parse("8080").unwrap()));
        assert_eq!(config.name.as_deref(), Some("WebStatus"));
        assert_eq!(config.allow_force, None);
        assert_eq!(config.public_html, "public_html");
        assert_eq!(config.numbuilds, 20);
        assert_eq!(config.num_events, 200);
        assert_eq!(config.num_events_max, None);
        assert!(config.auth.is_none());
        assert!(!config.order_console_by_time);
        assert!(config.changecommentlink.is_none());
        assert!(config.revlink.is_none());
        assert!(config.projects.is_none());
        assert!(config.repositories.is_none());
        assert!(matches!(
            config.authz.rule(AuthzAction::ForceBuild),
            AuthzRule::Deny
        ));
        assert!(matches!(
            config.authz.rule(AuthzAction::View),
            AuthzRule::Allow
        ));
        assert_eq!(config.rotate_length, None);
        assert_eq!(config.max_rotated_files, None);
        assert!(config.change_hook_dialects.is_empty());
        assert!(config.change_hook_auth.is_empty());
        assert!(config.template_dirs.is_empty());
        assert_eq!(config.location.to_string(), "master.cfg.lua:1");
    }

    #[test]
    fn every_option() {
        let config = web(r##"local function codebase(payload) return "main" end
            local function link(text, project) return text end
            c['status'] = {status.WebStatus{
              http_port="tcp:8080:interface=127.0.0.1", public_html="/var/www/buildbot",
              numbuilds=13, num_events=50, num_events_max=500, order_console_by_time=true,
              changecommentlink={"#(\\d+)", "http://buildbot.net/trac/ticket/\\1", "Ticket \\g<0>"},
              revlink="http://github.com/buildbot/buildbot/tree/%s",
              projects={buildbot="http://buildbot.net/"},
              repositories=function(name) return "http://example.org/" .. name end,
              authz=util.Authz{forceBuild=true},
              rotateLength=1000000, maxRotatedFiles=5,
              change_hook_dialects={
                base=true, bitbucket=true, gitlab={}, gitorious=true,
                github={secret="MY-SECRET", strict=true, codebase=codebase},
                googlecode={secret_key="FSP3p-Ghdn4T0oqX", branch="master"},
                poller={allowed={"https://amanda.svn.sourceforge.net/svnroot/amanda/amanda"}},
              },
              change_hook_auth={"file:changehook.passwd", "memory:bob:pw:al:x"},
              template_dirs={"templates", "/srv/templates"},
              name="web",
            }}"##);
        assert_eq!(config.name.as_deref(), Some("web"));
        assert_eq!(
            config.http_port,
            Some(PortSpec {
                port: 8080,
                interface: Some("127.0.0.1".into())
            })
        );
        assert_eq!(config.public_html, "/var/www/buildbot");
        assert_eq!(
            (config.numbuilds, config.num_events, config.num_events_max),
            (13, 50, Some(500))
        );
        assert!(config.order_console_by_time);
        match config.changecommentlink {
            Some(CommentLink::Rule(rule)) => assert_eq!(
                rule,
                CommentLinkRule {
                    regex: r"#(\d+)".into(),
                    replacement: r"http://buildbot.net/trac/ticket/\1".into(),
                    title: r"Ticket \g<0>".into(),
                }
            ),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(config.revlink, Some(RevLink::Format(f)) if f == "http://github.com/buildbot/buildbot/tree/%s")
        );
        assert!(
            matches!(config.projects, Some(UrlMap::Table(t)) if t["buildbot"] == "http://buildbot.net/")
        );
        assert!(matches!(config.repositories, Some(UrlMap::Function(f)) if f.location().line == 9));
        assert!(matches!(
            config.authz.rule(AuthzAction::ForceBuild),
            AuthzRule::Allow
        ));
        assert_eq!(config.rotate_length, Some(1_000_000));
        assert_eq!(config.max_rotated_files, Some(5));
        let hooks: Vec<String> = config
            .change_hook_dialects
            .iter()
            .map(|(name, dialect)| format!("{name}={dialect:?}"))
            .collect();
        assert_eq!(
            hooks,
            [
                "base=Base",
                "bitbucket=BitBucket",
                "github=GitHub(GitHubHook { secret: Some(\"MY-SECRET\"), strict: true, codebase: Some(Function(<function master.cfg.lua:1>)), handlers: {}, skips: [Regex(\"\\\\[ *skip *ci *\\\\]\"), Regex(\"\\\\[ *ci *skip *\\\\]\")], pullrequest_ref: \"merge\" })",
                "gitlab=GitLab { secret: None }",
                "gitorious=Gitorious",
                "googlecode=GoogleCode { secret_key: \"FSP3p-Ghdn4T0oqX\", branch: \"master\" }",
                "poller=Poller { allowed: Some([\"https://amanda.svn.sourceforge.net/svnroot/amanda/amanda\"]) }",
            ]
        );
        assert_eq!(
            config.change_hook_auth,
            [
                HookCredentials::File("changehook.passwd".into()),
                HookCredentials::Memory(vec![
                    ("bob".into(), "pw".into()),
                    ("al".into(), "x".into())
                ]),
            ]
        );
        assert_eq!(config.template_dirs, ["templates", "/srv/templates"]);
    }

    #[test]
    fn link_options_in_their_other_forms() {
        let config = web(r##"c['status'] = {status.WebStatus{http_port=8010,
              changecommentlink={buildbot={"#(\\d+)", "http://trac/\\1", "Ticket"}},
              revlink={["git://example.org/a"]="http://example.org/a/%s"},
              projects=function(name) return name end,
              repositories={a="http://example.org/a"},
              logRotateLength=10, change_hook_dialects={github={codebase="core"}, poller=false}}}"##);
        assert!(
            matches!(config.changecommentlink, Some(CommentLink::PerProject(t)) if t["buildbot"].replacement == r"http://trac/\1")
        );
        assert!(
            matches!(config.revlink, Some(RevLink::PerRepository(t)) if t["git://example.org/a"] == "http://example.org/a/%s")
        );
        assert!(matches!(config.projects, Some(UrlMap::Function(_))));
        assert!(matches!(config.repositories, Some(UrlMap::Table(_))));
        assert_eq!(config.rotate_length, Some(10));
        assert!(matches!(
            &config.change_hook_dialects["github"],
            ChangeHookDialect::GitHub(hook) if matches!(
                &**hook,
                GitHubHook { secret: None, strict: false, codebase: Some(HookCodebase::Name(c)), .. } if c == "core"
            )
        ));
        assert!(!config.change_hook_dialects.contains_key("poller"));
        let config = web(
            "c['status'] = {status.WebStatus{http_port=8010, changecommentlink=function(t, p) return t end}}",
        );
        assert!(matches!(
            config.changecommentlink,
            Some(CommentLink::Function(_))
        ));
    }

    #[test]
    fn allow_force_and_auth_stand_for_an_authz() {
        let config = web("c['status'] = {status.WebStatus{http_port=8010, allowForce=true}}");
        assert_eq!(config.allow_force, Some(true));
        assert!(matches!(
            config.authz.rule(AuthzAction::StopBuild),
            AuthzRule::Allow
        ));
        assert!(config.authz.auth.is_none());
        let config = web(
            "c['status'] = {status.WebStatus{http_port=8010, allowForce=true,
                                             auth=util.BasicAuth({{'bob', 'pw'}})}}",
        );
        assert!(matches!(
            config.authz.rule(AuthzAction::ForceBuild),
            AuthzRule::Auth
        ));
        assert!(matches!(
            config.authz.rule(AuthzAction::View),
            AuthzRule::Allow
        ));
        assert_eq!(config.authz.auth, config.auth);
        assert!(config.auth.is_some());
        let config = web("c['status'] = {status.WebStatus{http_port=8010, allowForce=false}}");
        assert!(matches!(
            config.authz.rule(AuthzAction::ForceBuild),
            AuthzRule::Deny
        ));
    }

    #[test]
    fn unimplemented_options_warn() {
        assert_eq!(
            unimplemented(
                "c['status'] = {status.WebStatus{http_port=8010, distrib_port='unix:/tmp/s', provide_feeds={'rss'}}}"
            ),
            [
                "master.cfg.lua:1: WebStatus: option 'distrib_port' is not implemented yet",
            ]
        );
        assert_eq!(
            unimplemented("c['status'] = {status.WebStatus{distrib_port='tcp:12345'}}"),
            ["master.cfg.lua:1: WebStatus: option 'distrib_port' is not implemented yet"]
        );
    }

    #[test]
    fn provide_feeds_names_only_known_feeds() {
        let config =
            web("c['status'] = {status.WebStatus{http_port=8010, provide_feeds={'atom'}}}");
        assert_eq!(config.provide_feeds, ["atom"]);
        assert_eq!(
            errors("c['status'] = {status.WebStatus{http_port=8010, provide_feeds={'rs'}}}"),
            "master.cfg.lua:1: WebStatus: option 'provide_feeds' has unknown feed 'rs' (did you mean 'rss'?)"
        );
    }

    #[test]
    fn access_options_are_applied_whatever_they_allow() {
        for snippet in [
            "c['status'] = {status.WebStatus{http_port=8010, allowForce=true}}",
            "c['status'] = {status.WebStatus{http_port=8010, allowForce=false}}",
            "c['status'] = {status.WebStatus{http_port=8010, authz=util.Authz{
               auth=util.BasicAuth({{'bob', 'pw'}}), forceBuild='auth'}}}",
            "c['www'] = {port=8010, auth=util.HTPasswdAuth('htpasswd')}",
            "c['www'] = {port=8010, authz=util.Authz{default_action=true},
                         change_hook_dialects={github=false}, change_hook_auth={}}",
        ] {
            assert_eq!(unimplemented(snippet), Vec::<String>::new(), "{snippet}");
        }
    }

    #[test]
    fn www_without_authz_is_open_as_in_buildbot_nine() {
        let config = web("c['www'] = {port=8010}");
        for action in AuthzAction::ALL {
            assert!(
                matches!(config.authz.rule(action), AuthzRule::Allow),
                "{action:?}"
            );
        }
        let config = web("c['status'] = {status.WebStatus{http_port=8010}}");
        assert!(matches!(
            config.authz.rule(AuthzAction::ForceBuild),
            AuthzRule::Deny
        ));
    }

    #[test]
    fn every_option_is_applied_none_reported_not_implemented() {
        assert!(unimplemented(
            r##"c['status'] = {status.WebStatus{
              http_port=8010, public_html="/var/www", numbuilds=20, num_events=200,
              num_events_max=500, order_console_by_time=false,
              changecommentlink={"#(\\d+)", "http://trac/\\1", "Ticket"},
              revlink="http://x/%s", projects={a="http://a"}, repositories={a="http://a"},
              rotateLength=10, maxRotatedFiles=2, change_hook_dialects={base=true},
              change_hook_auth={"file:changehook.passwd"}, template_dirs={"t"},
              allowForce=true, auth=util.BasicAuth({{'bob', 'pw'}}), name="web"}}"##,
        )
        .is_empty());
        assert!(unimplemented(
            "c['www'] = {port=8010, change_hook_dialects={base=true}, \
                         change_hook_auth={'file:p'}, logRotateLength=1, maxRotatedFiles=2}"
        )
        .is_empty());
    }

    #[test]
    fn links_given_as_strings_tables_or_lua_functions_are_applied() {
        assert_eq!(
            unimplemented(
                "c['status'] = {status.WebStatus{http_port=8010, public_html='www',
                   numbuilds=3, template_dirs={'t'}, revlink='http://x/%s', num_events=5,
                   num_events_max=10,
                   changecommentlink={'#([0-9]+)', 'http://t/%1', 'T'},
                   projects={p='http://p'}, repositories={r='http://r'}}}"
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            unimplemented(
                "local f = function() return '' end
                 c['status'] = {status.WebStatus{http_port=8010, revlink=f,
                   changecommentlink=f, projects=f, repositories=f}}"
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_second_web_server_is_not_implemented() {
        assert_eq!(
            unimplemented(
                "c['status'] = {status.WebStatus(8010),\n status.WebStatus{http_port=8011, name='other'}}"
            ),
            ["master.cfg.lua:2: WebStatus 'other': a second web server is not implemented yet (the master serves 'WebStatus' only)"]
        );
    }

    #[test]
    fn errors_are_exact() {
        let cases = [
            (
                "status.WebStatus{numbuilds=5}",
                "master.cfg.lua:1: WebStatus: needs 'http_port' (a port number or 'tcp:PORT:interface=ADDR')",
            ),
            (
                "status.Waterfall{numbuilds=5}",
                "master.cfg.lua:1: Waterfall: needs 'http_port' (a port number or 'tcp:PORT:interface=ADDR')",
            ),
            (
                "status.WebStatus('unix:/tmp/sock')",
                "master.cfg.lua:1: WebStatus: option 'http_port' 'unix:/tmp/sock' is not a port (use 8010 or 'tcp:8010:interface=127.0.0.1')",
            ),
            (
                "status.WebStatus{http_port=8010, jinja_loaders={}}",
                "master.cfg.lua:1: WebStatus: option 'jinja_loaders' takes Jinja2 loader objects, which a Lua config cannot provide (list template directories in template_dirs={...} instead)",
            ),
            (
                "status.WebStatus{http_port=8010, site={}}",
                "master.cfg.lua:1: WebStatus: option 'site' takes a twisted.web Site object, which a Lua config cannot provide",
            ),
            (
                "status.WebStatus{http_port=8010, allowForce=true, authz=util.Authz{}}",
                "master.cfg.lua:1: WebStatus: options 'allowForce' and 'authz' exclude each other; give the actions in util.Authz{...}",
            ),
            (
                "status.WebStatus{http_port=8010, auth=util.HTPasswdAuth('p'), authz=util.Authz{}}",
                "master.cfg.lua:1: WebStatus: give 'auth' inside util.Authz{auth=...}, not beside 'authz'",
            ),
            (
                "status.WebStatus{http_port=8010, auth=util.HTPasswdAuth('p')}",
                "master.cfg.lua:1: WebStatus: option 'auth' does nothing without allowForce=true; use authz=util.Authz{auth=..., forceBuild='auth'}",
            ),
            (
                "status.WebStatus{http_port=8010, authz={forceBuild=true}}",
                "master.cfg.lua:1: WebStatus: option 'authz' must be a util.Authz{...}, got table",
            ),
            (
                "status.WebStatus{http_port=8010, numbuilds='20'}",
                "master.cfg.lua:1: WebStatus: option 'numbuilds' must be an integer from 0 to 18446744073709551615, got string '20'",
            ),
            (
                "status.WebStatus{http_port=8010, rotateLength=1, logRotateLength=2}",
                "master.cfg.lua:1: WebStatus: options 'rotateLength' and 'logRotateLength' are the same; give only one",
            ),
            (
                "status.WebStatus{http_port=8010, revlink='http://example.org/rev'}",
                "master.cfg.lua:1: WebStatus: option 'revlink' must have one %s where the revision goes (and %% for a literal %), got 'http://example.org/rev'",
            ),
            (
                "status.WebStatus{http_port=8010, revlink={a='http://x/%s/%s'}}",
                "master.cfg.lua:1: WebStatus: option 'revlink' entry 'a' must have one %s where the revision goes (and %% for a literal %), got 'http://x/%s/%s'",
            ),
            (
                "status.WebStatus{http_port=8010, revlink=7}",
                "master.cfg.lua:1: WebStatus: option 'revlink' must be a URL format with %s, a table of repositories to such formats, or a function, got number 7",
            ),
            (
                "status.WebStatus{http_port=8010, changecommentlink={'#(\\\\d+', 'u', 't'}}",
                "master.cfg.lua:1: WebStatus: option 'changecommentlink' has an invalid regular expression '#(\\d+': unclosed group",
            ),
            (
                "status.WebStatus{http_port=8010, changecommentlink={'a', 'b'}}",
                "master.cfg.lua:1: WebStatus: option 'changecommentlink' must be a {regex, replacement, title} triple, got table",
            ),
            (
                "status.WebStatus{http_port=8010, changecommentlink={p={'a', 'b'}}}",
                "master.cfg.lua:1: WebStatus: option 'changecommentlink' entry 'p' must be a {regex, replacement, title} triple, got table",
            ),
            (
                "status.WebStatus{http_port=8010, projects='http://x'}",
                "master.cfg.lua:1: WebStatus: option 'projects' must be a table of names to URLs or a function, got string 'http://x'",
            ),
            (
                "status.WebStatus{http_port=8010, change_hook_dialects={githbu=true}}",
                "master.cfg.lua:1: WebStatus: option 'change_hook_dialects' has unknown dialect 'githbu' (did you mean 'github'?)",
            ),
            (
                "status.WebStatus{http_port=8010, change_hook_dialects={base=true, somehook={option1=true, option2=false}}}",
                "master.cfg.lua:1: WebStatus: option 'change_hook_dialects' has unknown dialect 'somehook'",
            ),
            (
                "status.WebStatus{http_port=8010, change_hook_dialects={'github'}}",
                "master.cfg.lua:1: WebStatus: option 'change_hook_dialects' must be a table of dialect names to true or an options table, got table",
            ),
            (
                "status.WebStatus{http_port=8010, change_hook_dialects={github='yes'}}",
                "master.cfg.lua:1: WebStatus: option 'change_hook_dialects' entry 'github' must be true, false or a table of options, got string 'yes'",
            ),
            (
                "status.WebStatus{http_port=8010, change_hook_dialects={github={class='MyHandler'}}}",
                "master.cfg.lua:1: WebStatus: change hook 'github': option 'class' must be a table of handle_EVENT functions, got string 'MyHandler'",
            ),
            (
                "status.WebStatus{http_port=8010, change_hook_dialects={github={class={blah=function() end}}}}",
                "master.cfg.lua:1: WebStatus: change hook 'github': option 'class' has 'blah', not a handle_EVENT name (handle_push, handle_release, ...)",
            ),
            (
                "status.WebStatus{http_port=8010, change_hook_dialects={github={class={handle_blah=1}}}}",
                "master.cfg.lua:1: WebStatus: change hook 'github': option 'class' entry 'handle_blah' must be a function, got number 1",
            ),
            (
                "status.WebStatus{http_port=8010, change_hook_dialects={github={skips={'[ci'}}}}",
                "master.cfg.lua:1: WebStatus: change hook 'github': option 'skips' has an invalid regular expression '[ci': unclosed character class",
            ),
            (
                "status.WebStatus{http_port=8010, change_hook_dialects={github={strict=true}}}",
                "master.cfg.lua:1: WebStatus: change hook 'github': option 'strict' needs a 'secret' to check signatures with",
            ),
            (
                "status.WebStatus{http_port=8010, change_hook_dialects={github={secrte='x'}}}",
                "master.cfg.lua:1: WebStatus: change hook 'github': unknown option 'secrte' (did you mean 'secret'?)",
            ),
            (
                "status.WebStatus{http_port=8010, change_hook_dialects={github={codebase=1}}}",
                "master.cfg.lua:1: WebStatus: change hook 'github': option 'codebase' must be a codebase name or a function, got number 1",
            ),
            (
                "status.WebStatus{http_port=8010, change_hook_dialects={googlecode=true}}",
                "master.cfg.lua:1: WebStatus: change hook 'googlecode': missing required option 'secret_key'",
            ),
            (
                "status.WebStatus{http_port=8010, change_hook_dialects={bitbucket={project='x'}}}",
                "master.cfg.lua:1: WebStatus: change hook 'bitbucket': unknown option 'project'",
            ),
            (
                "status.WebStatus{http_port=8010, change_hook_dialects={poller={allowed='x'}}}",
                "master.cfg.lua:1: WebStatus: change hook 'poller': option 'allowed' must be a list of strings, got string 'x'",
            ),
            (
                "status.WebStatus{http_port=8010, change_hook_auth={'unix'}}",
                "master.cfg.lua:1: WebStatus: option 'change_hook_auth' item 1 'unix' is not supported (use 'file:PATH' or 'memory:USER:PASSWORD')",
            ),
            (
                "status.WebStatus{http_port=8010, change_hook_auth={'memory:bob'}}",
                "master.cfg.lua:1: WebStatus: option 'change_hook_auth' item 1 'memory:bob' is not supported (use 'file:PATH' or 'memory:USER:PASSWORD')",
            ),
            (
                "status.WebStatus{http_port=8010, change_hook_auth='file:x'}",
                "master.cfg.lua:1: WebStatus: option 'change_hook_auth' must be a list of strings, got string 'file:x'",
            ),
            (
                "status.WebStatus{http_port=8010, template_dir={'t'}}",
                "master.cfg.lua:1: WebStatus: unknown option 'template_dir' (did you mean 'template_dirs'?)",
            ),
        ];
        for (snippet, expected) in cases {
            assert_eq!(errors(snippet), expected, "{snippet}");
        }
    }

    #[test]
    fn the_spec_examples() {
        // Configuration, public_html, order_console_by_time, HTTP connection.
        for snippet in [
            "c['status']:append(status.WebStatus(8080))",
            "c['status']:append(status.WebStatus(8080, {public_html='/var/www/buildbot'}))",
            "c['status']:append(status.WebStatus{http_port=8080, order_console_by_time=true})",
            "c['status']:append(status.WebStatus{http_port='tcp:8080:interface=127.0.0.1'})",
        ] {
            target(snippet);
        }
        // Authorization and authentication.
        let config = web(
            "local users = {{'bob', 'secret-pass'}, {'jill', 'super-pass'}}
             local authz = util.Authz{auth=util.BasicAuth(users),
                 forceBuild='auth', -- only authenticated users
                 pingBuilder=true, -- but anyone can do this
             }
             c['status']:append(status.WebStatus{http_port=8080, authz=authz})",
        );
        assert!(matches!(
            config.authz.rule(AuthzAction::ForceBuild),
            AuthzRule::Auth
        ));
        assert!(matches!(
            config.authz.rule(AuthzAction::PingBuilder),
            AuthzRule::Allow
        ));
        web("local function canForceBuild(username, builder_status)
               if builder_status:getName() == 'smoketest' then return true
               elseif username == 'releng' then return true
               else return false end
             end
             local authz = util.Authz{auth=util.BasicAuth({{'bob', 'pw'}}), forceBuild=canForceBuild}
             c['status']:append(status.WebStatus{http_port=8080, authz=authz})");
        web("local authz = util.Authz{useHttpHeader=true}
             c['status']:append(status.WebStatus{http_port=8080, authz=authz})");
        web("local authz = util.Authz{useHttpHeader=true,
                 httpLoginUrl='https://buildbot.example.org/login',
                 auth=util.HTPasswdAprAuth('/var/www/htpasswd'),
                 forceBuild='auth'}
             c['status']:append(status.WebStatus{http_port=8010, authz=authz})");
        // Change hooks.
        web(
            "c['status']:append(status.WebStatus{http_port=8010, allowForce=true,
                 change_hook_dialects={base=true}})",
        );
        for dialects in [
            "{github={}}",
            "{github={secret='MY-SECRET', strict=true}}",
            "{bitbucket=true}",
            "{googlecode={secret_key='FSP3p-Ghdn4T0oqX'}}",
            "{googlecode={secret_key='FSP3p-Ghdn4T0oqX', branch='master'}}",
            "{poller=true}",
            "{poller={allowed={'https://amanda.svn.sourceforge.net/svnroot/amanda/amanda'}}}",
            "{gitlab=true}",
            "{gitorious=true}",
        ] {
            web(&format!(
                "c['status']:append(status.WebStatus{{http_port=8010, change_hook_dialects={dialects},
                     change_hook_auth={{'file:changehook.passwd'}}}})"
            ));
        }
        // URL-decorating options.
        web(r##"c['status']:append(status.WebStatus{http_port=8010,
                 revlink='http://github.com/buildbot/buildbot/tree/%s',
                 changecommentlink={"#(\\d+)", "http://buildbot.net/trac/ticket/\\1", "Ticket \\g<0>"}})"##);
    }

    #[test]
    fn www_is_a_web_status() {
        let config = web(
            "c['www'] = {port=8010, change_hook_dialects={github={secret='s'}},
                         change_hook_auth={'file:changehook.passwd'},
                         auth=util.BasicAuth({{'bob', 'pw'}}),
                         authz=util.Authz{pingBuilder=true},
                         logRotateLength=100, maxRotatedFiles=3}",
        );
        assert_eq!(config.http_port, Some(PortSpec::parse("8010").unwrap()));
        assert!(config.change_hook_dialects.contains_key("github"));
        assert_eq!(config.change_hook_auth.len(), 1);
        assert!(matches!(
            config.authz.rule(AuthzAction::PingBuilder),
            AuthzRule::Allow
        ));
        assert_eq!(config.authz.auth, config.auth);
        assert_eq!(
            (config.rotate_length, config.max_rotated_files),
            (Some(100), Some(3))
        );

        let config =
            web("c['www'] = {port='tcp:8010:interface=127.0.0.1', auth=util.HTPasswdAuth('p')}");
        assert!(matches!(
            config.authz.rule(AuthzAction::ForceBuild),
            AuthzRule::Auth
        ));
        assert_eq!(config.authz.auth, Some(AuthConfig::HtPasswd("p".into())));
        assert_eq!(
            unimplemented("c['www'] = {port=8010, plugins={waterfall_view={}}}"),
            ["master.cfg.lua:1: c['www']: option 'plugins' is not implemented yet"]
        );
    }

    #[test]
    fn www_errors_point_at_the_assignment() {
        let cases = [
            ("\nc['www'] = {}", "master.cfg.lua:2: c['www']: missing required option 'port'"),
            (
                "\n\nc['www'] = {port=8010, prot=1}",
                "master.cfg.lua:3: c['www']: unknown option 'prot' (did you mean 'port'?)",
            ),
            ("c['www'] = 8010", "master.cfg.lua:1: c['www'] must be a table of web server options, got number 8010"),
            (
                "c['www'] = {port=8010, change_hook_dialects={gitlub=true}}",
                "master.cfg.lua:1: c['www']: option 'change_hook_dialects' has unknown dialect 'gitlub' (did you mean 'gitlab'?)",
            ),
            (
                "c['www'] = {port=8010, change_hook_dialects={github={class=1}}}",
                "master.cfg.lua:1: c['www']: change hook 'github': option 'class' must be a table of handle_EVENT functions, got number 1",
            ),
            (
                "c['www'] = {port=8010, auth=util.HTPasswdAuth('p'), authz=util.Authz{auth=util.HTPasswdAuth('p')}}",
                "master.cfg.lua:1: c['www']: give the login method once: in 'auth' or in util.Authz{auth=...}",
            ),
        ];
        for (snippet, expected) in cases {
            assert_eq!(errors(snippet), expected, "{snippet}");
        }
    }
}
