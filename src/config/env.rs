//! The fresh Lua state a config is evaluated in: the prelude, then each part's constructors.

use mlua::{Lua, Table};

use super::errors::suggest;

const PRELUDE: &str = include_str!("../../lua/prelude.lua");

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

/// Runs the prelude and registers every constructor; returns the table behind
/// `BuildmasterConfig` and the table of where each of its keys was assigned.
pub fn prepare(lua: &Lua) -> mlua::Result<(Table, Table)> {
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
    let (store, locations): (Table, Table) = lua
        .load(PRELUDE)
        .set_name("=buildbot/prelude.lua")
        .call((suggest_fn, caller_location))?;
    let ns = Namespaces::of(lua)?;
    crate::script::register(lua, &ns)?;
    super::status::register(lua, &ns)?;
    super::build::register(lua, &ns)?;
    Ok((store, locations))
}
