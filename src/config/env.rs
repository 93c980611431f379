//! The fresh Lua state a config is evaluated in: the prelude, then each part's constructors.

use std::os::unix::ffi::OsStrExt;

use mlua::{ChunkMode, Function, Lua, Table};

use super::errors::suggest;

/// `lua/prelude.lua` as bytecode (build.rs), which names itself `PRELUDE_NAME` in errors.
const PRELUDE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/prelude.luac"));
/// The prelude's file name in errors and tracebacks.
pub const PRELUDE_NAME: &str = "buildbot/prelude.lua";

/// The namespace tables constructors are registered in (`buildbot.status`, ...).
pub struct Namespaces {
    pub status: Table,
    pub util: Table,
    pub steps: Table,
    pub schedulers: Table,
    pub changes: Table,
    pub worker: Table,
    pub buildslave: Table,
}

impl Namespaces {
    fn of(lua: &Lua) -> mlua::Result<Namespaces> {
        let buildbot: Table = lua.globals().get("buildbot")?;
        Ok(Namespaces {
            status: buildbot.get("status")?,
            util: buildbot.get("util")?,
            steps: buildbot.get("steps")?,
            schedulers: buildbot.get("schedulers")?,
            changes: buildbot.get("changes")?,
            worker: buildbot.get("worker")?,
            buildslave: buildbot.get("buildslave")?,
        })
    }
}

/// Registers a constructor without tripping the namespace's unknown-name guard.
pub fn define(namespace: &Table, name: &str, value: impl mlua::IntoLua) -> mlua::Result<()> {
    namespace.raw_set(name, value)
}

/// What the prelude hands back to Rust.
pub struct Prepared {
    /// The table behind `BuildmasterConfig`.
    pub store: Table,
    /// Where each key of `BuildmasterConfig` was assigned.
    pub locations: Table,
    /// The debug library's `getinfo`, which the sandbox takes away from Lua.
    pub getinfo: Function,
}

/// Runs the prelude (which also puts the sandbox in place) and registers every constructor.
pub fn prepare(lua: &Lua) -> mlua::Result<Prepared> {
    let suggest_fn = lua.create_function(|_, (wrong, known): (String, Vec<String>)| {
        Ok(suggest(&wrong, known.iter().map(String::as_str)).map(str::to_string))
    })?;
    let caller_location = lua.create_function(|lua, level: usize| {
        Ok(lua.inspect_stack(level).map(|debug| {
            let file = debug
                .source()
                .short_src
                .map(|s| s.into_owned())
                .unwrap_or_default();
            format!("{file}:{}", debug.curr_line())
        }))
    })?;
    // Reading a pipe or a device could block the master whatever the time limit says.
    let regular_file = lua.create_function(|_, path: mlua::String| {
        let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&path.as_bytes()));
        Ok(match std::fs::metadata(&path) {
            Ok(metadata) => Some(metadata.is_file()),
            Err(_) => None,
        })
    })?;
    let (store, locations, getinfo): (Table, Table, Function) = lua
        .load(PRELUDE)
        .set_mode(ChunkMode::Binary)
        .call((suggest_fn, caller_location, regular_file))?;
    let ns = Namespaces::of(lua)?;
    crate::script::register(lua, &ns)?;
    super::status::register(lua, &ns)?;
    super::build::register(lua, &ns)?;
    Ok(Prepared {
        store,
        locations,
        getinfo,
    })
}
