//! The generator every status target shares (Buildbot 4's `BuildStatusGenerator`): it
//! follows the bus, decides with the target's `builders`, `tags` and `mode` filters which
//! builds and buildsets to report, takes their snapshots, and hands them to the target's
//! [`Reporter`]. It keeps a watermark of what it has handled, so that builds that finished
//! while the master was down are reported at the next start.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::snapshot;
use crate::bus::{Subscription, Topics};
use crate::config::status::MailMode;
use crate::db::{Db, DbResult};
use crate::model::{BuildInfo, BuildResult};
use crate::runtime::Context;
use crate::script::{Arg, Callback};

/// What a target reports and about which builds; read afresh for every event, so a reconfig
/// applies from the next one.
#[derive(Clone, Debug, Default)]
pub struct Wanted {
    /// Builds as they start (`builds/N/new`).
    pub started: bool,
    /// Builds as they finish (`builds/N/finished`).
    pub finished: bool,
    /// Buildsets as they complete (`buildsets/N/complete`), with their builds.
    pub buildsets: bool,
    /// Builder names; empty, all.
    pub builders: Vec<String>,
    /// Builder tags; empty, all.
    pub tags: Vec<String>,
    /// The finished builds to report, by Buildbot's mode names; `None`, all of them.
    pub modes: Option<BTreeSet<MailMode>>,
    /// `(build) -> build`: the build to compare with for `change` and `problem`; absent, the
    /// builder's previous finished build.
    pub previous_build_getter: Option<Callback>,
}

/// A finished build the filters let through, with the result of the build it was compared
/// with (when the modes needed one).
#[derive(Clone, Debug)]
pub struct Finished {
    pub buildid: i64,
    pub build: Arc<BuildInfo>,
    pub results: BuildResult,
    pub previous: Option<BuildResult>,
}

/// What a target is handed.
#[derive(Clone, Debug)]
pub enum Report {
    Started {
        buildid: i64,
        build: Arc<BuildInfo>,
    },
    Finished(Finished),
    /// A buildset whose every build has finished, with those of its builds the filters let
    /// through (the last build of each request; never empty).
    BuildsetComplete {
        bsid: i64,
        reason: String,
        results: BuildResult,
        builds: Vec<Finished>,
    },
}

/// The part of a status target that turns reports into outbox messages. The generator
/// holds the target's current one (a reconfig replaces it) and calls it for each report.
pub trait Reporter: Send + Sync + 'static {
    fn wanted(&self) -> &Wanted;

    /// Renders `report` and writes it to the outbox; `true` when a message was written and
    /// delivery should be woken.
    fn report(
        &self,
        ctx: &Context,
        report: Report,
    ) -> impl Future<Output = anyhow::Result<bool>> + Send;
}

/// Starts the generator of the target `name`; it runs until `stop` is cancelled (not the
/// master's shutdown: targets stop after the builds that finish during it).
pub fn spawn<R: Reporter>(
    ctx: Context,
    name: String,
    current: watch::Receiver<Arc<R>>,
    wake_delivery: Arc<Notify>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    // Subscribed before the task starts: an event published as soon as the target is
    // started (a build starting) is not missed.
    let events = ctx.bus.subscribe_to(topics(current.borrow().wanted()));
    let generator = Generator {
        ctx,
        name,
        current,
        wake_delivery,
    };
    tokio::spawn(generator.run(events, stop))
}

/// The keys of the streams `wanted` names, and only those: a mail target of finished
/// builds is not woken by every build's start and buildset's completion, nor does a
/// buildset's completion read its sourcestamps for it.
fn topics(wanted: &Wanted) -> Topics {
    const NEW: &str = "builds/*/new";
    const FINISHED: &str = "builds/*/finished";
    const COMPLETE: &str = "buildsets/*/complete";
    const BY_STREAMS: [&[&str]; 8] = [
        &[],
        &[NEW],
        &[FINISHED],
        &[NEW, FINISHED],
        &[COMPLETE],
        &[NEW, COMPLETE],
        &[FINISHED, COMPLETE],
        &[NEW, FINISHED, COMPLETE],
    ];
    let index = usize::from(wanted.started)
        | usize::from(wanted.finished) << 1
        | usize::from(wanted.buildsets) << 2;
    Topics::Only(BY_STREAMS[index])
}

