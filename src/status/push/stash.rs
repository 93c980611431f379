//! `status.StashStatusPush`: Stash's (Bitbucket Server's) build status for each commit a
//! build built, as Buildbot 0.8's `status_stash` posts it: `INPROGRESS` when the build
//! starts, `SUCCESSFUL` or `FAILED` when it ends, keyed and named by the builder, POSTed to
//! `BASE/rest/build-status/1.0/commits/SHA` with basic auth. Statuses for one (commit,
//! builder) supersede each other while they wait.

use std::sync::Arc;

use serde_json::json;

use super::transport::{request_meta, Auth, HttpTransport};
use super::{enqueue_status, Push, PushReporter, Status};
use crate::config::status::StashStatusPushConfig;
use crate::model::{BuildInfo, BuildResult, MasterInfo};
use crate::runtime::Context;
use crate::status::generator::{Finished, Report, Reporter, Wanted};

/// A running StashStatusPush.
pub type StashStatusPush = Push<StashReporter>;

pub struct StashReporter {
    name: String,
    config: Arc<StashStatusPushConfig>,
    master: Arc<MasterInfo>,
    wanted: Wanted,
}

impl PushReporter for StashReporter {
    type Config = StashStatusPushConfig;

    fn name_of(config: &StashStatusPushConfig) -> &str {
        config.name.as_deref().unwrap_or("StashStatusPush")
    }

    fn transport(config: &StashStatusPushConfig) -> Result<HttpTransport, String> {
        let auth = Auth::Basic {
            user: config.user.clone(),
            password: config.password.clone(),
        };
        HttpTransport::new(&config.base_url, auth, &[], false)
    }

    async fn new(ctx: &Context, config: &StashStatusPushConfig) -> anyhow::Result<StashReporter> {
        Ok(StashReporter {
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

    fn config(&self) -> &StashStatusPushConfig {
        &self.config
    }
}

impl Reporter for StashReporter {
    fn wanted(&self) -> &Wanted {
        &self.wanted
    }

    async fn report(&self, ctx: &Context, report: Report) -> anyhow::Result<bool> {
        match report {
            Report::Started { buildid, build } => {
                self.status(ctx, buildid, &build, "INPROGRESS", "started")
                    .await
            }
            Report::Finished(Finished {
                buildid,
                build,
                results,
                ..
            }) => {
                let state = match results {
                    BuildResult::Success => "SUCCESSFUL",
                    _ => "FAILED",
                };
                self.status(ctx, buildid, &build, state, "finished").await
            }
            Report::BuildsetComplete { .. } => Ok(false),
        }
    }
}

impl StashReporter {
    /// One status per commit of the build (its sourcestamps' revisions).
    async fn status(
        &self,
        ctx: &Context,
        buildid: i64,
        build: &BuildInfo,
        state: &str,
        event: &str,
    ) -> anyhow::Result<bool> {
        let builder = &build.builder.name;
        let description = match event {
            "started" => "Build started.",
            _ => "Build done.",
        };
        let mut written = false;
        let revisions = build
            .sourcestamps
            .iter()
            .filter_map(|ss| ss.revision.as_deref())
            .filter(|revision| !revision.is_empty());
        for sha in revisions {
            let body = json!({
                "state": state,
                "key": builder,
                "name": builder,
                "url": self.master.build_url(build.builder.id, build.number),
                "description": description,
            });
            let url = format!(
                "{}rest/build-status/1.0/commits/{sha}",
                self.config.base_url
            );
            let status = Status {
                group: &format!("{sha}/{builder}"),
                event: &format!("build:{buildid}:{event}"),
                queued_request: None,
                summary: format!("{state} {sha}: {builder} #{}", build.number),
                meta: request_meta(&url, "application/json"),
                body: body.to_string().into_bytes(),
            };
            written |= enqueue_status(ctx, &self.name, status).await?;
        }
        if !written && !build.sourcestamps.iter().any(|ss| ss.revision.is_some()) {
            tracing::info!(
                "{}: build {builder} #{} {event}: no status sent, it has no revision",
                self.name,
                build.number
            );
        }
        Ok(written)
    }
}
