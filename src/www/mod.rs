//! The web server: the WebStatus pages (see [`pages`]), Buildbot's REST API under
//! `/api/v2/` (see [`rest`]) and the change hooks under `/change_hook/` (see [`hooks`]),
//! on the port of the config's first WebStatus (or `c['www']`); every request but the
//! hooks' (which have their own `change_hook_auth`) through the [`auth`] guard.

mod access_log;
mod auth;
mod hooks;
mod pages;
mod paths;
mod rest;
mod sources;

use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use futures_util::future::{FutureExt, Shared};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::config::status::StatusTarget;
use crate::runtime::{http, Context};

/// Binds the web server's port, or `None` when the config has no web server.
pub async fn bind(context: &Context) -> anyhow::Result<Option<TcpListener>> {
    let Some(port) = context
        .config
        .current()
        .status
        .iter()
        .find_map(|target| match target {
            StatusTarget::WebStatus(web) => web.http_port.clone(),
            _ => None,
        })
    else {
        return Ok(None);
    };
    let host = port.interface.as_deref().unwrap_or("0.0.0.0");
    let listener = TcpListener::bind((host, port.port))
        .await
        .with_context(|| format!("cannot listen on {port} for the web server"))?;
    Ok(Some(listener))
}

/// The routes, sharing the master's context and the sessions, behind the guard.
pub fn router(context: Context) -> Router {
    let gate = auth::Gate {
        context,
        sessions: Arc::new(auth::Sessions::new()),
    };
    Router::new()
        .route("/api/v2/{*path}", get(rest::get).post(rest::post))
        .with_state(gate.context.clone())
        .merge(pages::router(gate.clone()))
        .layer(axum::middleware::from_fn_with_state(
            gate.clone(),
            auth::guard,
        ))
        .merge(hooks::router(gate.context.clone()))
        .merge(
            Router::new()
                .route("/change_source/{name}", any(sources::root))
                .route("/change_source/{name}/{*path}", any(sources::below))
                .with_state(gate.context),
        )
}

/// The master's side of the web server's gate during a start: requests are taken and
/// held until it opens (see [`serve`]).
pub struct StartGate {
    started: oneshot::Sender<()>,
    held: watch::Receiver<usize>,
}

/// The web server's side of the [`StartGate`]: whether the master has started, and how
/// many requests taken before are not answered yet.
#[derive(Clone)]
pub struct Held {
    started: Shared<oneshot::Receiver<()>>,
    count: Arc<watch::Sender<usize>>,
}

/// A closed gate, and the web server's side of it.
pub fn start_gate() -> (StartGate, Held) {
    let (started, started_receiver) = oneshot::channel();
    let (count, held) = watch::channel(0);
    let gate = StartGate { started, held };
    let server_side = Held {
        started: started_receiver.shared(),
        count: Arc::new(count),
    };
    (gate, server_side)
}

impl StartGate {
    /// Lets the held requests through, at once. Dropping the gate unopened (a start that
    /// failed) answers them 503.
    pub fn open(self) -> Answered {
        let _ = self.started.send(());
        Answered(self.held)
    }
}

/// When the requests held through a start are answered: the work a start leaves for later
/// waits for it rather than take the database's connection before them. A request counts
/// as answered once it has its response, so a stream or a WebSocket does not keep it.
#[derive(Clone)]
pub struct Answered(watch::Receiver<usize>);

impl Answered {
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|count| *count == 0).await;
    }
}

/// Serves on `listener` until the master shuts down; requests under way are finished.
/// Each request is written to `http.log` (rotated as the config's first WebStatus says
/// when the server starts). Connections are taken and requests read at once, while the
/// master's start goes on, but each is answered only once the start's gate opens: an
/// answer before then could show builders and workers the config has not recorded yet. A
/// start that fails drops its gate: the requests taken are answered 503 and the server
/// stops.
pub async fn serve(context: Context, listener: TcpListener, held: Held) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    let log = access_log::open(&context.basedir, &pages::web_config(&context))?;
    let stop = context.shutdown.child_token();
    let started = held.started.clone();
    let app = router(context)
        .layer(axum::middleware::from_fn_with_state(held, after_start))
        .layer(axum::middleware::from_fn_with_state(
            log,
            access_log::record,
        ));
    let serving = http::serve_bounded(listener, app, stop.clone());
    tokio::pin!(serving);
    tokio::select! {
        () = &mut serving => return Ok(()),
        outcome = started => match outcome {
            Ok(()) => tracing::info!(%address, "web server listening"),
            Err(_) => stop.cancel(),
        },
    }
    serving.await;
    tracing::info!(%address, "web server stopped");
    Ok(())
}

/// Holds a request until the master has started, counted among the held ones until it
/// has its response (see [`StartGate::open`]); after a failed start, answers 503.
async fn after_start(State(held): State<Held>, request: Request, next: Next) -> Response {
    let _counted = held
        .started
        .peek()
        .is_none()
        .then(|| Counted::new(held.count.clone()));
    match held.started.clone().await {
        Ok(()) => next.run(request).await,
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "the master failed to start"})),
        )
            .into_response(),
    }
}

/// One held request, counted while it lives: a client that goes away, or a handler that
/// panics, is counted out as well.
struct Counted(Arc<watch::Sender<usize>>);

impl Counted {
    fn new(count: Arc<watch::Sender<usize>>) -> Counted {
        count.send_modify(|count| *count += 1);
        Counted(count)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.send_modify(|count| *count -= 1);
    }
}
