//! Periodic and Nightly: build on a clock, as Buildbot's `Timed` schedulers. The time of
//! the last build is kept (`last_build`), so a restart resumes the schedule: Periodic
//! builds one interval after the last build, Nightly at the first matching time after it
//! (at once when that time passed while the master was down).

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{
    cron, filter, next_update, priority, sleep_until, stamps_with_defaults, store, submit,
    submit_for_changes, ChangeFeed, LastCodebases, Registered, Request, Update,
};
use crate::config::build::{Branch, Schedule, SchedulerConfig, TimedScheduler};
use crate::db::{now, DbResult};
use crate::model::Change;

struct Timed {
    service: Registered,
    config: TimedScheduler,
    /// `object_state` name for `last_build` and `last_only_if_changed`.
    object: String,
    last_actuated: Option<f64>,
    /// No build was ever started: the first one runs even with `onlyIfChanged`.
    first_build: bool,
    last: Option<LastCodebases>,
}

/// Changes matter only to decide whether to build, or to remember revisions.
pub(super) fn watches_changes(config: &TimedScheduler) -> bool {
    config.only_if_changed || config.create_absolute_source_stamps
}

pub(super) async fn start(
    service: Registered,
    config: TimedScheduler,
    updates: mpsc::Receiver<Update>,
) -> DbResult<JoinHandle<()>> {
    let ctx = service.ctx.clone();
    let object = service.state_object(&config.base.name);
    let watches_changes = watches_changes(&config);
    // Without a feed, the changes kept from the last run went as it was claimed.
    let feed = if watches_changes {
        Some(ChangeFeed::subscribe(&ctx).await?)
    } else {
        None
    };
    let last_actuated = ctx
        .db
        .get_state(&object, "last_build")
        .await?
        .and_then(|v| v.as_f64());
    let last = if config.create_absolute_source_stamps {
        Some(LastCodebases::load(&ctx, object.clone()).await?)
    } else {
        None
    };
    let timed = Timed {
        service,
        config,
        object,
        first_build: last_actuated.is_none(),
        last_actuated,
        last,
    };
    Ok(tokio::spawn(timed.run(feed, updates)))
}

impl Timed {
    fn name(&self) -> &str {
        &self.config.base.name
    }

