//! Force schedulers as the data API shows them: read from the config, not storage, with
//! the form's fields described as Buildbot's `getSpec` describes them.

use serde_json::{json, Map, Value};

use super::query::{Entity, FieldType as F};
use crate::config::build::{
    CodebaseParameter, ForceParameter, ForceScheduler, ParameterKind, SchedulerConfig,
};
use crate::config::MasterConfig;

pub const FORCESCHEDULER: Entity = Entity {
    name: "forcescheduler",
    plural: "forceschedulers",
    fields: &[
        ("name", F::String),
        ("button_name", F::String),
        ("label", F::String),
        ("builder_names", F::StringList),
        ("enabled", F::Boolean),
        ("all_fields", F::Object),
    ],
};

/// The force schedulers of the config, or those that can build `builder`.
pub fn forceschedulers(config: &MasterConfig, builder: Option<&str>) -> Vec<Value> {
    force_schedulers(config)
        .filter(|s| builder.is_none_or(|b| s.base.builder_names.iter().any(|n| n == b)))
        .map(forcescheduler_json)
        .collect()
}

pub fn forcescheduler(config: &MasterConfig, name: &str) -> Option<Value> {
    named(config, name).map(forcescheduler_json)
}

/// The config's force scheduler `name`: what a force call needs, without the JSON that
/// describes its form (which cost a force more than the rest of its answer).
pub fn named<'a>(config: &'a MasterConfig, name: &str) -> Option<&'a ForceScheduler> {
    force_schedulers(config).find(|s| s.base.name == name)
}

fn force_schedulers(config: &MasterConfig) -> impl Iterator<Item = &ForceScheduler> {
    config.schedulers.iter().filter_map(|s| match s {
        SchedulerConfig::Force(force) => Some(force.as_ref()),
        _ => None,
    })
}

fn forcescheduler_json(scheduler: &ForceScheduler) -> Value {
    // The first group is Buildbot's anonymous nest of who, why and how urgent.
    let mut all_fields = vec![nested(
        "",
        None,
        "",
        false,
        vec![
            parameter(&scheduler.username, None),
            parameter(&scheduler.reason, None),
            parameter(&scheduler.priority, None),
        ],
        [&scheduler.username, &scheduler.reason, &scheduler.priority]
            .iter()
            .filter(|p| !p.hide)
            .count(),
    )];
    all_fields.extend(scheduler.codebases.iter().map(codebase));
    all_fields.extend(scheduler.properties.iter().map(|p| parameter(p, None)));
    json!({
        "name": scheduler.base.name,
        "button_name": scheduler.button_name,
        "label": scheduler.label,
        "builder_names": scheduler.base.builder_names,
        "enabled": true,
        "all_fields": all_fields,
    })
}

/// A codebase's nest: its fields in name order, named `CODEBASE_FIELD`.
fn codebase(codebase: &CodebaseParameter) -> Value {
    let parent = (!codebase.name.is_empty()).then_some(codebase.name.as_str());
    let mut fields: Vec<&ForceParameter> = [
        &codebase.branch,
        &codebase.project,
        &codebase.repository,
        &codebase.revision,
    ]
    .into_iter()
    .flatten()
    .collect();
    fields.sort_by(|a, b| a.name.cmp(&b.name));
    let visible = fields.iter().filter(|f| !f.hide).count();
    let label = codebase.label.as_deref().unwrap_or(&codebase.name);
    nested(
        &codebase.name,
        parent,
        label,
        codebase.hide,
        fields.into_iter().map(|f| parameter(f, parent)).collect(),
        visible,
    )
}

/// A `nested` group; Buildbot gives it two columns from four visible fields on.
fn nested(
    name: &str,
    full_name: Option<&str>,
    label: &str,
    hide: bool,
    fields: Vec<Value>,
    visible: usize,
) -> Value {
    json!({
        "name": name,
        "fullName": full_name,
        "label": label,
        "tablabel": label,
        "type": "nested",
        "default": "",
        "required": false,
        "multiple": false,
        "regex": null,
        "hide": hide,
        "maxsize": null,
        "autopopulate": null,
        "tooltip": "",
        "layout": "vertical",
        "columns": if visible >= 4 { 2 } else { 1 },
        "fields": fields,
    })
}

/// One field; inside a named nest its full name is `NEST_NAME`, the form key the force
/// request uses.
fn parameter(parameter: &ForceParameter, parent: Option<&str>) -> Value {
    let full_name = match parent {
        Some(parent) => format!("{parent}_{}", parameter.name),
        None => parameter.name.clone(),
    };
    let mut spec = Map::new();
    let mut put = |key: &str, value: Value| {
        spec.insert(key.to_string(), value);
    };
    put("name", json!(parameter.name));
    put("fullName", json!(full_name));
    put("label", json!(parameter.label));
    put("tablabel", json!(parameter.tablabel));
    put("default", parameter.default.clone());
    put("required", json!(parameter.required));
    put("regex", json!(parameter.regex.as_ref().map(|r| r.source())));
    put("hide", json!(parameter.hide));
    put("maxsize", json!(parameter.maxsize));
    put("autopopulate", Value::Null);
    put("tooltip", json!(parameter.tooltip));
    let mut multiple = false;
    let kind = match &parameter.kind {
        ParameterKind::Fixed => "fixed",
        ParameterKind::String { size } => {
            put("size", json!(size));
            "text"
        }
        ParameterKind::Text { cols, rows } => {
            put("size", json!(10));
            put("cols", json!(cols));
            put("rows", json!(rows));
            "textarea"
        }
        ParameterKind::Int { size } => {
            put("size", json!(size));
            "int"
        }
        ParameterKind::Boolean => "bool",
        ParameterKind::UserName { size, need_email } => {
            put("size", json!(size));
            put("need_email", json!(need_email));
            "username"
        }
        ParameterKind::Choice {
            choices,
            strict,
            multiple: many,
        } => {
            put("choices", json!(choices));
            put("strict", json!(strict));
            multiple = *many;
            "list"
        }
    };
    put("type", json!(kind));
    put("multiple", json!(multiple));
    Value::Object(spec)
}
