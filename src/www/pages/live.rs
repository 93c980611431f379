//! Live updates: `/sse/listen/PATH` streams the bus's events under PATH as server-sent
//! events, `/ws` carries them in Buildbot's WebSocket protocol, and the compiled-in script
//! (`/moonbot.js`) makes pages follow them.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::Stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::Pages;

/// The script every page loads: pages that name an event path in `data-live` reload their
/// `<main>` when an event arrives under it, at most once a second.
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

pub async fn sse_listen(State(pages): State<Pages>, Path(path): Path<String>) -> impl IntoResponse {
    listen(pages, path)
}

pub async fn sse_listen_all(State(pages): State<Pages>) -> impl IntoResponse {
    listen(pages, String::new())
}

/// Events under `path` as `event: event` with `{"key": ..., "message": ...}`. A client too
/// slow for the bus gets `event: lagged` (it should reload what it shows) and goes on from
/// the newest events; the bus never waits for it.
fn listen(pages: Pages, path: String) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = pages.context.bus.subscribe();
    let shutdown = pages.context.shutdown.clone();
    let pattern: Vec<String> = path
        .split('/')
        .filter(|part| !part.is_empty())
        .map(str::to_string)
        .collect();
    let stream = futures_util::stream::unfold(
        (receiver, pattern, shutdown),
        |(mut receiver, pattern, shutdown)| async move {
            loop {
                let received = tokio::select! {
                    () = shutdown.cancelled() => return None,
                    received = receiver.recv() => received,
                };
                let event = match received {
                    Ok(event) => {
                        let wanted: Vec<&str> = pattern.iter().map(String::as_str).collect();
                        if !matches(&wanted, &event.key) {
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
                return Some((Ok(event), (receiver, pattern, shutdown)));
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

pub async fn ws(State(pages): State<Pages>, upgrade: WebSocketUpgrade) -> impl IntoResponse {
    upgrade.on_upgrade(move |socket| consume(pages, socket))
}

/// Buildbot's WebSocket protocol: `{"cmd": "ping" | "startConsuming" | "stopConsuming",
/// "path": ..., "_id": N}` answered `{"_id": N, "code": 200}` (or an error code and
/// message); events on the paths consumed (`*` matching any one segment, the whole key
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
        (Some("ping"), _) => json!({ "_id": id, "code": 200 }),
        (Some("startConsuming"), Some(path)) => {
            if !paths.contains(&path) {
                paths.push(path);
            }
            json!({ "_id": id, "code": 200 })
        }
        (Some("stopConsuming"), Some(path)) => {
            let before = paths.len();
            paths.retain(|p| *p != path);
            if paths.len() == before {
                json!({ "_id": id, "code": 400, "error": "path was not consumed" })
            } else {
                json!({ "_id": id, "code": 200 })
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
