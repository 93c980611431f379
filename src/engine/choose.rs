//! The choices Buildbot lets a config make about pending requests: which request a builder
//! builds next (`nextBuild`), on which worker (`nextWorker`, `canStartBuild`), whether to
//! build it at all (`do_build_if`), and which older requests a new one collapses
//! (`collapseRequests`).
//!
//! Lua callbacks receive plain tables: a builder `{name, builderid}`, a worker
//! `{name, workername}`, a request `{buildrequestid, buildsetid, builderid, priority,
//! submitted_at}`.

use serde_json::{json, Value};

use crate::config::build::CollapseRequests;
use crate::db::{Db, DbResult, PendingRequest};
use crate::model::{BuildResult, Properties, SourceStamp};
use crate::runtime::Context;
use crate::script::{is_falsy, Arg, Callback};

pub fn builder_table(name: &str, id: i64) -> Value {
    json!({ "name": name, "builderid": id })
}

pub fn worker_table(name: &str) -> Value {
    json!({ "name": name, "workername": name })
}

pub fn request_table(request: &PendingRequest, builderid: i64) -> Value {
    json!({
        "buildrequestid": request.id,
        "buildsetid": request.buildsetid,
        "builderid": builderid,
        "priority": request.priority,
        "submitted_at": request.submitted_at,
    })
}

/// Calls a choosing callback; a failure is logged with its place and counts as `None`.
pub async fn call(
    ctx: &Context,
    what: &str,
    callback: &Callback,
    args: Vec<Value>,
) -> Option<Value> {
    let args = args.into_iter().map(Arg::Json).collect();
    match ctx.script.call::<Value>(callback, args).await {
        Ok(value) => Some(value),
        Err(error) => {
            tracing::warn!("{what} failed: {error}");
            None
        }
    }
}

pub async fn allowed(ctx: &Context, what: &str, callback: &Callback, args: Vec<Value>) -> bool {
    call(ctx, what, callback, args)
        .await
        .is_some_and(|value| !is_falsy(&value))
}

/// The older unclaimed requests of `builderid` that `newest` collapses, per the builder's
/// `collapseRequests`, else the config's (Buildbot's default: on).
pub async fn collapsible(
    ctx: &Context,
    rule: Option<&CollapseRequests>,
    builder: Value,
    builderid: i64,
    newest: &PendingRequest,
) -> DbResult<Vec<i64>> {
    if matches!(rule, Some(CollapseRequests::Value(false))) {
        return Ok(Vec::new());
    }
    let mut collapsed = Vec::new();
    for older in ctx.db.pending_requests(builderid).await? {
        if older.id >= newest.id {
            continue;
        }
        let (new_table, old_table) = (
            request_table(newest, builderid),
            request_table(&older, builderid),
        );
        let yes = match rule {
            Some(CollapseRequests::Function(f)) => {
                allowed(
                    ctx,
                    "collapseRequests",
                    f,
                    vec![Value::Null, builder.clone(), new_table, old_table],
                )
                .await
            }
            Some(CollapseRequests::MergeFunction(f)) => {
                allowed(
                    ctx,
                    "mergeRequests",
                    f,
                    vec![builder.clone(), new_table, old_table],
                )
                .await
            }
            _ => can_be_collapsed(&ctx.db, newest, &older).await?,
        };
        if yes {
            collapsed.push(older.id);
        }
    }
    Ok(collapsed)
}

/// Buildbot's `BuildRequest.canBeCollapsed`: same buildset, or the same codebases with the
/// same repository, branch and project, both with changes or the same revision, and the
/// same properties from the scheduler.
async fn can_be_collapsed(
    db: &Db,
    newest: &PendingRequest,
    older: &PendingRequest,
) -> DbResult<bool> {
    if newest.buildsetid == older.buildsetid {
        return Ok(true);
    }
    let mut new_stamps = db.buildset_sourcestamps(newest.buildsetid).await?;
    let mut old_stamps = db.buildset_sourcestamps(older.buildsetid).await?;
    let by_codebase =
        |stamps: &mut Vec<SourceStamp>| stamps.sort_by(|a, b| a.codebase.cmp(&b.codebase));
    by_codebase(&mut new_stamps);
    by_codebase(&mut old_stamps);
    if new_stamps.len() != old_stamps.len() {
        return Ok(false);
    }
    for (new, old) in new_stamps.iter().zip(&old_stamps) {
        let same = new.codebase == old.codebase
            && new.repository == old.repository
            && new.branch == old.branch
            && new.project == old.project
            && new.patch.is_none()
            && old.patch.is_none();
        let changes_agree = match (new.changes.is_empty(), old.changes.is_empty()) {
            (false, false) => true,
            (true, true) => new.revision == old.revision,
            _ => false,
        };
        if !same || !changes_agree {
            return Ok(false);
        }
    }
    let scheduler_properties = |properties: Properties| -> Vec<(String, Value)> {
        properties
            .values()
            .filter(|(name, _)| {
                *name != "scheduler" && properties.source(name) == Some("Scheduler")
            })
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect()
    };
    Ok(
        scheduler_properties(db.buildset_properties(newest.buildsetid).await?)
            == scheduler_properties(db.buildset_properties(older.buildsetid).await?),
    )
}

/// Completes requests without building them (collapsed, or refused by `do_build_if`).
pub async fn skip(ctx: &Context, ids: &[i64]) -> DbResult<()> {
    if ids.is_empty() || !ctx.db.claim_requests(ids, ctx.masterid.get()).await? {
        return Ok(());
    }
    super::complete_requests(ctx, ids, BuildResult::Skipped, "complete").await?;
    Ok(())
}
