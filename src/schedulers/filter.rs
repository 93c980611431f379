//! `util.ChangeFilter` applied to a change, as Buildbot's `ChangeFilter.filter_change`.

use std::sync::Arc;

use serde_json::Value;

use crate::config::build::{Branch, ChangeFilter, Codebases, FieldFilter, Pattern};
use crate::model::Change;
use crate::runtime::Context;
use crate::script::{Arg, Callback, ScriptError};

/// The options that decide whether a change-driven scheduler takes a change.
pub struct Intake<'a> {
    pub scheduler: &'a str,
    pub change_filter: Option<&'a ChangeFilter>,
    pub codebases: &'a Codebases,
    pub file_is_important: Option<&'a Callback>,
    pub only_important: bool,
}

/// Buildbot's `_changeCallback`: `None` when the change filter or the codebases leave the
/// change out, or `onlyImportant` drops it; otherwise whether it is important.
/// `fileIsImportant` decides that; a change whose callback fails is important (logged).
pub async fn take_change(ctx: &Context, intake: &Intake<'_>, change: &Arc<Change>) -> Option<bool> {
    if let Some(change_filter) = intake.change_filter {
        if !passes(ctx, change_filter, change).await {
            return None;
        }
    }
    if !intake.codebases.0.contains_key(&change.codebase) {
        tracing::info!(
            scheduler = intake.scheduler,
            "change {} is for codebase '{}', which this scheduler does not build",
            change.number,
            change.codebase
        );
        return None;
    }
    let important = match intake.file_is_important {
        None => true,
        Some(callback) => match predicate(ctx, callback, vec![Arg::Change(change.clone())]).await {
            Ok(important) => important,
            Err(error) => {
                tracing::warn!(
                    scheduler = intake.scheduler,
                    "fileIsImportant failed for change {}, taking it as important: {error}",
                    change.number
                );
                true
            }
        },
    };
    (important || !intake.only_important).then_some(important)
}

/// Calls a predicate the config gave (`fileIsImportant`, `filter_fn`, `branch_fn`, ...):
/// Lua's truth, where only `nil` and `false` are false.
pub async fn predicate(
    ctx: &Context,
    callback: &Callback,
    args: Vec<Arg>,
) -> Result<bool, ScriptError> {
    let value: Value = ctx.script.call(callback, args).await?;
    Ok(!matches!(value, Value::Null | Value::Bool(false)))
}

/// Whether `change` passes `filter`. A filter function that fails is logged and the change
/// does not pass, as in Buildbot where the exception drops it.
pub async fn passes(ctx: &Context, filter: &ChangeFilter, change: &Arc<Change>) -> bool {
    let text = |s: &str| Arg::Json(Value::String(s.to_string()));
    let functions = [
        (&filter.filter_fn, Arg::Change(change.clone())),
        (&filter.project.function, text(&change.project)),
        (&filter.codebase.function, text(&change.codebase)),
        (&filter.repository.function, text(&change.repository)),
        (
            &filter.category.function,
            Arg::Json(change.category.clone().map_or(Value::Null, Value::String)),
        ),
        (
            &filter.branch.function,
            Arg::Json(change.branch.clone().map_or(Value::Null, Value::String)),
        ),
    ];
    for (function, arg) in functions {
        let Some(function) = function else { continue };
        match predicate(ctx, function, vec![arg]).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(error) => {
                tracing::warn!(
                    change = change.number,
                    "change filter failed, skipping the change: {error}"
                );
                return false;
            }
        }
    }
    let branch = change.branch.as_deref();
    fields_pass(filter, change)
        && field_passes(&filter.branch, branch, |wanted, value| match wanted {
            Branch::Default => value.is_none(),
            Branch::Named(name) => value == Some(name.as_str()),
        })
        && properties_pass(filter, change)
}

fn fields_pass(filter: &ChangeFilter, change: &Change) -> bool {
    let same = |wanted: &String, value: Option<&str>| value == Some(wanted.as_str());
    field_passes(&filter.project, Some(&change.project), same)
        && field_passes(&filter.repository, Some(&change.repository), same)
        && field_passes(&filter.category, change.category.as_deref(), same)
        && field_passes(&filter.codebase, Some(&change.codebase), same)
}

/// One attribute's tests; a missing value (`None`) matches no pattern, as in Buildbot.
fn field_passes<V>(
    filter: &FieldFilter<V>,
    value: Option<&str>,
    equals: impl Fn(&V, Option<&str>) -> bool,
) -> bool {
    if let Some(eq) = &filter.eq {
        if !eq.iter().any(|wanted| equals(wanted, value)) {
            return false;
        }
    }
    if let Some(not_eq) = &filter.not_eq {
        if not_eq.iter().any(|unwanted| equals(unwanted, value)) {
            return false;
        }
    }
    let matches_any =
        |patterns: &[Pattern]| value.is_some_and(|v| patterns.iter().any(|p| p.matches_start(v)));
    (filter.re.is_empty() || matches_any(&filter.re))
        && (filter.not_re.is_empty() || !matches_any(&filter.not_re))
}

/// The `property_*` tests: a missing property reads as `""`; a value that is not a string
/// is compared by its JSON text.
fn properties_pass(filter: &ChangeFilter, change: &Change) -> bool {
    let value = |name: &str| -> String {
        match change.properties.iter().find(|(n, _)| n == name) {
            None => String::new(),
            Some((_, Value::String(s))) => s.clone(),
            Some((_, other)) => other.to_string(),
        }
    };
    let tests = &filter.properties;
    tests
        .eq
        .iter()
        .all(|(name, wanted)| wanted.contains(&value(name)))
        && tests
            .not_eq
            .iter()
            .all(|(name, unwanted)| !unwanted.contains(&value(name)))
        && tests
            .re
            .iter()
            .all(|(name, patterns)| patterns.iter().any(|p| p.matches_start(&value(name))))
        && tests
            .not_re
            .iter()
            .all(|(name, patterns)| !patterns.iter().any(|p| p.matches_start(&value(name))))
}
