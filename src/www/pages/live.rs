//! Live updates: `/sse/listen/PATH` streams the bus's events under PATH as server-sent
//! events, `/ws` carries them in Buildbot's WebSocket protocol, and the compiled-in script
//! (`/moonbot.js`) makes pages follow them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{Stream, StreamExt};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::Pages;

/// The script every page loads: pages that name an event path in `data-live` reload their
/// `<main>` when an event arrives under it, at most once a second but at once for a build's
/// start or end, and recolour a finished build's links as its event arrives.
pub const SCRIPT: &str = include_str!("templates/moonbot.js");

/// Whether an event key falls under a listened path: the key starts with the path's
/// segments, `*` matching any one segment (`builds/*/finished`).
pub fn matches(pattern: &[&str], key: &str) -> bool {
    let mut parts = key.split('/');
    pattern.iter().all(|want| {
        parts
            .next()
            .is_some_and(|part| *want == "*" || *want == part)
    })
}

/// The filters of each open `/sse/listen` stream, by the UUID its handshake gave, so that
/// `/sse/add` and `/sse/remove` can change them.
#[derive(Default)]
pub struct SseSessions(Mutex<HashMap<String, Filters>>);

/// One stream's paths, each a list of segments.
type Filters = Arc<Mutex<Vec<Vec<String>>>>;

/// Removes a stream's session when the stream is dropped (the client went away).
struct SessionGuard {
    sessions: Arc<SseSessions>,
    uuid: String,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        lock(&self.sessions.0).remove(&self.uuid);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|part| !part.is_empty())
        .map(str::to_string)
        .collect()
}

