//! `/change_hook/DIALECT`: code hosts post their events here and each enabled dialect
//! (`change_hook_dialects`) turns them into changes, submitted through
//! [`changes::submit`](crate::changes::submit) like every other change. One file per
//! dialect; this one holds what they share: the `change_hook_auth` check, the request as
//! the dialects read it, payload helpers, and the answers.
//!
//! A request is answered `202` with `{"changeids": [...]}` (the poller: `{"polled":
//! [...]}`); a refused one with a 4xx and `{"error": ...}`, logged once with the remote
//! address, and no change is made: a payload's changes are all read, then stored in one
//! transaction.

mod base;
mod bitbucket;
mod bitbucketcloud;
mod github;
mod gitlab;
mod gitorious;
mod googlecode;
mod poller;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::changes::{self, ChangeMessage};
use crate::config::status::{
    ChangeHookDialect, HookCodebase, HookCredentials, StatusTarget, WebStatusConfig,
};
use crate::db::ChangeSpec;
use crate::runtime::secrets::{basic_credentials, same_secret};
use crate::runtime::Context;
use crate::script::{Arg, Callback, ScriptError};

/// The routes: `/change_hook` alone is the `base` dialect, as in Buildbot. GET is taken as
/// POST (the poller is usually poked with GET).
pub fn router(context: Context) -> Router {
    Router::new()
        .route("/change_hook", any(base_hook))
        .route("/change_hook/", any(base_hook))
        .route("/change_hook/{dialect}", any(dialect_hook))
        .with_state(context)
}

async fn base_hook(State(ctx): State<Context>, request: Request) -> Response {
    serve(&ctx, "base", request).await
}

async fn dialect_hook(
    State(ctx): State<Context>,
    Path(dialect): Path<String>,
    request: Request,
) -> Response {
    serve(&ctx, &dialect, request).await
}

/// What an accepted request did.
pub(super) enum Outcome {
    Changes(Vec<ChangeSpec>),
    /// The change sources told to poll.
    Polled(Vec<String>),
}

async fn serve(ctx: &Context, dialect: &str, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.to_string())
        .unwrap_or_else(|| "unknown".into());
    let (parts, body) = request.into_parts();
    // The server has read the whole body already (`runtime::http`); this only unwraps it.
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let outcome = match outcome(ctx, dialect, &parts, &body).await {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::warn!(remote = %peer, dialect, "change hook refused: {}", error.message);
            return error.into_response();
        }
    };
    match outcome {
        Outcome::Polled(names) => {
            (StatusCode::ACCEPTED, Json(json!({ "polled": names }))).into_response()
        }
        Outcome::Changes(specs) if specs.is_empty() => {
            (StatusCode::ACCEPTED, Json(json!({ "changeids": [] }))).into_response()
        }
        Outcome::Changes(specs) => {
            let ids = match changes::submit_all(ctx, specs).await {
                Ok(ids) => ids,
                Err(error) => {
                    tracing::error!(remote = %peer, dialect, "change hook: {error:#}");
                    return HookError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "cannot store the change",
                    )
                    .into_response();
                }
            };
            (StatusCode::ACCEPTED, Json(json!({ "changeids": ids }))).into_response()
        }
    }
}

