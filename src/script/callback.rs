use std::fmt;
use std::sync::Arc;

use mlua::{Function, Lua, RegistryKey};

use crate::config::Location;

/// A Lua function of the config's VM, held by Rust. The function lives in the VM's registry
/// as long as a handle does; only the script host thread, which owns that VM, calls it.
#[derive(Clone)]
pub struct Callback {
    key: Arc<RegistryKey>,
    location: Location,
}

impl Callback {
    pub fn new(lua: &Lua, function: &Function) -> mlua::Result<Callback> {
        Ok(Callback {
            key: Arc::new(lua.create_registry_value(function.clone())?),
            location: Location::of_function(function),
        })
    }

    /// Where the function was defined, for messages about it.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The function itself, in the VM that evaluated the config.
    pub fn function(&self, lua: &Lua) -> mlua::Result<Function> {
        lua.registry_value(&self.key)
    }
}

impl fmt::Debug for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<function {}>", self.location)
    }
}
