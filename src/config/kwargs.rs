//! Reading a constructor's arguments: positional values first, then one options table, each
//! option checked against the names the constructor knows, its type, and its default.

use std::collections::{BTreeMap, HashMap};

use mlua::{Lua, MultiValue, Table, UserData, Value};

use super::errors::{report, report_unimplemented, unknown, ConfigError, Location};
use crate::script::{Callback, ConfigSource};

/// Why a value did not convert.
#[derive(Debug)]
pub enum OptionError {
    /// The value is of the wrong shape; the text completes "option 'x' ...".
    Wrong(String),
    /// The value came from a constructor whose own errors were already reported.
    Reported,
}

/// A Rust type an option's Lua value converts to.
pub trait FromOption: Sized {
    /// What the option takes, for messages: "a string", "a list of strings".
    fn expected() -> String;
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError>;
}

/// The standard "must be X, got Y" error.
pub fn mismatch<T: FromOption>(value: &Value) -> OptionError {
    OptionError::Wrong(format!(
        "must be {}, got {}",
        T::expected(),
        describe(value)
    ))
}

/// A short description of a Lua value for messages.
pub fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("string '{}'", s.to_string_lossy()),
        Value::Integer(i) => format!("number {i}"),
        Value::Number(n) => format!("number {n}"),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::UserData(ud) => match ud.borrow::<Invalid>() {
            Ok(invalid) => format!("an invalid {}", invalid.kind),
            Err(_) => ud
                .metatable()
                .and_then(|mt| mt.get::<String>("__name"))
                .map(|name| format!("a {name}"))
                .unwrap_or_else(|_| "userdata".into()),
        },
        other => other.type_name().to_string(),
    }
}

/// What a constructor returns when its arguments had errors: they are reported already, so
/// whatever later receives this object stays quiet about it.
pub struct Invalid {
    pub kind: &'static str,
}

impl UserData for Invalid {}

/// Implements [`FromOption`] for a config type that crosses into Lua as userdata.
#[macro_export]
macro_rules! config_object {
    ($ty:ty, $kind:expr) => {
        impl $crate::config::kwargs::FromOption for $ty {
            fn expected() -> String {
                format!("a {}", $kind)
            }
            fn from_option(
                value: mlua::Value,
                _lua: &mlua::Lua,
            ) -> Result<Self, $crate::config::kwargs::OptionError> {
                $crate::config::kwargs::userdata_option::<$ty>(value)
            }
        }
    };
}

/// Takes a clone of the config object behind a userdata, or says what was there instead.
pub fn userdata_option<T: FromOption + UserData + Clone + 'static>(
    value: Value,
) -> Result<T, OptionError> {
    if let Value::UserData(ud) = &value {
        if let Ok(object) = ud.borrow::<T>() {
            return Ok(object.clone());
        }
        if ud.is::<Invalid>() {
            return Err(OptionError::Reported);
        }
    }
    Err(mismatch::<T>(&value))
}

/// Wraps a Rust constructor as a Lua function: it returns the object, or an [`Invalid`]
/// placeholder when the arguments had errors (which the constructor reported).
pub fn constructor<T, F>(lua: &Lua, kind: &'static str, build: F) -> mlua::Result<mlua::Function>
where
    T: UserData + Send + 'static,
    F: Fn(&Lua, MultiValue) -> Option<T> + Send + 'static,
{
    lua.create_function(move |lua, args: MultiValue| match build(lua, args) {
        Some(object) => lua.create_userdata(object),
        None => lua.create_userdata(Invalid { kind }),
    })
}

/// The arguments of one constructor call.
pub struct Kwargs {
    lua: Lua,
    object: String,
    options: HashMap<String, Value>,
    allowed: &'static [&'static str],
    location: Location,
    failed: bool,
}