/// Checks the credentials, then hands the request to its dialect.
async fn outcome(
    ctx: &Context,
    dialect: &str,
    parts: &Parts,
    body: &[u8],
) -> Result<Outcome, HookError> {
    let config = ctx.config.current();
    let web = served(&config.status)
        .ok_or_else(|| HookError::bad_request("no change hook is enabled"))?;
    if !web.change_hook_auth.is_empty() {
        check_credentials(ctx, &web.change_hook_auth, &parts.headers)?;
    }
    let Some(options) = web.change_hook_dialects.get(dialect) else {
        return Err(HookError::bad_request(format!(
            "the dialect '{dialect}' is not enabled in change_hook_dialects"
        )));
    };
    let request = HookRequest::new(parts, body);
    match options {
        ChangeHookDialect::Base => base::changes(&request).map(Outcome::Changes),
        ChangeHookDialect::GitHub(hook) => github::changes(ctx, hook, &request)
            .await
            .map(Outcome::Changes),
        ChangeHookDialect::BitBucket => bitbucket::changes(&request).map(Outcome::Changes),
        ChangeHookDialect::BitBucketCloud { codebase } => {
            bitbucketcloud::changes(ctx, codebase.as_ref(), &request)
                .await
                .map(Outcome::Changes)
        }
        ChangeHookDialect::GitLab { secret } => {
            gitlab::changes(secret.as_deref(), &request).map(Outcome::Changes)
        }
        ChangeHookDialect::GoogleCode { secret_key, branch } => {
            googlecode::changes(secret_key, branch, &request).map(Outcome::Changes)
        }
        ChangeHookDialect::Gitorious => gitorious::changes(&request).map(Outcome::Changes),
        ChangeHookDialect::Poller { allowed } => poller::poll(ctx, allowed.as_ref(), &request)
            .await
            .map(Outcome::Polled),
    }
}

/// The web server the master serves: the first WebStatus with a port (as `www::bind`).
fn served(targets: &[StatusTarget]) -> Option<&WebStatusConfig> {
    targets.iter().find_map(|target| match target {
        StatusTarget::WebStatus(web) if web.http_port.is_some() => Some(&**web),
        _ => None,
    })
}

/// HTTP basic credentials that match one of `change_hook_auth`'s users. Files are read at
/// each request, so an edited file applies without a reconfig. Every entry is compared in
/// constant time, none skipped, so the answer takes as long whichever part was wrong.
fn check_credentials(
    ctx: &Context,
    checkers: &[HookCredentials],
    headers: &HeaderMap,
) -> Result<(), HookError> {
    let mut users: Vec<(String, String)> = Vec::new();
    for checker in checkers {
        match checker {
            HookCredentials::Memory(pairs) => users.extend(pairs.iter().cloned()),
            HookCredentials::File(path) => {
                let path = ctx.basedir.join(path);
                let text = std::fs::read_to_string(&path).map_err(|error| {
                    tracing::error!("change_hook_auth: cannot read {}: {error}", path.display());
                    HookError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "cannot read the change hook credentials",
                    )
                })?;
                users.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|line| !line.is_empty() && !line.starts_with('#'))
                        .filter_map(|line| line.split_once(':'))
                        .map(|(user, password)| (user.to_string(), password.to_string())),
                );
            }
        }
    }
    // Every entry is compared in full, so timing tells nothing about which one is close.
    let given = basic_credentials(headers).unwrap_or_default();
    let mut matched = false;
    for (user, password) in &users {
        matched |= same_secret(given.0.as_bytes(), user.as_bytes())
            & same_secret(given.1.as_bytes(), password.as_bytes());
    }
    if matched {
        Ok(())
    } else {
        Err(HookError::new(
            StatusCode::UNAUTHORIZED,
            "change hooks need a user name and password of change_hook_auth",
        ))
    }
}

/// Why a request made no change: its status and the message of its JSON body.
#[derive(Debug)]
pub(super) struct HookError {
    status: StatusCode,
    message: String,
}

impl HookError {
    fn new(status: StatusCode, message: impl Into<String>) -> HookError {
        HookError {
            status,
            message: message.into(),
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> HookError {
        HookError::new(StatusCode::BAD_REQUEST, message)
    }

    /// A bad or missing signature or token.
    pub(super) fn forbidden(message: impl Into<String>) -> HookError {
        HookError::new(StatusCode::FORBIDDEN, message)
    }

    /// A Lua callback of the hook failed: its message names the function's `file:line`.
    fn script(error: ScriptError) -> HookError {
        HookError::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
    }
}

impl IntoResponse for HookError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"moonbot change hooks\""),
            );
        }
        response
    }
}

