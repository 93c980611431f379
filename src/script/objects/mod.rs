//! The read-only status objects Lua callbacks receive (design.md section 2).
//!
//! Each object is userdata over an `Arc` snapshot: methods with Buildbot 0.8's names and
//! plain fields beside them, no setters, and every table handed out a fresh copy, so nothing
//! a callback does reaches the master.

mod build;
mod master;
mod properties;
mod push_queue;
mod source;

pub use build::{build_of, LuaBuild, LuaBuilder, LuaLog, LuaStep};
pub use master::LuaMaster;
pub use properties::{properties_userdata, LuaProperties};
pub use push_queue::{LuaStatusPush, PushChunk};
pub use source::{LuaChange, LuaSourceStamp};

#[cfg(test)]
pub(crate) mod tests;
