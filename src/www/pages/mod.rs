//! The WebStatus pages: HTML that one request builds from storage, working without
//! JavaScript. Templates (Jinja, rendered by minijinja) are compiled in and may be replaced
//! by files of the same name in `BASEDIR/templates/` or the config's `template_dirs`; the
//! stylesheet and the live-update script are compiled in too; anything else is looked up in
//! `public_html`.

/// `object!{ "name": value, ... }`: a JSON object of values moved in (`Value::from`), where
/// `json!` serializes each value it is given, a deep copy that for a page's rows costs more
/// than reading them from storage.
macro_rules! object {
    ($($key:literal: $value:expr),* $(,)?) => {{
        let mut map = serde_json::Map::new();
        $(map.insert($key.to_string(), serde_json::Value::from($value));)*
        serde_json::Value::Object(map)
    }};
}

mod ansi;
mod badge;
mod controls;
mod feeds;
mod json_status;
mod live;
mod render;
mod store;
mod views;

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path as UrlPath, RawQuery, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::auth::{self, Gate, Sessions, Visitor};
use super::rest::Caller;
use crate::config::status::{AuthzAction, StatusTarget, WebStatusConfig};
use crate::data::builds::{self, BuildRef, BuilderRef, BuildsOf, LogRef, StepRef};
use crate::data::changes::{self, ChangesOf};
use crate::data::registry::{self, BuildersOf, WorkersOf};
use crate::data::{forceschedulers, Entity, Query};
use crate::db::DbError;
use crate::model::BuildResult;
use crate::runtime::Context;
pub(super) use render::escape as escape_html;
use render::Templates;

/// Lines of a log one page shows.
const LOG_PAGE_LINES: i64 = 1000;

/// Lines read from storage per piece of a streamed log text.
const TEXT_LINES_PER_READ: i64 = 2000;

/// What every page handler shares.
#[derive(Clone)]
struct Pages {
    context: Context,
    templates: Arc<Templates>,
    sessions: Arc<Sessions>,
    sse: Arc<live::SseSessions>,
    /// Renders run on blocking threads, so that a big page does not hold back the runtime's
    /// other tasks (the event streams among them); as many at once as the runtime has
    /// worker threads (the daemon's are one per core of a small machine), so that many
    /// requests at once queue here instead of each taking a thread of its own and all of
    /// them contending for the cores.
    renders: Arc<Semaphore>,
}

/// The page routes. Templates are looked up in `BASEDIR/templates/` and `template_dirs`
/// once each, as first used; a changed template shows after a restart.
pub fn router(gate: Gate) -> Router {
    let context = gate.context;
    let web = web_config(&context);
    let mut dirs: Vec<PathBuf> = web
        .template_dirs
        .iter()
        .map(|dir| context.basedir.join(dir))
        .collect();
    dirs.push(context.basedir.join("templates"));
    let pages = Pages {
        templates: Arc::new(Templates::new(dirs)),
        sse: Arc::default(),
        context,
        sessions: gate.sessions,
        // The runtime's workers, not `available_parallelism`, which reads cgroup files
        // during the start.
        renders: Arc::new(Semaphore::new(
            tokio::runtime::Handle::current().metrics().num_workers(),
        )),
    };
    Router::new()
        .route("/", get(welcome))
        .route("/about", get(about))
        .route("/builders", get(builders_page))
        .route("/builders/{builder}", get(builder_page))
        .route("/builders/{builder}/builds/{number}", get(build_page))
        .route(
            "/builders/{builder}/builds/{number}/steps/{step}",
            get(step_page),
        )
        .route("/buildstatus", get(build_status))
        .route("/one_box_per_builder", get(one_box_per_builder))
        .route("/console", get(views::console))
        .route("/grid", get(views::grid))
        .route("/tgrid", get(views::tgrid))
        .route("/rss", get(feeds::rss))
        .route("/atom", get(feeds::atom))
        .route("/json", get(json_status::root))
        .route("/json/{*path}", get(json_status::node))
        .route("/png", get(badge::png))
        .route("/svg", get(badge::svg))
        .route(
            "/builders/{builder}/builds/{number}/steps/{step}/logs/{log}",
            get(log_page),
        )
        .route(
            "/builders/{builder}/builds/{number}/steps/{step}/logs/{log}/text",
            get(log_text),
        )
        .route("/builders/{builder}/force", post(controls::force))
        .route("/builders/{builder}/ping", post(controls::ping))
        .route(
            "/builders/{builder}/cancelbuild",
            post(controls::cancel_build),
        )
        .route(
            "/builders/{builder}/builds/{number}/stop",
            post(controls::stop_build),
        )
        .route("/builders/_all/{what}", post(controls::all_builders))
        .route("/changes", get(changes_page))
        .route("/changes/{changeid}", get(change_page))
        .route("/changes/{changeid}/stop", post(controls::stop_change))
        .route("/workers", get(workers_page))
        .route("/workers/{worker}", get(worker_page))
        .route("/workers/{worker}/{what}", post(controls::worker_control))
        .route("/shutdown", post(controls::clean_shutdown))
        .route("/login", get(controls::login_form).post(controls::login))
        .route("/logout", post(controls::logout))
        .route("/users", get(controls::users))
        .route("/users/{uid}", get(controls::users))
        .route("/buildslaves", get(workers_page))
        .route("/one_line_per_build", get(one_line_per_build))
        .route("/waterfall", get(waterfall))
        .route("/robots.txt", get(robots))
        .route("/default.css", get(stylesheet))
        .route("/moonbot.js", get(script))
        .route("/sse/listen/{*path}", get(live::sse_listen))
        .route("/sse/listen", get(live::sse_listen_all))
        .route("/sse/add/{uuid}/{*path}", get(live::sse_add))
        .route("/sse/remove/{uuid}/{*path}", get(live::sse_remove))
        .route("/ws", get(live::ws))
        .fallback(get(public_file))
        .with_state(pages)
}

/// The config's first WebStatus (the one whose port is served), or its defaults.
pub(super) fn web_config(context: &Context) -> WebStatusConfig {
    context
        .config
        .current()
        .status
        .iter()
        .find_map(|target| match target {
            StatusTarget::WebStatus(web) => Some((**web).clone()),
            _ => None,
        })
        .unwrap_or_else(WebStatusConfig::default_for_pages)
}

