//! `status.MailNotifier`: mail about finished builds, or one mail per finished buildset,
//! written to the outbox and delivered over SMTP.
//!
//! The shared generator decides, as Buildbot 0.8's `isMailNeeded` does, which finished
//! builds (or buildsets) its builders, tags and modes ask mail for. The notifier renders
//! the message with the `messageFormatter` (or the built-in one when there is none, or when
//! it fails); addresses it to the interested users through `lookup` and to the extra
//! recipients; attaches logs and patches; and writes it to the outbox under the key
//! `build:ID` (`buildset:ID` with `buildSetSummary`), so an event seen twice never mails
//! twice.

pub mod message;
pub mod smtp;

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::message::{Attachment, Mail, MessageText};
use self::smtp::SmtpTransport;
use super::generator::{Finished, Report, Reporter, Wanted};
use super::Pipeline;
use crate::bus::{Subscription, Topics};
use crate::config::same_options;
use crate::config::status::{AddLogs, DomainLookup, EmailLookup, MailNotifierConfig};
use crate::db::NewMessage;
use crate::model::{BuildInfo, BuildResult, MasterInfo};
use crate::runtime::{Context, Reconfigured, Service};
use crate::script::{Arg, RenderData};

/// A running MailNotifier: the shared pipeline with a mail reporter and an SMTP transport,
/// and the task that mails about missing workers.
pub struct MailNotifier {
    pipeline: Pipeline<Mailer, SmtpTransport>,
    missing_workers: JoinHandle<()>,
    stop_missing_workers: CancellationToken,
}

impl Service for MailNotifier {
    type Config = MailNotifierConfig;

    fn name_of(config: &MailNotifierConfig) -> &str {
        config.name.as_deref().unwrap_or("MailNotifier")
    }

    async fn start(ctx: &Context, config: &MailNotifierConfig) -> anyhow::Result<MailNotifier> {
        let transport = SmtpTransport::new(config).map_err(anyhow::Error::msg)?;
        let mailer = Mailer::new(ctx, config).await?;
        let pipeline = Pipeline::start(ctx, &mailer.name.clone(), mailer, transport);
        let stop_missing_workers = CancellationToken::new();
        let missing_workers = tokio::spawn(mail_missing_workers(
            ctx.clone(),
            ctx.bus.subscribe_to(Topics::Only(&["workers/*/missing"])),
            pipeline.subscribe(),
            pipeline.waker(),
            stop_missing_workers.clone(),
        ));
        Ok(MailNotifier {
            pipeline,
            missing_workers,
            stop_missing_workers,
        })
    }

    /// Takes the new formatter, recipients and modes for the next build; a new relay, port,
    /// TLS choice or credentials for the next delivery. Queued mail stays queued.
    async fn reconfigure(
        &mut self,
        ctx: &Context,
        config: &MailNotifierConfig,
    ) -> anyhow::Result<Reconfigured> {
        let transport = SmtpTransport::new(config).map_err(anyhow::Error::msg)?;
        let unchanged = same_options(self.pipeline.current().config.as_ref(), config);
        self.pipeline
            .replace(ctx, Mailer::new(ctx, config).await?, transport);
        Ok(if unchanged {
            Reconfigured::Unchanged
        } else {
            Reconfigured::Changed
        })
    }

    /// Stops after the build being handled and the batch being delivered; what is still
    /// queued stays in the outbox for the next start.
    async fn stop(self) {
        self.stop_missing_workers.cancel();
        let _ = self.missing_workers.await;
        self.pipeline.stop().await;
    }
}

