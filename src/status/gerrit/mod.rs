//! `status.GerritStatusPush`: reviews of Gerrit changes, written to the outbox and sent with
//! `gerrit review` over ssh.
//!
//! A build is about the change its properties name (`event.change.project`, and
//! `event.patchSet.revision` or `got_revision`); builds without one get no review. By
//! default one summary review goes out per buildset, once it and every buildset its builds
//! triggered have finished (Buildbot 4 votes before triggered builds end). `reviewCB` adds
//! a review per build, `startCB` a message when a build starts. A review of a patch set
//! that a newer one of the same change replaced goes out as a message without labels.

pub mod ssh;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use self::ssh::SshTransport;
use super::generator::{Finished, Report, Reporter, Wanted};
use super::snapshot;
use super::Pipeline;
use crate::config::same_options;
use crate::config::status::{GerritStatusPushConfig, SummaryCallback};
use crate::db::{Db, NewMessage};
use crate::model::{BuildInfo, BuildResult, MasterInfo};
use crate::runtime::{Context, Reconfigured, Service};
use crate::script::Arg;

/// One review, as stored in the outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub project: String,
    pub revision: String,
    pub message: String,
    /// Empty: a message only.
    pub labels: BTreeMap<String, i64>,
    pub notify: Option<String>,
}

/// A running GerritStatusPush: the shared pipeline with a reviewer and an ssh transport.
pub struct GerritStatusPush(Pipeline<Reviewer, SshTransport>);

impl Service for GerritStatusPush {
    type Config = GerritStatusPushConfig;

    fn name_of(config: &GerritStatusPushConfig) -> &str {
        config.name.as_deref().unwrap_or("GerritStatusPush")
    }

    async fn start(ctx: &Context, config: &GerritStatusPushConfig) -> anyhow::Result<Self> {
        let transport = transport(ctx, config)?;
        let reviewer = Reviewer::new(ctx, config).await?;
        Ok(GerritStatusPush(Pipeline::start(
            ctx,
            &reviewer.name.clone(),
            reviewer,
            transport,
        )))
    }

    /// New callbacks apply to the next build, a new server to the next delivery; queued
    /// reviews stay queued.
    async fn reconfigure(
        &mut self,
        ctx: &Context,
        config: &GerritStatusPushConfig,
    ) -> anyhow::Result<Reconfigured> {
        let unchanged = same_options(self.0.current().config.as_ref(), config);
        let transport = transport(ctx, config)?;
        self.0
            .replace(ctx, Reviewer::new(ctx, config).await?, transport);
        Ok(match unchanged {
            true => Reconfigured::Unchanged,
            false => Reconfigured::Changed,
        })
    }

    async fn stop(self) {
        self.0.stop().await;
    }
}

fn transport(ctx: &Context, config: &GerritStatusPushConfig) -> anyhow::Result<SshTransport> {
    let name = GerritStatusPush::name_of(config);
    let known_hosts = ctx.basedir.join(format!("{name}.known_hosts"));
    SshTransport::new(config, known_hosts)
}

/// Turns reports into reviews in the outbox; a reconfig replaces it between two builds.
struct Reviewer {
    name: String,
    config: Arc<GerritStatusPushConfig>,
    master: Arc<MasterInfo>,
    wanted: Wanted,
}

impl Reporter for Reviewer {
    fn wanted(&self) -> &Wanted {
        &self.wanted
    }

    async fn report(&self, ctx: &Context, report: Report) -> anyhow::Result<bool> {
        match report {
            Report::Started { buildid, build } if self.reports_on(&build) => {
                self.started(ctx, buildid, &build).await
            }
            Report::Finished(finished) if self.reports_on(&finished.build) => {
                self.finished(ctx, finished).await
            }
            Report::BuildsetComplete { bsid, .. } => self.buildset_complete(ctx, bsid).await,
            _ => Ok(false),
        }
    }
}

