//! `util.Authz`, who may do what on the web pages, and the authentication helpers it takes:
//! `util.BasicAuth`, `util.HTPasswdAuth`, `util.HTPasswdAprAuth`, `util.UsersAuth`.

use std::collections::BTreeMap;

use mlua::{Lua, MultiValue, UserData, Value};

use crate::config::kwargs::{constructor, mismatch, FromOption, OptionError};
use crate::config::{define, Kwargs, Namespaces};
use crate::script::Callback;

/// An action the web pages can take, as Buildbot 0.8's `Authz.knownActions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuthzAction {
    View,
    ForceBuild,
    ForceAllBuilds,
    PingBuilder,
    GracefulShutdown,
    PauseSlave,
    StopBuild,
    StopAllBuilds,
    CancelPendingBuild,
    CancelAllPendingBuilds,
    StopChange,
    CleanShutdown,
    ShowUsersPage,
}

impl AuthzAction {
    pub const ALL: [AuthzAction; 13] = [
        AuthzAction::View,
        AuthzAction::ForceBuild,
        AuthzAction::ForceAllBuilds,
        AuthzAction::PingBuilder,
        AuthzAction::GracefulShutdown,
        AuthzAction::PauseSlave,
        AuthzAction::StopBuild,
        AuthzAction::StopAllBuilds,
        AuthzAction::CancelPendingBuild,
        AuthzAction::CancelAllPendingBuilds,
        AuthzAction::StopChange,
        AuthzAction::CleanShutdown,
        AuthzAction::ShowUsersPage,
    ];

    /// The option name, as in Buildbot.
    pub fn name(self) -> &'static str {
        match self {
            AuthzAction::View => "view",
            AuthzAction::ForceBuild => "forceBuild",
            AuthzAction::ForceAllBuilds => "forceAllBuilds",
            AuthzAction::PingBuilder => "pingBuilder",
            AuthzAction::GracefulShutdown => "gracefulShutdown",
            AuthzAction::PauseSlave => "pauseSlave",
            AuthzAction::StopBuild => "stopBuild",
            AuthzAction::StopAllBuilds => "stopAllBuilds",
            AuthzAction::CancelPendingBuild => "cancelPendingBuild",
            AuthzAction::CancelAllPendingBuilds => "cancelAllPendingBuilds",
            AuthzAction::StopChange => "stopChange",
            AuthzAction::CleanShutdown => "cleanShutdown",
            AuthzAction::ShowUsersPage => "showUsersPage",
        }
    }
}

/// Whether an action is allowed: `false`, `true`, `"auth"` (any logged-in user) or a function
/// called with the user name and the action's object, as in Buildbot.
#[derive(Clone, Debug)]
pub enum AuthzRule {
    Deny,
    Allow,
    Auth,
    Function(Callback),
}

impl AuthzRule {
    /// Whether the rule can only pass for a logged-in user.
    pub fn needs_login(&self) -> bool {
        matches!(self, AuthzRule::Auth | AuthzRule::Function(_))
    }
}

