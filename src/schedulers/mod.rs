//! The schedulers: they turn changes, clocks, force requests, Trigger steps and finished
//! upstream buildsets into buildsets, as Buildbot's `buildbot.schedulers`.
//!
//! Each configured scheduler is one task ([`RunningScheduler`]) reading the bus until it is
//! stopped; a reconfig hands the task its new config, which it uses from then on. What it decides is written to storage first (`scheduler_changes` for changes
//! waiting on `treeStableTimer`, `object_state` for the times of timed schedulers and a
//! Dependent's upstream buildsets), so a restart picks up where it stopped. Every buildset
//! goes through [`submit`], which stores it and announces it and its requests on the bus
//! (`buildsets/N/new`, `buildrequests/N/new`), where the builders pick the requests up.

mod basic;
pub mod cron;
mod dependent;
mod filter;
mod force;
mod store;
mod timed;
mod triggerable;

use std::collections::{BTreeMap, VecDeque};
use std::future::pending;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bus::{Event, Subscription, Topics};
use crate::config::build::{CodebaseDefaults, SchedulerBase, SchedulerConfig, ValueOrFunction};
use crate::config::same_options;
use crate::data::{self, Resource};
use crate::db::{BuildsetSpec, Db, DbResult, SourceStampSpec};
use crate::model::{Change, Properties};
use crate::runtime::{Context, Reconfigured, Service, Submitted};
use crate::script::Arg;

pub use force::{force, force_named};
pub use triggerable::{trigger, TriggerRequest};

/// A running scheduler: one task that reads the bus (and the clock), and takes a new
/// config of the same kind in place. Force and Triggerable schedulers act only when asked
/// ([`force`], [`trigger`], which read the current config); their task only holds their
/// registration.
pub struct RunningScheduler {
    config: SchedulerConfig,
    stop: CancellationToken,
    updates: mpsc::Sender<Update>,
    task: JoinHandle<()>,
}

/// A new config for a scheduler task, acknowledged once the task uses it.
struct Update {
    config: SchedulerConfig,
    applied: oneshot::Sender<()>,
}

impl RunningScheduler {
    /// What a start claims of `config` with the master ([`Db::start_master`]): its name,
    /// and whether it keeps no change classified by an earlier run (no tree-stable timer,
    /// or a timed scheduler that watches no change), whose rows the claim deletes.
    ///
    /// [`Db::start_master`]: crate::db::Db::start_master
    pub fn claim_of(config: &SchedulerConfig) -> (&str, bool) {
        let forgets_classified_changes = match config {
            SchedulerConfig::SingleBranch(s) | SchedulerConfig::AnyBranch(s) => {
                s.tree_stable_timer.is_none()
            }
            SchedulerConfig::Periodic(s) | SchedulerConfig::Nightly(s) => {
                !timed::watches_changes(s)
            }
            SchedulerConfig::Dependent(_)
            | SchedulerConfig::Force(_)
            | SchedulerConfig::Triggerable(_) => false,
        };
        (config.name(), forgets_classified_changes)
    }

    /// Starts the scheduler `config` describes, already claimed as `id`: reloads what it
    /// kept from an earlier run and starts its task. When this returns, the scheduler
    /// already listens to the bus.
    pub async fn start_claimed(
        ctx: &Context,
        config: &SchedulerConfig,
        id: i64,
    ) -> anyhow::Result<RunningScheduler> {
        let name = config.name().to_string();
        let stop = ctx.shutdown.child_token();
        let registered = Registered {
            ctx: ctx.clone(),
            id,
            kind: config.kind(),
            stop: stop.clone(),
        };
        let (updates, received) = mpsc::channel(1);
        let task = match config {
            SchedulerConfig::SingleBranch(s) => {
                basic::start(registered, s.clone(), false, received).await
            }
            SchedulerConfig::AnyBranch(s) => {
                basic::start(registered, s.clone(), true, received).await
            }
            SchedulerConfig::Periodic(s) | SchedulerConfig::Nightly(s) => {
                timed::start(registered, s.clone(), received).await
            }
            SchedulerConfig::Dependent(s) => {
                dependent::start(registered, s.clone(), received).await
            }
            SchedulerConfig::Force(_) | SchedulerConfig::Triggerable(_) => {
                Ok(tokio::spawn(registered.hold(name, received)))
            }
        }
        .with_context(|| format!("cannot start scheduler '{}'", config.name()))?;
        tracing::info!(
            scheduler = config.name(),
            kind = config.kind(),
            "scheduler started"
        );
        Ok(RunningScheduler {
            config: config.clone(),
            stop,
            updates,
            task,
        })
    }
}