    async fn run(mut self, mut feed: Option<ChangeFeed>, mut updates: mpsc::Receiver<Update>) {
        let stop = self.service.stop.clone();
        let db = self.service.ctx.db.clone();
        let mut actuate_at = self.schedule_next();
        loop {
            let deadline = actuate_at
                .map(|at| Instant::now() + Duration::from_secs_f64((at - now()).max(0.0)));
            tokio::select! {
                _ = stop.cancelled() => break,
                update = next_update(&mut updates) => {
                    let schedule = self.config.schedule.clone();
                    if let Err(error) = self.reconfigure(update.config, &mut feed).await {
                        tracing::warn!(scheduler = self.name(), "cannot apply the new config: {error}");
                    }
                    // The next build time stays unless the timing changed.
                    if self.config.schedule != schedule {
                        actuate_at = self.schedule_next();
                    }
                    let _ = update.applied.send(());
                }
                next = async {
                    match feed.as_mut() {
                        Some(feed) => feed.next(&db, &self.config.base.name).await,
                        None => std::future::pending().await,
                    }
                } => match next {
                    None => break,
                    Some(Ok((change, _))) => {
                        let changeid = change.number;
                        if let Err(error) = self.got_change(change).await {
                            tracing::warn!(scheduler = self.name(), "cannot handle change {changeid}: {error}");
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(scheduler = self.name(), "cannot read the new changes: {error}");
                    }
                },
                _ = sleep_until(deadline) => {
                    if let Some(at) = actuate_at {
                        self.actuate(at).await;
                    }
                    actuate_at = self.schedule_next();
                }
            }
        }
        self.service.stopped(&self.config.base.name).await;
    }

    /// Takes a new config in place; the changes kept for the next build stay, unless the
    /// new config no longer looks at changes.
    async fn reconfigure(
        &mut self,
        config: SchedulerConfig,
        feed: &mut Option<ChangeFeed>,
    ) -> DbResult<()> {
        let (SchedulerConfig::Periodic(config) | SchedulerConfig::Nightly(config)) = config else {
            return Ok(());
        };
        self.config = config;
        let ctx = &self.service.ctx;
        match (watches_changes(&self.config), feed.is_some()) {
            (true, false) => *feed = Some(ChangeFeed::subscribe(ctx).await?),
            (false, true) => {
                *feed = None;
                store::flush(&ctx.db, self.service.id, None).await?;
            }
            _ => {}
        }
        if !self.config.create_absolute_source_stamps {
            self.last = None;
        } else if self.last.is_none() {
            self.last = Some(LastCodebases::load(ctx, self.object.clone()).await?);
        }
        Ok(())
    }

    /// When to build next: never before now.
    fn schedule_next(&self) -> Option<f64> {
        let current = now();
        let next = match &self.config.schedule {
            Schedule::Periodic { seconds } => match self.last_actuated {
                None => current,
                Some(last) => last + *seconds as f64,
            },
            Schedule::Nightly { at, .. } => {
                cron::next_fire_local(at, self.last_actuated.unwrap_or(current))?
            }
        };
        if next < current && self.last_actuated.is_some() {
            tracing::info!(
                scheduler = self.name(),
                "missed the scheduled build time - building immediately"
            );
        }
        Some(next.max(current))
    }

    /// Records the build time, then builds (or decides not to).
    async fn actuate(&mut self, at: f64) {
        self.last_actuated = Some(at);
        let ctx = &self.service.ctx;
        if let Err(error) = ctx
            .db
            .set_state(&self.object, "last_build", &Value::from(at))
            .await
        {
            tracing::warn!(
                scheduler = self.name(),
                "cannot record the build time: {error}"
            );
        }
        if let Err(error) = self.start_build().await {
            tracing::warn!(scheduler = self.name(), "cannot start the build: {error}");
        }
    }

    /// Buildbot's `Timed.gotChange`: keep the change (important or not) for the next
    /// build, when it passes the filter and is on the scheduler's branch.
    async fn got_change(&mut self, change: Change) -> DbResult<()> {
        let intake = filter::Intake {
            scheduler: self.name(),
            change_filter: self.config.change_filter.as_ref(),
            codebases: &self.config.base.codebases,
            file_is_important: self.config.file_is_important.as_ref(),
            only_important: self.config.only_important,
        };
        let Some((change, important)) = self.service.take_change(&intake, change).await else {
            return Ok(());
        };
        let ctx = &self.service.ctx;
        let on_branch = match &self.config.branch {
            None => true,
            Some(Branch::Default) => change.branch.is_none(),
            Some(Branch::Named(name)) => change.branch.as_deref() == Some(name.as_str()),
        };
        if !on_branch {
            return Ok(());
        }
        store::classify(&ctx.db, self.service.id, change.number, important).await?;
        if let Some(last) = &mut self.last {
            last.record(ctx, &change).await?;
        }
        Ok(())
    }

    /// Buildbot's `Timed.startBuild`: with `onlyIfChanged`, no important change since the
    /// last build means no build (except the first, after `onlyIfChanged` was turned on,
    /// or at a `force_at_*` time).
    async fn start_build(&mut self) -> DbResult<()> {
        if !self.service.enabled().await {
            tracing::info!(scheduler = self.name(), "scheduler is disabled: no build");
            return Ok(());
        }
        let ctx = &self.service.ctx;
        let classified = store::classified(&ctx.db, self.service.id).await?;
        let last_only_if_changed = ctx
            .db
            .get_state(&self.object, "last_only_if_changed")
            .await?
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        let only_if_changed = self.config.only_if_changed;
        if last_only_if_changed
            && only_if_changed
            && !classified.iter().any(|c| c.important)
            && !self.first_build
            && !self.forced_now()
        {
            tracing::info!(
                scheduler = self.name(),
                "skipping build - no important changes"
            );
            return Ok(());
        }
        if last_only_if_changed != only_if_changed {
            ctx.db
                .set_state(
                    &self.object,
                    "last_only_if_changed",
                    &Value::from(only_if_changed),
                )
                .await?;
        }
        let base = &self.config.base;
        if classified.is_empty() {
            // Nothing changed (or nobody watches): build what the codebases name.
            let stamps = stamps_with_defaults(base, Vec::new(), self.last.as_ref());
            let priority = priority(ctx, base, &Default::default()).await;
            submit(
                ctx,
                base,
                Request::new(self.config.reason.clone(), stamps, priority),
            )
            .await?;
        } else {
            let changeids: Vec<i64> = classified.iter().map(|c| c.changeid).collect();
            submit_for_changes(
                ctx,
                base,
                &self.config.reason,
                &changeids,
                self.last.as_ref(),
            )
            .await?;
            store::flush(&ctx.db, self.service.id, Some(&changeids)).await?;
        }
        self.first_build = false;
        Ok(())
    }

    /// Whether the build time just reached is one of Nightly's `force_at_*` times.
    fn forced_now(&self) -> bool {
        match (&self.config.schedule, self.last_actuated) {
            (
                Schedule::Nightly {
                    force_at: Some(force_at),
                    ..
                },
                Some(at),
            ) => cron::matches_local(force_at, at),
            _ => false,
        }
    }
}
