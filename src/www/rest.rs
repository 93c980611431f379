//! `/api/v2/`: GET reads the data API in Buildbot's REST shapes (`{"builds": [...], "meta":
//! {"total": N}}`), POST calls control actions in Buildbot's JSON-RPC (`force`, `stop`,
//! `rebuild`, `cancel`).

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::auth::{self, Visitor};
use super::paths::{resolve, Endpoint};
use crate::config::build::ForceScheduler;
use crate::config::status::{AuthzAction, AuthzConfig, AuthzRule};
use crate::data::builds::{self, BuilderRef, BuildsOf, RawLog};
use crate::data::changes::{self, ChangesOf};
use crate::data::registry::{self, BuildersOf, WorkersOf};
use crate::data::{forceschedulers, outbox};
use crate::data::{json_text, Entity, JsonPage, Page, Query};
use crate::db::DbError;
use crate::runtime::{Context, ControlError, PendingOf};

/// Lines read from storage per piece of a streamed raw log.
const RAW_LINES_PER_READ: i64 = 1000;

/// A failed request: its status and the message of its `{"error": ...}` body.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn invalid_path(path: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, format!("invalid path: {path}"))
    }

    fn not_found(entity: &Entity, path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{} not found: {path}", entity.name),
        )
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> ApiError {
        // The log has the details; a 5xx body carries no internals.
        tracing::error!(%error, "REST API request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.message }).to_string();
        (self.status, json_headers(), body).into_response()
    }
}

fn json_headers() -> [(header::HeaderName, HeaderValue); 1] {
    [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    )]
}