impl Reviewer {
    async fn new(ctx: &Context, config: &GerritStatusPushConfig) -> anyhow::Result<Reviewer> {
        Ok(Reviewer {
            name: GerritStatusPush::name_of(config).to_string(),
            config: Arc::new(config.clone()),
            master: super::master_info(&ctx.db, &ctx.config.current()).await?,
            // The builders are filtered here: a buildset of other builders may still
            // complete the tree of one of ours.
            wanted: Wanted {
                started: config.start_cb.is_some(),
                finished: config.review_cb.is_some(),
                buildsets: !matches!(config.summary_cb, SummaryCallback::Off),
                ..Wanted::default()
            },
        })
    }

    fn reports_on(&self, build: &BuildInfo) -> bool {
        let builders = &self.config.builders;
        builders.is_empty() || builders.contains(&build.builder.name)
    }

    fn arg(&self, arg: &Option<crate::config::status::LuaHandle>) -> Arg {
        match arg {
            Some(handle) => Arg::Handle(handle.clone()),
            None => Arg::Json(Value::Null),
        }
    }

    async fn started(
        &self,
        ctx: &Context,
        buildid: i64,
        build: &Arc<BuildInfo>,
    ) -> anyhow::Result<bool> {
        let Some(callback) = &self.config.start_cb else {
            return Ok(false);
        };
        let name = &build.builder.name;
        let args = vec![
            Arg::from(name.as_str()),
            Arg::Build(build.clone()),
            self.arg(&self.config.start_arg),
        ];
        let message = match ctx.script.call::<Value>(callback, args).await {
            Ok(Value::String(message)) => Some(message),
            Ok(Value::Null) => None,
            answer => {
                let error = match answer {
                    Ok(other) => format!("it returned {other} instead of a message"),
                    Err(error) => error.to_string(),
                };
                tracing::error!(
                    "{}: startCB ({}) failed, sending the built-in message: {error}",
                    self.name,
                    callback.location()
                );
                Some(format!(
                    "Buildbot started compiling your patchset\non configuration: {name}\n"
                ))
            }
        };
        let Some(message) = message else {
            return Ok(false);
        };
        let review = ReviewText {
            message,
            labels: BTreeMap::new(),
        };
        self.enqueue(ctx, format!("start:{buildid}"), build, review)
            .await
    }

    async fn finished(&self, ctx: &Context, finished: Finished) -> anyhow::Result<bool> {
        let Some(callback) = &self.config.review_cb else {
            return Ok(false);
        };
        let Finished {
            buildid,
            build,
            results,
            ..
        } = finished;
        let name = &build.builder.name;
        let args = vec![
            Arg::from(name.as_str()),
            Arg::Build(build.clone()),
            Arg::from(results.code()),
            Arg::Master(self.master.clone()),
            self.arg(&self.config.review_arg),
        ];
        let answer = ctx.script.call::<Value>(callback, args).await;
        let review = match answer.map_err(|e| e.to_string()).and_then(review_text) {
            Ok(review) => review,
            Err(error) => {
                tracing::error!(
                    "{}: reviewCB ({}) failed, sending the built-in review: {error}",
                    self.name,
                    callback.location()
                );
                default_review(name, results)
            }
        };
        let Some(review) = review else {
            return Ok(false);
        };
        self.enqueue(ctx, format!("review:{buildid}"), &build, review)
            .await
    }

