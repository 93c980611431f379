//! Live updates: `/sse/listen/PATH` streams the bus's events under PATH as server-sent
//! events, and the compiled-in script (`/moonbot.js`) makes pages follow them.

use std::convert::Infallible;
use std::time::Duration;

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
