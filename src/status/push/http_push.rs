//! `status.HttpStatusPush`: Buildbot 0.8's status events POSTed to `serverUrl` as a form
//! with one field, `packets`, a JSON list of events (plus `extra_post_params`). An event is
//! `{event, payload, id, timestamp, project, started}`; the events pushed are
//! `buildStarted` and `buildFinished`, whose payload is the build in 0.8's `asDict` form.
//!
//! Each event is one outbox message; the transport posts up to `chunkSize` of them in one
//! request ([`Packets`]), in order, so every event arrives once and in order; `id` counts
//! events per target across restarts.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::transport::{request_meta, Auth, HttpTransport, Packets};
use super::{Push, PushReporter};
use crate::config::status::{HttpPayload, HttpStatusPushConfig, PushOptions};
use crate::data::Query;
use crate::db::NewMessage;
use crate::model::{BuildInfo, MasterInfo};
use crate::runtime::Context;
use crate::status::generator::{Finished, Report, Reporter, Wanted};

/// A running HttpStatusPush.
pub type HttpStatusPush = Push<HttpPushReporter>;

pub struct HttpPushReporter {
    name: String,
    config: Arc<HttpStatusPushConfig>,
    master: Arc<MasterInfo>,
    wanted: Wanted,
}

impl PushReporter for HttpPushReporter {
    type Config = HttpStatusPushConfig;

    fn name_of(config: &HttpStatusPushConfig) -> &str {
        config.name.as_deref().unwrap_or("HttpStatusPush")
    }

    fn transport(config: &HttpStatusPushConfig) -> Result<HttpTransport, String> {
        let auth = match &config.user {
            Some(user) => Auth::Basic {
                user: user.clone(),
                password: config.password.clone().unwrap_or_default(),
            },
            None => Auth::None,
        };
        let headers: Vec<(String, String)> = config
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let transport = HttpTransport::new(&config.server_url, auth, &headers, config.debug)?;
        Ok(match config.payload {
            HttpPayload::Events => transport.with_packets(packets(config)),
            HttpPayload::Build => transport,
        })
    }

    async fn new(ctx: &Context, config: &HttpStatusPushConfig) -> anyhow::Result<HttpPushReporter> {
        Ok(HttpPushReporter {
            name: Self::name_of(config).to_string(),
            config: Arc::new(config.clone()),
            master: crate::status::master_info(&ctx.db, &ctx.config.current()).await?,
            wanted: wanted_events(&config.push),
        })
    }

    fn config(&self) -> &HttpStatusPushConfig {
        &self.config
    }
}

impl Reporter for HttpPushReporter {
    fn wanted(&self) -> &Wanted {
        &self.wanted
    }

    async fn report(&self, ctx: &Context, report: Report) -> anyhow::Result<bool> {
        let Some(event) = BuildEvent::of(&self.master, report) else {
            return Ok(false);
        };
        match self.config.payload {
            HttpPayload::Events => {
                self.push(ctx, event.buildid, &event.build, event.name, event.payload)
                    .await
            }
            HttpPayload::Build => self.push_build(ctx, &event).await,
        }
    }
}

impl HttpPushReporter {
    /// Buildbot 4's request: the build as `/api/v2/builds/N?property=*` gives it, with its
    /// builder and URL, as a JSON body.
    async fn push_build(&self, ctx: &Context, event: &BuildEvent) -> anyhow::Result<bool> {
        let query = Query {
            properties: vec!["*".into()],
            ..Query::default()
        };
        let Some(mut body) = crate::data::builds::build(&ctx.db, event.buildid, &query).await?
        else {
            return Ok(false);
        };
        if event.name == "buildStarted" {
            // The build may have ended since it started: its start shows it running.
            body["complete"] = json!(false);
            body["complete_at"] = Value::Null;
            body["results"] = Value::Null;
        }
        let build = &event.build;
        body["builder"] = json!({"builderid": build.builder.id, "name": build.builder.name});
        body["url"] = json!(self.master.build_url(build.builder.id, build.number));
        let written = ctx
            .db
            .add_outbox_message(&NewMessage {
                reporter: self.name.clone(),
                kind: "http".into(),
                dedup_key: format!("build:{}:{}", event.buildid, event.name),
                summary: format!("{} {} #{}", event.name, build.builder.name, build.number),
                meta: request_meta(&self.config.server_url, "application/json"),
                body: body.to_string().into_bytes(),
            })
            .await?;
        if written.is_some() {
            bound_queue(ctx, &self.name, &self.config.push).await?;
        }
        Ok(written.is_some())
    }

