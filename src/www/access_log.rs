//! `http.log`: one line per request in the base directory, apart from the master's log, as
//! Buildbot's WebStatus keeps it; rotated by `rotateLength` (10 MB unless given) keeping
//! `maxRotatedFiles` (10) older files.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::Body as _;

use crate::config::status::WebStatusConfig;
use crate::runtime::RotatingLog;

/// The access log's file name, in the base directory.
pub const HTTP_LOG: &str = "http.log";

pub type AccessLog = Arc<Mutex<RotatingLog>>;

/// Opens `http.log` with the web server's rotation options.
pub fn open(basedir: &std::path::Path, web: &WebStatusConfig) -> anyhow::Result<AccessLog> {
    let log = RotatingLog::open(
        basedir.join(HTTP_LOG),
        web.rotate_length.unwrap_or(RotatingLog::DEFAULT_MAX_BYTES),
        web.max_rotated_files
            .map_or(RotatingLog::DEFAULT_KEEP, |n| n as usize),
    )?;
    Ok(Arc::new(Mutex::new(log)))
}

/// Writes a request's line once its response is made, in the combined log format:
/// `ADDR - - [TIME] "METHOD PATH VERSION" STATUS BYTES "REFERER" "AGENT"`.
pub async fn record(State(log): State<AccessLog>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "-".to_string(), |ConnectInfo(a)| a.ip().to_string());
    // Read before the await: a borrow of the request held across it would make the
    // future not `Send` (a body is not `Sync`).
    let (referer, agent, line) = {
        let header_of = |name: header::HeaderName| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .replace('"', "%22")
        };
        let line = format!(
            "{} {} {:?}",
            request.method(),
            request.uri().path_and_query().map_or("/", |p| p.as_str()),
            request.version()
        );
        (
            header_of(header::REFERER),
            header_of(header::USER_AGENT),
            line,
        )
    };
    let response = next.run(request).await;
    // Known for a whole body; a streamed one (a log's text, events) is written `-`.
    let bytes = response
        .body()
        .size_hint()
        .exact()
        .map_or_else(|| "-".to_string(), |n| n.to_string());
    let entry = format!(
        "{peer} - - [{}] \"{line}\" {} {bytes} \"{referer}\" \"{agent}\"\n",
        chrono::Utc::now().format("%d/%b/%Y:%H:%M:%S +0000"),
        response.status().as_u16(),
    );
    let written = log
        .lock()
        .map_err(|_| std::io::Error::other("the log's lock is poisoned"))
        .and_then(|mut log| log.write_all(entry.as_bytes()));
    if let Err(error) = written {
        tracing::warn!(%error, "cannot write {HTTP_LOG}");
    }
    response
}
