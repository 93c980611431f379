//! `status.PBListener`: a port where status clients (`moonbot statuslog`) follow the bus.
//!
//! Perspective Broker has no place in a Rust master; the option keeps its meaning with a
//! line protocol of ours over TCP. The client sends one line of JSON,
//! `{"user": ..., "passwd": ...}`; the master answers `{"ok": true}` and then writes every
//! bus event as a line `{"key": ..., "message": ...}` (and `{"lagged": N}` when the client
//! fell N events behind), or answers `{"error": ...}` and closes.

pub mod client;

use crate::runtime::secrets::same_secret;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::config::status::PbListenerConfig;
use crate::runtime::{Context, Reconfigured, Service};

/// How long a client may take to send its credentials.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest credentials line read.
const LOGIN_MAX: u64 = 4096;
/// How long writing one event may take before the client counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running PBListener: its accept loop.
pub struct PbListener {
    config: PbListenerConfig,
    credentials: watch::Sender<Credentials>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

#[derive(Clone)]
struct Credentials {
    user: String,
    passwd: String,
}

impl Service for PbListener {
    type Config = PbListenerConfig;

    fn name_of(config: &PbListenerConfig) -> &str {
        config.name.as_deref().unwrap_or("PBListener")
    }

    async fn start(ctx: &Context, config: &PbListenerConfig) -> anyhow::Result<PbListener> {
        let host = config.port.interface.as_deref().unwrap_or("0.0.0.0");
        let listener = TcpListener::bind((host, config.port.port))
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}: PBListener: cannot listen on {host}:{}: {e}",
                    config.location,
                    config.port.port
                )
            })?;
        let (credentials, watched) = watch::channel(credentials_of(config));
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept(listener, ctx.bus.clone(), watched, stop.clone()));
        Ok(PbListener {
            config: config.clone(),
            credentials,
            stop,
            task,
        })
    }

    /// New credentials apply to the next login; a new port needs a new listener.
    async fn reconfigure(
        &mut self,
        _: &Context,
        config: &PbListenerConfig,
    ) -> anyhow::Result<Reconfigured> {
        if config.port != self.config.port {
            return Ok(Reconfigured::NeedsRestart);
        }
        let unchanged = *config == self.config;
        self.credentials.send_replace(credentials_of(config));
        self.config = config.clone();
        Ok(match unchanged {
            true => Reconfigured::Unchanged,
            false => Reconfigured::Changed,
        })
    }

    /// Closes the port and every client's connection.
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn credentials_of(config: &PbListenerConfig) -> Credentials {
    Credentials {
        user: config.user.clone(),
        passwd: config.passwd.clone(),
    }
}

async fn accept(
    listener: TcpListener,
    bus: Bus,
    credentials: watch::Receiver<Credentials>,
    stop: CancellationToken,
) {
    let mut clients = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let credentials = credentials.borrow().clone();
                    clients.spawn(serve(stream, peer, bus.clone(), credentials, stop.clone()));
                }
                Err(error) => {
                    tracing::warn!("PBListener: accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
        }
    }
    clients.shutdown().await;
}

/// One client: its login, then the bus's events until it goes or the listener stops.
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    bus: Bus,
    credentials: Credentials,
    stop: CancellationToken,
) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(LOGIN_MAX);
    let login = tokio::time::timeout(LOGIN_TIMEOUT, reader.read_line(&mut line)).await;
    if !matches!(login, Ok(Ok(n)) if n > 0) {
        return;
    }
    let given: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
    let user = given["user"].as_str().unwrap_or("");
    let passwd = given["passwd"].as_str().unwrap_or("");
    // Both compared in full whatever the first gives, so the time says nothing of either.
    let user_ok = same_secret(user.as_bytes(), credentials.user.as_bytes());
    let passwd_ok = same_secret(passwd.as_bytes(), credentials.passwd.as_bytes());
    if !(user_ok & passwd_ok) {
        tracing::warn!("PBListener: {peer}: wrong user or password");
        let _ = write
            .write_all(b"{\"error\":\"wrong user or password\"}\n")
            .await;
        return;
    }
    let mut events = bus.subscribe();
    if write.write_all(b"{\"ok\":true}\n").await.is_err() {
        return;
    }
    // The client sends nothing more: reading tells when it closes.
    let mut rest = reader.into_inner();
    let mut sink = [0u8; 256];
    loop {
        let line = tokio::select! {
            () = stop.cancelled() => return,
            read = rest.read(&mut sink) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
            event = events.recv() => match event {
                Ok(event) => json!({"key": event.key, "message": event.message}),
                Err(broadcast::error::RecvError::Lagged(missed)) => json!({"lagged": missed}),
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        let mut text = line.to_string();
        text.push('\n');
        let written = tokio::time::timeout(WRITE_TIMEOUT, write.write_all(text.as_bytes())).await;
        if !matches!(written, Ok(Ok(()))) {
            return;
        }
    }
}
