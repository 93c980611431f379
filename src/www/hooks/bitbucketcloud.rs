//! The `bitbucketcloud` dialect: Bitbucket Cloud's webhooks, as Buildbot 4 reads them,
//! JSON with the event in `X-Event-Key`. `repo:push` makes a change per ref pushed (at its
//! new commit), `pullrequest:created|updated|fulfilled|rejected` one for the pull request.

use serde_json::{json, Value};

use super::github::property;
use super::{at, codebase, list, text, HookError, HookRequest};
use crate::config::status::HookCodebase;
use crate::db::ChangeSpec;
use crate::runtime::Context;

pub(super) async fn changes(
    ctx: &Context,
    codebase_option: Option<&HookCodebase>,
    request: &HookRequest<'_>,
) -> Result<Vec<ChangeSpec>, HookError> {
    if request.content_type() != "application/json" {
        return Err(HookError::bad_request(format!(
            "unknown content type '{}' (Bitbucket Cloud sends application/json)",
            request.content_type()
        )));
    }
    let payload = request.payload()?;
    let event = request
        .header("x-event-key")
        .ok_or_else(|| HookError::bad_request("the request has no X-Event-Key"))?;
    let mut changes = match event {
        "repo:push" => push(&payload)?,
        "pullrequest:created" | "pullrequest:updated" => {
            let id = at(&payload, &["pullrequest", "id"])?;
            let category = event.replace("pullrequest:", "pull-");
            vec![pull_request(
                &payload,
                format!("refs/pull-requests/{id}/merge"),
                &category,
            )?]
        }
        "pullrequest:fulfilled" => {
            let branch = text(&payload, &["pullrequest", "toRef", "branch", "name"])?;
            vec![pull_request(
                &payload,
                format!("refs/heads/{branch}"),
                "pull-fulfilled",
            )?]
        }
        "pullrequest:rejected" => {
            let branch = text(&payload, &["pullrequest", "fromRef", "branch", "name"])?;
            vec![pull_request(
                &payload,
                format!("refs/heads/{branch}"),
                "pull-rejected",
            )?]
        }
        other => return Err(HookError::bad_request(format!("unknown event '{other}'"))),
    };
    if !changes.is_empty() {
        let codebase = codebase(ctx, codebase_option, &payload).await?;
        for change in &mut changes {
            change.codebase.clone_from(&codebase);
        }
    }
    Ok(changes)
}

fn project_of(payload: &Value) -> Result<String, HookError> {
    match payload.get("repository").and_then(|r| r.get("project")) {
        Some(project) => Ok(text(project, &["name"])?.to_string()),
        None => Ok("none".into()),
    }
}

fn author_of(payload: &Value) -> Result<String, HookError> {
    Ok(format!(
        "{} <{}>",
        text(payload, &["actor", "display_name"])?,
        text(payload, &["actor", "nickname"])?
    ))
}

fn push(payload: &Value) -> Result<Vec<ChangeSpec>, HookError> {
    let repository = text(payload, &["repository", "links", "self", "href"])?;
    let web = text(payload, &["repository", "links", "html", "href"])?;
    let project = project_of(payload)?;
    let author = author_of(payload)?;
    list(payload, &["push", "changes"])?
        .iter()
        .map(|change| {
            // A ref deleted has no `new`: its change is at the old commit.
            let (age, category) = match change.get("new") {
                Some(Value::Null) | None => ("old", "ref-deleted"),
                Some(_) => ("new", "push"),
            };
            let hash = text(change, &[age, "target", "hash"])?;
            let name = text(change, &[age, "name"])?;
            let branch = match text(change, &[age, "type"])? {
                "branch" => Some(format!("refs/heads/{name}")),
                "tag" => Some(format!("refs/tags/{name}")),
                _ => None,
            };
            Ok(ChangeSpec {
                author: author.clone(),
                committer: None,
                comments: format!("Bitbucket Cloud commit {hash}"),
                branch,
                revision: Some(hash.to_string()),
                revlink: Some(format!("{web}/commits/{hash}")),
                when: None,
                category: Some(category.into()),
                repository: repository.to_string(),
                codebase: String::new(),
                project: project.clone(),
                files: Vec::new(),
                properties: Vec::new(),
            })
        })
        .collect()
}

fn pull_request(payload: &Value, branch: String, category: &str) -> Result<ChangeSpec, HookError> {
    let id = at(payload, &["pullrequest", "id"])?;
    let revlink = text(payload, &["pullrequest", "link"])?;
    Ok(ChangeSpec {
        author: author_of(payload)?,
        committer: None,
        comments: format!("Bitbucket Cloud Pull Request #{id}"),
        branch: Some(branch),
        revision: Some(text(payload, &["pullrequest", "fromRef", "commit", "hash"])?.to_string()),
        revlink: Some(revlink.to_string()),
        when: None,
        category: Some(category.into()),
        repository: text(payload, &["repository", "links", "self", "href"])?.to_string(),
        codebase: String::new(),
        project: project_of(payload)?,
        files: Vec::new(),
        properties: vec![property("pullrequesturl", json!(revlink))],
    })
}