    /// The summary of the tree of buildsets `bsid` belongs to, if every one of them is
    /// complete: the one that completes last sends it.
    async fn buildset_complete(&self, ctx: &Context, bsid: i64) -> anyhow::Result<bool> {
        let root = root_buildset(&ctx.db, bsid).await?;
        let Some(buildids) = finished_tree(&ctx.db, root).await? else {
            return Ok(false);
        };
        let mut builds = Vec::with_capacity(buildids.len());
        for buildid in buildids {
            let build = Arc::new(snapshot::build_info(&ctx.db, buildid).await?);
            if self.reports_on(&build) {
                builds.push(build);
            }
        }
        let Some(first) = builds.iter().find(|b| change_of(b).is_some()).cloned() else {
            return Ok(false);
        };
        let results = builds
            .iter()
            .filter_map(|b| b.results)
            .fold(BuildResult::Success, BuildResult::worst);
        let infos: Vec<Value> = builds.iter().map(|b| self.build_info(b)).collect();
        let review = match &self.config.summary_cb {
            SummaryCallback::Off => return Ok(false),
            SummaryCallback::BuiltIn => default_summary(&infos),
            SummaryCallback::Lua(callback) => {
                let with_builds = infos
                    .iter()
                    .zip(&builds)
                    .map(|(info, build)| Arg::WithBuild(info.clone(), build.clone()))
                    .collect();
                let args = vec![
                    Arg::List(with_builds),
                    Arg::from(results.code()),
                    Arg::Master(self.master.clone()),
                    self.arg(&self.config.summary_arg),
                ];
                let answer = ctx.script.call::<Value>(callback, args).await;
                match answer.map_err(|e| e.to_string()).and_then(review_text) {
                    Ok(review) => review,
                    Err(error) => {
                        tracing::error!(
                            "{}: summaryCB ({}) failed, sending the built-in summary: {error}",
                            self.name,
                            callback.location()
                        );
                        default_summary(&infos)
                    }
                }
            }
        };
        let Some(review) = review else {
            return Ok(false);
        };
        self.enqueue(ctx, format!("summary:{root}"), &first, review)
            .await
    }

    /// Buildbot 0.8's `buildInfo` for `summaryCB`, but its `build`, which the callback
    /// receives beside these fields.
    fn build_info(&self, build: &BuildInfo) -> Value {
        let result = build.results.unwrap_or(BuildResult::Success);
        let result_text = match result {
            BuildResult::Success => "succeeded",
            BuildResult::Failure => "failed",
            BuildResult::Warnings => "completed with warnings",
            BuildResult::Exception => "encountered an exception",
            _ => "completed",
        };
        json!({
            "name": build.builder.name,
            "result": result.code(),
            "resultText": result_text,
            "text": build.text.join(" "),
            "url": self.master.build_url(build.builder.id, build.number),
            "number": build.number,
        })
    }

    /// Writes the review of `build`'s change under `key`; a build about no change gets
    /// none, and a replaced patch set gets the message without labels.
    async fn enqueue(
        &self,
        ctx: &Context,
        key: String,
        build: &BuildInfo,
        text: ReviewText,
    ) -> anyhow::Result<bool> {
        let Some((project, revision)) = change_of(build) else {
            tracing::debug!(
                "{}: build {} of {} is about no Gerrit change; no review",
                self.name,
                build.number,
                build.builder.name
            );
            return Ok(false);
        };
        let mut labels = text.labels;
        if !labels.is_empty() && replaced(&ctx.db, build).await? {
            tracing::info!(
                "{}: a newer patch set replaced {revision}; its review has no labels",
                self.name
            );
            labels.clear();
        }
        let review = Review {
            project,
            revision,
            message: text.message,
            labels,
            notify: self.config.notify.clone(),
        };
        let summary = format!(
            "{} {}: {}",
            review.project,
            review.revision,
            review.message.lines().next().unwrap_or("")
        );
        let written = ctx
            .db
            .add_outbox_message(&NewMessage {
                reporter: self.name.clone(),
                kind: "review".into(),
                dedup_key: key,
                summary,
                meta: json!({"project": review.project, "revision": review.revision}),
                body: serde_json::to_vec(&review)?,
            })
            .await?;
        Ok(written.is_some())
    }
}

/// A review's text before it is tied to a change.
#[derive(Clone, Debug, PartialEq)]
struct ReviewText {
    message: String,
    labels: BTreeMap<String, i64>,
}

/// A callback's answer: `{message=STRING, labels={NAME=INTEGER, ...}}`; an empty table or
/// no message, no review (the spec's `reviewCB` answers `{}` for a retried build).
fn review_text(answer: Value) -> Result<Option<ReviewText>, String> {
    let fields = match answer {
        Value::Null => return Ok(None),
        Value::Array(items) if items.is_empty() => return Ok(None),
        Value::Object(fields) => fields,
        other => {
            return Err(format!(
                "it returned {other} instead of a table {{message=..., labels=...}}"
            ))
        }
    };
    let message = match fields.get("message") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(message)) => message.clone(),
        Some(other) => return Err(format!("its 'message' is {other}, not a string")),
    };
    let mut labels = BTreeMap::new();
    match fields.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) if items.is_empty() => {}
        Some(Value::Object(given)) => {
            for (name, value) in given {
                let score = match value {
                    Value::Bool(true) => 1,
                    value => value
                        .as_i64()
                        .ok_or_else(|| format!("label {name} is {value}, not an integer"))?,
                };
                labels.insert(name.clone(), score);
            }
        }
        Some(other) => return Err(format!("its 'labels' is {other}, not a table")),
    }
    Ok(Some(ReviewText { message, labels }))
}

