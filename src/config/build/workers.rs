//! `worker.Worker`, `worker.LocalWorker` and the 0.8 name `buildslave.BuildSlave`.

use std::collections::BTreeMap;

use mlua::{Lua, MultiValue, UserData};

use super::values::read_args;
use crate::config::kwargs::{constructor, Kwargs, OneOrMany};
use crate::config::{define, Location, Namespaces};

/// One entry of `c['workers']` (or `c['slaves']`).
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub name: String,
    pub kind: WorkerKind,
    /// At most this many builds at once; `None` for no limit.
    pub max_builds: Option<u32>,
    pub properties: BTreeMap<String, serde_json::Value>,
    /// Applied only where no other source set the property.
    pub default_properties: BTreeMap<String, serde_json::Value>,
    /// Addresses mailed when the worker has been gone `missing_timeout` seconds.
    pub notify_on_missing: Vec<String>,
    /// Seconds; 0 turns the missing notice off.
    pub missing_timeout: u64,
    /// Seconds between keepalives the worker is asked to send.
    pub keepalive_interval: u64,
    pub location: Location,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerKind {
    /// Connects over the network with its password.
    Remote { password: String },
    /// Runs inside the master; `workdir` is relative to `BASEDIR/workers`.
    Local { workdir: String },
}

impl WorkerConfig {
    pub fn is_local(&self) -> bool {
        matches!(self.kind, WorkerKind::Local { .. })
    }
}

impl UserData for WorkerConfig {}
crate::config_object!(
    WorkerConfig,
    "worker (worker.Worker(...) or worker.LocalWorker(...))"
);

/// The options Worker and LocalWorker share.
macro_rules! worker_options {
    ($($extra:literal),* $(,)?) => {
        &[
            "name",
            $($extra,)*
            "max_builds",
            "notify_on_missing",
            "missing_timeout",
            "properties",
            "defaultProperties",
            "locks",
            "keepalive_interval",
            "machine_name",
        ]
    };
}

pub const WORKER_OPTIONS: &[&str] = worker_options!("password");
pub const LOCAL_WORKER_OPTIONS: &[&str] = worker_options!("workdir");

/// Buildbot's defaults (`Worker.DEFAULT_MISSING_TIMEOUT`, `DEFAULT_KEEPALIVE_INTERVAL`).
const DEFAULT_MISSING_TIMEOUT: u64 = 3600;
const DEFAULT_KEEPALIVE_INTERVAL: u64 = 3600;
/// Names Buildbot keeps for itself (`config/master.py`).
const RESERVED_NAMES: &[&str] = &["debug", "change", "status"];
const MAX_NAME_LENGTH: usize = 50;

pub(super) fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    define(
        &ns.worker,
        "Worker",
        constructor(lua, "worker", |lua, args| remote(lua, "Worker", args))?,
    )?;
    define(
        &ns.buildslave,
        "BuildSlave",
        constructor(lua, "worker", |lua, args| remote(lua, "BuildSlave", args))?,
    )?;
    define(
        &ns.worker,
        "LocalWorker",
        constructor(lua, "worker", local)?,
    )?;
    Ok(())
}

fn remote(lua: &Lua, object: &str, args: MultiValue) -> Option<WorkerConfig> {
    let mut kw = read_args(
        lua,
        object,
        args,
        &["name", "password"],
        &[],
        &[],
        WORKER_OPTIONS,
    );
    let name = worker_name(&mut kw);
    let password = kw.required("password");
    common(kw, name, WorkerKind::Remote { password })
}

fn local(lua: &Lua, args: MultiValue) -> Option<WorkerConfig> {
    let mut kw = read_args(
        lua,
        "LocalWorker",
        args,
        &["name"],
        &[],
        &[],
        LOCAL_WORKER_OPTIONS,
    );
    let name = worker_name(&mut kw);
    let workdir = kw.optional("workdir").unwrap_or_else(|| name.clone());
    common(kw, name, WorkerKind::Local { workdir })
}

fn common(mut kw: Kwargs, name: String, kind: WorkerKind) -> Option<WorkerConfig> {
    kw.unimplemented("locks");
    kw.unimplemented("machine_name");
    let missing_timeout: Option<u64> = kw.optional("missing_timeout");
    let config = WorkerConfig {
        kind,
        max_builds: kw.optional("max_builds"),
        properties: kw.optional("properties").unwrap_or_default(),
        default_properties: kw.optional("defaultProperties").unwrap_or_default(),
        notify_on_missing: kw
            .optional::<OneOrMany<String>>("notify_on_missing")
            .unwrap_or_default()
            .0,
        missing_timeout: missing_timeout.unwrap_or(DEFAULT_MISSING_TIMEOUT),
        keepalive_interval: kw.optional_or("keepalive_interval", DEFAULT_KEEPALIVE_INTERVAL),
        location: kw.location(),
        name,
    };
    kw.finish().then_some(config)
}

/// The required `name`, checked against Buildbot's rules: it names directories and appears
/// in URLs.
fn worker_name(kw: &mut Kwargs) -> String {
    let Some(name) = kw.required_opt::<String>("name") else {
        return String::new();
    };
    if name.is_empty() {
        kw.error("the worker name must not be empty");
    } else if RESERVED_NAMES.contains(&name.as_str()) {
        kw.error(format!("worker name '{name}' is reserved"));
    } else if !is_identifier(&name) {
        kw.error(format!(
            "worker name '{name}' is not an identifier (letters, digits, '_' and '-', not starting with a digit)"
        ));
    } else if name.chars().count() > MAX_NAME_LENGTH {
        kw.error(format!(
            "worker name '{name}' is longer than {MAX_NAME_LENGTH} characters"
        ));
    }
    name
}