impl Service for RunningScheduler {
    type Config = SchedulerConfig;

    fn name_of(config: &SchedulerConfig) -> &str {
        config.name()
    }

    /// Registers the scheduler, then starts it ([`RunningScheduler::start_claimed`]).
    async fn start(ctx: &Context, config: &SchedulerConfig) -> anyhow::Result<RunningScheduler> {
        let (name, forgets_classified_changes) = RunningScheduler::claim_of(config);
        let id = ctx
            .db
            .claim_scheduler(name, ctx.masterid.get(), forgets_classified_changes)
            .await
            .with_context(|| format!("cannot register scheduler '{name}'"))?;
        RunningScheduler::start_claimed(ctx, config, id).await
    }

    /// Hands the task the new config and waits until it uses it: every option applies in
    /// place from the next change, timer or buildset, keeping pending tree-stable timers,
    /// classified changes and the next build time (unless the timing options changed).
    /// Only a change of kind needs a restart.
    async fn reconfigure(
        &mut self,
        _ctx: &Context,
        config: &SchedulerConfig,
    ) -> anyhow::Result<Reconfigured> {
        if config.kind() != self.config.kind() {
            return Ok(Reconfigured::NeedsRestart);
        }
        let outcome = if same_options(config, &self.config) {
            Reconfigured::Unchanged
        } else {
            Reconfigured::Changed
        };
        let (applied, done) = oneshot::channel();
        let update = Update {
            config: config.clone(),
            applied,
        };
        if self.updates.send(update).await.is_err() || done.await.is_err() {
            // The task ended (the bus closed): only a new one can run the scheduler.
            return Ok(Reconfigured::NeedsRestart);
        }
        self.config = config.clone();
        if outcome == Reconfigured::Changed {
            tracing::info!(scheduler = config.name(), "scheduler reconfigured");
        }
        Ok(outcome)
    }

    /// Ends the task once what it is doing (a submit) is done, and gives up the claim on
    /// the scheduler.
    async fn stop(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::error!(
                scheduler = self.config.name(),
                "scheduler task failed: {error}"
            );
        }
    }
}

/// What every scheduler task holds.
struct Registered {
    ctx: Context,
    /// The scheduler's row in `schedulers`, which `scheduler_changes` refers to.
    id: i64,
    kind: &'static str,
    /// Cancelled to stop the scheduler: by [`RunningScheduler::stop`] or the shutdown.
    stop: CancellationToken,
}

impl Registered {
    /// The `object_state` name of the scheduler's state: its class and name, as Buildbot
    /// keys state by both.
    fn state_object(&self, name: &str) -> String {
        format!("{}:{name}", self.kind)
    }

    /// Gives up the claim on the scheduler so another master may run it.
    async fn stopped(&self, name: &str) {
        if let Err(error) = store::set_master(&self.ctx.db, self.id, None).await {
            tracing::warn!(scheduler = name, "cannot release the scheduler: {error}");
        }
        tracing::info!(scheduler = name, "scheduler stopped");
    }

    async fn enabled(&self) -> bool {
        store::enabled(&self.ctx.db, self.id).await.unwrap_or(true)
    }

    /// A change-driven scheduler's intake of a new change: the change and whether it is
    /// important, unless the scheduler is disabled or `intake` leaves the change out.
    async fn take_change(
        &self,
        intake: &filter::Intake<'_>,
        change: Change,
    ) -> Option<(Arc<Change>, bool)> {
        if !self.enabled().await {
            return None;
        }
        let change = Arc::new(change);
        let important = filter::take_change(&self.ctx, intake, &change).await;
        important.map(|important| (change, important))
    }

    /// The task of a scheduler that acts only when asked: it holds the registration and
    /// acknowledges new configs until stopped.
    async fn hold(self, name: String, mut updates: mpsc::Receiver<Update>) {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => break,
                update = next_update(&mut updates) => {
                    let _ = update.applied.send(());
                }
            }
        }
        self.stopped(&name).await;
    }
}

/// The next new config; never, once the scheduler's [`RunningScheduler`] is gone.
async fn next_update(updates: &mut mpsc::Receiver<Update>) -> Update {
    match updates.recv().await {
        Some(update) => update,
        None => pending().await,
    }
}

/// One sourcestamp of a buildset.
#[derive(Clone, Debug, PartialEq)]
enum Stamp {
    /// The sourcestamp a change made.
    Existing(i64),
    New(SourceStampSpec),
}