/// What a GET answers.
enum Answer {
    Collection(&'static Entity, Page),
    /// A collection page the database wrote as JSON text.
    JsonCollection(&'static Entity, JsonPage),
    Single(&'static Entity, Value),
    Raw(RawLog, bool),
}

fn entity(endpoint: Endpoint) -> &'static Entity {
    use Endpoint::*;
    match endpoint {
        Builders | Builder => &registry::BUILDER,
        Builds | Build | TriggeredBuilds => &builds::BUILD,
        Steps | Step => &builds::STEP,
        Logs | Log => &builds::LOG,
        LogContents | LogRaw | LogRawInline => &builds::LOGCHUNK,
        Changes | Change => &changes::CHANGE,
        Sourcestamps | Sourcestamp => &changes::SOURCESTAMP,
        Buildsets | Buildset => &changes::BUILDSET,
        BuildRequests | BuildRequest => &changes::BUILDREQUEST,
        Workers | Worker => &registry::WORKER,
        Masters | Master => &registry::MASTER,
        Schedulers | Scheduler => &registry::SCHEDULER,
        ChangeSources | ChangeSource => &registry::CHANGESOURCE,
        ForceSchedulers | ForceScheduler => &forceschedulers::FORCESCHEDULER,
        Reporters | Reporter => &outbox::REPORTER,
        Messages => &outbox::MESSAGE,
    }
}

fn is_collection(endpoint: Endpoint) -> bool {
    use Endpoint::*;
    matches!(
        endpoint,
        Builders
            | Builds
            | TriggeredBuilds
            | Steps
            | Logs
            | Changes
            | Sourcestamps
            | Buildsets
            | BuildRequests
            | Workers
            | Masters
            | Schedulers
            | ChangeSources
            | ForceSchedulers
            | Reporters
            | Messages
    )
}

pub async fn get(
    State(context): State<Context>,
    Path(path): Path<String>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
) -> Response {
    match answer(&context, &path, raw_query.as_deref().unwrap_or_default()).await {
        Ok(Answer::Raw(log, inline)) => raw_response(context, log, inline),
        Ok(answer) => {
            let compact = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/json"));
            json_response(answer, compact)
        }
        Err(error) => error.into_response(),
    }
}

/// Buildbot answers compact JSON to clients that accept it, indented text to the others
/// (a browser, curl).
fn json_response(answer: Answer, compact: bool) -> Response {
    let (entity, items, meta) = match answer {
        Answer::JsonCollection(entity, page) => return json_page_response(entity, page, compact),
        Answer::Collection(entity, page) => (entity, page.items, json!({"total": page.total})),
        Answer::Single(entity, item) => (entity, vec![item], json!({})),
        Answer::Raw(..) => unreachable!("raw logs are streamed"),
    };
    let mut body = Map::new();
    body.insert(entity.plural.to_string(), Value::Array(items));
    body.insert("meta".to_string(), meta);
    let body = Value::Object(body);
    let (bytes, content_type) = if compact {
        (serde_json::to_vec(&body), "application/json; charset=utf-8")
    } else {
        (
            serde_json::to_vec_pretty(&body),
            "text/plain; charset=utf-8",
        )
    };
    match bytes {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode a REST answer");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// The same answer as [`json_response`] gives for the page's items, spliced from the
/// database's text: `{"PLURAL": [...], "meta": {"total": N}}`, keys in sorted order.
fn json_page_response(entity: &Entity, page: JsonPage, compact: bool) -> Response {
    let items = format!("\"{}\":{}", entity.plural, page.array);
    let meta = format!("\"meta\":{{\"total\":{}}}", page.total);
    let (first, second) = if entity.plural < "meta" {
        (items, meta)
    } else {
        (meta, items)
    };
    let body = format!("{{{first},{second}}}");
    if compact {
        return (
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            body,
        )
            .into_response();
    }
    let mut pretty = Vec::with_capacity(body.len() * 2);
    json_text::write_pretty(body.as_bytes(), &mut pretty);
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        pretty,
    )
        .into_response()
}

async fn answer(context: &Context, path: &str, raw_query: &str) -> Result<Answer, ApiError> {
    let (endpoint, args) = resolve(path).ok_or_else(|| ApiError::invalid_path(path))?;
    let entity = entity(endpoint);
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect();
    let query = Query::parse(&pairs, entity, is_collection(endpoint))
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, message))?;
    let db = &context.db;
    let not_found = || ApiError::not_found(entity, path);
    let collection = |page: Page| Ok(Answer::Collection(entity, page));
    use Endpoint::*;
    let single = match endpoint {
        Builders => {
            let of = BuildersOf {
                masterid: args.int("masterid"),
                workerid: args.int("workerid"),
            };
            return collection(registry::builders(db, &of, &query).await?);
        }
        Builder => {
            let builderid = builds::builder_id(db, &args.builder().ok_or_else(not_found)?).await?;
            let builder = match builderid {
                Some(id) => registry::builder(db, id).await?,
                None => None,
            };
            builder.filter(|b| in_list(b, "masterids", args.int("masterid")))
        }
        Builds => {
            // A builder named by id needs no lookup: no such builder has no builds.
            let builderid = match args.builder() {
                Some(BuilderRef::Id(id)) => Some(id),
                Some(builder) => match builds::builder_id(db, &builder).await? {
                    Some(id) => Some(id),
                    None => return collection(query.page(Vec::new(), None)),
                },
                None => None,
            };
            let of = BuildsOf {
                builderid,
                buildrequestid: args.int("buildrequestid"),
                workerid: args.int("workerid"),
                changeid: args.int("changeid"),
                parent_buildid: None,
            };
            return builds_answer(db, &of, &query).await;
        }
        TriggeredBuilds => {
            let of = BuildsOf {
                parent_buildid: args.int("buildid"),
                ..BuildsOf::default()
            };
            return builds_answer(db, &of, &query).await;
        }
        Build => match builds::build_id(db, &args.build().ok_or_else(not_found)?).await? {
            Some(id) => builds::build(db, id, &query).await?,
            None => None,
        },
        Steps => {
            let buildid = match args.int("buildid") {
                Some(id) => id,
                None => builds::build_id(db, &args.build().ok_or_else(not_found)?)
                    .await?
                    .ok_or_else(|| ApiError::not_found(&builds::BUILD, path))?,
            };
            return Ok(match builds::steps_json(db, buildid, &query).await? {
                Some(page) => Answer::JsonCollection(entity, page),
                None => Answer::Collection(entity, builds::steps(db, buildid, &query).await?),
            });
        }
        Step => match builds::step_id(db, &args.step().ok_or_else(not_found)?).await? {
            Some(id) => builds::step(db, id).await?,
            None => None,
        },
        Logs => {
            let stepid = builds::step_id(db, &args.step().ok_or_else(not_found)?).await?;
            return collection(match stepid {
                Some(id) => builds::logs(db, id, &query).await?,
                None => query.page(Vec::new(), None),
            });
        }
        Log => match builds::log_id(db, &args.log().ok_or_else(not_found)?).await? {
            Some(id) => builds::log(db, id).await?,
            None => None,
        },
        LogContents => match builds::log_id(db, &args.log().ok_or_else(not_found)?).await? {
            Some(id) => builds::log_contents(db, id, query.offset, query.limit).await?,
            None => None,
        },
        LogRaw | LogRawInline => {
            let logid = builds::log_id(db, &args.log().ok_or_else(not_found)?)
                .await?
                .ok_or_else(not_found)?;
            let log = builds::raw_log(db, logid).await?.ok_or_else(not_found)?;
            return Ok(Answer::Raw(log, endpoint == LogRawInline));
        }
        Changes => {
            let buildid = match (args.int("buildid"), args.build()) {
                (Some(id), _) => Some(id),
                (None, Some(build)) => match builds::build_id(db, &build).await? {
                    Some(id) => Some(id),
                    None => return collection(query.page(Vec::new(), None)),
                },
                (None, None) => None,
            };
            let of = ChangesOf {
                buildid,
                ssid: args.int("ssid"),
            };
            return collection(changes::changes(db, &of, &query).await?);
        }
        Change => changes::change(db, args.int("changeid").ok_or_else(not_found)?).await?,
        Sourcestamps => {
            return collection(changes::sourcestamps(db, args.int("buildsetid"), &query).await?)
        }
        Sourcestamp => changes::sourcestamp(db, args.int("ssid").ok_or_else(not_found)?).await?,
        Buildsets => return collection(changes::buildsets(db, &query).await?),
        Buildset => changes::buildset(db, args.int("bsid").ok_or_else(not_found)?).await?,
        BuildRequests => {
            return collection(changes::buildrequests(db, args.int("builderid"), &query).await?)
        }
        BuildRequest => {
            let brid = args.int("buildrequestid").ok_or_else(not_found)?;
            changes::buildrequest(db, brid, &query).await?
        }
        Workers => {
            let of = WorkersOf {
                masterid: args.int("masterid"),
                builderid: args.int("builderid"),
            };
            return collection(registry::workers(db, &of, &query).await?);
        }
        Worker => {
            let workerid = registry::worker_id(db, &args.worker().ok_or_else(not_found)?).await?;
            let worker = match workerid {
                Some(id) => registry::worker(db, id).await?,
                None => None,
            };
            worker.filter(|w| configured_on(w, args.int("masterid"), args.int("builderid")))
        }
        Masters => return collection(registry::masters(db, args.int("builderid"), &query).await?),
        Master => {
            let master = registry::master(db, args.int("masterid").ok_or_else(not_found)?).await?;
            match args.int("builderid") {
                Some(builderid) => {
                    let builder = registry::builder(db, builderid).await?;
                    master.filter(|m| {
                        builder
                            .as_ref()
                            .is_some_and(|b| in_list(b, "masterids", m["masterid"].as_i64()))
                    })
                }
                None => master,
            }
        }
        Schedulers => {
            return collection(registry::schedulers(db, args.int("masterid"), &query).await?)
        }
        Scheduler => {
            let id = args.int("schedulerid").ok_or_else(not_found)?;
            registry::scheduler(db, id)
                .await?
                .filter(|s| run_by(s, args.int("masterid")))
        }
        ChangeSources => {
            return collection(registry::changesources(db, args.int("masterid"), &query).await?)
        }
        ChangeSource => {
            let id = args.int("changesourceid").ok_or_else(not_found)?;
            registry::changesource(db, id)
                .await?
                .filter(|s| run_by(s, args.int("masterid")))
        }
        ForceSchedulers => {
            let builder = match args.int("builderid") {
                Some(id) => match registry::builder(db, id).await? {
                    Some(builder) => Some(builder["name"].as_str().unwrap_or_default().to_string()),
                    None => return collection(query.page(Vec::new(), None)),
                },
                None => None,
            };
            let items =
                forceschedulers::forceschedulers(&context.config.current(), builder.as_deref());
            return collection(paged(&query, items));
        }
        Reporters => {
            let items = outbox::reporters(db, &context.config.current()).await?;
            return collection(paged(&query, items));
        }
        Reporter => {
            let name = args.text("reportername").unwrap_or_default();
            let items = outbox::reporters(db, &context.config.current()).await?;
            items.into_iter().find(|r| r["name"] == name)
        }
        Messages => {
            let name = args.text("reportername").unwrap_or_default();
            let items = outbox::messages(db, &context.config.current(), name)
                .await?
                .ok_or_else(not_found)?;
            return collection(paged(&query, items));
        }
        ForceScheduler => forceschedulers::forcescheduler(
            &context.config.current(),
            args.text("schedulername").unwrap_or_default(),
        ),
    };
    let mut item = single.ok_or_else(not_found)?;
    query.project(&mut item);
    Ok(Answer::Single(entity, item))
}

/// Items read whole, filtered, ordered, paged and projected as the query asks.
fn paged(query: &Query, items: Vec<Value>) -> Page {
    let mut page = query.page(items, None);
    for item in &mut page.items {
        query.project(item);
    }
    page
}

/// Builds as the database writes them when it can, else read into values.
async fn builds_answer(
    db: &crate::db::Db,
    of: &BuildsOf,
    query: &Query,
) -> Result<Answer, ApiError> {
    let entity = &builds::BUILD;
    Ok(match builds::builds_json(db, of, query).await? {
        Some(page) => Answer::JsonCollection(entity, page),
        None => Answer::Collection(entity, builds::builds(db, of, query).await?),
    })
}

/// Whether `item[list]` holds `id` (no id: no condition).
fn in_list(item: &Value, list: &str, id: Option<i64>) -> bool {
    id.is_none_or(|id| {
        item[list]
            .as_array()
            .is_some_and(|ids| ids.iter().any(|v| v.as_i64() == Some(id)))
    })
}

/// Whether a worker is configured on the master and builder a path names.
fn configured_on(worker: &Value, masterid: Option<i64>, builderid: Option<i64>) -> bool {
    if masterid.is_none() && builderid.is_none() {
        return true;
    }
    worker["configured_on"].as_array().is_some_and(|list| {
        list.iter().any(|entry| {
            masterid.is_none_or(|m| entry["masterid"].as_i64() == Some(m))
                && builderid.is_none_or(|b| entry["builderid"].as_i64() == Some(b))
        })
    })
}

/// Whether a scheduler or change source runs on the master a path names.
fn run_by(service: &Value, masterid: Option<i64>) -> bool {
    masterid.is_none_or(|m| service["master"]["masterid"].as_i64() == Some(m))
}

/// Streams a log's text, a thousand lines per read, stdio channel letters stripped.
fn raw_response(context: Context, log: RawLog, inline: bool) -> Response {
    let content_type = if log.log_type == "h" {
        "text/html; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type);
    if !inline {
        response = response.header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename={}", log.filename),
        );
    }
    let header_text = log.header.clone();
    let start =
        futures_util::stream::once(async move { Ok::<_, DbError>(Bytes::from(header_text)) });
    let lines = futures_util::stream::unfold(0i64, move |first| {
        let context = context.clone();
        let log = log.clone();
        async move {
            if first >= log.num_lines {
                return None;
            }
            let last = (first + RAW_LINES_PER_READ).min(log.num_lines) - 1;
            let text = builds::raw_lines(&context.db, &log, first, last).await;
            Some((text.map(Bytes::from), last + 1))
        }
    });
    use futures_util::StreamExt;
    let body = Body::from_stream(start.chain(lines));
    response.body(body).unwrap_or_else(|_| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
    })
}

