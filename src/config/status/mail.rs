//! `status.MailNotifier`: mail about finished builds, and `util.Domain`, the usual `lookup`.

use std::collections::BTreeSet;

use mlua::{Lua, MultiValue, UserData, UserDataMethods, Value};

use super::shared::{filter_list, is_valid_email, read_name, LuaHandle};
use super::StatusTarget;
use crate::config::errors::unknown;
use crate::config::kwargs::{constructor, describe, mismatch, FromOption, OptionError};
use crate::config::{define, Kwargs, Location, Namespaces};
use crate::script::{Callback, Renderable};

/// `status.MailNotifier{...}`.
#[derive(Clone, Debug)]
pub struct MailNotifierConfig {
    pub name: Option<String>,
    /// The `From` header.
    pub fromaddr: String,
    /// Mail the authors of the build's changes (through `lookup`) and its owners.
    pub send_to_interested_users: bool,
    pub extra_recipients: Vec<String>,
    /// Python %-format over `builder`, `result`, `title` and `projectName`.
    pub subject: String,
    /// The kinds of build mailed about, shortcuts expanded.
    pub mode: BTreeSet<MailMode>,
    /// Builders mailed about; empty, all.
    pub builders: Vec<String>,
    /// Builder tags mailed about (`tags`, formerly `categories`); empty, all.
    pub tags: Vec<String>,
    pub add_logs: AddLogs,
    pub add_patch: bool,
    /// One mail per buildset, concatenating its builds' messages.
    pub build_set_summary: bool,
    pub relayhost: String,
    pub smtp_port: u16,
    /// STARTTLS, with authentication.
    pub use_tls: bool,
    /// Implicit TLS from the first byte (Buildbot 4's `useSmtps`).
    pub use_smtps: bool,
    pub smtp_user: Option<String>,
    pub smtp_password: Option<String>,
    /// Turns change authors into addresses; absent, the users database is asked.
    pub lookup: Option<EmailLookup>,
    /// `(mode, name, build, results, master_status) -> {body=, type=, subject=}`; absent, the
    /// built-in message.
    pub message_formatter: Option<Callback>,
    pub extra_headers: Vec<ExtraHeader>,
    /// `(build) -> build`: the build to compare with for `change` and `problem`; absent, the
    /// builder's previous build.
    pub previous_build_getter: Option<Callback>,
    /// Write each mail to the log as well.
    pub dump_mails_to_log: bool,
    pub location: Location,
}

/// A kind of build a MailNotifier mails about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MailMode {
    /// The result differs from the previous build's.
    Change,
    Failing,
    Passing,
    /// Failed after a build that did not.
    Problem,
    Warnings,
    Exception,
}

impl MailMode {
    pub const ALL: [MailMode; 6] = [
        MailMode::Change,
        MailMode::Failing,
        MailMode::Passing,
        MailMode::Problem,
        MailMode::Warnings,
        MailMode::Exception,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MailMode::Change => "change",
            MailMode::Failing => "failing",
            MailMode::Passing => "passing",
            MailMode::Problem => "problem",
            MailMode::Warnings => "warnings",
            MailMode::Exception => "exception",
        }
    }

    fn from_name(name: &str) -> Option<MailMode> {
        MailMode::ALL.into_iter().find(|m| m.name() == name)
    }
}

const MODE_NAMES: &[&str] = &[
    "change",
    "failing",
    "passing",
    "problem",
    "warnings",
    "exception",
    "all",
];

/// `mode` as written: one name (where `"warnings"` is the shortcut for failing and warnings,
/// as in Buildbot) or a list of names.
enum ModeSpec {
    One(String),
    List(Vec<String>),
}

impl FromOption for ModeSpec {
    fn expected() -> String {
        "a mode name or a list of mode names".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::String(_) => String::from_option(value, lua).map(ModeSpec::One),
            _ => Vec::<String>::from_option(value.clone(), lua)
                .map(ModeSpec::List)
                .map_err(|_| mismatch::<Self>(&value)),
        }
    }
}