/// Ids of builders the caller already knows by name. The engine knows every configured
/// builder's, so a force it runs reads none; a builder's id never changes (its row is never
/// deleted), so what it knew before a reconfig stays right. Names it does not know are read,
/// and recorded when new.
pub type KnownBuilders<'a> = &'a (dyn Fn(&str) -> Option<i64> + Sync);

/// The id of builder `name`: from `known`, or else from storage.
async fn builder_id(ctx: &Context, known: KnownBuilders<'_>, name: &str) -> DbResult<i64> {
    match known(name) {
        Some(id) => Ok(id),
        None => ctx.db.builder_id(name).await,
    }
}

/// A buildset a scheduler asks for.
struct Request {
    reason: String,
    stamps: Vec<Stamp>,
    /// Layered over the scheduler's own properties.
    properties: Properties,
    /// The builders by name with their ids; `None` builds on all the scheduler's builders.
    builders: Option<Vec<(String, i64)>>,
    priority: i64,
    parent_buildid: Option<i64>,
    parent_relationship: Option<String>,
    waited_for: bool,
}

impl Request {
    fn new(reason: String, stamps: Vec<Stamp>, priority: i64) -> Request {
        Request {
            reason,
            stamps,
            properties: Properties::new(),
            builders: None,
            priority,
            parent_buildid: None,
            parent_relationship: None,
            waited_for: false,
        }
    }
}

/// Stores a buildset and its requests, then announces them. The properties are, from
/// weakest to strongest: the scheduler's (`scheduler` names it), the request's, and those
/// of the changes behind its sourcestamps, as Buildbot layers them.
async fn submit(ctx: &Context, base: &SchedulerBase, request: Request) -> DbResult<Submitted> {
    let mut properties = Properties::new();
    for (name, value) in &base.properties {
        properties.set(name, value.clone(), "Scheduler");
    }
    properties.set("scheduler", Value::from(base.name.clone()), "Scheduler");
    properties.update(&request.properties);
    let mut sourcestamp_ids = Vec::new();
    let mut new_sourcestamps = Vec::new();
    for stamp in request.stamps {
        match stamp {
            Stamp::Existing(ssid) => {
                for changeid in store::changes_of_sourcestamp(&ctx.db, ssid).await? {
                    let (change, _) = ctx.db.change(changeid).await?;
                    for (name, value) in change.properties {
                        properties.set(name, value, "Change");
                    }
                }
                sourcestamp_ids.push(ssid);
            }
            Stamp::New(spec) => new_sourcestamps.push(spec),
        }
    }
    let builders = match request.builders {
        Some(builders) => builders,
        None => {
            let mut builders = Vec::with_capacity(base.builder_names.len());
            for name in &base.builder_names {
                builders.push((name.clone(), ctx.db.builder_id(name).await?));
            }
            builders
        }
    };
    let spec = BuildsetSpec {
        reason: request.reason,
        scheduler: base.name.clone(),
        external_idstring: None,
        sourcestamp_ids,
        new_sourcestamps,
        properties,
        builder_ids: builders.iter().map(|&(_, id)| id).collect(),
        priority: request.priority,
        parent_buildid: request.parent_buildid,
        parent_relationship: request.parent_relationship,
        waited_for: request.waited_for,
    };
    let added = ctx.db.add_buildset_rows(&spec).await?;
    let (bsid, brids) = (added.bsid, added.brids);
    data::publish(&ctx.db, &ctx.bus, Resource::Buildset(bsid), "new").await?;
    for row in &added.request_rows {
        data::changes::announce_new_request(&ctx.bus, row)?;
    }
    tracing::debug!(
        scheduler = %base.name,
        buildset = bsid,
        "scheduler '{}' submitted buildset {bsid} for {}: {}",
        base.name,
        builders
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        spec.reason
    );
    Ok((bsid, brids))
}

/// A buildset of the given changes: per codebase of the scheduler, the sourcestamp of its
/// latest change, or a new one from the codebase's defaults when no change is for it.
async fn submit_for_changes(
    ctx: &Context,
    base: &SchedulerBase,
    reason: &str,
    changeids: &[i64],
    last: Option<&LastCodebases>,
) -> DbResult<Submitted> {
    let mut by_codebase: BTreeMap<String, Vec<(Change, i64)>> = BTreeMap::new();
    for &changeid in changeids {
        let (change, ssid) = ctx.db.change(changeid).await?;
        by_codebase
            .entry(change.codebase.clone())
            .or_default()
            .push((change, ssid));
    }
    let mut stamps = Vec::new();
    for (codebase, defaults) in &base.codebases.0 {
        let latest = by_codebase
            .get(codebase)
            .and_then(|changes| changes.iter().max_by_key(|(change, _)| change.number));
        stamps.push(match latest {
            Some((_, ssid)) => Stamp::Existing(*ssid),
            None => Stamp::New(codebase_stamp(codebase, defaults, last)),
        });
    }
    let changes: BTreeMap<String, Vec<Change>> = by_codebase
        .into_iter()
        .map(|(codebase, changes)| (codebase, changes.into_iter().map(|(c, _)| c).collect()))
        .collect();
    let priority = priority(ctx, base, &changes).await;
    submit(
        ctx,
        base,
        Request::new(reason.to_string(), stamps, priority),
    )
    .await
}