/// Buildbot's `identifiers.ident_re`: ASCII letters, digits, `_`, `-` and any non-ASCII
/// letter from U+00A0 up, not starting with a digit.
pub(super) fn is_identifier(name: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c >= '\u{a0}';
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if allowed(c) && !c.is_ascii_digit()) && chars.all(allowed)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use crate::config::build::testing::*;
    use crate::config::build::*;

    #[test]
    fn worker_takes_every_option() {
        let config = load(
        r#"BuildmasterConfig.protocols = {msgpack_experimental_v7={port=9989}}; BuildmasterConfig.workers = {worker.Worker("w1", "pw", {max_builds=2, properties={os="linux"},
  defaultProperties={arch="x86"}, notify_on_missing={"a@example.org", "b@example.org"},
  missing_timeout=60, keepalive_interval=30})}"#,
    )
    .config;
        let w = &config.workers[0];
        assert_eq!(w.name, "w1");
        assert_eq!(
            w.kind,
            WorkerKind::Remote {
                password: "pw".into()
            }
        );
        assert!(!w.is_local());
        assert_eq!(w.max_builds, Some(2));
        assert_eq!(
            w.properties,
            BTreeMap::from([("os".into(), json!("linux"))])
        );
        assert_eq!(
            w.default_properties,
            BTreeMap::from([("arch".into(), json!("x86"))])
        );
        assert_eq!(w.notify_on_missing, ["a@example.org", "b@example.org"]);
        assert_eq!(w.missing_timeout, 60);
        assert_eq!(w.keepalive_interval, 30);
        assert_eq!(w.location.to_string(), "master.cfg.lua:1");
    }

    #[test]
    fn worker_defaults_and_old_names() {
        let config = load(
            r#"c = BuildmasterConfig; c.protocols = {pb={port=9989}, msgpack_experimental_v7={port=9990}}
c.workers = {worker.Worker{name="w1", password="pw"}}
c.slaves = {buildslave.BuildSlave("s1", "pw", {notify_on_missing="x@example.org"})}"#,
        )
        .config;
        let (w, s) = (&config.workers[0], &config.workers[1]);
        assert_eq!(w.max_builds, None);
        assert!(w.properties.is_empty() && w.notify_on_missing.is_empty());
        assert_eq!((w.missing_timeout, w.keepalive_interval), (3600, 3600));
        assert_eq!(s.name, "s1");
        assert_eq!(s.notify_on_missing, ["x@example.org"]);
    }

    #[test]
    fn local_worker_runs_in_a_workdir_named_after_it() {
        let config = load(
            r#"BuildmasterConfig.protocols = {msgpack_experimental_v7={port=9989}}; BuildmasterConfig.workers = {worker.LocalWorker("l1"),
  worker.LocalWorker("l2", {workdir="elsewhere", max_builds=1})}"#,
        )
        .config;
        assert!(config.workers[0].is_local());
        assert_eq!(
            config.workers[0].kind,
            WorkerKind::Local {
                workdir: "l1".into()
            }
        );
        assert_eq!(
            config.workers[1].kind,
            WorkerKind::Local {
                workdir: "elsewhere".into()
            }
        );
        assert_eq!(config.workers[1].max_builds, Some(1));
    }

    #[test]
    fn worker_errors() {
        check_errors(&[
        (r#"worker.Worker("w")"#, "Worker: missing required option 'password'"),
        (r#"worker.Worker("debug", "p")"#, "Worker: worker name 'debug' is reserved"),
        (
            r#"worker.Worker("1x", "p")"#,
            "Worker: worker name '1x' is not an identifier (letters, digits, '_' and '-', not starting with a digit)",
        ),
        (r#"worker.Worker("", "p")"#, "Worker: the worker name must not be empty"),
        (
            r#"worker.Worker(("x"):rep(51), "p")"#,
            &format!("Worker: worker name '{}' is longer than 50 characters", "x".repeat(51)),
        ),
        (
            r#"buildslave.BuildSlave("b", "p", {max_build=2})"#,
            "BuildSlave: unknown option 'max_build' (did you mean 'max_builds'?)",
        ),
        (
            r#"worker.LocalWorker("l", {password="x"})"#,
            "LocalWorker: unknown option 'password'",
        ),
        (
            r#"worker.Worker("w", "p", {max_builds=-1})"#,
            "Worker: option 'max_builds' must be an integer from 0 to 4294967295, got number -1",
        ),
    ]);
    }

    #[test]
    fn remote_workers_without_the_msgpack_port_say_how_to_switch_to_it() {
        let got = errors(
            r#"c = BuildmasterConfig; c.protocols = {pb={port=9989}}
c.workers = {worker.LocalWorker("l"), worker.Worker("w1", "pw")}"#,
        );
        assert!(
            got.starts_with("master.cfg.lua:2: c['workers']: worker 'w1' is a remote worker")
                && got.contains("--protocol msgpack_experimental_v7"),
            "{got}"
        );
        load(
            r#"BuildmasterConfig.slavePortnum = 9989; BuildmasterConfig.workers = {worker.LocalWorker("l")}"#,
        );
    }

    #[test]
    fn worker_locks_and_machine_are_not_implemented_yet() {
        assert_eq!(
            unimplemented(
                r#"BuildmasterConfig.protocols = {msgpack_experimental_v7={port=9989}}; BuildmasterConfig.workers = {worker.Worker("w", "p", {locks={}, machine_name="m"})}"#
            ),
            [
                "master.cfg.lua:1: Worker: option 'locks' is not implemented yet",
                "master.cfg.lua:1: Worker: option 'machine_name' is not implemented yet",
            ]
        );
    }
}