/// A page that could not be made: its status and what the error page says.
#[derive(Debug)]
struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    fn not_found(what: impl Into<String>) -> PageError {
        PageError {
            status: StatusCode::NOT_FOUND,
            message: what.into(),
        }
    }

    fn bad_request(what: impl Into<String>) -> PageError {
        PageError {
            status: StatusCode::BAD_REQUEST,
            message: what.into(),
        }
    }
}

impl From<DbError> for PageError {
    fn from(error: DbError) -> PageError {
        tracing::error!(%error, "web page request failed");
        PageError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "internal error".into(),
        }
    }
}

impl From<minijinja::Error> for PageError {
    fn from(error: minijinja::Error) -> PageError {
        tracing::error!(error = %format!("{error:#}"), "web page template failed");
        PageError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("template error: {error}"),
        }
    }
}

impl From<tokio::task::JoinError> for PageError {
    fn from(error: tokio::task::JoinError) -> PageError {
        tracing::error!(%error, "web page rendering stopped");
        PageError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "internal error".into(),
        }
    }
}

type PageResult = Result<Response, PageError>;

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = format!(
            "<!DOCTYPE html>\n<html><head><title>{code}</title>\
             <link rel=\"stylesheet\" href=\"/default.css\"></head>\
             <body><h1>{code}</h1><p>{message}</p><p><a href=\"/\">Home</a></p></body></html>\n",
            code = self.status,
            message = render::escape(&self.message),
        );
        (self.status, html_headers(), body).into_response()
    }
}

