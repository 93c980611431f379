//! `status.GitHubStatus`: build status on commits through GitHub's Status API; and
//! Buildbot 4's spelling, `status.GitHubStatusPush`, which finds the repository in the
//! build's sourcestamp.

use std::collections::BTreeMap;

use mlua::{Lua, MultiValue};

use super::shared::{is_http_url, read_name};
use super::StatusTarget;
use crate::config::kwargs::constructor;
use crate::config::{define, Kwargs, Location, Namespaces};
use crate::script::renderable::Interpolate;
use crate::script::Renderable;

/// `status.GitHubStatus{token=, repoOwner=, repoName=, ...}`. A status whose owner, name or
/// sha renders empty is not sent, as in Buildbot.
#[derive(Clone, Debug)]
pub struct GitHubStatusConfig {
    pub name: Option<String>,
    /// The GitHub API token.
    pub token: String,
    /// Absent (`GitHubStatusPush` without them): the owner and name in the URL of the
    /// sourcestamp's repository.
    pub repo_owner: Option<Renderable>,
    pub repo_name: Option<Renderable>,
    /// The commit; by default `%(src::revision)s`.
    pub sha: Renderable,
    pub start_description: Renderable,
    pub end_description: Renderable,
    /// Which check this is on the commit (Buildbot 4's `context`); by default
    /// `buildbot/%(prop:buildername)s`.
    pub context: Renderable,
    /// The API endpoint (GitHub Enterprise has its own).
    pub base_url: String,
    /// Log each request and answer (`GitHubStatusPush`'s `verbose` or `debug`).
    pub debug: bool,
    pub location: Location,
}

pub const GITHUB_STATUS_OPTIONS: &[&str] = &[
    "token",
    "repoOwner",
    "repoName",
    "sha",
    "startDescription",
    "endDescription",
    "context",
    "baseURL",
    "name",
];

/// Buildbot 4's options beside those above.
pub const GITHUB_STATUS_PUSH_OPTIONS: &[&str] = &[
    "token",
    "repoOwner",
    "repoName",
    "sha",
    "startDescription",
    "endDescription",
    "context",
    "baseURL",
    "name",
    "verbose",
    "debug",
    "verify",
    "generators",
];

pub fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    define(
        &ns.status,
        "GitHubStatus",
        constructor(lua, "status.GitHubStatus", |lua, args| {
            parse_github(lua, args, false)
        })?,
    )?;
    define(
        &ns.status,
        "GitHubStatusPush",
        constructor(lua, "status.GitHubStatusPush", |lua, args| {
            parse_github(lua, args, true)
        })?,
    )
}

fn default_sha() -> Renderable {
    Renderable::Interpolate(
        Interpolate::new("%(src::revision)s", Vec::new(), BTreeMap::new()).expect("a valid format"),
    )
}

fn default_context() -> Renderable {
    Renderable::Interpolate(
        Interpolate::new("buildbot/%(prop:buildername)s", Vec::new(), BTreeMap::new())
            .expect("a valid format"),
    )
}

