//! Who is asking and what they may do: every request passes [`guard`], which finds the
//! visitor (a fronting server's header, HTTP basic credentials, or a session cookie from
//! the login form) and checks `view`; handlers then ask [`allowed`] for their action and
//! answer [`refusal`] when it is not. The rules are the first WebStatus's `util.Authz`.

mod passwords;
mod session;

use crate::runtime::secrets::basic_credentials;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::config::status::{AuthzAction, AuthzConfig, AuthzRule, StatusTarget};
use crate::config::MasterConfig;
use crate::runtime::Context;
use crate::script::Arg;
pub use session::Sessions;

/// Paths anyone may fetch, whatever `view` says: the login form and what it is drawn with.
const OPEN_PATHS: &[&str] = &[
    "/login",
    "/logout",
    "/default.css",
    "/moonbot.js",
    "/robots.txt",
];

/// What the guard and the handlers share.
#[derive(Clone)]
pub struct Gate {
    pub context: Context,
    pub sessions: Arc<Sessions>,
}

/// Who made a request. Every request has a session id, from its cookie or new (then set
/// on the answer), so that forms can carry a CSRF token before anyone logs in.
#[derive(Clone, Debug)]
pub struct Visitor {
    pub user: Option<String>,
    pub session: String,
    /// The path and query asked for, where a login comes back to.
    pub path: String,
    /// Whether `showUsersPage` lets this visitor in, for the pages' link to /users.
    pub show_users: bool,
    /// The session id was made for this request: the visitor has no cookie yet.
    fresh: bool,
}

tokio::task_local! {
    /// The visitor of the request being served, so that every page shows who is logged in
    /// without each handler passing it on.
    static VISITOR: Visitor;
}

/// The visitor of the request being served; `None` outside one.
pub fn current_visitor() -> Option<Visitor> {
    VISITOR.try_with(Visitor::clone).ok()
}

