//! The top-level keys of `BuildmasterConfig`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use mlua::{Lua, Table, Value};

use super::build::{
    BuilderConfig, ChangeSourceConfig, CollapseRequests, SchedulerConfig, ValueOrFunction,
    WorkerConfig,
};
use super::errors::{report, report_unimplemented, unknown, ConfigError, Location};
use super::kwargs::{FromOption, OptionError};
use super::status::StatusTarget;
use super::PortSpec;
use crate::model::Properties;
use crate::script::HostLimits;

/// Every key `BuildmasterConfig` accepts.
pub const GLOBAL_KEYS: &[&str] = &[
    "title",
    "titleURL",
    "buildbotURL",
    "workers",
    "slaves",
    "builders",
    "schedulers",
    "change_source",
    "status",
    "services",
    "db",
    "db_url",
    "properties",
    "protocols",
    "slavePortnum",
    "www",
    "lua",
    "outbox",
    "collapseRequests",
    "mergeRequests",
    "eventHorizon",
    // Accepted so a translated master.cfg loads, but not implemented yet.
    "changeHorizon",
    "buildHorizon",
    "logHorizon",
    "buildCacheSize",
    "changeCacheSize",
    "caches",
    "logCompressionLimit",
    "logCompressionMethod",
    "logMaxSize",
    "logMaxTailSize",
    "logEncoding",
    "prioritizeBuilders",
    "codebaseGenerator",
    "revlink",
    "user_managers",
    "manhole",
    "metrics",
    "multiMaster",
    "debugPassword",
    "validation",
    "buildbotNetUsageData",
];

/// The keys of [`GLOBAL_KEYS`] that are accepted but not implemented yet.
const UNIMPLEMENTED_KEYS: &[&str] = &[
    "changeHorizon",
    "buildHorizon",
    "logHorizon",
    "buildCacheSize",
    "changeCacheSize",
    "caches",
    "logCompressionLimit",
    "logCompressionMethod",
    "logMaxSize",
    "logMaxTailSize",
    "logEncoding",
    "prioritizeBuilders",
    "codebaseGenerator",
    "revlink",
    "user_managers",
    "manhole",
    "metrics",
    "multiMaster",
    "debugPassword",
    "validation",
    "buildbotNetUsageData",
];

/// The database of a config that names none: `state.sqlite` in the base directory.
pub const DEFAULT_DB_URL: &str = "sqlite:///state.sqlite";

const DB_KEYS: &[&str] = &["db_url", "db_poll_interval"];
const LUA_KEYS: &[&str] = &["timeout", "memoryLimit"];
/// `pb` is accepted (it changes nothing while only LocalWorkers exist); remote workers
/// connect over `msgpack_experimental_v7`.
const PROTOCOLS: &[&str] = &["pb", MSGPACK];
const MSGPACK: &str = "msgpack_experimental_v7";

/// A validated master configuration.
#[derive(Clone, Debug)]
pub struct MasterConfig {
    /// The directory holding `master.cfg.lua`; relative paths in the config start here.
    pub basedir: PathBuf,
    pub title: String,
    pub title_url: String,
    /// Always ends with `/`.
    pub buildbot_url: String,
    pub db_url: String,
    /// `c['properties']`, whose source is the config file as in Buildbot.
    pub properties: Properties,
    /// Where workers connect: `c['protocols'] = {pb={port=...}}` or `c['slavePortnum']`.
    pub worker_port: Option<PortSpec>,
    /// Where remote workers connect over msgpack-over-WebSocket:
    /// `c['protocols'] = {msgpack_experimental_v7={port=...}}`.
    pub msgpack_port: Option<PortSpec>,
    pub workers: Vec<WorkerConfig>,
    pub builders: Vec<BuilderConfig>,
    /// `c['collapseRequests']` (or 0.8's `c['mergeRequests']`): the rule of builders that
    /// set none; `None` is Buildbot's default, collapse.
    pub collapse_requests: Option<CollapseRequests>,
    pub schedulers: Vec<SchedulerConfig>,
    pub change_sources: Vec<ChangeSourceConfig>,
    /// `c['lua'] = {timeout=SECONDS, memoryLimit=BYTES}`: what one Lua callback may take.
    pub script_limits: HostLimits,
    /// `c['outbox'] = {retryDelay=SECONDS, maxRetryDelay=SECONDS, giveUpAfter=SECONDS}`: how
    /// status targets retry delivery.
    pub outbox: RetryPolicy,
    /// `c['eventHorizon']`: the events (a worker's connects and disconnects, a master's
    /// starts and reconfigs) kept of each worker and each master; older ones are deleted as
    /// new ones are written.
    pub event_horizon: usize,
    /// `c['status']` and `c['services']`, with `c['www']` as a WebStatus among them.
    pub status: Vec<StatusTarget>,
    /// Lists that held an object whose own errors were reported: cross-checks against such a
    /// list would only repeat them.
    pub(super) incomplete: Vec<&'static str>,
}

