//! Status targets that push over HTTP: `GitHubStatus` (GitHub's commit status API),
//! `StashStatusPush` (Bitbucket Server's build status API) and `HttpStatusPush` (Buildbot
//! 0.8's JSON events to a URL of the user's); and `StatusPush`, which hands the same events
//! to a Lua callback (`lua_push`). Each renders a build's start and end into
//! outbox messages that are one HTTP request each; [`transport::HttpTransport`] sends them
//! in order, retrying what the peer did not take.
//!
//! A commit status says where one thing stands now, so when a newer status about the same
//! thing (commit and context, or commit and builder) is written, older ones still waiting
//! are superseded rather than sent: a peer that was down learns the last state, once.

pub mod github;
pub mod http_push;
pub mod lua_push;
pub mod requests;
pub mod stash;
pub mod transport;

use std::fmt::Debug;
use std::future::Future;

use serde_json::Value;

use self::requests::{Follower, RequestEvent, RequestInfo};
use self::transport::HttpTransport;
use super::generator::Reporter;
use super::Pipeline;
use crate::config::same_options;
use crate::db::NewMessage;
use crate::model::BuildInfo;
use crate::runtime::{Context, Reconfigured, Service};
use crate::script::{RenderData, Renderable};

pub use self::github::GitHubStatus;
pub use self::http_push::HttpStatusPush;
pub use self::lua_push::StatusPush;
pub use self::stash::StashStatusPush;

/// One kind of push target: its reporter, made from its config, and its transport.
pub trait PushReporter: Reporter + Sized {
    type Config: Debug + Send + Sync + 'static;

    fn name_of(config: &Self::Config) -> &str;

    fn transport(config: &Self::Config) -> Result<HttpTransport, String>;

    fn new(
        ctx: &Context,
        config: &Self::Config,
    ) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// The config it was made from, to tell whether a reconfig changed it.
    fn config(&self) -> &Self::Config;

    /// Whether it reports build requests as they are queued and cancelled
    /// ([`PushReporter::request`]).
    const FOLLOWS_REQUESTS: bool = false;

    /// Writes the status of a request that was queued or cancelled with no build of its
    /// own; `true` when one was written.
    fn request(
        &self,
        ctx: &Context,
        request: RequestInfo,
        what: RequestEvent,
    ) -> impl Future<Output = anyhow::Result<bool>> + Send {
        let _ = (ctx, request, what);
        async { Ok(false) }
    }
}

/// A running push target: the shared pipeline with its reporter and an HTTP transport,
/// and the task that follows build requests for those that report them.
pub struct Push<R> {
    pipeline: Pipeline<R, HttpTransport>,
    requests: Option<Follower>,
}

impl<R: PushReporter> Service for Push<R> {
    type Config = R::Config;

    fn name_of(config: &R::Config) -> &str {
        R::name_of(config)
    }

    async fn start(ctx: &Context, config: &R::Config) -> anyhow::Result<Push<R>> {
        let transport = R::transport(config).map_err(anyhow::Error::msg)?;
        let reporter = R::new(ctx, config).await?;
        let name = R::name_of(config);
        let pipeline = Pipeline::start(ctx, name, reporter, transport);
        let requests = match R::FOLLOWS_REQUESTS {
            true => Some(
                Follower::start(
                    ctx.clone(),
                    name.to_string(),
                    pipeline.subscribe(),
                    pipeline.waker(),
                )
                .await,
            ),
            false => None,
        };
        Ok(Push { pipeline, requests })
    }

    /// The new options apply to the next build and the next delivery; queued statuses
    /// stay queued.
    async fn reconfigure(
        &mut self,
        ctx: &Context,
        config: &R::Config,
    ) -> anyhow::Result<Reconfigured> {
        let transport = R::transport(config).map_err(anyhow::Error::msg)?;
        let unchanged = same_options(self.pipeline.current().config(), config);
        self.pipeline
            .replace(ctx, R::new(ctx, config).await?, transport);
        Ok(match unchanged {
            true => Reconfigured::Unchanged,
            false => Reconfigured::Changed,
        })
    }

    async fn stop(self) {
        if let Some(requests) = self.requests {
            requests.stop().await;
        }
        self.pipeline.stop().await;
    }
}

/// What a build's renderables see: its properties and sourcestamps.
pub fn render_data(build: &BuildInfo) -> RenderData {
    RenderData {
        properties: build.properties.clone(),
        sourcestamps: build.sourcestamps.clone(),
        ..RenderData::default()
    }
}

/// `renderable` as text for a build or request (Interpolate, Property or a Lua renderer,
/// through the script host); a failure names the option and is the caller's to log.
async fn render_text(
    ctx: &Context,
    option: &str,
    renderable: &Renderable,
    data: &RenderData,
) -> Result<String, String> {
    match ctx.script.render(renderable, data.clone()).await {
        Ok(Value::String(text)) => Ok(text),
        Ok(Value::Null) | Ok(Value::Bool(false)) => Ok(String::new()),
        Ok(other) => Ok(other.to_string()),
        Err(error) => Err(format!("option '{option}' failed to render: {error}")),
    }
}

/// A status for the outbox.
struct Status<'a> {
    /// What it is about, such as `owner/repo/sha/context`: a newer status supersedes the
    /// waiting ones of its group.
    group: &'a str,
    /// The event that made it (`build:17:finished`).
    event: &'a str,
    /// The request, for a status saying it is queued: written only while it is, as once
    /// claimed its build's statuses say more, and a late one would supersede them.
    queued_request: Option<i64>,
    summary: String,
    meta: Value,
    body: Vec<u8>,
}

/// Writes a status to the outbox and supersedes the older ones of its group that are
/// still waiting. Its key is `GROUP#EVENT`: the event keeps a status seen twice from being
/// written twice. `true` when it was written.
async fn enqueue_status(ctx: &Context, reporter: &str, status: Status<'_>) -> anyhow::Result<bool> {
    let group = format!("{}#", status.group);
    let message = NewMessage {
        reporter: reporter.to_string(),
        kind: "http".into(),
        dedup_key: format!("{group}{}", status.event),
        summary: status.summary,
        meta: status.meta,
        body: status.body,
    };
    let written = match status.queued_request {
        Some(brid) => {
            ctx.db
                .add_outbox_message_while_queued(&message, brid)
                .await?
        }
        None => ctx.db.add_outbox_message(&message).await?,
    };
    let Some(id) = written else {
        return Ok(false);
    };
    let superseded = ctx
        .db
        .supersede_outbox_messages(reporter, &group, id)
        .await?;
    if superseded > 0 {
        tracing::info!(
            "{reporter}: {superseded} waiting status(es) for {group} superseded by a newer one"
        );
    }
    Ok(true)
}
