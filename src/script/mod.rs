//! Running the user's Lua: callback handles, renderables, and the status objects callbacks see.

mod callback;
mod lua_api;
pub mod objects;
pub mod renderable;

pub use callback::Callback;
pub use lua_api::{register, CLASSES};
pub use renderable::{RenderData, RenderError, Renderable};
