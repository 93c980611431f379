//! `steps.Git`: checks out a Git repository on the worker.

use std::collections::BTreeMap;

use mlua::{Lua, MultiValue, Value};

use super::steps::{common, finish, step_options, Defaults, StepConfig, StepKind, BASE};
use super::values::read_args;
use crate::config::kwargs::{constructor, describe, FromOption, Kwargs};
use crate::config::{define, Namespaces};
use crate::script::Renderable;

#[derive(Clone, Debug)]
pub struct GitStep {
    pub repourl: Renderable,
    /// The branch used when the build's sourcestamp names none.
    pub branch: Renderable,
    pub mode: GitMode,
    pub submodules: bool,
    pub remote_submodules: bool,
    /// Fetch tags too.
    pub tags: bool,
    /// Clone depth; `None` for a full clone.
    pub shallow: Option<u32>,
    /// A local repository to borrow objects from (`git clone --reference`).
    pub reference: Option<Renderable>,
    /// `git clone --filter` arguments.
    pub filters: Vec<String>,
    pub progress: bool,
    pub retry_fetch: bool,
    pub clobber_on_failure: bool,
    /// `git describe` options for the `commit-description` property; `None` for off.
    pub get_description: Option<BTreeMap<String, serde_json::Value>>,
    /// `git -c key=value` settings.
    pub config: BTreeMap<String, String>,
    pub origin: Option<String>,
    pub ssh_private_key: Option<Renderable>,
    pub ssh_host_key: Option<Renderable>,
    pub ssh_known_hosts: Option<Renderable>,
    pub port: u16,
    /// Which changes of the build this step checks out.
    pub codebase: String,
    pub always_use_latest: bool,
    pub timeout: u64,
    /// `(delay seconds, repeats)` for a failed checkout.
    pub retry: Option<(u64, u64)>,
    pub env: BTreeMap<String, Renderable>,
    pub log_environ: bool,
}

/// How the source directory is brought up to date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GitMode {
    /// Fetch into the existing checkout.
    Incremental,
    /// Start from a clean tree, by the given method.
    Full(GitMethod),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GitMethod {
    /// `git clean -f -f -d` (untracked files go; ignored ones stay).
    Clean,
    /// `git clean -f -f -d -x` (ignored files go too).
    Fresh,
    /// Remove the directory and clone again.
    Clobber,
    /// Keep a pristine copy and copy it over.
    Copy,
}

impl GitMethod {
    const NAMES: &'static [&'static str] = &["clean", "fresh", "clobber", "copy"];

    fn parse(name: &str) -> Option<GitMethod> {
        match name {
            "clean" => Some(GitMethod::Clean),
            "fresh" => Some(GitMethod::Fresh),
            "clobber" => Some(GitMethod::Clobber),
            "copy" => Some(GitMethod::Copy),
            _ => None,
        }
    }
}

pub const GIT_OPTIONS: &[&str] = step_options!(
    "repourl",
    "branch",
    "mode",
    "method",
    "submodules",
    "remoteSubmodules",
    "tags",
    "shallow",
    "reference",
    "filters",
    "progress",
    "retryFetch",
    "clobberOnFailure",
    "getDescription",
    "config",
    "origin",
    "sshPrivateKey",
    "sshHostKey",
    "sshKnownHosts",
    "port",
    "auth_credentials",
    "git_credentials",
    "codebase",
    "alwaysUseLatest",
    "timeout",
    "retry",
    "env",
    "logEnviron",
);

/// `git describe` options `getDescription` may set.
const DESCRIBE_OPTIONS: &[&str] = &[
    "match",
    "abbrev",
    "dirty",
    "tags",
    "all",
    "contains",
    "candidates",
    "exact-match",
    "first-parent",
    "always",
];

/// Buildbot's `Source` class: source steps stop the build when they fail.
const GIT: Defaults = Defaults {
    name: "git",
    description: &["updating"],
    description_done: &["update"],
    halt_on_failure: true,
    ..BASE
};

