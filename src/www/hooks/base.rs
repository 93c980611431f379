//! The `base` dialect: one change from form fields (or query arguments), as
//! `contrib/post_build_request.py` sends them. `files` and `properties` are JSON; the rest
//! are strings; `author` may be given as `who` and `when_timestamp` as `when`.

use serde_json::Value;

use super::{HookError, HookRequest};
use crate::db::ChangeSpec;

pub(super) fn changes(request: &HookRequest<'_>) -> Result<Vec<ChangeSpec>, HookError> {
    let text = |name: &str| request.arg(name).map(String::from);
    let files: Vec<String> = match request.arg("files").filter(|f| !f.is_empty()) {
        Some(files) => serde_json::from_str(files).map_err(|error| {
            HookError::bad_request(format!("'files' is not a JSON list of strings: {error}"))
        })?,
        None => Vec::new(),
    };
    let properties: serde_json::Map<String, Value> =
        match request.arg("properties").filter(|p| !p.is_empty()) {
            Some(properties) => serde_json::from_str(properties).map_err(|error| {
                HookError::bad_request(format!("'properties' is not a JSON object: {error}"))
            })?,
            None => serde_json::Map::new(),
        };
    let when = match request.arg("when_timestamp").or(request.arg("when")) {
        Some(when) => Some(when.trim().parse::<f64>().map_err(|_| {
            HookError::bad_request(format!("'when_timestamp' {when:?} is not a number"))
        })?),
        None => None,
    };
    let author = request
        .arg("author")
        .filter(|a| !a.is_empty())
        .or(request.arg("who"))
        .unwrap_or_default();
    Ok(vec![ChangeSpec {
        author: author.to_string(),
        committer: text("committer").filter(|c| !c.is_empty()),
        comments: text("comments").unwrap_or_default(),
        branch: text("branch"),
        revision: text("revision"),
        revlink: text("revlink"),
        when,
        category: text("category"),
        repository: text("repository").unwrap_or_default(),
        codebase: text("codebase").unwrap_or_default(),
        project: text("project").unwrap_or_default(),
        files,
        properties: properties
            .into_iter()
            .map(|(name, value)| (name, value, "Change".to_string()))
            .collect(),
    }])
}