impl Kwargs {
    /// `positional` names the positional arguments in order; each may also be given by name.
    /// `allowed` lists every option name, positional ones included.
    pub fn new(
        lua: &Lua,
        object: impl Into<String>,
        args: MultiValue,
        positional: &[&'static str],
        allowed: &'static [&'static str],
    ) -> Kwargs {
        let mut kw = Kwargs {
            lua: lua.clone(),
            object: object.into(),
            options: HashMap::new(),
            allowed,
            location: Location::of_caller(lua),
            failed: false,
        };
        let mut args: Vec<Value> = args.into_iter().collect();
        let options_table = match args.last() {
            Some(Value::Table(table))
                if is_options_table(table, args.len() - 1 == positional.len(), allowed) =>
            {
                let table = table.clone();
                args.pop();
                Some(table)
            }
            _ => None,
        };
        if args.len() > positional.len() {
            kw.error(format!(
                "takes at most {} positional argument{}, got {}",
                positional.len(),
                if positional.len() == 1 { "" } else { "s" },
                args.len()
            ));
        }
        for (name, value) in positional.iter().zip(args) {
            if !value.is_nil() {
                kw.options.insert((*name).to_string(), value);
            }
        }
        if let Some(table) = options_table {
            for pair in table.pairs::<Value, Value>() {
                let Ok((key, value)) = pair else { continue };
                let Value::String(key) = key else {
                    kw.error(format!(
                        "option names must be strings, got {}",
                        describe(&key)
                    ));
                    continue;
                };
                let key = key.to_string_lossy();
                if kw.options.contains_key(&key) {
                    kw.error(format!(
                        "option '{key}' is given both by position and by name"
                    ));
                }
                kw.options.insert(key, value);
            }
        }
        kw
    }

    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    pub fn location(&self) -> Location {
        self.location.clone()
    }

    /// The name errors start with, e.g. `MailNotifier`.
    pub fn object(&self) -> &str {
        &self.object
    }

    /// Whether the caller gave this option (a `nil` value counts as not given).
    pub fn has(&self, name: &str) -> bool {
        self.options.contains_key(name)
    }

    /// Records an error at the constructor call; the object becomes invalid.
    pub fn error(&mut self, message: impl AsRef<str>) {
        self.error_at(self.location.clone(), message);
    }

    fn error_at(&mut self, location: Location, message: impl AsRef<str>) {
        self.failed = true;
        report(
            &self.lua,
            ConfigError::at(location, format!("{}: {}", self.object, message.as_ref())),
        );
    }

    /// Takes the raw value of an option.
    pub fn raw(&mut self, name: &str) -> Option<Value> {
        debug_assert!(
            self.allowed.contains(&name),
            "{name} is not in the allowed list"
        );
        self.options.remove(name)
    }

    fn convert<T: FromOption>(&mut self, name: &str, value: Value) -> Option<T> {
        match T::from_option(value, &self.lua) {
            Ok(v) => Some(v),
            Err(OptionError::Wrong(why)) => {
                self.error(format!("option '{name}' {why}"));
                None
            }
            Err(OptionError::Reported) => {
                self.failed = true;
                None
            }
        }
    }

    pub fn optional<T: FromOption>(&mut self, name: &str) -> Option<T> {
        let value = self.raw(name)?;
        self.convert(name, value)
    }

    pub fn optional_or<T: FromOption>(&mut self, name: &str, default: T) -> T {
        self.optional(name).unwrap_or(default)
    }

    /// A required option; a missing one is reported and `None` returned.
    pub fn required_opt<T: FromOption>(&mut self, name: &str) -> Option<T> {
        match self.raw(name) {
            Some(value) => self.convert(name, value),
            None => {
                self.error(format!("missing required option '{name}'"));
                None
            }
        }
    }

    /// A required option, with `T::default()` standing in after the error is reported.
    pub fn required<T: FromOption + Default>(&mut self, name: &str) -> T {
        self.required_opt(name).unwrap_or_default()
    }

