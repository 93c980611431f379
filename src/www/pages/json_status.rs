//! `/json`: Buildbot 0.8's JSON status tree, for programs: `project`, `builders/NAME`
//! (`builds/N` with `steps/STEP`, `slaves`, `pendingBuilds`), `slaves/NAME` and
//! `change_sources`, each node the shape 0.8's `asDict` gave it. `/json/help` (and
//! `NODE/help`) documents it. Flags: `as_text=1` (text/plain, indented, filtered),
//! `compact=0`, `filter=1` (drops null, false, "", [] and {}), `callback=NAME` (JSONP),
//! `select=PATH` (repeatable: only those children, nested under their path) and
//! `numbuilds=N` (how many builds `builds` lists). A build number may be negative:
//! `-1` is the last build.

use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{
    all_arguments, argument, arguments, builder_ref, count, query, read_builds, requests_by_id,
    store, typical_duration, web_config, PageError, Pages,
};
use crate::data::builds::{self, BuildRef, BuilderRef};
use crate::data::changes::{self, ChangesOf};
use crate::data::registry::{self, BuildersOf, WorkersOf};

pub async fn root(State(pages): State<Pages>, RawQuery(raw): RawQuery) -> Response {
    respond(&pages, "", &raw).await
}

pub async fn node(
    State(pages): State<Pages>,
    UrlPath(path): UrlPath<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    respond(&pages, &path, &raw).await
}