impl FromOption for AuthzRule {
    fn expected() -> String {
        "true, false, 'auth' or a function".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::Boolean(true) => Ok(AuthzRule::Allow),
            Value::Boolean(false) => Ok(AuthzRule::Deny),
            Value::String(s) if s.as_bytes() == b"auth" => Ok(AuthzRule::Auth),
            Value::Function(_) => Callback::from_option(value, lua).map(AuthzRule::Function),
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

/// `util.Authz{...}`: a rule for every action, and how users log in.
#[derive(Clone, Debug)]
pub struct AuthzConfig {
    pub auth: Option<AuthConfig>,
    /// Trust the user name a fronting web server puts in the request.
    pub use_http_header: bool,
    /// Shown as a "Login" link to users the fronting server has not authenticated.
    pub http_login_url: Option<String>,
    /// The rule of every action not given, except `view`, which defaults to allowed.
    pub default_action: AuthzRule,
    /// Every action's rule.
    rules: BTreeMap<AuthzAction, AuthzRule>,
}

impl AuthzConfig {
    /// Buildbot's `Authz(default_action=..., auth=...)`: every action follows `default_action`
    /// but `view`, which is allowed.
    pub fn new(default_action: AuthzRule, auth: Option<AuthConfig>) -> AuthzConfig {
        let rules = AuthzAction::ALL
            .iter()
            .map(|&action| match action {
                AuthzAction::View => (action, AuthzRule::Allow),
                _ => (action, default_action.clone()),
            })
            .collect();
        AuthzConfig {
            auth,
            use_http_header: false,
            http_login_url: None,
            default_action,
            rules,
        }
    }

    pub fn rule(&self, action: AuthzAction) -> &AuthzRule {
        &self.rules[&action]
    }
}

/// Read-only: anyone may view, nobody may act.
impl Default for AuthzConfig {
    fn default() -> Self {
        AuthzConfig::new(AuthzRule::Deny, None)
    }
}

impl UserData for AuthzConfig {}
crate::config_object!(AuthzConfig, "util.Authz{...}");

/// How web users log in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthConfig {
    /// `util.BasicAuth(users)`: user names and passwords from the config, in the order given.
    Basic(Vec<(String, String)>),
    /// `util.HTPasswdAuth(file)`: an Apache `.htpasswd` file (crypt hashes).
    HtPasswd(String),
    /// `util.HTPasswdAprAuth(file)`: the same file; both read every form `htpasswd` writes.
    HtPasswdApr(String),
}

impl UserData for AuthConfig {}
crate::config_object!(
    AuthConfig,
    "login method (util.BasicAuth(...), util.HTPasswdAuth(...), util.HTPasswdAprAuth(...) or util.UsersAuth())"
);

/// The users of `util.BasicAuth`: a list of `{user, password}` pairs or a table of user
/// names to passwords.
#[derive(Default)]
struct BasicAuthUsers(Vec<(String, String)>);

impl FromOption for BasicAuthUsers {
    fn expected() -> String {
        "a list of {user, password} pairs or a table of user names to passwords".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        let Value::Table(table) = &value else {
            return Err(mismatch::<Self>(&value));
        };
        if table.raw_len() == 0 {
            let users = BTreeMap::<String, String>::from_option(value, lua)?;
            return Ok(BasicAuthUsers(users.into_iter().collect()));
        }
        let pairs = Vec::<Vec<String>>::from_option(value.clone(), lua)
            .map_err(|_| mismatch::<Self>(&value))?;
        pairs
            .into_iter()
            .enumerate()
            .map(|(index, pair)| match <[String; 2]>::try_from(pair) {
                Ok([user, password]) => Ok((user, password)),
                Err(_) => Err(OptionError::Wrong(format!(
                    "item {} must be a {{user, password}} pair",
                    index + 1
                ))),
            })
            .collect::<Result<_, _>>()
            .map(BasicAuthUsers)
    }
}

pub const AUTHZ_OPTIONS: &[&str] = &[
    "view",
    "forceBuild",
    "forceAllBuilds",
    "pingBuilder",
    "gracefulShutdown",
    "pauseSlave",
    "stopBuild",
    "stopAllBuilds",
    "cancelPendingBuild",
    "cancelAllPendingBuilds",
    "stopChange",
    "cleanShutdown",
    "showUsersPage",
    "auth",
    "useHttpHeader",
    "httpLoginUrl",
    "default_action",
];
pub const BASIC_AUTH_OPTIONS: &[&str] = &["users"];
pub const HTPASSWD_AUTH_OPTIONS: &[&str] = &["file"];
pub const USERS_AUTH_OPTIONS: &[&str] = &[];

pub fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    define(
        &ns.util,
        "Authz",
        constructor(lua, "util.Authz", parse_authz)?,
    )?;
    define(
        &ns.util,
        "BasicAuth",
        constructor(lua, "util.BasicAuth", |lua, args| {
            let mut kw = Kwargs::new(lua, "util.BasicAuth", args, &["users"], BASIC_AUTH_OPTIONS);
            let users: BasicAuthUsers = kw.required("users");
            kw.finish().then_some(AuthConfig::Basic(users.0))
        })?,
    )?;
    for (name, apr) in [("HTPasswdAuth", false), ("HTPasswdAprAuth", true)] {
        let object = if apr {
            "util.HTPasswdAprAuth"
        } else {
            "util.HTPasswdAuth"
        };
        define(
            &ns.util,
            name,
            constructor(lua, object, move |lua, args| {
                let mut kw = Kwargs::new(lua, object, args, &["file"], HTPASSWD_AUTH_OPTIONS);
                let file: String = kw.required("file");
                let auth = if apr {
                    AuthConfig::HtPasswdApr(file)
                } else {
                    AuthConfig::HtPasswd(file)
                };
                kw.finish().then_some(auth)
            })?,
        )?;
    }
    define(
        &ns.util,
        "UsersAuth",
        constructor(lua, "util.UsersAuth", |lua, args| {
            let mut kw = Kwargs::new(lua, "util.UsersAuth", args, &[], USERS_AUTH_OPTIONS);
            // Buildbot's User Objects come from its users table; this master keeps none.
            kw.error(
                "this master stores no users (User Objects), so nobody could log in; \
                 use util.BasicAuth{...} or util.HTPasswdAuth(FILE)",
            );
            kw.finish();
            None::<AuthConfig>
        })?,
    )?;
    Ok(())
}

