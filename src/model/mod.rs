//! Plain data shared by the config layer, the script host and (later) the build engine.

mod build;
mod master;
mod properties;
mod results;
mod sourcestamp;

pub use build::{BuildHistory, BuildInfo, BuilderInfo, LogInfo, LogSource, StepInfo};
pub use master::MasterInfo;
pub use properties::Properties;
pub use results::BuildResult;
pub use sourcestamp::{Change, Patch, SourceStamp};
