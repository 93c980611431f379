//! `status.MailNotifier`: mail about finished builds, or one mail per finished buildset,
//! written to the outbox and delivered over SMTP.
//!
//! For each finished build the notifier decides, as Buildbot 0.8's `isMailNeeded` does,
//! whether its builders, tags and modes ask for mail; renders the message with the
//! `messageFormatter` (or the built-in one when there is none, or when it fails); addresses
//! it to the interested users through `lookup` and to the extra recipients; attaches logs
//! and patches; and writes it to the outbox under the key `build:ID` (`buildset:ID` with
//! `buildSetSummary`), so an event seen twice never mails twice.

pub mod message;
pub mod smtp;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::message::{Attachment, Mail, MessageText};
use self::smtp::SmtpTransport;
use super::outbox::Delivery;
use super::snapshot;
use super::Watermark;
use crate::config::status::{AddLogs, DomainLookup, EmailLookup, MailMode, MailNotifierConfig};
use crate::db::NewMessage;
use crate::model::{BuildInfo, BuildResult, MasterInfo};
use crate::runtime::{Context, Reconfigured, Service};
use crate::script::{Arg, RenderData};

/// A running MailNotifier: the task that turns finished builds into outbox rows, and the
/// task that delivers them.
pub struct MailNotifier {
    current: watch::Sender<Arc<Current>>,
    delivery: Delivery<SmtpTransport>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// What the notifier works from; a reconfig replaces it between two builds.
struct Current {
    config: Arc<MailNotifierConfig>,
    master: Arc<MasterInfo>,
}

impl Service for MailNotifier {
    type Config = MailNotifierConfig;

    fn name_of(config: &MailNotifierConfig) -> &str {
        config.name.as_deref().unwrap_or("MailNotifier")
    }

    async fn start(ctx: &Context, config: &MailNotifierConfig) -> anyhow::Result<MailNotifier> {
        let name = Self::name_of(config).to_string();
        let transport = SmtpTransport::new(config).map_err(anyhow::Error::msg)?;
        let master_config = ctx.config.current();
        let delivery = Delivery::spawn(
            ctx.db.clone(),
            name.clone(),
            transport,
            master_config.outbox,
        );
        let current = Arc::new(Current {
            config: Arc::new(config.clone()),
            master: super::master_info(&ctx.db, &master_config).await?,
        });
        let (sender, receiver) = watch::channel(current);
        // Not the master's shutdown token: the master stops notifiers after the builds that
        // finish during its shutdown.
        let stop = CancellationToken::new();
        let notifier = Notifier {
            ctx: ctx.clone(),
            name,
            waker: delivery.waker(),
        };
        let task = tokio::spawn(notifier.run(receiver, stop.clone()));
        Ok(MailNotifier {
            current: sender,
            delivery,
            stop,
            task,
        })
    }

    /// Takes the new formatter, recipients and modes for the next build; a new relay, port,
    /// TLS choice or credentials for the next delivery. Queued mail stays queued.
    async fn reconfigure(
        &mut self,
        ctx: &Context,
        config: &MailNotifierConfig,
    ) -> anyhow::Result<Reconfigured> {
        let master_config = ctx.config.current();
        let old = self.current.borrow().config.clone();
        let transport = SmtpTransport::new(config).map_err(anyhow::Error::msg)?;
        self.delivery.reconfigure(transport, master_config.outbox);
        let unchanged = format!("{old:?}") == format!("{config:?}");
        self.current.send_replace(Arc::new(Current {
            config: Arc::new(config.clone()),
            master: super::master_info(&ctx.db, &master_config).await?,
        }));
        Ok(if unchanged {
            Reconfigured::Unchanged
        } else {
            Reconfigured::Changed
        })
    }

    /// Stops after the build being handled and the batch being delivered; what is still
    /// queued stays in the outbox for the next start.
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
        self.delivery.stop().await;
    }
}

/// How often the watermark is written while builds finish: a crash re-reads at most this
/// much, and the outbox's keys drop what was already written.
const WATERMARK_EVERY: Duration = Duration::from_secs(1);