// ---- JSON-RPC ------------------------------------------------------------------------

/// Buildbot's JSON-RPC error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;

/// A failed call: HTTP status, JSON-RPC code, message.
struct RpcError(StatusCode, i64, String);

impl RpcError {
    fn bad(code: i64, message: impl Into<String>) -> RpcError {
        RpcError(StatusCode::BAD_REQUEST, code, message.into())
    }
}

impl From<ControlError> for RpcError {
    fn from(error: ControlError) -> RpcError {
        let status =
            StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = match error.status {
            400 => INVALID_PARAMS,
            404 => INVALID_REQUEST,
            501 => METHOD_NOT_FOUND,
            _ => INTERNAL_ERROR,
        };
        RpcError(status, code, error.message)
    }
}

impl From<DbError> for RpcError {
    fn from(error: DbError) -> RpcError {
        tracing::error!(%error, "JSON-RPC call failed");
        RpcError(
            StatusCode::INTERNAL_SERVER_ERROR,
            INTERNAL_ERROR,
            "internal error".into(),
        )
    }
}

/// Why a control call did not run: a JSON-RPC error, or refused by `util.Authz` (a 401 or
/// 403 that is not JSON-RPC, as the web's other refusals).
enum CallError {
    Rpc(RpcError),
    Refused(Response),
}

