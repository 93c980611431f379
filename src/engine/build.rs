//! Running one build: properties, the worker directory, the steps in order with Buildbot's
//! result rules, then the requests and buildsets it completes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::build::ValueOrFunction;
use crate::config::build::{StepCommon, StepConfig};
use crate::data::builds::{
    add_step, finish_build, finish_build_and_request, start_step, Carried, NewBuild, NewStep,
    StepEnd,
};
use crate::data::{publish, Resource};
use crate::db::{DbResult, PendingRequest};
use crate::model::{BuildResult, Properties};
use crate::runtime::Context;
use crate::script::Arg;
use crate::steps::{RunningBuild, StepOutcome, StepRun};
use crate::workers::WorkerLink;

/// What the engine hands a build: the builder, the worker, the requests it satisfies.
pub struct BuildPlan {
    pub builderid: i64,
    pub builder_name: String,
    pub builder_properties: Vec<(String, Value)>,
    /// `defaultProperties`: set only where no other source set the property.
    pub builder_default_properties: Vec<(String, Value)>,
    pub builder_env: Vec<(String, crate::script::Renderable)>,
    pub steps: Arc<Vec<StepConfig>>,
    pub workerid: i64,
    pub worker_name: String,
    pub worker_properties: Vec<(String, Value)>,
    pub worker_default_properties: Vec<(String, Value)>,
    /// `BASEDIR/workers/WORKDIR/WORKERBUILDDIR`, or `WORKERBUILDDIR` on a remote worker.
    pub builder_dir: PathBuf,
    pub worker: WorkerLink,
    /// The request built; Buildbot 4 builds one request per build.
    pub request: PendingRequest,
    pub stop: CancellationToken,
}

/// Runs build `new` (stored with its request's claim) to its end and returns its result.
/// Storage errors end the build with EXCEPTION after logging them; they never leave it
/// hanging.
pub async fn run(ctx: Context, plan: BuildPlan, new: NewBuild) -> BuildResult {
    let buildid = new.buildid;
    let results = match execute(&ctx, &plan, new).await {
        Ok(results) => results,
        Err(error) => {
            tracing::error!(build = buildid, "storage failed during the build: {error}");
            let request = (plan.request.id, plan.request.buildsetid);
            let ended = (BuildResult::Exception, "storage error");
            let finished = finish(&ctx, buildid, ended, request, Carried::default()).await;
            if let Err(error) = finished {
                tracing::error!(build = buildid, "cannot finish the build: {error}");
            }
            BuildResult::Exception
        }
    };
    let request = [plan.request.id];
    if results == BuildResult::Retry {
        // Buildbot resubmits the request of a build that lost its worker.
        tracing::info!(build = buildid, "the build will be retried");
        if let Err(error) = ctx.db.unclaim_requests(&request).await {
            tracing::error!(build = buildid, "cannot put the request back: {error}");
        }
        let _ = publish(
            &ctx.db,
            &ctx.bus,
            Resource::BuildRequest(plan.request.id),
            "unclaimed",
        )
        .await;
        return results;
    }
    results
}

/// The builder's directory: made by the master for a LocalWorker (on this thread: for a
/// directory that exists, a syscall costs less than tokio's blocking pool's thread
/// switches); a remote worker makes a command's directory itself.
fn make_builder_dir(plan: &BuildPlan) -> std::io::Result<()> {
    match &plan.worker {
        WorkerLink::Local => std::fs::create_dir_all(&plan.builder_dir),
        WorkerLink::Remote(_) => Ok(()),
    }
}