/// Where each top-level key was assigned, to point errors at it.
struct KeyReader<'a> {
    lua: &'a Lua,
    store: &'a Table,
    locations: &'a Table,
    chunk_name: &'a str,
}

impl KeyReader<'_> {
    fn location(&self, key: &str) -> Location {
        let place: Option<String> = self.locations.get(key).ok().flatten();
        place
            .and_then(|p| {
                let (file, line) = p.rsplit_once(':')?;
                Some(Location {
                    file: file.to_string(),
                    line: line.parse().ok()?,
                })
            })
            .unwrap_or_else(|| Location {
                file: self.chunk_name.to_string(),
                line: 0,
            })
    }

    fn raw(&self, key: &str) -> Option<Value> {
        self.store
            .raw_get::<Value>(key)
            .ok()
            .filter(|v| !v.is_nil())
    }

    fn error(&self, key: &str, message: impl Into<String>) {
        report(
            self.lua,
            ConfigError::at(self.location(key), message.into()),
        );
    }

    fn get<T: FromOption>(&self, key: &str) -> Option<T> {
        let value = self.raw(key)?;
        match T::from_option(value, self.lua) {
            Ok(v) => Some(v),
            Err(OptionError::Wrong(why)) => {
                self.error(key, format!("c['{key}'] {why}"));
                None
            }
            Err(OptionError::Reported) => None,
        }
    }

    /// A list-valued key, item by item, so that one bad item does not hide the rest. A key
    /// holding an object already reported invalid is added to `incomplete`.
    fn list<T: FromOption>(
        &self,
        key: &'static str,
        allow_single: bool,
        incomplete: &mut Vec<&'static str>,
    ) -> Vec<T> {
        let Some(value) = self.raw(key) else {
            return Vec::new();
        };
        let is_list = matches!(&value, Value::Table(t) if t.metatable().is_some() || t.raw_len() > 0 || t.clone().pairs::<Value, Value>().next().is_none());
        let items: Vec<Value> = match value {
            Value::Table(table) if is_list => table
                .sequence_values::<Value>()
                .filter_map(Result::ok)
                .collect(),
            single if allow_single => vec![single],
            other => {
                self.error(
                    key,
                    format!(
                        "c['{key}'] must be a list of {}, got {}",
                        T::expected(),
                        super::kwargs::describe(&other)
                    ),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            match T::from_option(item, self.lua) {
                Ok(v) => out.push(v),
                Err(OptionError::Wrong(why)) => {
                    self.error(key, format!("c['{key}'] item {} {why}", index + 1))
                }
                Err(OptionError::Reported) => {
                    if !incomplete.contains(&key) {
                        incomplete.push(key);
                    }
                }
            }
        }
        out
    }
}

pub(super) fn read(
    lua: &Lua,
    store: &Table,
    locations: &Table,
    chunk_name: &str,
    basedir: PathBuf,
) -> MasterConfig {
    // A config that rebinds the global (`BuildmasterConfig = {...}`) is read from there.
    let rebound = match lua.globals().get::<Value>("BuildmasterConfig") {
        Ok(Value::Table(t)) if t.metatable().is_none() => Some(t),
        _ => None,
    };
    let store = rebound.as_ref().unwrap_or(store);
    let keys = KeyReader {
        lua,
        store,
        locations,
        chunk_name,
    };

    for pair in store.clone().pairs::<Value, Value>() {
        let Ok((key, _)) = pair else { continue };
        let key = match key {
            Value::String(s) => s.to_string_lossy(),
            other => {
                report(
                    lua,
                    ConfigError::global(format!(
                        "BuildmasterConfig keys must be strings, got {}",
                        super::kwargs::describe(&other)
                    )),
                );
                continue;
            }
        };
        if !GLOBAL_KEYS.contains(&key.as_str()) {
            keys.error(&key, unknown("BuildmasterConfig key", &key, GLOBAL_KEYS));
        } else if UNIMPLEMENTED_KEYS.contains(&key.as_str()) {
            report_unimplemented(
                lua,
                ConfigError::at(
                    keys.location(&key),
                    format!("c['{key}'] is not implemented yet"),
                ),
            );
        }
    }

    let mut incomplete = Vec::new();
    let mut workers: Vec<WorkerConfig> = keys.list("workers", false, &mut incomplete);
    workers.extend(keys.list("slaves", false, &mut incomplete));
    let ports = read_worker_ports(&keys);
    check_remote_workers_have_a_port(&keys, &workers, &ports);
    let builders = keys.list("builders", false, &mut incomplete);
    let schedulers = keys.list("schedulers", false, &mut incomplete);
    let change_sources = keys.list("change_source", true, &mut incomplete);
    let mut status: Vec<StatusTarget> = keys.list("status", false, &mut incomplete);
    status.extend(keys.list("services", false, &mut incomplete));
    if let Some(value) = keys.raw("www") {
        if let Some(target) = super::status::read_www(lua, value, keys.location("www")) {
            status.push(target);
        }
    }
    super::status::assign_default_names(&mut status);

    let buildbot_url = keys
        .get::<String>("buildbotURL")
        .unwrap_or_else(|| "http://localhost:8080/".into());
    if !buildbot_url.ends_with('/') {
        keys.error(
            "buildbotURL",
            format!("c['buildbotURL'] must end with '/' (got '{buildbot_url}')"),
        );
    }

    MasterConfig {
        basedir,
        title: keys.get("title").unwrap_or_else(|| "Buildbot".into()),
        title_url: keys
            .get("titleURL")
            .unwrap_or_else(|| "http://buildbot.net/".into()),
        buildbot_url,
        db_url: read_db_url(&keys),
        properties: keys
            .get::<BTreeMap<String, serde_json::Value>>("properties")
            .map(|props| Properties::from_pairs(props, chunk_name))
            .unwrap_or_default(),
        worker_port: ports.pb,
        msgpack_port: ports.msgpack,
        script_limits: read_script_limits(&keys),
        outbox: read_outbox_policy(&keys),
        event_horizon: read_event_horizon(&keys),
        workers,
        builders,
        collapse_requests: read_collapse_requests(&keys),
        schedulers,
        change_sources,
        status,
        incomplete,
    }
}

fn read_db_url(keys: &KeyReader) -> String {
    let from_db = keys
        .get::<BTreeMap<String, serde_json::Value>>("db")
        .and_then(|db| {
            for key in db.keys().filter(|k| !DB_KEYS.contains(&k.as_str())) {
                keys.error("db", format!("c['db']: {}", unknown("key", key, DB_KEYS)));
            }
            if db.contains_key("db_poll_interval") {
                report_unimplemented(
                    keys.lua,
                    ConfigError::at(
                        keys.location("db"),
                        "c['db']['db_poll_interval'] is not implemented yet",
                    ),
                );
            }
            match db.get("db_url") {
                Some(serde_json::Value::String(url)) => Some(url.clone()),
                Some(other) => {
                    keys.error(
                        "db",
                        format!("c['db']['db_url'] must be a string, got {other}"),
                    );
                    None
                }
                None => None,
            }
        });
    let from_key = keys.get::<String>("db_url");
    if from_db.is_some() && from_key.is_some() {
        keys.error(
            "db_url",
            "give the database URL once: c['db'] = {db_url=...} or c['db_url'], not both",
        );
    }
    let url = from_db
        .or(from_key)
        .unwrap_or_else(|| DEFAULT_DB_URL.into());
    let supported = [
        "sqlite://",
        "postgresql://",
        "postgres://",
        "postgresql+psycopg2://",
    ];
    if !supported.iter().any(|scheme| url.starts_with(scheme)) {
        let key = if keys.raw("db").is_some() {
            "db"
        } else {
            "db_url"
        };
        keys.error(
            key,
            format!(
                "database URL '{url}' is not supported (use sqlite:///FILE or postgresql://...)"
            ),
        );
    }
    url
}

fn read_collapse_requests(keys: &KeyReader) -> Option<CollapseRequests> {
    let merge = keys.raw("mergeRequests").is_some();
    if merge && keys.raw("collapseRequests").is_some() {
        keys.error(
            "mergeRequests",
            "give the rule once: c['collapseRequests'] or 0.8's c['mergeRequests'], not both",
        );
        return None;
    }
    let key = if merge {
        "mergeRequests"
    } else {
        "collapseRequests"
    };
    Some(match keys.get::<ValueOrFunction<bool>>(key)? {
        ValueOrFunction::Value(collapse) => CollapseRequests::Value(collapse),
        ValueOrFunction::Function(f) if merge => CollapseRequests::MergeFunction(f),
        ValueOrFunction::Function(f) => CollapseRequests::Function(f),
    })
}

fn read_script_limits(keys: &KeyReader) -> HostLimits {
    let mut limits = HostLimits::default();
    let Some(table) = keys.get::<BTreeMap<String, f64>>("lua") else {
        return limits;
    };
    for (key, value) in table {
        match key.as_str() {
            "timeout" if value > 0.0 && value <= 3600.0 => limits.call_timeout = std::time::Duration::from_secs_f64(value),
            "timeout" => keys.error("lua", format!("c['lua']['timeout'] must be from 0 to 3600 seconds, got {value}")),
            "memoryLimit" if value >= 1_048_576.0 && value.fract() == 0.0 => limits.memory_limit = value as usize,
            "memoryLimit" => keys.error("lua", format!("c['lua']['memoryLimit'] must be a whole number of bytes, at least 1048576, got {value}")),
            other => keys.error("lua", format!("c['lua']: {}", unknown("key", other, LUA_KEYS))),
        }
    }
    limits
}

/// How delivery retries (`c['outbox']`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// The wait after the first failure; it doubles after each further one.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// A message still failing this long after it was written is marked dead.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `failures + 1`: exponential, capped, with jitter over its
    /// upper half so that messages failed together do not retry together.
    pub fn delay(&self, failures: u32) -> Duration {
        let exponential = self.first_delay.saturating_mul(
            1u32.checked_shl(failures.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let capped = exponential.min(self.max_delay);
        capped.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

const OUTBOX_KEYS: &[&str] = &["retryDelay", "maxRetryDelay", "giveUpAfter"];

fn read_outbox_policy(keys: &KeyReader) -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    let Some(table) = keys.get::<BTreeMap<String, f64>>("outbox") else {
        return policy;
    };
    for (key, value) in table {
        let slot = match key.as_str() {
            "retryDelay" => &mut policy.first_delay,
            "maxRetryDelay" => &mut policy.max_delay,
            "giveUpAfter" => &mut policy.give_up_after,
            other => {
                keys.error(
                    "outbox",
                    format!("c['outbox']: {}", unknown("key", other, OUTBOX_KEYS)),
                );
                continue;
            }
        };
        match Duration::try_from_secs_f64(value) {
            Ok(duration) if value > 0.0 => *slot = duration,
            _ => keys.error(
                "outbox",
                format!("c['outbox']['{key}'] must be a positive number of seconds, got {value}"),
            ),
        }
    }
    if policy.max_delay < policy.first_delay {
        keys.error(
            "outbox",
            "c['outbox']['maxRetryDelay'] must be at least 'retryDelay'",
        );
    }
    policy
}

/// Buildbot 0.8's default `c['eventHorizon']`.
pub const DEFAULT_EVENT_HORIZON: usize = 50;

/// `c['eventHorizon']`: a whole number of events, at least 1 (0.8 sliced its list with it, so
/// 0 kept everything and a negative number dropped the newest: neither is meant).
fn read_event_horizon(keys: &KeyReader) -> usize {
    match keys.get::<f64>("eventHorizon") {
        None => DEFAULT_EVENT_HORIZON,
        Some(value) if value >= 1.0 && value.fract() == 0.0 && value <= u32::MAX as f64 => {
            value as usize
        }
        Some(value) => {
            keys.error(
                "eventHorizon",
                format!(
                    "c['eventHorizon'] must be a whole number of events, at least 1, got {value}"
                ),
            );
            DEFAULT_EVENT_HORIZON
        }
    }
}

/// The worker ports of `c['protocols']` and `c['slavePortnum']`.
struct WorkerPorts {
    pb: Option<PortSpec>,
    msgpack: Option<PortSpec>,
}

fn read_worker_ports(keys: &KeyReader) -> WorkerPorts {
    let mut msgpack = None;
    let from_protocols = keys
        .get::<BTreeMap<String, BTreeMap<String, serde_json::Value>>>("protocols")
        .and_then(|protocols| {
            let mut port = None;
            for (name, options) in protocols {
                if !PROTOCOLS.contains(&name.as_str()) {
                    keys.error(
                        "protocols",
                        format!("c['protocols']: {}", unknown("protocol", &name, PROTOCOLS)),
                    );
                    continue;
                }
                for (key, value) in options {
                    if key != "port" {
                        keys.error(
                            "protocols",
                            format!("c['protocols']['{name}']: unknown option '{key}'"),
                        );
                        continue;
                    }
                    let spec = match &value {
                        serde_json::Value::Number(n) => n
                            .as_u64()
                            .and_then(|n| u16::try_from(n).ok())
                            .map(|port| PortSpec {
                                port,
                                interface: None,
                            })
                            .ok_or_else(|| format!("{n} is not a port number")),
                        serde_json::Value::String(s) => PortSpec::parse(s),
                        other => Err(format!("must be a port, got {other}")),
                    };
                    match spec {
                        Ok(spec) if name == MSGPACK => msgpack = Some(spec),
                        Ok(spec) => port = Some(spec),
                        Err(why) => keys.error(
                            "protocols",
                            format!("c['protocols']['{name}']['port'] {why}"),
                        ),
                    }
                }
            }
            port
        });
    let from_key = keys.get::<PortSpec>("slavePortnum");
    if from_protocols.is_some() && from_key.is_some() {
        keys.error("slavePortnum", "give the worker port once: c['protocols'] = {pb={port=...}} or c['slavePortnum'], not both");
    }
    WorkerPorts {
        pb: from_protocols.or(from_key),
        msgpack,
    }
}

/// Remote workers need the msgpack port: PB, the protocol a worker speaks by default, is
/// not implemented.
fn check_remote_workers_have_a_port(
    keys: &KeyReader,
    workers: &[WorkerConfig],
    ports: &WorkerPorts,
) {
    if ports.msgpack.is_some() {
        return;
    }
    if let Some(worker) = workers.iter().find(|w| !w.is_local()) {
        keys.error(
            "workers",
            format!(
                "c['workers']: worker '{}' is a remote worker, which connects over c['protocols'] = {{{MSGPACK} = {{port = 9989}}}} \
                 (PB is not implemented); create the worker with `buildbot-worker create-worker --protocol {MSGPACK} ...` \
                 or set protocol = '{MSGPACK}' in its buildbot.tac",
                worker.name
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_up_to_the_cap() {
        let policy = RetryPolicy::default();
        for (failures, full) in [
            (1, 1.0),
            (2, 2.0),
            (3, 4.0),
            (9, 256.0),
            (10, 300.0),
            (60, 300.0),
        ] {
            let delay = policy.delay(failures).as_secs_f64();
            assert!(delay >= full / 2.0 && delay <= full, "{failures}: {delay}");
        }
    }
}