impl<E: Into<RpcError>> From<E> for CallError {
    fn from(error: E) -> CallError {
        CallError::Rpc(error.into())
    }
}

pub async fn post(
    State(context): State<Context>,
    Extension(visitor): Extension<Visitor>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut reply = Map::new();
    reply.insert("jsonrpc".into(), json!("2.0"));
    let outcome = match decode_rpc(&headers, &body) {
        Ok((method, id, params)) => {
            reply.insert("id".into(), id);
            let caller = Caller::new(&context, visitor.user.as_deref());
            call(&caller, &path, &method, params).await
        }
        Err(error) => Err(CallError::Rpc(error)),
    };
    let status = match outcome {
        Ok(result) => {
            reply.insert("result".into(), result);
            StatusCode::OK
        }
        Err(CallError::Rpc(RpcError(status, code, message))) => {
            reply.insert("error".into(), json!({"code": code, "message": message}));
            status
        }
        Err(CallError::Refused(response)) => return response,
    };
    (status, json_headers(), Value::Object(reply).to_string()).into_response()
}
/// The method, id and params of a JSON-RPC 2.0 request, checked as Buildbot checks them.
fn decode_rpc(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, Value, Map<String, Value>), RpcError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.split(';').next().unwrap_or_default().trim() != "application/json" {
        return Err(RpcError::bad(
            INVALID_REQUEST,
            "Invalid content-type (use application/json)",
        ));
    }
    let data: Value = serde_json::from_slice(body)
        .map_err(|e| RpcError::bad(PARSE_ERROR, format!("JSON parse error: {e}")))?;
    let mut data = match data {
        Value::Object(map) => map,
        Value::Array(_) => {
            return Err(RpcError::bad(
                INVALID_REQUEST,
                "JSONRPC batch requests are not supported",
            ))
        }
        _ => {
            return Err(RpcError::bad(
                INVALID_REQUEST,
                "JSONRPC root object must be an object",
            ))
        }
    };
    for (key, ok, kind) in [
        (
            "jsonrpc",
            Value::is_string as fn(&Value) -> bool,
            "a string",
        ),
        ("method", Value::is_string, "a string"),
        (
            "id",
            |v: &Value| v.is_string() || v.is_i64() || v.is_u64() || v.is_null(),
            "a string, number, or null",
        ),
        ("params", Value::is_object, "an object"),
    ] {
        match data.get(key) {
            None => {
                return Err(RpcError::bad(
                    INVALID_REQUEST,
                    format!("missing key '{key}'"),
                ))
            }
            Some(value) if !ok(value) => {
                return Err(RpcError::bad(
                    INVALID_REQUEST,
                    format!("'{key}' must be {kind}"),
                ))
            }
            Some(_) => {}
        }
    }
    if data["jsonrpc"] != "2.0" {
        return Err(RpcError::bad(
            INVALID_REQUEST,
            "only JSONRPC 2.0 is supported",
        ));
    }
    let method = data["method"].as_str().unwrap_or_default().to_string();
    let id = data.remove("id").unwrap_or(Value::Null);
    let Some(Value::Object(params)) = data.remove("params") else {
        return Err(RpcError::bad(INVALID_REQUEST, "'params' must be an object"));
    };
    Ok((method, id, params))
}

