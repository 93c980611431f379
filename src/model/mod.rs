//! Plain data shared by the config layer, the script host and (later) the build engine.

mod properties;
mod results;
mod sourcestamp;

pub use properties::Properties;
pub use results::BuildResult;
pub use sourcestamp::{Change, Patch, SourceStamp};
