//! `status.GitHubStatus`: a commit status on GitHub for each build, `pending` when it
//! starts and `success`, `failure` or `error` when it ends, POSTed to
//! `BASE/repos/OWNER/NAME/statuses/SHA` with the token (`Authorization: token ...`).
//!
//! A build request gets `pending` as soon as it is queued, and `error` if it is cancelled
//! before a build of it started (`requests`).
//!
//! Owner, name, sha, descriptions and context are renderables of the build; when owner,
//! name or sha renders empty the status is skipped with a log line, as Buildbot does.
//! Statuses for one (repository, sha, context) supersede each other while they wait.

use std::sync::Arc;

use serde_json::json;

use super::requests::{RequestEvent, RequestInfo};
use super::transport::{request_meta, Auth, HttpTransport};
use super::{enqueue_status, render_data, render_text, Push, PushReporter, Status};
use crate::config::status::{github_repository, GitHubStatusConfig};
use crate::model::{BuildResult, MasterInfo};
use crate::runtime::Context;
use crate::script::{RenderData, Renderable};
use crate::status::generator::{Finished, Report, Reporter, Wanted};

/// A running GitHubStatus.
pub type GitHubStatus = Push<GitHubReporter>;

/// Turns build starts and ends into commit statuses in the outbox.
pub struct GitHubReporter {
    name: String,
    config: Arc<GitHubStatusConfig>,
    master: Arc<MasterInfo>,
    wanted: Wanted,
}

impl PushReporter for GitHubReporter {
    type Config = GitHubStatusConfig;

    fn name_of(config: &GitHubStatusConfig) -> &str {
        config.name.as_deref().unwrap_or("GitHubStatus")
    }

    fn transport(config: &GitHubStatusConfig) -> Result<HttpTransport, String> {
        let headers = [(
            "Accept".to_string(),
            "application/vnd.github+json".to_string(),
        )];
        HttpTransport::new(
            &config.base_url,
            Auth::Token(config.token.clone()),
            &headers,
            config.debug,
        )
    }

    async fn new(ctx: &Context, config: &GitHubStatusConfig) -> anyhow::Result<GitHubReporter> {
        Ok(GitHubReporter {
            name: Self::name_of(config).to_string(),
            config: Arc::new(config.clone()),
            master: crate::status::master_info(&ctx.db, &ctx.config.current()).await?,
            wanted: Wanted {
                started: true,
                finished: true,
                ..Wanted::default()
            },
        })
    }

    fn config(&self) -> &GitHubStatusConfig {
        &self.config
    }

    const FOLLOWS_REQUESTS: bool = true;

    /// `pending` for a queued request, `error` for one cancelled before it was built; the
    /// link is the request's page.
    async fn request(
        &self,
        ctx: &Context,
        request: RequestInfo,
        what: RequestEvent,
    ) -> anyhow::Result<bool> {
        let (state, description, event) = match what {
            RequestEvent::Queued => ("pending", "Build queued.", "queued"),
            RequestEvent::Cancelled => ("error", "Build request cancelled.", "cancelled"),
        };
        let about = About {
            target_url: format!("{}#buildrequests/{}", self.master.root_url(), request.brid),
            what: format!("{} request {}", request.builder, request.brid),
            key: format!("request:{}:{event}", request.brid),
            queued_request: (what == RequestEvent::Queued).then_some(request.brid),
            data: request.data,
        };
        self.status(ctx, about, state, &Renderable::string(description))
            .await
    }
}

impl Reporter for GitHubReporter {
    fn wanted(&self) -> &Wanted {
        &self.wanted
    }

    async fn report(&self, ctx: &Context, report: Report) -> anyhow::Result<bool> {
        let (buildid, build, state, event) = match report {
            Report::Started { buildid, build } => (buildid, build, "pending", "started"),
            Report::Finished(Finished {
                buildid,
                build,
                results,
                ..
            }) => (buildid, build, state_of(results), "finished"),
            Report::BuildsetComplete { .. } => return Ok(false),
        };
        let description = match event {
            "started" => &self.config.start_description,
            _ => &self.config.end_description,
        };
        let about = About {
            data: render_data(&build),
            target_url: self.master.build_url(build.builder.id, build.number),
            what: format!("{} #{}", build.builder.name, build.number),
            key: format!("build:{buildid}:{event}"),
            queued_request: None,
        };
        self.status(ctx, about, state, description).await
    }
}

/// What a status is about: a build, or a request not built (yet).
struct About {
    data: RenderData,
    target_url: String,
    /// For log lines and listings: `b #3`, `b request 7`.
    what: String,
    /// The event, unique per status (`build:17:finished`).
    key: String,
    /// The request, for a status about it being queued: written only while it is.
    queued_request: Option<i64>,
}

/// GitHub's state for a build's result.
pub fn state_of(results: BuildResult) -> &'static str {
    match results {
        BuildResult::Success | BuildResult::Warnings | BuildResult::Skipped => "success",
        BuildResult::Failure => "failure",
        BuildResult::Retry => "pending",
        BuildResult::Exception | BuildResult::Cancelled => "error",
    }
}

impl GitHubReporter {
    async fn status(
        &self,
        ctx: &Context,
        about: About,
        state: &str,
        description: &Renderable,
    ) -> anyhow::Result<bool> {
        let config = &self.config;
        let data = &about.data;
        // Without repoOwner and repoName, the sourcestamp's repository says (Buildbot 4).
        let (found_owner, found_repo) = data
            .sourcestamps
            .first()
            .and_then(|ss| github_repository(&ss.repository))
            .unwrap_or_default();
        let rendered = async {
            Ok::<_, String>([
                match &config.repo_owner {
                    Some(owner) => render_text(ctx, "repoOwner", owner, data).await?,
                    None => found_owner.to_string(),
                },
                match &config.repo_name {
                    Some(name) => render_text(ctx, "repoName", name, data).await?,
                    None => found_repo.to_string(),
                },
                render_text(ctx, "sha", &config.sha, data).await?,
                render_text(ctx, "context", &config.context, data).await?,
                render_text(ctx, "description", description, data).await?,
            ])
        };
        let [owner, repo, sha, context, description] =
            rendered.await.map_err(anyhow::Error::msg)?;
        let what = &about.what;
        if owner.is_empty() || repo.is_empty() || sha.is_empty() {
            tracing::info!(
                "{}: {what}: no {state} status sent, repoOwner '{owner}', repoName '{repo}' \
                 or sha '{sha}' is empty",
                self.name,
            );
            return Ok(false);
        }
        let url = format!(
            "{}/repos/{owner}/{repo}/statuses/{sha}",
            config.base_url.trim_end_matches('/')
        );
        let body = json!({
            "state": state,
            "target_url": about.target_url,
            "description": description,
            "context": context,
        });
        let status = Status {
            group: &format!("{owner}/{repo}/{sha}/{context}"),
            event: &about.key,
            queued_request: about.queued_request,
            summary: format!("{state} {owner}/{repo}@{sha} {context}: {what}"),
            meta: request_meta(&url, "application/json"),
            body: body.to_string().into_bytes(),
        };
        enqueue_status(ctx, &self.name, status).await
    }
}