/// `GitHubStatus`, or with `push` Buildbot 4's `GitHubStatusPush`: the repository
/// optional and `verbose`, `debug`, `verify` and `generators` known.
fn parse_github(lua: &Lua, args: MultiValue, push: bool) -> Option<StatusTarget> {
    let (kind, required, options): (_, &[&str], _) = match push {
        false => (
            "GitHubStatus",
            &["token", "repoOwner", "repoName"],
            GITHUB_STATUS_OPTIONS,
        ),
        true => ("GitHubStatusPush", &["token"], GITHUB_STATUS_PUSH_OPTIONS),
    };
    let mut kw = Kwargs::new(lua, kind, args, required, options);
    let name = read_name(&mut kw);
    if !kw.has("token") {
        kw.error("needs a token (option 'token', a GitHub API token)");
    }
    let token: Option<String> = kw.optional("token");
    if token.as_deref() == Some("") {
        kw.error("option 'token' is empty");
    }
    let base_url = kw.optional_or("baseURL", "https://api.github.com/".to_string());
    if !is_http_url(&base_url) {
        kw.error(format!(
            "option 'baseURL' must be an http:// or https:// URL, got '{base_url}'"
        ));
    }
    let (repo_owner, repo_name) = match push {
        false => (
            Some(kw.required("repoOwner")),
            Some(kw.required("repoName")),
        ),
        true => (kw.optional("repoOwner"), kw.optional("repoName")),
    };
    let mut debug = false;
    if push {
        debug = kw.optional_or("verbose", false) | kw.optional_or("debug", false);
        kw.refuse(
            "generators",
            "takes Buildbot 4 report generators, which this master does not have: the push \
             reports every build's start and end (narrow it with a builder's tags or the \
             repository it builds)",
        );
        let verify: bool = kw.optional_or("verify", true);
        kw.unimplemented_when("verify", !verify);
    }
    let config = GitHubStatusConfig {
        name,
        token: token.unwrap_or_default(),
        repo_owner,
        repo_name,
        sha: kw.optional("sha").unwrap_or_else(default_sha),
        start_description: kw
            .optional("startDescription")
            .unwrap_or_else(|| Renderable::string("Build started.")),
        end_description: kw
            .optional("endDescription")
            .unwrap_or_else(|| Renderable::string("Build done.")),
        context: kw.optional("context").unwrap_or_else(default_context),
        base_url,
        debug,
        location: kw.location(),
    };
    kw.finish()
        .then(|| StatusTarget::GitHubStatus(Box::new(config)))
}

