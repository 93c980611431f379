//! `util.ChangeFilter` and the change sources: `changes.GitPoller`, `changes.PBChangeSource`.

use std::collections::BTreeMap;

use mlua::{Lua, MultiValue, UserData, Value};

use super::git::check_ssh;
use super::lua_source::{self, LuaSource};
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
    /// `changes.PollingChangeSource` or `changes.ChangeSource`.
    Lua(Box<LuaSource>),
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
            ChangeSourceConfig::Lua(source) => source.kind(),
        }
    }
    pub fn name(&self) -> &str {
        match self {
            ChangeSourceConfig::GitPoller(p) => &p.name,
            ChangeSourceConfig::PBChangeSource(p) => &p.name,
            ChangeSourceConfig::Lua(s) => &s.name,
        }
    }
    pub fn location(&self) -> &Location {
        match self {
            ChangeSourceConfig::GitPoller(p) => &p.location,
            ChangeSourceConfig::PBChangeSource(p) => &p.location,
            ChangeSourceConfig::Lua(s) => &s.location,
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
    )?;
    define(
        &ns.changes,
        "PollingChangeSource",
        constructor(lua, "change source", lua_source::polling_change_source)?,
    )?;
    define(
        &ns.changes,
        "ChangeSource",
        constructor(lua, "change source", lua_source::change_source)?,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use crate::config::build::testing::*;
    use crate::config::build::*;

    #[test]
    fn change_filter_takes_every_option() {
        let s = scheduler(
            r#"schedulers.AnyBranchScheduler{name="s", builderNames={"b"}, change_filter=util.ChangeFilter{
  filter_fn=function(change) return true end,
  project="p", project_not_eq={"q"}, project_re="^p", project_not_re={"x", "y"}, project_fn=print,
  repository={"r1", "r2"}, repository_not_eq="r3", repository_re="git@", repository_not_re="svn", repository_fn=print,
  branch={"main", false}, branch_not_eq=false, branch_re="^release/", branch_not_re="wip", branch_fn=print,
  category="c", category_not_eq="d", category_re="c.*", category_not_re="e", category_fn=print,
  codebase="", codebase_not_eq="lib", codebase_re=".*", codebase_not_re="z", codebase_fn=print,
  property_eq={owner="me"}, property_not_eq={owner={"you", "them"}}, property_re={tag="^v"},
  property_not_re={tag={"rc", "beta"}}}}"#,
        );
        let SchedulerConfig::AnyBranch(any) = &s else {
            panic!()
        };
        let f = any.change_filter.as_ref().unwrap();
        let sources = |p: &[Pattern]| p.iter().map(|p| p.source().to_string()).collect::<Vec<_>>();
        assert_eq!(f.filter_fn.as_ref().unwrap().location().line, 2);
        assert_eq!(f.project.eq, Some(vec!["p".to_string()]));
        assert_eq!(f.project.not_eq, Some(vec!["q".to_string()]));
        assert_eq!(sources(&f.project.re), ["^p"]);
        assert_eq!(sources(&f.project.not_re), ["x", "y"]);
        assert!(f.project.function.is_some());
        assert_eq!(
            f.repository.eq,
            Some(vec!["r1".to_string(), "r2".to_string()])
        );
        assert_eq!(f.repository.not_eq, Some(vec!["r3".to_string()]));
        assert_eq!(sources(&f.repository.re), ["git@"]);
        assert_eq!(
            f.branch.eq,
            Some(vec![Branch::Named("main".into()), Branch::Default])
        );
        assert_eq!(f.branch.not_eq, Some(vec![Branch::Default]));
        assert!(f.branch.re[0].matches_start("release/1.0"));
        assert!(!f.branch.re[0].matches_start("x/release/1.0"));
        assert_eq!(sources(&f.branch.not_re), ["wip"]);
        assert!(f.branch.function.is_some() && f.category.function.is_some());
        assert_eq!(f.category.eq, Some(vec!["c".to_string()]));
        assert_eq!(sources(&f.category.re), ["c.*"]);
        assert_eq!(f.codebase.eq, Some(vec![String::new()]));
        assert_eq!(f.codebase.not_eq, Some(vec!["lib".to_string()]));
        assert!(f.codebase.function.is_some());
        assert_eq!(
            f.properties.eq,
            BTreeMap::from([("owner".into(), vec!["me".into()])])
        );
        assert_eq!(
            f.properties.not_eq,
            BTreeMap::from([("owner".into(), vec!["you".into(), "them".into()])])
        );
        assert_eq!(sources(&f.properties.re["tag"]), ["^v"]);
        assert_eq!(sources(&f.properties.not_re["tag"]), ["rc", "beta"]);
        assert_eq!(f.location.line, 1);
    }

    #[test]
    fn change_filter_errors() {
        check_errors(&[
        (
            "util.ChangeFilter{branch_re='('}",
            "ChangeFilter: option 'branch_re' is not a valid regular expression ('('): unclosed group",
        ),
        (
            "util.ChangeFilter{project_not_re={'ok', '+'}}",
            "ChangeFilter: option 'project_not_re' item 2 is not a valid regular expression ('+'): repetition operator missing expression",
        ),
        (
            "util.ChangeFilter{project=5}",
            "ChangeFilter: option 'project' must be a string, got number 5",
        ),
        (
            "util.ChangeFilter{branch_fn='main'}",
            "ChangeFilter: option 'branch_fn' must be a function, got string 'main'",
        ),
        (
            "util.ChangeFilter{branches='main'}",
            "ChangeFilter: unknown option 'branches' (did you mean 'branch'?)",
        ),
        (
            "util.ChangeFilter{property_re={tag=5}}",
            "ChangeFilter: option 'property_re' entry 'tag' must be a regular expression (a string), got number 5",
        ),
    ]);
    }

    #[test]
    fn git_poller_takes_every_option() {
        let c = change_source(
            r#"changes.GitPoller("https://example.org/r.git", {branches={"main", "dev"},
  workdir="gp", pollInterval=60, pollAtLaunch=true, pollRandomDelayMin=1, pollRandomDelayMax=5,
  gitbin="/usr/bin/git", usetimestamps=false, category="ci", project="proj", encoding="latin-1",
  name="poller", buildPushesWithNoCommits=true, sshPrivateKey="key", sshHostKey="host"})"#,
        );
        assert_eq!(
            (c.kind(), c.name(), c.location().line),
            ("GitPoller", "poller", 1)
        );
        let ChangeSourceConfig::GitPoller(p) = &c else {
            panic!()
        };
        assert_eq!(p.repourl, "https://example.org/r.git");
        assert!(matches!(&p.branches, GitBranches::Named(b) if b == &["main", "dev"]));
        assert_eq!(p.workdir, "gp");
        assert_eq!(p.poll_interval, 60);
        assert!(p.poll_at_launch && !p.usetimestamps && p.build_pushes_with_no_commits);
        assert_eq!((p.poll_random_delay_min, p.poll_random_delay_max), (1, 5));
        assert_eq!(p.gitbin, "/usr/bin/git");
        assert!(matches!(&p.category, Some(ValueOrFunction::Value(c)) if c == "ci"));
        assert_eq!(
            (p.project.as_str(), p.encoding.as_str()),
            ("proj", "latin-1")
        );
        assert_eq!(value(p.ssh_private_key.as_ref().unwrap()), json!("key"));
        assert_eq!(value(p.ssh_host_key.as_ref().unwrap()), json!("host"));
        assert!(p.ssh_known_hosts.is_none());
    }

    #[test]
    fn git_poller_defaults_and_branch_forms() {
        let branches = |options: &str| {
            let c = change_source(&format!("changes.GitPoller{{repourl='u', {options}}}"));
            let ChangeSourceConfig::GitPoller(p) = c else {
                panic!()
            };
            p
        };
        let p = branches("pollinterval=30");
        assert_eq!(p.name, "u");
        assert!(matches!(p.branches, GitBranches::Default));
        assert_eq!(p.poll_interval, 30);
        assert_eq!(
            (p.workdir.as_str(), p.gitbin.as_str(), p.encoding.as_str()),
            ("gitpoller-work", "git", "utf-8")
        );
        assert!(
            p.usetimestamps && !p.poll_at_launch && p.category.is_none() && p.project.is_empty()
        );
        assert!(matches!(branches("branch='dev'").branches, GitBranches::Named(b) if b == ["dev"]));
        assert!(matches!(
            branches("branches=true").branches,
            GitBranches::All
        ));
        assert!(matches!(
            branches("branches=function(ref) return true end").branches,
            GitBranches::Matching(_)
        ));
        assert!(matches!(
            branches("only_tags=true").branches,
            GitBranches::Tags
        ));
        assert!(matches!(
            branches("category=function(c) return 'x' end").category,
            Some(ValueOrFunction::Function(_))
        ));
        assert_eq!(branches("").poll_interval, 600);
    }

    #[test]
    fn pb_change_source() {
        let c = change_source(
            r#"{changes.PBChangeSource{port=9999, user="u", passwd="p", prefix="trunk/"},
  changes.PBChangeSource(), changes.PBChangeSource{name="pb", port="tcp:9998:interface=127.0.0.1"}}"#,
        );
        assert_eq!(
            (c.kind(), c.name()),
            ("PBChangeSource", "PBChangeSource:trunk/:9999")
        );
        let ChangeSourceConfig::PBChangeSource(p) = &c else {
            panic!()
        };
        assert_eq!(p.port.as_ref().unwrap().port, 9999);
        assert_eq!((p.user.as_str(), p.passwd.as_str()), ("u", "p"));
        assert_eq!(p.prefix.as_deref(), Some("trunk/"));
        let loaded = load(
            r#"BuildmasterConfig.change_source = {changes.PBChangeSource(),
  changes.PBChangeSource{name="pb", port="tcp:9998:interface=127.0.0.1"}}"#,
        );
        let sources = &loaded.config.change_sources;
        let ChangeSourceConfig::PBChangeSource(p) = &sources[0] else {
            panic!()
        };
        assert_eq!(p.name, "PBChangeSource");
        assert_eq!((p.user.as_str(), p.passwd.as_str()), ("change", "changepw"));
        assert!(p.port.is_none() && p.prefix.is_none());
        assert_eq!(sources[1].name(), "pb");
    }

    #[test]
    fn change_source_errors() {
        check_errors(&[
        ("changes.GitPoller{}", "GitPoller: missing required option 'repourl'"),
        (
            "changes.GitPoller{repourl='u', branch='a', branches={'b'}}",
            "GitPoller: options 'branch' and 'branches' cannot be given together",
        ),
        (
            "changes.GitPoller{repourl='u', only_tags=true, branch='a'}",
            "GitPoller: option 'only_tags' cannot be given with 'branch' or 'branches'",
        ),
        (
            "changes.GitPoller{repourl='u', branches=5}",
            "GitPoller: option 'branches' must be a list of branch names, true (all branches) or a function, got number 5",
        ),
        (
            "changes.GitPoller{repourl='u', pollInterval=1, pollinterval=2}",
            "GitPoller: options 'pollInterval' and 'pollinterval' are the same; give only one",
        ),
        (
            "changes.GitPoller{repourl='u', fetch_refspec='+refs/*'}",
            "GitPoller: option 'fetch_refspec' is no longer supported: GitPoller fetches only the branches it polls",
        ),
        (
            "changes.GitPoller{repourl='u', pollRandomDelayMin=5, pollRandomDelayMax=3}",
            "GitPoller: option 'pollRandomDelayMin' (5) must not exceed 'pollRandomDelayMax' (3)",
        ),
        (
            "changes.GitPoller{repourl='u', pollInterval=10, pollRandomDelayMax=10}",
            "GitPoller: option 'pollRandomDelayMax' (10) must be less than 'pollInterval' (10)",
        ),
        (
            "changes.GitPoller{repourl='u', sshKnownHosts='k'}",
            "GitPoller: option 'sshKnownHosts' needs 'sshPrivateKey'",
        ),
        (
            "changes.PBChangeSource{port='x'}",
            "PBChangeSource: option 'port' 'x' is not a port (use 8010 or 'tcp:8010:interface=127.0.0.1')",
        ),
        (
            "changes.PBChangeSource{password='x'}",
            "PBChangeSource: unknown option 'password' (did you mean 'passwd'?)",
        ),
    ]);
        assert_eq!(
        unimplemented(
            "changes.GitPoller{repourl='u', codebase={}, auth_credentials={}, git_credentials={}}"
        ),
        [
            "master.cfg.lua:1: GitPoller: option 'codebase' is not implemented yet",
            "master.cfg.lua:1: GitPoller: option 'auth_credentials' is not implemented yet",
            "master.cfg.lua:1: GitPoller: option 'git_credentials' is not implemented yet",
        ]
    );
    }
}