fn html_headers() -> [(header::HeaderName, &'static str); 1] {
    [(header::CONTENT_TYPE, "text/html; charset=utf-8")]
}

impl Pages {
    /// Renders a page for the visitor of the request being served: every page shows who
    /// is logged in (or how to log in) and its forms carry the session's CSRF token.
    async fn page(&self, template: &str, values: Value) -> PageResult {
        self.render_as(template, "text/html; charset=utf-8", values)
            .await
    }

    /// A template rendered with the values every page has, served as `content_type`. The
    /// rendering runs on a blocking thread: a big page takes milliseconds of CPU, which on
    /// the runtime's thread would hold back every task behind it, the event streams that
    /// carry a finished build to open pages among them.
    async fn render_as(
        &self,
        template: &str,
        content_type: &'static str,
        mut values: Value,
    ) -> PageResult {
        let config = self.context.config.current();
        let authz = auth::authz_of(&config);
        if let Value::Object(map) = &mut values {
            map.insert("title".into(), json!(config.title));
            map.insert("title_url".into(), json!(config.title_url));
            map.insert("page".into(), json!(template.trim_end_matches(".html")));
            if let Some(visitor) = auth::current_visitor() {
                map.insert("user".into(), json!(visitor.user));
                map.insert(
                    "csrf".into(),
                    json!(self.sessions.csrf_token(&visitor.session)),
                );
                let login_url = visitor
                    .user
                    .is_none()
                    .then(|| auth::login_url(&authz, &visitor.path))
                    .flatten();
                map.insert("login_url".into(), json!(login_url));
                map.insert("show_users".into(), json!(visitor.show_users));
            }
            map.insert(
                "feeds".into(),
                json!(web_config(&self.context).provide_feeds),
            );
        }
        let templates = self.templates.clone();
        let template = template.to_string();
        let _slot = self
            .renders
            .acquire()
            .await
            .expect("the render semaphore is never closed");
        let text =
            tokio::task::spawn_blocking(move || templates.render(&template, values)).await??;
        Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
    }
}

/// The query string's pairs, each once with its last value, as 0.8 read them.
fn arguments(raw: &Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_deref().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn argument<'a>(args: &'a [(String, String)], name: &str) -> Option<&'a str> {
    args.iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn all_arguments<'a>(args: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    args.iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// A count from the URL: `name=N`, else `default`, at most `max` when given.
fn count(
    args: &[(String, String)],
    name: &str,
    default: usize,
    max: Option<usize>,
) -> Result<usize, PageError> {
    let value = match argument(args, name) {
        None | Some("") => default,
        Some(text) => text.parse().map_err(|_| {
            PageError::bad_request(format!("{name}={text}: expected a number of items"))
        })?,
    };
    Ok(max.map_or(value, |max| value.min(max)))
}

/// A REST query over `entity` from name/value pairs, as the REST API reads its URL.
fn query(entity: &Entity, pairs: &[(&str, String)]) -> Query {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    Query::parse(&pairs, entity, true).expect("the pages' own queries are valid")
}

async fn welcome(State(pages): State<Pages>, Extension(visitor): Extension<Visitor>) -> PageResult {
    let caller = Caller::new(&pages.context, visitor.user.as_deref());
    let can_shutdown = caller.may(AuthzAction::CleanShutdown, None).await;
    pages
        .page("root.html", json!({ "can_shutdown": can_shutdown }))
        .await
}

async fn about(State(pages): State<Pages>) -> PageResult {
    pages.page("about.html",
        json!({ "version": env!("CARGO_PKG_VERSION"), "basedir": pages.context.basedir.display().to_string() }),
    ).await
}

/// Every builder with its last finished build, the builds it runs and what is queued.
/// `builder=` and `tag=` choose the builders.
async fn builders_page(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let args = arguments(&raw);
    let builders = builder_columns(&pages, &args).await?;
    let rows = builder_summaries(&pages, builders, &all_arguments(&args, "branch")).await?;
    let caller = Caller::new(&pages.context, visitor.user.as_deref());
    let can = json!({
        "force_all": caller.may(AuthzAction::ForceAllBuilds, None).await,
        "stop_all": caller.may(AuthzAction::StopAllBuilds, None).await,
        "cancel_all": caller.may(AuthzAction::CancelAllPendingBuilds, None).await,
    });
    pages
        .page("builders.html", object! { "builders": rows, "can": can })
        .await
}

/// Each builder's row: `builder`, `last` (its last finished build), `running`, `pending`
/// and `typical` (see [`typical_duration`]), read for all of them at once; with
/// `branches`, only builds and requests of those branches.
async fn builder_summaries(
    pages: &Pages,
    builders: Vec<Value>,
    branches: &[&str],
) -> Result<Vec<Value>, PageError> {
    let db = &pages.context.db;
    let ids: Vec<i64> = builders
        .iter()
        .filter_map(|b| b["builderid"].as_i64())
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let last = store::last_finished(db, &ids, 1, false, branches).await?;
    let succeeded = store::last_finished(db, &ids, 5, true, &[]).await?;
    let running_ids: Vec<i64> = store::running(db, &ids, branches)
        .await?
        .into_iter()
        .map(|key| key.id)
        .collect();
    let builds = builds_by_id(
        pages,
        last.iter()
            .map(|(_, id, _, _)| *id)
            .chain(running_ids.iter().copied()),
    )
    .await?;
    let by_id: HashMap<i64, &Value> = builds
        .iter()
        .filter_map(|b| Some((b["buildid"].as_i64()?, b)))
        .collect();
    let waiting = store::waiting_requests(db, &ids).await?;
    let mut pending = requests_by_id(pages, waiting.into_iter().map(|(id, _)| id), &[]).await?;
    if !branches.is_empty() {
        let ids: Vec<i64> = pending
            .iter()
            .filter_map(|r| r["buildrequestid"].as_i64())
            .collect();
        let on = store::requests_on_branches(db, &ids, branches).await?;
        pending.retain(|r| {
            r["buildrequestid"]
                .as_i64()
                .is_some_and(|id| on.contains(&id))
        });
    }
    let now = chrono::Utc::now().timestamp();
    let mut rows = Vec::with_capacity(builders.len());
    for builder in builders {
        let builderid = builder["builderid"].as_i64();
        let last = last
            .iter()
            .find(|(b, ..)| Some(*b) == builderid)
            .and_then(|(_, id, ..)| by_id.get(id).copied());
        let typical = typical_duration(
            succeeded
                .iter()
                .filter(|(b, ..)| Some(*b) == builderid)
                .map(|(_, _, started, complete)| *complete as i64 - *started as i64),
        );
        let mut running: Vec<Value> = running_ids
            .iter()
            .filter_map(|id| by_id.get(id).copied())
            .filter(|b| b["builderid"].as_i64() == builderid)
            .cloned()
            .collect();
        let mut free_in = None::<i64>;
        for build in &mut running {
            let eta = typical.and_then(|took| {
                let started = build["started_at"].as_i64()?;
                Some((started + took - now).max(0))
            });
            free_in = match (free_in, eta) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            build["eta"] = json!(eta);
        }
        let mut pending: Vec<Value> = pending
            .iter()
            .filter(|r| r["builderid"].as_i64() == builderid)
            .cloned()
            .collect();
        for (ahead, request) in pending.iter_mut().enumerate() {
            request["eta"] =
                json!(typical.map(|took| free_in.unwrap_or(0) + (ahead as i64 + 1) * took));
        }
        rows.push(object! {
            "builder": builder,
            "last": last.cloned(),
            "running": running,
            "pending": pending,
            "typical": typical,
        });
    }
    Ok(rows)
}

/// Build requests by id, in one query, in the order they were submitted, with the REST
/// query's `extra` parameters (`property`).
async fn requests_by_id(
    pages: &Pages,
    ids: impl IntoIterator<Item = i64>,
    extra: &[(&str, &str)],
) -> Result<Vec<Value>, PageError> {
    let mut pairs: Vec<(&str, String)> = ids
        .into_iter()
        .map(|id| ("buildrequestid", id.to_string()))
        .collect();
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    pairs.push(("order", "submitted_at".into()));
    pairs.push(("order", "buildrequestid".into()));
    pairs.extend(extra.iter().map(|(name, value)| (*name, value.to_string())));
    let query = query(&changes::BUILDREQUEST, &pairs);
    Ok(changes::buildrequests(&pages.context.db, None, &query)
        .await?
        .items)
}

/// How long a builder's builds take: the mean of the durations of its last five that
/// succeeded (with or without warnings), in seconds; `None` before the first. Running
/// builds are expected to end that long after they started, and queued requests one such
/// build after another once the first running build ends.
fn typical_duration(took: impl Iterator<Item = i64>) -> Option<i64> {
    let took: Vec<i64> = took.collect();
    (!took.is_empty()).then(|| took.iter().sum::<i64>() / took.len() as i64)
}

async fn builder_ref(pages: &Pages, name: &str) -> Result<(i64, Value), PageError> {
    let db = &pages.context.db;
    let id = builds::builder_id(db, &BuilderRef::Name(name.to_string()))
        .await?
        .ok_or_else(|| PageError::not_found(format!("no builder named '{name}'")))?;
    let builder = registry::builder(db, id)
        .await?
        .ok_or_else(|| PageError::not_found(format!("no builder named '{name}'")))?;
    Ok((id, builder))
}

/// `/builders/NAME`: what it runs, what waits, its last `numbuilds` builds.
async fn builder_page(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    UrlPath(name): UrlPath<String>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let args = arguments(&raw);
    let web = web_config(&pages.context);
    let numbuilds = count(&args, "numbuilds", web.numbuilds, None)?;
    let wanted: Vec<(&str, &str)> = args
        .iter()
        .filter_map(|(n, v)| Some((n.strip_prefix("property.")?, v.as_str())))
        .collect();
    let (builderid, builder) = builder_ref(&pages, &name).await?;
    let mut summary = builder_summaries(&pages, vec![builder], &[])
        .await?
        .pop()
        .expect("a summary of the one builder asked");
    if !wanted.is_empty() {
        // Requests are matched on their items: those waiting, read again with properties.
        let waiting = summary["pending"].as_array().into_iter().flatten();
        let ids = waiting.filter_map(|r| r["buildrequestid"].as_i64());
        let requests = requests_by_id(&pages, ids, &[("property", "*")]).await?;
        let matching: Vec<&Value> = requests
            .iter()
            .filter(|r| has_properties(r, &wanted))
            .map(|r| &r["buildrequestid"])
            .collect();
        if let Some(pending) = summary["pending"].as_array_mut() {
            pending.retain(|r| matching.contains(&&r["buildrequestid"]));
        }
    }
    // 0.8 looked at the builder's last 200 finished builds for matches (`max_search`); as
    // many as the page shows when it shows more.
    let searched = numbuilds.max(PROPERTY_SEARCH);
    let selection = store::Selection {
        finished: true,
        properties: &wanted,
        among_newest: (!wanted.is_empty()).then_some(searched),
        ..Default::default()
    };
    let ids = store::newest_builds(&pages.context.db, &[builderid], &selection, numbuilds).await?;
    let mut builds = builds_by_id(&pages, ids).await?;
    builds.reverse();
    let filters: Vec<Value> = wanted
        .iter()
        .map(|(n, v)| json!({ "name": n, "value": v }))
        .collect();
    let caller = Caller::new(&pages.context, visitor.user.as_deref());
    for build in summary["running"].as_array_mut().into_iter().flatten() {
        build["buildername"] = json!(name);
        build["can_stop"] = json!(caller.may(AuthzAction::StopBuild, Some(build)).await);
    }
    for request in summary["pending"].as_array_mut().into_iter().flatten() {
        request["buildername"] = json!(name);
        request["can_cancel"] = json!(
            caller
                .may(AuthzAction::CancelPendingBuild, Some(request))
                .await
        );
    }
    let builder_json = &summary["builder"];
    let can = json!({
        "force": caller.may(AuthzAction::ForceBuild, Some(builder_json)).await,
        "ping": caller.may(AuthzAction::PingBuilder, Some(builder_json)).await,
        "cancel_all": caller.may(AuthzAction::CancelAllPendingBuilds, None).await,
    });
    let force_schedulers =
        forceschedulers::forceschedulers(&pages.context.config.current(), Some(&name));
    pages
        .page(
            "builder.html",
            object! {
                "summary": summary,
                "builds": builds,
                "numbuilds": numbuilds,
                "more_href": href_with(&args, "numbuilds", &(numbuilds * 2).to_string()),
                "filters": filters,
                "searched": searched,
                "can": can,
                "force_schedulers": force_schedulers,
            },
        )
        .await
}

/// The finished builds a builder page's `property.NAME=VALUE` filters look through, newest
/// first, when the page shows fewer: 0.8's `generateFinishedBuilds(max_search=200)`.
const PROPERTY_SEARCH: usize = 200;

/// Whether an item's properties (`name -> [value, source]`) have each wanted value, as
/// [`store::property_texts`] reads it.
fn has_properties(item: &Value, wanted: &[(&str, &str)]) -> bool {
    wanted.iter().all(|(name, want)| {
        let value = &item["properties"][*name][0];
        !value.is_null() && store::property_texts(want).contains(&value.to_string())
    })
}

fn build_ref(builder: &str, number: &str) -> Result<BuildRef, PageError> {
    let number = number
        .parse()
        .map_err(|_| PageError::not_found(format!("no build number '{number}'")))?;
    Ok(BuildRef::Number(
        BuilderRef::Name(builder.to_string()),
        number,
    ))
}

/// `/builders/NAME/builds/N`: the build, its properties and its steps with their logs.
async fn build_page(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    UrlPath((builder, number)): UrlPath<(String, String)>,
) -> PageResult {
    let db = &pages.context.db;
    let (_, builder_json) = builder_ref(&pages, &builder).await?;
    let missing = || PageError::not_found(format!("no build {number} of builder '{builder}'"));
    let buildid = builds::build_id(db, &build_ref(&builder, &number)?)
        .await?
        .ok_or_else(missing)?;
    let build = builds::build(
        db,
        buildid,
        &query(&builds::BUILD, &[("property", "*".into())]),
    )
    .await?
    .ok_or_else(missing)?;
    let steps = builds::steps(db, buildid, &query(&builds::STEP, &[])).await?;
    let mut rows = Vec::new();
    for step in steps.items {
        let stepid = step["stepid"].as_i64().unwrap_or_default();
        let logs = builds::logs(db, stepid, &query(&builds::LOG, &[])).await?;
        rows.push(json!({ "step": step, "logs": logs.items }));
    }
    let worker = match build["workerid"].as_i64() {
        Some(id) => registry::worker(db, id).await?,
        None => None,
    };
    let properties: Vec<Value> = build["properties"]
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(name, pair)| json!({ "name": name, "value": pair[0], "source": pair[1] }))
                .collect()
        })
        .unwrap_or_default();
    let can_stop = if build["complete"] == json!(false) {
        let mut object = build.clone();
        object["buildername"] = json!(builder);
        Caller::new(&pages.context, visitor.user.as_deref())
            .may(AuthzAction::StopBuild, Some(&object))
            .await
    } else {
        false
    };
    pages
        .page(
            "build.html",
            json!({
                "can_stop": can_stop,
                "builder": builder_json,
                "build": build,
                "steps": rows,
                "worker": worker,
                "properties": properties,
            }),
        )
        .await
}

