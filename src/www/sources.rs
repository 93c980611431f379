//! `/change_source/NAME[/PATH]`: requests for a change source written in Lua, handed to its
//! `handleRequest` (see [`crate::runtime::endpoints`]).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tokio::sync::oneshot;

use crate::runtime::{Context, SourceRequest};

/// Longer than a handler may run in Lua, plus what it may wait on.
const ANSWER_WAIT: Duration = Duration::from_secs(120);

pub async fn root(
    state: State<Context>,
    Path(name): Path<String>,
    method: Method,
    query: RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, name, "/".into(), method, query, headers, body).await
}

pub async fn below(
    state: State<Context>,
    Path((name, path)): Path<(String, String)>,
    method: Method,
    query: RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(
        state,
        name,
        format!("/{path}"),
        method,
        query,
        headers,
        body,
    )
    .await
}

async fn handle(
    State(ctx): State<Context>,
    name: String,
    path: String,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let error = |status: StatusCode, message: String| (status, Json(json!({"error": message})));
    let Some(source) = ctx.source_endpoints.get(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no change source named '{name}' takes requests"),
        )
        .into_response();
    };
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "the request body is not UTF-8 text".into(),
        )
        .into_response();
    };
    let headers: BTreeMap<String, String> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let (reply, answer) = oneshot::channel();
    let request = SourceRequest {
        method: method.to_string(),
        path,
        query: query.unwrap_or_default(),
        headers,
        body,
        reply,
    };
    if source.send(request).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("change source '{name}' is stopping"),
        )
        .into_response();
    }
    let response = match tokio::time::timeout(ANSWER_WAIT, answer).await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("change source '{name}' stopped before answering"),
            )
            .into_response()
        }
        Err(_) => {
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                format!("change source '{name}' did not answer in {ANSWER_WAIT:?}"),
            )
            .into_response()
        }
    };
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    let mut out = (status, response.body).into_response();
    for (name, value) in response.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            out.headers_mut().insert(name, value);
        }
    }
    out
}