/// Turns finished builds (or buildsets) into outbox rows.
struct Notifier {
    ctx: Context,
    name: String,
    waker: Arc<Notify>,
}

impl Notifier {
    async fn run(self, current: watch::Receiver<Arc<Current>>, stop: CancellationToken) {
        let mut events = self.ctx.bus.subscribe();
        let watermark = Watermark::new(&self.name);
        let mut handled_until = match watermark.load(&self.ctx.db).await {
            Ok(until) => until,
            Err(error) => {
                tracing::warn!("{}: cannot read how far it got: {error}", self.name);
                crate::db::now()
            }
        };
        let summary = || current.borrow().config.build_set_summary;
        handled_until = self.catch_up(&current, summary(), handled_until).await;
        let mut written = handled_until;
        let mut flush = tokio::time::interval(WATERMARK_EVERY);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = flush.tick(), if written < handled_until => {
                    if watermark.store(&self.ctx.db, handled_until).await.is_ok() {
                        written = handled_until;
                    }
                }
                event = events.recv() => match event {
                    Ok(event) => {
                        let finished = match summary() {
                            false => event.id_of("builds", "finished"),
                            true => event.id_of("buildsets", "complete"),
                        };
                        let Some(id) = finished else { continue };
                        let current = current.borrow().clone();
                        self.handle(&current, id).await;
                        if let Some(at) = event.message["complete_at"].as_f64() {
                            handled_until = handled_until.max(at);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!("{}: fell {missed} events behind; reading storage", self.name);
                        handled_until = self.catch_up(&current, summary(), handled_until).await;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        }
        if written < handled_until {
            let _ = watermark.store(&self.ctx.db, handled_until).await;
        }
    }

    /// Handles what finished since `since` (whole seconds, as events carry them: what
    /// finished in that second is seen again and dropped by the outbox's key).
    async fn catch_up(
        &self,
        current: &watch::Receiver<Arc<Current>>,
        summary: bool,
        since: f64,
    ) -> f64 {
        let query = match summary {
            false => "SELECT id, complete_at FROM builds WHERE complete_at >= $1 ORDER BY complete_at, id",
            true => "SELECT id, complete_at FROM buildsets WHERE complete = 1 AND complete_at >= $1 ORDER BY complete_at, id",
        };
        let finished: Vec<(i64, f64)> = match sqlx::query_as(query)
            .bind(since.floor())
            .fetch_all(&self.ctx.db.pool)
            .await
        {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!("{}: cannot read finished builds: {error}", self.name);
                return since;
            }
        };
        let mut until = since;
        for (id, complete_at) in finished {
            let current = current.borrow().clone();
            self.handle(&current, id).await;
            until = until.max(complete_at.floor());
        }
        until
    }

    /// Mails about build `id` (or buildset `id`) if the config asks for it. Failures are
    /// logged: one build's trouble must not stop the next build's mail.
    async fn handle(&self, current: &Current, id: i64) {
        let written = match current.config.build_set_summary {
            false => self.build_finished(current, id).await,
            true => self.buildset_complete(current, id).await,
        };
        match written {
            Ok(true) => self.waker.notify_one(),
            Ok(false) => {}
            Err(error) => tracing::error!("{}: no mail about {id}: {error:#}", self.name),
        }
    }

    async fn build_finished(&self, current: &Current, buildid: i64) -> anyhow::Result<bool> {
        let Some(build) = self.candidate(current, buildid).await? else {
            return Ok(false);
        };
        let Some((results, previous)) = self.mail_needed(current, &build).await? else {
            return Ok(false);
        };
        let text = self
            .message_text(current, &build.builder.name, &build, results, previous)
            .await;
        let subject = text.subject.clone().unwrap_or_else(|| {
            message::render_subject(
                &current.config.subject,
                &build.builder.name,
                results,
                &current.master.title,
            )
        });
        let builds = [build];
        self.enqueue(current, format!("build:{buildid}"), subject, text, &builds)
            .await
    }

    /// One mail for the whole buildset, concatenating the messages of its builds that ask
    /// for mail (Buildbot 0.8's `buildSetSummary`).
    async fn buildset_complete(&self, current: &Current, bsid: i64) -> anyhow::Result<bool> {
        let (reason, results): (String, Option<i64>) =
            sqlx::query_as("SELECT reason, results FROM buildsets WHERE id = $1")
                .bind(bsid)
                .fetch_one(&self.ctx.db.pool)
                .await?;
        // The last build of each request: a retried request's earlier builds are not its
        // outcome.
        let buildids: Vec<i64> = sqlx::query_scalar(
            "SELECT MAX(b.id) FROM builds b JOIN buildrequests r ON r.id = b.buildrequestid \
             WHERE r.buildsetid = $1 GROUP BY r.id ORDER BY MAX(b.id)",
        )
        .bind(bsid)
        .fetch_all(&self.ctx.db.pool)
        .await?;
        let mut builds = Vec::new();
        let mut combined = MessageText {
            body: String::new(),
            html: false,
            subject: None,
        };
        for buildid in buildids {
            let Some(build) = self.candidate(current, buildid).await? else {
                continue;
            };
            let Some((results, previous)) = self.mail_needed(current, &build).await? else {
                continue;
            };
            let text = self
                .message_text(current, &build.builder.name, &build, results, previous)
                .await;
            combined.body.push_str(&text.body);
            combined.body.push_str("\n\n");
            combined.html = text.html;
            combined.subject = text.subject.or(combined.subject);
            builds.push(build);
        }
        if builds.is_empty() {
            return Ok(false);
        }
        let subject = combined.subject.clone().unwrap_or_else(|| {
            message::render_subject(
                &current.config.subject,
                &format!("Buildset Complete: {reason}"),
                results
                    .and_then(BuildResult::from_code)
                    .unwrap_or(BuildResult::Success),
                &current.master.title,
            )
        });
        self.enqueue(
            current,
            format!("buildset:{bsid}"),
            subject,
            combined,
            &builds,
        )
        .await
    }

    /// A snapshot of the build, when its builder, tags and result leave mail about it
    /// possible. Decided on one row first: most finished builds are not mailed about, and a
    /// snapshot reads the build's steps, logs and changes.
    async fn candidate(
        &self,
        current: &Current,
        buildid: i64,
    ) -> anyhow::Result<Option<Arc<BuildInfo>>> {
        let config = &current.config;
        let (results, builder, tags): (Option<i64>, String, String) = sqlx::query_as(
            "SELECT b.results, bl.name, bl.tags FROM builds b \
             JOIN builders bl ON bl.id = b.builderid WHERE b.id = $1",
        )
        .bind(buildid)
        .fetch_one(&self.ctx.db.pool)
        .await?;
        let Some(results) = results.and_then(BuildResult::from_code) else {
            return Ok(None);
        };
        if !config.builders.is_empty() && !config.builders.contains(&builder) {
            return Ok(None);
        }
        let tags: Vec<String> = serde_json::from_str(&tags).unwrap_or_default();
        if !config.tags.is_empty() && !tags.iter().any(|t| config.tags.contains(t)) {
            return Ok(None);
        }
        // A previous result that differs from this one and is not a failure is the one
        // under which `change` and `problem` ask for mail, if anything does.
        let favourable = match results {
            BuildResult::Success => BuildResult::Warnings,
            _ => BuildResult::Success,
        };
        let modes = &config.mode;
        if !mode_wants(modes, results, None) && !mode_wants(modes, results, Some(favourable)) {
            return Ok(None);
        }
        Ok(Some(Arc::new(
            snapshot::build_info(&self.ctx.db, buildid).await?,
        )))
    }

    /// The build's result and the previous build's, when the modes ask for mail about it
    /// (Buildbot 0.8's `isMailNeeded`; [`Notifier::candidate`] checked the builder and tags).
    async fn mail_needed(
        &self,
        current: &Current,
        build: &Arc<BuildInfo>,
    ) -> anyhow::Result<Option<(BuildResult, Option<BuildResult>)>> {
        let config = &current.config;
        let Some(results) = build.results else {
            return Ok(None);
        };
        let modes = &config.mode;
        let compares = modes.contains(&MailMode::Change) || modes.contains(&MailMode::Problem);
        let previous = match compares {
            true => self.previous_result(current, build).await?,
            false => None,
        };
        Ok(mode_wants(modes, results, previous).then_some((results, previous)))
    }

    /// The result of the build to compare with: `previousBuildGetter`'s answer, or the
    /// builder's previous finished build. `None` (no such build) suppresses `change` and
    /// `problem` mail.
    async fn previous_result(
        &self,
        current: &Current,
        build: &Arc<BuildInfo>,
    ) -> anyhow::Result<Option<BuildResult>> {
        if let Some(getter) = &current.config.previous_build_getter {
            let answer = self
                .ctx
                .script
                .call::<Option<Arc<BuildInfo>>>(getter, vec![Arg::Build(build.clone())])
                .await;
            match answer {
                Ok(previous) => return Ok(previous.and_then(|build| build.results)),
                Err(error) => tracing::warn!(
                    "{}: previousBuildGetter failed, comparing with the previous build: {error}",
                    self.name
                ),
            }
        }
        let previous =
            snapshot::previous_finished(&self.ctx.db, build.builder.id, build.number).await?;
        Ok(previous.and_then(|(_, results)| results))
    }

    /// The formatter's message, or the built-in one when there is no formatter or it
    /// failed, timed out or answered something else than a message.
    async fn message_text(
        &self,
        current: &Current,
        name: &str,
        build: &Arc<BuildInfo>,
        results: BuildResult,
        previous: Option<BuildResult>,
    ) -> MessageText {
        let config = &current.config;
        if let Some(formatter) = &config.message_formatter {
            let modes: Vec<&str> = config.mode.iter().map(|m| m.name()).collect();
            let args = vec![
                Arg::Json(json!(modes)),
                Arg::from(name),
                Arg::Build(build.clone()),
                Arg::from(results.code()),
                Arg::Master(current.master.clone()),
            ];
            let answer = self.ctx.script.call::<Value>(formatter, args).await;
            match answer.map_err(|e| e.to_string()).and_then(formatted_text) {
                Ok(text) => return text,
                Err(error) => tracing::error!(
                    "{}: messageFormatter ({}) failed, sending the built-in message: {error}",
                    self.name,
                    formatter.location()
                ),
            }
        }
        message::default_message(&config.mode, name, build, previous, &current.master)
    }

    /// Addresses the mail, renders it with its attachments and headers, and writes it to
    /// the outbox. `false` when there is nobody to send it to or it was written before.
    async fn enqueue(
        &self,
        current: &Current,
        key: String,
        subject: String,
        text: MessageText,
        builds: &[Arc<BuildInfo>],
    ) -> anyhow::Result<bool> {
        let config = &current.config;
        let mut interested = Vec::new();
        if config.send_to_interested_users {
            for build in builds {
                for user in build.responsible_users() {
                    if let Some(address) = self.address_of(config, &user).await {
                        interested.push(address);
                    }
                }
            }
        }
        let (to, cc) = message::recipients(
            &self.name,
            &interested,
            &config.extra_recipients,
            config.send_to_interested_users,
        );
        if to.is_empty() && cc.is_empty() {
            tracing::info!("{}: no recipients for '{subject}'; not sent", self.name);
            return Ok(false);
        }
        let mut attachments = Vec::new();
        for build in builds {
            attachments.extend(attachments_of(config, build).await);
        }
        let mail = Mail {
            from: config.fromaddr.clone(),
            headers: self.extra_headers(config, &builds[0]).await,
            to,
            cc,
            subject,
            text,
            attachments,
        };
        let body = message::compose(&mail).map_err(anyhow::Error::msg)?;
        if config.dump_mails_to_log {
            tracing::info!("{}: mail:\n{}", self.name, String::from_utf8_lossy(&body));
        }
        let recipients: Vec<&String> = mail.to.iter().chain(&mail.cc).collect();
        let written = self
            .ctx
            .db
            .add_outbox_message(&NewMessage {
                reporter: self.name.clone(),
                kind: "mail".into(),
                dedup_key: key,
                summary: mail.subject,
                meta: json!({"from": mail.from, "to": recipients}),
                body,
            })
            .await?;
        Ok(written.is_some())
    }

    /// A user's address through `lookup`; without one, a name that is an address already.
    async fn address_of(&self, config: &MailNotifierConfig, user: &str) -> Option<String> {
        match &config.lookup {
            Some(EmailLookup::Domain(domain)) => Some(
                DomainLookup {
                    domain: domain.clone(),
                }
                .address(user),
            ),
            Some(EmailLookup::Object {
                object,
                get_address,
            }) => {
                let args = vec![Arg::Handle(object.clone()), Arg::from(user)];
                match self.ctx.script.call::<Value>(get_address, args).await {
                    Ok(Value::String(address)) => Some(address),
                    Ok(Value::Null) => None,
                    Ok(other) => {
                        tracing::warn!(
                            "{}: lookup's getAddress({user:?}) returned {other}, not an address or nil",
                            self.name
                        );
                        None
                    }
                    Err(error) => {
                        tracing::warn!("{}: lookup failed for {user:?}: {error}", self.name);
                        None
                    }
                }
            }
            None => user.contains('@').then(|| user.to_string()),
        }
    }

    /// `extraHeaders`, rendered against the build's properties; a header that fails to
    /// render is left out with a log line.
    async fn extra_headers(
        &self,
        config: &MailNotifierConfig,
        build: &BuildInfo,
    ) -> Vec<(String, String)> {
        let data = RenderData {
            properties: build.properties.clone(),
            sourcestamps: build.sourcestamps.clone(),
            ..RenderData::default()
        };
        let mut headers = Vec::with_capacity(config.extra_headers.len());
        for header in &config.extra_headers {
            let name = self.ctx.script.render(&header.name, data.clone()).await;
            let value = self.ctx.script.render(&header.value, data.clone()).await;
            match (name, value) {
                (Ok(name), Ok(value)) => headers.push((plain(name), plain(value))),
                (Err(error), _) | (_, Err(error)) => {
                    tracing::warn!("{}: extraHeaders entry left out: {error}", self.name)
                }
            }
        }
        headers
    }
}

/// Buildbot 0.8's mode rules, given the build's result and the previous build's.
fn mode_wants(
    modes: &BTreeSet<MailMode>,
    results: BuildResult,
    previous: Option<BuildResult>,
) -> bool {
    modes.iter().any(|mode| match mode {
        MailMode::Change => previous.is_some_and(|previous| previous != results),
        MailMode::Failing => results == BuildResult::Failure,
        MailMode::Passing => results == BuildResult::Success,
        MailMode::Problem => {
            results == BuildResult::Failure
                && previous.is_some_and(|previous| previous != BuildResult::Failure)
        }
        MailMode::Warnings => results == BuildResult::Warnings,
        MailMode::Exception => results == BuildResult::Exception,
    })
}

/// A formatter's answer: `{body=STRING, type='plain'|'html', subject=STRING}`, type and
/// subject optional.
fn formatted_text(answer: Value) -> Result<MessageText, String> {
    let Value::Object(fields) = &answer else {
        return Err(format!(
            "it returned {answer} instead of a table {{body=..., type=...}}"
        ));
    };
    let body = match fields.get("body") {
        Some(Value::String(body)) => body.clone(),
        _ => return Err("its answer has no string 'body'".into()),
    };
    let html = match fields.get("type") {
        None => false,
        Some(Value::String(kind)) if kind == "plain" => false,
        Some(Value::String(kind)) if kind == "html" => true,
        Some(other) => return Err(format!("its 'type' is {other}, not 'plain' or 'html'")),
    };
    let subject = match fields.get("subject") {
        None => None,
        Some(Value::String(subject)) => Some(subject.clone()),
        Some(other) => return Err(format!("its 'subject' is {other}, not a string")),
    };
    Ok(MessageText {
        body,
        html,
        subject,
    })
}

/// A rendered value as header text: strings as they are, anything else as JSON.
fn plain(value: Value) -> String {
    match value {
        Value::String(text) => text,
        other => other.to_string(),
    }
}

/// The logs `addLogs` names (`stdio` or `step.stdio`) and the patches `addPatch` asks for.
async fn attachments_of(config: &MailNotifierConfig, build: &Arc<BuildInfo>) -> Vec<Attachment> {
    let mut attachments = Vec::new();
    for (step, _, log) in build.logs() {
        let filename = format!("{}.{}", build.steps[step].name, log.name);
        let wanted = match &config.add_logs {
            AddLogs::None => false,
            AddLogs::All => true,
            AddLogs::Named(names) => names.iter().any(|n| *n == log.name || *n == filename),
        };
        if !wanted {
            continue;
        }
        // Reading a log blocks on storage: off the async threads.
        let source = log.source.clone();
        match tokio::task::spawn_blocking(move || source.text()).await {
            Ok(Ok(text)) => attachments.push(Attachment {
                filename,
                content_type: "text/plain".into(),
                content: text.into_bytes(),
            }),
            Ok(Err(error)) => tracing::warn!("cannot attach log {filename}: {error}"),
            Err(error) => tracing::warn!("cannot attach log {filename}: {error}"),
        }
    }
    if config.add_patch {
        for ss in &build.sourcestamps {
            if let Some(patch) = &ss.patch {
                attachments.push(Attachment {
                    filename: "source patch".into(),
                    content_type: "text/x-diff".into(),
                    content: patch.body.clone(),
                });
            }
        }
    }
    attachments
}

#[cfg(test)]
mod tests {
    use super::*;
    use BuildResult::*;