/// A step a URL names, by number or name.
async fn find_step(
    pages: &Pages,
    builder: &str,
    number: &str,
    step: &str,
) -> Result<Value, PageError> {
    let db = &pages.context.db;
    let missing = || {
        PageError::not_found(format!(
            "no step '{step}' in build {number} of builder '{builder}'"
        ))
    };
    let step_ref = match step.parse() {
        Ok(n) => StepRef::Number(build_ref(builder, number)?, n),
        Err(_) => StepRef::Name(build_ref(builder, number)?, step.to_string()),
    };
    let stepid = builds::step_id(db, &step_ref).await?.ok_or_else(missing)?;
    builds::step(db, stepid).await?.ok_or_else(missing)
}

/// `/builders/NAME/builds/N/steps/STEP`: one step, its state, times, logs and links.
async fn step_page(
    State(pages): State<Pages>,
    UrlPath((builder, number, step)): UrlPath<(String, String, String)>,
) -> PageResult {
    let step = find_step(&pages, &builder, &number, &step).await?;
    let stepid = step["stepid"].as_i64().unwrap_or_default();
    let logs = builds::logs(&pages.context.db, stepid, &query(&builds::LOG, &[])).await?;
    pages
        .page(
            "step.html",
            json!({ "builder": builder, "number": number, "step": step, "logs": logs.items }),
        )
        .await
}

