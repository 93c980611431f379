//! The `gitorious` dialect: Gitorious's web hook, a form whose `payload` field holds the
//! push; one change per commit (Gitorious sends no file lists).

use serde_json::Value;

use super::{list, person, text, timestamp, HookError, HookRequest};
use crate::db::ChangeSpec;

pub(super) fn changes(request: &HookRequest<'_>) -> Result<Vec<ChangeSpec>, HookError> {
    let payload = request.payload()?;
    let repository = text(&payload, &["repository", "url"])?;
    let project = text(&payload, &["project", "name"])?;
    let branch = text(&payload, &["ref"])?;
    if text(&payload, &["after"])?.chars().all(|c| c == '0') {
        tracing::info!("gitorious hook: branch '{branch}' deleted, ignoring");
        return Ok(Vec::new());
    }
    list(&payload, &["commits"])?
        .iter()
        .map(|commit: &Value| {
            Ok(ChangeSpec {
                author: person(commit, &["author"])?,
                committer: None,
                comments: text(commit, &["message"])?.to_string(),
                branch: Some(branch.to_string()),
                revision: Some(text(commit, &["id"])?.to_string()),
                revlink: Some(text(commit, &["url"])?.to_string()),
                when: Some(timestamp(text(commit, &["timestamp"])?)?),
                category: None,
                repository: repository.to_string(),
                codebase: String::new(),
                project: project.to_string(),
                files: Vec::new(),
                properties: Vec::new(),
            })
        })
        .collect()
}
