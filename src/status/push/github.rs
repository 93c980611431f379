//! `status.GitHubStatus`: a commit status on GitHub for each build, `pending` when it
//! starts and `success`, `failure` or `error` when it ends, POSTed to
//! `BASE/repos/OWNER/NAME/statuses/SHA` with the token (`Authorization: token ...`).
//!
//! Owner, name, sha, descriptions and context are renderables of the build; when owner,
//! name or sha renders empty the status is skipped with a log line, as Buildbot does.
//! Statuses for one (repository, sha, context) supersede each other while they wait.

use std::sync::Arc;

use serde_json::json;

use super::transport::{request_meta, Auth, HttpTransport};
use super::{enqueue_status, render_text, Push, PushReporter};
use crate::config::status::GitHubStatusConfig;
use crate::model::{BuildInfo, BuildResult, MasterInfo};
use crate::runtime::Context;
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
            false,
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
}

impl Reporter for GitHubReporter {
    fn wanted(&self) -> &Wanted {
        &self.wanted
    }

    async fn report(&self, ctx: &Context, report: Report) -> anyhow::Result<bool> {
        match report {
            Report::Started { buildid, build } => {
                self.status(ctx, buildid, &build, "pending", "started")
                    .await
            }
            Report::Finished(Finished {
                buildid,
                build,
                results,
                ..
            }) => {
                self.status(ctx, buildid, &build, state_of(results), "finished")
                    .await
            }
            Report::BuildsetComplete { .. } => Ok(false),
        }
    }
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
        buildid: i64,
        build: &BuildInfo,
        state: &str,
        event: &str,
    ) -> anyhow::Result<bool> {
        let config = &self.config;
        let description = match event {
            "started" => &config.start_description,
            _ => &config.end_description,
        };
        let rendered = async {
            Ok::<_, String>([
                render_text(ctx, "repoOwner", &config.repo_owner, build).await?,
                render_text(ctx, "repoName", &config.repo_name, build).await?,
                render_text(ctx, "sha", &config.sha, build).await?,
                render_text(ctx, "context", &config.context, build).await?,
                render_text(ctx, "description", description, build).await?,
            ])
        };
        let [owner, repo, sha, context, description] =
            rendered.await.map_err(anyhow::Error::msg)?;
        let builder = &build.builder.name;
        if owner.is_empty() || repo.is_empty() || sha.is_empty() {
            tracing::info!(
                "{}: build {builder} #{} {event}: no status sent, repoOwner '{owner}', \
                 repoName '{repo}' or sha '{sha}' is empty",
                self.name,
                build.number
            );
            return Ok(false);
        }
        let url = format!(
            "{}/repos/{owner}/{repo}/statuses/{sha}",
            config.base_url.trim_end_matches('/')
        );
        let body = json!({
            "state": state,
            "target_url": self.master.build_url(build.builder.id, build.number),
            "description": description,
            "context": context,
        });
        enqueue_status(
            ctx,
            &self.name,
            &format!("{owner}/{repo}/{sha}/{context}"),
            &format!("build:{buildid}:{event}"),
            format!(
                "{state} {owner}/{repo}@{sha} {context}: {builder} #{}",
                build.number
            ),
            request_meta(&url, "application/json"),
            body.to_string().into_bytes(),
        )
        .await
    }
}