/// The JSON of a node, or its help page, or a 404 naming what is missing.
async fn respond(pages: &Pages, path: &str, raw: &Option<String>) -> Response {
    if !web_config(&pages.context)
        .provide_feeds
        .iter()
        .any(|f| f == "json")
    {
        return PageError::not_found("no page at /json: provide_feeds leaves it out")
            .into_response();
    }
    let args = arguments(raw);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.last() == Some(&"help") {
        let node = segments[..segments.len() - 1].join("/");
        return match pages.page("jsonhelp.html", json!({ "node": node })).await {
            Ok(page) => page,
            Err(error) => error.into_response(),
        };
    }
    let selected = all_arguments(&args, "select");
    let data = if selected.is_empty() {
        resolve(pages, &segments, &args).await
    } else {
        let mut data = Value::Object(Map::new());
        for item in selected {
            let relative: Vec<&str> = item.split('/').filter(|s| !s.is_empty()).collect();
            let mut full = segments.clone();
            full.extend(&relative);
            let value = resolve(pages, &full, &args)
                .await
                .unwrap_or_else(|_| json!({ "error": "Not available" }));
            let mut at = &mut data;
            for part in &relative {
                at = &mut at[*part];
            }
            *at = value;
        }
        Ok(data)
    };
    let data = match data {
        Ok(data) => data,
        Err(error) => {
            return (
                error.status,
                [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
                axum::Json(json!({ "error": error.message })),
            )
                .into_response()
        }
    };
    let as_text = truthy(argument(&args, "as_text"), false);
    let data = if truthy(argument(&args, "filter"), as_text) {
        filter_out(data).unwrap_or(Value::Null)
    } else {
        data
    };
    let mut text = if truthy(argument(&args, "compact"), !as_text) {
        data.to_string()
    } else {
        serde_json::to_string_pretty(&data).unwrap_or_default()
    };
    if let Some(callback) = argument(&args, "callback") {
        let identifier = regex::Regex::new(r"^[a-zA-Z$_][a-zA-Z$0-9._]*$").expect("a valid regex");
        if identifier.is_match(callback) {
            text = format!("{callback}({text});");
        }
    }
    let content_type = if as_text {
        "text/plain; charset=utf-8"
    } else {
        "application/json"
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        text,
    )
        .into_response()
}

/// `1`/`true` or `0`/`false`, as 0.8's `RequestArgToBool`; anything else is `default`.
fn truthy(value: Option<&str>, default: bool) -> bool {
    match value.map(str::to_lowercase).as_deref() {
        Some("1" | "true") => true,
        Some("0" | "false") => false,
        _ => default,
    }
}

/// 0.8's `FilterOut`: null, false, "", [] and {} removed from objects; a list of only such
/// values is null.
fn filter_out(value: Value) -> Option<Value> {
    let empty = |v: &Value| match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    match value {
        Value::Array(items) => {
            let items: Vec<Value> = items
                .into_iter()
                .map(|v| filter_out(v).unwrap_or(Value::Null))
                .collect();
            if items.iter().all(empty) {
                None
            } else {
                Some(Value::Array(items))
            }
        }
        Value::Object(map) => Some(Value::Object(
            map.into_iter()
                .filter_map(|(k, v)| filter_out(v).filter(|v| !empty(v)).map(|v| (k, v)))
                .collect(),
        )),
        other => Some(other),
    }
}

/// The value of the node at `path`.
async fn resolve(
    pages: &Pages,
    path: &[&str],
    args: &[(String, String)],
) -> Result<Value, PageError> {
    let missing = || PageError::not_found(format!("no node /json/{}", path.join("/")));
    match path {
        [] => {
            let mut root = Map::new();
            for child in ["builders", "change_sources", "project", "slaves"] {
                root.insert(
                    child.into(),
                    Box::pin(resolve(pages, &[child], args)).await?,
                );
            }
            Ok(Value::Object(root))
        }
        ["project"] => {
            let config = pages.context.config.current();
            Ok(json!({
                "buildbotURL": config.buildbot_url,
                "title": config.title,
                "titleURL": config.title_url,
            }))
        }
        ["change_sources"] => {
            let config = pages.context.config.current();
            let sources: Map<String, Value> = config
                .change_sources
                .iter()
                .enumerate()
                .map(|(n, source)| (n.to_string(), json!({ "description": source.name() })))
                .collect();
            Ok(Value::Object(sources))
        }
        ["builders"] => {
            let builders = all_builders(pages).await?;
            Ok(Value::Object(
                builder_dicts(pages, builders).await?.into_iter().collect(),
            ))
        }
        ["builders", name] => {
            let (_, builder) = builder_ref(pages, name).await?;
            let mut dicts = builder_dicts(pages, vec![builder]).await?;
            Ok(dicts.pop().map(|(_, dict)| dict).unwrap_or_default())
        }
        ["builders", name, "builds"] => {
            let limit = count(
                args,
                "numbuilds",
                web_config(&pages.context).numbuilds,
                None,
            )?;
            let (builderid, _) = builder_ref(pages, name).await?;
            let db = &pages.context.db;
            let ids = store::newest_builds(db, &[builderid], &Default::default(), limit).await?;
            let recent = read_builds(pages, ids, &[("property", "*")]).await?;
            let mut all = Map::new();
            for build in recent {
                let number = build["number"].to_string();
                all.insert(number, build_dict(pages, name, build).await?);
            }
            Ok(Value::Object(all))
        }
        ["builders", name, "builds", number, rest @ ..] => {
            let build = find_build(pages, name, number).await?.ok_or_else(missing)?;
            let dict = build_dict(pages, name, build).await?;
            match rest {
                [] => Ok(dict),
                ["steps"] => Ok(Value::Object(
                    dict["steps"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|s| {
                            (
                                s["name"].as_str().unwrap_or_default().to_string(),
                                s.clone(),
                            )
                        })
                        .collect(),
                )),
                ["steps", step] => dict["steps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|s| {
                        s["name"] == *step || step.parse::<i64>().ok() == s["step_number"].as_i64()
                    })
                    .cloned()
                    .ok_or_else(missing),
                _ => Err(missing()),
            }
        }
        ["builders", name, "slaves"] => {
            let (builderid, _) = builder_ref(pages, name).await?;
            let names = super::builder_names(pages).await?;
            let mut all = Map::new();
            for worker in all_workers(pages).await? {
                if serves(&worker, builderid) {
                    let name = worker["name"].as_str().unwrap_or_default().to_string();
                    all.insert(name, slave_dict(&names, worker));
                }
            }
            Ok(Value::Object(all))
        }
        ["builders", name, "pendingBuilds"] => {
            let (builderid, _) = builder_ref(pages, name).await?;
            let waiting = store::waiting_requests(&pages.context.db, &[builderid]).await?;
            let ids = waiting.into_iter().map(|(id, _)| id);
            let pending = requests_by_id(pages, ids, &[]).await?;
            Ok(json!(pending
                .iter()
                .map(|r| json!({
                    "builderName": name,
                    "source": {},
                    "submittedAt": r["submitted_at"],
                    "properties": [],
                    "id": r["buildrequestid"],
                }))
                .collect::<Vec<_>>()))
        }
        ["slaves"] => {
            let names = super::builder_names(pages).await?;
            let mut all = Map::new();
            for worker in all_workers(pages).await? {
                let name = worker["name"].as_str().unwrap_or_default().to_string();
                all.insert(name, slave_dict(&names, worker));
            }
            Ok(Value::Object(all))
        }
        ["slaves", name] => {
            let worker = all_workers(pages)
                .await?
                .into_iter()
                .find(|w| w["name"] == *name)
                .ok_or_else(missing)?;
            Ok(slave_dict(&super::builder_names(pages).await?, worker))
        }
        _ => Err(missing()),
    }
}