/// The modes a `mode` option stands for, or the first unknown name.
fn expand_modes(spec: ModeSpec) -> Result<BTreeSet<MailMode>, String> {
    let names = match spec {
        ModeSpec::One(name) if name == "warnings" => {
            return Ok([MailMode::Warnings, MailMode::Failing].into());
        }
        ModeSpec::One(name) => vec![name],
        ModeSpec::List(names) => names,
    };
    let mut modes = BTreeSet::new();
    for name in names {
        if name == "all" {
            modes.extend(MailMode::ALL);
        } else {
            modes.insert(MailMode::from_name(&name).ok_or(name)?);
        }
    }
    Ok(modes)
}

/// `addLogs`: `true` for every log, or the names of the logs to attach (`stdio` or
/// `step.stdio`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AddLogs {
    #[default]
    None,
    All,
    Named(Vec<String>),
}

impl FromOption for AddLogs {
    fn expected() -> String {
        "a boolean or a list of log names".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::Boolean(true) => Ok(AddLogs::All),
            Value::Boolean(false) => Ok(AddLogs::None),
            _ => match Vec::<String>::from_option(value.clone(), lua) {
                Ok(names) if names.is_empty() => Ok(AddLogs::None),
                Ok(names) => Ok(AddLogs::Named(names)),
                Err(_) => Err(mismatch::<Self>(&value)),
            },
        }
    }
}

/// `lookup`: how a change author becomes a mail address.
#[derive(Clone, Debug)]
pub enum EmailLookup {
    /// `name@domain`, names that are addresses already passing through (`util.Domain`, or a
    /// plain string).
    Domain(String),
    /// A Lua object whose `getAddress` method is called as `object:getAddress(name)`.
    Object {
        object: LuaHandle,
        get_address: Callback,
    },
}

impl FromOption for EmailLookup {
    fn expected() -> String {
        "a domain name, util.Domain(...) or an object with a getAddress method".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::String(s) => {
                let domain = s.to_string_lossy();
                check_domain(&domain).map_err(OptionError::Wrong)?;
                Ok(EmailLookup::Domain(domain))
            }
            Value::UserData(_) => match DomainLookup::from_option(value.clone(), lua) {
                Ok(domain) => Ok(EmailLookup::Domain(domain.domain)),
                Err(OptionError::Wrong(_)) => Err(mismatch::<Self>(&value)),
                Err(OptionError::Reported) => Err(OptionError::Reported),
            },
            Value::Table(table) => match table.get::<Value>("getAddress") {
                Ok(Value::Function(get_address)) => Ok(EmailLookup::Object {
                    get_address: Callback::new(lua, &get_address)
                        .map_err(|e| OptionError::Wrong(e.to_string()))?,
                    object: LuaHandle::from_option(value.clone(), lua)?,
                }),
                _ => Err(OptionError::Wrong(
                    "is a table without a getAddress function".into(),
                )),
            },
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

fn check_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() || domain.contains('@') {
        Err(format!(
            "must be a domain such as 'example.org', not '{domain}'"
        ))
    } else {
        Ok(())
    }
}

/// `util.Domain("example.org")`, Buildbot's lookup that appends the domain to user names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainLookup {
    pub domain: String,
}

impl DomainLookup {
    /// A name with an `@` is an address already.
    pub fn address(&self, name: &str) -> String {
        if name.contains('@') {
            name.to_string()
        } else {
            format!("{name}@{}", self.domain)
        }
    }
}

impl UserData for DomainLookup {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method(
            "getAddress",
            |_, this, name: String| Ok(this.address(&name)),
        );
    }
}
crate::config_object!(DomainLookup, "util.Domain(...)");

/// One `extraHeaders` entry; both sides may be renderables.
#[derive(Clone, Debug)]
pub struct ExtraHeader {
    pub name: Renderable,
    pub value: Renderable,
}

