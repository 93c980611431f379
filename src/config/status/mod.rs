//! Status targets: `status.WebStatus`, `status.MailNotifier`, `status.IRC`, ...

use mlua::{Lua, UserData};

use super::{Location, Namespaces};

/// One entry of `c['status']`.
#[derive(Clone, Debug)]
pub enum StatusTarget {}

impl UserData for StatusTarget {}
crate::config_object!(
    StatusTarget,
    "status target (status.MailNotifier{...}, ...)"
);

impl StatusTarget {
    /// The class name users write, e.g. `MailNotifier`.
    pub fn kind(&self) -> &'static str {
        match *self {}
    }

    /// The service name: the reconfig diff key, the outbox key and the URL segment.
    pub fn name(&self) -> &str {
        match *self {}
    }

    pub fn location(&self) -> &Location {
        match *self {}
    }

    /// The builders this target is limited to (its `builders` option); empty means all.
    pub fn builders(&self) -> &[String] {
        match *self {}
    }
}

/// Every constructor this part registers, with its options.
pub const CLASSES: &[crate::config::ClassOptions] = &[];

pub fn register(_lua: &Lua, _ns: &Namespaces) -> mlua::Result<()> {
    Ok(())
}

/// `c['www'] = {port=...}`, Buildbot 0.9's web server, read as the equivalent WebStatus.
pub fn read_www(_lua: &Lua, _value: mlua::Value, _location: Location) -> Option<StatusTarget> {
    None
}
