//! The `github` dialect: GitHub webhooks, as Buildbot 4's `GitHubEventHandler` reads
//! them. `push` makes one change per commit, `pull_request` one for the pull request,
//! `ping` none; the config's `class` functions handle other events (or replace these).
//! With a `secret`, a signature sent in `X-Hub-Signature-256` (or the older SHA-1
//! `X-Hub-Signature`) must match the body's HMAC; with `strict`, one must be sent.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::{at, codebase, files_of, list, lua_changes, person, text, timestamp};
use super::{HookError, HookRequest};
use crate::config::status::GitHubHook;
use crate::db::ChangeSpec;
use crate::runtime::Context;

pub(super) async fn changes(
    ctx: &Context,
    hook: &GitHubHook,
    request: &HookRequest<'_>,
) -> Result<Vec<ChangeSpec>, HookError> {
    check_signature(hook, request)?;
    let payload = request.payload()?;
    let event = request.header("x-github-event").unwrap_or_default();
    if let Some(handler) = hook.handlers.get(event) {
        return lua_changes(ctx, handler, &payload, event).await;
    }
    let mut changes = match event {
        "ping" | "workflow_run" => return Ok(Vec::new()),
        "push" => push(hook, &payload, event)?,
        "pull_request" => pull_request(hook, &payload, event)?,
        "" => return Err(HookError::bad_request("the request has no X-GitHub-Event")),
        other => return Err(HookError::bad_request(format!("unknown event '{other}'"))),
    };
    if changes.is_empty() {
        return Ok(changes);
    }
    let codebase = codebase(ctx, hook.codebase.as_ref(), &payload).await?;
    let project = request.arg("project");
    for change in &mut changes {
        change.codebase.clone_from(&codebase);
        if let Some(project) = project {
            change.project = project.to_string();
        }
    }
    Ok(changes)
}

