//! SingleBranchScheduler and AnyBranchScheduler: build when changes arrive, at once or
//! once the tree has been stable for `treeStableTimer` seconds (per branch for
//! AnyBranchScheduler), as Buildbot's `BaseBasicScheduler`.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{
    filter, next_update, sleep_until, store, submit_for_changes, ChangeFeed, LastCodebases,
    Registered, Update,
};
use crate::config::build::{BranchScheduler, SchedulerConfig};
use crate::db::{DbError, DbResult};
use crate::model::Change;

/// Which tree-stable timer a change restarts: AnyBranchScheduler keeps one per codebase,
/// project, repository and branch; SingleBranchScheduler one in all.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct TimerKey {
    codebase: String,
    project: String,
    repository: String,
    branch: Option<String>,
}

struct Basic {
    service: Registered,
    config: BranchScheduler,
    per_branch: bool,
    /// When each running tree-stable timer fires.
    timers: BTreeMap<TimerKey, Instant>,
    last: Option<LastCodebases>,
}

pub(super) async fn start(
    service: Registered,
    config: BranchScheduler,
    per_branch: bool,
    updates: mpsc::Receiver<Update>,
) -> DbResult<JoinHandle<()>> {
    // Listen before reloading, so that no change falls between the two.
    let feed = ChangeFeed::subscribe(&service.ctx).await?;
    let last = if config.create_absolute_source_stamps {
        let object = service.state_object(&config.base.name);
        Some(LastCodebases::load(&service.ctx, object).await?)
    } else {
        None
    };
    let mut scheduler = Basic {
        service,
        config,
        per_branch,
        timers: BTreeMap::new(),
        last,
    };
    // Without a timer, the changes classified under an earlier config that had one went as
    // the scheduler was claimed.
    if scheduler.config.tree_stable_timer.is_some() {
        scheduler.restart_timers().await?;
    }
    Ok(tokio::spawn(scheduler.run(feed, updates)))
}

impl Basic {
    fn name(&self) -> &str {
        &self.config.base.name
    }