async fn execute(ctx: &Context, plan: &BuildPlan, mut new: NewBuild) -> DbResult<BuildResult> {
    let (buildid, number) = (new.buildid, new.number);
    let sourcestamps = std::mem::take(&mut new.sourcestamps);
    let properties = build_properties(ctx, plan, number, &sourcestamps, &new.buildset_properties);
    // Stored, and the build announced, with its first step.
    let mut carried = Carried::first(new, properties.clone());
    // What storage holds once carried, so only changed properties are written again.
    let mut stored = properties.clone();
    tracing::debug!(builder = %plan.builder_name, number, worker = %plan.worker_name, "build started");

    let build = RunningBuild {
        ctx: ctx.clone(),
        buildid,
        number,
        builderid: plan.builderid,
        builder_name: plan.builder_name.clone(),
        worker_name: plan.worker_name.clone(),
        builder_dir: plan.builder_dir.clone(),
        worker: plan.worker.clone(),
        properties: Mutex::new(properties),
        sourcestamps,
        env: plan.builder_env.clone(),
        stop: plan.stop.clone(),
    };
    if let Err(error) = make_builder_dir(plan) {
        let why = format!(
            "cannot create the worker directory {}: {error}",
            plan.builder_dir.display()
        );
        tracing::error!(build = buildid, "{why}");
        return end(
            &build,
            plan,
            (&mut stored, carried),
            BuildResult::Exception,
            &why,
        )
        .await;
    }

    let mut results = BuildResult::Success;
    let mut summaries: Vec<String> = Vec::new();
    let mut halted = false;
    for (index, step) in plan.steps.iter().enumerate() {
        if halted && !step.common.always_run {
            continue;
        }
        let stopping = plan.stop.is_cancelled() && !step.common.always_run;
        // A step with nothing to decide before it runs is stored started.
        let starts_at_once =
            !stopping && matches!(step.common.do_step_if, ValueOrFunction::Value(true));
        let description = description(&step.common);
        let first_log = StepRun::first_log(&step.kind);
        let new_step = NewStep {
            buildid,
            number: index as i64,
            name: &step.common.name,
            build_state: &format!("running {}", step.common.name),
            started: starts_at_once.then_some(description.as_str()),
            first_log: first_log.filter(|_| starts_at_once),
        };
        let added = add_step(&ctx.db, &ctx.bus, &new_step, std::mem::take(&mut carried)).await?;
        let stepid = added.stepid;
        let run = StepRun {
            build: &build,
            config: step,
            stepid,
            first_log: Mutex::new(first_log.zip(added.first_log)),
            ended_logs: Mutex::default(),
        };
        let outcome = if starts_at_once {
            run.run().await
        } else {
            run_step(&run, stopping, &description).await
        };
        let summary = outcome
            .summary
            .clone()
            .unwrap_or_else(|| step_summary(step, outcome.results));
        let hidden = hide(&build, &step.common, outcome.results).await;
        carry_changed_properties(&build, &mut stored, &mut carried);
        if let Some(logid) = run.unused_first_log() {
            carried.drop_unused_log(logid);
        }
        carried.end_logs(run.take_ended_logs());
        if step
            .common
            .update_build_summary_policy
            .contains(&outcome.results)
        {
            summaries.push(summary.clone());
        }
        // Stored with the next step, or with the build's end.
        carried.end_step(StepEnd {
            stepid,
            results: outcome.results,
            state: summary,
            hidden,
        });
        let (overall, terminate) = result_and_termination(&step.common, outcome.results, results);
        results = overall;
        halted |= terminate || plan.stop.is_cancelled();
    }
    if plan.stop.is_cancelled() {
        results = results.worst(BuildResult::Cancelled);
    }
    let state = if summaries.is_empty() && results == BuildResult::Success {
        "build successful".to_string()
    } else if summaries.is_empty() {
        results.name().to_string()
    } else {
        summaries.join(" ")
    };
    end(&build, plan, (&mut stored, carried), results, &state).await
}

/// What a step says while it runs: its `description`, else its name.
fn description(common: &StepCommon) -> String {
    common
        .description
        .as_ref()
        .map(|words| words.join(" "))
        .unwrap_or_else(|| common.name.clone())
}

/// Runs a step stored pending, or skips it when `doStepIf` says so or the build is being
/// stopped.
async fn run_step(run: &StepRun<'_>, stopping: bool, description: &str) -> StepOutcome {
    let build = run.build;
    let common = &run.config.common;
    let wanted = match &common.do_step_if {
        ValueOrFunction::Value(wanted) => Ok(*wanted),
        ValueOrFunction::Function(callback) => build.decide(callback, Vec::new()).await,
    };
    match wanted {
        _ if stopping => return StepOutcome::of(BuildResult::Cancelled),
        Ok(false) => return StepOutcome::of(BuildResult::Skipped),
        Ok(true) => {}
        Err(error) => {
            tracing::warn!(build = build.buildid, step = %common.name, "doStepIf failed: {error}");
            let _ = run
                .note("err.text", &format!("doStepIf failed: {error}"))
                .await;
            return StepOutcome::of(BuildResult::Exception);
        }
    }
    let ctx = &build.ctx;
    if let Err(error) = start_step(&ctx.db, &ctx.bus, run.stepid, description).await {
        tracing::error!(build = build.buildid, "cannot start a step: {error}");
        return StepOutcome::of(BuildResult::Exception);
    }
    run.run().await
}

async fn hide(build: &RunningBuild, common: &StepCommon, results: BuildResult) -> bool {
    match &common.hide_step_if {
        ValueOrFunction::Value(hidden) => *hidden,
        ValueOrFunction::Function(callback) => build
            .decide(callback, vec![Arg::Json(results.code().into())])
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(build = build.buildid, step = %common.name, "hideStepIf failed: {error}");
                false
            }),
    }
}

/// Buildbot's `getResultSummary`: `descriptionDone` (or the name) with its suffix, and the
/// result in parentheses unless it is a success.
fn step_summary(step: &StepConfig, results: BuildResult) -> String {
    let common = &step.common;
    let mut words = common
        .description_done
        .clone()
        .unwrap_or_else(|| vec![common.name.clone()]);
    words.extend(common.description_suffix.iter().flatten().cloned());
    let mut summary = words.join(" ");
    if results != BuildResult::Success {
        summary.push_str(&format!(" ({results})"));
    }
    summary
}

