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
    /// Counts the handles on the VM's functions, so the script host keeps a replaced VM
    /// alive while anything (a running build, say) may still call into it.
    _vm: VmToken,
}

/// One per VM, cloned into each of its callbacks (see [`VmToken::holders`]).
#[derive(Clone, Debug, Default)]
pub struct VmToken(Arc<()>);

impl VmToken {
    /// The token of `lua`, made on first use.
    pub fn of(lua: &Lua) -> VmToken {
        if let Some(token) = lua.app_data_ref::<VmToken>() {
            return token.clone();
        }
        let token = VmToken::default();
        lua.set_app_data(token.clone());
        token
    }

    /// How many handles share this token, this one included.
    pub fn holders(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

impl Callback {
    pub fn new(lua: &Lua, function: &Function) -> mlua::Result<Callback> {
        Ok(Callback {
            key: Arc::new(lua.create_registry_value(function.clone())?),
            location: Location::of_function(function),
            _vm: VmToken::of(lua),
        })
    }

    /// Where the function was defined, for messages about it.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Whether the function lives in `lua`.
    pub fn belongs_to(&self, lua: &Lua) -> bool {
        lua.owns_registry_value(&self.key)
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