    async fn push(
        &self,
        ctx: &Context,
        buildid: i64,
        build: &BuildInfo,
        event: &str,
        payload: Value,
    ) -> anyhow::Result<bool> {
        let config = &self.config;
        let key = format!("build:{buildid}:{event}");
        let events = EventCounter::new(&self.name);
        let (id, packet) = events
            .packet(ctx, &self.master, event, payload, config.push.filter)
            .await?;
        let body = packet.to_string().into_bytes();
        let builder = &build.builder.name;
        let alone = packets(config).form([&body[..]]).len();
        if alone > config.max_http_request_size {
            tracing::error!(
                "{}: {event} of {builder} #{} dropped: {alone} bytes is over \
                 maxHttpRequestSize ({})",
                self.name,
                build.number,
                config.max_http_request_size
            );
            return Ok(false);
        }
        let written = ctx
            .db
            .add_outbox_message(&NewMessage {
                reporter: self.name.clone(),
                kind: "http".into(),
                dedup_key: key,
                summary: format!("{event} {builder} #{}", build.number),
                meta: request_meta(&config.server_url, "application/x-www-form-urlencoded"),
                body,
            })
            .await?;
        if written.is_some() {
            events.written(ctx, id).await?;
            bound_queue(ctx, &self.name, &config.push).await?;
        }
        Ok(written.is_some())
    }
}

/// How the transport joins this push's events into requests.
fn packets(config: &HttpStatusPushConfig) -> Packets {
    Packets {
        chunk_size: config.chunk_size,
        max_request_size: config.max_http_request_size,
        extra_post_params: config
            .extra_post_params
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
        buffer_delay: std::time::Duration::from_secs_f64(config.push.buffer_delay),
        retry_delay: std::time::Duration::from_secs_f64(config.push.retry_delay),
    }
}

/// Drops the oldest events waiting beyond the push's `maxMemoryItems` + `maxDiskItems`,
/// saying how many: they stay listed as dead in `/api/v2/reporters`.
pub async fn bound_queue(ctx: &Context, target: &str, push: &PushOptions) -> anyhow::Result<()> {
    let Some(limit) = push.queue_limit() else {
        return Ok(());
    };
    let why =
        format!("dropped: the queue holds at most {limit} events (maxMemoryItems + maxDiskItems)");
    let dropped = ctx
        .db
        .drop_oldest_outbox_messages(target, limit.max(1), &why)
        .await?;
    if dropped > 0 {
        tracing::warn!("{target}: {dropped} waiting event(s) {why}");
    }
    Ok(())
}

/// Numbers a target's events (0.8's packet `id`) and remembers when it first pushed (its
/// `started`), in storage so both survive restarts.
pub struct EventCounter {
    object: String,
}

impl EventCounter {
    pub fn new(target: &str) -> EventCounter {
        EventCounter {
            object: format!("status/{target}"),
        }
    }

    /// The next event as 0.8 packs it: `{event, payload, id, timestamp, project, started}`,
    /// filtered with `filter`.
    pub async fn packet(
        &self,
        ctx: &Context,
        master: &MasterInfo,
        event: &str,
        payload: Value,
        filter: bool,
    ) -> anyhow::Result<(i64, Value)> {
        let db = &ctx.db;
        let id = db
            .get_state(&self.object, "next_id")
            .await?
            .and_then(|v| v.as_i64())
            .unwrap_or(1);
        let started = match db.get_state(&self.object, "started").await? {
            Some(started) => started,
            None => {
                let started = Value::String(timestamp(crate::db::now()));
                db.set_state(&self.object, "started", &started).await?;
                started
            }
        };
        let packet = json!({
            "event": event,
            "payload": payload,
            "id": id,
            "timestamp": timestamp(crate::db::now()),
            "project": master.title,
            "started": started,
        });
        Ok((id, if filter { filtered(packet) } else { packet }))
    }

    /// The event `id` was written: the next one is numbered after it.
    pub async fn written(&self, ctx: &Context, id: i64) -> anyhow::Result<()> {
        Ok(ctx
            .db
            .set_state(&self.object, "next_id", &Value::from(id + 1))
            .await?)
    }
}

/// The builds whose events `blackList` and `whiteList` let through.
pub fn wanted_events(push: &PushOptions) -> Wanted {
    let pushed = |event: &str| {
        !push.black_list.iter().any(|e| e == event)
            && push
                .white_list
                .as_ref()
                .is_none_or(|list| list.iter().any(|e| e == event))
    };
    Wanted {
        started: pushed("buildStarted"),
        finished: pushed("buildFinished"),
        ..Wanted::default()
    }
}