/// Whether `name` can be a header name: printable ASCII without spaces or a colon.
fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// `extraHeaders`: constant names first, sorted, then renderable ones.
fn read_extra_headers(kw: &mut Kwargs) -> Vec<ExtraHeader> {
    let Some(value) = kw.raw("extraHeaders") else {
        return Vec::new();
    };
    let lua = kw.lua().clone();
    let table = match &value {
        Value::Table(table) if table.raw_len() == 0 => table.clone(),
        _ => {
            kw.error(format!(
                "option 'extraHeaders' must be a table of header names to values, got {}",
                describe(&value)
            ));
            return Vec::new();
        }
    };
    let mut constant = Vec::new();
    let mut rendered = Vec::new();
    for pair in table.pairs::<Value, Value>() {
        let Ok((key, value)) = pair else { continue };
        let name = match &key {
            Value::String(s) => {
                let name = s.to_string_lossy();
                if !is_header_name(&name) {
                    kw.error(format!(
                        "option 'extraHeaders' has an invalid header name '{name}'"
                    ));
                    continue;
                }
                Some(name)
            }
            Value::UserData(_) => None,
            other => {
                kw.error(format!(
                    "option 'extraHeaders' keys must be header names, got {}",
                    describe(other)
                ));
                continue;
            }
        };
        let label = name.clone().unwrap_or_else(|| "(renderable)".into());
        let converted = Renderable::from_option(key, &lua).and_then(|name| {
            Renderable::from_option(value, &lua).map(|value| ExtraHeader { name, value })
        });
        match converted {
            Ok(header) => match name {
                Some(name) => constant.push((name, header)),
                None => rendered.push(header),
            },
            Err(OptionError::Wrong(why)) => {
                kw.error(format!("option 'extraHeaders' entry '{label}' {why}"))
            }
            Err(OptionError::Reported) => kw.error(format!(
                "option 'extraHeaders' entry '{label}' holds an invalid renderable"
            )),
        }
    }
    constant.sort_by(|a, b| a.0.cmp(&b.0));
    constant
        .into_iter()
        .map(|(_, header)| header)
        .chain(rendered)
        .collect()
}

const SUBJECT_KEYS: &[&str] = &["builder", "projectName", "result", "title"];

/// Checks a `subject` as Python's `subject % {...}` would take it.
fn check_subject(subject: &str) -> Result<(), String> {
    let mut rest = subject;
    while let Some(at) = rest.find('%') {
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('%') {
            rest = after;
            continue;
        }
        let Some((key, after)) = rest.strip_prefix('(').and_then(|r| r.split_once(')')) else {
            return Err(
                "has a '%' that does not start a %(name)s placeholder (write %% for a literal %)"
                    .into(),
            );
        };
        if !SUBJECT_KEYS.contains(&key) {
            return Err(format!(
                "has {}; known: {}",
                unknown("placeholder", key, SUBJECT_KEYS),
                SUBJECT_KEYS.join(", ")
            ));
        }
        rest = after
            .strip_prefix('s')
            .ok_or_else(|| format!("has a placeholder '%({key})' not followed by 's'"))?;
    }
    Ok(())
}

pub const MAIL_NOTIFIER_OPTIONS: &[&str] = &[
    "fromaddr",
    "sendToInterestedUsers",
    "extraRecipients",
    "subject",
    "mode",
    "builders",
    "tags",
    "categories",
    "addLogs",
    "addPatch",
    "buildSetSummary",
    "relayhost",
    "smtpPort",
    "useTls",
    "useSmtps",
    "smtpUser",
    "smtpPassword",
    "lookup",
    "messageFormatter",
    "extraHeaders",
    "previousBuildGetter",
    "dumpMailsToLog",
    "name",
];
pub const DOMAIN_OPTIONS: &[&str] = &["domain"];

pub fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    define(
        &ns.status,
        "MailNotifier",
        constructor(lua, "status.MailNotifier", parse_mail_notifier)?,
    )?;
    for (namespace, object) in [(&ns.util, "util.Domain"), (&ns.status, "status.Domain")] {
        define(
            namespace,
            "Domain",
            constructor(lua, object, move |lua, args| {
                let mut kw = Kwargs::new(lua, object, args, &["domain"], DOMAIN_OPTIONS);
                let domain: String = kw.required("domain");
                if let (false, Err(why)) = (domain.is_empty(), check_domain(&domain)) {
                    kw.error(format!("option 'domain' {why}"));
                }
                kw.finish().then_some(DomainLookup { domain })
            })?,
        )?;
    }
    Ok(())
}

