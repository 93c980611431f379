//! The HTTP server every listening service shares (the web server, a PBChangeSource):
//! many masters face their network with no proxy in front, so every connection is bounded.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{service_fn, Service as _};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How long a client may take to send a request's headers; an idle keep-alive connection
/// is closed after as long without a new request.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections served at once; further ones wait in the listen backlog until one ends.
pub const MAX_CONNECTIONS: usize = 1024;

/// The largest request body (axum's default limit).
const MAX_BODY: usize = 2 * 1024 * 1024;

/// Serves `app` with every connection bounded: headers within [`HEADER_TIMEOUT`], bodies within [`BODY_TIMEOUT`],
/// at most [`MAX_CONNECTIONS`] at once. At `shutdown` it stops accepting, closes idle
/// connections and lets requests under way finish.
pub async fn serve_bounded(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let app = app.layer(axum::middleware::from_fn(read_body_in_time));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let mut warned_full: Option<tokio::time::Instant> = None;
    loop {
        if slots.available_permits() == 0
            && warned_full.is_none_or(|at| at.elapsed() >= Duration::from_secs(60))
        {
            tracing::warn!("the web server holds {MAX_CONNECTIONS} connections; new ones wait");
            warned_full = Some(tokio::time::Instant::now());
        }
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, most likely: give connections time to end.
                    tracing::warn!(%error, "the web server cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Responses go out as written: an event stream's small writes would otherwise wait
        // (Nagle) for the client's delayed ACK of the one before, up to 40 ms and more.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on a web connection");
        }
        let app = TowerToHyperService::new(app.clone());
        // The client's address, for handlers and the access log (`ConnectInfo`).
        let service = service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.call(request)
        });
        // Upgrades: `/ws` turns a request into a WebSocket, which then lives on its own.
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%error, "http connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    // Each connection holds a slot until it ends: all of them back, all ended.
    let _ = slots.acquire_many(MAX_CONNECTIONS as u32).await;
}

/// Reads a request's whole body before the handler runs, so that a client trickling it is
/// answered 408 after [`BODY_TIMEOUT`] and the connection closed.
async fn read_body_in_time(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await;
    let (status, message) = match read {
        Ok(Ok(body)) => {
            let request = Request::from_parts(parts, Body::from(body.to_bytes()));
            return next.run(request).await;
        }
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not received within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        ),
        Ok(Err(error)) if error.is::<LengthLimitError>() => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {MAX_BODY} bytes"),
        ),
        Ok(Err(_)) => (
            StatusCode::BAD_REQUEST,
            "cannot read the request body".to_string(),
        ),
    };
    let headers = [
        (header::CONTENT_TYPE, "application/json; charset=utf-8"),
        (header::CONNECTION, "close"),
    ];
    (status, headers, json!({ "error": message }).to_string()).into_response()
}
