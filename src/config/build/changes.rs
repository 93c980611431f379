//! `util.ChangeFilter` and the change sources: `changes.GitPoller`, `changes.PBChangeSource`.

use std::collections::BTreeMap;

use mlua::{Lua, MultiValue, UserData, Value};

use super::git::check_ssh;
use super::values::{read_args, Branch, Pattern, ValueOrFunction};
use crate::config::kwargs::{constructor, describe, FromOption, Kwargs, OneOrMany};
use crate::config::{define, Location, Namespaces, PortSpec};
use crate::script::{Callback, Renderable};

// ---- ChangeFilter -----------------------------------------------------------------------

/// Tests on one attribute of a change; a change passes when every given test passes.
#[derive(Clone, Debug)]
pub struct FieldFilter<V = String> {
    /// The value is one of these.
    pub eq: Option<Vec<V>>,
    /// The value is none of these.
    pub not_eq: Option<Vec<V>>,
    /// Some pattern matches at the value's start (Python's `re.match`).
    pub re: Vec<Pattern>,
    /// No pattern matches at the value's start.
    pub not_re: Vec<Pattern>,
    /// `fn(value) -> bool`.
    pub function: Option<Callback>,
}

impl<V> Default for FieldFilter<V> {
    fn default() -> Self {
        FieldFilter {
            eq: None,
            not_eq: None,
            re: Vec::new(),
            not_re: Vec::new(),
            function: None,
        }
    }
}

/// Tests on a change's properties, by property name.
#[derive(Clone, Debug, Default)]
pub struct PropertyFilters {
    pub eq: BTreeMap<String, Vec<String>>,
    pub not_eq: BTreeMap<String, Vec<String>>,
    pub re: BTreeMap<String, Vec<Pattern>>,
    pub not_re: BTreeMap<String, Vec<Pattern>>,
}

/// `util.ChangeFilter`: which changes a scheduler looks at.
#[derive(Clone, Debug, Default)]
pub struct ChangeFilter {
    /// `fn(change) -> bool`.
    pub filter_fn: Option<Callback>,
    pub project: FieldFilter,
    pub repository: FieldFilter,
    pub branch: FieldFilter<Branch>,
    pub category: FieldFilter,
    pub codebase: FieldFilter,
    pub properties: PropertyFilters,
    pub location: Location,
}

impl UserData for ChangeFilter {}
crate::config_object!(ChangeFilter, "util.ChangeFilter");

impl ChangeFilter {
    /// The filter a scheduler builds from its own `branch`/`branches` and 0.8 `categories`.
    pub(super) fn from_scheduler(
        branches: Option<Vec<Branch>>,
        categories: Option<Vec<String>>,
        location: Location,
    ) -> Option<ChangeFilter> {
        if branches.is_none() && categories.is_none() {
            return None;
        }
        Some(ChangeFilter {
            branch: FieldFilter {
                eq: branches,
                ..FieldFilter::default()
            },
            category: FieldFilter {
                eq: categories,
                ..FieldFilter::default()
            },
            location,
            ..ChangeFilter::default()
        })
    }
}

pub const CHANGE_FILTER_OPTIONS: &[&str] = &[
    "filter_fn",
    "project",
    "project_not_eq",
    "project_re",
    "project_not_re",
    "project_fn",
    "repository",
    "repository_not_eq",
    "repository_re",
    "repository_not_re",
    "repository_fn",
    "branch",
    "branch_not_eq",
    "branch_re",
    "branch_not_re",
    "branch_fn",
    "category",
    "category_not_eq",
    "category_re",
    "category_not_re",
    "category_fn",
    "codebase",
    "codebase_not_eq",
    "codebase_re",
    "codebase_not_re",
    "codebase_fn",
    "property_eq",
    "property_not_eq",
    "property_re",
    "property_not_re",
];

fn field<V: FromOption>(kw: &mut Kwargs, field: &str) -> FieldFilter<V> {
    let mut values = |suffix: &str| {
        kw.optional::<OneOrMany<V>>(&format!("{field}{suffix}"))
            .map(|v| v.0)
    };
    let eq = values("");
    let not_eq = values("_not_eq");
    let mut patterns = |suffix: &str| {
        kw.optional::<OneOrMany<Pattern>>(&format!("{field}{suffix}"))
            .map(|v| v.0)
            .unwrap_or_default()
    };
    let re = patterns("_re");
    let not_re = patterns("_not_re");
    FieldFilter {
        eq,
        not_eq,
        re,
        not_re,
        function: kw.optional(&format!("{field}_fn")),
    }
}