/// A random version 4 UUID.
fn new_uuid() -> String {
    let bytes: [u8; 16] = std::array::from_fn(|i| match i {
        6 => 0x40 | (fastrand::u8(..) & 0x0f),
        8 => 0x80 | (fastrand::u8(..) & 0x3f),
        _ => fastrand::u8(..),
    });
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

pub async fn sse_listen(State(pages): State<Pages>, Path(path): Path<String>) -> impl IntoResponse {
    listen(pages, Some(segments(&path)))
}

/// `/sse/listen` without a path: nothing until `/sse/add` names a path.
pub async fn sse_listen_all(State(pages): State<Pages>) -> impl IntoResponse {
    listen(pages, None)
}

/// `/sse/add/UUID/PATH`: the stream of that handshake also carries events under PATH.
pub async fn sse_add(
    State(pages): State<Pages>,
    Path((uuid, path)): Path<(String, String)>,
) -> Response {
    change_filters(&pages, &uuid, |filters| {
        let path = segments(&path);
        if !filters.contains(&path) {
            filters.push(path);
        }
        Ok(())
    })
}

/// `/sse/remove/UUID/PATH`: the stream of that handshake no longer carries PATH's events.
pub async fn sse_remove(
    State(pages): State<Pages>,
    Path((uuid, path)): Path<(String, String)>,
) -> Response {
    change_filters(&pages, &uuid, |filters| {
        let path = segments(&path);
        let before = filters.len();
        filters.retain(|p| *p != path);
        if filters.len() == before {
            Err((StatusCode::BAD_REQUEST, "path was not consumed".to_string()))
        } else {
            Ok(())
        }
    })
}

/// Applies `change` to a session's filters: `200 {"msg": "OK"}`, or a status and
/// `{"error": ...}`.
fn change_filters(
    pages: &Pages,
    uuid: &str,
    change: impl FnOnce(&mut Vec<Vec<String>>) -> Result<(), (StatusCode, String)>,
) -> Response {
    let filters = lock(&pages.sse.0).get(uuid).cloned();
    let outcome = match filters {
        Some(filters) => change(&mut lock(&filters)),
        None => Err((
            StatusCode::NOT_FOUND,
            format!("no event stream '{uuid}' (it closed, or never was)"),
        )),
    };
    match outcome {
        Ok(()) => (StatusCode::OK, Json(json!({ "msg": "OK" }))).into_response(),
        Err((status, error)) => (status, Json(json!({ "error": error }))).into_response(),
    }
}

/// Starts with `event: handshake` carrying the stream's UUID, then sends events under any
/// of its paths as `event: event` with `{"key": ..., "message": ...}`. A client too slow
/// for the bus gets `event: lagged` (it should reload what it shows) and goes on from the
/// newest events; the bus never waits for it.
fn listen(
    pages: Pages,
    first: Option<Vec<String>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = pages.context.bus.subscribe();
    let shutdown = pages.context.shutdown.clone();
    let uuid = new_uuid();
    let filters: Filters = Arc::new(Mutex::new(first.into_iter().collect()));
    lock(&pages.sse.0).insert(uuid.clone(), filters.clone());
    let guard = SessionGuard {
        sessions: pages.sse.clone(),
        uuid: uuid.clone(),
    };
    let handshake =
        futures_util::stream::once(
            async move { Ok(Event::default().event("handshake").data(uuid)) },
        );
    let events = futures_util::stream::unfold(
        (receiver, filters, shutdown, guard),
        |(mut receiver, filters, shutdown, guard)| async move {
            loop {
                let received = tokio::select! {
                    () = shutdown.cancelled() => return None,
                    received = receiver.recv() => received,
                };
                let event = match received {
                    Ok(event) => {
                        let wanted = lock(&filters).iter().any(|path| {
                            let path: Vec<&str> = path.iter().map(String::as_str).collect();
                            matches(&path, &event.key)
                        });
                        if !wanted {
                            continue;
                        }
                        let data = json!({ "key": event.key, "message": event.message });
                        Event::default().event("event").data(data.to_string())
                    }
                    Err(RecvError::Lagged(missed)) => Event::default()
                        .event("lagged")
                        .data(json!({ "missed": missed }).to_string()),
                    Err(RecvError::Closed) => return None,
                };
                return Some((Ok(event), (receiver, filters, shutdown, guard)));
            }
        },
    );
    Sse::new(handshake.chain(events)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

pub async fn ws(State(pages): State<Pages>, upgrade: WebSocketUpgrade) -> impl IntoResponse {
    upgrade.on_upgrade(move |socket| consume(pages, socket))
}

/// Buildbot's WebSocket protocol: `{"cmd": "ping" | "startConsuming" | "stopConsuming",
/// "path": ..., "_id": N}` answered `{"_id": N, "msg": "pong" | "OK", "code": 200}` (or an
/// error code and message); events on the paths consumed (`*` matching any one segment, the whole key
/// matched) sent as `{"k": KEY, "m": MESSAGE}`. A client too slow for the bus is sent
/// `{"k": "lagged", "m": {"missed": N}}` and goes on from the newest events.
async fn consume(pages: Pages, mut socket: WebSocket) {
    let mut receiver = pages.context.bus.subscribe();
    let shutdown = pages.context.shutdown.clone();
    let mut paths: Vec<Vec<String>> = Vec::new();
    loop {
        let outgoing = tokio::select! {
            () = shutdown.cancelled() => break,
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => answer(&mut paths, text.as_str()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => continue,
            },
            received = receiver.recv() => match received {
                Ok(event) => {
                    let parts: Vec<&str> = event.key.split('/').collect();
                    let wanted = paths.iter().any(|path| {
                        path.len() == parts.len()
                            && path.iter().zip(&parts).all(|(w, p)| w == "*" || w == p)
                    });
                    if !wanted {
                        continue;
                    }
                    json!({ "k": event.key, "m": event.message })
                }
                Err(RecvError::Lagged(missed)) => json!({ "k": "lagged", "m": { "missed": missed } }),
                Err(RecvError::Closed) => break,
            },
        };
        if socket
            .send(Message::Text(outgoing.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
}

/// The answer to one command of a `/ws` client.
fn answer(paths: &mut Vec<Vec<String>>, text: &str) -> serde_json::Value {
    let Ok(command) = serde_json::from_str::<serde_json::Value>(text) else {
        return json!({ "code": 400, "error": "not a JSON object" });
    };
    let id = command["_id"].clone();
    let path = command["path"].as_str().map(|p| {
        p.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    });
    match (command["cmd"].as_str(), path) {
        (Some("ping"), _) => json!({ "_id": id, "msg": "pong", "code": 200 }),
        (Some("startConsuming"), Some(path)) => {
            if !paths.contains(&path) {
                paths.push(path);
            }
            json!({ "_id": id, "msg": "OK", "code": 200 })
        }
        (Some("stopConsuming"), Some(path)) => {
            let before = paths.len();
            paths.retain(|p| *p != path);
            if paths.len() == before {
                json!({ "_id": id, "code": 400, "error": "path was not consumed" })
            } else {
                json!({ "_id": id, "msg": "OK", "code": 200 })
            }
        }
        (Some("startConsuming" | "stopConsuming"), None) => {
            json!({ "_id": id, "code": 400, "error": "'path' is required" })
        }
        (Some(other), _) => {
            json!({ "_id": id, "code": 404, "error": format!("no such command '{other}'") })
        }
        (None, _) => json!({ "_id": id, "code": 400, "error": "'cmd' is required" }),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn paths_match_key_prefixes_with_wildcard_segments() {
        assert!(matches(&["builds", "7"], "builds/7/steps/3/finished"));
        assert!(matches(&["builds", "*", "finished"], "builds/7/finished"));
        assert!(!matches(&["builds", "7"], "builds/71/finished"));
        assert!(!matches(&["builds", "7", "steps"], "builds/7"));
        assert!(matches(&[], "changes/1/new"));
    }
}
