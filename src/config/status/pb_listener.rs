//! `status.PBListener`: a Perspective Broker port for status clients such as `statusgui`.

use mlua::{Lua, MultiValue};

use super::shared::read_name;
use super::StatusTarget;
use crate::config::kwargs::constructor;
use crate::config::{define, Kwargs, Location, Namespaces, PortSpec};

/// `status.PBListener(port, {user=, passwd=})`.
#[derive(Clone, Debug, PartialEq)]
pub struct PbListenerConfig {
    pub name: Option<String>,
    pub port: PortSpec,
    pub user: String,
    pub passwd: String,
    pub location: Location,
}

pub const PB_LISTENER_OPTIONS: &[&str] = &["port", "user", "passwd", "name"];

pub fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    define(
        &ns.status,
        "PBListener",
        constructor(lua, "status.PBListener", parse_pb_listener)?,
    )
}

fn parse_pb_listener(lua: &Lua, args: MultiValue) -> Option<StatusTarget> {
    let mut kw = Kwargs::new(lua, "PBListener", args, &["port"], PB_LISTENER_OPTIONS);
    let name = read_name(&mut kw);
    let port = kw.required_opt("port");
    let user = kw.optional_or("user", "statusClient".to_string());
    let passwd = kw.optional_or("passwd", "clientpw".to_string());
    let location = kw.location();
    let ok = kw.finish();
    let port = port?;
    ok.then(|| {
        StatusTarget::PbListener(Box::new(PbListenerConfig {
            name,
            port,
            user,
            passwd,
            location,
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::status::testing::{errors, target};

    fn check(snippet: &str, expected: PbListenerConfig) {
        match target(snippet) {
            StatusTarget::PbListener(config) => assert_eq!(*config, expected, "{snippet}"),
            other => panic!("expected a PBListener, got {other:?}"),
        }
    }

    fn config(port: &str, user: &str, passwd: &str, name: Option<&str>) -> PbListenerConfig {
        PbListenerConfig {
            name: name.map(String::from),
            port: PortSpec::parse(port).unwrap(),
            user: user.into(),
            passwd: passwd.into(),
            location: Location {
                file: "master.cfg.lua".into(),
                line: 1,
            },
        }
    }

    #[test]
    fn parses() {
        check(
            "c['status'] = {status.PBListener(9988)}",
            config("9988", "statusClient", "clientpw", Some("PBListener")),
        );
        // The spec's example, `PBListener(port=int, user=str, passwd=str)`.
        check(
            "c['status']:append(status.PBListener{port='tcp:9988:interface=127.0.0.1',
                 user='alice', passwd='secret', name='pb'})",
            config(
                "tcp:9988:interface=127.0.0.1",
                "alice",
                "secret",
                Some("pb"),
            ),
        );
    }

    #[test]
    fn errors_are_exact() {
        let cases = [
            ("status.PBListener{user='u'}", "master.cfg.lua:1: PBListener: missing required option 'port'"),
            (
                "status.PBListener(true)",
                "master.cfg.lua:1: PBListener: option 'port' must be a port number or 'tcp:PORT:interface=ADDR', got boolean true",
            ),
            (
                "status.PBListener(9988, {password='x'})",
                "master.cfg.lua:1: PBListener: unknown option 'password' (did you mean 'passwd'?)",
            ),
        ];
        for (snippet, expected) in cases {
            assert_eq!(errors(snippet), expected, "{snippet}");
        }
    }
}