/// The `util.Authz` of the first WebStatus (the one whose port is served); read-only
/// without one.
pub fn authz_of(config: &MasterConfig) -> AuthzConfig {
    config
        .status
        .iter()
        .find_map(|target| match target {
            StatusTarget::WebStatus(web) => Some(web.authz.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The middleware in front of every route: finds the visitor, refuses what `view` does
/// not allow, and gives a new visitor its session cookie.
pub async fn guard(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let authz = authz_of(&gate.context.config.current());
    let asked = request
        .uri()
        .path_and_query()
        .map_or(path.clone(), |p| p.to_string());
    let visitor = match identify(&gate, &authz, request.headers(), asked).await {
        Ok(visitor) => visitor,
        Err(response) => return response,
    };
    let for_programs = path.starts_with("/api/") || path.starts_with("/sse") || path == "/ws";
    if !OPEN_PATHS.contains(&path.as_str())
        && !allowed(
            &gate.context,
            &authz,
            visitor.user.as_deref(),
            AuthzAction::View,
            None,
        )
        .await
    {
        if for_programs {
            return refusal(&authz, visitor.user.as_deref(), AuthzAction::View);
        }
        return page_refusal(&authz, &visitor);
    }
    let mut visitor = visitor;
    if !for_programs {
        visitor.show_users = allowed(
            &gate.context,
            &authz,
            visitor.user.as_deref(),
            AuthzAction::ShowUsersPage,
            None,
        )
        .await;
    }
    let fresh = visitor.fresh.then(|| visitor.session.clone());
    request.extensions_mut().insert(visitor.clone());
    let mut response = VISITOR.scope(visitor, next.run(request)).await;
    if let Some(session) = fresh.filter(|_| !for_programs) {
        if let Ok(cookie) = HeaderValue::from_str(&session_cookie(&session, None)) {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
    }
    response
}

/// The `Set-Cookie` value for a session; `max_age` for a login, else it ends with the
/// browser session.
pub fn session_cookie(session: &str, max_age: Option<u64>) -> String {
    let age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    format!(
        "{}={session}; Path=/; HttpOnly; SameSite=Lax{age}",
        session::COOKIE
    )
}

/// How long a login's cookie is kept, in seconds.
pub const LOGIN_MAX_AGE: u64 = 7 * 24 * 3600;

/// Finds who is asking: the fronting server's user (`useHttpHeader`), HTTP basic
/// credentials (wrong ones are a 401 at once), or a logged-in session.
async fn identify(
    gate: &Gate,
    authz: &AuthzConfig,
    headers: &HeaderMap,
    path: String,
) -> Result<Visitor, Response> {
    let (session, fresh) = match cookie(headers, session::COOKIE) {
        Some(id) => (id, false),
        None => (gate.sessions.new_id(), true),
    };
    let credentials = basic_credentials(headers);
    let mut user = None;
    if authz.use_http_header {
        // The fronting server authenticated the user; 0.8 read the name from the basic
        // credentials the server passed on, a server may also set REMOTE_USER as a header.
        user = ["remote-user", "remote_user", "x-remote-user"]
            .iter()
            .find_map(|name| header_text(headers, name))
            .or_else(|| credentials.as_ref().map(|(name, _)| name.clone()));
    }
    if let (None, Some((name, password)), Some(auth)) = (&user, &credentials, &authz.auth) {
        if !passwords::check(auth, &gate.context.basedir, name, password).await {
            tracing::info!(user = %name, "refused a login: wrong user name or password");
            return Err(unauthorized(authz, "wrong user name or password".into()));
        }
        user = Some(name.clone());
    }
    if user.is_none() {
        user = gate.sessions.user(&session);
    }
    Ok(Visitor {
        user,
        session,
        path,
        show_users: false,
        fresh,
    })
}

/// Checks a login form's user name and password against the config's login method.
pub async fn check_password(
    authz: &AuthzConfig,
    basedir: &std::path::Path,
    user: &str,
    password: &str,
) -> bool {
    match &authz.auth {
        Some(auth) => passwords::check(auth, basedir, user, password).await,
        None => false,
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, v)| *n == name && !v.is_empty())
        .map(|(_, v)| v.to_string())
}

/// Whether `user` (`None`: nobody logged in) may take `action` on `object` (a builder,
/// build, build request or worker, as the REST API shows it). A function rule is called on
/// the script host with the user name and the object; one that fails, or times out, denies
/// and is logged with its place.
pub async fn allowed(
    context: &Context,
    authz: &AuthzConfig,
    user: Option<&str>,
    action: AuthzAction,
    object: Option<&Value>,
) -> bool {
    match authz.rule(action) {
        AuthzRule::Allow => true,
        AuthzRule::Deny => false,
        AuthzRule::Auth => user.is_some(),
        AuthzRule::Function(callback) => {
            let Some(user) = user else {
                return false;
            };
            let mut args = vec![Arg::from(user)];
            args.extend(object.cloned().map(Arg::Json));
            match context.script.call::<Value>(callback, args).await {
                // Lua's truth: only nil and false deny.
                Ok(answer) => !matches!(answer, Value::Null | Value::Bool(false)),
                Err(error) => {
                    tracing::warn!("util.Authz {}: {error}", action.name());
                    false
                }
            }
        }
    }
}

/// The answer to a control call that is not allowed: 401 when logging in could help
/// (with a basic challenge when the master checks passwords), else 403; a JSON body that
/// names the action.
pub fn refusal(authz: &AuthzConfig, user: Option<&str>, action: AuthzAction) -> Response {
    let name = action.name();
    match user {
        None if authz.rule(action).needs_login() => {
            unauthorized(authz, format!("{name}: log in first"))
        }
        None => forbidden(format!("{name} is not allowed")),
        Some(user) => forbidden(format!("{name} is not allowed for {user}")),
    }
}

/// A 403 with a JSON body.
pub fn forbidden(message: String) -> Response {
    json_error(StatusCode::FORBIDDEN, message)
}

fn unauthorized(authz: &AuthzConfig, message: String) -> Response {
    let mut response = json_error(StatusCode::UNAUTHORIZED, message);
    if authz.auth.is_some() {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"moonbot\""),
        );
    }
    response
}

fn json_error(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        json!({ "error": message }).to_string(),
    )
        .into_response()
}

/// A page the visitor may not view: the way to log in when there is one, else 403.
fn page_refusal(authz: &AuthzConfig, visitor: &Visitor) -> Response {
    if visitor.user.is_none() && authz.rule(AuthzAction::View).needs_login() {
        if let Some(url) = login_url(authz, &visitor.path) {
            return Response::builder()
                .status(StatusCode::SEE_OTHER)
                .header(header::LOCATION, url)
                .body(Body::empty())
                .unwrap_or_default();
        }
    }
    let who = visitor.user.as_deref().unwrap_or("anonymous users");
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>403 Forbidden</title>\
         <link rel=\"stylesheet\" href=\"/default.css\"></head><body><h1>403 Forbidden</h1>\
         <p>Viewing this master is not allowed for {}.</p></body></html>\n",
        super::pages::escape_html(who)
    );
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Where the "Login" link goes: `httpLoginUrl` behind a fronting server, else the login
/// form (which comes back to `then`), or nowhere when nobody can log in.
pub fn login_url(authz: &AuthzConfig, then: &str) -> Option<String> {
    if let Some(url) = &authz.http_login_url {
        return Some(url.clone());
    }
    authz.auth.as_ref().map(|_| {
        let then: String = form_urlencoded::byte_serialize(then.as_bytes()).collect();
        format!("/login?then={then}")
    })
}
