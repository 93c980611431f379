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

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

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

/// How long after a start's gate opens a request still counts among the start's first
/// ([`start_gate`]): a probe that found the port accepting sends its request about as the
/// gate opens, and the work the start leaves for later waits for it too, rather than take
/// the database's connection before it.
pub const FIRST_REQUESTS: Duration = Duration::from_millis(5);

/// The master's side of the web server's gate during a start: requests are taken and
/// held until it opens (see [`serve`]).
pub struct StartGate {
    started: oneshot::Sender<()>,
    opened: Arc<OnceLock<Instant>>,
    first: watch::Receiver<FirstRequests>,
    window: Duration,
}

/// The web server's side of the [`StartGate`]: whether the master has started, when, and
/// the start's first requests.
#[derive(Clone)]
pub struct Held {
    started: Shared<oneshot::Receiver<()>>,
    opened: Arc<OnceLock<Instant>>,
    first: Arc<watch::Sender<FirstRequests>>,
    window: Duration,
}

/// The requests taken before the gate opened or within its window after.
#[derive(Clone, Copy, Debug, Default)]
struct FirstRequests {
    /// Those without their response yet.
    unanswered: usize,
    /// Whether there was any.
    taken: bool,
}

/// A closed gate, and the web server's side of it; a request taken within `window` after
/// the gate opens ([`FIRST_REQUESTS`] for a master) is one of the start's first.
pub fn start_gate(window: Duration) -> (StartGate, Held) {
    let (started, started_receiver) = oneshot::channel();
    let (first, first_receiver) = watch::channel(FirstRequests::default());
    let opened = Arc::new(OnceLock::new());
    let gate = StartGate {
        started,
        opened: opened.clone(),
        first: first_receiver,
        window,
    };
    let server_side = Held {
        started: started_receiver.shared(),
        opened,
        first: Arc::new(first),
        window,
    };
    (gate, server_side)
}

impl StartGate {
    /// Lets the held requests through, at once. Dropping the gate unopened (a start that
    /// failed) answers them 503.
    pub fn open(self) -> Answered {
        let opened = Instant::now();
        let _ = self.opened.set(opened);
        let _ = self.started.send(());
        Answered {
            first: self.first,
            window_ends: opened + self.window,
        }
    }
}

/// When the start's first requests are answered: those held through the start and those
/// taken within the gate's window after it (and when none came, once that has passed).
/// The work a start leaves for later waits for it rather than take the database's
/// connection before them. A request counts as answered once it has its response, so a
/// stream or a WebSocket does not keep it.
#[derive(Clone)]
pub struct Answered {
    first: watch::Receiver<FirstRequests>,
    window_ends: Instant,
}

impl Answered {
    pub async fn wait(mut self) {
        let window = tokio::time::sleep_until(self.window_ends.into());
        let answered = |first: &FirstRequests| first.unanswered == 0;
        tokio::select! {
            _ = self.first.wait_for(|first| first.taken && answered(first)) => return,
            () = window => {}
        }
        let _ = self.first.wait_for(answered).await;
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

/// Holds a request until the master has started, counted among the start's first
/// requests until it has its response (see [`Answered`]); after a failed start, answers
/// 503.
async fn after_start(State(held): State<Held>, request: Request, next: Next) -> Response {
    let first = held
        .opened
        .get()
        .is_none_or(|opened| opened.elapsed() < held.window);
    let _counted = first.then(|| Counted::new(held.first.clone()));
    match held.started.clone().await {
        Ok(()) => next.run(request).await,
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "the master failed to start"})),
        )
            .into_response(),
    }
}

/// One of the start's first requests, counted while it lives: a client that goes away, or
/// a handler that panics, is counted out as well.
struct Counted(Arc<watch::Sender<FirstRequests>>);

impl Counted {
    fn new(first: Arc<watch::Sender<FirstRequests>>) -> Counted {
        first.send_modify(|first| {
            first.unanswered += 1;
            first.taken = true;
        });
        Counted(first)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.send_modify(|first| first.unanswered -= 1);
    }
}
