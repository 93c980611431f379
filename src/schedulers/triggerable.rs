//! Triggerable: builds when a Trigger step asks, as Buildbot's `Triggerable.trigger`.

use crate::config::build::SchedulerConfig;
use crate::db::SourceStampSpec;
use crate::model::Properties;
use crate::runtime::{Context, ControlError, Submitted};

use super::{priority, stamps_with_defaults, submit, Request};

/// What a Trigger step sends to a Triggerable scheduler.
#[derive(Clone, Debug, Default)]
pub struct TriggerRequest {
    /// The triggering build's sourcestamps (with `got_revision` when `updateSourceStamp`),
    /// or the step's `sourceStamps`; codebases of the scheduler not among them get their
    /// defaults.
    pub sourcestamps: Vec<SourceStampSpec>,
    /// The step's `set_properties` and `copy_properties`, rendered, source "Trigger". They
    /// override the scheduler's own; a `reason` among them is the buildset's reason.
    pub properties: Properties,
    pub parent_buildid: Option<i64>,
    /// Buildbot's default is "Triggered from".
    pub parent_relationship: Option<String>,
    /// The step waits for the builds (`waitForFinish`).
    pub waited_for: bool,
}

/// Submits a buildset for the Triggerable scheduler `scheduler_name`. The caller waits for
/// `buildsets/ID/complete` on the bus when it wants the results.
pub async fn trigger(
    ctx: &Context,
    scheduler_name: &str,
    request: TriggerRequest,
) -> Result<Submitted, ControlError> {
    let config = ctx.config.current();
    let scheduler = config
        .schedulers
        .iter()
        .find_map(|s| match s {
            SchedulerConfig::Triggerable(t) if t.base.name == scheduler_name => Some(t),
            _ => None,
        })
        .ok_or_else(|| {
            ControlError::not_found(format!("no Triggerable scheduler named '{scheduler_name}'"))
        })?;
    let base = &scheduler.base;
    let reason = request
        .properties
        .get("reason")
        .and_then(|r| r.as_str())
        .map(str::to_string)
        .or_else(|| scheduler.reason.clone())
        .unwrap_or_else(|| {
            format!("The Triggerable scheduler named '{scheduler_name}' triggered this build")
        });
    let stamps = stamps_with_defaults(base, request.sourcestamps, None);
    let priority = priority(ctx, base, &Default::default()).await;
    let buildset = Request {
        properties: request.properties,
        parent_buildid: request.parent_buildid,
        parent_relationship: request.parent_relationship,
        waited_for: request.waited_for,
        ..Request::new(reason, stamps, priority)
    };
    submit(ctx, base, buildset).await.map_err(|error| {
        tracing::error!(
            scheduler = scheduler_name,
            "cannot trigger a build: {error}"
        );
        ControlError {
            status: 500,
            message: format!("scheduler '{scheduler_name}' could not submit the buildset"),
        }
    })
}
