//! Option value shapes the build side shares: branch names, regular expressions, "a value or
//! a function", codebase tables, cron fields.

use std::collections::BTreeMap;

use mlua::{Lua, Value};

use crate::config::kwargs::{describe, mismatch, FromOption, Kwargs, OptionError};
use crate::model::BuildResult;
use crate::script::Callback;

/// A branch as Buildbot names it. Lua has no `None` that survives in a table, so `false`
/// stands for Python's `branch=None`: the repository's default branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Branch {
    Default,
    Named(String),
}

impl FromOption for Branch {
    fn expected() -> String {
        "a branch name or false (the default branch)".into()
    }
    fn from_option(value: Value, _: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::String(s) => Ok(Branch::Named(s.to_string_lossy())),
            Value::Boolean(false) => Ok(Branch::Default),
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

/// A regular expression as written (Python syntax, checked with the `regex` crate, which
/// refuses the few Python forms it lacks, such as look-around).
#[derive(Clone, Debug)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
}

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, String> {
        regex::Regex::new(source)
            .map(|regex| Pattern {
                source: source.to_string(),
                regex,
            })
            .map_err(|e| {
                // The crate's message spans several lines (pattern, caret, error); keep the
                // last one, as config errors are one per line.
                let text = e.to_string();
                let why = text
                    .lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("error: "))
                    .unwrap_or(text.lines().last().unwrap_or_default())
                    .to_string();
                format!("is not a valid regular expression ('{source}'): {why}")
            })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Python's `re.match`: a match that starts at the beginning of `text`.
    pub fn matches_start(&self, text: &str) -> bool {
        self.regex.find(text).is_some_and(|m| m.start() == 0)
    }

    /// Python's `re.search`: a match anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }

    pub fn regex(&self) -> &regex::Regex {
        &self.regex
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl FromOption for Pattern {
    fn expected() -> String {
        "a regular expression (a string)".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        let source =
            String::from_option(value.clone(), lua).map_err(|_| mismatch::<Self>(&value))?;
        Pattern::new(&source).map_err(OptionError::Wrong)
    }
}

/// An option that takes a plain value or a Lua function deciding it (`doStepIf`,
/// `collapseRequests`, GitPoller's `category`).
#[derive(Clone, Debug)]
pub enum ValueOrFunction<T> {
    Value(T),
    Function(Callback),
}

impl<T: FromOption> FromOption for ValueOrFunction<T> {
    fn expected() -> String {
        format!("{} or a function", T::expected())
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::Function(_) => Callback::from_option(value, lua).map(ValueOrFunction::Function),
            _ => T::from_option(value.clone(), lua)
                .map(ValueOrFunction::Value)
                .map_err(|e| match e {
                    OptionError::Wrong(_) => mismatch::<Self>(&value),
                    reported => reported,
                }),
        }
    }
}

/// A duration in seconds that `false` turns off (Python's `None`), e.g. a step's `timeout`.
pub fn optional_seconds(kw: &mut Kwargs, name: &str, default: Option<u64>) -> Option<u64> {
    match kw.raw(name) {
        None => default,
        Some(Value::Boolean(false)) => None,
        Some(value) => match u64::from_option(value.clone(), kw.lua()) {
            Ok(seconds) => Some(seconds),
            Err(_) => {
                kw.error(format!(
                    "option '{name}' must be a number of seconds or false, got {}",
                    describe(&value)
                ));
                default
            }
        },
    }
}

/// What a scheduler fills in for a codebase that no change mentions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodebaseDefaults {
    pub branch: Option<String>,
    pub repository: Option<String>,
    pub revision: Option<String>,
}

/// A scheduler's `codebases`: a list of names, or a table of names to their defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Codebases(pub BTreeMap<String, CodebaseDefaults>);

impl Default for Codebases {
    /// Buildbot's `{'': {}}`: the one unnamed codebase.
    fn default() -> Self {
        Codebases(BTreeMap::from([(
            String::new(),
            CodebaseDefaults::default(),
        )]))
    }
}

const CODEBASE_KEYS: &[&str] = &["branch", "repository", "revision"];

impl FromOption for Codebases {
    fn expected() -> String {
        "a list of codebase names or a table of codebase names to {branch=, repository=, revision=}"
            .into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        let Value::Table(table) = &value else {
            return Err(mismatch::<Self>(&value));
        };
        if table.raw_len() > 0 {
            let names = Vec::<String>::from_option(value.clone(), lua)?;
            return Ok(Codebases(
                names
                    .into_iter()
                    .map(|n| (n, CodebaseDefaults::default()))
                    .collect(),
            ));
        }
        let tables = BTreeMap::<String, BTreeMap<String, String>>::from_option(value.clone(), lua)
            .map_err(|e| match e {
                OptionError::Wrong(_) => mismatch::<Self>(&value),
                reported => reported,
            })?;
        let mut codebases = BTreeMap::new();
        for (name, mut attrs) in tables {
            if let Some(key) = attrs.keys().find(|k| !CODEBASE_KEYS.contains(&k.as_str())) {
                return Err(OptionError::Wrong(format!(
                    "entry '{name}': {}",
                    crate::config::errors::unknown("key", key, CODEBASE_KEYS)
                )));
            }
            let defaults = CodebaseDefaults {
                branch: attrs.remove("branch"),
                repository: attrs.remove("repository"),
                revision: attrs.remove("revision"),
            };
            codebases.insert(name, defaults);
        }
        Ok(Codebases(codebases))
    }
}

/// A result code (`util.SUCCESS` ... `util.CANCELLED`).
pub(super) fn result_code(value: &Value, lua: &Lua) -> Option<BuildResult> {
    i64::from_option(value.clone(), lua)
        .ok()
        .and_then(BuildResult::from_code)
}

/// How messages ask for a result code.
pub(super) const RESULT_CODES: &str = "a result code (util.SUCCESS ... util.CANCELLED)";

/// Starts reading a constructor's arguments, settling what [`Kwargs`] cannot tell by itself:
/// whether a trailing table is the options table or a positional value. In the place of a
/// positional that never takes a table (a name, a URL) it is the options; in the place of one
/// that takes a list (`steps`, `command`, `builderNames`), a table that is not a list (keyed
/// by names, or empty) is the options too. Positionals in `any_table` may be any table (SetProperty's `value`).
pub(super) fn read_args(
    lua: &Lua,
    object: &str,
    args: mlua::MultiValue,
    positional: &'static [&'static str],
    lists: &[&str],
    any_table: &[&str],
    allowed: &'static [&'static str],
) -> Kwargs {
    let index = args.len().saturating_sub(1);
    let options_here = match (args.iter().last(), positional.get(index)) {
        (Some(Value::Table(table)), Some(name)) => {
            if any_table.contains(name) {
                false
            } else if lists.contains(name) {
                table
                    .pairs::<Value, Value>()
                    .all(|pair| matches!(pair, Ok((Value::String(_), _))))
            } else {
                true
            }
        }
        _ => false,
    };
    let positional = if options_here {
        &positional[..index]
    } else {
        positional
    };
    Kwargs::new(lua, object, args, positional, allowed)
}
