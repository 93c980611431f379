//! `status.StashStatusPush`: build status on commits through Stash's build integration API.

use mlua::{Lua, MultiValue};

use super::shared::{is_http_url, read_name};
use super::StatusTarget;
use crate::config::kwargs::constructor;
use crate::config::{define, Kwargs, Location, Namespaces};

/// `status.StashStatusPush(base_url, user, password)`.
#[derive(Clone, Debug, PartialEq)]
pub struct StashStatusPushConfig {
    pub name: Option<String>,
    /// The Stash server, ending with `/` as Buildbot makes it.
    pub base_url: String,
    pub user: String,
    pub password: String,
    pub location: Location,
}

pub const STASH_STATUS_PUSH_OPTIONS: &[&str] = &["base_url", "user", "password", "name"];

pub fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    define(
        &ns.status,
        "StashStatusPush",
        constructor(lua, "status.StashStatusPush", parse_stash)?,
    )
}

fn parse_stash(lua: &Lua, args: MultiValue) -> Option<StatusTarget> {
    let mut kw = Kwargs::new(
        lua,
        "StashStatusPush",
        args,
        &["base_url", "user", "password"],
        STASH_STATUS_PUSH_OPTIONS,
    );
    let name = read_name(&mut kw);
    let mut base_url: String = kw.required("base_url");
    // An empty one is missing, and reported as such.
    if !base_url.is_empty() && !is_http_url(&base_url) {
        kw.error(format!(
            "option 'base_url' must be an http:// or https:// URL, got '{base_url}'"
        ));
    }
    if !base_url.ends_with('/') {
        base_url.push('/');
    }
    let config = StashStatusPushConfig {
        name,
        base_url,
        user: kw.required("user"),
        password: kw.required("password"),
        location: kw.location(),
    };
    kw.finish()
        .then(|| StatusTarget::StashStatusPush(Box::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::status::testing::{errors, target};

    #[test]
    fn the_spec_example() {
        let config = match target(
            "local ss = status.StashStatusPush('https://stash.example.com:8080/',
                                               'stash_username', 'secret_password')
             c['status']:append(ss)",
        ) {
            StatusTarget::StashStatusPush(config) => *config,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            config,
            StashStatusPushConfig {
                name: Some("StashStatusPush".into()),
                base_url: "https://stash.example.com:8080/".into(),
                user: "stash_username".into(),
                password: "secret_password".into(),
                location: Location {
                    file: "master.cfg.lua".into(),
                    line: 1
                },
            }
        );
    }

    #[test]
    fn by_name_with_a_slash_added() {
        match target(
            "c['status'] = {status.StashStatusPush{base_url='http://stash', user='u', password='p', name='stash'}}",
        ) {
            StatusTarget::StashStatusPush(config) => {
                assert_eq!(config.base_url, "http://stash/");
                assert_eq!(config.name.as_deref(), Some("stash"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_are_exact() {
        let cases = [
            (
                "status.StashStatusPush('https://stash/')",
                "master.cfg.lua:1: StashStatusPush: missing required option 'user'\n\
                 master.cfg.lua:1: StashStatusPush: missing required option 'password'",
            ),
            (
                "status.StashStatusPush('stash.example.com', 'u', 'p')",
                "master.cfg.lua:1: StashStatusPush: option 'base_url' must be an http:// or https:// URL, got 'stash.example.com'",
            ),
            (
                "status.StashStatusPush('https://stash/', 'u', 42)",
                "master.cfg.lua:1: StashStatusPush: option 'password' must be a string, got number 42",
            ),
        ];
        for (snippet, expected) in cases {
            assert_eq!(errors(snippet), expected, "{snippet}");
        }
    }
}
