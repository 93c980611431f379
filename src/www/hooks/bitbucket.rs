//! The `bitbucket` dialect: Bitbucket's old POST service (Buildbot 0.8's hook), a form
//! whose `payload` field holds the push; one change per commit. `?project=` names the
//! project.

use serde_json::json;

use super::github::property;
use super::{list, text, timestamp, HookError, HookRequest};
use crate::db::ChangeSpec;

pub(super) fn changes(request: &HookRequest<'_>) -> Result<Vec<ChangeSpec>, HookError> {
    let payload = request.payload()?;
    let repository = format!(
        "{}{}",
        text(&payload, &["canon_url"])?,
        text(&payload, &["repository", "absolute_url"])?
    );
    let project = request.arg("project").unwrap_or_default();
    let event = request.header("x-event-key");
    list(&payload, &["commits"])?
        .iter()
        .map(|commit| {
            let revision = text(commit, &["raw_node"])?;
            let files = list(commit, &["files"])?
                .iter()
                .map(|file| text(file, &["file"]).map(String::from))
                .collect::<Result<_, _>>()?;
            Ok(ChangeSpec {
                author: text(commit, &["raw_author"])?.to_string(),
                committer: None,
                comments: text(commit, &["message"])?.to_string(),
                branch: Some(text(commit, &["branch"])?.to_string()),
                revision: Some(revision.to_string()),
                revlink: Some(format!("{repository}commits/{revision}")),
                when: Some(timestamp(text(commit, &["utctimestamp"])?)?),
                category: None,
                repository: repository.clone(),
                codebase: String::new(),
                project: project.to_string(),
                files,
                properties: vec![property("event", json!(event))],
            })
        })
        .collect()
}