fn one_or_many_map<T: FromOption>(kw: &mut Kwargs, name: &str) -> BTreeMap<String, Vec<T>> {
    kw.optional::<BTreeMap<String, OneOrMany<T>>>(name)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

fn change_filter(lua: &Lua, args: MultiValue) -> Option<ChangeFilter> {
    let mut kw = read_args(
        lua,
        "ChangeFilter",
        args,
        &["filter_fn"],
        &[],
        &[],
        CHANGE_FILTER_OPTIONS,
    );
    let filter = ChangeFilter {
        filter_fn: kw.optional("filter_fn"),
        project: field(&mut kw, "project"),
        repository: field(&mut kw, "repository"),
        branch: field(&mut kw, "branch"),
        category: field(&mut kw, "category"),
        codebase: field(&mut kw, "codebase"),
        properties: PropertyFilters {
            eq: one_or_many_map(&mut kw, "property_eq"),
            not_eq: one_or_many_map(&mut kw, "property_not_eq"),
            re: one_or_many_map(&mut kw, "property_re"),
            not_re: one_or_many_map(&mut kw, "property_not_re"),
        },
        location: kw.location(),
    };
    kw.finish().then_some(filter)
}

// ---- change sources -------------------------------------------------------------------

/// One entry of `c['change_source']`.
#[derive(Clone, Debug)]
pub enum ChangeSourceConfig {
    GitPoller(Box<GitPoller>),
    PBChangeSource(PbChangeSource),
}

impl UserData for ChangeSourceConfig {}
crate::config_object!(
    ChangeSourceConfig,
    "change source (changes.GitPoller{...}, ...)"
);

impl ChangeSourceConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ChangeSourceConfig::GitPoller(_) => "GitPoller",
            ChangeSourceConfig::PBChangeSource(_) => "PBChangeSource",
        }
    }
    pub fn name(&self) -> &str {
        match self {
            ChangeSourceConfig::GitPoller(p) => &p.name,
            ChangeSourceConfig::PBChangeSource(p) => &p.name,
        }
    }
    pub fn location(&self) -> &Location {
        match self {
            ChangeSourceConfig::GitPoller(p) => &p.location,
            ChangeSourceConfig::PBChangeSource(p) => &p.location,
        }
    }
}

/// `changes.GitPoller`: polls a remote repository for new commits.
#[derive(Clone, Debug)]
pub struct GitPoller {
    /// Defaults to the repository URL, as in Buildbot.
    pub name: String,
    pub repourl: String,
    pub branches: GitBranches,
    /// The poller's clone, relative to the master's base directory.
    pub workdir: String,
    /// Seconds between polls.
    pub poll_interval: u64,
    pub poll_at_launch: bool,
    /// Each poll is delayed by a random number of seconds in this range.
    pub poll_random_delay_min: u64,
    pub poll_random_delay_max: u64,
    pub gitbin: String,
    /// Changes carry the commit time (rather than the time they were seen).
    pub usetimestamps: bool,
    /// A category for every change, or `fn(change) -> category`.
    pub category: Option<ValueOrFunction<String>>,
    pub project: String,
    pub encoding: String,
    /// A push of a branch without new commits still makes a change.
    pub build_pushes_with_no_commits: bool,
    pub ssh_private_key: Option<Renderable>,
    pub ssh_host_key: Option<Renderable>,
    pub ssh_known_hosts: Option<Renderable>,
    pub location: Location,
}

/// Which refs a GitPoller follows.
#[derive(Clone, Debug)]
pub enum GitBranches {
    /// The remote's default branch (its `HEAD`).
    Default,
    Named(Vec<String>),
    /// Every branch (`branches = true`).
    All,
    /// Refs for which `fn(ref) -> bool` holds.
    Matching(Callback),
    /// Tags only (`only_tags = true`).
    Tags,
}

pub const GIT_POLLER_OPTIONS: &[&str] = &[
    "repourl",
    "branches",
    "branch",
    "workdir",
    "pollInterval",
    "pollinterval",
    "pollAtLaunch",
    "pollRandomDelayMin",
    "pollRandomDelayMax",
    "gitbin",
    "usetimestamps",
    "category",
    "codebase",
    "project",
    "fetch_refspec",
    "encoding",
    "name",
    "buildPushesWithNoCommits",
    "only_tags",
    "sshPrivateKey",
    "sshHostKey",
    "sshKnownHosts",
    "auth_credentials",
    "git_credentials",
];