fn parse_mail_notifier(lua: &Lua, args: MultiValue) -> Option<StatusTarget> {
    let mut kw = Kwargs::new(
        lua,
        "MailNotifier",
        args,
        &["fromaddr"],
        MAIL_NOTIFIER_OPTIONS,
    );
    let name = read_name(&mut kw);
    let fromaddr: String = kw.required("fromaddr");
    // Buildbot's own example sends from `buildbot@localhost`, so only the '@' is required.
    if !fromaddr.is_empty() && !fromaddr.contains('@') {
        kw.error(format!(
            "option 'fromaddr' must be a mail address, got '{fromaddr}'"
        ));
    }
    let extra_recipients: Vec<String> = kw.optional("extraRecipients").unwrap_or_default();
    for (index, address) in extra_recipients.iter().enumerate() {
        if !is_valid_email(address) {
            kw.error(format!(
                "option 'extraRecipients' item {} must be a mail address, got '{address}'",
                index + 1
            ));
        }
    }
    let subject = kw.optional_or(
        "subject",
        "buildbot %(result)s in %(title)s on %(builder)s".to_string(),
    );
    if let Err(why) = check_subject(&subject) {
        kw.error(format!("option 'subject' {why}"));
    }
    let mode = match kw.optional::<ModeSpec>("mode").map(expand_modes) {
        None => [MailMode::Failing, MailMode::Passing, MailMode::Warnings].into(),
        Some(Ok(modes)) if modes.is_empty() => {
            kw.error("option 'mode' is an empty list, so no mail would ever be sent");
            BTreeSet::new()
        }
        Some(Ok(modes)) => modes,
        Some(Err(wrong)) => {
            kw.error(format!(
                "option 'mode' has {}; valid modes: {}",
                unknown("mode", &wrong, MODE_NAMES),
                MODE_NAMES.join(", ")
            ));
            BTreeSet::new()
        }
    };
    let builders_given = kw.has("builders");
    let tags_given = ["tags", "categories"].into_iter().find(|n| kw.has(n));
    let builders = filter_list(&mut kw, &["builders"]);
    let tags = filter_list(&mut kw, &["tags", "categories"]);
    if let (true, Some(tags_name)) = (builders_given, tags_given) {
        kw.error(format!(
            "options 'builders' and '{tags_name}' exclude each other; give one"
        ));
    }
    let use_tls = kw.optional_or("useTls", false);
    let use_smtps = kw.optional_or("useSmtps", false);
    let credentials_given = (kw.has("smtpUser"), kw.has("smtpPassword"));
    let smtp_user: Option<String> = kw.optional("smtpUser");
    let smtp_password: Option<String> = kw.optional("smtpPassword");
    if use_tls && use_smtps {
        kw.error("options 'useTls' (STARTTLS) and 'useSmtps' (TLS from the start) exclude each other; give one");
    }
    if credentials_given.0 != credentials_given.1 {
        kw.error("options 'smtpUser' and 'smtpPassword' go together; give both or neither");
    } else if use_tls && !credentials_given.0 {
        kw.error("option 'useTls' needs 'smtpUser' and 'smtpPassword' to authenticate with");
    }
    let config = MailNotifierConfig {
        name,
        fromaddr,
        send_to_interested_users: kw.optional_or("sendToInterestedUsers", true),
        extra_recipients,
        subject,
        mode,
        builders,
        tags,
        add_logs: kw.optional_or("addLogs", AddLogs::None),
        add_patch: kw.optional_or("addPatch", true),
        build_set_summary: kw.optional_or("buildSetSummary", false),
        relayhost: kw.optional_or("relayhost", "localhost".to_string()),
        smtp_port: kw.optional_or("smtpPort", 25),
        use_tls,
        use_smtps,
        smtp_user,
        smtp_password,
        lookup: kw.optional("lookup"),
        message_formatter: kw.optional("messageFormatter"),
        extra_headers: read_extra_headers(&mut kw),
        previous_build_getter: kw.optional("previousBuildGetter"),
        dump_mails_to_log: kw.optional_or("dumpMailsToLog", false),
        location: kw.location(),
    };
    kw.finish()
        .then(|| StatusTarget::MailNotifier(Box::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::status::testing::{errors, lua_value, target};
    use crate::model::Properties;
    use crate::script::RenderData;

    fn mail(snippet: &str) -> MailNotifierConfig {
        as_mail(target(snippet))
    }

    /// The config of a MailNotifier, which names builders there are none of.
    fn as_mail(target: StatusTarget) -> MailNotifierConfig {
        match target {
            StatusTarget::MailNotifier(config) => *config,
            other => panic!("expected a MailNotifier, got {other:?}"),
        }
    }

    fn modes(config: &MailNotifierConfig) -> Vec<&'static str> {
        config.mode.iter().map(|m| m.name()).collect()
    }

    #[test]
    fn defaults() {
        let config = mail("c['status'] = {status.MailNotifier{fromaddr='buildbot@localhost'}}");
        assert_eq!(config.name.as_deref(), Some("MailNotifier"));
        assert_eq!(config.fromaddr, "buildbot@localhost");
        assert!(config.send_to_interested_users);
        assert!(config.extra_recipients.is_empty());
        assert_eq!(
            config.subject,
            "buildbot %(result)s in %(title)s on %(builder)s"
        );
        assert_eq!(modes(&config), ["failing", "passing", "warnings"]);
        assert!(config.builders.is_empty() && config.tags.is_empty());
        assert_eq!(config.add_logs, AddLogs::None);
        assert!(config.add_patch);
        assert!(!config.build_set_summary);
        assert_eq!(config.relayhost, "localhost");
        assert_eq!(config.smtp_port, 25);
        assert!(!config.use_tls && !config.use_smtps);
        assert_eq!((config.smtp_user, config.smtp_password), (None, None));
        assert!(config.lookup.is_none());
        assert!(config.message_formatter.is_none());
        assert!(config.extra_headers.is_empty());
        assert!(config.previous_build_getter.is_none());
        assert!(!config.dump_mails_to_log);
    }

    #[test]
    fn every_option() {
        // Kept out of c['status'], whose builders would have to exist.
        let config = as_mail(lua_value(
            "local function formatter(mode, name, build, results, master_status)
               return {body='x', type='plain'}
             end
             local function previous(build) return nil end
             value = status.MailNotifier{
               name='mail-releng',
               fromaddr='Buildbot <buildbot@example.org>', sendToInterestedUsers=false,
               extraRecipients={'listaddr@example.org', 'Dev List <dev@lists.example.org>'},
               subject='%(projectName)s: %(builder)s is %(result)s (%%)',
               mode={'change', 'problem', 'exception'},
               builders={'linux', 'mac'},
               addLogs={'stdio', 'compile.stdio'}, addPatch=false, buildSetSummary=true,
               relayhost='smtp.example.com', smtpPort=587, useTls=true,
               smtpUser='myuser@example.com', smtpPassword='mypassword',
               lookup='example.org', messageFormatter=formatter,
               extraHeaders={['X-Builder']='fixed',
                             ['Precedence']=util.Interpolate('%(prop:prec)s')},
               previousBuildGetter=previous, dumpMailsToLog=true}",
        ));
        assert_eq!(config.name.as_deref(), Some("mail-releng"));
        assert_eq!(config.fromaddr, "Buildbot <buildbot@example.org>");
        assert!(!config.send_to_interested_users);
        assert_eq!(
            config.extra_recipients,
            ["listaddr@example.org", "Dev List <dev@lists.example.org>"]
        );
        assert_eq!(
            config.subject,
            "%(projectName)s: %(builder)s is %(result)s (%%)"
        );
        assert_eq!(modes(&config), ["change", "problem", "exception"]);
        assert_eq!(config.builders, ["linux", "mac"]);
        assert_eq!(
            config.add_logs,
            AddLogs::Named(vec!["stdio".into(), "compile.stdio".into()])
        );
        assert!(!config.add_patch);
        assert!(config.build_set_summary);
        assert_eq!(config.relayhost, "smtp.example.com");
        assert_eq!(config.smtp_port, 587);
        assert!(config.use_tls);
        assert_eq!(config.smtp_user.as_deref(), Some("myuser@example.com"));
        assert_eq!(config.smtp_password.as_deref(), Some("mypassword"));
        assert!(matches!(config.lookup, Some(EmailLookup::Domain(d)) if d == "example.org"));
        assert_eq!(config.message_formatter.unwrap().location().line, 1);
        assert_eq!(config.previous_build_getter.unwrap().location().line, 4);
        assert!(config.dump_mails_to_log);
        let data = RenderData::with_properties(Properties::from_pairs(
            [("prec".to_string(), serde_json::json!("bulk"))],
            "test",
        ));
        let headers: Vec<(String, String)> = config
            .extra_headers
            .iter()
            .map(|h| {
                (
                    h.name.render_string(&data, None).unwrap(),
                    h.value.render_string(&data, None).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            headers,
            [
                ("Precedence".to_string(), "bulk".to_string()),
                ("X-Builder".to_string(), "fixed".to_string())
            ]
        );
    }

    #[test]
    fn tags_categories_smtps_and_renderable_header_names() {
        let config = mail(
            "c['status'] = {status.MailNotifier('bb@example.org', {categories={'fast'},
               useSmtps=true, smtpPort=465, addLogs=true,
               extraHeaders={[util.Interpolate('X-%(prop:h)s')]='v'}})}",
        );
        assert_eq!(config.fromaddr, "bb@example.org");
        assert_eq!(config.tags, ["fast"]);
        assert!(config.use_smtps && !config.use_tls);
        assert_eq!(config.add_logs, AddLogs::All);
        assert_eq!(config.extra_headers.len(), 1);
        let config = mail("c['status'] = {status.MailNotifier{fromaddr='a@b.org', tags={'x'}}}");
        assert_eq!(config.tags, ["x"]);
    }

    #[test]
    fn modes_and_their_shortcuts() {
        let cases: &[(&str, &[&str])] = &[
            (
                "'all'",
                &[
                    "change",
                    "failing",
                    "passing",
                    "problem",
                    "warnings",
                    "exception",
                ],
            ),
            (
                "{'all'}",
                &[
                    "change",
                    "failing",
                    "passing",
                    "problem",
                    "warnings",
                    "exception",
                ],
            ),
            ("'warnings'", &["failing", "warnings"]),
            ("{'warnings'}", &["warnings"]),
            ("'problem'", &["problem"]),
            ("{'failing', 'passing', 'failing'}", &["failing", "passing"]),
        ];
        for (mode, expected) in cases {
            let config = mail(&format!(
                "c['status'] = {{status.MailNotifier{{fromaddr='a@b.org', mode={mode}}}}}"
            ));
            assert_eq!(modes(&config), *expected, "{mode}");
        }
    }

    #[test]
    fn lookups() {
        let config = mail(
            "c['status'] = {status.MailNotifier{fromaddr='a@b.org', lookup=util.Domain('example.com')}}",
        );
        assert!(matches!(config.lookup, Some(EmailLookup::Domain(d)) if d == "example.com"));
        let config = mail(
            "c['status'] = {status.MailNotifier{fromaddr='a@b.org', lookup=status.Domain{domain='x.org'}}}",
        );
        assert!(matches!(config.lookup, Some(EmailLookup::Domain(d)) if d == "x.org"));
        let config = mail(
            "local Lookup = {}
             Lookup.__index = Lookup
             function Lookup:getAddress(name) return name .. '@' .. self.domain end
             local lookup = setmetatable({domain='corp.example'}, Lookup)
             c['status'] = {status.MailNotifier{fromaddr='a@b.org', lookup=lookup}}",
        );
        match config.lookup {
            Some(EmailLookup::Object {
                object,
                get_address,
            }) => {
                assert_eq!(get_address.location().line, 3);
                assert_eq!(format!("{object:?}"), "<lua table>");
            }
            other => panic!("{other:?}"),
        }
        let domain: DomainLookup = lua_value(
            "value = util.Domain('example.org')
             assert(value:getAddress('bob') == 'bob@example.org')
             assert(value:getAddress('al@x.org') == 'al@x.org')",
        );
        assert_eq!(domain.address("bob"), "bob@example.org");
    }

    #[test]
    fn errors_are_exact() {
        let cases = [
            (
                "status.MailNotifier{relayhost='smtp'}",
                "master.cfg.lua:1: MailNotifier: missing required option 'fromaddr'",
            ),
            (
                "status.MailNotifier{fromaddr='buildbot'}",
                "master.cfg.lua:1: MailNotifier: option 'fromaddr' must be a mail address, got 'buildbot'",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', extraRecipients={'ok@example.org', 'nobody'}}",
                "master.cfg.lua:1: MailNotifier: option 'extraRecipients' item 2 must be a mail address, got 'nobody'",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', extraRecipients='x@example.org'}",
                "master.cfg.lua:1: MailNotifier: option 'extraRecipients' must be a list of strings, got string 'x@example.org'",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', extraRecipient={'x@example.org'}}",
                "master.cfg.lua:1: MailNotifier: unknown option 'extraRecipient' (did you mean 'extraRecipients'?)",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', mode={'failling'}}",
                "master.cfg.lua:1: MailNotifier: option 'mode' has unknown mode 'failling' (did you mean 'failing'?); valid modes: change, failing, passing, problem, warnings, exception, all",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', mode='sometimes'}",
                "master.cfg.lua:1: MailNotifier: option 'mode' has unknown mode 'sometimes'; valid modes: change, failing, passing, problem, warnings, exception, all",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', mode={}}",
                "master.cfg.lua:1: MailNotifier: option 'mode' is an empty list, so no mail would ever be sent",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', mode=3}",
                "master.cfg.lua:1: MailNotifier: option 'mode' must be a mode name or a list of mode names, got number 3",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', builders={'a'}, tags={'b'}}",
                "master.cfg.lua:1: MailNotifier: options 'builders' and 'tags' exclude each other; give one",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', builders={'a'}, categories={'b'}}",
                "master.cfg.lua:1: MailNotifier: options 'builders' and 'categories' exclude each other; give one",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', tags={'a'}, categories={'b'}}",
                "master.cfg.lua:1: MailNotifier: options 'tags' and 'categories' are the same; give only one",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', builders={}}",
                "master.cfg.lua:1: MailNotifier: option 'builders' is an empty list, which matches nothing (leave it out to mean all)",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', useTls=true}",
                "master.cfg.lua:1: MailNotifier: option 'useTls' needs 'smtpUser' and 'smtpPassword' to authenticate with",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', useTls=true, smtpUser=1, smtpPassword='p'}",
                "master.cfg.lua:1: MailNotifier: option 'smtpUser' must be a string, got number 1",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', smtpUser='u', smtpPassword=1}",
                "master.cfg.lua:1: MailNotifier: option 'smtpPassword' must be a string, got number 1",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', smtpUser='u'}",
                "master.cfg.lua:1: MailNotifier: options 'smtpUser' and 'smtpPassword' go together; give both or neither",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', useTls=true, useSmtps=true, smtpUser='u', smtpPassword='p'}",
                "master.cfg.lua:1: MailNotifier: options 'useTls' (STARTTLS) and 'useSmtps' (TLS from the start) exclude each other; give one",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', smtpPort=70000}",
                "master.cfg.lua:1: MailNotifier: option 'smtpPort' must be an integer from 0 to 65535, got number 70000",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', subject='%(buidler)s failed'}",
                "master.cfg.lua:1: MailNotifier: option 'subject' has unknown placeholder 'buidler' (did you mean 'builder'?); known: builder, projectName, result, title",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', subject='100% broken'}",
                "master.cfg.lua:1: MailNotifier: option 'subject' has a '%' that does not start a %(name)s placeholder (write %% for a literal %)",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', subject='%(builder)d'}",
                "master.cfg.lua:1: MailNotifier: option 'subject' has a placeholder '%(builder)' not followed by 's'",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', addLogs='stdio'}",
                "master.cfg.lua:1: MailNotifier: option 'addLogs' must be a boolean or a list of log names, got string 'stdio'",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', lookup='bob@example.org'}",
                "master.cfg.lua:1: MailNotifier: option 'lookup' must be a domain such as 'example.org', not 'bob@example.org'",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', lookup={}}",
                "master.cfg.lua:1: MailNotifier: option 'lookup' is a table without a getAddress function",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', lookup=5}",
                "master.cfg.lua:1: MailNotifier: option 'lookup' must be a domain name, util.Domain(...) or an object with a getAddress method, got number 5",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', messageFormatter='html'}",
                "master.cfg.lua:1: MailNotifier: option 'messageFormatter' must be a function, got string 'html'",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', extraHeaders={'X-A: b'}}",
                "master.cfg.lua:1: MailNotifier: option 'extraHeaders' must be a table of header names to values, got table",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', extraHeaders={['X A']='b'}}",
                "master.cfg.lua:1: MailNotifier: option 'extraHeaders' has an invalid header name 'X A'",
            ),
            (
                "status.MailNotifier{fromaddr='a@b.org', extraHeaders={['X-A']=print}}",
                "master.cfg.lua:1: MailNotifier: option 'extraHeaders' entry 'X-A' must be a string, number, boolean, table or renderable (util.Interpolate, util.Property, ...), got function",
            ),
            (
                "util.Domain('bob@example.org')",
                "master.cfg.lua:1: util.Domain: option 'domain' must be a domain such as 'example.org', not 'bob@example.org'",
            ),
            ("util.Domain()", "master.cfg.lua:1: util.Domain: missing required option 'domain'"),
        ];
        for (snippet, expected) in cases {
            assert_eq!(errors(snippet), expected, "{snippet}");
        }
    }

    #[test]
    fn the_spec_examples() {
        let config = mail(
            "local mn = status.MailNotifier{fromaddr='buildbot@example.org', lookup='example.org'}
             c['status']:append(mn)",
        );
        assert!(config.send_to_interested_users);
        mail(
            "c['status']:append(status.MailNotifier{fromaddr='buildbot@example.org',
                 sendToInterestedUsers=false, extraRecipients={'listaddr@example.org'}})",
        );
        mail(
            "c['status']:append(status.MailNotifier{fromaddr='myuser@example.com',
                 sendToInterestedUsers=false, extraRecipients={'listaddr@example.org'},
                 relayhost='smtp.example.com', smtpPort=587,
                 smtpUser='myuser@example.com', smtpPassword='mypassword'})",
        );
        let config = mail(
            "c['status']:append(status.MailNotifier{fromaddr='myuser@gmail.com',
                 sendToInterestedUsers=false, extraRecipients={'listaddr@example.org'},
                 useTls=true, relayhost='smtp.gmail.com', smtpPort=587,
                 smtpUser='myuser@gmail.com', smtpPassword='mypassword'})",
        );
        assert!(config.use_tls);
        let config = mail(
            "local function messageFormatter(mode, name, build, results, master_status)
               local result = util.Results[results]
               local text = {}
               table.insert(text, ('STATUS: %s'):format(result:title()))
               return {body=table.concat(text, '\\n'), type='plain'}
             end
             local mn = status.MailNotifier{fromaddr='buildbot@example.org',
                 sendToInterestedUsers=false, mode={'problem'},
                 extraRecipients={'listaddr@example.org'},
                 messageFormatter=messageFormatter}
             c['status']:append(mn)",
        );
        assert_eq!(modes(&config), ["problem"]);
        assert!(config.message_formatter.is_some());
        let config = mail(HTML_MESSAGE_FORMATTER);
        assert_eq!(modes(&config), ["failing"]);
        let defined_at = HTML_MESSAGE_FORMATTER
            .lines()
            .position(|l| l.starts_with("local function html_message_formatter"))
            .unwrap();
        assert_eq!(
            config.message_formatter.unwrap().location().line as usize,
            defined_at + 1
        );
    }

    /// The spec's `html_message_formatter`, as `examples/` ships it.
    const HTML_MESSAGE_FORMATTER: &str = include_str!("../../../examples/mail_html_formatter.lua");
}
