//! Renderables: values that become concrete only against a build's properties, Buildbot's
//! `Interpolate`, `Property`, `renderer`, `Transform`, `WithProperties` and `FlattenList`.
//!
//! Everything but the Lua-backed forms renders in plain Rust; those need the VM and so render
//! on the script host's thread, which passes its `Lua` in.

use std::collections::BTreeMap;
use std::fmt::Write;

use mlua::{Lua, LuaSerdeExt, MultiValue};
use serde_json::Value;

use super::Callback;
use crate::model::{Properties, SourceStamp};

/// What a renderable renders against.
#[derive(Clone, Debug, Default)]
pub struct RenderData {
    pub properties: Properties,
    pub sourcestamps: Vec<SourceStamp>,
    /// The worker's info (`os`, `admin`, ...) for `%(worker:...)s`.
    pub worker_info: BTreeMap<String, Value>,
}

impl RenderData {
    pub fn with_properties(properties: Properties) -> Self {
        RenderData {
            properties,
            ..Self::default()
        }
    }

    fn sourcestamp_attr(&self, codebase: &str, attr: &str) -> Option<Value> {
        let ss = self
            .sourcestamps
            .iter()
            .find(|ss| ss.codebase == codebase)?;
        let text = |s: &str| Some(Value::String(s.to_string()));
        let optional = |s: &Option<String>| s.as_deref().map(|s| Value::String(s.to_string()));
        match attr {
            "codebase" => text(&ss.codebase),
            "repository" => text(&ss.repository),
            "project" => text(&ss.project),
            "branch" => optional(&ss.branch).or(Some(Value::Null)),
            "revision" => optional(&ss.revision).or(Some(Value::Null)),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0} needs the script host to render")]
    NeedsLua(&'static str),
    #[error("{0}")]
    Format(String),
    #[error("{location}: {source}")]
    Lua {
        location: crate::config::Location,
        source: mlua::Error,
    },
}

/// A value that renders against [`RenderData`].
#[derive(Clone, Debug)]
pub enum Renderable {
    /// A constant.
    Value(Value),
    /// A list whose items may be renderables (a step's `command`).
    List(Vec<Renderable>),
    /// A table whose values may be renderables (`extraHeaders`, `env`).
    Map(BTreeMap<String, Renderable>),
    Interpolate(Interpolate),
    Property {
        name: String,
        default: Box<Renderable>,
        default_when_false: bool,
    },
    /// `util.renderer(fn)`, called with the properties and any `withArgs` arguments.
    Renderer {
        function: Callback,
        args: Vec<Renderable>,
    },
    /// `util.Transform(fn, ...)`: `fn` applied to the rendered arguments.
    Transform {
        function: Callback,
        args: Vec<Renderable>,
    },
    /// `util.FlattenList{...}`: the rendered list with nested lists flattened.
    FlattenList(Box<Renderable>),
}

impl Default for Renderable {
    fn default() -> Self {
        Renderable::Value(Value::Null)
    }
}

impl Renderable {
    pub fn string(s: impl Into<String>) -> Self {
        Renderable::Value(Value::String(s.into()))
    }

    /// Whether rendering calls into Lua (and so must happen on the script host's thread).
    pub fn needs_lua(&self) -> bool {
        match self {
            Renderable::Value(_) => false,
            Renderable::List(items) => items.iter().any(Renderable::needs_lua),
            Renderable::Map(items) => items.values().any(Renderable::needs_lua),
            Renderable::Interpolate(interpolate) => interpolate.needs_lua(),
            Renderable::Property { default, .. } => default.needs_lua(),
            Renderable::Renderer { .. } | Renderable::Transform { .. } => true,
            Renderable::FlattenList(inner) => inner.needs_lua(),
        }
    }

    pub fn render(&self, data: &RenderData, lua: Option<&Lua>) -> Result<Value, RenderError> {
        match self {
            Renderable::Value(value) => Ok(value.clone()),
            Renderable::List(items) => items
                .iter()
                .map(|item| item.render(data, lua))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Renderable::Map(items) => items
                .iter()
                .map(|(k, v)| Ok((k.clone(), v.render(data, lua)?)))
                .collect::<Result<serde_json::Map<_, _>, _>>()
                .map(Value::Object),
            Renderable::Interpolate(interpolate) => {
                interpolate.render(data, lua).map(Value::String)
            }
            Renderable::Property {
                name,
                default,
                default_when_false,
            } => match data.properties.get(name) {
                Some(value) if !(*default_when_false && is_falsy(value)) => Ok(value.clone()),
                None if !*default_when_false => default.render(data, lua),
                _ => default.render(data, lua),
            },
            Renderable::Renderer { function, args } => {
                let lua = lua.ok_or(RenderError::NeedsLua("util.renderer"))?;
                let props = super::objects::properties_userdata(lua, data)
                    .map_err(|source| lua_error(function, source))?;
                let mut call_args = vec![props];
                for arg in args {
                    call_args.push(to_lua(lua, &arg.render(data, Some(lua))?, function)?);
                }
                call(lua, function, call_args)
            }
            Renderable::Transform { function, args } => {
                let lua = lua.ok_or(RenderError::NeedsLua("util.Transform"))?;
                let mut call_args = Vec::with_capacity(args.len());
                for arg in args {
                    call_args.push(to_lua(lua, &arg.render(data, Some(lua))?, function)?);
                }
                call(lua, function, call_args)
            }
            Renderable::FlattenList(inner) => {
                let mut flat = Vec::new();
                flatten_into(inner.render(data, lua)?, &mut flat);
                Ok(Value::Array(flat))
            }
        }
    }

    /// Renders to text, the way a value is put into a command line or a header.
    pub fn render_string(
        &self,
        data: &RenderData,
        lua: Option<&Lua>,
    ) -> Result<String, RenderError> {
        Ok(display(&self.render(data, lua)?))
    }
}

fn flatten_into(value: Value, out: &mut Vec<Value>) {
    match value {
        Value::Array(items) => items.into_iter().for_each(|item| flatten_into(item, out)),
        other => out.push(other),
    }
}

fn lua_error(function: &Callback, source: mlua::Error) -> RenderError {
    RenderError::Lua {
        location: function.location().clone(),
        source,
    }
}

fn to_lua(lua: &Lua, value: &Value, function: &Callback) -> Result<mlua::Value, RenderError> {
    lua.to_value_with(value, lua_serialize_options())
        .map_err(|source| lua_error(function, source))
}

/// JSON null becomes Lua nil, not mlua's null sentinel: Lua code tests `if x then`.
pub fn lua_serialize_options() -> mlua::SerializeOptions {
    mlua::SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
}

fn call(lua: &Lua, function: &Callback, args: Vec<mlua::Value>) -> Result<Value, RenderError> {
    let f = function
        .function(lua)
        .map_err(|source| lua_error(function, source))?;
    let result: mlua::Value = f
        .call(MultiValue::from_vec(args))
        .map_err(|source| lua_error(function, source))?;
    lua.from_value(result)
        .map_err(|source| lua_error(function, source))
}

/// Python's truth test, which `defaultWhenFalse` and `:~` use.
pub fn is_falsy(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// How a rendered value reads inside a string.
pub fn display(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

// ---- Interpolate ---------------------------------------------------------------------

/// `util.Interpolate(fmt, ...)`: Python %-formatting over selectors `prop:`, `src:`, `kw:`
/// and `worker:`, each with the `:-`, `:~`, `:+`, `:?|a|b` and `:#?|a|b` forms.
#[derive(Clone, Debug)]
pub struct Interpolate {
    pub format: String,
    segments: Vec<Segment>,
    /// Values for `%s` placeholders.
    args: Vec<Renderable>,
    /// Values for `%(kw:NAME)s`.
    kwargs: BTreeMap<String, Renderable>,
}

#[derive(Clone, Debug)]
enum Segment {
    Text(String),
    Positional(Conversion),
    Named(Lookup, Conversion),
}

#[derive(Clone, Copy, Debug)]
enum Conversion {
    Str,
    Int,
}

#[derive(Clone, Debug)]
enum Source {
    Property,
    Codebase { codebase: String },
    Worker,
    Keyword,
}

/// One `%(selector:name:form)s`, as Buildbot's `_Lookup`.
#[derive(Clone, Debug)]
struct Lookup {
    source: Source,
    name: String,
    default: Vec<Segment>,
    has_key: Option<Vec<Segment>>,
    default_when_false: bool,
}

impl Interpolate {
    /// Parses `format`; `kwargs` feed `%(kw:...)s`. Errors name what is wrong in the format.
    pub fn new(
        format: &str,
        args: Vec<Renderable>,
        kwargs: BTreeMap<String, Renderable>,
    ) -> Result<Interpolate, String> {
        if !args.is_empty() && !kwargs.is_empty() {
            return Err("takes either positional or keyword substitutions, not both".into());
        }
        let segments = parse_format(format, Mode::Interpolate)?;
        let positional = segments
            .iter()
            .filter(|s| matches!(s, Segment::Positional(_)))
            .count();
        let named = segments.iter().any(|s| matches!(s, Segment::Named(..)));
        if positional > 0 && named {
            return Err(format!("'{format}' mixes %s and %(...)s placeholders"));
        }
        if positional != args.len() {
            return Err(format!(
                "'{format}' has {positional} %s placeholder{} but {} argument{} given",
                if positional == 1 { "" } else { "s" },
                args.len(),
                if args.len() == 1 { " was" } else { "s were" }
            ));
        }
        Ok(Interpolate {
            format: format.to_string(),
            segments,
            args,
            kwargs,
        })
    }

    /// `util.WithProperties(fmt, ...)`, the older form: `%(name)s` names a property directly
    /// and `%s` takes the properties named by `args` in order.
    pub fn with_properties(
        format: &str,
        args: &[String],
        lambdas: BTreeMap<String, Renderable>,
    ) -> Result<Interpolate, String> {
        let segments = parse_format(format, Mode::WithProperties { lambdas: &lambdas })?;
        let args = args
            .iter()
            .map(|name| Renderable::Property {
                name: name.clone(),
                default: Box::new(Renderable::string("")),
                default_when_false: false,
            })
            .collect::<Vec<_>>();
        let positional = segments
            .iter()
            .filter(|s| matches!(s, Segment::Positional(_)))
            .count();
        if positional != args.len() {
            return Err(format!(
                "'{format}' has {positional} %s placeholders but {} property names",
                args.len()
            ));
        }
        Ok(Interpolate {
            format: format.to_string(),
            segments,
            args,
            kwargs: lambdas,
        })
    }

    fn needs_lua(&self) -> bool {
        self.args
            .iter()
            .chain(self.kwargs.values())
            .any(Renderable::needs_lua)
    }

    pub fn render(&self, data: &RenderData, lua: Option<&Lua>) -> Result<String, RenderError> {
        let mut args = self.args.iter();
        let mut out = String::new();
        self.render_segments(&self.segments, &mut args, data, lua, &mut out)?;
        Ok(out)
    }

    fn render_segments<'a>(
        &'a self,
        segments: &[Segment],
        args: &mut impl Iterator<Item = &'a Renderable>,
        data: &RenderData,
        lua: Option<&Lua>,
        out: &mut String,
    ) -> Result<(), RenderError> {
        for segment in segments {
            match segment {
                Segment::Text(text) => out.push_str(text),
                Segment::Positional(conversion) => {
                    let arg = args.next().expect("argument count checked at parse time");
                    convert(&arg.render(data, lua)?, *conversion, out)?;
                }
                Segment::Named(lookup, conversion) => {
                    let value = self.lookup(lookup, data, lua)?;
                    convert(&value, *conversion, out)?;
                }
            }
        }
        Ok(())
    }

    fn render_nested(
        &self,
        segments: &[Segment],
        data: &RenderData,
        lua: Option<&Lua>,
    ) -> Result<Value, RenderError> {
        let mut out = String::new();
        self.render_segments(segments, &mut std::iter::empty(), data, lua, &mut out)?;
        Ok(Value::String(out))
    }

    fn lookup(
        &self,
        lookup: &Lookup,
        data: &RenderData,
        lua: Option<&Lua>,
    ) -> Result<Value, RenderError> {
        let found = match &lookup.source {
            Source::Property => data.properties.get(&lookup.name).cloned(),
            Source::Codebase { codebase } => data.sourcestamp_attr(codebase, &lookup.name),
            Source::Worker => data.worker_info.get(&lookup.name).cloned(),
            Source::Keyword => match self.kwargs.get(&lookup.name) {
                Some(renderable) => Some(renderable.render(data, lua)?),
                None => None,
            },
        };
        let rendered = match found {
            None => self.render_nested(&lookup.default, data, lua)?,
            Some(value) if lookup.default_when_false => {
                if is_falsy(&value) {
                    self.render_nested(&lookup.default, data, lua)?
                } else if let Some(has_key) = &lookup.has_key {
                    self.render_nested(has_key, data, lua)?
                } else {
                    value
                }
            }
            Some(value) => match &lookup.has_key {
                Some(has_key) => self.render_nested(has_key, data, lua)?,
                None => value,
            },
        };
        Ok(rendered)
    }
}

fn convert(value: &Value, conversion: Conversion, out: &mut String) -> Result<(), RenderError> {
    match conversion {
        Conversion::Str => out.push_str(&display(value)),
        Conversion::Int => {
            let number = match value {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                Value::Bool(b) => Some(f64::from(u8::from(*b))),
                _ => None,
            }
            .ok_or_else(|| {
                RenderError::Format(format!(
                    "%d format: a number is required, not {}",
                    display(value)
                ))
            })?;
            let _ = write!(out, "{}", number.trunc() as i64);
        }
    }
    Ok(())
}

enum Mode<'a> {
    Interpolate,
    WithProperties {
        lambdas: &'a BTreeMap<String, Renderable>,
    },
}

fn parse_format(format: &str, mode: Mode<'_>) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut text = String::new();
    let mut chars = format.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        match chars.next() {
            Some((_, '%')) => text.push('%'),
            Some((start, '(')) => {
                let mut depth = 1;
                let mut end = None;
                for (i, c) in chars.by_ref() {
                    match c {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(i);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let end = end.ok_or_else(|| format!("unbalanced parenthesis in '{format}'"))?;
                let key = &format[start + 1..end];
                let conversion = parse_conversion(chars.next().map(|(_, c)| c), format)?;
                flush(&mut text, &mut segments);
                let lookup = match &mode {
                    Mode::Interpolate => parse_selector(key)?,
                    Mode::WithProperties { lambdas } => parse_with_properties_key(key, lambdas)?,
                };
                segments.push(Segment::Named(lookup, conversion));
            }
            other => {
                let conversion = parse_conversion(other.map(|(_, c)| c), format)?;
                flush(&mut text, &mut segments);
                segments.push(Segment::Positional(conversion));
            }
        }
    }
    flush(&mut text, &mut segments);
    Ok(segments)
}

fn flush(text: &mut String, segments: &mut Vec<Segment>) {
    if !text.is_empty() {
        segments.push(Segment::Text(std::mem::take(text)));
    }
}

fn parse_conversion(c: Option<char>, format: &str) -> Result<Conversion, String> {
    match c {
        Some('s') | Some('r') => Ok(Conversion::Str),
        Some('d') | Some('i') => Ok(Conversion::Int),
        Some(other) => Err(format!(
            "unsupported conversion '%{other}' in '{format}' (use %s or %d)"
        )),
        None => Err(format!("incomplete format: '{format}' ends with %")),
    }
}

fn is_identifier(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `prop:name[:form]`, `src:codebase:attr[:form]`, `worker:name[:form]`, `kw:name[:form]`.
fn parse_selector(key: &str) -> Result<Lookup, String> {
    let (selector, rest) = key.split_once(':').ok_or_else(|| {
        format!("invalid substitution '{key}': no selector (use prop:, src:, kw: or worker:)")
    })?;
    let (source, name, form) = match selector {
        "prop" | "kw" | "worker" | "slave" => {
            let (name, form) = split_form(rest);
            let source = match selector {
                "prop" => Source::Property,
                "kw" => Source::Keyword,
                _ => Source::Worker,
            };
            if !is_identifier(name) {
                return Err(format!("invalid name '{name}' in '%({key})s'"));
            }
            (source, name, form)
        }
        "src" => {
            let mut parts = rest.splitn(3, ':');
            let codebase = parts.next().unwrap_or_default();
            let attr = parts.next().ok_or_else(|| {
                format!("'%({key})s' must name both codebase and attribute (src:CODEBASE:ATTR)")
            })?;
            if !is_identifier(codebase) || !is_identifier(attr) {
                return Err(format!("invalid codebase or attribute in '%({key})s'"));
            }
            (
                Source::Codebase {
                    codebase: codebase.to_string(),
                },
                attr,
                parts.next(),
            )
        }
        "secret" => return Err(format!("'%({key})s': secrets are not implemented yet")),
        other => {
            return Err(format!(
                "invalid selector '{other}' in '%({key})s' (use prop:, src:, kw: or worker:)"
            ))
        }
    };
    build_lookup(source, name, form.unwrap_or("-"), key)
}

fn split_form(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once(':') {
        Some((name, form)) => (name, Some(form)),
        None => (rest, None),
    }
}

/// WithProperties keys: a bare property name, a lambda's name, or the `:-`/`:~`/`:+` forms.
fn parse_with_properties_key(
    key: &str,
    lambdas: &BTreeMap<String, Renderable>,
) -> Result<Lookup, String> {
    let (name, form) = split_form(key);
    let source = if lambdas.contains_key(name) {
        Source::Keyword
    } else {
        Source::Property
    };
    build_lookup(source, name, form.unwrap_or("-"), key)
}

fn build_lookup(source: Source, name: &str, form: &str, key: &str) -> Result<Lookup, String> {
    let nested = |s: &str| parse_format(s, Mode::Interpolate);
    let lookup = |default, has_key, default_when_false| Lookup {
        source: source.clone(),
        name: name.to_string(),
        default,
        has_key,
        default_when_false,
    };
    if let Some(repl) = form.strip_prefix('-') {
        Ok(lookup(nested(repl)?, None, false))
    } else if let Some(repl) = form.strip_prefix('~') {
        Ok(lookup(nested(repl)?, None, true))
    } else if let Some(repl) = form.strip_prefix('+') {
        Ok(lookup(Vec::new(), Some(nested(repl)?), false))
    } else if let Some(repl) = form.strip_prefix("#?") {
        let (yes, no) = split_ternary(repl, key)?;
        Ok(lookup(nested(no)?, Some(nested(yes)?), true))
    } else if let Some(repl) = form.strip_prefix('?') {
        let (yes, no) = split_ternary(repl, key)?;
        Ok(lookup(nested(no)?, Some(nested(yes)?), false))
    } else {
        Err(format!(
            "invalid form ':{form}' in '%({key})s' (use :-, :~, :+, :? or :#?)"
        ))
    }
}

/// `|yes|no`: the first character is the delimiter; parentheses nest.
fn split_ternary<'a>(repl: &'a str, key: &str) -> Result<(&'a str, &'a str), String> {
    let mut chars = repl.chars();
    let delim = chars
        .next()
        .ok_or_else(|| format!("empty ternary in '%({key})s'"))?;
    if delim == '(' {
        return Err(format!("invalid ternary delimiter '(' in '%({key})s'"));
    }
    let body = &repl[delim.len_utf8()..];
    let mut depth = 0i32;
    for (i, c) in body.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            break;
        }
        if depth == 0 && c == delim {
            return Ok((&body[..i], &body[i + c.len_utf8()..]));
        }
    }
    Err(format!(
        "invalid ternary '{body}' with delimiter '{delim}' in '%({key})s'"
    ))
}
