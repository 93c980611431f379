//! The msgpack port: WebSocket upgrades authenticated with HTTP Basic auth against the
//! running config's workers, the handshake, then the connection handed to the engine.

use crate::runtime::secrets::same_secret;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use super::quick_ack::QuickAck;
use super::Connection;
use crate::config::build::WorkerKind;
use crate::config::PortSpec;
use crate::runtime::SharedConfig;

/// The biggest message a worker may send: output comes in 64 KiB buffers, file transfers
/// in blocks the master asks for, so anything this big is a fault.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// How long a worker gets for the upgrade and the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections in the upgrade or the handshake at once; more are closed as they come, so
/// sockets that never authenticate cannot pile up (attached workers do not count).
const MAX_HANDSHAKES: usize = 64;

pub async fn bind(port: &PortSpec) -> std::io::Result<TcpListener> {
    let interface = port.interface.as_deref().unwrap_or("0.0.0.0");
    TcpListener::bind((interface, port.port)).await
}

/// Accepts workers until `shutdown`; each authenticated, handshaken connection is sent to
/// `attached`.
pub async fn serve(
    listener: TcpListener,
    config: SharedConfig,
    attached: mpsc::Sender<Connection>,
    shutdown: CancellationToken,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("cannot accept a worker connection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "worker connection refused: {MAX_HANDSHAKES} connections are in their handshake already");
            drop(stream);
            continue;
        };
        let config = config.clone();
        let attached = attached.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept(stream, &config)).await {
                Ok(Ok(connection)) => {
                    let _ = attached.send(connection).await;
                }
                Ok(Err(why)) => tracing::warn!(%peer, "worker connection refused: {why}"),
                Err(_) => {
                    tracing::warn!(%peer, "worker connection refused: no handshake within {HANDSHAKE_TIMEOUT:?}")
                }
            }
        });
    }
}

// tungstenite's upgrade callback returns its own (large) `ErrorResponse`.
#[allow(clippy::result_large_err)]
async fn accept(stream: TcpStream, config: &SharedConfig) -> Result<Connection, String> {
    // Every message is a small frame answered by the other side: without this, Nagle's
    // algorithm holds a frame back until the worker's delayed ACK (40 ms on Linux).
    stream
        .set_nodelay(true)
        .map_err(|e| format!("cannot set TCP_NODELAY: {e}"))?;
    let mut name = None;
    let check = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        match authenticate(request, config) {
            Ok(worker) => {
                name = Some(worker);
                Ok(response)
            }
            Err(why) => {
                let mut refusal = ErrorResponse::new(Some(why));
                *refusal.status_mut() = StatusCode::UNAUTHORIZED;
                refusal.headers_mut().insert(
                    "WWW-Authenticate",
                    "Basic realm=\"buildbot\"".parse().expect("a valid header"),
                );
                Err(refusal)
            }
        }
    };
    let limits = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let stream = QuickAck::new(stream);
    let socket = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(limits))
        .await
        .map_err(|e| e.to_string())?;
    let name = name.expect("an accepted upgrade was authenticated");
    let connection = Connection::start(name.clone(), socket);
    if let Err(error) = connection.handshake().await {
        connection.close();
        return Err(format!("worker '{name}': handshake failed: {error}"));
    }
    Ok(connection)
}

/// The worker an upgrade request's Basic credentials name, if its password is right.
fn authenticate(request: &Request, config: &SharedConfig) -> Result<String, String> {
    let header = request
        .headers()
        .get("Authorization")
        .and_then(|value| value.to_str().ok())
        .ok_or("no Authorization header")?;
    let encoded = header
        .strip_prefix("Basic ")
        .ok_or("the Authorization header is not Basic")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| "the Authorization header is not base64")?;
    let decoded = String::from_utf8(decoded).map_err(|_| "the credentials are not UTF-8")?;
    let (name, password) = decoded
        .split_once(':')
        .ok_or("the credentials have no ':'")?;
    let config = config.current();
    let expected = config.workers.iter().find_map(|worker| match &worker.kind {
        WorkerKind::Remote { password } if worker.name == name => Some(password.clone()),
        _ => None,
    });
    // Compared in full whether or not the name is known, so timing tells nothing.
    let known = expected.is_some();
    let matches = same_secret(
        password.as_bytes(),
        expected.as_deref().unwrap_or("").as_bytes(),
    );
    if known && matches {
        Ok(name.to_string())
    } else {
        Err(format!("wrong name or password for worker '{name}'"))
    }
}
