//! `changes.PBChangeSource`: accepts changes that `moonbot sendchange` (or any HTTP client)
//! sends. Buildbot speaks Perspective Broker here; we speak HTTP: `POST /changes` with the
//! change as JSON (Buildbot's change dictionary: `who`, `files`, `comments`, ...) and HTTP
//! Basic auth with the source's `user` and `passwd`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::build::PbChangeSource;
use crate::config::PortSpec;
use crate::db::ChangeSpec;
use crate::runtime::{http, Context};

/// The path changes are posted to.
pub const CHANGES_PATH: &str = "/changes";

/// A change on the wire: the dictionary Buildbot's `sendchange` client sends, with the
/// names its master also accepts (`author`, `when_timestamp`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeMessage {
    #[serde(alias = "author")]
    pub who: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committer: Option<String>,
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub comments: String,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    /// Seconds since the epoch; absent for now.
    #[serde(default, alias = "when_timestamp")]
    pub when: Option<f64>,
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
    #[serde(default)]
    pub repository: String,
    #[serde(default)]
    pub project: String,
    #[serde(default)]
    pub revlink: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codebase: Option<String>,
    /// The version control system (`git`, `svn`, ...), Buildbot's `src`.
    #[serde(default, rename = "src")]
    pub vc: Option<String>,
}

impl ChangeMessage {
    /// The change to store. With a `prefix`, only files under it are kept, with the prefix
    /// removed; a change left without files is still a change (as in Buildbot).
    pub fn into_spec(self, prefix: Option<&str>) -> ChangeSpec {
        let files = match prefix.filter(|p| !p.is_empty()) {
            Some(prefix) => self
                .files
                .iter()
                .filter_map(|f| f.strip_prefix(prefix).map(String::from))
                .collect(),
            None => self.files,
        };
        ChangeSpec {
            author: self.who,
            committer: self.committer.filter(|c| !c.is_empty()),
            comments: self.comments,
            branch: self.branch,
            revision: self.revision,
            revlink: self.revlink,
            when: self.when,
            category: self.category,
            repository: self.repository,
            codebase: self.codebase.unwrap_or_default(),
            project: self.project,
            files,
            properties: self
                .properties
                .into_iter()
                .map(|(name, value)| (name, value, "Change".to_string()))
                .collect(),
        }
    }
}

struct Listener {
    ctx: Context,
    /// The source's current config: a reconfig changes the credentials and the prefix
    /// without closing the port.
    source: watch::Receiver<PbChangeSource>,
}

/// The HTTP routes of one PBChangeSource, to serve on its own port or to mount on another
/// server (the workers' port, which a PBChangeSource without `port` shares in Buildbot).
pub fn router(ctx: Context, source: watch::Receiver<PbChangeSource>) -> Router {
    Router::new()
        .route(CHANGES_PATH, post(add_change))
        .with_state(Arc::new(Listener { ctx, source }))
}

/// The port the source listens on: its own, or the workers' when it has none.
pub(super) fn port_of(ctx: &Context, source: &PbChangeSource) -> anyhow::Result<PortSpec> {
    source
        .port
        .clone()
        .or_else(|| ctx.config.current().worker_port.clone())
        .with_context(|| {
            format!(
                "{}: no port specified, and no worker port configured",
                source.name
            )
        })
}

/// Binds `port` and serves the source whose config `updates` holds until `stop`.
pub(super) async fn serve(
    ctx: Context,
    port: &PortSpec,
    updates: watch::Receiver<PbChangeSource>,
    stop: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let source = updates.borrow().clone();
    let interface = port.interface.as_deref().unwrap_or("0.0.0.0");
    let listener = TcpListener::bind((interface, port.port))
        .await
        .with_context(|| format!("{}: cannot listen on {port}", source.name))?;
    let addr = listener.local_addr()?;
    tracing::info!(source = %source.name, "PBChangeSource listening on {addr}");
    let app = router(ctx, updates);
    let name = source.name.clone();
    let task = tokio::spawn(async move {
        http::serve_bounded(listener, app, stop).await;
        tracing::info!(source = %name, "PBChangeSource stopped");
    });
    Ok((addr, task))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn add_change(
    State(listener): State<Arc<Listener>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let source = listener.source.borrow().clone();
    if !authorized(&headers, &source.user, &source.passwd) {
        let mut response = error(StatusCode::UNAUTHORIZED, "bad username or password");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"moonbot changes\""),
        );
        return response;
    }
    let message: ChangeMessage = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad change: {e}")),
    };
    let spec = message.into_spec(source.prefix.as_deref());
    if spec.files.is_empty() {
        tracing::info!(source = %source.name, "no files listed in the change; adding it anyway");
    }
    match super::submit(&listener.ctx, spec).await {
        Ok(id) => Json(json!({ "changeid": id })).into_response(),
        Err(e) => {
            tracing::error!(source = %source.name, "{e:#}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "cannot store the change")
        }
    }
}

/// HTTP Basic credentials equal to `user`/`passwd`, compared without an early exit.
fn authorized(headers: &HeaderMap, user: &str, passwd: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .unwrap_or_default();
    let expected = format!("{user}:{passwd}").into_bytes();
    given.len() == expected.len()
        && given
            .iter()
            .zip(&expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_keeps_files_under_it_without_the_prefix() {
        let message = ChangeMessage {
            who: "bob".into(),
            files: vec![
                "trunk/a.c".into(),
                "branches/x/b.c".into(),
                "trunk/d/e.c".into(),
            ],
            properties: BTreeMap::from([("ticket".to_string(), Value::from(3))]),
            ..ChangeMessage::default()
        };
        let spec = message.clone().into_spec(Some("trunk/"));
        assert_eq!(spec.files, vec!["a.c", "d/e.c"]);
        assert_eq!(
            spec.properties,
            vec![("ticket".to_string(), Value::from(3), "Change".to_string())]
        );
        assert_eq!(message.clone().into_spec(Some("")).files.len(), 3);
        assert!(message.into_spec(Some("tags/")).files.is_empty());
    }

    #[test]
    fn the_wire_form_is_buildbots_change_dictionary() {
        let message: ChangeMessage = serde_json::from_str(
            r#"{"author": "amy", "when_timestamp": 5, "src": "git", "files": ["f"]}"#,
        )
        .unwrap();
        assert_eq!(message.who, "amy");
        assert_eq!(message.when, Some(5.0));
        assert_eq!(message.vc.as_deref(), Some("git"));
        let unknown = serde_json::from_str::<ChangeMessage>(r#"{"who": "amy", "colour": 1}"#);
        assert!(unknown.unwrap_err().to_string().contains("colour"));
    }

    #[test]
    fn basic_auth_must_match_exactly() {
        let mut headers = HeaderMap::new();
        assert!(!authorized(&headers, "change", "changepw"));
        let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {}", encode("change:changepw"))
                .parse()
                .unwrap(),
        );
        assert!(authorized(&headers, "change", "changepw"));
        assert!(!authorized(&headers, "change", "changepx"));
        assert!(!authorized(&headers, "chang", "e:changepw2"));
    }
}
