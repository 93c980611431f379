//! Dependent: builds the sourcestamps of each buildset of its upstream scheduler that
//! completes with SUCCESS or WARNINGS, as Buildbot's `Dependent`. The upstream buildsets
//! it waits for are kept in its state (`upstream_bsids`), so one that completes while the
//! master is down is still followed at the next start.

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{next_event, next_update, priority, store, submit, Registered, Request, Stamp, Update};
use crate::bus::{Subscription, Topics};
use crate::config::build::{DependentScheduler, SchedulerConfig};
use crate::db::DbResult;
use crate::model::BuildResult;

struct Dependent {
    service: Registered,
    config: DependentScheduler,
    object: String,
}

const KEY: &str = "upstream_bsids";

pub(super) async fn start(
    service: Registered,
    config: DependentScheduler,
    updates: mpsc::Receiver<Update>,
) -> DbResult<JoinHandle<()>> {
    let events = service
        .ctx
        .bus
        .subscribe_to(Topics::Only(&["buildsets/*/new", "buildsets/*/complete"]));
    let object = service.state_object(&config.base.name);
    let dependent = Dependent {
        service,
        config,
        object,
    };
    // Upstream buildsets that completed while this scheduler was not running.
    dependent.check_completed(None).await?;
    Ok(tokio::spawn(dependent.run(events, updates)))
}

impl Dependent {
    fn name(&self) -> &str {
        &self.config.base.name
    }

    async fn run(mut self, mut events: Subscription, mut updates: mpsc::Receiver<Update>) {
        let stop = self.service.stop.clone();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                update = next_update(&mut updates) => {
                    // The watched upstream buildsets stay in the scheduler's state.
                    if let SchedulerConfig::Dependent(config) = update.config {
                        self.config = config;
                    }
                    let _ = update.applied.send(());
                }
                event = next_event(&mut events, &self.config.base.name) => {
                    let Some(event) = event else { break };
                    let result = if let Some(bsid) = event.id_of("buildsets", "new") {
                        self.buildset_new(bsid).await
                    } else if let Some(bsid) = event.id_of("buildsets", "complete") {
                        self.check_completed(Some(bsid)).await
                    } else {
                        Ok(())
                    };
                    if let Err(error) = result {
                        tracing::warn!(scheduler = self.name(), "cannot follow upstream buildsets: {error}");
                    }
                }
            }
        }
        self.service.stopped(&self.config.base.name).await;
    }

    async fn watched(&self) -> DbResult<Vec<i64>> {
        let value = self.service.ctx.db.get_state(&self.object, KEY).await?;
        Ok(value
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default())
    }

    async fn set_watched(&self, bsids: &[i64]) -> DbResult<()> {
        self.service
            .ctx
            .db
            .set_state(&self.object, KEY, &Value::from(bsids.to_vec()))
            .await
    }

    /// Watches a new buildset when its scheduler is the upstream one.
    async fn buildset_new(&self, bsid: i64) -> DbResult<()> {
        let Some(buildset) = store::buildset_state(&self.service.ctx.db, bsid).await? else {
            return Ok(());
        };
        if buildset.scheduler.as_deref() != Some(self.config.upstream.as_str()) {
            return Ok(());
        }
        let mut watched = self.watched().await?;
        if !watched.contains(&bsid) {
            watched.push(bsid);
            self.set_watched(&watched).await?;
        }
        Ok(())
    }

    /// Builds downstream of every watched buildset that is complete and succeeded, and
    /// stops watching the complete ones, whatever their results.
    async fn check_completed(&self, just_completed: Option<i64>) -> DbResult<()> {
        let watched = self.watched().await?;
        if watched.is_empty() {
            return Ok(());
        }
        let ctx = &self.service.ctx;
        let mut remaining = Vec::new();
        for bsid in watched {
            let Some(buildset) = store::buildset_state(&ctx.db, bsid).await? else {
                continue;
            };
            if !buildset.complete && Some(bsid) != just_completed {
                remaining.push(bsid);
                continue;
            }
            let succeeded = matches!(
                buildset.results.and_then(BuildResult::from_code),
                Some(BuildResult::Success | BuildResult::Warnings)
            );
            if succeeded && self.service.enabled().await {
                let stamps = buildset
                    .sourcestamp_ids
                    .into_iter()
                    .map(Stamp::Existing)
                    .collect();
                let base = &self.config.base;
                let priority = priority(ctx, base, &Default::default()).await;
                submit(
                    ctx,
                    base,
                    Request::new("downstream".into(), stamps, priority),
                )
                .await?;
            }
        }
        self.set_watched(&remaining).await
    }
}
