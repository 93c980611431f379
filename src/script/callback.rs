use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use mlua::{Function, Lua, RegistryKey};

use crate::config::Location;

/// A Lua function of the config's VM, held by Rust. The function lives in the VM's registry
/// as long as a handle does; only the script host thread, which owns that VM, calls it.
#[derive(Clone)]
pub struct Callback {
    key: Arc<RegistryKey>,
    location: Location,
    /// A hash of the function's source text, when the config's text is at hand: a reconfig
    /// compares callbacks by it, so a function that only moved is the same function.
    code: Option<u64>,
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
            code: code_of(lua, function),
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

/// While a reconfig compares configs, a callback shows its code rather than its place.
impl fmt::Debug for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) if crate::config::ignoring_places() => write!(f, "<function {code:x}>"),
            _ => write!(f, "<function {}>", self.location),
        }
    }
}

/// The text of the config file being evaluated, kept in the VM's app data while it runs:
/// Lua keeps no source, and messages about options and comparisons of callbacks need it.
pub struct ConfigSource {
    /// The file name Lua reports, `master.cfg.lua`.
    pub file: String,
    pub lines: Vec<String>,
}

impl ConfigSource {
    pub fn new(file: &str, text: &str) -> ConfigSource {
        ConfigSource {
            file: file.to_string(),
            lines: text.lines().map(String::from).collect(),
        }
    }
}

/// A hash of the lines that define `function`, when it comes from the config's own text.
pub fn code_of(lua: &Lua, function: &Function) -> Option<u64> {
    let source = lua.app_data_ref::<ConfigSource>()?;
    let info = function.info();
    if info.source.as_deref()?.strip_prefix('@') != Some(source.file.as_str()) {
        return None;
    }
    let first = info.line_defined?;
    let last = info.last_line_defined?;
    let mut hasher = DefaultHasher::new();
    for line in source.lines.get(first.checked_sub(1)?..last)? {
        line.hash(&mut hasher);
    }
    Some(hasher.finish())
}