fn git(lua: &Lua, args: MultiValue) -> Option<StepConfig> {
    let mut kw = read_args(lua, "Git", args, &["repourl"], &[], &[], GIT_OPTIONS);
    let repourl = kw.required("repourl");
    let method_given = kw.has("method");
    let mode = mode(&mut kw);
    let shallow = shallow(&mut kw);
    // As Buildbot: a shallow clone and an explicit method other than clobber conflict.
    if shallow.is_some()
        && method_given
        && matches!(mode, GitMode::Full(m) if m != GitMethod::Clobber)
    {
        kw.error("option 'shallow' needs method 'clobber'");
    }
    check_ssh(&mut kw);
    let ssh_private_key: Option<Renderable> = kw.optional("sshPrivateKey");
    let ssh_host_key: Option<Renderable> = kw.optional("sshHostKey");
    let ssh_known_hosts: Option<Renderable> = kw.optional("sshKnownHosts");
    kw.unimplemented("auth_credentials");
    kw.unimplemented("git_credentials");
    let remote_submodules: bool = kw.optional_or("remoteSubmodules", false);
    kw.unimplemented_when("remoteSubmodules", remote_submodules);
    let retry_fetch: bool = kw.optional_or("retryFetch", false);
    kw.unimplemented_when("retryFetch", retry_fetch);
    let codebase: String = kw.optional("codebase").unwrap_or_default();
    let step = GitStep {
        repourl,
        branch: kw
            .optional("branch")
            .unwrap_or_else(|| Renderable::string("HEAD")),
        mode,
        submodules: kw.optional_or("submodules", false),
        remote_submodules,
        tags: kw.optional_or("tags", false),
        shallow,
        reference: kw.optional("reference"),
        filters: kw.optional("filters").unwrap_or_default(),
        progress: kw.optional_or("progress", true),
        retry_fetch,
        clobber_on_failure: kw.optional_or("clobberOnFailure", false),
        get_description: get_description(&mut kw),
        config: kw.optional("config").unwrap_or_default(),
        origin: kw.optional("origin"),
        ssh_private_key,
        ssh_host_key,
        ssh_known_hosts,
        port: kw.optional_or("port", 22),
        always_use_latest: kw.optional_or("alwaysUseLatest", false),
        timeout: kw.optional_or("timeout", 20 * 60),
        retry: retry(&mut kw),
        env: kw.optional("env").unwrap_or_default(),
        log_environ: kw.optional_or("logEnviron", true),
        codebase: codebase.clone(),
    };
    // Accepted by the config, not yet carried out by the Git step.
    let not_yet = [
        ("reference", step.reference.is_some()),
        ("filters", !step.filters.is_empty()),
        ("getDescription", step.get_description.is_some()),
        ("origin", step.origin.is_some()),
        ("sshPrivateKey", step.ssh_private_key.is_some()),
        ("sshHostKey", step.ssh_host_key.is_some()),
        ("sshKnownHosts", step.ssh_known_hosts.is_some()),
        ("port", step.port != 22),
        ("retry", step.retry.is_some()),
    ];
    for (name, given) in not_yet {
        kw.unimplemented_when(name, given);
    }
    let mut common = common(&mut kw, &GIT);
    if !codebase.is_empty() {
        // As Buildbot's Source: the codebase tells apart the steps of a multi-repo build.
        common.name = format!("{}-{codebase}", common.name);
        common
            .description_suffix
            .get_or_insert_with(|| vec![codebase]);
    }
    finish(kw, common, StepKind::Git(Box::new(step)))
}

