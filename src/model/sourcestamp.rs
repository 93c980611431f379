use serde_json::Value;

/// A change as users see it: the fields Buildbot's `Change` object exposes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Change {
    pub number: i64,
    pub who: String,
    pub revision: Option<String>,
    pub branch: Option<String>,
    /// Seconds since the epoch.
    pub when: i64,
    pub files: Vec<String>,
    pub comments: String,
    pub repository: String,
    pub project: String,
    pub codebase: String,
    pub category: Option<String>,
    pub revlink: Option<String>,
    pub properties: Vec<(String, Value)>,
}

/// A patch applied on top of a sourcestamp (try builds).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Patch {
    pub level: i64,
    pub body: Vec<u8>,
    pub subdir: Option<String>,
    pub author: Option<String>,
    pub comment: Option<String>,
}

/// What a build builds in one codebase.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceStamp {
    pub codebase: String,
    pub branch: Option<String>,
    pub revision: Option<String>,
    pub repository: String,
    pub project: String,
    pub patch: Option<Patch>,
    pub changes: Vec<Change>,
}
