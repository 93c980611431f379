//! Evaluating `master.cfg.lua` into a typed, validated [`MasterConfig`].
//!
//! **Architecture invariant:** evaluation is pure. It opens no socket, writes no file and
//! starts no task, because it runs again on every `checkconfig` and every reconfig. Each
//! load gets a fresh Lua state; the state is returned with the config because the config's
//! callbacks live in it.
//!
//! Flow: the prelude builds `BuildmasterConfig` and the namespaces; constructors parse their
//! arguments with [`Kwargs`] into typed configs (reporting problems and letting evaluation go
//! on); then [`global`] reads the top-level keys and [`validate`] makes the cross-checks.

pub mod build;
mod compare;
mod env;
mod errors;
mod global;
pub mod kwargs;
mod port;
pub mod status;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use mlua::{ChunkMode, Lua, LuaOptions, StdLib, Thread, ThreadStatus};

use crate::script::deadline::Deadline;
use crate::script::messages::{describe_error_object, split_place};

pub use compare::{ignoring_places, same_options};
pub use env::{define, Namespaces};
pub use errors::{
    report as report_error, report_unimplemented, suggest, ConfigError, ConfigErrors, Diagnostics,
    Location,
};
pub use global::{MasterConfig, RetryPolicy, DEFAULT_DB_URL, DEFAULT_EVENT_HORIZON, GLOBAL_KEYS};
pub use kwargs::{ClassOptions, FromOption, Kwargs, OneOrMany, OptionError};
pub use port::PortSpec;

/// The name of the config file in a base directory.
pub const CONFIG_FILE: &str = "master.cfg.lua";

/// A config that passed every check, with the VM that holds its callbacks.
pub struct LoadedConfig {
    pub config: MasterConfig,
    pub lua: Lua,
    /// Documented options that are accepted but not implemented yet.
    pub unimplemented: Vec<ConfigError>,
}

/// Every constructor of the Lua surface with its options.
pub fn classes() -> Vec<ClassOptions> {
    let mut all = Vec::new();
    all.extend_from_slice(status::CLASSES);
    all.extend_from_slice(build::CLASSES);
    all.extend_from_slice(crate::script::CLASSES);
    all
}

/// Loads `path`: a base directory (its `master.cfg.lua`) or the config file itself.
pub fn load_path(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
    let file = if path.is_dir() {
        path.join(CONFIG_FILE)
    } else {
        path.to_path_buf()
    };
    // Bytes, not UTF-8 text: Lua takes any bytes in comments and strings (Latin-1 included).
    let source = std::fs::read(&file).map_err(|e| {
        ConfigErrors(vec![ConfigError::global(format!(
            "cannot read {}: {e}",
            file.display()
        ))])
    })?;
    let basedir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let chunk_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    load_with(&chunk_name, &source, &basedir, EvaluationLimits::default())
}

/// A fresh VM with the `buildbot` library loaded and the sandbox in place, ready to evaluate
/// a config (or, in tests, any Lua that uses the library).
pub fn prepared_vm() -> Result<Lua, ConfigError> {
    let internal = |e: mlua::Error| ConfigError::global(format!("internal: {e}"));
    // SAFETY: the debug library is loaded only for the prelude, which keeps
    // `debug.getinfo` for Rust and leaves Lua nothing of it but `debug.traceback`; the
    // prelude also takes away C modules, as `Lua::new` would.
    let lua = unsafe { Lua::unsafe_new_with(StdLib::ALL_SAFE | StdLib::DEBUG, LuaOptions::new()) };
    crate::script::deadline::install_hook(&lua).map_err(internal)?;
    lua.set_app_data(Diagnostics::default());
    let prepared = env::prepare(&lua).map_err(internal)?;
    lua.set_named_registry_value(STORE_KEY, prepared.store)
        .map_err(internal)?;
    lua.set_named_registry_value(LOCATIONS_KEY, prepared.locations)
        .map_err(internal)?;
    lua.set_named_registry_value(GETINFO_KEY, prepared.getinfo)
        .map_err(internal)?;
    Ok(lua)
}

/// Empties what a config's evaluation left in its VM (`BuildmasterConfig`'s values), so a
/// VM kept only for the callbacks still in use holds no config objects of its own.
pub fn release_config(lua: &Lua) -> mlua::Result<()> {
    let store: mlua::Table = lua.named_registry_value(STORE_KEY)?;
    let keys: Vec<mlua::Value> = store
        .pairs::<mlua::Value, mlua::Value>()
        .map(|pair| pair.map(|(k, _)| k))
        .collect::<mlua::Result<_>>()?;
    for key in keys {
        store.raw_set(key, mlua::Value::Nil)?;
    }
    lua.unset_named_registry_value(STORE_KEY)?;
    lua.unset_named_registry_value(LOCATIONS_KEY)?;
    lua.globals()
        .raw_set("BuildmasterConfig", mlua::Value::Nil)?;
    lua.gc_collect()?;
    lua.gc_collect()
}