/// `mode` and `method` together: a method only belongs to mode `full`, where Buildbot's
/// default is `fresh`.
fn mode(kw: &mut Kwargs) -> GitMode {
    let mode: String = kw.optional("mode").unwrap_or_else(|| "incremental".into());
    let method: Option<String> = kw.optional("method");
    let parsed_method = method.as_deref().map(|name| {
        GitMethod::parse(name).unwrap_or_else(|| {
            kw.error(format!(
                "option 'method' must be one of {}, got '{name}'",
                quoted(GitMethod::NAMES)
            ));
            GitMethod::Fresh
        })
    });
    match mode.as_str() {
        "incremental" => {
            if method.is_some() {
                kw.error("option 'method' only applies to mode 'full'");
            }
            GitMode::Incremental
        }
        "full" => GitMode::Full(parsed_method.unwrap_or(GitMethod::Fresh)),
        other => {
            kw.error(format!(
                "option 'mode' must be 'incremental' or 'full', got '{other}'"
            ));
            GitMode::Incremental
        }
    }
}

/// `shallow`: `true` for depth 1, or a depth.
fn shallow(kw: &mut Kwargs) -> Option<u32> {
    match kw.raw("shallow")? {
        Value::Boolean(true) => Some(1),
        Value::Boolean(false) => None,
        value => match u32::from_option(value.clone(), kw.lua()) {
            Ok(depth) if depth > 0 => Some(depth),
            _ => {
                kw.error(format!(
                    "option 'shallow' must be a boolean or a positive depth, got {}",
                    describe(&value)
                ));
                None
            }
        },
    }
}

fn get_description(kw: &mut Kwargs) -> Option<BTreeMap<String, serde_json::Value>> {
    match kw.raw("getDescription")? {
        Value::Boolean(true) => Some(BTreeMap::new()),
        Value::Boolean(false) => None,
        value => {
            let options =
                BTreeMap::<String, serde_json::Value>::from_option(value.clone(), kw.lua());
            match options {
                Ok(options) => {
                    if let Some(key) = options
                        .keys()
                        .find(|k| !DESCRIBE_OPTIONS.contains(&k.as_str()))
                    {
                        let message = crate::config::errors::unknown(
                            "git describe option",
                            key,
                            DESCRIBE_OPTIONS,
                        );
                        kw.error(format!("option 'getDescription': {message}"));
                    }
                    Some(options)
                }
                Err(_) => {
                    kw.error(format!(
                        "option 'getDescription' must be a boolean or a table of git describe options, got {}",
                        describe(&value)
                    ));
                    None
                }
            }
        }
    }
}

/// `retry = {delay, repeats}`.
fn retry(kw: &mut Kwargs) -> Option<(u64, u64)> {
    let value = kw.raw("retry")?;
    match Vec::<u64>::from_option(value.clone(), kw.lua()).as_deref() {
        Ok([delay, repeats]) => Some((*delay, *repeats)),
        _ => {
            kw.error(format!(
                "option 'retry' must be {{delay, repeats}} (two numbers of seconds and times), got {}",
                describe(&value)
            ));
            None
        }
    }
}

/// Buildbot's `check_ssh_config`, shared by the Git step and GitPoller; it looks at what was
/// given, so that a key whose own value was wrong is not also reported as missing.
pub(super) fn check_ssh(kw: &mut Kwargs) {
    let private_key = kw.has("sshPrivateKey");
    let host_key = kw.has("sshHostKey");
    let known_hosts = kw.has("sshKnownHosts");
    if host_key && !private_key {
        kw.error("option 'sshHostKey' needs 'sshPrivateKey'");
    }
    if known_hosts && !private_key {
        kw.error("option 'sshKnownHosts' needs 'sshPrivateKey'");
    }
    if host_key && known_hosts {
        kw.error("options 'sshHostKey' and 'sshKnownHosts' cannot be given together");
    }
}

