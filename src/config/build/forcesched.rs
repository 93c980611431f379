//! `schedulers.ForceScheduler` and the parameters of its form (`util.StringParameter`, ...).

use mlua::{Lua, MultiValue, UserData, Value};

use super::schedulers::{base, SchedulerBase, SchedulerConfig};
use super::values::{read_args, CodebaseDefaults, Codebases, Pattern};
use super::workers::is_identifier;
use crate::config::kwargs::{constructor, describe, mismatch, FromOption, Kwargs, OptionError};
use crate::config::{define, ClassOptions, Location, Namespaces};

/// One field of the force form.
#[derive(Clone, Debug)]
pub struct ForceParameter {
    pub kind: ParameterKind,
    /// The property (or codebase attribute) it sets.
    pub name: String,
    pub label: String,
    /// The tab's title when the parameter is a tab of the form.
    pub tablabel: String,
    pub default: serde_json::Value,
    pub required: bool,
    /// The value must match this.
    pub regex: Option<Pattern>,
    pub hide: bool,
    pub tooltip: String,
    /// The longest value accepted, in bytes.
    pub maxsize: Option<u64>,
    pub location: Location,
}

impl UserData for ForceParameter {}
crate::config_object!(
    ForceParameter,
    "force parameter (util.StringParameter{...}, ...)"
);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParameterKind {
    /// Not shown; always its default.
    Fixed,
    String {
        size: u32,
    },
    Text {
        cols: u32,
        rows: u32,
    },
    Int {
        size: u32,
    },
    Boolean,
    /// Who forced the build; `need_email` wants `Name <address>`.
    UserName {
        size: u32,
        need_email: bool,
    },
    /// One of `choices` (or several, with `multiple`); `strict` refuses others.
    Choice {
        choices: Vec<String>,
        strict: bool,
        multiple: bool,
    },
}

/// The options of Buildbot's `BaseParameter`.
macro_rules! parameter_options {
    ($($extra:literal),* $(,)?) => {
        &[
            "name",
            "label",
            "tablabel",
            "default",
            "required",
            "regex",
            "hide",
            "tooltip",
            "maxsize",
            $($extra,)*
        ]
    };
}

pub const FIXED_PARAMETER_OPTIONS: &[&str] = parameter_options!();
pub const STRING_PARAMETER_OPTIONS: &[&str] = parameter_options!("size");
pub const TEXT_PARAMETER_OPTIONS: &[&str] = parameter_options!("cols", "rows");
pub const INT_PARAMETER_OPTIONS: &[&str] = parameter_options!("size");
pub const BOOLEAN_PARAMETER_OPTIONS: &[&str] = parameter_options!();
pub const USER_NAME_PARAMETER_OPTIONS: &[&str] = parameter_options!("size", "need_email");
pub const CHOICE_STRING_PARAMETER_OPTIONS: &[&str] =
    parameter_options!("choices", "strict", "multiple");

/// Parameter names the force form uses itself.
const RESERVED_NAMES: &[&str] = &["owner", "builderNames", "builderid"];

/// The parameter classes, by the name users write.
pub(super) const PARAMETER_CLASSES: &[ClassOptions] = &[
    ClassOptions {
        name: "util.FixedParameter",
        options: FIXED_PARAMETER_OPTIONS,
    },
    ClassOptions {
        name: "util.StringParameter",
        options: STRING_PARAMETER_OPTIONS,
    },
    ClassOptions {
        name: "util.TextParameter",
        options: TEXT_PARAMETER_OPTIONS,
    },
    ClassOptions {
        name: "util.IntParameter",
        options: INT_PARAMETER_OPTIONS,
    },
    ClassOptions {
        name: "util.BooleanParameter",
        options: BOOLEAN_PARAMETER_OPTIONS,
    },
    ClassOptions {
        name: "util.UserNameParameter",
        options: USER_NAME_PARAMETER_OPTIONS,
    },
    ClassOptions {
        name: "util.ChoiceStringParameter",
        options: CHOICE_STRING_PARAMETER_OPTIONS,
    },
];