fn parse_authz(lua: &Lua, args: MultiValue) -> Option<AuthzConfig> {
    let mut kw = Kwargs::new(lua, "util.Authz", args, &[], AUTHZ_OPTIONS);
    let auth_given = kw.has("auth");
    let auth = kw.optional::<AuthConfig>("auth");
    let use_http_header = kw.optional_or("useHttpHeader", false);
    let http_login_url: Option<String> = kw.optional("httpLoginUrl");
    let default_action = kw.optional("default_action").unwrap_or(AuthzRule::Deny);

    let mut needs_login = Vec::new();
    if default_action.needs_login() {
        needs_login.push("default_action");
    }
    let mut authz = AuthzConfig::new(default_action, auth);
    for action in AuthzAction::ALL {
        if let Some(rule) = kw.optional::<AuthzRule>(action.name()) {
            if rule.needs_login() {
                needs_login.push(action.name());
            }
            authz.rules.insert(action, rule);
        }
    }
    // Buildbot checks an 'auth' or function rule against a logged-in user, and without `auth`
    // (or a fronting server's header) nobody can log in: the rule could never pass.
    if !needs_login.is_empty() && !auth_given && !use_http_header {
        kw.error(format!(
            "{} need{} a logged-in user, but there is no 'auth' to log in with \
             (add auth=util.BasicAuth{{...}}, or useHttpHeader=true behind a web server that authenticates)",
            needs_login.join(", "),
            if needs_login.len() == 1 { "s" } else { "" }
        ));
    }
    if http_login_url.is_some() && !use_http_header {
        kw.error("option 'httpLoginUrl' is only used with useHttpHeader=true");
    }
    authz.use_http_header = use_http_header;
    authz.http_login_url = http_login_url;
    kw.finish().then_some(authz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::status::testing::{errors, lua_value};

    fn authz(snippet: &str) -> AuthzConfig {
        lua_value(snippet)
    }

    fn rules(authz: &AuthzConfig) -> Vec<String> {
        AuthzAction::ALL
            .iter()
            .map(|&a| match authz.rule(a) {
                AuthzRule::Deny => format!("{}=false", a.name()),
                AuthzRule::Allow => format!("{}=true", a.name()),
                AuthzRule::Auth => format!("{}=auth", a.name()),
                AuthzRule::Function(f) => format!("{}=fn@{}", a.name(), f.location().line),
            })
            .collect()
    }

    #[test]
    fn defaults_allow_viewing_only() {
        let authz = authz("value = util.Authz{}");
        assert_eq!(
            rules(&authz).join(" "),
            "view=true forceBuild=false forceAllBuilds=false pingBuilder=false \
             gracefulShutdown=false pauseSlave=false stopBuild=false stopAllBuilds=false \
             cancelPendingBuild=false cancelAllPendingBuilds=false stopChange=false \
             cleanShutdown=false showUsersPage=false"
        );
        assert!(authz.auth.is_none());
        assert!(!authz.use_http_header);
        assert_eq!(authz.http_login_url, None);
    }

    #[test]
    fn every_option() {
        let authz = authz(
            "local function canForce(user, builder) return user == 'releng' end
             value = util.Authz{
               auth=util.BasicAuth({{'bob', 'secret-pass'}, {'jill', 'super-pass'}}),
               useHttpHeader=true, httpLoginUrl='https://buildbot.example.org/login',
               default_action='auth', view=false, forceBuild=canForce, forceAllBuilds=true,
               pingBuilder=true, gracefulShutdown=false, pauseSlave='auth', stopBuild=true,
               stopAllBuilds=false, cancelPendingBuild=true, cancelAllPendingBuilds=false,
               stopChange=true, cleanShutdown=false, showUsersPage='auth'}",
        );
        assert_eq!(
            rules(&authz).join(" "),
            "view=false forceBuild=fn@1 forceAllBuilds=true pingBuilder=true \
             gracefulShutdown=false pauseSlave=auth stopBuild=true stopAllBuilds=false \
             cancelPendingBuild=true cancelAllPendingBuilds=false stopChange=true \
             cleanShutdown=false showUsersPage=auth"
        );
        assert_eq!(
            authz.auth,
            Some(AuthConfig::Basic(vec![
                ("bob".into(), "secret-pass".into()),
                ("jill".into(), "super-pass".into())
            ]))
        );
        assert!(authz.use_http_header);
        assert_eq!(
            authz.http_login_url.as_deref(),
            Some("https://buildbot.example.org/login")
        );
        assert!(matches!(authz.default_action, AuthzRule::Auth));
    }

    #[test]
    fn default_action_applies_to_every_action_but_view() {
        let authz = authz("value = util.Authz{default_action=true, stopBuild=false}");
        let rules = rules(&authz);
        assert_eq!(rules[0], "view=true");
        assert_eq!(rules[1], "forceBuild=true");
        assert_eq!(rules[6], "stopBuild=false");
    }

    #[test]
    fn auth_helpers() {
        let check = |snippet: &str, expected: AuthConfig| {
            assert_eq!(lua_value::<AuthConfig>(snippet), expected, "{snippet}");
        };
        check(
            "value = util.BasicAuth{users={bob='pw', al='x'}}",
            AuthConfig::Basic(vec![("al".into(), "x".into()), ("bob".into(), "pw".into())]),
        );
        check(
            "value = util.BasicAuth({{'bob', 'pw'}})",
            AuthConfig::Basic(vec![("bob".into(), "pw".into())]),
        );
        check(
            "value = util.HTPasswdAuth('/path/to/htpasswd')",
            AuthConfig::HtPasswd("/path/to/htpasswd".into()),
        );
        check(
            "value = util.HTPasswdAprAuth{file='/var/www/htpasswd'}",
            AuthConfig::HtPasswdApr("/var/www/htpasswd".into()),
        );
    }

    #[test]
    fn errors_are_exact() {
        let cases = [
            (
                "util.Authz{forceBuild='auth', stopBuild=function() end}",
                "master.cfg.lua:1: util.Authz: forceBuild, stopBuild need a logged-in user, \
                 but there is no 'auth' to log in with (add auth=util.BasicAuth{...}, or \
                 useHttpHeader=true behind a web server that authenticates)",
            ),
            (
                "util.Authz{default_action='auth'}",
                "master.cfg.lua:1: util.Authz: default_action needs a logged-in user, \
                 but there is no 'auth' to log in with (add auth=util.BasicAuth{...}, or \
                 useHttpHeader=true behind a web server that authenticates)",
            ),
            (
                "util.Authz{httpLoginUrl='https://x/login'}",
                "master.cfg.lua:1: util.Authz: option 'httpLoginUrl' is only used with useHttpHeader=true",
            ),
            (
                "util.Authz{forceBuild='yes'}",
                "master.cfg.lua:1: util.Authz: option 'forceBuild' must be true, false, 'auth' or a function, got string 'yes'",
            ),
            (
                "util.Authz{forcebuild=true}",
                "master.cfg.lua:1: util.Authz: unknown option 'forcebuild' (did you mean 'forceBuild'?)",
            ),
            (
                "util.Authz{auth='bob:pw'}",
                "master.cfg.lua:1: util.Authz: option 'auth' must be a login method (util.BasicAuth(...), \
                 util.HTPasswdAuth(...), util.HTPasswdAprAuth(...) or util.UsersAuth()), got string 'bob:pw'",
            ),
            (
                "util.BasicAuth({{'bob'}})",
                "master.cfg.lua:1: util.BasicAuth: option 'users' item 1 must be a {user, password} pair",
            ),
            (
                "util.BasicAuth('bob')",
                "master.cfg.lua:1: util.BasicAuth: option 'users' must be a list of {user, password} pairs or a table of user names to passwords, got string 'bob'",
            ),
            (
                "util.HTPasswdAuth()",
                "master.cfg.lua:1: util.HTPasswdAuth: missing required option 'file'",
            ),
            (
                "util.UsersAuth()",
                "master.cfg.lua:1: util.UsersAuth: this master stores no users (User Objects), \
                 so nobody could log in; use util.BasicAuth{...} or util.HTPasswdAuth(FILE)",
            ),
        ];
        for (snippet, expected) in cases {
            assert_eq!(errors(snippet), expected, "{snippet}");
        }
    }
}