pub(super) fn quoted(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

pub(super) fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    define(&ns.steps, "Git", constructor(lua, "build step", git)?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use crate::config::build::testing::*;
    use crate::config::build::*;
    use crate::script::Renderable;

    #[test]
    fn git_takes_every_option() {
        let s = step(
            r#"steps.Git{repourl="git@example.org:r.git", branch="dev", mode="full", method="clobber",
  submodules=true, remoteSubmodules=true, tags=true, shallow=5, reference="/cache/r.git",
  filters={"blob:none"}, progress=false, retryFetch=true, clobberOnFailure=true,
  getDescription={match="v*", abbrev=7}, config={["core.autocrlf"]="false"}, origin="upstream",
  sshPrivateKey=util.Interpolate("%(prop:key)s"), sshKnownHosts="known", port=2222,
  codebase="lib", alwaysUseLatest=true, timeout=300, retry={10, 3}, env={GIT_TRACE="1"},
  logEnviron=false, workdir="lib"}"#,
        );
        let StepKind::Git(g) = &s.kind else { panic!() };
        assert_eq!(value(&g.repourl), json!("git@example.org:r.git"));
        assert_eq!(value(&g.branch), json!("dev"));
        assert_eq!(g.mode, GitMode::Full(GitMethod::Clobber));
        assert!(g.submodules && g.remote_submodules && g.tags);
        assert_eq!(g.shallow, Some(5));
        assert_eq!(value(g.reference.as_ref().unwrap()), json!("/cache/r.git"));
        assert_eq!(g.filters, ["blob:none"]);
        assert!(!g.progress && g.retry_fetch && g.clobber_on_failure);
        assert_eq!(
            g.get_description,
            Some(BTreeMap::from([
                ("abbrev".into(), json!(7)),
                ("match".into(), json!("v*"))
            ]))
        );
        assert_eq!(
            g.config,
            BTreeMap::from([("core.autocrlf".into(), "false".into())])
        );
        assert_eq!(g.origin.as_deref(), Some("upstream"));
        assert!(matches!(
            g.ssh_private_key,
            Some(Renderable::Interpolate(_))
        ));
        assert!(g.ssh_host_key.is_none());
        assert_eq!(value(g.ssh_known_hosts.as_ref().unwrap()), json!("known"));
        assert_eq!(g.port, 2222);
        assert_eq!(g.codebase, "lib");
        assert!(g.always_use_latest && !g.log_environ);
        assert_eq!(g.timeout, 300);
        assert_eq!(g.retry, Some((10, 3)));
        assert_eq!(map_values(&g.env), json!({"GIT_TRACE": "1"}));
        // The codebase names the step, as Buildbot's Source does.
        assert_eq!(s.common.name, "git-lib");
        assert_eq!(
            s.common.description_suffix.as_deref(),
            Some(&["lib".to_string()][..])
        );
        assert_eq!(value(s.common.workdir.as_ref().unwrap()), json!("lib"));
    }

    #[test]
    fn git_defaults() {
        let steps = steps_of(
            r#"steps.Git("https://example.org/r.git"), steps.Git{repourl="u", mode="full", shallow=true,
  getDescription=true}"#,
        );
        let StepKind::Git(g) = &steps[0].kind else {
            panic!()
        };
        assert_eq!(value(&g.branch), json!("HEAD"));
        assert_eq!(g.mode, GitMode::Incremental);
        assert!(!g.submodules && !g.tags && g.progress && !g.retry_fetch && g.log_environ);
        assert_eq!(
            (g.shallow, g.port, g.timeout, g.retry),
            (None, 22, 1200, None)
        );
        assert!(g.get_description.is_none() && g.codebase.is_empty());
        let c = &steps[0].common;
        assert_eq!(c.name, "git");
        assert_eq!(
            c.description.as_deref(),
            Some(&["updating".to_string()][..])
        );
        assert!(c.halt_on_failure && c.flunk_on_failure && c.description_suffix.is_none());
        let StepKind::Git(g) = &steps[1].kind else {
            panic!()
        };
        assert_eq!(g.mode, GitMode::Full(GitMethod::Fresh));
        assert_eq!(g.shallow, Some(1));
        assert_eq!(g.get_description, Some(BTreeMap::new()));
    }
}