const STORE_KEY: &str = "moonbot.config";
const LOCATIONS_KEY: &str = "moonbot.config_locations";
/// The debug library's `getinfo`, which Lua code no longer sees: where a failed evaluation
/// stopped.
const GETINFO_KEY: &str = "moonbot.getinfo";

/// Evaluates config source text. `chunk_name` is what errors show as the file
/// (`master.cfg.lua:42: ...`); `basedir` anchors relative paths.
pub fn load_source(
    chunk_name: &str,
    source: &str,
    basedir: &Path,
) -> Result<LoadedConfig, ConfigErrors> {
    load_with(
        chunk_name,
        source.as_bytes(),
        basedir,
        EvaluationLimits::default(),
    )
}

/// How long evaluating a config may take and how much memory its VM may hold meanwhile: a
/// config with an endless loop must not hang `checkconfig` or a reconfig.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvaluationLimits {
    pub timeout: Duration,
    pub memory_limit: usize,
}

impl Default for EvaluationLimits {
    fn default() -> Self {
        EvaluationLimits {
            timeout: Duration::from_secs(10),
            memory_limit: 512 * 1024 * 1024,
        }
    }
}

/// Evaluates config source (any bytes Lua takes) under `limits`.
pub fn load_with(
    chunk_name: &str,
    source: &[u8],
    basedir: &Path,
    limits: EvaluationLimits,
) -> Result<LoadedConfig, ConfigErrors> {
    let lua = prepared_vm().map_err(|e| ConfigErrors(vec![e]))?;
    let mut errors = Vec::new();
    let config = match evaluate(&lua, chunk_name, source, basedir, limits) {
        Ok(config) => Some(config),
        Err(error) => {
            errors.push(error);
            None
        }
    };
    let diagnostics = lua.remove_app_data::<Diagnostics>().unwrap_or_default();
    errors.extend(diagnostics.errors);
    match config {
        Some(config) if errors.is_empty() => Ok(LoadedConfig {
            config,
            lua,
            unimplemented: ConfigErrors::sorted(diagnostics.unimplemented).0,
        }),
        _ => Err(ConfigErrors::sorted(errors)),
    }
}

/// Runs the chunk and reads the result, all under `limits`. A Lua error ends evaluation and
/// is returned, and so does a deadline that passed, whatever the Lua did after it (a `pcall`
/// that caught the timeout changes nothing). Problems found by constructors and checks go to
/// the VM's [`Diagnostics`].
fn evaluate(
    lua: &Lua,
    chunk_name: &str,
    source: &[u8],
    basedir: &Path,
    limits: EvaluationLimits,
) -> Result<MasterConfig, ConfigError> {
    let internal = |e: mlua::Error| ConfigError::global(format!("internal: {e}"));
    let previous_limit = lua
        .set_memory_limit(limits.memory_limit)
        .map_err(internal)?;
    let deadline = Deadline::start(limits.timeout);
    let text = String::from_utf8_lossy(source);
    lua.set_app_data(crate::script::ConfigSource::new(chunk_name, &text));
    let result = run_chunk(lua, chunk_name, source, limits).and_then(|()| {
        let store = lua.named_registry_value(STORE_KEY).map_err(internal)?;
        let locations = lua.named_registry_value(LOCATIONS_KEY).map_err(internal)?;
        let config = global::read(lua, &store, &locations, chunk_name, PathBuf::from(basedir));
        validate::check(lua, &config);
        Ok(config)
    });
    lua.remove_app_data::<crate::script::ConfigSource>();
    let stopped = deadline.stopped_at();
    drop(deadline);
    lua.set_memory_limit(previous_limit).map_err(internal)?;
    match stopped {
        Some(stopped) => Err(place_and_message(&format!(
            "{}: evaluating the config took longer than {} (an endless loop?)",
            stopped.place,
            seconds(limits.timeout)
        ))),
        None => result,
    }
}

fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

/// Runs the config's chunk in a coroutine, where the deadline can suspend it and where, when
/// it fails, its stack stays for [`failure`] to find the failing line.
fn run_chunk(
    lua: &Lua,
    chunk_name: &str,
    source: &[u8],
    limits: EvaluationLimits,
) -> Result<(), ConfigError> {
    let chunk = lua
        .load(source)
        .set_name(format!("@{chunk_name}"))
        .set_mode(ChunkMode::Text)
        .into_function()
        .map_err(|error| load_error(lua, chunk_name, source, error))?;
    let thread = lua
        .create_thread(chunk)
        .map_err(|e| failure(lua, None, e, limits))?;
    let ran = thread.resume::<()>(());
    match ran {
        Err(error) => Err(failure(lua, Some(&thread), error, limits)),
        // A yield: the deadline's (the caller reports it) or the config's own.
        Ok(()) if thread.status() == ThreadStatus::Resumable => Err(at_failing_line(
            lua,
            &thread,
            "coroutine.yield outside a coroutine".into(),
        )),
        Ok(()) => Ok(()),
    }
}

