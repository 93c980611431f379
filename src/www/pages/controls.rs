//! What the pages let a visitor do: log in and out, and the controls (force, stop, cancel,
//! ping, pause, graceful and clean shutdown). Every control is a form POSTed with the
//! session's CSRF token; a missing or wrong token is a 403 with a JSON body, as is an
//! action `util.Authz` does not allow (the pages show no control that would be refused).

use axum::body::Bytes;
use axum::extract::{Extension, Path as UrlPath, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{argument, arguments, build_ref, builder_ref, PageError, Pages};
use crate::config::status::AuthzAction;
use crate::data::builds;
use crate::data::forceschedulers;
use crate::data::registry::{self, WorkerRef};
use crate::runtime::{ControlError, PendingOf};
use crate::www::auth::{self, Visitor};
use crate::www::rest::{build_object, force_all, request_object, Caller};

/// A form's fields, in order.
type Fields = Vec<(String, String)>;

fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    argument(fields, name)
}

impl From<ControlError> for PageError {
    fn from(error: ControlError) -> PageError {
        PageError {
            status: StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: error.message,
        }
    }
}

/// A control's answer when it does not run (boxed: a response is large).
pub struct Refusal(Box<Response>);

impl From<Response> for Refusal {
    fn from(response: Response) -> Refusal {
        Refusal(Box::new(response))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// Reads a control's form: refused with 403 unless it carries this session's CSRF token.
fn form(
    pages: &Pages,
    visitor: &Visitor,
    body: &Bytes,
    action: AuthzAction,
) -> Result<Fields, Refusal> {
    let fields: Fields = form_urlencoded::parse(body).into_owned().collect();
    let token = field(&fields, "csrf").unwrap_or_default();
    if pages.sessions.csrf_matches(&visitor.session, token) {
        Ok(fields)
    } else {
        tracing::warn!(
            action = action.name(),
            "refused a form without this session's CSRF token"
        );
        Err(auth::forbidden(format!(
            "{}: the form's CSRF token is missing or wrong",
            action.name()
        ))
        .into())
    }
}

/// Refuses `action` on `object` unless the visitor may take it.
async fn permit(
    caller: &Caller<'_>,
    action: AuthzAction,
    object: Option<&Value>,
) -> Result<(), Refusal> {
    if caller.may(action, object).await {
        Ok(())
    } else {
        let authz = auth::authz_of(&caller.context.config.current());
        Err(auth::refusal(&authz, caller.user, action).into())
    }
}

/// Back to a page after a control did its work.
fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn builder_url(name: &str) -> String {
    let name: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
    format!("/builders/{name}")
}

/// What a control answers: where to go next, or why not.
type Answer = Result<Response, Refusal>;

fn page_error(error: impl Into<PageError>) -> Refusal {
    error.into().into_response().into()
}

/// The reason a form gives, else one that says who used which page.
fn reason(fields: &Fields, visitor: &Visitor, what: &str) -> String {
    match field(fields, "reason").filter(|r| !r.trim().is_empty()) {
        Some(reason) => reason.to_string(),
        None => format!(
            "{what} from the web by {}",
            visitor.user.as_deref().unwrap_or("anonymous")
        ),
    }
}

/// `POST /builders/NAME/force`: the builder page's form of one ForceScheduler
/// (`forcescheduler=NAME`), its fields by full name.
pub async fn force(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> Answer {
    let fields = form(&pages, &visitor, &body, AuthzAction::ForceBuild)?;
    let (builderid, builder) = builder_ref(&pages, &name).await.map_err(page_error)?;
    let caller = Caller::new(&pages.context, visitor.user.as_deref());
    permit(&caller, AuthzAction::ForceBuild, Some(&builder)).await?;
    let scheduler_name = field(&fields, "forcescheduler").unwrap_or_default();
    let scheduler =
        forceschedulers::forcescheduler(&pages.context.config.current(), scheduler_name)
            .ok_or_else(|| {
                page_error(PageError::not_found(format!(
                    "no ForceScheduler named '{scheduler_name}'"
                )))
            })?;
    let mut params = force_params(&scheduler, &fields);
    params.insert("builderid".into(), json!(builderid));
    params.insert(
        "owner".into(),
        json!(visitor.user.as_deref().unwrap_or("anonymous")),
    );
    pages
        .context
        .control
        .force(scheduler_name, params)
        .await
        .map_err(page_error)?;
    Ok(see_other(&builder_url(&name)))
}

/// A force request's parameters from a form: checkboxes as booleans (absent: false),
/// multiple choices as lists, anything else as the text given.
fn force_params(scheduler: &Value, fields: &Fields) -> Map<String, Value> {
    let mut kinds: Vec<(String, String, bool)> = Vec::new();
    let mut collect = |spec: &Value| {
        let name = spec["fullName"].as_str().unwrap_or_default().to_string();
        let kind = spec["type"].as_str().unwrap_or_default().to_string();
        kinds.push((name, kind, spec["multiple"] == json!(true)));
    };
    for top in scheduler["all_fields"].as_array().into_iter().flatten() {
        match top["fields"].as_array() {
            Some(inner) => inner.iter().for_each(&mut collect),
            None => collect(top),
        }
    }
    let mut params = Map::new();
    for (name, kind, multiple) in kinds {
        let given: Vec<&str> = fields
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        let value = match (kind.as_str(), multiple) {
            ("bool", _) => json!(!given.is_empty()),
            (_, true) => json!(given),
            _ => match given.last() {
                Some(text) => json!(text),
                None => continue,
            },
        };
        params.insert(name, value);
    }
    params
}

/// `POST /builders/NAME/builds/N/stop`.
pub async fn stop_build(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    UrlPath((name, number)): UrlPath<(String, String)>,
    body: Bytes,
) -> Answer {
    let fields = form(&pages, &visitor, &body, AuthzAction::StopBuild)?;
    let db = &pages.context.db;
    let missing = || {
        page_error(PageError::not_found(format!(
            "no build {number} of builder '{name}'"
        )))
    };
    let buildid = builds::build_id(db, &build_ref(&name, &number).map_err(page_error)?)
        .await
        .map_err(page_error)?
        .ok_or_else(missing)?;
    let build = build_object(db, buildid)
        .await
        .map_err(page_error)?
        .ok_or_else(missing)?;
    let caller = Caller::new(&pages.context, visitor.user.as_deref());
    permit(&caller, AuthzAction::StopBuild, Some(&build)).await?;
    let why = reason(&fields, &visitor, "stopped");
    pages
        .context
        .control
        .stop_build(buildid, why)
        .await
        .map_err(page_error)?;
    Ok(see_other(&format!(
        "{}/builds/{number}",
        builder_url(&name)
    )))
}

/// `POST /builders/NAME/cancelbuild`: `id=N` cancels one pending request, `id=all` all
/// of the builder's (0.8's form).
pub async fn cancel_build(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> Answer {
    let caller = Caller::new(&pages.context, visitor.user.as_deref());
    let all = {
        let fields: Fields = form_urlencoded::parse(&body).into_owned().collect();
        field(&fields, "id") == Some("all")
    };
    let action = if all {
        AuthzAction::CancelAllPendingBuilds
    } else {
        AuthzAction::CancelPendingBuild
    };
    let fields = form(&pages, &visitor, &body, action)?;
    let (builderid, _) = builder_ref(&pages, &name).await.map_err(page_error)?;
    let why = reason(&fields, &visitor, "cancelled");
    if all {
        permit(&caller, action, None).await?;
        let which = PendingOf::Builder(builderid);
        pages
            .context
            .control
            .cancel_requests(which, why)
            .await
            .map_err(page_error)?;
    } else {
        let brid: i64 = field(&fields, "id")
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| {
                page_error(PageError::bad_request(
                    "id: expected a build request number or 'all'",
                ))
            })?;
        let request = request_object(&pages.context.db, brid)
            .await
            .map_err(page_error)?
            .filter(|r| r["builderid"] == json!(builderid))
            .ok_or_else(|| {
                page_error(PageError::not_found(format!(
                    "no build request {brid} of builder '{name}'"
                )))
            })?;
        permit(&caller, action, Some(&request)).await?;
        pages
            .context
            .control
            .cancel_request(brid, why)
            .await
            .map_err(page_error)?;
    }
    Ok(see_other(&builder_url(&name)))
}

/// `POST /builders/NAME/ping`: a page saying which of the builder's workers answered.
pub async fn ping(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> Answer {
    form(&pages, &visitor, &body, AuthzAction::PingBuilder)?;
    let (_, builder) = builder_ref(&pages, &name).await.map_err(page_error)?;
    let caller = Caller::new(&pages.context, visitor.user.as_deref());
    permit(&caller, AuthzAction::PingBuilder, Some(&builder)).await?;
    let answers = pages
        .context
        .control
        .ping_builder(name.clone())
        .await
        .map_err(page_error)?;
    let answers: Vec<Value> = answers
        .into_iter()
        .map(|(worker, answered)| json!({ "worker": worker, "answered": answered }))
        .collect();
    pages
        .page(
            "ping.html",
            json!({ "builder": builder, "answers": answers }),
        )
        .await
        .map_err(page_error)
}

/// `POST /builders/_all/forceall`, `stopall` and `cancelall`: 0.8's buttons of /builders.
pub async fn all_builders(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    UrlPath(what): UrlPath<String>,
    body: Bytes,
) -> Answer {
    let action = match what.as_str() {
        "forceall" => AuthzAction::ForceAllBuilds,
        "stopall" => AuthzAction::StopAllBuilds,
        "cancelall" => AuthzAction::CancelAllPendingBuilds,
        _ => {
            return Err(page_error(PageError::not_found(format!(
                "no action '{what}' on all builders"
            ))))
        }
    };
    let fields = form(&pages, &visitor, &body, action)?;
    let caller = Caller::new(&pages.context, visitor.user.as_deref());
    permit(&caller, action, None).await?;
    let control = &pages.context.control;
    match action {
        AuthzAction::ForceAllBuilds => {
            let owner = json!(visitor.user.as_deref().unwrap_or("anonymous"));
            force_all(&pages.context, owner, reason(&fields, &visitor, "forced"))
                .await
                .map_err(page_error)?;
        }
        AuthzAction::StopAllBuilds => {
            control
                .stop_builds(None, reason(&fields, &visitor, "stopped"))
                .await
                .map_err(page_error)?;
        }
        _ => {
            let why = reason(&fields, &visitor, "cancelled");
            control
                .cancel_requests(PendingOf::AllBuilders, why)
                .await
                .map_err(page_error)?;
        }
    }
    Ok(see_other("/builders"))
}

/// `POST /workers/NAME/pause`, `unpause` and `shutdown` (graceful).
pub async fn worker_control(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    UrlPath((name, what)): UrlPath<(String, String)>,
    body: Bytes,
) -> Answer {
    let action = match what.as_str() {
        "pause" | "unpause" => AuthzAction::PauseSlave,
        "shutdown" => AuthzAction::GracefulShutdown,
        _ => {
            return Err(page_error(PageError::not_found(format!(
                "no action '{what}' on a worker"
            ))))
        }
    };
    form(&pages, &visitor, &body, action)?;
    let worker = worker_json(&pages, &name).await.map_err(page_error)?;
    let caller = Caller::new(&pages.context, visitor.user.as_deref());
    permit(&caller, action, Some(&worker)).await?;
    let control = &pages.context.control;
    match what.as_str() {
        "shutdown" => control.shut_down_worker(name.clone()).await,
        other => control.pause_worker(name.clone(), other == "pause").await,
    }
    .map_err(page_error)?;
    let name: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
    Ok(see_other(&format!("/workers/{name}")))
}

pub async fn worker_json(pages: &Pages, name: &str) -> Result<Value, PageError> {
    let db = &pages.context.db;
    let missing = || PageError::not_found(format!("no worker named '{name}'"));
    let id = registry::worker_id(db, &WorkerRef::Name(name.to_string()))
        .await?
        .ok_or_else(missing)?;
    registry::worker(db, id).await?.ok_or_else(missing)
}

/// `POST /changes/N/stop`: cancels the pending requests that would build the change.
pub async fn stop_change(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    UrlPath(changeid): UrlPath<String>,
    body: Bytes,
) -> Answer {
    let fields = form(&pages, &visitor, &body, AuthzAction::StopChange)?;
    let id: i64 = changeid
        .parse()
        .map_err(|_| page_error(PageError::not_found(format!("no change {changeid}"))))?;
    let caller = Caller::new(&pages.context, visitor.user.as_deref());
    permit(&caller, AuthzAction::StopChange, None).await?;
    let why = reason(&fields, &visitor, "stopped");
    pages
        .context
        .control
        .cancel_requests(PendingOf::Change(id), why)
        .await
        .map_err(page_error)?;
    Ok(see_other(&format!("/changes/{id}")))
}

/// `POST /shutdown`: the master stops taking builds and shuts down (0.8's clean shutdown).
pub async fn clean_shutdown(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    body: Bytes,
) -> Answer {
    form(&pages, &visitor, &body, AuthzAction::CleanShutdown)?;
    let caller = Caller::new(&pages.context, visitor.user.as_deref());
    permit(&caller, AuthzAction::CleanShutdown, None).await?;
    tracing::info!(
        user = visitor.user.as_deref().unwrap_or("anonymous"),
        "clean shutdown asked from the web"
    );
    pages
        .context
        .control
        .clean_shutdown(Some(true))
        .await
        .map_err(page_error)?;
    pages
        .page("shutdown.html", json!({}))
        .await
        .map_err(page_error)
}

/// `GET /login`: the login form, which comes back to `then=PATH`.
pub async fn login_form(State(pages): State<Pages>, RawQuery(raw): RawQuery) -> Answer {
    let args = arguments(&raw);
    let then = safe_return(argument(&args, "then"));
    let authz = auth::authz_of(&pages.context.config.current());
    let available = authz.auth.is_some();
    pages
        .page(
            "login.html",
            json!({ "then": then, "failed": false, "available": available }),
        )
        .await
        .map_err(page_error)
}

/// `POST /login`: checks the user name and password, then starts a logged-in session
/// (with a new id) and goes back; a wrong pair shows the form again with a 401.
pub async fn login(State(pages): State<Pages>, body: Bytes) -> Answer {
    let fields: Fields = form_urlencoded::parse(&body).into_owned().collect();
    let then = safe_return(field(&fields, "then"));
    let user = field(&fields, "username").unwrap_or_default();
    let password = field(&fields, "passwd").unwrap_or_default();
    let authz = auth::authz_of(&pages.context.config.current());
    if user.is_empty()
        || !auth::check_password(&authz, &pages.context.basedir, user, password).await
    {
        tracing::info!(user, "refused a login: wrong user name or password");
        let mut response = pages
            .page(
                "login.html",
                json!({ "then": then, "failed": true, "available": authz.auth.is_some() }),
            )
            .await
            .map_err(page_error)?;
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(response);
    }
    let session = pages.sessions.log_in(user);
    let mut response = see_other(&then);
    if let Ok(cookie) =
        HeaderValue::from_str(&auth::session_cookie(&session, Some(auth::LOGIN_MAX_AGE)))
    {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `POST /logout`: ends the session (CSRF-checked, so no other site can log a user out).
pub async fn logout(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    body: Bytes,
) -> Answer {
    let fields: Fields = form_urlencoded::parse(&body).into_owned().collect();
    let token = field(&fields, "csrf").unwrap_or_default();
    if !pages.sessions.csrf_matches(&visitor.session, token) {
        return Err(
            auth::forbidden("logout: the form's CSRF token is missing or wrong".into()).into(),
        );
    }
    pages.sessions.log_out(&visitor.session);
    let mut response = see_other("/");
    let fresh = pages.sessions.new_id();
    if let Ok(cookie) = HeaderValue::from_str(&auth::session_cookie(&fresh, None)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// Where a login goes back to: a path of this site, never another site.
fn safe_return(then: Option<&str>) -> String {
    match then {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.to_string()
        }
        _ => "/".to_string(),
    }
}

/// `GET /users` and `/users/N`: Buildbot's table of the users in its database, guarded by
/// `showUsersPage`. This master stores no users, so the table is empty and every N is
/// unknown.
pub async fn users(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    uid: Option<UrlPath<String>>,
) -> Answer {
    let caller = Caller::new(&pages.context, visitor.user.as_deref());
    permit(&caller, AuthzAction::ShowUsersPage, None).await?;
    if let Some(UrlPath(uid)) = uid {
        return Err(page_error(PageError::not_found(format!(
            "no user {uid}: this master stores no users"
        ))));
    }
    pages
        .page("users.html", json!({}))
        .await
        .map_err(page_error)
}