impl ForceParameter {
    /// A parameter with Buildbot's defaults for its kind.
    fn new(kind: ParameterKind, name: &str, label: Option<&str>) -> ForceParameter {
        let default = match kind {
            ParameterKind::Int { .. } => serde_json::json!(0),
            ParameterKind::Boolean => serde_json::json!(false),
            ParameterKind::Choice { multiple: true, .. } => serde_json::json!([]),
            _ => serde_json::json!(""),
        };
        let label = label.unwrap_or(name).to_string();
        ForceParameter {
            kind,
            name: name.to_string(),
            tablabel: label.clone(),
            label,
            default,
            required: false,
            regex: None,
            hide: false,
            tooltip: String::new(),
            maxsize: None,
            location: Location::default(),
        }
    }

    fn string(name: &str, label: Option<&str>, size: u32) -> ForceParameter {
        ForceParameter::new(ParameterKind::String { size }, name, label)
    }

    fn fixed(name: &str, value: String) -> ForceParameter {
        ForceParameter {
            default: serde_json::Value::String(value),
            hide: true,
            ..ForceParameter::new(ParameterKind::Fixed, name, None)
        }
    }

    fn user_name() -> ForceParameter {
        ForceParameter::new(
            ParameterKind::UserName {
                size: 30,
                need_email: true,
            },
            "username",
            Some("Your name:"),
        )
    }
}

/// Reads one parameter class; `name` is required except for UserNameParameter.
fn parameter(
    lua: &Lua,
    class: &'static str,
    options: &'static [&'static str],
    args: MultiValue,
) -> Option<ForceParameter> {
    let mut kw = read_args(lua, class, args, &["name", "label"], &[], &[], options);
    let name = if class == "UserNameParameter" {
        kw.optional("name")
            .unwrap_or_else(|| "username".to_string())
    } else {
        kw.required::<String>("name")
    };
    if RESERVED_NAMES.contains(&name.as_str()) {
        kw.error(format!(
            "'{name}' cannot be a parameter name: the force form uses it"
        ));
    }
    let label: Option<String> = kw.optional("label");
    let default_label = (class == "UserNameParameter").then_some("Your name:");
    let kind = match class {
        "FixedParameter" => ParameterKind::Fixed,
        "StringParameter" => ParameterKind::String {
            size: kw.optional_or("size", 10),
        },
        "TextParameter" => ParameterKind::Text {
            cols: kw.optional_or("cols", 80),
            rows: kw.optional_or("rows", 20),
        },
        "IntParameter" => ParameterKind::Int {
            size: kw.optional_or("size", 10),
        },
        "BooleanParameter" => ParameterKind::Boolean,
        "UserNameParameter" => ParameterKind::UserName {
            size: kw.optional_or("size", 30),
            need_email: kw.optional_or("need_email", true),
        },
        _ => ParameterKind::Choice {
            choices: kw.optional("choices").unwrap_or_default(),
            strict: kw.optional_or("strict", true),
            multiple: kw.optional_or("multiple", false),
        },
    };
    let mut parameter = ForceParameter::new(kind, &name, label.as_deref().or(default_label));
    if let Some(default) = kw.raw("default") {
        match parameter_default(&parameter.kind, default, lua) {
            Ok(value) => parameter.default = value,
            Err(why) => kw.error(format!("option 'default' {why}")),
        }
    }
    parameter.tablabel = kw
        .optional("tablabel")
        .unwrap_or_else(|| parameter.label.clone());
    parameter.required = kw.optional_or("required", false);
    parameter.regex = kw.optional("regex");
    parameter.hide = kw.optional_or("hide", matches!(parameter.kind, ParameterKind::Fixed));
    parameter.tooltip = kw.optional("tooltip").unwrap_or_default();
    parameter.maxsize = kw.optional("maxsize");
    parameter.location = kw.location();
    kw.finish().then_some(parameter)
}