/// Buildbot's rule: a signature is checked whenever there is a secret and one is sent;
/// `strict` refuses requests that send none.
fn check_signature(hook: &GitHubHook, request: &HookRequest<'_>) -> Result<(), HookError> {
    let Some(secret) = &hook.secret else {
        return Ok(());
    };
    let (algorithm, signature) = match (
        request.header("x-hub-signature-256"),
        request.header("x-hub-signature"),
    ) {
        (Some(signature), _) => ("sha256", signature),
        (None, Some(signature)) => ("sha1", signature),
        (None, None) if hook.strict => return Err(HookError::forbidden(
            "the request has no X-Hub-Signature-256 or X-Hub-Signature, which strict mode requires",
        )),
        (None, None) => return Ok(()),
    };
    let Some((kind, given)) = signature.split_once('=') else {
        return Err(HookError::forbidden(format!(
            "wrong signature format: '{signature}'"
        )));
    };
    if kind != algorithm {
        return Err(HookError::forbidden(format!(
            "unknown hash type '{kind}' (expected {algorithm})"
        )));
    }
    let key = secret.as_bytes();
    let expected = match algorithm {
        "sha256" => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
            mac.update(request.body());
            hex(&mac.finalize().into_bytes())
        }
        _ => {
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).expect("any key length");
            mac.update(request.body());
            hex(&mac.finalize().into_bytes())
        }
    };
    if bool::from(
        expected
            .as_bytes()
            .ct_eq(given.to_ascii_lowercase().as_bytes()),
    ) {
        Ok(())
    } else {
        Err(HookError::forbidden(
            "hash mismatch: the signature does not match the secret",
        ))
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// One change per commit of a branch or tag push; none for other refs, deletions, or a
/// head commit whose message matches a skip pattern.
fn push(hook: &GitHubHook, payload: &Value, event: &str) -> Result<Vec<ChangeSpec>, HookError> {
    let refname = text(payload, &["ref"])?;
    let Some((kind, branch)) = refname
        .strip_prefix("refs/")
        .and_then(|name| name.split_once('/'))
        .filter(|(kind, branch)| matches!(*kind, "heads" | "tags") && !branch.is_empty())
    else {
        tracing::info!("github hook: ignoring ref '{refname}': not a branch or tag");
        return Ok(Vec::new());
    };
    if truthy(payload.get("deleted")) {
        tracing::info!("github hook: branch '{branch}' deleted, ignoring");
        return Ok(Vec::new());
    }
    let head_message = payload
        .get("head_commit")
        .and_then(|head| head.get("message"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if hook.skips.iter().any(|skip| skip.is_match(head_message)) {
        tracing::info!("github hook: head commit of '{branch}' asks to skip CI");
        return Ok(Vec::new());
    }
    let repository = text(payload, &["repository", "html_url"])?;
    let project = text(payload, &["repository", "full_name"])?;
    let head;
    let commits = if truthy(payload.get("created")) {
        head = [at(payload, &["head_commit"])?.clone()];
        &head[..]
    } else {
        list(payload, &["commits"])?
    };
    commits
        .iter()
        .map(|commit| {
            Ok(ChangeSpec {
                author: person(commit, &["author"])?,
                committer: Some(person(commit, &["committer"])?),
                comments: text(commit, &["message"])?.to_string(),
                branch: Some(branch.to_string()),
                revision: Some(text(commit, &["id"])?.to_string()),
                revlink: Some(text(commit, &["url"])?.to_string()),
                when: Some(timestamp(text(commit, &["timestamp"])?)?),
                category: (kind == "tags").then(|| "tag".to_string()),
                repository: repository.to_string(),
                codebase: String::new(),
                project: project.to_string(),
                files: files_of(commit, &["added", "modified", "removed"]),
                properties: vec![
                    property(
                        "github_distinct",
                        commit.get("distinct").cloned().unwrap_or(json!(true)),
                    ),
                    property("event", json!(event)),
                ],
            })
        })
        .collect()
}

/// One change for a pull request opened, reopened or pushed to. Buildbot asks GitHub's
/// API for the files and the head commit's message; this hook calls no API, so the change
/// lists no files and skip patterns apply to pushes only.
fn pull_request(
    hook: &GitHubHook,
    payload: &Value,
    event: &str,
) -> Result<Vec<ChangeSpec>, HookError> {
    let number = at(payload, &["number"])?;
    let action = payload
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !matches!(action, "opened" | "reopened" | "synchronize") {
        tracing::info!("github hook: pull request #{number} {action}, ignoring");
        return Ok(Vec::new());
    }
    let pull = at(payload, &["pull_request"])?;
    let commits = at(pull, &["commits"])?;
    let title = text(pull, &["title"])?;
    let body = pull.get("body").and_then(Value::as_str).unwrap_or_default();
    let plural = if commits.as_i64() == Some(1) { "" } else { "s" };
    let revlink = text(pull, &["_links", "html", "href"])?;
    Ok(vec![ChangeSpec {
        author: text(payload, &["sender", "login"])?.to_string(),
        committer: None,
        comments: format!(
            "GitHub Pull Request #{number} ({commits} commit{plural})\n{title}\n{body}"
        ),
        branch: Some(format!("refs/pull/{number}/{}", hook.pullrequest_ref)),
        revision: Some(text(pull, &["head", "sha"])?.to_string()),
        revlink: Some(revlink.to_string()),
        when: Some(timestamp(text(pull, &["created_at"])?)?),
        category: Some("pull".into()),
        repository: text(payload, &["repository", "html_url"])?.to_string(),
        codebase: String::new(),
        project: text(pull, &["base", "repo", "full_name"])?.to_string(),
        files: Vec::new(),
        properties: vec![
            property("pullrequesturl", json!(revlink)),
            property("event", json!(event)),
            property("basename", json!(text(pull, &["base", "ref"])?)),
        ],
    }])
}

pub(super) fn property(name: &str, value: Value) -> (String, Value, String) {
    (name.to_string(), value, "Change".to_string())
}