/// A chunk that does not load: Lua names the line of a syntax error, but not where the
/// parser ran out of C stack (`C stack overflow` on deeply nested tables or calls); that
/// line is the shortest prefix of the source that fails the same way.
fn load_error(lua: &Lua, chunk_name: &str, source: &[u8], error: mlua::Error) -> ConfigError {
    let message = error_message(&error);
    if split_place(&message).is_some() {
        return place_and_message(&message);
    }
    let fails_alike = |lines: usize| {
        let prefix: Vec<u8> = source
            .split_inclusive(|&b| b == b'\n')
            .take(lines)
            .flatten()
            .copied()
            .collect();
        let loaded = lua
            .load(prefix)
            .set_name(format!("@{chunk_name}"))
            .set_mode(ChunkMode::Text)
            .into_function();
        matches!(loaded, Err(e) if error_message(&e) == message)
    };
    let (mut good, mut bad) = (0, source.split_inclusive(|&b| b == b'\n').count());
    if !fails_alike(bad) {
        return ConfigError::global(format!("{chunk_name}: {message}"));
    }
    while bad - good > 1 {
        let middle = (good + bad) / 2;
        if fails_alike(middle) {
            bad = middle;
        } else {
            good = middle;
        }
    }
    let message = match message.as_str() {
        "C stack overflow" => "C stack overflow (tables, calls or blocks nested too deeply)".into(),
        _ => message,
    };
    ConfigError::at(
        Location {
            file: chunk_name.to_string(),
            line: u32::try_from(bad).unwrap_or(u32::MAX),
        },
        message,
    )
}

/// The error that ended the config's chunk, at its place: Lua's own `file:line` when the
/// message has one, else the line the chunk's coroutine stopped at.
fn failure(
    lua: &Lua,
    thread: Option<&Thread>,
    error: mlua::Error,
    limits: EvaluationLimits,
) -> ConfigError {
    let message = match &error {
        _ if is_memory_error(&error) => format!(
            "out of memory (evaluating a config may use {} MiB)",
            limits.memory_limit / (1024 * 1024)
        ),
        _ => describe_error_object(error_message(&error)),
    };
    if split_place(&message).is_some() {
        return place_and_message(&message);
    }
    match thread {
        Some(thread) => at_failing_line(lua, thread, message),
        None => ConfigError::global(message),
    }
}

/// `message` at the line where `thread` stopped: the innermost function of the config on its
/// stack (not the prelude's).
fn at_failing_line(lua: &Lua, thread: &Thread, message: String) -> ConfigError {
    // The failure may be the memory limit, and reading the stack allocates.
    let limit = lua.set_memory_limit(0);
    let place = failing_place(lua, thread);
    if let Ok(limit) = limit {
        let _ = lua.set_memory_limit(limit);
    }
    match place {
        Some(location) => ConfigError::at(location, message),
        None => ConfigError::global(message),
    }
}

fn failing_place(lua: &Lua, thread: &Thread) -> Option<Location> {
    let getinfo: mlua::Function = lua.named_registry_value(GETINFO_KEY).ok()?;
    for level in 0.. {
        let info: mlua::Table = getinfo.call((thread, level, "Sl")).ok()?;
        let what: String = info.get("what").ok()?;
        let line: i64 = info.get("currentline").ok()?;
        let file: String = info.get("short_src").ok()?;
        if what != "C" && line > 0 && file != env::PRELUDE_NAME {
            return Some(Location {
                file,
                line: u32::try_from(line).ok()?,
            });
        }
    }
    None
}

fn is_memory_error(error: &mlua::Error) -> bool {
    match error {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        _ => false,
    }
}

/// Lua's message without the traceback, on one line (`require`'s lists the files it tried).
fn error_message(error: &mlua::Error) -> String {
    let message = match error {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(message) => message.clone(),
        mlua::Error::CallbackError { cause, .. } => return error_message(cause),
        other => other.to_string(),
    };
    let message = match message.split_once("\nstack traceback:") {
        Some((message, _)) => message,
        None => &message,
    };
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `file:line: message` into its place and message; a message without a place stays whole.
fn place_and_message(text: &str) -> ConfigError {
    match split_place(text) {
        Some((file, line, rest)) => ConfigError::at(
            Location {
                file: file.to_string(),
                line,
            },
            rest,
        ),
        None => ConfigError::global(text),
    }
}