/// Buildbot's `computeResultAndTermination`: how a step's result counts toward the
/// build's, and whether the build stops.
fn result_and_termination(
    step: &StepCommon,
    result: BuildResult,
    previous: BuildResult,
) -> (BuildResult, bool) {
    let mut overall = result;
    let mut terminate = false;
    match result {
        BuildResult::Failure => {
            if !step.flunk_on_failure {
                overall = BuildResult::Success;
            }
            if step.warn_on_failure {
                overall = BuildResult::Warnings;
            }
            if step.flunk_on_failure {
                overall = BuildResult::Failure;
            }
            terminate = step.halt_on_failure;
        }
        BuildResult::Warnings => {
            overall = if step.warn_on_warnings {
                BuildResult::Warnings
            } else {
                BuildResult::Success
            };
            if step.flunk_on_warnings {
                overall = BuildResult::Failure;
            }
        }
        BuildResult::Exception | BuildResult::Retry | BuildResult::Cancelled => terminate = true,
        BuildResult::Success | BuildResult::Skipped => {}
    }
    (previous.worst(overall), terminate)
}

async fn end(
    build: &RunningBuild,
    plan: &BuildPlan,
    (stored, mut carried): (&mut Properties, Carried),
    results: BuildResult,
    state: &str,
) -> DbResult<BuildResult> {
    carry_changed_properties(build, stored, &mut carried);
    let request = (plan.request.id, plan.request.buildsetid);
    finish(
        &build.ctx,
        build.buildid,
        (results, state),
        request,
        carried,
    )
    .await?;
    tracing::debug!(builder = %build.builder_name, number = build.number, %results, "build finished");
    Ok(results)
}

/// Stores the build finished, with the writes `carried`; unless it is to be retried, its
/// request `(id, buildset)` is completed in the same write, and the buildset with it when
/// that was its last request.
async fn finish(
    ctx: &Context,
    buildid: i64,
    ended: (BuildResult, &str),
    request: (i64, i64),
    carried: Carried,
) -> DbResult<()> {
    if ended.0 == BuildResult::Retry {
        finish_build(&ctx.db, &ctx.bus, buildid, ended, carried).await
    } else {
        finish_build_and_request(&ctx.db, &ctx.bus, buildid, ended, request, carried).await
    }
}

/// The properties a build starts with, from the least to the most specific source, as
/// Buildbot layers them: global, builder, worker, buildset (scheduler, force, trigger),
/// then what the build itself knows.
fn build_properties(
    ctx: &Context,
    plan: &BuildPlan,
    number: i64,
    sourcestamps: &[crate::model::SourceStamp],
    buildset_properties: &Properties,
) -> Properties {
    let mut properties = ctx.config.current().properties.clone();
    for (name, value) in &plan.builder_properties {
        properties.set(name.clone(), value.clone(), "Builder");
    }
    for (name, value) in &plan.worker_properties {
        properties.set(name.clone(), value.clone(), "Worker");
    }
    properties.update(buildset_properties);
    for change in sourcestamps.iter().flat_map(|ss| ss.changes.iter()) {
        for (name, value) in &change.properties {
            properties.set(name.clone(), value.clone(), "Change");
        }
    }
    if let Some(ss) = sourcestamps.first() {
        let text = |v: &Option<String>| v.clone().map(Value::String).unwrap_or(Value::Null);
        properties.set("branch", text(&ss.branch), "Build");
        properties.set("revision", text(&ss.revision), "Build");
        properties.set("repository", Value::String(ss.repository.clone()), "Build");
        properties.set("project", Value::String(ss.project.clone()), "Build");
        properties.set("codebase", Value::String(ss.codebase.clone()), "Build");
    }
    let defaults = [
        (&plan.builder_default_properties, "Builder"),
        (&plan.worker_default_properties, "Worker"),
    ];
    for (values, source) in defaults {
        for (name, value) in values {
            if !properties.has(name) {
                properties.set(name.clone(), value.clone(), source);
            }
        }
    }
    properties.set(
        "buildername",
        Value::String(plan.builder_name.clone()),
        "Builder",
    );
    properties.set("buildnumber", Value::from(number), "Build");
    properties.set(
        "workername",
        Value::String(plan.worker_name.clone()),
        "Worker",
    );
    properties.set(
        "builddir",
        Value::String(plan.builder_dir.display().to_string()),
        "Worker",
    );
    properties
}

/// Carries the properties that changed since the last write to the next one (steps set
/// a few; most never change after the build starts).
fn carry_changed_properties(build: &RunningBuild, stored: &mut Properties, carried: &mut Carried) {
    let mut changed = Properties::new();
    {
        // Compared in place: a copy of every property after each step cost more than
        // the few that change.
        let current = build.properties.lock().unwrap_or_else(|e| e.into_inner());
        for (name, value) in current.values() {
            let source = current.source(name).unwrap_or_default();
            if stored.get(name) != Some(value) || stored.source(name) != Some(source) {
                changed.set(name, value.clone(), source);
            }
        }
    }
    stored.update(&changed);
    carried.set_properties(&changed);
}
