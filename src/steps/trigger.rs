//! The Trigger step: starts buildsets on Triggerable schedulers and, with `waitForFinish`,
//! waits for them and takes the worst of their results.

use std::time::Duration;

use serde_json::Value;

use super::{StepOutcome, StepRun};
use crate::bus::Topics;
use crate::config::build::TriggerStep;
use crate::db::SourceStampSpec;
use crate::model::{BuildResult, Properties};
use crate::schedulers::{self, TriggerRequest};

/// How often a waiting Trigger step checks storage, in case it missed the bus event.
const RECHECK: Duration = Duration::from_secs(5);

impl StepRun<'_> {
    pub async fn trigger(&self, step: &TriggerStep) -> Result<StepOutcome, String> {
        let build = self.build;
        let sourcestamps = self.trigger_sourcestamps(step).await?;
        let mut properties = Properties::new();
        let current = build.properties();
        for name in &step.copy_properties {
            if let Some(value) = current.get(name) {
                properties.set(name.clone(), value.clone(), "Trigger");
            }
        }
        for (name, value) in &step.set_properties {
            properties.set(name.clone(), build.render(value).await?, "Trigger");
        }
        // Subscribe before triggering, so no completion can be missed.
        let mut events = build
            .ctx
            .bus
            .subscribe_to(Topics::Only(&["buildsets/*/complete"]));
        let mut waiting = Vec::new();
        for name in &step.scheduler_names {
            let request = TriggerRequest {
                sourcestamps: sourcestamps.clone(),
                properties: properties.clone(),
                parent_buildid: Some(build.buildid),
                parent_relationship: Some(step.parent_relationship.clone()),
                waited_for: step.wait_for_finish,
            };
            let (bsid, _) = schedulers::trigger(&build.ctx, name, request)
                .await
                .map_err(|e| format!("cannot trigger '{name}': {e}"))?;
            if !step.unimportant_scheduler_names.contains(name) {
                waiting.push(bsid);
            }
        }
        if !step.wait_for_finish {
            return Ok(StepOutcome::of(BuildResult::Success));
        }
        let mut results = BuildResult::Success;
        for bsid in waiting {
            let key = format!("buildsets/{bsid}/complete");
            loop {
                if let Some(done) = build
                    .ctx
                    .db
                    .buildset_result(bsid)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    results = results.worst(done);
                    break;
                }
                tokio::select! {
                    _ = build.stop.cancelled() => return Ok(StepOutcome::of(BuildResult::Cancelled)),
                    _ = tokio::time::sleep(RECHECK) => {}
                    event = events.recv() => match event {
                        Ok(event) if event.key != key => continue,
                        _ => {}
                    },
                }
            }
        }
        Ok(StepOutcome::of(results))
    }

    /// What the triggered builds build: this build's sourcestamps at `got_revision`
    /// (`updateSourceStamp`), the step's own `sourceStamps`, or the latest
    /// (`alwaysUseLatest`).
    async fn trigger_sourcestamps(
        &self,
        step: &TriggerStep,
    ) -> Result<Vec<SourceStampSpec>, String> {
        let build = self.build;
        if !step.source_stamps.is_empty() {
            let mut specs = Vec::new();
            for stamp in &step.source_stamps {
                let mut spec = SourceStampSpec::default();
                for (key, value) in stamp {
                    let text = build.render_string(value).await?;
                    match key.as_str() {
                        "codebase" => spec.codebase = text,
                        "branch" => spec.branch = Some(text),
                        "revision" => spec.revision = Some(text),
                        "repository" => spec.repository = text,
                        "project" => spec.project = text,
                        _ => {}
                    }
                }
                specs.push(spec);
            }
            return Ok(specs);
        }
        let got_revision = build.properties().get("got_revision").cloned();
        Ok(build
            .sourcestamps
            .iter()
            .map(|ss| {
                let revision = if step.always_use_latest {
                    None
                } else if step.update_source_stamp {
                    match &got_revision {
                        Some(Value::String(rev)) => Some(rev.clone()),
                        Some(Value::Object(by_codebase)) => by_codebase
                            .get(&ss.codebase)
                            .and_then(Value::as_str)
                            .map(String::from)
                            .or_else(|| ss.revision.clone()),
                        _ => ss.revision.clone(),
                    }
                } else {
                    ss.revision.clone()
                };
                SourceStampSpec {
                    codebase: ss.codebase.clone(),
                    branch: ss.branch.clone(),
                    revision,
                    repository: ss.repository.clone(),
                    project: ss.project.clone(),
                }
            })
            .collect())
    }
}