    async fn run(mut self, mut feed: ChangeFeed, mut updates: mpsc::Receiver<Update>) {
        let stop = self.service.stop.clone();
        let db = self.service.ctx.db.clone();
        loop {
            let next_timer = self.timers.values().min().copied();
            tokio::select! {
                _ = stop.cancelled() => break,
                update = next_update(&mut updates) => {
                    if let Err(error) = self.reconfigure(update.config).await {
                        tracing::warn!(scheduler = self.name(), "cannot reload the last codebases: {error}");
                    }
                    let _ = update.applied.send(());
                }
                next = feed.next(&db, &self.config.base.name) => match next {
                    None => break,
                    Some(Ok((change, _))) => {
                        let changeid = change.number;
                        if let Err(error) = self.got_change_event(change).await {
                            tracing::warn!(scheduler = self.name(), "cannot handle change {changeid}: {error}");
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(scheduler = self.name(), "cannot read the new changes: {error}");
                    }
                },
                _ = sleep_until(next_timer) => {
                    if let Err(error) = self.fire_due_timers().await {
                        tracing::warn!(scheduler = self.name(), "cannot build the stable changes: {error}");
                    }
                }
            }
        }
        self.service.stopped(&self.config.base.name).await;
    }

    /// Takes a new config in place, as Buildbot's `reconfigService`: the running
    /// tree-stable timers and the classified changes stay, and build with the new options
    /// when the timers fire.
    async fn reconfigure(&mut self, config: SchedulerConfig) -> DbResult<()> {
        let (SchedulerConfig::SingleBranch(config) | SchedulerConfig::AnyBranch(config)) = config
        else {
            return Ok(());
        };
        self.config = config;
        if !self.config.create_absolute_source_stamps {
            self.last = None;
        } else if self.last.is_none() {
            let object = self.service.state_object(&self.config.base.name);
            self.last = Some(LastCodebases::load(&self.service.ctx, object).await?);
        }
        Ok(())
    }

    /// Buildbot's `_changeCallback`: filter the change, then classify it.
    async fn got_change_event(&mut self, change: Change) -> DbResult<()> {
        let intake = filter::Intake {
            scheduler: self.name(),
            change_filter: self.config.change_filter.as_ref(),
            codebases: &self.config.base.codebases,
            file_is_important: self.config.file_is_important.as_ref(),
            only_important: self.config.only_important,
        };
        match self.service.take_change(&intake, change).await {
            Some((change, important)) => self.got_change(&change, important).await,
            None => Ok(()),
        }
    }

    /// Buildbot's `gotChange`: build at once, or (re)start the change's timer and keep the
    /// change until it fires.
    async fn got_change(&mut self, change: &Change, important: bool) -> DbResult<()> {
        let ctx = &self.service.ctx;
        if let Some(last) = &mut self.last {
            last.record(ctx, change).await?;
        }
        let Some(stable) = self.config.tree_stable_timer else {
            if important {
                submit_for_changes(
                    ctx,
                    &self.config.base,
                    &self.config.reason,
                    &[change.number],
                    self.last.as_ref(),
                )
                .await?;
            }
            return Ok(());
        };
        // An important change starts the timer; any change restarts a running one.
        let key = self.timer_key(change);
        if important || self.timers.contains_key(&key) {
            self.timers
                .insert(key, Instant::now() + Duration::from_secs(stable));
        }
        store::classify(&ctx.db, self.service.id, change.number, important).await
    }

    fn timer_key(&self, change: &Change) -> TimerKey {
        if !self.per_branch {
            return TimerKey::default();
        }
        TimerKey {
            codebase: change.codebase.clone(),
            project: change.project.clone(),
            repository: change.repository.clone(),
            branch: change.branch.clone(),
        }
    }

    /// At start, the changes an earlier run classified but did not build restart their
    /// timers, as Buildbot's `scanExistingClassifiedChanges`.
    async fn restart_timers(&mut self) -> DbResult<()> {
        let classified = store::classified(&self.service.ctx.db, self.service.id).await?;
        for entry in classified {
            match self.service.ctx.db.change(entry.changeid).await {
                Ok((change, _)) => self.got_change(&change, entry.important).await?,
                Err(DbError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        if !self.timers.is_empty() {
            tracing::info!(
                scheduler = self.name(),
                "restarted the tree-stable timer for changes kept from the last run"
            );
        }
        Ok(())
    }

    async fn fire_due_timers(&mut self) -> DbResult<()> {
        let now = Instant::now();
        let due: Vec<TimerKey> = self
            .timers
            .iter()
            .filter(|(_, &at)| at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in due {
            self.timers.remove(&key);
            self.stable_timer_fired(&key).await?;
        }
        Ok(())
    }

    /// Builds every change classified under `key`, then forgets them. Unlike Buildbot,
    /// which forgets every older change of the scheduler, other branches' changes stay
    /// for their own timers.
    async fn stable_timer_fired(&mut self, key: &TimerKey) -> DbResult<()> {
        if !self.service.enabled().await {
            return Ok(());
        }
        let ctx = &self.service.ctx;
        let mut changeids = Vec::new();
        for entry in store::classified(&ctx.db, self.service.id).await? {
            if self.per_branch {
                match ctx.db.change(entry.changeid).await {
                    Ok((change, _)) if self.timer_key(&change) == *key => {}
                    Ok(_) | Err(DbError::NotFound(_)) => continue,
                    Err(error) => return Err(error),
                }
            }
            changeids.push(entry.changeid);
        }
        if changeids.is_empty() {
            return Ok(());
        }
        submit_for_changes(
            ctx,
            &self.config.base,
            &self.config.reason,
            &changeids,
            self.last.as_ref(),
        )
        .await?;
        store::flush(&ctx.db, self.service.id, Some(&changeids)).await
    }
}