/// Who calls, and the rules that apply to them.
pub struct Caller<'a> {
    pub context: &'a Context,
    pub user: Option<&'a str>,
    authz: AuthzConfig,
}

impl<'a> Caller<'a> {
    pub fn new(context: &'a Context, user: Option<&'a str>) -> Caller<'a> {
        Caller {
            context,
            user,
            authz: auth::authz_of(&context.config.current()),
        }
    }

    /// Whether the caller may take `action` on `object`.
    pub async fn may(&self, action: AuthzAction, object: Option<&Value>) -> bool {
        auth::allowed(self.context, &self.authz, self.user, action, object).await
    }

    async fn permit(&self, action: AuthzAction, object: Option<&Value>) -> Result<(), CallError> {
        if self.may(action, object).await {
            Ok(())
        } else {
            Err(CallError::Refused(auth::refusal(
                &self.authz,
                self.user,
                action,
            )))
        }
    }

    /// The owner of what the caller submits: its user name, else Buildbot's "anonymous"
    /// (then the force form's username field counts).
    fn owner(&self) -> Value {
        json!(self.user.unwrap_or("anonymous"))
    }
}

async fn call(
    caller: &Caller<'_>,
    path: &str,
    method: &str,
    mut params: Map<String, Value>,
) -> Result<Value, CallError> {
    let context = caller.context;
    let (endpoint, args) = resolve(path).ok_or_else(|| {
        RpcError(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            format!("invalid path: {path}"),
        )
    })?;
    let not_found = |what: &str| {
        RpcError(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            format!("{what} not found: {path}"),
        )
    };
    let reason = |params: &Map<String, Value>| {
        params
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("no reason")
            .to_string()
    };
    let db = &context.db;
    use AuthzAction as A;
    match (endpoint, method) {
        (Endpoint::ForceScheduler, "force") => {
            let name = args.text("schedulername").unwrap_or_default();
            let config = context.config.current();
            let Some(scheduler) = forceschedulers::named(&config, name) else {
                return Err(not_found("forcescheduler").into());
            };
            // Only a Lua rule is handed the builders: another decides without them, and
            // reading them costs a force three queries.
            if matches!(caller.authz.rule(A::ForceBuild), AuthzRule::Function(_)) {
                for builder in force_targets(context, scheduler, &params).await? {
                    caller.permit(A::ForceBuild, Some(&builder)).await?;
                }
            } else {
                caller.permit(A::ForceBuild, None).await?;
            }
            params.insert("owner".into(), caller.owner());
            let submitted = context.control.force(name, params).await?;
            Ok(submitted_json(submitted))
        }
        (Endpoint::Builders, "force") => {
            caller.permit(A::ForceAllBuilds, None).await?;
            let submitted = force_all(context, caller.owner(), reason(&params)).await?;
            Ok(Value::Array(
                submitted.into_iter().map(submitted_json).collect(),
            ))
        }
        (Endpoint::Builders | Endpoint::Builder, "stop" | "cancel") => {
            let builderid = match endpoint {
                Endpoint::Builder => {
                    let builder = args.builder().ok_or_else(|| not_found("builder"))?;
                    Some(
                        builds::builder_id(db, &builder)
                            .await?
                            .ok_or_else(|| not_found("builder"))?,
                    )
                }
                _ => None,
            };
            if method == "stop" {
                caller.permit(A::StopAllBuilds, None).await?;
                let stopped = context
                    .control
                    .stop_builds(builderid, reason(&params))
                    .await?;
                Ok(json!({ "stopped": stopped }))
            } else {
                caller.permit(A::CancelAllPendingBuilds, None).await?;
                let which = builderid.map_or(PendingOf::AllBuilders, PendingOf::Builder);
                let cancelled = context
                    .control
                    .cancel_requests(which, reason(&params))
                    .await?;
                Ok(json!({ "cancelled": cancelled }))
            }
        }
        (Endpoint::Builder, "ping") => {
            let builder = args.builder().ok_or_else(|| not_found("builder"))?;
            let id = builds::builder_id(db, &builder)
                .await?
                .ok_or_else(|| not_found("builder"))?;
            let builder = registry::builder(db, id)
                .await?
                .ok_or_else(|| not_found("builder"))?;
            caller.permit(A::PingBuilder, Some(&builder)).await?;
            let name = builder["name"].as_str().unwrap_or_default().to_string();
            let answers = context.control.ping_builder(name).await?;
            let answers: Map<String, Value> = answers
                .into_iter()
                .map(|(worker, answered)| (worker, json!(answered)))
                .collect();
            Ok(json!({ "workers": answers }))
        }
        (Endpoint::Build, "stop" | "rebuild") => {
            let build = args.build().ok_or_else(|| not_found("build"))?;
            let buildid = builds::build_id(db, &build)
                .await?
                .ok_or_else(|| not_found("build"))?;
            if method == "stop" {
                let build = build_object(db, buildid)
                    .await?
                    .ok_or_else(|| not_found("build"))?;
                caller.permit(A::StopBuild, Some(&build)).await?;
                context.control.stop_build(buildid, reason(&params)).await?;
                Ok(Value::Null)
            } else {
                // A rebuild forces the build's builder again.
                let builderid = context.db.builder_of_build(buildid).await?;
                let builder = registry::builder(db, builderid)
                    .await?
                    .ok_or_else(|| not_found("builder"))?;
                caller.permit(A::ForceBuild, Some(&builder)).await?;
                Ok(submitted_json(context.control.rebuild(buildid).await?))
            }
        }
        (Endpoint::BuildRequest, "cancel") => {
            let brid = args
                .int("buildrequestid")
                .ok_or_else(|| not_found("buildrequest"))?;
            let request = request_object(db, brid)
                .await?
                .ok_or_else(|| not_found("buildrequest"))?;
            caller.permit(A::CancelPendingBuild, Some(&request)).await?;
            context
                .control
                .cancel_request(brid, reason(&params))
                .await?;
            Ok(Value::Null)
        }
        (Endpoint::Worker, "pause" | "unpause" | "stop") => {
            let worker = args.worker().ok_or_else(|| not_found("worker"))?;
            let id = registry::worker_id(db, &worker)
                .await?
                .ok_or_else(|| not_found("worker"))?;
            let worker = registry::worker(db, id)
                .await?
                .ok_or_else(|| not_found("worker"))?;
            let name = worker["name"].as_str().unwrap_or_default().to_string();
            if method == "stop" {
                caller.permit(A::GracefulShutdown, Some(&worker)).await?;
                context.control.shut_down_worker(name).await?;
            } else {
                caller.permit(A::PauseSlave, Some(&worker)).await?;
                context
                    .control
                    .pause_worker(name, method == "pause")
                    .await?;
            }
            Ok(Value::Null)
        }
        (Endpoint::Change, "stop") => {
            let changeid = args.int("changeid").ok_or_else(|| not_found("change"))?;
            changes::change(db, changeid)
                .await?
                .ok_or_else(|| not_found("change"))?;
            caller.permit(A::StopChange, None).await?;
            let which = PendingOf::Change(changeid);
            let cancelled = context
                .control
                .cancel_requests(which, reason(&params))
                .await?;
            Ok(json!({ "cancelled": cancelled }))
        }
        (Endpoint::Master, "shutdown") => {
            if args.int("masterid") != Some(context.masterid.get()) {
                return Err(RpcError::bad(
                    INVALID_PARAMS,
                    "only this master can be shut down here",
                )
                .into());
            }
            caller.permit(A::CleanShutdown, None).await?;
            tracing::info!(
                user = caller.user.unwrap_or("anonymous"),
                "clean shutdown asked from the web"
            );
            context.control.clean_shutdown(Some(true)).await?;
            Ok(Value::Null)
        }
        _ => Err(RpcError(
            StatusCode::NOT_IMPLEMENTED,
            METHOD_NOT_FOUND,
            format!("action: {method} is not supported"),
        )
        .into()),
    }
}

