//! The `gitlab` dialect: GitLab webhooks (JSON), as Buildbot reads them. `push` and
//! `tag_push` make one change per distinct commit, `merge_request` one for a request
//! opened, reopened or updated with new commits. With a `secret`, `X-Gitlab-Token` must
//! equal it. `?project=` and `?codebase=` name the project and codebase.

use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::github::property;
use super::{at, files_of, list, person, text, timestamp, HookError, HookRequest};
use crate::db::ChangeSpec;

pub(super) fn changes(
    secret: Option<&str>,
    request: &HookRequest<'_>,
) -> Result<Vec<ChangeSpec>, HookError> {
    if let Some(secret) = secret {
        let token = request.header("x-gitlab-token").ok_or_else(|| {
            HookError::forbidden("the request has no X-Gitlab-Token, which the secret requires")
        })?;
        if !bool::from(token.as_bytes().ct_eq(secret.as_bytes())) {
            return Err(HookError::forbidden("invalid secret in X-Gitlab-Token"));
        }
    }
    let payload: Value = serde_json::from_slice(request.body())
        .map_err(|error| HookError::bad_request(format!("the body is not JSON: {error}")))?;
    // Newer GitLabs name the event in the payload too.
    let event = payload
        .get("object_kind")
        .and_then(Value::as_str)
        .or(request.header("x-gitlab-event"))
        .unwrap_or_default();
    let mut changes = match event {
        "push" | "tag_push" | "Push Hook" | "Tag Push Hook" => push(&payload, event)?,
        "merge_request" => merge_request(&payload, event)?,
        other => {
            tracing::info!("gitlab hook: ignoring event '{other}'");
            Vec::new()
        }
    };
    for change in &mut changes {
        if let Some(project) = request.arg("project") {
            change.project = project.to_string();
        }
        if let Some(codebase) = request.arg("codebase") {
            change.codebase = codebase.to_string();
        }
    }
    Ok(changes)
}

fn push(payload: &Value, event: &str) -> Result<Vec<ChangeSpec>, HookError> {
    let refname = text(payload, &["ref"])?;
    let Some(branch) = refname
        .strip_prefix("refs/heads/")
        .or_else(|| refname.strip_prefix("refs/tags/"))
        .filter(|branch| !branch.is_empty())
    else {
        tracing::info!("gitlab hook: ignoring ref '{refname}': not a branch or tag");
        return Ok(Vec::new());
    };
    if payload.get("deleted").and_then(Value::as_bool) == Some(true) {
        return Ok(Vec::new());
    }
    let repository = text(payload, &["repository", "url"])?;
    let project = text(payload, &["repository", "name"])?;
    list(payload, &["commits"])?
        .iter()
        .filter(|commit| commit.get("distinct").and_then(Value::as_bool) != Some(false))
        .map(|commit| {
            Ok(ChangeSpec {
                author: person(commit, &["author"])?,
                committer: None,
                comments: text(commit, &["message"])?.to_string(),
                branch: Some(branch.to_string()),
                revision: Some(text(commit, &["id"])?.to_string()),
                revlink: Some(text(commit, &["url"])?.to_string()),
                when: Some(timestamp(text(commit, &["timestamp"])?)?),
                category: Some(event.to_string()),
                repository: repository.to_string(),
                codebase: String::new(),
                project: project.to_string(),
                files: files_of(commit, &["added", "modified", "removed"]),
                properties: vec![property("event", json!(event))],
            })
        })
        .collect()
}

fn merge_request(payload: &Value, event: &str) -> Result<Vec<ChangeSpec>, HookError> {
    let attrs = at(payload, &["object_attributes"])?;
    let iid = at(attrs, &["iid"])?;
    let state = text(attrs, &["state"])?;
    if matches!(state, "closed" | "merged" | "approved") {
        tracing::info!("gitlab hook: MR#{iid} ignored, its state is {state}");
        return Ok(Vec::new());
    }
    let action = attrs
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let new_code = action == "update" && attrs.get("oldrev").is_some();
    if !matches!(action, "open" | "reopen") && !new_code {
        tracing::info!("gitlab hook: MR#{iid} ignored: '{action}' adds no code");
        return Ok(Vec::new());
    }
    let commit = at(attrs, &["last_commit"])?;
    let target_branch = text(attrs, &["target_branch"])?;
    let string = |path: &[&str]| text(attrs, path).map(|s| json!(s));
    Ok(vec![ChangeSpec {
        author: person(commit, &["author"])?,
        committer: None,
        comments: format!(
            "MR#{iid}: {}\n\n{}",
            text(attrs, &["title"])?,
            attrs
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
        ),
        branch: Some(target_branch.to_string()),
        revision: Some(text(commit, &["id"])?.to_string()),
        revlink: Some(text(attrs, &["url"])?.to_string()),
        when: Some(timestamp(text(commit, &["timestamp"])?)?),
        category: Some(event.to_string()),
        repository: text(attrs, &["target", "git_http_url"])?.to_string(),
        codebase: String::new(),
        project: text(attrs, &["target", "name"])?.to_string(),
        files: Vec::new(),
        properties: vec![
            property("source_branch", string(&["source_branch"])?),
            property(
                "source_project_id",
                at(attrs, &["source_project_id"])?.clone(),
            ),
            property("source_repository", string(&["source", "git_http_url"])?),
            property("source_git_ssh_url", string(&["source", "git_ssh_url"])?),
            property("target_branch", json!(target_branch)),
            property(
                "target_project_id",
                at(attrs, &["target_project_id"])?.clone(),
            ),
            property("target_repository", string(&["target", "git_http_url"])?),
            property("target_git_ssh_url", string(&["target", "git_ssh_url"])?),
            property("event", json!(event)),
        ],
    }])
}
