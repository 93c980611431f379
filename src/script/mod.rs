//! Running the user's Lua: the script host, callback handles, renderables, and the status
//! objects callbacks see.

mod callback;
pub mod deadline;
pub mod host;
mod lua_api;
pub mod messages;
pub mod objects;
pub mod renderable;
pub mod session;

pub use callback::{code_of, Callback, ConfigSource};
pub use host::{Arg, FromScript, HostLimits, Pending, ScriptError, ScriptErrorKind, ScriptHost};
pub use lua_api::{register, CLASSES};
pub use renderable::{is_falsy, RenderData, RenderError, Renderable};
pub use session::{Reply, Request, Session, Step};