/// Mails each `workers/N/missing` event (a worker gone for its `missing_timeout`) to the
/// worker's `notify_on_missing` addresses, through the outbox.
async fn mail_missing_workers(
    ctx: Context,
    mut events: Subscription,
    mailer: watch::Receiver<Arc<Mailer>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            event = events.recv() => match event {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if event.id_of("workers", "missing").is_none() {
            continue;
        }
        let mailer = mailer.borrow().clone();
        match mailer.worker_missing(&ctx, &event.message).await {
            Ok(true) => wake.notify_one(),
            Ok(false) => {}
            Err(error) => tracing::error!(
                "{}: cannot mail about a missing worker: {error}",
                mailer.name
            ),
        }
    }
}

/// Turns reports into mail in the outbox; a reconfig replaces it between two builds.
struct Mailer {
    name: String,
    config: Arc<MailNotifierConfig>,
    master: Arc<MasterInfo>,
    wanted: Wanted,
}

impl Reporter for Mailer {
    fn wanted(&self) -> &Wanted {
        &self.wanted
    }

    async fn report(&self, ctx: &Context, report: Report) -> anyhow::Result<bool> {
        match report {
            Report::Started { .. } => Ok(false),
            Report::Finished(finished) => self.build_finished(ctx, finished).await,
            Report::BuildsetComplete {
                bsid,
                reason,
                results,
                builds,
            } => {
                self.buildset_complete(ctx, bsid, &reason, results, builds)
                    .await
            }
        }
    }
}

impl Mailer {
    async fn new(ctx: &Context, config: &MailNotifierConfig) -> anyhow::Result<Mailer> {
        let summary = config.build_set_summary;
        Ok(Mailer {
            name: MailNotifier::name_of(config).to_string(),
            config: Arc::new(config.clone()),
            master: super::master_info(&ctx.db, &ctx.config.current()).await?,
            wanted: Wanted {
                started: false,
                finished: !summary,
                buildsets: summary,
                builders: config.builders.clone(),
                tags: config.tags.clone(),
                modes: Some(config.mode.clone()),
                previous_build_getter: config.previous_build_getter.clone(),
            },
        })
    }

    async fn build_finished(&self, ctx: &Context, finished: Finished) -> anyhow::Result<bool> {
        let Finished {
            buildid,
            build,
            results,
            previous,
        } = finished;
        let text = self
            .message_text(ctx, &build.builder.name, &build, results, previous)
            .await;
        let subject = text.subject.clone().unwrap_or_else(|| {
            message::render_subject(
                &self.config.subject,
                &build.builder.name,
                results,
                &self.master.title,
            )
        });
        let key = format!("build:{buildid}");
        self.enqueue(ctx, key, subject, text, &[build]).await
    }

    /// One mail for the whole buildset, concatenating the messages of its builds that ask
    /// for mail (Buildbot 0.8's `buildSetSummary`).
    async fn buildset_complete(
        &self,
        ctx: &Context,
        bsid: i64,
        reason: &str,
        results: BuildResult,
        finished: Vec<Finished>,
    ) -> anyhow::Result<bool> {
        let mut builds = Vec::with_capacity(finished.len());
        let mut combined = MessageText {
            body: String::new(),
            html: false,
            subject: None,
        };
        for Finished {
            build,
            results,
            previous,
            ..
        } in finished
        {
            let text = self
                .message_text(ctx, &build.builder.name, &build, results, previous)
                .await;
            combined.body.push_str(&text.body);
            combined.body.push_str("\n\n");
            combined.html = text.html;
            combined.subject = text.subject.or(combined.subject);
            builds.push(build);
        }
        let subject = combined.subject.clone().unwrap_or_else(|| {
            message::render_subject(
                &self.config.subject,
                &format!("Buildset Complete: {reason}"),
                results,
                &self.master.title,
            )
        });
        self.enqueue(ctx, format!("buildset:{bsid}"), subject, combined, &builds)
            .await
    }