/// A parameter's `default`, of the type its kind produces.
fn parameter_default(
    kind: &ParameterKind,
    value: Value,
    lua: &Lua,
) -> Result<serde_json::Value, String> {
    fn typed<T: FromOption + Into<serde_json::Value>>(
        value: Value,
        lua: &Lua,
    ) -> Result<serde_json::Value, String> {
        match T::from_option(value, lua) {
            Ok(v) => Ok(v.into()),
            Err(OptionError::Wrong(why)) => Err(why),
            Err(OptionError::Reported) => Err("is invalid".into()),
        }
    }
    match kind {
        ParameterKind::Int { .. } => typed::<i64>(value, lua),
        ParameterKind::Boolean => typed::<bool>(value, lua),
        ParameterKind::Choice { multiple: true, .. } => typed::<Vec<String>>(value, lua),
        _ => typed::<String>(value, lua),
    }
}

// ---- CodebaseParameter -----------------------------------------------------------------

/// `util.CodebaseParameter`: the fields that make one codebase's sourcestamp.
#[derive(Clone, Debug)]
pub struct CodebaseParameter {
    pub codebase: String,
    pub name: String,
    pub label: Option<String>,
    /// Each `None` when turned off (`false`); a string makes a fixed value.
    pub branch: Option<ForceParameter>,
    pub revision: Option<ForceParameter>,
    pub repository: Option<ForceParameter>,
    pub project: Option<ForceParameter>,
    pub hide: bool,
    pub location: Location,
}

impl UserData for CodebaseParameter {}
crate::config_object!(CodebaseParameter, "util.CodebaseParameter");

pub const CODEBASE_PARAMETER_OPTIONS: &[&str] = &[
    "codebase",
    "name",
    "label",
    "branch",
    "revision",
    "repository",
    "project",
    "patch",
    "hide",
];

const CODEBASE_FIELDS: [&str; 4] = ["branch", "revision", "repository", "project"];

/// Buildbot's field for a codebase attribute: a text box labelled `Branch:` and so on.
fn default_field(field: &str) -> ForceParameter {
    let label = format!("{}{}:", field[..1].to_uppercase(), &field[1..]);
    ForceParameter::string(field, Some(&label), 10)
}

/// `CodebaseParameter{codebase=name}` with every field at its default.
fn default_codebase(codebase: String) -> CodebaseParameter {
    CodebaseParameter {
        label: (!codebase.is_empty()).then(|| format!("Codebase: {codebase}")),
        name: codebase.clone(),
        codebase,
        branch: Some(default_field("branch")),
        revision: Some(default_field("revision")),
        repository: Some(default_field("repository")),
        project: Some(default_field("project")),
        hide: false,
        location: Location::default(),
    }
}

/// A codebase field: absent for the default text box, `false` for none, a string for a
/// fixed value, or a parameter.
fn codebase_field(kw: &mut Kwargs, field: &str) -> Option<ForceParameter> {
    let Some(value) = kw.raw(field) else {
        return Some(default_field(field));
    };
    match &value {
        Value::Boolean(false) => None,
        Value::String(s) => Some(ForceParameter::fixed(field, s.to_string_lossy())),
        _ => match ForceParameter::from_option(value.clone(), kw.lua()) {
            Ok(parameter) => Some(parameter),
            Err(OptionError::Wrong(_)) => {
                kw.error(format!(
                    "option '{field}' must be a force parameter, a fixed value (a string) or false, got {}",
                    describe(&value)
                ));
                None
            }
            Err(OptionError::Reported) => None,
        },
    }
}

/// A codebase whose fields come from the options of `kw`.
fn codebase_fields(kw: &mut Kwargs, codebase: String, location: Location) -> CodebaseParameter {
    let [branch, revision, repository, project] = CODEBASE_FIELDS.map(|f| codebase_field(kw, f));
    CodebaseParameter {
        branch,
        revision,
        repository,
        project,
        location,
        ..default_codebase(codebase)
    }
}