/// A request as the dialects read it: headers, the raw body (signatures are over it), and
/// the arguments of the query string and of a form-encoded body, in that order.
pub(super) struct HookRequest<'a> {
    headers: &'a HeaderMap,
    body: &'a [u8],
    args: Vec<(String, String)>,
}

impl<'a> HookRequest<'a> {
    fn new(parts: &'a Parts, body: &'a [u8]) -> HookRequest<'a> {
        let mut args: Vec<(String, String)> = parts
            .uri
            .query()
            .map(|query| {
                form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let mut request = HookRequest {
            headers: &parts.headers,
            body,
            args: Vec::new(),
        };
        if request.content_type() == "application/x-www-form-urlencoded" {
            args.extend(form_urlencoded::parse(body).into_owned());
        }
        request.args = args;
        request
    }

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The media type of the body, lowercased, without parameters.
    pub(super) fn content_type(&self) -> String {
        self.header("content-type")
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    }

    pub(super) fn body(&self) -> &[u8] {
        self.body
    }

    /// The first value of argument `name`.
    pub(super) fn arg(&self, name: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of argument `name`.
    pub(super) fn args(&self, name: &str) -> Vec<&str> {
        self.args
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The JSON payload: the body itself, or a form's `payload` field.
    pub(super) fn payload(&self) -> Result<Value, HookError> {
        match self.content_type().as_str() {
            "application/json" => parse_json(self.body, "body"),
            "application/x-www-form-urlencoded" => {
                let payload = self
                    .arg("payload")
                    .ok_or_else(|| HookError::bad_request("the form has no 'payload' field"))?;
                parse_json(payload.as_bytes(), "'payload' field")
            }
            other => Err(HookError::bad_request(format!(
                "unknown content type '{other}' (send application/json or application/x-www-form-urlencoded)"
            ))),
        }
    }
}

fn parse_json(bytes: &[u8], what: &str) -> Result<Value, HookError> {
    serde_json::from_slice(bytes)
        .map_err(|error| HookError::bad_request(format!("the {what} is not JSON: {error}")))
}

/// The value at `path` (`["repository", "html_url"]`) of a payload.
pub(super) fn at<'v>(payload: &'v Value, path: &[&str]) -> Result<&'v Value, HookError> {
    let mut value = payload;
    for key in path {
        value = value.get(key).ok_or_else(|| {
            HookError::bad_request(format!("the payload has no '{}'", path.join(".")))
        })?;
    }
    Ok(value)
}

/// The string at `path` of a payload.
pub(super) fn text<'v>(payload: &'v Value, path: &[&str]) -> Result<&'v str, HookError> {
    at(payload, path)?.as_str().ok_or_else(|| {
        HookError::bad_request(format!(
            "the payload's '{}' is not a string",
            path.join(".")
        ))
    })
}

/// The list at `path` of a payload.
pub(super) fn list<'v>(payload: &'v Value, path: &[&str]) -> Result<&'v [Value], HookError> {
    at(payload, path)?
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| {
            HookError::bad_request(format!("the payload's '{}' is not a list", path.join(".")))
        })
}

/// The strings of the lists `keys` of `object` (a commit's `added`, `modified`,
/// `removed`), in that order; absent lists are empty.
pub(super) fn files_of(object: &Value, keys: &[&str]) -> Vec<String> {
    keys.iter()
        .filter_map(|key| object.get(key).and_then(Value::as_array))
        .flatten()
        .filter_map(|file| file.as_str().map(String::from))
        .collect()
}

/// `Name <email>` of a payload's `{name, email}` object.
pub(super) fn person(payload: &Value, path: &[&str]) -> Result<String, HookError> {
    let mut name_path = path.to_vec();
    name_path.push("name");
    let mut email_path = path.to_vec();
    email_path.push("email");
    Ok(format!(
        "{} <{}>",
        text(payload, &name_path)?,
        text(payload, &email_path)?
    ))
}