/// Buildbot's `addBuildsetForSourceStampsWithDefaults`: a sourcestamp for each of the
/// scheduler's codebases from its defaults, replaced by the one given for it, and the given
/// ones for other codebases after them.
fn stamps_with_defaults(
    base: &SchedulerBase,
    given: Vec<SourceStampSpec>,
    last: Option<&LastCodebases>,
) -> Vec<Stamp> {
    let mut given: BTreeMap<String, SourceStampSpec> = given
        .into_iter()
        .map(|ss| (ss.codebase.clone(), ss))
        .collect();
    let mut stamps: Vec<Stamp> = base
        .codebases
        .0
        .iter()
        .map(|(codebase, defaults)| {
            Stamp::New(
                given
                    .remove(codebase)
                    .unwrap_or_else(|| codebase_stamp(codebase, defaults, last)),
            )
        })
        .collect();
    stamps.extend(given.into_values().map(Stamp::New));
    stamps
}

/// The sourcestamp of a codebase no change is for: what `createAbsoluteSourceStamps`
/// remembers of its last change, else the configured defaults.
fn codebase_stamp(
    codebase: &str,
    defaults: &CodebaseDefaults,
    last: Option<&LastCodebases>,
) -> SourceStampSpec {
    if let Some(remembered) = last.and_then(|l| l.get(codebase)) {
        return remembered;
    }
    SourceStampSpec {
        codebase: codebase.to_string(),
        branch: defaults.branch.clone(),
        revision: defaults.revision.clone(),
        repository: defaults.repository.clone().unwrap_or_default(),
        project: String::new(),
    }
}

/// The priority of the scheduler's requests: its `priority`, or what
/// `priority(builder_names, changes_by_codebase)` answers. A failing function is logged
/// and the priority is 0.
async fn priority(
    ctx: &Context,
    base: &SchedulerBase,
    changes: &BTreeMap<String, Vec<Change>>,
) -> i64 {
    match &base.priority {
        None => 0,
        Some(ValueOrFunction::Value(priority)) => *priority,
        Some(ValueOrFunction::Function(callback)) => {
            let changes: Map<String, Value> = changes
                .iter()
                .map(|(codebase, changes)| {
                    (codebase.clone(), changes.iter().map(change_json).collect())
                })
                .collect();
            let args = vec![
                Arg::Json(json!(base.builder_names)),
                Arg::Json(Value::Object(changes)),
            ];
            match ctx.script.call::<Value>(callback, args).await {
                Ok(value) => value.as_i64().unwrap_or_else(|| {
                    tracing::warn!(
                        scheduler = %base.name,
                        "priority function at {} returned {value}, not an integer: using 0",
                        callback.location()
                    );
                    0
                }),
                Err(error) => {
                    tracing::warn!(scheduler = %base.name, "{error}: using priority 0");
                    0
                }
            }
        }
    }
}

/// A change as the priority function receives it: the fields of Buildbot's change model.
fn change_json(change: &Change) -> Value {
    json!({
        "changeid": change.number,
        "author": change.who,
        "comments": change.comments,
        "branch": change.branch,
        "revision": change.revision,
        "revlink": change.revlink,
        "when_timestamp": change.when,
        "category": change.category,
        "repository": change.repository,
        "codebase": change.codebase,
        "project": change.project,
        "files": change.files,
        "properties": change.properties.iter().cloned().collect::<Map<String, Value>>(),
    })
}

/// `createAbsoluteSourceStamps`: the latest change seen per codebase, kept in the
/// scheduler's state (`lastCodebases`, as Buildbot names it) so that a build for a codebase
/// without new changes still names the revision last seen.
struct LastCodebases {
    object: String,
    codebases: Map<String, Value>,
}

impl LastCodebases {
    const KEY: &'static str = "lastCodebases";