/// `/buildstatus?builder=NAME&number=N`: a build's steps top to bottom, in the
/// waterfall's colours, small enough to embed.
async fn build_status(State(pages): State<Pages>, RawQuery(raw): RawQuery) -> PageResult {
    let args = arguments(&raw);
    let builder = argument(&args, "builder")
        .ok_or_else(|| PageError::bad_request("builder= is required"))?
        .to_string();
    let number = argument(&args, "number")
        .ok_or_else(|| PageError::bad_request("number= is required"))?
        .to_string();
    let db = &pages.context.db;
    builder_ref(&pages, &builder).await?;
    let missing = || PageError::not_found(format!("no build {number} of builder '{builder}'"));
    let buildid = builds::build_id(db, &build_ref(&builder, &number)?)
        .await?
        .ok_or_else(missing)?;
    let build = builds::build(db, buildid, &query(&builds::BUILD, &[]))
        .await?
        .ok_or_else(missing)?;
    let steps = builds::steps(db, buildid, &query(&builds::STEP, &[])).await?;
    let mut rows = Vec::new();
    for step in steps
        .items
        .into_iter()
        .filter(|s| !s["hidden"].as_bool().unwrap_or(false))
    {
        let stepid = step["stepid"].as_i64().unwrap_or_default();
        let logs = builds::logs(db, stepid, &query(&builds::LOG, &[])).await?;
        rows.push(json!({ "step": step, "logs": logs.items }));
    }
    pages
        .page(
            "buildstatus.html",
            json!({ "builder": builder, "build": build, "steps": rows }),
        )
        .await
}

/// The log a URL names, with its step.
async fn find_log(
    pages: &Pages,
    builder: &str,
    number: &str,
    step: &str,
    log: &str,
) -> Result<(Value, Value), PageError> {
    let db = &pages.context.db;
    let missing = || {
        PageError::not_found(format!(
            "no log '{log}' in step '{step}' of build {number} of builder '{builder}'"
        ))
    };
    let step = find_step(pages, builder, number, step)
        .await
        .map_err(|error| match error.status {
            StatusCode::NOT_FOUND => missing(),
            _ => error,
        })?;
    let stepid = step["stepid"].as_i64().unwrap_or_default();
    let logid = builds::log_id(db, &LogRef::Slug(StepRef::Id(stepid), log.to_string()))
        .await?
        .ok_or_else(missing)?;
    let log = builds::log(db, logid).await?.ok_or_else(missing)?;
    Ok((step, log))
}

/// A log as HTML, one page of [`LOG_PAGE_LINES`] lines: the last unless `first=N` asks for
/// another, so a log of any size opens at once on its end.
async fn log_page(
    State(pages): State<Pages>,
    UrlPath((builder, number, step, log)): UrlPath<(String, String, String, String)>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let args = arguments(&raw);
    let (step_json, log_json) = find_log(&pages, &builder, &number, &step, &log).await?;
    let num_lines = log_json["num_lines"].as_i64().unwrap_or_default();
    let last_page = (num_lines - LOG_PAGE_LINES).max(0);
    let first = match argument(&args, "first") {
        None | Some("") => last_page,
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| PageError::bad_request(format!("first={text}: expected a line number")))?
            .clamp(0, last_page),
    };
    let last = (first + LOG_PAGE_LINES).min(num_lines) - 1;
    let logid = log_json["logid"].as_i64().unwrap_or_default();
    let text = if last >= first {
        pages.context.db.log_lines(logid, first, last).await?
    } else {
        String::new()
    };
    let log_type = log_json["type"].as_str().unwrap_or("s");
    let html = ansi::log_html(&text, log_type);
    let earlier = (first > 0).then(|| (first - LOG_PAGE_LINES).max(0));
    let later = (last + 1 < num_lines).then_some(last + 1);
    pages
        .page(
            "log.html",
            json!({
                "builder": builder,
                "number": number,
                "step": step_json,
                "log": log_json,
                "lines": html,
                "first": first,
                "last": last,
                "earlier": earlier,
                "later": later,
                "last_page": last_page,
            }),
        )
        .await
}