/// The owner and name of a GitHub repository from its URL in any of git's forms
/// (`https://github.com/o/r.git`, `git@github.com:o/r.git`, `ssh://git@host/o/r`).
pub fn github_repository(url: &str) -> Option<(&str, &str)> {
    let path = url.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let (rest, repo) = path.rsplit_once('/')?;
    let owner = rest.rsplit(['/', ':']).next()?;
    let is_host = rest.len() == owner.len() || rest.ends_with(&format!("//{owner}"));
    (!owner.is_empty() && !repo.is_empty() && !is_host).then_some((owner, repo))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::status::testing::{errors, target};
    use crate::model::{Properties, SourceStamp};
    use crate::script::RenderData;

    fn github(snippet: &str) -> GitHubStatusConfig {
        match target(snippet) {
            StatusTarget::GitHubStatus(config) => *config,
            other => panic!("expected a GitHubStatus, got {other:?}"),
        }
    }

    fn data() -> RenderData {
        RenderData {
            properties: Properties::from_pairs(
                [
                    ("github_repo_owner", serde_json::json!("buildbot")),
                    ("github_repo_name", serde_json::json!("bbtools")),
                ],
                "test",
            ),
            sourcestamps: vec![SourceStamp {
                revision: Some("abc123".into()),
                ..SourceStamp::default()
            }],
            ..RenderData::default()
        }
    }

    fn render(renderable: &Renderable) -> String {
        renderable.render_string(&data(), None).unwrap()
    }

    #[test]
    fn defaults() {
        let config = github(
            "c['status'] = {status.GitHubStatus{token='t', repoOwner='buildbot', repoName='bbtools'}}",
        );
        assert_eq!(config.name.as_deref(), Some("GitHubStatus"));
        assert_eq!(config.token, "t");
        assert_eq!(render(config.repo_owner.as_ref().unwrap()), "buildbot");
        assert_eq!(render(config.repo_name.as_ref().unwrap()), "bbtools");
        assert_eq!(render(&config.sha), "abc123");
        assert_eq!(render(&config.start_description), "Build started.");
        assert_eq!(render(&config.end_description), "Build done.");
        assert_eq!(config.base_url, "https://api.github.com/");
    }

    #[test]
    fn every_option_and_the_spec_example() {
        let config = github(
            "local repoOwner = util.Interpolate('%(prop:github_repo_owner)s')
             local repoName = util.Interpolate('%(prop:github_repo_name)s')
             local sha = util.Interpolate('%(src::revision)s')
             local gs = status.GitHubStatus{token='githubAPIToken',
                                            repoOwner=repoOwner,
                                            repoName=repoName,
                                            sha=sha,
                                            startDescription='Build started.',
                                            endDescription='Build done.'}
             c['status']:append(gs)",
        );
        assert_eq!(render(config.repo_owner.as_ref().unwrap()), "buildbot");
        assert_eq!(render(config.repo_name.as_ref().unwrap()), "bbtools");
        assert_eq!(render(&config.sha), "abc123");
        let config = github(
            "c['status'] = {status.GitHubStatus('tok', 'o', 'r', {sha='deadbeef',
               startDescription=util.Interpolate('%(prop:github_repo_name)s started'),
               endDescription='over', baseURL='https://github.example.com/api/v3/',
               name='github'})}",
        );
        assert_eq!(config.name.as_deref(), Some("github"));
        assert_eq!(config.token, "tok");
        assert_eq!(render(&config.sha), "deadbeef");
        assert_eq!(render(&config.start_description), "bbtools started");
        assert_eq!(render(&config.end_description), "over");
        assert_eq!(config.base_url, "https://github.example.com/api/v3/");
    }

    #[test]
    fn buildbot_4_github_status_push_needs_only_a_token() {
        let config = github(
            "c['status'] = {status.GitHubStatusPush{token='t', context='ci/moon', verbose=true}}",
        );
        assert!(config.repo_owner.is_none() && config.repo_name.is_none());
        assert_eq!(render(&config.context), "ci/moon");
        assert!(config.debug);
        assert_eq!(
            errors("status.GitHubStatusPush{token='t', generators={}}"),
            "master.cfg.lua:1: GitHubStatusPush: option 'generators' takes Buildbot 4 report \
             generators, which this master does not have: the push reports every build's start \
             and end (narrow it with a builder's tags or the repository it builds)"
        );
        assert_eq!(
            crate::config::status::testing::unimplemented(
                "c['status'] = {status.GitHubStatusPush{token='t', verify=false}}"
            ),
            ["master.cfg.lua:1: GitHubStatusPush: option 'verify' is not implemented yet"]
        );
    }

    #[test]
    fn repositories_are_found_in_every_url_form_git_takes() {
        for url in [
            "https://github.com/buildbot/bbtools.git",
            "https://github.com/buildbot/bbtools",
            "https://github.com/buildbot/bbtools/",
            "git@github.com:buildbot/bbtools.git",
            "ssh://git@github.com/buildbot/bbtools.git",
            "git://github.example.com/buildbot/bbtools",
        ] {
            assert_eq!(
                github_repository(url),
                Some(("buildbot", "bbtools")),
                "{url}"
            );
        }
        for url in [
            "https://github.com/bbtools",
            "bbtools",
            "",
            "git@github.com:bbtools",
        ] {
            assert_eq!(github_repository(url), None, "{url}");
        }
    }

    #[test]
    fn errors_are_exact() {
        let cases = [
            (
                "status.GitHubStatus{repoOwner='o', repoName='r'}",
                "master.cfg.lua:1: GitHubStatus: needs a token (option 'token', a GitHub API token)",
            ),
            (
                "status.GitHubStatus{token='', repoOwner='o', repoName='r'}",
                "master.cfg.lua:1: GitHubStatus: option 'token' is empty",
            ),
            (
                "status.GitHubStatus{token='t'}",
                "master.cfg.lua:1: GitHubStatus: missing required option 'repoOwner'\n\
                 master.cfg.lua:1: GitHubStatus: missing required option 'repoName'",
            ),
            (
                "status.GitHubStatus{token='t', repoOwner='o', repoName=print}",
                "master.cfg.lua:1: GitHubStatus: option 'repoName' must be a string, number, boolean, table or renderable (util.Interpolate, util.Property, ...), got function",
            ),
            (
                "status.GitHubStatus{token='t', repoOwner='o', repoName='r', baseURL='github.example.com'}",
                "master.cfg.lua:1: GitHubStatus: option 'baseURL' must be an http:// or https:// URL, got 'github.example.com'",
            ),
        ];
        for (snippet, expected) in cases {
            assert_eq!(errors(snippet), expected, "{snippet}");
        }
    }
}
