//! ForceScheduler: a build asked for through the force form or the API, its parameters
//! checked as Buildbot's `ForceScheduler.force` checks them.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::{stamps_with_defaults, submit, KnownBuilders, Request};
use crate::config::build::{ForceParameter, ForceScheduler, ParameterKind, SchedulerConfig};
use crate::db::SourceStampSpec;
use crate::model::Properties;
use crate::runtime::{Context, ControlError, Submitted};

/// The source of the properties a forced build gets.
const SOURCE: &str = "Force Build Form";

/// What `UserNameParameter` with `need_email` looks for (Buildbot's `VALID_EMAIL_ADDR`).
static EMAIL: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?:\S+@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+\.?)").expect("valid pattern")
});

/// [`force`] for the ForceScheduler named `scheduler`, as `ControlRequest::Force` names it;
/// 404 when the config has none of that name.
pub async fn force_named(
    ctx: &Context,
    scheduler: &str,
    params: Map<String, Value>,
    known: KnownBuilders<'_>,
) -> Result<Submitted, ControlError> {
    let current = ctx.config.current();
    let config = current
        .schedulers
        .iter()
        .find_map(|s| match s {
            SchedulerConfig::Force(force) if force.base.name == scheduler => Some(force),
            _ => None,
        })
        .ok_or_else(|| ControlError::not_found(format!("no ForceScheduler named '{scheduler}'")))?;
    force(ctx, config, params, known).await
}

/// Forces a build with `params`, the force request's parameters: `builderNames` (or
/// `builderid`), `owner` (the logged-in user; absent or `"anonymous"` takes the `username`
/// field), `reason`, `priority`, each codebase's fields (`branch`, or `CODEBASE_branch` for
/// a named codebase) and the scheduler's `properties` fields by name. Every bad field is
/// reported, in a 400 error naming each.
pub async fn force(
    ctx: &Context,
    scheduler: &ForceScheduler,
    params: Map<String, Value>,
    known: KnownBuilders<'_>,
) -> Result<Submitted, ControlError> {
    let builders = builders(ctx, scheduler, &params, known).await?;
    let mut errors: BTreeMap<String, String> = BTreeMap::new();
    let mut field = |parameter: &ForceParameter, full_name: &str| {
        value(parameter, params.get(full_name))
            .map_err(|message| errors.insert(full_name.to_string(), message))
            .ok()
    };
    let reason = field(&scheduler.reason, &scheduler.reason.name);
    let owner = match params.get("owner") {
        Some(Value::String(owner)) if owner != "anonymous" => Some(Value::from(owner.clone())),
        _ => field(&scheduler.username, &scheduler.username.name),
    };
    let priority = field(&scheduler.priority, &scheduler.priority.name);
    let mut properties = Properties::new();
    for parameter in &scheduler.properties {
        if let Some(value) = field(parameter, &parameter.name) {
            properties.set(parameter.name.clone(), value, SOURCE);
        }
    }
    let mut sourcestamps = Vec::new();
    for codebase in &scheduler.codebases {
        let mut stamp = SourceStampSpec {
            codebase: codebase.codebase.clone(),
            ..SourceStampSpec::default()
        };
        let slots = [
            (&codebase.branch, &mut stamp.branch),
            (&codebase.revision, &mut stamp.revision),
        ];
        for (parameter, slot) in slots {
            if let Some(parameter) = parameter {
                let full_name = nested_name(&codebase.name, &parameter.name);
                *slot = field(parameter, &full_name)
                    .map(|v| text(&v))
                    .filter(|v| !v.is_empty());
            }
        }
        let slots = [
            (&codebase.repository, &mut stamp.repository),
            (&codebase.project, &mut stamp.project),
        ];
        for (parameter, slot) in slots {
            if let Some(parameter) = parameter {
                let full_name = nested_name(&codebase.name, &parameter.name);
                *slot = field(parameter, &full_name)
                    .map(|v| text(&v))
                    .unwrap_or_default();
            }
        }
        sourcestamps.push(stamp);
    }
    if !errors.is_empty() {
        let list: Vec<String> = errors
            .iter()
            .map(|(name, message)| format!("{name}: {message}"))
            .collect();
        return Err(ControlError::bad_request(list.join("; ")));
    }
    let (reason, owner) = (reason.unwrap_or_default(), owner.unwrap_or_default());
    properties.set("reason", reason.clone(), SOURCE);
    properties.set("owner", owner.clone(), SOURCE);
    let reason_text = scheduler
        .reason_string
        .replace("%(owner)s", &text(&owner))
        .replace("%(reason)s", &text(&reason))
        .replace("%%", "%");
    let base = &scheduler.base;
    let request = Request {
        properties,
        builders: Some(builders),
        ..Request::new(
            reason_text,
            stamps_with_defaults(base, sourcestamps, None),
            priority.and_then(|p| p.as_i64()).unwrap_or(0),
        )
    };
    submit(ctx, base, request).await.map_err(|error| {
        tracing::error!(scheduler = %base.name, "cannot force a build: {error}");
        ControlError {
            status: 500,
            message: format!("scheduler '{}' could not submit the buildset", base.name),
        }
    })
}