/// Python's `str(datetime.utcnow())`, which 0.8 puts in `timestamp` and `started`.
fn timestamp(at: f64) -> String {
    chrono::DateTime::from_timestamp_micros((at * 1e6) as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
        .unwrap_or_default()
}

/// A build event as Buildbot 0.8's status pushes send it: `buildStarted` with the build,
/// `buildFinished` with the build and its results.
pub struct BuildEvent {
    pub buildid: i64,
    pub build: Arc<BuildInfo>,
    pub name: &'static str,
    pub payload: Value,
}

impl BuildEvent {
    /// The event of `report`; `None` for a buildset, which 0.8 does not push.
    pub fn of(master: &MasterInfo, report: Report) -> Option<BuildEvent> {
        let (buildid, build, name, payload) = match report {
            Report::Started { buildid, build } => {
                let payload = json!({"build": build_dict(master, &build)});
                (buildid, build, "buildStarted", payload)
            }
            Report::Finished(Finished {
                buildid,
                build,
                results,
                ..
            }) => {
                let payload = json!({
                    "build": build_dict(master, &build),
                    "results": results.code(),
                });
                (buildid, build, "buildFinished", payload)
            }
            Report::BuildsetComplete { .. } => return None,
        };
        Some(BuildEvent {
            buildid,
            build,
            name,
            payload,
        })
    }
}

/// The build as Buildbot 0.8's `BuildStatus.asDict` gives it.
pub fn build_dict(master: &MasterInfo, build: &BuildInfo) -> Value {
    let url = master.build_url(build.builder.id, build.number);
    let properties: Vec<Value> = build
        .properties
        .as_dict()
        .into_iter()
        .map(|(name, (value, source))| json!([name, value, source]))
        .collect();
    let steps: Vec<Value> = build
        .steps
        .iter()
        .enumerate()
        .map(|(number, step)| {
            json!({
                "name": step.name,
                "step_number": number,
                "text": step.text,
                "results": step.results.map(|r| json!([r.code(), step.text])),
                "isStarted": step.started_at.is_some(),
                "isFinished": step.is_finished(),
                "times": [step.started_at, step.complete_at],
                "logs": step.logs.iter().map(|log| json!([log.name,
                    master.log_url(build.builder.id, build.number, number, &log.slug())]))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let sourcestamps: Vec<Value> = build
        .sourcestamps
        .iter()
        .map(|ss| {
            json!({
                "codebase": ss.codebase,
                "branch": ss.branch,
                "revision": ss.revision,
                "repository": ss.repository,
                "project": ss.project,
                "hasPatch": ss.patch.is_some(),
                "changes": ss.changes.iter().map(|c| json!({
                    "number": c.number,
                    "who": c.who,
                    "revision": c.revision,
                    "branch": c.branch,
                    "when": c.when,
                    "files": c.files.iter().map(|f| json!({"name": f})).collect::<Vec<_>>(),
                    "comments": c.comments,
                    "repository": c.repository,
                    "project": c.project,
                    "category": c.category,
                    "revlink": c.revlink,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "builderName": build.builder.name,
        "number": build.number,
        "reason": build.reason,
        "blame": build.responsible_users(),
        "properties": properties,
        "results": build.results.map(|r| r.code()),
        "text": build.text,
        "slave": build.worker_name,
        "times": [build.started_at, build.complete_at],
        "steps": steps,
        "sourceStamps": sourcestamps,
        "url": url,
    })
}

/// 0.8's `filter` (`FilterOut`): values Python finds false (null, `false`, 0, empty
/// strings, lists and dicts) are left out of lists and dicts, deeply; what is left after
/// that is not looked at again, as there.
fn filtered(value: Value) -> Value {
    let falsy = |value: &Value| match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
    };
    match value {
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .filter(|v| !falsy(v))
                .map(filtered)
                .collect(),
        ),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .filter(|(_, v)| !falsy(v))
                .map(|(k, v)| (k, filtered(v)))
                .collect::<Map<String, Value>>(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_leaves_out_what_is_empty_deeply_as_0_8_does() {
        let packet = json!({"a": null, "b": "", "c": [null, "", {}, 1], "d": {"e": [], "f": 0},
                            "g": false, "h": true, "i": {"j": null}});
        assert_eq!(
            filtered(packet),
            json!({"c": [1], "d": {}, "h": true, "i": {}})
        );
    }

    #[test]
    fn timestamps_read_as_python_prints_utc_datetimes() {
        assert_eq!(timestamp(1_700_000_000.25), "2023-11-14 22:13:20.250000");
    }
}