/// How often the watermarks are written while builds finish: a crash re-reads at most this
/// much, and the outbox's keys drop what was already written.
const WATERMARK_EVERY: Duration = Duration::from_secs(1);

struct Generator<R> {
    ctx: Context,
    name: String,
    current: watch::Receiver<Arc<R>>,
    wake_delivery: Arc<Notify>,
}

/// Started builds, finished builds and complete buildsets are each followed with their own
/// watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Starts,
    Builds,
    Buildsets,
}

impl Stream {
    fn is_wanted(self, wanted: &Wanted) -> bool {
        match self {
            Stream::Starts => wanted.started,
            Stream::Builds => wanted.finished,
            Stream::Buildsets => wanted.buildsets,
        }
    }
}

/// How far one stream has been handled, and how much of that is stored.
struct Progress {
    stream: Stream,
    watermark: Watermark,
    handled_until: f64,
    stored_until: f64,
}

impl<R: Reporter> Generator<R> {
    async fn run(self, events: Subscription, stop: CancellationToken) {
        let mut streams = Vec::with_capacity(3);
        // Starts first: a build that started and finished meanwhile is caught up as
        // finished only, its start no longer news.
        for stream in [Stream::Starts, Stream::Builds, Stream::Buildsets] {
            let watermark = Watermark::new(&self.name, stream);
            let until = match watermark.load(&self.ctx.db).await {
                Ok(until) => until,
                Err(error) => {
                    tracing::warn!("{}: cannot read how far it got: {error}", self.name);
                    crate::db::now()
                }
            };
            streams.push(Progress {
                stream,
                watermark,
                handled_until: until,
                stored_until: until,
            });
        }
        for progress in &mut streams {
            progress.handled_until = self.catch_up(progress.stream, progress.handled_until).await;
        }
        let mut flush = tokio::time::interval(WATERMARK_EVERY);
        let mut reconfigured = self.current.clone();
        let mut subscribed = topics(self.current.borrow().wanted());
        let mut events = events;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = flush.tick() => {
                    self.pass_over_unwanted(&mut streams);
                    self.store(&mut streams).await
                }
                Ok(()) = reconfigured.changed() => {
                    let now_wanted = topics(reconfigured.borrow_and_update().wanted());
                    if now_wanted != subscribed {
                        // Subscribed before catching up: nothing falls between the two.
                        events = self.ctx.bus.subscribe_to(now_wanted);
                        subscribed = now_wanted;
                        for progress in &mut streams {
                            progress.handled_until =
                                self.catch_up(progress.stream, progress.handled_until).await;
                        }
                    }
                }
                event = events.recv() => match event {
                    Ok(event) => {
                        let (stream, id, at) = match (
                            event.id_of("builds", "new"),
                            event.id_of("builds", "finished"),
                            event.id_of("buildsets", "complete"),
                        ) {
                            (Some(id), _, _) => (Stream::Starts, id, "started_at"),
                            (_, Some(id), _) => (Stream::Builds, id, "complete_at"),
                            (_, _, Some(id)) => (Stream::Buildsets, id, "complete_at"),
                            _ => continue,
                        };
                        self.handle(stream, id).await;
                        let progress = streams.iter_mut().find(|p| p.stream == stream);
                        if let (Some(progress), Some(at)) =
                            (progress, event.message[at].as_f64())
                        {
                            progress.handled_until = progress.handled_until.max(at);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!("{}: fell {missed} events behind; reading storage", self.name);
                        for progress in &mut streams {
                            progress.handled_until =
                                self.catch_up(progress.stream, progress.handled_until).await;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        }
        self.pass_over_unwanted(&mut streams);
        self.store(&mut streams).await;
    }

    /// A stream the target does not want has nothing to handle: it keeps up with the
    /// wanted ones, as if its events had been seen and passed over, so a reconfig or a
    /// restart that wants it again does not report its past.
    fn pass_over_unwanted(&self, streams: &mut [Progress]) {
        let current = self.current.borrow().clone();
        let wanted = current.wanted();
        let reached = streams
            .iter()
            .filter(|p| p.stream.is_wanted(wanted))
            .map(|p| p.handled_until)
            .fold(f64::MIN, f64::max);
        for progress in streams.iter_mut().filter(|p| !p.stream.is_wanted(wanted)) {
            progress.handled_until = progress.handled_until.max(reached);
        }
    }

    async fn store(&self, streams: &mut [Progress]) {
        for progress in streams {
            if progress.stored_until < progress.handled_until
                && progress
                    .watermark
                    .store(&self.ctx.db, progress.handled_until)
                    .await
                    .is_ok()
            {
                progress.stored_until = progress.handled_until;
            }
        }
    }

    /// Handles what finished since `since` (whole seconds, as events carry them: what
    /// finished in that second is seen again and dropped by the outbox's key), and the
    /// builds started since that still run. A stream the target does not want is skipped,
    /// and counts as handled.
    async fn catch_up(&self, stream: Stream, since: f64) -> f64 {
        if !stream.is_wanted(self.current.borrow().wanted()) {
            return since;
        }
        let query = match stream {
            Stream::Starts => "SELECT id, started_at FROM builds WHERE started_at >= $1 AND complete_at IS NULL ORDER BY started_at, id",
            Stream::Builds => "SELECT id, complete_at FROM builds WHERE complete_at >= $1 ORDER BY complete_at, id",
            Stream::Buildsets => "SELECT id, complete_at FROM buildsets WHERE complete = 1 AND complete_at >= $1 ORDER BY complete_at, id",
        };
        let finished: Vec<(i64, f64)> = match sqlx::query_as(query)
            .bind(since.floor())
            .fetch_all(&self.ctx.db.pool)
            .await
        {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!("{}: cannot read what finished: {error}", self.name);
                return since;
            }
        };
        let mut until = since;
        for (id, complete_at) in finished {
            self.handle(stream, id).await;
            until = until.max(complete_at.floor());
        }
        until
    }

    /// Reports build `id` (or buildset `id`) if the target wants it. Failures are logged:
    /// one build's trouble must not stop the next one's report.
    async fn handle(&self, stream: Stream, id: i64) {
        let current = self.current.borrow().clone();
        let wanted = current.wanted();
        if !stream.is_wanted(wanted) {
            return;
        }
        let report = match stream {
            Stream::Starts => {
                return self.handle_started(id).await;
            }
            Stream::Builds => self
                .finished(wanted, id)
                .await
                .map(|f| f.map(Report::Finished)),
            Stream::Buildsets => self.buildset_complete(wanted, id).await,
        };
        let outcome = match report {
            Ok(Some(report)) => current.report(&self.ctx, report).await,
            Ok(None) => Ok(false),
            Err(error) => Err(error),
        };
        self.after(outcome, id);
    }

    async fn handle_started(&self, buildid: i64) {
        let current = self.current.borrow().clone();
        let wanted = current.wanted();
        if !wanted.started {
            return;
        }
        let outcome = match self.candidate(wanted, buildid, Moment::Started).await {
            Ok(Some(build)) => {
                let report = Report::Started { buildid, build };
                current.report(&self.ctx, report).await
            }
            Ok(None) => Ok(false),
            Err(error) => Err(error),
        };
        self.after(outcome, buildid);
    }

    fn after(&self, outcome: anyhow::Result<bool>, id: i64) {
        match outcome {
            Ok(true) => self.wake_delivery.notify_one(),
            Ok(false) => {}
            Err(error) => tracing::error!("{}: nothing reported about {id}: {error:#}", self.name),
        }
    }

    /// A finished build the filters let through, compared with its previous build when the
    /// modes need it.
    async fn finished(&self, wanted: &Wanted, buildid: i64) -> anyhow::Result<Option<Finished>> {
        let Some(build) = self
            .candidate(wanted, buildid, Moment::Finished(wanted.modes.as_ref()))
            .await?
        else {
            return Ok(None);
        };
        let Some(results) = build.results else {
            return Ok(None);
        };
        let Some(modes) = &wanted.modes else {
            return Ok(Some(Finished {
                buildid,
                build,
                results,
                previous: None,
            }));
        };
        let compares = modes.contains(&MailMode::Change) || modes.contains(&MailMode::Problem);
        let previous = match compares {
            true => self.previous_result(wanted, &build).await?,
            false => None,
        };
        Ok(mode_wants(modes, results, previous).then_some(Finished {
            buildid,
            build,
            results,
            previous,
        }))
    }

    /// The buildset with those of its builds the filters let through; `None` when none is.
    async fn buildset_complete(
        &self,
        wanted: &Wanted,
        bsid: i64,
    ) -> anyhow::Result<Option<Report>> {
        let (reason, results): (String, Option<i64>) =
            sqlx::query_as("SELECT reason, results FROM buildsets WHERE id = $1")
                .bind(bsid)
                .fetch_one(&self.ctx.db.pool)
                .await?;
        // The last build of each request: a retried request's earlier builds are not its
        // outcome.
        let buildids: Vec<i64> = sqlx::query_scalar(
            "SELECT MAX(b.id) FROM builds b JOIN buildrequests r ON r.id = b.buildrequestid \
             WHERE r.buildsetid = $1 GROUP BY r.id ORDER BY MAX(b.id)",
        )
        .bind(bsid)
        .fetch_all(&self.ctx.db.pool)
        .await?;
        let mut builds = Vec::with_capacity(buildids.len());
        for buildid in buildids {
            builds.extend(self.finished(wanted, buildid).await?);
        }
        Ok((!builds.is_empty()).then(|| Report::BuildsetComplete {
            bsid,
            reason,
            results: results
                .and_then(BuildResult::from_code)
                .unwrap_or(BuildResult::Success),
            builds,
        }))
    }

    /// A snapshot of the build, when its builder, tags and (finished) result leave a report
    /// possible. Decided on the build's row first: most builds are not reported, and the
    /// rest of a snapshot reads the build's properties, sourcestamps, steps and logs.
    async fn candidate(
        &self,
        wanted: &Wanted,
        buildid: i64,
        moment: Moment<'_>,
    ) -> anyhow::Result<Option<Arc<BuildInfo>>> {
        let mut row = snapshot::BuildRow::read(&self.ctx.db, buildid).await?;
        let modes = match moment {
            // A build may have ended by the time its start is reported: it is shown as it
            // started, as the event that announced it.
            Moment::Started => {
                row.as_started();
                None
            }
            Moment::Finished(modes) => modes,
        };
        let builder = &row.builder;
        if !wanted.builders.is_empty() && !wanted.builders.contains(&builder.name) {
            return Ok(None);
        }
        if !wanted.tags.is_empty() && !builder.tags.iter().any(|t| wanted.tags.contains(t)) {
            return Ok(None);
        }
        if let Some(modes) = modes {
            let Some(results) = row.results else {
                return Ok(None);
            };
            // A previous result that differs from this one and is not a failure is the one
            // under which `change` and `problem` ask for a report, if anything does.
            let favourable = match results {
                BuildResult::Success => BuildResult::Warnings,
                _ => BuildResult::Success,
            };
            if !mode_wants(modes, results, None) && !mode_wants(modes, results, Some(favourable)) {
                return Ok(None);
            }
        }
        Ok(Some(Arc::new(row.build_info(&self.ctx.db).await?)))
    }

    /// The result of the build to compare with: `previousBuildGetter`'s answer, or the
    /// builder's previous finished build. `None` (no such build) suppresses `change` and
    /// `problem` reports.
    async fn previous_result(
        &self,
        wanted: &Wanted,
        build: &Arc<BuildInfo>,
    ) -> anyhow::Result<Option<BuildResult>> {
        if let Some(getter) = &wanted.previous_build_getter {
            let answer = self
                .ctx
                .script
                .call::<Option<Arc<BuildInfo>>>(getter, vec![Arg::Build(build.clone())])
                .await;
            match answer {
                Ok(previous) => return Ok(previous.and_then(|build| build.results)),
                Err(error) => tracing::warn!(
                    "{}: previousBuildGetter failed, comparing with the previous build: {error}",
                    self.name
                ),
            }
        }
        let previous =
            snapshot::previous_finished(&self.ctx.db, build.builder.id, build.number).await?;
        Ok(previous.and_then(|(_, results)| results))
    }
}

/// Which report a build's snapshot is for.
enum Moment<'a> {
    Started,
    /// Finished, reported when one of these modes (any, with none) wants it.
    Finished(Option<&'a BTreeSet<MailMode>>),
}

/// Buildbot's mode rules, given the build's result and the previous build's.
pub fn mode_wants(
    modes: &BTreeSet<MailMode>,
    results: BuildResult,
    previous: Option<BuildResult>,
) -> bool {
    modes.iter().any(|mode| match mode {
        MailMode::Change => previous.is_some_and(|previous| previous != results),
        MailMode::Failing => results == BuildResult::Failure,
        MailMode::Passing => results == BuildResult::Success,
        MailMode::Problem => {
            results == BuildResult::Failure
                && previous.is_some_and(|previous| previous != BuildResult::Failure)
        }
        MailMode::Warnings => results == BuildResult::Warnings,
        MailMode::Exception => results == BuildResult::Exception,
    })
}

/// Where a target remembers how far it has handled one stream, so that a restart catches
/// up on what finished while it was down (the outbox's key keeps a message from being
/// written twice).
struct Watermark {
    object: String,
    key: &'static str,
}

impl Watermark {
    fn new(target: &str, stream: Stream) -> Watermark {
        Watermark {
            object: format!("status/{target}"),
            key: match stream {
                Stream::Starts => "starts_handled_until",
                Stream::Builds => "handled_until",
                Stream::Buildsets => "buildsets_handled_until",
            },
        }
    }

    /// The completion time handled so far; the first time, now (history is not replayed).
    async fn load(&self, db: &Db) -> DbResult<f64> {
        match db.get_state(&self.object, self.key).await? {
            Some(value) => Ok(value.as_f64().unwrap_or_default()),
            None => {
                let now = crate::db::now();
                self.store(db, now).await?;
                Ok(now)
            }
        }
    }

    async fn store(&self, db: &Db, until: f64) -> DbResult<()> {
        db.set_state(&self.object, self.key, &until.into()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BuildResult::*;

    fn modes(names: &[MailMode]) -> BTreeSet<MailMode> {
        names.iter().copied().collect()
    }

    #[test]
    fn a_target_of_finished_builds_is_sent_no_start_and_no_buildset_completion() {
        let bus = crate::bus::Bus::new(16);
        let finished = Wanted {
            finished: true,
            ..Wanted::default()
        };
        let _events = bus.subscribe_to(topics(&finished));
        assert!(bus.wants("builds/7/finished"));
        assert!(!bus.wants("builds/7/new"));
        assert!(!bus.wants_any(&["buildsets/*"], "complete"));
        let summary = Wanted {
            buildsets: true,
            started: true,
            ..Wanted::default()
        };
        let _events = bus.subscribe_to(topics(&summary));
        assert!(bus.wants("buildsets/3/complete"));
        assert!(bus.wants("builds/7/new"));
    }

    #[test]
    fn modes_follow_buildbot() {
        let change = modes(&[MailMode::Change]);
        assert!(mode_wants(&change, Failure, Some(Success)));
        assert!(!mode_wants(&change, Failure, Some(Failure)));
        assert!(!mode_wants(&change, Failure, None));
        let problem = modes(&[MailMode::Problem]);
        assert!(mode_wants(&problem, Failure, Some(Warnings)));
        assert!(!mode_wants(&problem, Failure, Some(Failure)));
        assert!(!mode_wants(&problem, Failure, None));
        assert!(!mode_wants(&problem, Exception, Some(Success)));
        let each = [
            (MailMode::Failing, Failure),
            (MailMode::Passing, Success),
            (MailMode::Warnings, Warnings),
            (MailMode::Exception, Exception),
        ];
        for (mode, wanted) in each {
            for results in [Success, Warnings, Failure, Exception] {
                assert_eq!(
                    mode_wants(&modes(&[mode]), results, None),
                    results == wanted
                );
            }
        }
    }
}
