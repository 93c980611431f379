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

use std::time::{Duration, Instant};

use mlua::{HookTriggers, Lua, VmState};

pub use compare::{ignoring_places, same_options};
pub use env::{define, Namespaces};
pub use errors::{
    report as report_error, report_unimplemented, suggest, ConfigError, ConfigErrors, Diagnostics,
    Location,
};
pub use global::{MasterConfig, RetryPolicy, GLOBAL_KEYS};
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
    let source = std::fs::read_to_string(&file).map_err(|e| {
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
    load_source(&chunk_name, &source, &basedir)
}

/// A fresh VM with the `buildbot` library loaded, ready to evaluate a config (or, in tests,
/// any Lua that uses the library).
pub fn prepared_vm() -> Result<Lua, ConfigError> {
    let lua = Lua::new();
    lua.set_app_data(Diagnostics::default());
    let (store, locations) =
        env::prepare(&lua).map_err(|e| ConfigError::global(format!("internal: {e}")))?;
    lua.set_named_registry_value(STORE_KEY, store)
        .map_err(|e| ConfigError::global(format!("internal: {e}")))?;
    lua.set_named_registry_value(LOCATIONS_KEY, locations)
        .map_err(|e| ConfigError::global(format!("internal: {e}")))?;
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

/// Evaluates config source text. `chunk_name` is what errors show as the file
/// (`master.cfg.lua:42: ...`); `basedir` anchors relative paths.
pub fn load_source(
    chunk_name: &str,
    source: &str,
    basedir: &Path,
) -> Result<LoadedConfig, ConfigErrors> {
    let lua = prepared_vm().map_err(|e| ConfigErrors(vec![e]))?;
    let mut errors = Vec::new();
    let config = match evaluate(&lua, chunk_name, source, basedir) {
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

/// How long evaluating a config may take: a config with an endless loop must not hang
/// `checkconfig` or a reconfig.
const EVALUATION_TIMEOUT: Duration = Duration::from_secs(10);
/// How much memory evaluating a config may take.
const EVALUATION_MEMORY_LIMIT: usize = 512 * 1024 * 1024;

/// Runs the chunk and reads the result. A Lua error ends evaluation and is returned; problems
/// found by constructors and checks go to the VM's [`Diagnostics`].
fn evaluate(
    lua: &Lua,
    chunk_name: &str,
    source: &str,
    basedir: &Path,
) -> Result<MasterConfig, ConfigError> {
    let internal = |e: mlua::Error| ConfigError::global(format!("internal: {e}"));
    let deadline = Instant::now() + EVALUATION_TIMEOUT;
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(10_000),
        move |_, debug| {
            if Instant::now() < deadline {
                return Ok(VmState::Continue);
            }
            let file = debug
                .source()
                .short_src
                .map(|s| s.into_owned())
                .unwrap_or_default();
            Err(mlua::Error::runtime(format!(
                "{file}:{}: evaluating the config took longer than {} s (an endless loop?)",
                debug.curr_line(),
                EVALUATION_TIMEOUT.as_secs()
            )))
        },
    );
    let previous_limit = lua
        .set_memory_limit(EVALUATION_MEMORY_LIMIT)
        .map_err(internal)?;
    lua.set_app_data(crate::script::ConfigSource::new(chunk_name, source));
    let result = lua.load(source).set_name(format!("@{chunk_name}")).exec();
    lua.remove_hook();
    lua.set_memory_limit(previous_limit).map_err(internal)?;
    result.map_err(lua_error)?;
    let store = lua.named_registry_value(STORE_KEY).map_err(internal)?;
    let locations = lua.named_registry_value(LOCATIONS_KEY).map_err(internal)?;
    let config = global::read(lua, &store, &locations, chunk_name, PathBuf::from(basedir));
    lua.remove_app_data::<crate::script::ConfigSource>();
    validate::check(lua, &config);
    Ok(config)
}

/// A Lua error as a config error, keeping Lua's own `file:line` as the place.
fn lua_error(error: mlua::Error) -> ConfigError {
    let message = match &error {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(message) => message.clone(),
        mlua::Error::CallbackError { cause, .. } => return lua_error((**cause).clone()),
        mlua::Error::MemoryError(message) => format!("out of memory: {message}"),
        other => other.to_string(),
    };
    let first_line = message.lines().next().unwrap_or_default();
    split_location(first_line)
}

/// `file:line: message` into its place and message.
fn split_location(text: &str) -> ConfigError {
    let mut parts = text.splitn(3, ':');
    if let (Some(file), Some(line), Some(rest)) = (parts.next(), parts.next(), parts.next()) {
        if let Ok(line) = line.parse::<u32>() {
            return ConfigError::at(
                Location {
                    file: file.to_string(),
                    line,
                },
                rest.trim_start(),
            );
        }
    }
    ConfigError::global(text)
}