async fn all_builders(pages: &Pages) -> Result<Vec<Value>, PageError> {
    Ok(registry::builders(
        &pages.context.db,
        &BuildersOf::default(),
        &query(&registry::BUILDER, &[("order", "name".into())]),
    )
    .await?
    .items)
}

async fn all_workers(pages: &Pages) -> Result<Vec<Value>, PageError> {
    Ok(registry::workers(
        &pages.context.db,
        &WorkersOf::default(),
        &query(&registry::WORKER, &[("order", "name".into())]),
    )
    .await?
    .items)
}

fn serves(worker: &Value, builderid: i64) -> bool {
    worker["configured_on"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|on| on["builderid"].as_i64() == Some(builderid))
}

fn connected(worker: &Value) -> bool {
    worker["connected_to"]
        .as_array()
        .is_some_and(|c| !c.is_empty())
}

/// A build by number, with its properties; `-N` counts back from the last.
async fn find_build(pages: &Pages, name: &str, number: &str) -> Result<Option<Value>, PageError> {
    let number: i64 = number
        .parse()
        .map_err(|_| PageError::not_found(format!("no build number '{number}'")))?;
    let (builderid, _) = builder_ref(pages, name).await?;
    let db = &pages.context.db;
    let id = if number < 0 {
        store::nth_newest(db, builderid, number.unsigned_abs()).await?
    } else {
        let build = BuildRef::Number(BuilderRef::Id(builderid), number);
        builds::build_id(db, &build).await?
    };
    let Some(id) = id else {
        return Ok(None);
    };
    Ok(read_builds(pages, [id], &[("property", "*")]).await?.pop())
}