    fn modes(names: &[MailMode]) -> BTreeSet<MailMode> {
        names.iter().copied().collect()
    }

    #[test]
    fn modes_follow_buildbot() {
        let change = modes(&[MailMode::Change]);
        assert!(mode_wants(&change, Failure, Some(Success)));
        assert!(!mode_wants(&change, Failure, Some(Failure)));
        assert!(!mode_wants(&change, Failure, None));
        let problem = modes(&[MailMode::Problem]);
        assert!(mode_wants(&problem, Failure, Some(Warnings)));
        assert!(!mode_wants(&problem, Failure, Some(Failure)));
        assert!(!mode_wants(&problem, Failure, None));
        assert!(!mode_wants(&problem, Exception, Some(Success)));
        let each = [
            (MailMode::Failing, Failure),
            (MailMode::Passing, Success),
            (MailMode::Warnings, Warnings),
            (MailMode::Exception, Exception),
        ];
        for (mode, wanted) in each {
            for results in [Success, Warnings, Failure, Exception] {
                assert_eq!(
                    mode_wants(&modes(&[mode]), results, None),
                    results == wanted
                );
            }
        }
    }

    #[test]
    fn a_formatter_answer_must_be_a_message() {
        let text = formatted_text(json!({"body": "<b>x</b>", "type": "html", "subject": "s"}));
        assert_eq!(
            text,
            Ok(MessageText {
                body: "<b>x</b>".into(),
                html: true,
                subject: Some("s".into())
            })
        );
        assert!(formatted_text(json!({"body": "x"})).is_ok_and(|t| !t.html));
        for (answer, why) in [
            (json!("text"), "instead of a table"),
            (json!({"type": "plain"}), "no string 'body'"),
            (json!({"body": "x", "type": "rtf"}), "not 'plain' or 'html'"),
            (json!({"body": "x", "subject": 3}), "not a string"),
        ] {
            let error = formatted_text(answer).unwrap_err();
            assert!(error.contains(why), "{error}");
        }
    }
}