/// A log as plain text, streamed in pieces: stdio lines without their channel, no escape
/// sequences.
async fn log_text(
    State(pages): State<Pages>,
    UrlPath((builder, number, step, log)): UrlPath<(String, String, String, String)>,
) -> PageResult {
    let (_, log_json) = find_log(&pages, &builder, &number, &step, &log).await?;
    let logid = log_json["logid"].as_i64().unwrap_or_default();
    let raw = builds::raw_log(&pages.context.db, logid)
        .await?
        .ok_or_else(|| PageError::not_found("the log is gone"))?;
    let db = pages.context.db.clone();
    let num_lines = raw.num_lines;
    let pieces = futures_util::stream::unfold(0i64, move |first| {
        let db = db.clone();
        let raw = raw.clone();
        async move {
            if first >= num_lines {
                return None;
            }
            let last = (first + TEXT_LINES_PER_READ).min(num_lines) - 1;
            let piece = builds::raw_lines(&db, &raw, first, last)
                .await
                .map(|text| ansi::strip_ansi(&text))
                .map_err(std::io::Error::other);
            Some((piece, last + 1))
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(pieces),
    )
        .into_response())
}

/// `/changes`: the last changes, newest first.
async fn changes_page(State(pages): State<Pages>, RawQuery(raw): RawQuery) -> PageResult {
    let args = arguments(&raw);
    let web = web_config(&pages.context);
    let limit = count(&args, "num_changes", web.numbuilds, None)?;
    let listing = changes::changes(
        &pages.context.db,
        &ChangesOf::default(),
        &query(
            &changes::CHANGE,
            &[("order", "-changeid".into()), ("limit", limit.to_string())],
        ),
    )
    .await?;
    let mut rows = Vec::new();
    for change in &listing.items {
        rows.push(render::change_links(&pages.context, &web, change).await);
    }
    pages.page("changes.html", json!({ "changes": rows })).await
}

async fn change_page(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    UrlPath(changeid): UrlPath<String>,
) -> PageResult {
    let missing = || PageError::not_found(format!("no change {changeid}"));
    let id: i64 = changeid.parse().map_err(|_| missing())?;
    let change = changes::change(&pages.context.db, id)
        .await?
        .ok_or_else(missing)?;
    let web = web_config(&pages.context);
    let builds = builds::builds(
        &pages.context.db,
        &BuildsOf {
            changeid: Some(id),
            ..Default::default()
        },
        &query(&builds::BUILD, &[("order", "buildid".into())]),
    )
    .await?;
    let names = builder_names(&pages).await?;
    let builds: Vec<Value> = builds
        .items
        .into_iter()
        .map(|build| with_builder_name(build, &names))
        .collect();
    pages
        .page(
            "change.html",
            json!({
                "change": render::change_links(&pages.context, &web, &change).await,
                "builds": builds,
                "can_stop": Caller::new(&pages.context, visitor.user.as_deref())
                    .may(AuthzAction::StopChange, None)
                    .await,
            }),
        )
        .await
}

/// Builder names by id, for pages that list builds of several builders.
async fn builder_names(pages: &Pages) -> Result<Vec<(i64, String)>, PageError> {
    let builders = registry::builders(
        &pages.context.db,
        &BuildersOf::default(),
        &query(&registry::BUILDER, &[]),
    )
    .await?;
    Ok(builders
        .items
        .iter()
        .filter_map(|b| Some((b["builderid"].as_i64()?, b["name"].as_str()?.to_string())))
        .collect())
}

fn with_builder_name(mut build: Value, names: &[(i64, String)]) -> Value {
    let id = build["builderid"].as_i64();
    let name = names.iter().find(|(i, _)| Some(*i) == id).map(|(_, n)| n);
    build["builder_name"] = json!(name);
    build
}

/// `/workers` (and the 0.8 name `/buildslaves`): every worker, connected or not, and the
/// builders it serves unless `no_builders=1`.
async fn workers_page(State(pages): State<Pages>, RawQuery(raw): RawQuery) -> PageResult {
    let args = arguments(&raw);
    let show_builders = !matches!(argument(&args, "no_builders"), Some("1" | "true"));
    let workers = registry::workers(
        &pages.context.db,
        &WorkersOf::default(),
        &query(&registry::WORKER, &[("order", "name".into())]),
    )
    .await?;
    let names = builder_names(&pages).await?;
    let rows: Vec<Value> = workers
        .items
        .into_iter()
        .map(|mut worker| {
            let builders: Vec<&str> = worker["configured_on"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|on| {
                    let id = on["builderid"].as_i64()?;
                    names
                        .iter()
                        .find(|(i, _)| *i == id)
                        .map(|(_, n)| n.as_str())
                })
                .collect();
            let mut builders = builders;
            builders.sort_unstable();
            builders.dedup();
            worker["builder_names"] = json!(builders);
            worker
        })
        .collect();
    pages
        .page(
            "workers.html",
            json!({ "workers": rows, "show_builders": show_builders }),
        )
        .await
}

/// `/workers/NAME`: a worker, its state, and the controls this visitor may use.
async fn worker_page(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    UrlPath(name): UrlPath<String>,
) -> PageResult {
    let worker = controls::worker_json(&pages, &name).await?;
    let caller = Caller::new(&pages.context, visitor.user.as_deref());
    let can = json!({
        "pause": caller.may(AuthzAction::PauseSlave, Some(&worker)).await,
        "shutdown": caller.may(AuthzAction::GracefulShutdown, Some(&worker)).await,
    });
    pages
        .page("worker.html", json!({ "worker": worker, "can": can }))
        .await
}

/// `/one_line_per_build`: the last builds of every builder (or of `builder=`), newest
/// first, one line each.
async fn one_line_per_build(State(pages): State<Pages>, RawQuery(raw): RawQuery) -> PageResult {
    let args = arguments(&raw);
    let web = web_config(&pages.context);
    let numbuilds = count(&args, "numbuilds", web.numbuilds, None)?;
    let names = builder_names(&pages).await?;
    let wanted = all_arguments(&args, "builder");
    let mut builderids = Vec::new();
    for name in &wanted {
        let id = names
            .iter()
            .find(|(_, n)| n == name)
            .map(|(id, _)| *id)
            .ok_or_else(|| PageError::not_found(format!("no builder named '{name}'")))?;
        builderids.push(id);
    }
    if wanted.is_empty() {
        builderids = names.iter().map(|(id, _)| *id).collect();
    }
    let branches = all_arguments(&args, "branch");
    let selection = store::Selection {
        finished: true,
        branches: &branches,
        ..Default::default()
    };
    let ids = store::newest_builds(&pages.context.db, &builderids, &selection, numbuilds).await?;
    let builds = builds_by_id(&pages, ids).await?;
    let rows: Vec<Value> = builds
        .into_iter()
        .rev()
        .map(|build| with_builder_name(build, &names))
        .collect();
    pages
        .page(
            "one_line_per_build.html",
            object! {
                "builds": rows,
                "builders": wanted,
                "numbuilds": numbuilds,
                "more_href": href_with(&args, "numbuilds", &(numbuilds * 2).to_string()),
            },
        )
        .await
}

/// `/waterfall`: a column per builder, a row per build, newest on top; the builds
/// [`selected_builds`] would pick, `num_events` of them at most `num_events_max`, read with
/// only what their cells show.
/// `failures_only=true` keeps the builders that are failing now ([`failing`]).
/// Events show in time order among the builds (the spec's default; `show_events=false`
/// hides them): the connects and disconnects of the workers serving each builder, in its
/// column, and the masters starting and reconfiguring, in every column.
async fn waterfall(State(pages): State<Pages>, RawQuery(raw): RawQuery) -> PageResult {
    let args = arguments(&raw);
    let web = web_config(&pages.context);
    let num_events = count(&args, "num_events", web.num_events, web.num_events_max)?;
    let mut columns = builder_columns(&pages, &args).await?;
    if flag(&args, "failures_only", false)? {
        columns = failing(&pages, columns).await?;
    }
    let show_events = flag(&args, "show_events", true)?;
    let builds = {
        let branches = all_arguments(&args, "branch");
        let (started_from, started_until) = time_window(&args)?;
        let selection = store::Selection {
            started_from,
            started_until,
            branches: &branches,
            ..Default::default()
        };
        let builderids = column_ids(&columns);
        store::newest_build_cells(&pages.context.db, &builderids, &selection, num_events).await?
    };
    let window = ["show_time", "first_time", "last_time"]
        .iter()
        .any(|name| argument(&args, name).is_some());
    let column_of = |builderid: i64| columns.iter().position(|c| c["builderid"] == builderid);
    let mut events = if show_events {
        // A full page of builds ends at its oldest: events before it would not show.
        let oldest = (builds.len() == num_events)
            .then(|| builds.last().map(|b| b.started_at))
            .flatten();
        let (first_time, last_time) = time_window(&args)?;
        let from = first_time.max(oldest);
        let builderids = column_ids(&columns);
        let db = &pages.context.db;
        let mut events = store::worker_events(db, &builderids, from, last_time, num_events).await?;
        events.extend(store::master_events(db, from, last_time, num_events).await?);
        events.sort_by(|a, b| b.at.total_cmp(&a.at));
        events
    } else {
        Vec::new()
    }
    .into_iter()
    .peekable();
    let mut rows: Vec<Value> = Vec::with_capacity(builds.len() + events.len());
    for build in builds {
        // Builds tell their start in whole seconds: an event of the same second goes below.
        let started = build.started_at;
        while let Some(event) = events.next_if(|e| e.at as i64 > started) {
            rows.push(event_row(event, column_of, columns.len()));
        }
        let column = column_of(build.builderid);
        let build = object! {
            "buildid": build.id,
            "number": build.number,
            "builderid": build.builderid,
            "started_at": build.started_at,
            "complete": build.complete,
            "results": build.results,
            "state_string": build.state_string,
        };
        rows.push(object! { "build": build, "column": column });
    }
    rows.extend(events.map(|event| event_row(event, column_of, columns.len())));
    rows.truncate(num_events);
    pages.page(
        "waterfall.html",
        object! {
            "builders": columns,
            "rows": rows,
            "num_events": num_events,
            "show_events": show_events,
            "window": window,
            "more_href": href_with(&args, "num_events", &(num_events * 2).to_string()),
            "events_href": href_with(&args, "show_events", if show_events { "false" } else { "true" }),
        },
    ).await
}

/// A waterfall row of an event: its time, what happened and to which worker if any, and
/// its columns: those of the builders the worker serves, every one for a master's.
fn event_row(
    event: store::Event,
    column_of: impl Fn(i64) -> Option<usize>,
    column_count: usize,
) -> Value {
    let columns: Vec<usize> = match event.worker {
        Some(_) => event.builderids.into_iter().filter_map(column_of).collect(),
        None => (0..column_count).collect(),
    };
    object! {
        "event": object! { "at": event.at as i64, "name": event.event, "worker": event.worker },
        "columns": columns,
    }
}

/// This page's URL query with `name` set to `value` and every other argument kept.
pub(crate) fn href_with(args: &[(String, String)], name: &str, value: &str) -> String {
    let mut query = form_urlencoded::Serializer::for_suffix(String::from("?"), 1);
    query.extend_pairs(args.iter().filter(|(n, _)| n != name));
    query.append_pair(name, value);
    query.finish()
}

/// A boolean from the URL: `1`/`true` or `0`/`false`, else `default`.
fn flag(args: &[(String, String)], name: &str, default: bool) -> Result<bool, PageError> {
    match argument(args, name) {
        None | Some("") => Ok(default),
        Some("1" | "true" | "True" | "on") => Ok(true),
        Some("0" | "false" | "False" | "off") => Ok(false),
        Some(other) => Err(PageError::bad_request(format!(
            "{name}={other}: expected true or false"
        ))),
    }
}

/// Seconds since the epoch from the URL.
fn epoch(args: &[(String, String)], name: &str) -> Result<Option<i64>, PageError> {
    match argument(args, name) {
        None | Some("") => Ok(None),
        Some(text) => text.parse::<f64>().map(|t| Some(t as i64)).map_err(|_| {
            PageError::bad_request(format!("{name}={text}: expected seconds since the epoch"))
        }),
    }
}

/// The builders a page shows: every builder by name, or those of `builder=`, having one
/// of the `tag=` (or `category=`) tags when any is given.
async fn builder_columns(
    pages: &Pages,
    args: &[(String, String)],
) -> Result<Vec<Value>, PageError> {
    let wanted = all_arguments(args, "builder");
    let mut tags = all_arguments(args, "tag");
    tags.extend(all_arguments(args, "category"));
    let builders = registry::builders(
        &pages.context.db,
        &BuildersOf::default(),
        &query(&registry::BUILDER, &[("order", "name".into())]),
    )
    .await?;
    Ok(builders
        .items
        .into_iter()
        .filter(|b| wanted.is_empty() || wanted.contains(&b["name"].as_str().unwrap_or_default()))
        .filter(|b| {
            tags.is_empty()
                || b["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| tags.contains(&t.as_str().unwrap_or_default()))
        })
        .collect())
}

/// The builders that are failing now, as 0.8's waterfall tells: the last finished build
/// did not succeed (with or without warnings; a skipped one is not a failure), a step of a
/// running build failed, or no worker of the builder is connected.
async fn failing(pages: &Pages, columns: Vec<Value>) -> Result<Vec<Value>, PageError> {
    let db = &pages.context.db;
    let workers =
        registry::workers(db, &WorkersOf::default(), &query(&registry::WORKER, &[])).await?;
    let summaries = builder_summaries(pages, columns, &[]).await?;
    let running: Vec<i64> = summaries
        .iter()
        .flat_map(|s| s["running"].as_array().into_iter().flatten())
        .filter_map(|b| b["buildid"].as_i64())
        .collect();
    let step_failed =
        store::builds_with_step_results(db, &running, BuildResult::Failure.code()).await?;
    let mut kept = Vec::new();
    for summary in summaries {
        let builder = &summary["builder"];
        let last_failed = summary["last"]["results"]
            .as_i64()
            .and_then(BuildResult::from_code)
            .is_some_and(|r| {
                !matches!(
                    r,
                    BuildResult::Success | BuildResult::Warnings | BuildResult::Skipped
                )
            });
        let offline = !workers.items.iter().any(|w| {
            w["connected_to"].as_array().is_some_and(|c| !c.is_empty())
                && w["configured_on"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|on| on["builderid"] == builder["builderid"])
        });
        let step_failed = summary["running"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|b| {
                b["buildid"]
                    .as_i64()
                    .is_some_and(|id| step_failed.contains(&id))
            });
        if last_failed || offline || step_failed {
            kept.push(builder.clone());
        }
    }
    Ok(kept)
}

/// The builds of `columns` the waterfall's URL selects, newest first, at most `limit`:
/// `branch=` (the build's `branch` property), `first_time=`/`last_time=` (seconds since
/// the epoch; the builds started between them) and `show_time=` (seconds before
/// `last_time`, or before now). `finished` and `results` narrow them further (the feeds
/// ask for failures).
async fn selected_builds(
    pages: &Pages,
    args: &[(String, String)],
    columns: &[Value],
    limit: usize,
    finished: bool,
    results: &[i64],
) -> Result<Vec<Value>, PageError> {
    let ids = selected_build_ids(pages, args, columns, limit, finished, results).await?;
    let mut builds = builds_by_id(pages, ids).await?;
    builds.reverse();
    Ok(builds)
}

/// The ids of [`selected_builds`], newest first.
async fn selected_build_ids(
    pages: &Pages,
    args: &[(String, String)],
    columns: &[Value],
    limit: usize,
    finished: bool,
    results: &[i64],
) -> Result<Vec<i64>, PageError> {
    let branches = all_arguments(args, "branch");
    let (first_time, last_time) = time_window(args)?;
    let builderids = column_ids(columns);
    let selection = store::Selection {
        finished,
        results,
        started_from: first_time,
        started_until: last_time,
        branches: &branches,
        ..Default::default()
    };
    Ok(store::newest_builds(&pages.context.db, &builderids, &selection, limit).await?)
}

/// The ids of the builders a page shows.
fn column_ids(columns: &[Value]) -> Vec<i64> {
    columns
        .iter()
        .filter_map(|c| c["builderid"].as_i64())
        .collect()
}

/// The seconds the waterfall's URL asks to show, `(first, last)`: `first_time=` and
/// `last_time=` (seconds since the epoch), `show_time=` (seconds before `last_time`, or
/// before now).
fn time_window(args: &[(String, String)]) -> Result<(Option<i64>, Option<i64>), PageError> {
    let last_time = epoch(args, "last_time")?;
    let mut first_time = epoch(args, "first_time")?;
    if let Some(span) = epoch(args, "show_time")? {
        let end = last_time.unwrap_or_else(|| chrono::Utc::now().timestamp());
        first_time = Some(first_time.map_or(end - span, |first| first.max(end - span)));
    }
    Ok((first_time, last_time))
}

/// Builds by id, in one query.
async fn builds_by_id(
    pages: &Pages,
    ids: impl IntoIterator<Item = i64>,
) -> Result<Vec<Value>, PageError> {
    read_builds(pages, ids, &[]).await
}

/// Builds by id, in one query, with the REST query's `extra` parameters (`property`).
async fn read_builds(
    pages: &Pages,
    ids: impl IntoIterator<Item = i64>,
    extra: &[(&str, &str)],
) -> Result<Vec<Value>, PageError> {
    let mut pairs: Vec<(&str, String)> = ids
        .into_iter()
        .map(|id| ("buildid", id.to_string()))
        .collect();
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    pairs.sort();
    pairs.dedup();
    pairs.extend(extra.iter().map(|(name, value)| (*name, value.to_string())));
    Ok(builds::builds(
        &pages.context.db,
        &BuildsOf::default(),
        &query(&builds::BUILD, &pairs),
    )
    .await?
    .items)
}

/// `/one_box_per_builder`: a box per builder (`builder=`, `tag=`) with its last finished
/// build, of `branch=` when given.
async fn one_box_per_builder(State(pages): State<Pages>, RawQuery(raw): RawQuery) -> PageResult {
    let args = arguments(&raw);
    let columns = builder_columns(&pages, &args).await?;
    let branches = all_arguments(&args, "branch");
    let builderids: Vec<i64> = columns
        .iter()
        .filter_map(|c| c["builderid"].as_i64())
        .collect();
    let selection = store::Selection {
        finished: true,
        branches: &branches,
        ..Default::default()
    };
    let last_ids = store::newest_of_each(
        &pages.context.db,
        &builderids,
        &selection,
        1,
        builderids.len(),
    )
    .await?;
    let builds = builds_by_id(&pages, last_ids.into_iter().map(|key| key.id)).await?;
    let boxes: Vec<Value> = columns
        .into_iter()
        .map(|builder| {
            let last = builds
                .iter()
                .find(|b| b["builderid"] == builder["builderid"]);
            json!({ "builder": builder, "last": last })
        })
        .collect();
    pages
        .page("one_box_per_builder.html", object! { "boxes": boxes })
        .await
}

async fn robots(State(pages): State<Pages>) -> Response {
    match read_public(&pages.context, Path::new("robots.txt")).await {
        Some(response) => response,
        None => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            render::ROBOTS,
        )
            .into_response(),
    }
}

async fn stylesheet(State(pages): State<Pages>) -> Response {
    match read_public(&pages.context, Path::new("default.css")).await {
        Some(response) => response,
        None => static_asset("text/css; charset=utf-8", render::STYLESHEET),
    }
}

async fn script() -> Response {
    static_asset("text/javascript; charset=utf-8", live::SCRIPT)
}

fn static_asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Any other path: a file of `public_html`, or 404.
async fn public_file(State(pages): State<Pages>, uri: Uri) -> Response {
    let relative = Path::new(uri.path().trim_start_matches('/'));
    let safe = relative
        .components()
        .all(|part| matches!(part, Component::Normal(_)));
    if safe {
        if let Some(response) = read_public(&pages.context, relative).await {
            return response;
        }
    }
    PageError::not_found(format!("no page at {}", uri.path())).into_response()
}

/// A file of `public_html` (relative to the base directory unless absolute), if it is one.
async fn read_public(context: &Context, relative: &Path) -> Option<Response> {
    let web = web_config(context);
    let mut path = context.basedir.join(&web.public_html).join(relative);
    if tokio::fs::metadata(&path).await.ok()?.is_dir() {
        path = path.join("index.html");
    }
    let bytes = tokio::fs::read(&path).await.ok()?;
    let content_type = match path.extension().and_then(|e| e.to_str()) {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    Some(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}