    async fn load(ctx: &Context, object: String) -> DbResult<LastCodebases> {
        let codebases = match ctx.db.get_state(&object, Self::KEY).await? {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        Ok(LastCodebases { object, codebases })
    }

    fn get(&self, codebase: &str) -> Option<SourceStampSpec> {
        let entry = self.codebases.get(codebase)?;
        let text = |key: &str| entry.get(key).and_then(Value::as_str).map(str::to_string);
        Some(SourceStampSpec {
            codebase: codebase.to_string(),
            branch: text("branch"),
            revision: text("revision"),
            repository: text("repository").unwrap_or_default(),
            project: String::new(),
        })
    }

    /// Remembers `change` when it is newer than what is kept for its codebase.
    async fn record(&mut self, ctx: &Context, change: &Change) -> DbResult<()> {
        let last = self
            .codebases
            .get(&change.codebase)
            .and_then(|entry| entry.get("lastChange"))
            .and_then(Value::as_i64)
            .unwrap_or(-1);
        if change.number <= last {
            return Ok(());
        }
        self.codebases.insert(
            change.codebase.clone(),
            json!({
                "repository": change.repository,
                "branch": change.branch,
                "revision": change.revision,
                "lastChange": change.number,
            }),
        );
        ctx.db
            .set_state(
                &self.object,
                Self::KEY,
                &Value::Object(self.codebases.clone()),
            )
            .await
    }
}

/// The most changes a scheduler that fell behind reads from storage at once.
const CATCH_UP_PAGE: i64 = 500;

/// The changes a change-driven scheduler is told of: `changes/N/new` from the bus, each
/// with its sourcestamp's id, taken from the event's message. Changes are announced in the
/// order they were stored, so when the scheduler falls behind the bus and misses events,
/// the changes after the last it saw are read from storage: none is lost.
struct ChangeFeed {
    events: Subscription,
    /// The newest change handed out (at first, the newest stored at subscription).
    last: i64,
    /// The newest change read from storage after events were missed: the events of
    /// changes up to it, still on their way, are passed over.
    read_through: i64,
    /// Events were missed and storage has changes after `last` not read yet.
    missed: bool,
    /// Changes read from storage, not handed out yet.
    backlog: VecDeque<(Change, i64)>,
}

impl ChangeFeed {
    /// Listens first, then notes the newest change stored, so that none falls between.
    async fn subscribe(ctx: &Context) -> DbResult<ChangeFeed> {
        let events = ctx.bus.subscribe_to(Topics::Only(&["changes/*/new"]));
        Ok(ChangeFeed {
            events,
            last: ctx.db.last_change_id().await?,
            read_through: 0,
            missed: false,
            backlog: VecDeque::new(),
        })
    }

    /// The next change and its sourcestamp's id; `None` once the bus is gone. Dropping the
    /// future loses nothing: what is not handed out stays for the next call. A failed read
    /// is answered after a second, and tried again at the next call.
    async fn next(&mut self, db: &Db, scheduler: &str) -> Option<DbResult<(Change, i64)>> {
        loop {
            if let Some(next) = self.backlog.pop_front() {
                self.last = next.0.number;
                return Some(Ok(next));
            }
            if self.missed {
                let page = match db.changes_after(self.last, CATCH_UP_PAGE).await {
                    Ok(page) => page,
                    Err(error) => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        return Some(Err(error));
                    }
                };
                self.missed = page.len() as i64 == CATCH_UP_PAGE;
                if let Some((change, _)) = page.last() {
                    self.read_through = change.number;
                }
                self.backlog.extend(page);
                continue;
            }
            match self.events.recv().await {
                Ok(event) => {
                    let Some(changeid) = event.id_of("changes", "new") else {
                        continue;
                    };
                    if changeid <= self.read_through {
                        continue;
                    }
                    self.last = self.last.max(changeid);
                    return Some(match data::changes::change_of(&event.message) {
                        Some(change) => Ok(change),
                        None => db.change(changeid).await,
                    });
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        scheduler,
                        "scheduler fell behind and missed {missed} bus events: reading the \
                         changes after {} from storage",
                        self.last
                    );
                    self.missed = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Waits for the next bus event; `None` when the bus is gone. Missed events are logged:
/// the bus keeps a bounded backlog, and a scheduler that falls that far behind loses them.
async fn next_event(events: &mut Subscription, scheduler: &str) -> Option<Arc<Event>> {
    loop {
        match events.recv().await {
            Ok(event) => return Some(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    scheduler,
                    "scheduler fell behind and missed {missed} bus events"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => pending().await,
    }
}