fn codebase_parameter(lua: &Lua, args: MultiValue) -> Option<CodebaseParameter> {
    let mut kw = read_args(
        lua,
        "CodebaseParameter",
        args,
        &["codebase"],
        &[],
        &[],
        CODEBASE_PARAMETER_OPTIONS,
    );
    let codebase: String = kw.required("codebase");
    let location = kw.location();
    let mut parameter = codebase_fields(&mut kw, codebase, location);
    if let Some(name) = kw.optional("name") {
        parameter.name = name;
    }
    if let Some(label) = kw.optional("label") {
        parameter.label = Some(label);
    }
    parameter.hide = kw.optional_or("hide", false);
    kw.unimplemented("patch");
    kw.finish().then_some(parameter)
}

/// An item of `codebases`: a codebase name or a CodebaseParameter.
struct CodebaseItem(CodebaseParameter);

impl FromOption for CodebaseItem {
    fn expected() -> String {
        "a codebase name or a util.CodebaseParameter".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::String(s) => Ok(CodebaseItem(default_codebase(s.to_string_lossy()))),
            _ => CodebaseParameter::from_option(value.clone(), lua)
                .map(CodebaseItem)
                .map_err(|e| match e {
                    OptionError::Wrong(_) => mismatch::<Self>(&value),
                    reported => reported,
                }),
        }
    }
}

// ---- ForceScheduler --------------------------------------------------------------------

/// `ForceScheduler`: builds on request from the web form or the API.
#[derive(Clone, Debug)]
pub struct ForceScheduler {
    /// `properties` and `codebases` there are derived from the form's codebases.
    pub base: SchedulerBase,
    pub reason: ForceParameter,
    /// The build's reason, from `%(owner)s` and `%(reason)s`.
    pub reason_string: String,
    pub username: ForceParameter,
    pub priority: ForceParameter,
    pub codebases: Vec<CodebaseParameter>,
    /// Extra fields, each setting the build property of its name.
    pub properties: Vec<ForceParameter>,
    pub button_name: String,
    pub label: String,
}

pub const FORCE_SCHEDULER_OPTIONS: &[&str] = &[
    "name",
    "builderNames",
    "reason",
    "reasonString",
    "username",
    "branch",
    "revision",
    "repository",
    "project",
    "codebases",
    "properties",
    "buttonName",
    "label",
    "priority",
];

fn force_scheduler(lua: &Lua, args: MultiValue) -> Option<SchedulerConfig> {
    let mut kw = read_args(
        lua,
        "ForceScheduler",
        args,
        &["name", "builderNames"],
        &["builderNames"],
        &[],
        FORCE_SCHEDULER_OPTIONS,
    );
    let mut base = base(&mut kw, false);
    if !base.name.is_empty() && !is_identifier(&base.name) {
        kw.error(format!(
            "the name '{}' must be an identifier (letters, digits, '_' and '-', not starting with a digit)",
            base.name
        ));
    }
    let reason = kw.optional("reason").unwrap_or_else(|| ForceParameter {
        default: serde_json::json!("force build"),
        ..ForceParameter::string("reason", None, 20)
    });
    let username = kw
        .optional("username")
        .unwrap_or_else(ForceParameter::user_name);
    let priority = match kw.optional::<ForceParameter>("priority") {
        Some(p) if !matches!(p.kind, ParameterKind::Int { .. }) => {
            kw.error("option 'priority' must be a util.IntParameter");
            p
        }
        Some(p) => p,
        None => ForceParameter::new(ParameterKind::Int { size: 10 }, "priority", None),
    };

    // 0.8's branch/revision/repository/project options describe the one unnamed codebase.
    let legacy: Vec<&str> = CODEBASE_FIELDS.into_iter().filter(|f| kw.has(f)).collect();
    let codebases = match kw.optional::<Vec<CodebaseItem>>("codebases") {
        Some(items) if items.is_empty() => {
            kw.error("option 'codebases' must not be empty (use {util.CodebaseParameter{codebase='', hide=true}})");
            Vec::new()
        }
        Some(items) => {
            for field in &legacy {
                kw.raw(field);
            }
            if let Some(first) = legacy.first() {
                kw.error(format!(
                    "options '{first}' and 'codebases' cannot be given together: give the codebase's fields in util.CodebaseParameter"
                ));
            }
            items.into_iter().map(|i| i.0).collect()
        }
        None => {
            let location = kw.location();
            vec![codebase_fields(&mut kw, String::new(), location)]
        }
    };
    base.codebases = Codebases(
        codebases
            .iter()
            .map(|c| (c.codebase.clone(), CodebaseDefaults::default()))
            .collect(),
    );
    let scheduler = ForceScheduler {
        reason,
        reason_string: kw
            .optional("reasonString")
            .unwrap_or_else(|| "A build was forced by '%(owner)s': %(reason)s".into()),
        username,
        priority,
        codebases,
        properties: kw.optional("properties").unwrap_or_default(),
        button_name: kw
            .optional("buttonName")
            .unwrap_or_else(|| base.name.clone()),
        label: kw.optional("label").unwrap_or_else(|| base.name.clone()),
        base,
    };
    kw.finish()
        .then(|| SchedulerConfig::Force(Box::new(scheduler)))
}