/// Seconds since the epoch of an ISO 8601 date (with `T` or a space, an offset or `Z`; a
/// date without one is taken as UTC), as `dateutil` reads what code hosts send.
pub(super) fn timestamp(value: &str) -> Result<f64, HookError> {
    let parsed = chrono::DateTime::parse_from_rfc3339(value)
        .map(|date| date.timestamp())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(&value.replace('T', " "), "%Y-%m-%d %H:%M:%S")
                .map(|date| date.and_utc().timestamp())
        })
        .map_err(|_| HookError::bad_request(format!("'{value}' is not a date")))?;
    Ok(parsed as f64)
}

/// A `codebase` option's value for `payload`: the name, or what the function answers.
pub(super) async fn codebase(
    ctx: &Context,
    codebase: Option<&HookCodebase>,
    payload: &Value,
) -> Result<String, HookError> {
    match codebase {
        None => Ok(String::new()),
        Some(HookCodebase::Name(name)) => Ok(name.clone()),
        Some(HookCodebase::Function(function)) => {
            let answer: Value = ctx
                .script
                .call(function, vec![Arg::Json(payload.clone())])
                .await
                .map_err(HookError::script)?;
            match answer {
                Value::String(name) => Ok(name),
                Value::Null => Ok(String::new()),
                other => Err(HookError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "{}: codebase function returned {other}, not a string",
                        function.location()
                    ),
                )),
            }
        }
    }
}

/// Calls a Lua event handler (the GitHub hook's `class`) with the payload and the event
/// name; it answers a list of Buildbot change dictionaries (`author`, `comments`,
/// `files`, `when_timestamp`, ...), or nil for none.
pub(super) async fn lua_changes(
    ctx: &Context,
    handler: &Callback,
    payload: &Value,
    event: &str,
) -> Result<Vec<ChangeSpec>, HookError> {
    let answer: Value = ctx
        .script
        .call(handler, vec![Arg::Json(payload.clone()), Arg::from(event)])
        .await
        .map_err(HookError::script)?;
    let wrong = |why: String| {
        HookError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{}: handler for '{event}' returned {why}",
                handler.location()
            ),
        )
    };
    let items = match answer {
        Value::Null => return Ok(Vec::new()),
        // An empty Lua table comes out as an empty object.
        Value::Object(object) if object.is_empty() => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => return Err(wrong(format!("{other}, not a list of changes"))),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, mut item)| {
            if let Some(files) = item.get_mut("files").filter(|f| **f == json!({})) {
                *files = json!([]);
            }
            serde_json::from_value::<ChangeMessage>(item)
                .map(|message| message.into_spec(None))
                .map_err(|error| wrong(format!("a change {} that is not one: {error}", index + 1)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_code_hosts_write_them() {
        assert_eq!(
            timestamp("2008-02-15T14:57:17-08:00").unwrap(),
            1203116237.0
        );
        assert_eq!(
            timestamp("2012-05-30 03:58:56+00:00").unwrap(),
            1338350336.0
        );
        assert_eq!(timestamp("2014-10-10T00:09:50Z").unwrap(), 1412899790.0);
        assert_eq!(timestamp("2012-05-30 05:58:56").unwrap(), 1338357536.0);
        assert!(timestamp("yesterday").is_err());
    }

    #[test]
    fn missing_payload_fields_are_named_by_their_path() {
        let payload = json!({"repository": {"name": 3}});
        assert_eq!(
            text(&payload, &["repository", "html_url"])
                .unwrap_err()
                .message,
            "the payload has no 'repository.html_url'"
        );
        assert_eq!(
            text(&payload, &["repository", "name"]).unwrap_err().message,
            "the payload's 'repository.name' is not a string"
        );
    }
}