/// The builders to build, with their ids: `builderNames` (each one of the scheduler's, or
/// the whole call is refused), the one `builderid` names, or all of the scheduler's.
async fn builders(
    ctx: &Context,
    scheduler: &ForceScheduler,
    params: &Map<String, Value>,
    known: KnownBuilders<'_>,
) -> Result<Vec<(String, i64)>, ControlError> {
    let own = &scheduler.base.builder_names;
    let id_of = |name: &str| {
        let name = name.to_owned();
        async move {
            super::builder_id(ctx, known, &name).await.map_err(|error| {
                tracing::error!("cannot read builder '{name}': {error}");
                ControlError {
                    status: 500,
                    message: "cannot read the builders".into(),
                }
            })
        }
    };
    let mut builders = Vec::new();
    if let Some(requested) = params.get("builderNames") {
        let mut requested: Vec<String> =
            serde_json::from_value(requested.clone()).map_err(|_| {
                ControlError::bad_request("builderNames: must be a list of builder names")
            })?;
        let unknown: Vec<&str> = requested
            .iter()
            .filter(|name| !own.contains(name))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(ControlError::bad_request(format!(
                "builderNames: scheduler '{}' has no builder named '{}' (its builders: {})",
                scheduler.base.name,
                unknown.join("', '"),
                own.join(", ")
            )));
        }
        requested.sort();
        requested.dedup();
        for name in requested {
            let id = id_of(&name).await?;
            builders.push((name, id));
        }
    } else if let Some(builderid) = params.get("builderid") {
        let builderid = builderid
            .as_i64()
            .or_else(|| builderid.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| ControlError::bad_request("builderid: must be a builder id"))?;
        for name in own {
            if id_of(name).await? == builderid {
                builders.push((name.clone(), builderid));
            }
        }
    } else {
        for name in own {
            let id = id_of(name).await?;
            builders.push((name.clone(), id));
        }
    }
    if builders.is_empty() {
        return Err(ControlError::bad_request(format!(
            "builderNames not specified or not supported by scheduler '{}'",
            scheduler.base.name
        )));
    }
    Ok(builders)
}

/// A codebase field's name in the request: `CODEBASE_FIELD`, or the field alone for the
/// unnamed codebase (Buildbot's `fullName`).
fn nested_name(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}_{name}")
    }
}

/// A value as text: strings as they are, anything else as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Buildbot's `BaseParameter.getFromKwargs`: the given value (blank counts as not given)
/// or the default, checked against `required`, `regex` and `maxsize`, then converted to
/// the parameter's type.
fn value(parameter: &ForceParameter, given: Option<&Value>) -> Result<Value, String> {
    let label = &parameter.label;
    if parameter.kind == ParameterKind::Boolean {
        return Ok(Value::Bool(match given {
            None => parameter.default == Value::Bool(true),
            Some(Value::Array(values)) => values.as_slice() == [Value::Bool(true)],
            Some(value) => *value == Value::Bool(true),
        }));
    }
    let mut args: Vec<Value> = match given {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values.clone(),
        Some(value) => vec![value.clone()],
    };
    args.retain(|arg| !matches!(arg, Value::String(s) if s.trim().is_empty()) && !arg.is_null());
    let multiple = matches!(parameter.kind, ParameterKind::Choice { multiple: true, .. });
    if args.is_empty() {
        if parameter.required {
            return Err(format!("'{label}' needs to be specified"));
        }
        args = match (&parameter.default, multiple) {
            (Value::Array(defaults), true) => defaults.clone(),
            (default, _) => vec![default.clone()],
        };
    }
    let texts: Vec<String> = args.iter().map(text).collect();
    if let Some(regex) = &parameter.regex {
        if let Some(bad) = texts.iter().find(|t| !regex.matches_start(t)) {
            return Err(format!(
                "{label}:'{bad}' does not match pattern '{}'",
                regex.source()
            ));
        }
    }
    if let Some(maxsize) = parameter.maxsize {
        if let Some(big) = texts.iter().find(|t| t.len() as u64 > maxsize) {
            return Err(format!("{label}: is too large {} > {maxsize}", big.len()));
        }
    }
    let first = &texts[0];
    match &parameter.kind {
        ParameterKind::Fixed => Ok(parameter.default.clone()),
        ParameterKind::String { .. } | ParameterKind::Text { .. } => Ok(Value::from(first.clone())),
        ParameterKind::Int { .. } => match &args[0] {
            Value::Number(n) if n.is_i64() => Ok(Value::from(n.as_i64())),
            _ => first
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("{label}: '{first}' is not an integer")),
        },
        ParameterKind::UserName { need_email, .. } => {
            let may_be_blank = first.is_empty() && !parameter.required;
            if *need_email && !may_be_blank && !EMAIL.is_match(first) {
                return Err(
                    "please fill in email address in the form 'User <email@email.com>'".into(),
                );
            }
            Ok(Value::from(first.clone()))
        }
        ParameterKind::Choice {
            choices, strict, ..
        } => {
            if *strict {
                if let Some(bad) = texts.iter().find(|t| !choices.contains(t)) {
                    return Err(format!(
                        "'{bad}' does not belong to list of available choices '{}'",
                        choices.join("', '")
                    ));
                }
            }
            Ok(if multiple {
                Value::from(texts)
            } else {
                Value::from(first.clone())
            })
        }
        // Checked apart above, as Buildbot does; a boolean given as text reads this way.
        ParameterKind::Boolean => Ok(Value::Bool(first == "true")),
    }
}