/// 0.8's `BuilderStatus.asDict` of each builder, as `(name, dict)`, read for all of them
/// at once and only what the dicts show: the numbers of each builder's last `numbuilds`
/// builds and of those running, how many requests wait, the workers serving it.
async fn builder_dicts(
    pages: &Pages,
    builders: Vec<Value>,
) -> Result<Vec<(String, Value)>, PageError> {
    let db = &pages.context.db;
    let ids: Vec<i64> = builders
        .iter()
        .filter_map(|b| b["builderid"].as_i64())
        .collect();
    let limit = web_config(&pages.context).numbuilds;
    let cached =
        store::newest_of_each(db, &ids, &Default::default(), limit, limit * ids.len()).await?;
    let running = store::running(db, &ids, &[]).await?;
    let waiting = store::waiting_requests(db, &ids).await?;
    let workers = all_workers(pages).await?;
    let config = pages.context.config.current();
    let mut dicts = Vec::with_capacity(builders.len());
    for builder in builders {
        let builderid = builder["builderid"].as_i64().unwrap_or_default();
        let name = builder["name"].as_str().unwrap_or_default().to_string();
        let serving: Vec<&Value> = workers.iter().filter(|w| serves(w, builderid)).collect();
        let numbers = |keys: &[store::BuildKey]| -> Vec<i64> {
            keys.iter()
                .filter(|key| key.builderid == builderid)
                .map(|key| key.number)
                .collect()
        };
        let mut cached = numbers(&cached);
        cached.reverse();
        let current = numbers(&running);
        let state = if !serving.iter().any(|w| connected(w)) {
            "offline"
        } else if current.is_empty() {
            "idle"
        } else {
            "building"
        };
        let schedulers: Vec<&str> = config
            .schedulers
            .iter()
            .filter(|s| s.builder_names().contains(&name))
            .map(|s| s.name())
            .collect();
        let pending = waiting.iter().filter(|(_, b)| *b == builderid).count();
        let dict = json!({
            "basedir": name,
            "category": builder["tags"].get(0),
            "tags": builder["tags"],
            "description": builder["description"],
            "slaves": serving.iter().map(|w| &w["name"]).collect::<Vec<_>>(),
            "schedulers": schedulers,
            "cachedBuilds": cached,
            "currentBuilds": current,
            "pendingBuilds": pending,
            "state": state,
        });
        dicts.push((name, dict));
    }
    Ok(dicts)
}

/// 0.8's `BuildStatus.asDict`, with its steps'.
async fn build_dict(pages: &Pages, builder: &str, build: Value) -> Result<Value, PageError> {
    let db = &pages.context.db;
    let buildid = build["buildid"].as_i64().unwrap_or_default();
    let url = pages.context.config.current().buildbot_url.clone();
    let build_url = format!(
        "{url}builders/{}/builds/{}",
        form_urlencoded::byte_serialize(builder.as_bytes()).collect::<String>(),
        build["number"]
    );
    let steps = builds::steps(db, buildid, &query(&builds::STEP, &[])).await?;
    let mut step_dicts = Vec::new();
    let mut all_logs = Vec::new();
    let mut current_step = Value::Null;
    for step in steps.items {
        let stepid = step["stepid"].as_i64().unwrap_or_default();
        let logs = builds::logs(db, stepid, &query(&builds::LOG, &[])).await?;
        let logs: Vec<Value> = logs
            .items
            .iter()
            .map(|log| {
                json!([
                    log["name"],
                    format!(
                        "{build_url}/steps/{}/logs/{}",
                        step["number"],
                        form_urlencoded::byte_serialize(
                            log["slug"].as_str().unwrap_or_default().as_bytes()
                        )
                        .collect::<String>()
                    )
                ])
            })
            .collect();
        all_logs.extend(logs.iter().cloned());
        let started = !step["started_at"].is_null();
        let finished = step["complete"] == true;
        let urls: Map<String, Value> = step["urls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| {
                (
                    u["name"].as_str().unwrap_or_default().to_string(),
                    u["url"].clone(),
                )
            })
            .collect();
        let dict = json!({
            "name": step["name"],
            "text": words(&step["state_string"]),
            "results": [step["results"], []],
            "isStarted": started,
            "isFinished": finished,
            "statistics": {},
            "times": [step["started_at"], step["complete_at"]],
            "expectations": [],
            "eta": null,
            "urls": urls,
            "step_number": step["number"],
            "hidden": step["hidden"],
            "logs": logs,
        });
        if started && !finished {
            current_step = dict.clone();
        }
        step_dicts.push(dict);
    }
    let worker = match build["workerid"].as_i64() {
        Some(id) => registry::worker(db, id).await?.map(|w| w["name"].clone()),
        None => None,
    };
    let properties: Vec<Value> = build["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, pair)| json!([name, pair[0], pair[1]]))
        .collect();
    let stamps = builds::build_sourcestamps(db, &[buildid]).await?;
    let of = ChangesOf {
        buildid: Some(buildid),
        ..Default::default()
    };
    let changes = changes::changes(db, &of, &query(&changes::CHANGE, &[]))
        .await?
        .items;
    let source_stamps: Vec<Value> = stamps
        .into_iter()
        .flat_map(|(_, s)| s)
        .map(|s| {
            let changes: Vec<Value> = changes
                .iter()
                .filter(|c| c["sourcestamp"]["ssid"] == s["ssid"])
                .map(change_dict)
                .collect();
            json!({
                "branch": s["branch"],
                "revision": s["revision"],
                "repository": s["repository"],
                "project": s["project"],
                "codebase": s["codebase"],
                "hasPatch": false,
                "changes": changes,
            })
        })
        .collect();
    // 0.8's blamelist: the authors of the build's changes, each once, sorted.
    let mut blame: Vec<&str> = changes
        .iter()
        .filter_map(|c| c["author"].as_str())
        .collect();
    blame.sort_unstable();
    blame.dedup();
    let eta = match (build["complete"].as_bool(), build["started_at"].as_i64()) {
        (Some(false), Some(started)) => {
            let builderid = build["builderid"].as_i64().unwrap_or_default();
            let succeeded = store::last_finished(db, &[builderid], 5, true, &[]).await?;
            typical_duration(succeeded.iter().map(|(_, _, s, c)| *c as i64 - *s as i64))
                .map(|took| (started + took - chrono::Utc::now().timestamp()).max(0))
        }
        _ => None,
    };
    Ok(json!({
        "builderName": builder,
        "number": build["number"],
        "reason": build["properties"]["reason"][0],
        "blame": blame,
        "properties": properties,
        "steps": step_dicts,
        "times": [build["started_at"], build["complete_at"]],
        "text": words(&build["state_string"]),
        "results": build["results"],
        "slave": worker,
        "currentStep": current_step,
        "eta": eta,
        "logs": all_logs,
        "sourceStamps": source_stamps,
    }))
}

