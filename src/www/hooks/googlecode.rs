//! The `googlecode` dialect: Google Code's post-commit hook (Buildbot 0.8), JSON signed
//! with HMAC-MD5 of the project's key in `Google-Code-Project-Hosting-Hook-Hmac`. Google
//! Code sends no branch: the `branch` option stands for it.

use std::collections::BTreeSet;

use hmac::{Hmac, Mac};
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::github::hex;
use super::{files_of, list, text, HookError, HookRequest};
use crate::db::ChangeSpec;

pub(super) fn changes(
    secret_key: &str,
    branch: &str,
    request: &HookRequest<'_>,
) -> Result<Vec<ChangeSpec>, HookError> {
    let given = request
        .header("google-code-project-hosting-hook-hmac")
        .ok_or_else(|| {
            HookError::forbidden("the request has no Google-Code-Project-Hosting-Hook-Hmac")
        })?;
    let mut mac = <Hmac<md5::Md5> as Mac>::new_from_slice(secret_key.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(request.body());
    let expected = hex(&mac.finalize().into_bytes());
    if !bool::from(
        expected
            .as_bytes()
            .ct_eq(given.to_ascii_lowercase().as_bytes()),
    ) {
        return Err(HookError::forbidden(
            "the HMAC does not match the project's secret_key",
        ));
    }
    let payload: Value = serde_json::from_slice(request.body())
        .map_err(|error| HookError::bad_request(format!("the body is not JSON: {error}")))?;
    let project = text(&payload, &["project_name"])?;
    let repository = text(&payload, &["repository_path"])?;
    list(&payload, &["revisions"])?
        .iter()
        .map(|revision| {
            let files: BTreeSet<String> = files_of(revision, &["added", "modified", "removed"])
                .into_iter()
                .collect();
            let number = |key: &str| revision.get(key).cloned().unwrap_or(Value::Null);
            Ok(ChangeSpec {
                author: text(revision, &["author"])?.to_string(),
                committer: None,
                comments: text(revision, &["message"])?.to_string(),
                branch: Some(
                    revision
                        .get("branch")
                        .and_then(Value::as_str)
                        .unwrap_or(branch)
                        .to_string(),
                ),
                revision: Some(match number("revision") {
                    Value::String(revision) => revision,
                    other => other.to_string(),
                }),
                revlink: Some(text(revision, &["url"])?.to_string()),
                when: number("timestamp").as_f64(),
                category: None,
                repository: repository.to_string(),
                codebase: String::new(),
                project: project.to_string(),
                files: files.into_iter().collect(),
                properties: Vec::new(),
            })
        })
        .collect()
}