pub(super) fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    define(
        &ns.schedulers,
        "ForceScheduler",
        constructor(lua, "scheduler", force_scheduler)?,
    )?;
    for class in PARAMETER_CLASSES {
        let short = class
            .name
            .strip_prefix("util.")
            .expect("parameter classes live in util");
        let options = class.options;
        define(
            &ns.util,
            short,
            constructor(lua, "force parameter", move |lua, args| {
                parameter(lua, short, options, args)
            })?,
        )?;
    }
    define(
        &ns.util,
        "CodebaseParameter",
        constructor(lua, "util.CodebaseParameter", codebase_parameter)?,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::config::build::testing::*;
    use crate::config::build::*;

    #[test]
    fn force_scheduler_takes_every_option() {
        let s = scheduler(
            r#"schedulers.ForceScheduler{name="force", builderNames={"b", "b2"}, buttonName="Go",
  label="Force it", reasonString="%(owner)s: %(reason)s",
  reason=util.StringParameter{name="reason", label="Why:", default="because", size=40, required=true},
  username=util.UserNameParameter{label="Who:", need_email=false, size=20},
  priority=util.IntParameter{name="priority", default=2},
  codebases={util.CodebaseParameter{codebase="", branch=util.ChoiceStringParameter{name="branch",
      choices={"main", "dev"}, default="main", strict=false}, revision=false, repository="https://r",
      project="p", hide=true, label="Main", name="main"}, "lib"},
  properties={util.BooleanParameter{name="clean", default=true, tooltip="Clobber first"},
    util.TextParameter{name="notes", cols=40, rows=5, regex="^[a-z]*$", maxsize=100},
    util.FixedParameter{name="fixed", default="x"},
    util.ChoiceStringParameter{name="targets", choices={"a", "b"}, multiple=true, default={"a"}},
    util.StringParameter("plain", "Plain:", {tablabel="Tab", hide=true})}}"#,
        );
        assert_eq!(s.kind(), "ForceScheduler");
        let SchedulerConfig::Force(f) = &s else {
            panic!()
        };
        assert_eq!(f.base.builder_names, ["b", "b2"]);
        assert_eq!(
            (f.button_name.as_str(), f.label.as_str()),
            ("Go", "Force it")
        );
        assert_eq!(f.reason_string, "%(owner)s: %(reason)s");
        assert_eq!(f.reason.kind, ParameterKind::String { size: 40 });
        assert_eq!(
            (f.reason.label.as_str(), f.reason.default.clone()),
            ("Why:", json!("because"))
        );
        assert!(f.reason.required);
        assert_eq!(
            f.username.kind,
            ParameterKind::UserName {
                size: 20,
                need_email: false
            }
        );
        assert_eq!(
            (f.username.name.as_str(), f.username.label.as_str()),
            ("username", "Who:")
        );
        assert_eq!(f.priority.kind, ParameterKind::Int { size: 10 });
        assert_eq!(f.priority.default, json!(2));

        let main = &f.codebases[0];
        assert_eq!((main.codebase.as_str(), main.name.as_str()), ("", "main"));
        assert_eq!(main.label.as_deref(), Some("Main"));
        assert!(main.hide && main.revision.is_none());
        let branch = main.branch.as_ref().unwrap();
        assert_eq!(
            branch.kind,
            ParameterKind::Choice {
                choices: vec!["main".into(), "dev".into()],
                strict: false,
                multiple: false
            }
        );
        assert_eq!(branch.default, json!("main"));
        let repository = main.repository.as_ref().unwrap();
        assert_eq!(repository.kind, ParameterKind::Fixed);
        assert_eq!(repository.default, json!("https://r"));
        assert_eq!(main.project.as_ref().unwrap().default, json!("p"));
        let lib = &f.codebases[1];
        assert_eq!(lib.label.as_deref(), Some("Codebase: lib"));
        assert_eq!(lib.branch.as_ref().unwrap().label, "Branch:");
        assert_eq!(f.base.codebases.0.keys().collect::<Vec<_>>(), ["", "lib"]);

        let [clean, notes, fixed, targets, plain] = &f.properties[..] else {
            panic!()
        };
        assert_eq!(
            (clean.kind.clone(), clean.default.clone()),
            (ParameterKind::Boolean, json!(true))
        );
        assert_eq!(clean.tooltip, "Clobber first");
        assert_eq!(notes.kind, ParameterKind::Text { cols: 40, rows: 5 });
        assert_eq!(notes.regex.as_ref().unwrap().source(), "^[a-z]*$");
        assert_eq!(notes.maxsize, Some(100));
        assert_eq!(
            (fixed.kind.clone(), fixed.hide),
            (ParameterKind::Fixed, true)
        );
        assert_eq!(targets.default, json!(["a"]));
        assert_eq!(
            (plain.name.as_str(), plain.label.as_str()),
            ("plain", "Plain:")
        );
        assert_eq!((plain.tablabel.as_str(), plain.hide), ("Tab", true));
    }

    #[test]
    fn force_scheduler_defaults_and_old_codebase_options() {
        let s = scheduler(r#"schedulers.ForceScheduler{name="force", builderNames={"b"}}"#);
        let SchedulerConfig::Force(f) = &s else {
            panic!()
        };
        assert_eq!(
            (f.button_name.as_str(), f.label.as_str()),
            ("force", "force")
        );
        assert_eq!(
            f.reason_string,
            "A build was forced by '%(owner)s': %(reason)s"
        );
        assert_eq!(f.reason.kind, ParameterKind::String { size: 20 });
        assert_eq!(
            (f.reason.name.as_str(), f.reason.default.clone()),
            ("reason", json!("force build"))
        );
        assert_eq!(f.username.label, "Your name:");
        assert_eq!(
            f.username.kind,
            ParameterKind::UserName {
                size: 30,
                need_email: true
            }
        );
        assert_eq!(f.priority.default, json!(0));
        assert_eq!(f.codebases.len(), 1);
        assert_eq!(f.codebases[0].codebase, "");
        assert!(f.codebases[0].label.is_none());
        assert_eq!(f.codebases[0].revision.as_ref().unwrap().label, "Revision:");
        assert!(f.properties.is_empty());
        assert_eq!(f.base.codebases, Codebases::default());

        // 0.8: branch/revision/repository/project describe the unnamed codebase.
        let s = scheduler(
            r#"schedulers.ForceScheduler{name="old", builderNames={"b"},
  branch=util.StringParameter{name="branch", default="main"}, revision=false, project="p"}"#,
        );
        let SchedulerConfig::Force(f) = &s else {
            panic!()
        };
        let cb = &f.codebases[0];
        assert_eq!(cb.branch.as_ref().unwrap().default, json!("main"));
        assert!(cb.revision.is_none());
        assert_eq!(cb.repository.as_ref().unwrap().label, "Repository:");
        assert_eq!(cb.project.as_ref().unwrap().kind, ParameterKind::Fixed);
    }

    #[test]
    fn codebase_patch_is_not_implemented_yet() {
        assert_eq!(
            unimplemented(
                "util.CodebaseParameter{codebase='', patch=util.StringParameter{name='patch'}}"
            ),
            ["master.cfg.lua:1: CodebaseParameter: option 'patch' is not implemented yet"]
        );
    }
}