    /// One option spelt several ways (`workernames`/`slavenames`); giving two is an error.
    pub fn alias<T: FromOption>(&mut self, names: &[&str]) -> Option<T> {
        let given: Vec<&str> = names.iter().copied().filter(|n| self.has(n)).collect();
        if given.len() > 1 {
            self.error(format!(
                "options {} are the same; give only one",
                given
                    .iter()
                    .map(|n| format!("'{n}'"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
        }
        let mut found = None;
        for name in given {
            let value = self.optional(name);
            found = found.or(value);
        }
        found
    }

    /// A documented option that is accepted but does not work yet: `checkconfig` warns and
    /// `moonbot start` refuses it.
    pub fn unimplemented(&mut self, name: &str) {
        if self.raw(name).is_some() {
            report_unimplemented(
                &self.lua,
                ConfigError::at(
                    self.location.clone(),
                    format!("{}: option '{name}' is not implemented yet", self.object),
                ),
            );
        }
    }

    /// As [`Kwargs::unimplemented`], for an option already read whose given value does
    /// not work yet (`usePTY=true`): reported when `when` holds.
    pub fn unimplemented_when(&mut self, name: &str, when: bool) {
        if when {
            report_unimplemented(
                &self.lua,
                ConfigError::at(
                    self.location.clone(),
                    format!("{}: option '{name}' is not implemented yet", self.object),
                ),
            );
        }
    }

    /// A documented option that cannot work here at all (a Python class, say), with a hint.
    pub fn refuse(&mut self, name: &str, why: &str) {
        if self.raw(name).is_some() {
            self.error(format!("option '{name}' {why}"));
        }
    }

    /// Takes every option not read yet, for a constructor that accepts fields of the
    /// user's own beside its options.
    pub fn rest(&mut self) -> Vec<(String, Value)> {
        self.options.drain().collect()
    }

    /// Reports every option nobody took; returns whether the call was free of errors.
    pub fn finish(mut self) -> bool {
        let mut leftovers: Vec<String> = self.options.keys().cloned().collect();
        leftovers.sort();
        for name in leftovers {
            let message = unknown("option", &name, self.allowed);
            let location = self
                .lua
                .app_data_ref::<ConfigSource>()
                .map(|source| option_location(&source, &self.location, &name))
                .unwrap_or_else(|| self.location.clone());
            self.error_at(location, message);
        }
        !self.failed
    }
}

/// The first line at or after the call whose code gives `option` as a table key
/// (`option =` or `["option"] =`) before the brackets opened on the call's line close;
/// the call itself when there is none, or when the call is in another file.
fn option_location(source: &ConfigSource, call: &Location, option: &str) -> Location {
    if call.file != source.file || call.line == 0 {
        return call.clone();
    }
    let key = regex::Regex::new(&format!(
        r#"(^|[^\w.:])(?:{name}|\[\s*"{name}"\s*\]|\[\s*'{name}'\s*\])\s*=($|[^=])"#,
        name = regex::escape(option)
    ))
    .expect("an escaped name makes a valid pattern");
    let mut depth = 0i32;
    for (index, line) in source.lines.iter().enumerate().skip(call.line as usize - 1) {
        let code = code_of(line);
        if key.is_match(&code) {
            return Location {
                file: call.file.clone(),
                line: index as u32 + 1,
            };
        }
        for c in code.chars() {
            match c {
                '{' | '(' | '[' => depth += 1,
                '}' | ')' | ']' => depth -= 1,
                _ => {}
            }
        }
        if depth <= 0 {
            break;
        }
    }
    call.clone()
}

/// A line with its comment cut off and its short strings' contents blanked, so that neither
/// counts as brackets or keys; quoted keys (`["name"]`) keep their text.
fn code_of(line: &str) -> String {
    let mut code = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => break,
            '"' | '\'' => {
                let mut text = String::new();
                let mut closed = false;
                while let Some(s) = chars.next() {
                    if s == '\\' {
                        chars.next();
                        text.push_str("  ");
                    } else if s == c {
                        closed = true;
                        break;
                    } else {
                        text.push(s);
                    }
                }
                let key = code.trim_end().ends_with('[');
                code.push(c);
                if key {
                    code.push_str(&text);
                } else {
                    code.extend(text.chars().map(|_| ' '));
                }
                if closed {
                    code.push(c);
                }
            }
            _ => code.push(c),
        }
    }
    code
}

/// Whether the last argument is the options table rather than a positional table value.
/// An empty table is the options table (`status.WebStatus{}`): an empty positional list reads
/// the same as none.
fn is_options_table(table: &Table, all_positionals_given: bool, allowed: &[&str]) -> bool {
    if table.clone().pairs::<Value, Value>().next().is_none() {
        return true;
    }
    let mut any_known = false;
    for pair in table.clone().pairs::<Value, Value>() {
        match pair {
            Ok((Value::String(key), _)) => {
                any_known |= allowed.iter().any(|a| key.as_bytes() == a.as_bytes());
            }
            _ => return false,
        }
    }
    all_positionals_given || any_known
}

// ---- conversions ---------------------------------------------------------------------

impl FromOption for String {
    fn expected() -> String {
        "a string".into()
    }
    fn from_option(value: Value, _: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::String(s) => Ok(s.to_string_lossy()),
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

impl FromOption for bool {
    fn expected() -> String {
        "a boolean".into()
    }
    fn from_option(value: Value, _: &Lua) -> Result<Self, OptionError> {
        match value {
            Value::Boolean(b) => Ok(b),
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

impl FromOption for i64 {
    fn expected() -> String {
        "an integer".into()
    }
    fn from_option(value: Value, _: &Lua) -> Result<Self, OptionError> {
        match value {
            Value::Integer(i) => Ok(i),
            Value::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Ok(n as i64),
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

macro_rules! bounded_integer {
    ($($ty:ty),*) => {$(
        impl FromOption for $ty {
            fn expected() -> String {
                format!("an integer from {} to {}", <$ty>::MIN, <$ty>::MAX)
            }
            fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
                let wide = i64::from_option(value.clone(), lua).map_err(|_| mismatch::<Self>(&value))?;
                <$ty>::try_from(wide).map_err(|_| mismatch::<Self>(&value))
            }
        }
    )*};
}
bounded_integer!(u16, u32, u64, usize);

impl FromOption for f64 {
    fn expected() -> String {
        "a number".into()
    }
    fn from_option(value: Value, _: &Lua) -> Result<Self, OptionError> {
        match value {
            Value::Integer(i) => Ok(i as f64),
            Value::Number(n) => Ok(n),
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

impl<T: FromOption> FromOption for Vec<T> {
    fn expected() -> String {
        format!("a list of {}", plural(&T::expected()))
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        let Value::Table(table) = &value else {
            return Err(mismatch::<Self>(&value));
        };
        let len = table.raw_len();
        let mut items = Vec::with_capacity(len);
        for pair in table.clone().pairs::<Value, Value>() {
            let (key, _) = pair.map_err(|e| OptionError::Wrong(e.to_string()))?;
            let in_sequence = matches!(key, Value::Integer(i) if i >= 1 && (i as usize) <= len);
            if !in_sequence {
                return Err(OptionError::Wrong(format!(
                    "must be {}, got a table with key {}",
                    Self::expected(),
                    describe(&key)
                )));
            }
        }
        for index in 1..=len {
            let item: Value = table
                .raw_get(index)
                .map_err(|e| OptionError::Wrong(e.to_string()))?;
            match T::from_option(item, lua) {
                Ok(v) => items.push(v),
                Err(OptionError::Wrong(why)) => {
                    return Err(OptionError::Wrong(format!("item {index} {why}")))
                }
                Err(OptionError::Reported) => return Err(OptionError::Reported),
            }
        }
        Ok(items)
    }
}

impl<T: FromOption> FromOption for BTreeMap<String, T> {
    fn expected() -> String {
        format!("a table of names to {}", plural(&T::expected()))
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        let Value::Table(table) = &value else {
            return Err(mismatch::<Self>(&value));
        };
        let mut map = BTreeMap::new();
        for pair in table.clone().pairs::<Value, Value>() {
            let (key, item) = pair.map_err(|e| OptionError::Wrong(e.to_string()))?;
            let Value::String(key) = &key else {
                return Err(OptionError::Wrong(format!(
                    "must be {}, got key {}",
                    Self::expected(),
                    describe(&key)
                )));
            };
            let key = key.to_string_lossy();
            match T::from_option(item, lua) {
                Ok(v) => {
                    map.insert(key, v);
                }
                Err(OptionError::Wrong(why)) => {
                    return Err(OptionError::Wrong(format!("entry '{key}' {why}")))
                }
                Err(OptionError::Reported) => return Err(OptionError::Reported),
            }
        }
        Ok(map)
    }
}

/// One value or a list of them (`change_source`, `mode = "all"`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<T: FromOption> FromOption for OneOrMany<T> {
    fn expected() -> String {
        format!("{} or a list of them", T::expected())
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        if let Value::Table(_) = value {
            if let Ok(single) = T::from_option(value.clone(), lua) {
                return Ok(OneOrMany(vec![single]));
            }
            return Vec::<T>::from_option(value, lua).map(OneOrMany);
        }
        T::from_option(value, lua).map(|v| OneOrMany(vec![v]))
    }
}

/// Plain data (strings, numbers, booleans, lists and tables of them), as JSON.
impl FromOption for serde_json::Value {
    fn expected() -> String {
        "plain data (strings, numbers, booleans, tables)".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        use mlua::LuaSerdeExt;
        lua.from_value(value.clone())
            .map_err(|_| mismatch::<Self>(&value))
    }
}

impl FromOption for Callback {
    fn expected() -> String {
        "a function".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::Function(function) => {
                Callback::new(lua, function).map_err(|e| OptionError::Wrong(e.to_string()))
            }
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

fn plural(expected: &str) -> String {
    let noun = expected
        .strip_prefix("a ")
        .or_else(|| expected.strip_prefix("an "))
        .unwrap_or(expected);
    if noun.ends_with('s') || noun.contains(' ') {
        noun.to_string()
    } else {
        format!("{noun}s")
    }
}

/// A constructor as users write it and every option it accepts; the editor annotations in
/// `lua/types/` must declare exactly these.
#[derive(Clone, Copy, Debug)]
pub struct ClassOptions {
    /// As written in Lua, e.g. `status.MailNotifier`.
    pub name: &'static str,
    pub options: &'static [&'static str],
}
