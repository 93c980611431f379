//! What the status targets share: the service name, Lua values held for callbacks, checks on
//! mail addresses, URLs and builder/tag filters.

use std::fmt;
use std::sync::{Arc, LazyLock};

use mlua::{Lua, RegistryKey, Value};
use regex::Regex;

use crate::config::kwargs::{FromOption, OptionError};
use crate::config::Kwargs;

/// Every status target's optional `name` option: the service name. Absent, the target is
/// named after its class by [`super::assign_default_names`].
pub(super) fn read_name(kw: &mut Kwargs) -> Option<String> {
    let name: String = kw.optional("name")?;
    if name.is_empty() || name.contains('/') {
        kw.error(format!(
            "option 'name' must be a non-empty name without '/', got '{name}'"
        ));
        return None;
    }
    Some(name)
}

/// A list that narrows what a target reports on (`builders`, or `tags` alias `categories`).
/// Absent means all; an empty list would mean none, never what anyone wants, so it is an error.
pub(super) fn filter_list(kw: &mut Kwargs, names: &[&str]) -> Vec<String> {
    let given = names.iter().copied().find(|n| kw.has(n));
    let list: Option<Vec<String>> = match names {
        [name] => kw.optional(name),
        _ => kw.alias(names),
    };
    match (given, list) {
        (Some(name), Some(list)) if list.is_empty() => {
            kw.error(format!(
                "option '{name}' is an empty list, which matches nothing (leave it out to mean all)"
            ));
            list
        }
        (_, list) => list.unwrap_or_default(),
    }
}

// Buildbot's VALID_EMAIL: `user@host.domain`, optionally as `Full Name <user@host.domain>`.
const EMAIL_ADDR: &str = r"(?:\S+@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+\.?)";
static VALID_EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"^(?:{EMAIL_ADDR}|(.+\s+)?<{EMAIL_ADDR}>\s*)$")).expect("valid regex")
});

/// Whether `address` is a mail address Buildbot would accept.
pub(super) fn is_valid_email(address: &str) -> bool {
    VALID_EMAIL.is_match(address)
}

/// Whether `url` is an absolute http or https URL.
pub(super) fn is_http_url(url: &str) -> bool {
    ["http://", "https://"]
        .iter()
        .any(|scheme| url.len() > scheme.len() && url.starts_with(scheme))
}

/// A Lua value of the config's VM held by Rust and handed back to Lua as it is: a callback's
/// extra argument (`reviewArg`), a `lookup` object. Like a [`crate::script::Callback`], it
/// lives in the VM's registry and is only used on the script host's thread.
#[derive(Clone)]
pub struct LuaHandle {
    key: Arc<RegistryKey>,
    /// Its Lua type, for `Debug` (not its contents, which may be secret).
    kind: &'static str,
    /// A hash of its contents, so that a reconfig that changes only the value is a change.
    digest: u64,
}

impl LuaHandle {
    pub fn new(lua: &Lua, value: Value) -> mlua::Result<LuaHandle> {
        let kind = value.type_name();
        let mut hasher = std::hash::DefaultHasher::new();
        hash_value(lua, &value, &mut hasher, 0);
        Ok(LuaHandle {
            key: Arc::new(lua.create_registry_value(value)?),
            kind,
            digest: std::hash::Hasher::finish(&hasher),
        })
    }

    /// The value itself, in the VM that evaluated the config.
    pub fn value(&self, lua: &Lua) -> mlua::Result<Value> {
        lua.registry_value(&self.key)
    }
}

impl fmt::Debug for LuaHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::config::compare::ignoring_places() {
            true => write!(f, "<lua {} {:x}>", self.kind, self.digest),
            false => write!(f, "<lua {}>", self.kind),
        }
    }
}

/// Tables deeper than this hash as their type alone (a cycle ends here too).
const HASHED_DEPTH: usize = 8;

/// Feeds what `value` holds to `hasher`: scalars, tables by sorted entries, functions by
/// their code, as callbacks are compared.
fn hash_value(lua: &Lua, value: &Value, hasher: &mut impl std::hash::Hasher, depth: usize) {
    use std::hash::Hash;
    value.type_name().hash(hasher);
    match value {
        Value::Boolean(b) => b.hash(hasher),
        Value::Integer(i) => i.hash(hasher),
        Value::Number(n) => n.to_bits().hash(hasher),
        Value::String(s) => s.as_bytes().hash(hasher),
        Value::Function(function) => crate::script::code_of(lua, function).hash(hasher),
        Value::Table(table) if depth < HASHED_DEPTH => {
            let mut entries: Vec<(String, u64)> = table
                .pairs::<Value, Value>()
                .flatten()
                .map(|(key, value)| {
                    let mut inner = std::hash::DefaultHasher::new();
                    hash_value(lua, &value, &mut inner, depth + 1);
                    (format!("{key:?}"), std::hash::Hasher::finish(&inner))
                })
                .collect();
            entries.sort();
            entries.hash(hasher);
        }
        _ => {}
    }
}

impl FromOption for LuaHandle {
    fn expected() -> String {
        "any Lua value".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        LuaHandle::new(lua, value).map_err(|e| OptionError::Wrong(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_addresses_as_buildbot_checks_them() {
        for ok in [
            "a@example.org",
            "Full Name <full.name@example.net>",
            "<x@y.example.com>",
            "list+tag@lists.example.com",
        ] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in ["buildbot", "a@localhost", "a@", "Name <a@b>", ""] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }
}
