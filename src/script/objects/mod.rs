//! The read-only status objects Lua callbacks receive (design.md section 2).

mod properties;

pub use properties::{properties_userdata, LuaProperties};