/// Buildbot 0.8's `defaultReviewCB`: the result, Verified +1 or -1; nothing for a retry.
fn default_review(name: &str, results: BuildResult) -> Option<ReviewText> {
    if results == BuildResult::Retry {
        return None;
    }
    let message = format!(
        "Buildbot finished compiling your patchset\non configuration: {name}\nThe result is: {}\n",
        results.name().to_uppercase()
    );
    let verified = if results == BuildResult::Success {
        1
    } else {
        -1
    };
    Some(ReviewText {
        message,
        labels: [("Verified".to_string(), verified)].into_iter().collect(),
    })
}

/// Buildbot 0.8's `defaultSummaryCB`: a paragraph per build, Verified +1 when every build
/// succeeded, -1 otherwise.
fn default_summary(infos: &[Value]) -> Option<ReviewText> {
    let mut all_succeeded = !infos.is_empty();
    let mut paragraphs = Vec::with_capacity(infos.len());
    for info in infos {
        let text = |key: &str| info[key].as_str().unwrap_or("").to_string();
        let mut line = format!(
            "Builder {} {} ({})",
            text("name"),
            text("resultText"),
            text("text")
        );
        match info["url"].as_str() {
            Some(url) if !url.is_empty() => line.push_str(&format!(" - {url}")),
            _ => line.push('.'),
        }
        paragraphs.push(line);
        all_succeeded &= info["result"].as_i64() == Some(BuildResult::Success.code());
    }
    Some(ReviewText {
        message: paragraphs.join("\n\n"),
        labels: [("Verified".to_string(), if all_succeeded { 1 } else { -1 })]
            .into_iter()
            .collect(),
    })
}