/// The builders a force would build, as the REST API shows them: `builderid`, else
/// `builderNames`, else every builder of the scheduler.
async fn force_targets(
    context: &Context,
    scheduler: &ForceScheduler,
    params: &Map<String, Value>,
) -> Result<Vec<Value>, DbError> {
    let db = &context.db;
    let ids: Vec<i64> = if let Some(id) = params.get("builderid").and_then(Value::as_i64) {
        vec![id]
    } else {
        let names: Vec<String> = match params.get("builderNames").and_then(Value::as_array) {
            Some(names) => names
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect(),
            None => scheduler.base.builder_names.clone(),
        };
        let mut ids = Vec::new();
        for name in names {
            ids.extend(builds::builder_id(db, &BuilderRef::Name(name)).await?);
        }
        ids
    };
    let mut builders = Vec::new();
    for id in ids {
        builders.extend(registry::builder(db, id).await?);
    }
    Ok(builders)
}

/// Forces every builder that has a ForceScheduler, each through the first one that lists
/// it, with the schedulers' defaults and `reason` (0.8's "force all builds").
pub async fn force_all(
    context: &Context,
    owner: Value,
    reason: String,
) -> Result<Vec<crate::runtime::Submitted>, ControlError> {
    let config = context.config.current();
    let mut covered: Vec<String> = Vec::new();
    let mut submitted = Vec::new();
    for scheduler in forceschedulers::forceschedulers(&config, None) {
        let names: Vec<String> =
            serde_json::from_value(scheduler["builder_names"].clone()).unwrap_or_default();
        let names: Vec<String> = names.into_iter().filter(|n| !covered.contains(n)).collect();
        if names.is_empty() {
            continue;
        }
        covered.extend(names.iter().cloned());
        let mut params = Map::new();
        params.insert("builderNames".into(), json!(names));
        params.insert("reason".into(), json!(reason));
        params.insert("owner".into(), owner.clone());
        let name = scheduler["name"].as_str().unwrap_or_default();
        submitted.push(context.control.force(name, params).await?);
    }
    Ok(submitted)
}

