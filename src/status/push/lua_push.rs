//! `status.StatusPush`: Buildbot 0.8's events (as HttpStatusPush packs them) handed to the
//! config's Lua `serverPushCb(self)`, which takes them with `self.queue:popChunk()` and
//! calls `self:queueNextServerPush()`.
//!
//! The queue is the outbox, so it is in storage and survives restarts: each event is one
//! message. Events gather for `bufferDelay` after the first, then every waiting one is
//! offered to one call, in order. What the callback popped is done; the first event it did
//! not pop (or every one, when the call failed or timed out, logged with its `file:line`)
//! is offered again after `retryDelay`, and the later ones wait behind it. Every event thus
//! reaches the callback once, in order.

use std::sync::Arc;

use super::http_push::{bound_queue, wanted_events, BuildEvent, EventCounter};
use crate::config::same_options;
use crate::config::status::StatusPushConfig;
use crate::db::{now, NewMessage, OutboxMessage};
use crate::model::{BuildInfo, MasterInfo};
use crate::runtime::{Context, Reconfigured, Service};
use crate::script::objects::PushChunk;
use crate::script::{Arg, ScriptHost};
use crate::status::generator::{Report, Reporter, Wanted};
use crate::status::outbox::{Outcome, Transport};
use crate::status::Pipeline;

use serde_json::{json, Value};

/// A running StatusPush.
pub struct StatusPush(Pipeline<EventQueue, CallbackTransport>);

impl Service for StatusPush {
    type Config = StatusPushConfig;

    fn name_of(config: &StatusPushConfig) -> &str {
        config.name.as_deref().unwrap_or("StatusPush")
    }

    async fn start(ctx: &Context, config: &StatusPushConfig) -> anyhow::Result<StatusPush> {
        let queue = EventQueue::new(ctx, config).await?;
        let transport = CallbackTransport::new(ctx, config);
        Ok(StatusPush(Pipeline::start(
            ctx,
            Self::name_of(config),
            queue,
            transport,
        )))
    }

    /// The new callback and options take the next event; queued events stay queued.
    async fn reconfigure(
        &mut self,
        ctx: &Context,
        config: &StatusPushConfig,
    ) -> anyhow::Result<Reconfigured> {
        let unchanged = same_options(self.0.current().config.as_ref(), config);
        let queue = EventQueue::new(ctx, config).await?;
        self.0
            .replace(ctx, queue, CallbackTransport::new(ctx, config));
        Ok(match unchanged {
            true => Reconfigured::Unchanged,
            false => Reconfigured::Changed,
        })
    }

    async fn stop(self) {
        self.0.stop().await;
    }
}

/// Writes build events to the outbox, the StatusPush's queue.
pub struct EventQueue {
    name: String,
    config: Arc<StatusPushConfig>,
    master: Arc<MasterInfo>,
    wanted: Wanted,
}

impl EventQueue {
    async fn new(ctx: &Context, config: &StatusPushConfig) -> anyhow::Result<EventQueue> {
        Ok(EventQueue {
            name: StatusPush::name_of(config).to_string(),
            config: Arc::new(config.clone()),
            master: crate::status::master_info(&ctx.db, &ctx.config.current()).await?,
            wanted: wanted_events(&config.push),
        })
    }

    async fn push(
        &self,
        ctx: &Context,
        buildid: i64,
        build: &BuildInfo,
        event: &str,
        payload: Value,
    ) -> anyhow::Result<bool> {
        let events = EventCounter::new(&self.name);
        let (id, packet) = events
            .packet(ctx, &self.master, event, payload, self.config.push.filter)
            .await?;
        let written = ctx
            .db
            .add_outbox_message(&NewMessage {
                reporter: self.name.clone(),
                kind: "event".into(),
                dedup_key: format!("build:{buildid}:{event}"),
                summary: format!("{event} {} #{}", build.builder.name, build.number),
                meta: json!({}),
                body: packet.to_string().into_bytes(),
            })
            .await?;
        if written.is_some() {
            events.written(ctx, id).await?;
            bound_queue(ctx, &self.name, &self.config.push).await?;
        }
        Ok(written.is_some())
    }
}

impl Reporter for EventQueue {
    fn wanted(&self) -> &Wanted {
        &self.wanted
    }

    async fn report(&self, ctx: &Context, report: Report) -> anyhow::Result<bool> {
        let Some(event) = BuildEvent::of(&self.master, report) else {
            return Ok(false);
        };
        self.push(ctx, event.buildid, &event.build, event.name, event.payload)
            .await
    }
}

/// Hands each event to `serverPushCb` on the script host.
pub struct CallbackTransport {
    script: ScriptHost,
    config: Arc<StatusPushConfig>,
}

impl CallbackTransport {
    fn new(ctx: &Context, config: &StatusPushConfig) -> CallbackTransport {
        CallbackTransport {
            script: ctx.script.clone(),
            config: Arc::new(config.clone()),
        }
    }
}

impl Transport for CallbackTransport {
    type Session = ();
    const IN_ORDER: bool = true;

    async fn open(&self) -> Result<(), String> {
        Ok(())
    }

    fn gather(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.config.push.buffer_delay)
    }

    async fn send(&self, session: &mut (), message: &OutboxMessage) -> Outcome {
        let mut outcomes = self
            .send_chunk(session, std::slice::from_ref(message))
            .await;
        outcomes.pop().unwrap_or(Outcome::Accepted)
    }

    /// Offers every waiting event to one call; those it popped are done, and the first it
    /// left waits `retryDelay` (the later ones behind it).
    async fn send_chunk(&self, _: &mut (), messages: &[OutboxMessage]) -> Vec<Outcome> {
        let mut events = Vec::with_capacity(messages.len());
        for message in messages {
            match serde_json::from_slice::<Value>(&message.body) {
                Ok(event) => events.push(event),
                Err(error) if events.is_empty() => {
                    return vec![Outcome::Refused(format!("not an event: {error}"))]
                }
                Err(_) => break,
            }
        }
        let chunk = PushChunk::new(events);
        let callback = &self.config.server_push_cb;
        let answer = self
            .script
            .call::<Value>(callback, vec![Arg::StatusPush(chunk.clone())])
            .await;
        let until = now() + self.config.push.retry_delay;
        let mut outcomes = vec![Outcome::Accepted; chunk.popped()];
        outcomes.push(match answer {
            Err(error) => Outcome::Deferred {
                error: format!("serverPushCb ({}) failed: {error}", callback.location()),
                until,
            },
            Ok(_) => Outcome::Deferred {
                error: format!(
                    "serverPushCb ({}) did not pop it; offered again after retryDelay",
                    callback.location()
                ),
                until,
            },
        });
        outcomes.truncate(messages.len());
        outcomes
    }

    async fn close(&self, _: ()) {}
}