fn git_poller(lua: &Lua, args: MultiValue) -> Option<ChangeSourceConfig> {
    let mut kw = read_args(
        lua,
        "GitPoller",
        args,
        &["repourl"],
        &[],
        &[],
        GIT_POLLER_OPTIONS,
    );
    let repourl: String = kw.required("repourl");
    let branches = git_branches(&mut kw);
    let poll_interval = kw
        .alias(&["pollInterval", "pollinterval"])
        .unwrap_or(10 * 60);
    let delay_min: u64 = kw.optional_or("pollRandomDelayMin", 0);
    let delay_max: u64 = kw.optional_or("pollRandomDelayMax", 0);
    if delay_min > delay_max {
        kw.error(format!(
            "option 'pollRandomDelayMin' ({delay_min}) must not exceed 'pollRandomDelayMax' ({delay_max})"
        ));
    }
    if delay_max > 0 && delay_max >= poll_interval {
        kw.error(format!(
            "option 'pollRandomDelayMax' ({delay_max}) must be less than 'pollInterval' ({poll_interval})"
        ));
    }
    check_ssh(&mut kw);
    let ssh_private_key: Option<Renderable> = kw.optional("sshPrivateKey");
    let ssh_host_key: Option<Renderable> = kw.optional("sshHostKey");
    let ssh_known_hosts: Option<Renderable> = kw.optional("sshKnownHosts");
    kw.refuse(
        "fetch_refspec",
        "is no longer supported: GitPoller fetches only the branches it polls",
    );
    kw.unimplemented("codebase");
    kw.unimplemented("auth_credentials");
    kw.unimplemented("git_credentials");
    let poller = GitPoller {
        name: kw.optional("name").unwrap_or_else(|| repourl.clone()),
        branches,
        workdir: kw
            .optional("workdir")
            .unwrap_or_else(|| "gitpoller-work".into()),
        poll_interval,
        poll_at_launch: kw.optional_or("pollAtLaunch", false),
        poll_random_delay_min: delay_min,
        poll_random_delay_max: delay_max,
        gitbin: kw.optional("gitbin").unwrap_or_else(|| "git".into()),
        usetimestamps: kw.optional_or("usetimestamps", true),
        category: kw.optional("category"),
        project: kw.optional("project").unwrap_or_default(),
        encoding: kw.optional("encoding").unwrap_or_else(|| "utf-8".into()),
        build_pushes_with_no_commits: kw.optional_or("buildPushesWithNoCommits", false),
        ssh_private_key,
        ssh_host_key,
        ssh_known_hosts,
        location: kw.location(),
        repourl,
    };
    kw.finish()
        .then(|| ChangeSourceConfig::GitPoller(Box::new(poller)))
}

/// `branch`, `branches` and `only_tags`, of which at most one may be given.
fn git_branches(kw: &mut Kwargs) -> GitBranches {
    let only_tags = kw.optional_or("only_tags", false);
    if only_tags && (kw.has("branch") || kw.has("branches")) {
        kw.error("option 'only_tags' cannot be given with 'branch' or 'branches'");
    }
    if kw.has("branch") && kw.has("branches") {
        kw.error("options 'branch' and 'branches' cannot be given together");
    }
    let branch: Option<String> = kw.optional("branch");
    let branches = match kw.raw("branches") {
        None if only_tags => GitBranches::Tags,
        None => GitBranches::Default,
        Some(Value::Boolean(true)) => GitBranches::All,
        Some(Value::Function(f)) => match Callback::new(kw.lua(), &f) {
            Ok(callback) => GitBranches::Matching(callback),
            Err(e) => {
                kw.error(format!("option 'branches': {e}"));
                GitBranches::Default
            }
        },
        Some(value) => match Vec::<String>::from_option(value.clone(), kw.lua()) {
            Ok(names) => GitBranches::Named(names),
            Err(_) => {
                kw.error(format!(
                    "option 'branches' must be a list of branch names, true (all branches) or a function, got {}",
                    describe(&value)
                ));
                GitBranches::Default
            }
        },
    };
    match branch {
        Some(branch) => GitBranches::Named(vec![branch]),
        None => branches,
    }
}

/// `changes.PBChangeSource`: accepts changes from `buildbot sendchange` over PB.
#[derive(Clone, Debug)]
pub struct PbChangeSource {
    pub name: String,
    /// Its own port; `None` shares the workers' port.
    pub port: Option<PortSpec>,
    pub user: String,
    pub passwd: String,
    /// Only changes to files under this prefix are kept, with the prefix removed.
    pub prefix: Option<String>,
    pub location: Location,
}

pub const PB_CHANGE_SOURCE_OPTIONS: &[&str] = &["port", "user", "passwd", "prefix", "name"];

fn pb_change_source(lua: &Lua, args: MultiValue) -> Option<ChangeSourceConfig> {
    let mut kw = Kwargs::new(lua, "PBChangeSource", args, &[], PB_CHANGE_SOURCE_OPTIONS);
    let port: Option<PortSpec> = kw.optional("port");
    let prefix: Option<String> = kw.optional("prefix");
    // Buildbot names it after its prefix and port, so that several can coexist.
    let default_name = ["PBChangeSource".to_string()]
        .into_iter()
        .chain(prefix.clone())
        .chain(port.as_ref().map(PortSpec::to_string))
        .collect::<Vec<_>>()
        .join(":");
    let source = PbChangeSource {
        name: kw.optional("name").unwrap_or(default_name),
        user: kw.optional("user").unwrap_or_else(|| "change".into()),
        passwd: kw.optional("passwd").unwrap_or_else(|| "changepw".into()),
        port,
        prefix,
        location: kw.location(),
    };
    kw.finish()
        .then_some(ChangeSourceConfig::PBChangeSource(source))
}

pub(super) fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    define(
        &ns.util,
        "ChangeFilter",
        constructor(lua, "util.ChangeFilter", change_filter)?,
    )?;
    define(
        &ns.changes,
        "GitPoller",
        constructor(lua, "change source", git_poller)?,
    )?;
    define(
        &ns.changes,
        "PBChangeSource",
        constructor(lua, "change source", pb_change_source)?,
    )
}