/// 0.8's `Change.asDict`: `who` the author, `at` the time as text (here in UTC, as the
/// pages show times), `files` as `{name}` objects, properties as `[name, value, source]`.
fn change_dict(change: &Value) -> Value {
    let mut files: Vec<&str> = change["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    files.sort_unstable();
    let properties: Vec<Value> = change["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, pair)| json!([name, pair[0], pair[1]]))
        .collect();
    let at = change["when_timestamp"]
        .as_i64()
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| t.format("%a %d %b %Y %H:%M:%S").to_string());
    json!({
        "number": change["changeid"],
        "branch": change["branch"],
        "category": change["category"],
        "who": change["author"],
        "comments": change["comments"],
        "revision": change["revision"],
        "rev": change["revision"],
        "when": change["when_timestamp"],
        "at": at,
        "files": files.iter().map(|name| json!({ "name": name })).collect::<Vec<_>>(),
        "revlink": change["revlink"],
        "properties": properties,
        "repository": change["repository"],
        "codebase": change["codebase"],
        "project": change["project"],
    })
}

/// 0.8's step and build `text`: the state as a list of words.
fn words(state: &Value) -> Vec<&str> {
    state
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .collect()
}

/// 0.8's `SlaveStatus.asDict`, with the builders it serves (`names`: every builder's).
fn slave_dict(names: &[(i64, String)], worker: Value) -> Value {
    let builders: Map<String, Value> = worker["configured_on"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|on| {
            let id = on["builderid"].as_i64()?;
            let name = names.iter().find(|(i, _)| *i == id)?.1.clone();
            Some((name, json!([])))
        })
        .collect();
    let info = &worker["workerinfo"];
    json!({
        "name": worker["name"],
        "connected": connected(&worker),
        "admin": info["admin"],
        "host": info["host"],
        "version": info["version"],
        "access_uri": info["access_uri"],
        "runningBuilds": [],
        "builders": builders,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_drops_what_python_finds_empty() {
        let data = json!({"a": null, "b": false, "c": "", "d": [], "e": {}, "f": [null, ""],
                          "g": 0, "h": {"i": null, "j": "x"}});
        assert_eq!(filter_out(data), Some(json!({"g": 0, "h": {"j": "x"}})));
    }
}