/// A build as `stopBuild` functions receive it: its REST form and `buildername`.
pub async fn build_object(db: &crate::db::Db, buildid: i64) -> Result<Option<Value>, DbError> {
    let query = Query::parse(&[], &builds::BUILD, false).expect("an empty query is valid");
    let Some(mut build) = builds::build(db, buildid, &query).await? else {
        return Ok(None);
    };
    let builderid = build["builderid"].as_i64().unwrap_or_default();
    build["buildername"] = registry::builder(db, builderid)
        .await?
        .map_or(Value::Null, |b| b["name"].clone());
    Ok(Some(build))
}

/// A build request as `cancelPendingBuild` functions receive it: its REST form and
/// `buildername`.
pub async fn request_object(db: &crate::db::Db, brid: i64) -> Result<Option<Value>, DbError> {
    let query = Query::parse(&[], &changes::BUILDREQUEST, false).expect("an empty query is valid");
    let Some(mut request) = changes::buildrequest(db, brid, &query).await? else {
        return Ok(None);
    };
    let builderid = request["builderid"].as_i64().unwrap_or_default();
    request["buildername"] = registry::builder(db, builderid)
        .await?
        .map_or(Value::Null, |b| b["name"].clone());
    Ok(Some(request))
}

/// `[bsid, {builderid: brid}]`, as Buildbot's `force` and `rebuild` answer.
fn submitted_json((bsid, brids): crate::runtime::Submitted) -> Value {
    let brids: Map<String, Value> = brids
        .into_iter()
        .map(|(builderid, brid)| (builderid.to_string(), json!(brid)))
        .collect();
    json!([bsid, brids])
}
