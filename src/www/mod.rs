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
use axum::routing::{any, get};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

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

/// Serves on `listener` until the master shuts down; requests under way are finished.
/// Each request is written to `http.log` (rotated as the config's first WebStatus says
/// when the server starts). The routes are made at once, while the master's start goes
/// on, and requests are taken once `started` is sent (the first ones wait in the listen
/// queue): an answer before then could show builders and workers the config has not
/// recorded yet. A start that fails drops `started`, and no request is taken.
pub async fn serve(
    context: Context,
    listener: TcpListener,
    started: oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    let shutdown = context.shutdown.clone();
    let address = listener.local_addr()?;
    let log = access_log::open(&context.basedir, &pages::web_config(&context))?;
    let app = router(context).layer(axum::middleware::from_fn_with_state(
        log,
        access_log::record,
    ));
    if started.await.is_err() {
        return Ok(());
    }
    tracing::info!(%address, "web server listening");
    http::serve_bounded(listener, app, shutdown).await;
    tracing::info!(%address, "web server stopped");
    Ok(())
}