/// A property as text: strings as they are, numbers written out.
fn text_property(build: &BuildInfo, name: &str) -> Option<String> {
    match build.properties.get(name)? {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The Gerrit project and revision `build` is about: `event.change.project`, and
/// `event.patchSet.revision` or else `got_revision` (the project's entry when it is one
/// per codebase).
fn change_of(build: &BuildInfo) -> Option<(String, String)> {
    let project = text_property(build, "event.change.project")?;
    let revision = text_property(build, "event.patchSet.revision").or_else(|| {
        match build.properties.get("got_revision")? {
            Value::String(revision) => Some(revision.clone()),
            Value::Object(by_codebase) => by_codebase
                .get(&project)
                .or_else(|| by_codebase.values().next())
                .and_then(|r| r.as_str())
                .map(String::from),
            _ => None,
        }
    })?;
    Some((project, revision))
}

/// Whether a build or buildset exists for a later patch set of `build`'s change.
async fn replaced(db: &Db, build: &BuildInfo) -> anyhow::Result<bool> {
    let (Some(change), Some(ours)) = (
        build.properties.get("event.change.number"),
        text_property(build, "event.patchSet.number").and_then(|n| n.parse::<i64>().ok()),
    ) else {
        return Ok(false);
    };
    let change = change.to_string();
    let numbers: Vec<String> = sqlx::query_scalar(
        "SELECT p.value FROM build_properties c JOIN build_properties p ON p.buildid = c.buildid \
         WHERE c.name = 'event.change.number' AND c.value = $1 AND p.name = 'event.patchSet.number' \
         UNION ALL \
         SELECT p.value FROM buildset_properties c JOIN buildset_properties p ON p.buildsetid = c.buildsetid \
         WHERE c.name = 'event.change.number' AND c.value = $2 AND p.name = 'event.patchSet.number'",
    )
    .bind(&change)
    .bind(&change)
    .fetch_all(&db.pool)
    .await?;
    Ok(numbers.iter().any(|stored| {
        let number = match serde_json::from_str::<Value>(stored) {
            Ok(Value::String(text)) => text.parse::<i64>().ok(),
            Ok(value) => value.as_i64(),
            Err(_) => None,
        };
        number.is_some_and(|number| number > ours)
    }))
}

/// The buildset at the top of the triggers that led to `bsid`.
async fn root_buildset(db: &Db, mut bsid: i64) -> anyhow::Result<i64> {
    loop {
        let parent: Option<i64> = sqlx::query_scalar(
            "SELECT r.buildsetid FROM buildsets s JOIN builds b ON b.id = s.parent_buildid \
             JOIN buildrequests r ON r.id = b.buildrequestid WHERE s.id = $1",
        )
        .bind(bsid)
        .fetch_optional(&db.pool)
        .await?;
        match parent {
            Some(parent) if parent != bsid => bsid = parent,
            _ => return Ok(bsid),
        }
    }
}

/// The last build of each request of `root` and of every buildset its builds triggered,
/// in the order of the requests (the buildset's builders, then what each triggered), not
/// of which build happened to start first; `None` while any of those buildsets is not complete.
async fn finished_tree(db: &Db, root: i64) -> anyhow::Result<Option<Vec<i64>>> {
    let mut pending = vec![root];
    let mut buildids = Vec::new();
    while let Some(bsid) = pending.pop() {
        let complete: i64 = sqlx::query_scalar("SELECT complete FROM buildsets WHERE id = $1")
            .bind(bsid)
            .fetch_one(&db.pool)
            .await?;
        if complete == 0 {
            return Ok(None);
        }
        let builds: Vec<i64> = sqlx::query_scalar(
            "SELECT MAX(b.id) FROM builds b JOIN buildrequests r ON r.id = b.buildrequestid \
             WHERE r.buildsetid = $1 GROUP BY r.id ORDER BY r.id",
        )
        .bind(bsid)
        .fetch_all(&db.pool)
        .await?;
        let triggered: Vec<i64> = sqlx::query_scalar(
            "SELECT s.id FROM buildsets s JOIN builds b ON b.id = s.parent_buildid \
             JOIN buildrequests r ON r.id = b.buildrequestid WHERE r.buildsetid = $1 ORDER BY s.id",
        )
        .bind(bsid)
        .fetch_all(&db.pool)
        .await?;
        buildids.extend(builds);
        pending.extend(triggered.into_iter().rev());
    }
    Ok(Some(buildids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_answers_become_reviews() {
        let review = review_text(json!({"message": "m", "labels": {"Verified": -1, "Ok": true}}));
        assert_eq!(
            review,
            Ok(Some(ReviewText {
                message: "m".into(),
                labels: [("Ok".to_string(), 1), ("Verified".to_string(), -1)]
                    .into_iter()
                    .collect()
            }))
        );
        assert_eq!(review_text(json!([])), Ok(None));
        assert_eq!(review_text(json!({"labels": {"Verified": 1}})), Ok(None));
        for (answer, why) in [
            (json!("text"), "instead of a table"),
            (json!({"message": 3}), "not a string"),
            (
                json!({"message": "m", "labels": {"V": "x"}}),
                "not an integer",
            ),
        ] {
            let error = review_text(answer).unwrap_err();
            assert!(error.contains(why), "{error}");
        }
    }

    #[test]
    fn the_default_summary_votes_minus_one_unless_all_succeeded() {
        let info = |result: BuildResult| json!({"name": "b", "result": result.code(), "resultText": "x", "text": "build", "url": "u"});
        let summary = default_summary(&[info(BuildResult::Success)]).unwrap();
        assert_eq!(summary.message, "Builder b x (build) - u");
        assert_eq!(summary.labels["Verified"], 1);
        let summary =
            default_summary(&[info(BuildResult::Success), info(BuildResult::Warnings)]).unwrap();
        assert_eq!(summary.labels["Verified"], -1);
        assert_eq!(summary.message.matches("\n\n").count(), 1);
    }
}