    /// The formatter's message, or the built-in one when there is no formatter or it
    /// failed, timed out or answered something else than a message.
    async fn message_text(
        &self,
        ctx: &Context,
        name: &str,
        build: &Arc<BuildInfo>,
        results: BuildResult,
        previous: Option<BuildResult>,
    ) -> MessageText {
        let config = &self.config;
        if let Some(formatter) = &config.message_formatter {
            let modes: Vec<&str> = config.mode.iter().map(|m| m.name()).collect();
            let args = vec![
                Arg::Json(json!(modes)),
                Arg::from(name),
                Arg::Build(build.clone()),
                Arg::from(results.code()),
                Arg::Master(self.master.clone()),
            ];
            let answer = ctx.script.call::<Value>(formatter, args).await;
            match answer.map_err(|e| e.to_string()).and_then(formatted_text) {
                Ok(text) => return text,
                Err(error) => tracing::error!(
                    "{}: messageFormatter ({}) failed, sending the built-in message: {error}",
                    self.name,
                    formatter.location()
                ),
            }
        }
        message::default_message(&config.mode, name, build, previous, &self.master)
    }

    /// Addresses the mail, renders it with its attachments and headers, and writes it to
    /// the outbox. `false` when there is nobody to send it to or it was written before.
    async fn enqueue(
        &self,
        ctx: &Context,
        key: String,
        subject: String,
        text: MessageText,
        builds: &[Arc<BuildInfo>],
    ) -> anyhow::Result<bool> {
        let config = &self.config;
        let mut interested = Vec::new();
        if config.send_to_interested_users {
            for build in builds {
                for user in build.responsible_users() {
                    if let Some(address) = self.address_of(ctx, config, &user).await {
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
            headers: self.extra_headers(ctx, config, &builds[0]).await,
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
        let written = ctx
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

    /// Buildbot 4's missing-worker mail (`MessageFormatterMissingWorker`), to the addresses
    /// the worker names, keyed by the worker and when it went away.
    async fn worker_missing(&self, ctx: &Context, worker: &Value) -> anyhow::Result<bool> {
        let to: Vec<String> = worker["notify"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|address| address.as_str().map(String::from))
            .collect();
        if to.is_empty() {
            return Ok(false);
        }
        let name = worker["name"].as_str().unwrap_or_default();
        let last_connection = worker["last_connection"].as_str().unwrap_or_default();
        let mut body = format!(
            "The Buildbot working for '{}' has noticed that the worker named {name} went away.\n\n\
             It last disconnected at {last_connection}.\n\n",
            self.master.title
        );
        if let Some(admin) = worker["workerinfo"]["admin"].as_str() {
            body.push_str(&format!(
                "The admin on record (as reported by WORKER:info/admin) was {admin}.\n\n"
            ));
        }
        body.push_str(&format!(
            "Sincerely,\n The Buildbot\n {}\n",
            self.master.buildbot_url
        ));
        let mail = Mail {
            from: self.config.fromaddr.clone(),
            to,
            cc: Vec::new(),
            subject: format!("Buildbot worker {name} missing"),
            text: MessageText {
                body,
                html: false,
                subject: None,
            },
            headers: Vec::new(),
            attachments: Vec::new(),
        };
        let body = message::compose(&mail).map_err(anyhow::Error::msg)?;
        let written = ctx
            .db
            .add_outbox_message(&NewMessage {
                reporter: self.name.clone(),
                kind: "mail".into(),
                dedup_key: format!("worker:{}:missing:{last_connection}", worker["workerid"]),
                summary: mail.subject,
                meta: json!({"from": mail.from, "to": mail.to}),
                body,
            })
            .await?;
        Ok(written.is_some())
    }

    /// A user's address through `lookup`; without one, a name that is an address already.
    async fn address_of(
        &self,
        ctx: &Context,
        config: &MailNotifierConfig,
        user: &str,
    ) -> Option<String> {
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
                match ctx.script.call::<Value>(get_address, args).await {
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
        ctx: &Context,
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
            let name = ctx.script.render(&header.name, data.clone()).await;
            let value = ctx.script.render(&header.value, data.clone()).await;
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
