//! The renderable constructors of `util`: `Interpolate`, `Property`, `renderer`, `Transform`,
//! `WithProperties`, `FlattenList`.

use std::collections::BTreeMap;

use mlua::{Lua, MultiValue, UserData, UserDataMethods, Value};

use super::renderable::{Interpolate, Renderable};
use super::Callback;
use crate::config::kwargs::{
    constructor, describe, mismatch, FromOption, Invalid, Kwargs, OptionError,
};
use crate::config::{define, Namespaces};

impl UserData for Renderable {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // `renderer(fn):withArgs(...)` as in Buildbot: more arguments for the function.
        methods.add_method("withArgs", |lua, this, args: MultiValue| match this {
            Renderable::Renderer {
                function,
                args: existing,
            } => {
                let mut all = existing.clone();
                for arg in args {
                    all.push(Renderable::from_lua_value(lua, arg)?);
                }
                Ok(Renderable::Renderer {
                    function: function.clone(),
                    args: all,
                })
            }
            _ => Err(mlua::Error::runtime(
                "withArgs is only for util.renderer(fn)",
            )),
        });
    }
}

impl Renderable {
    /// Any Lua value a renderable option accepts: constants, tables of renderables, and the
    /// renderable objects themselves.
    pub fn from_lua_value(lua: &Lua, value: Value) -> mlua::Result<Renderable> {
        match Renderable::from_option(value, lua) {
            Ok(r) => Ok(r),
            Err(OptionError::Wrong(why)) => {
                Err(mlua::Error::runtime(format!("not renderable: {why}")))
            }
            Err(OptionError::Reported) => {
                Err(mlua::Error::runtime("not renderable: an invalid object"))
            }
        }
    }
}

impl FromOption for Renderable {
    fn expected() -> String {
        "a string, number, boolean, table or renderable (util.Interpolate, util.Property, ...)"
            .into()
    }

    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::Nil => Ok(Renderable::Value(serde_json::Value::Null)),
            Value::Boolean(_) | Value::Integer(_) | Value::Number(_) | Value::String(_) => {
                serde_json::Value::from_option(value, lua).map(Renderable::Value)
            }
            Value::UserData(ud) => {
                if let Ok(r) = ud.borrow::<Renderable>() {
                    return Ok(r.clone());
                }
                if ud.is::<Invalid>() {
                    return Err(OptionError::Reported);
                }
                Err(mismatch::<Self>(&value))
            }
            Value::Table(table) => {
                let len = table.raw_len();
                let is_sequence = table.clone().pairs::<Value, Value>().all(|pair| {
                    matches!(pair, Ok((Value::Integer(i), _)) if i >= 1 && i as usize <= len)
                });
                if is_sequence {
                    let mut items = Vec::with_capacity(len);
                    for item in table.clone().sequence_values::<Value>() {
                        let item = item.map_err(|e| OptionError::Wrong(e.to_string()))?;
                        items.push(Renderable::from_option(item, lua)?);
                    }
                    Ok(Renderable::List(items))
                } else {
                    BTreeMap::<String, Renderable>::from_option(value, lua).map(Renderable::Map)
                }
            }
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

/// Every option name of the renderable constructors, for the editor annotations.
pub const PROPERTY_OPTIONS: &[&str] = &["name", "default", "defaultWhenFalse"];
pub const FLATTEN_LIST_OPTIONS: &[&str] = &["nestedlist", "types"];

/// The renderable constructors that take options tables.
pub const CLASSES: &[crate::config::ClassOptions] = &[
    crate::config::ClassOptions {
        name: "util.Property",
        options: PROPERTY_OPTIONS,
    },
    crate::config::ClassOptions {
        name: "util.FlattenList",
        options: FLATTEN_LIST_OPTIONS,
    },
];

pub fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    super::session::register(lua, ns)?;
    define(&ns.util, "Interpolate", lua.create_function(interpolate)?)?;
    define(
        &ns.util,
        "WithProperties",
        lua.create_function(with_properties)?,
    )?;
    define(
        &ns.util,
        "Property",
        constructor(lua, "util.Property", |lua, args| {
            let mut kw = Kwargs::new(
                lua,
                "util.Property",
                args,
                &["name", "default"],
                PROPERTY_OPTIONS,
            );
            let name: String = kw.required("name");
            let default = kw
                .optional::<Renderable>("default")
                .unwrap_or_else(|| Renderable::string(""));
            let default_when_false = kw.optional_or("defaultWhenFalse", true);
            kw.finish().then(|| Renderable::Property {
                name,
                default: Box::new(default),
                default_when_false,
            })
        })?,
    )?;
    define(
        &ns.util,
        "renderer",
        lua.create_function(|lua, function: Value| match &function {
            Value::Function(f) => lua
                .create_userdata(Renderable::Renderer {
                    function: Callback::new(lua, f)?,
                    args: Vec::new(),
                })
                .map(Value::UserData),
            other => report_at_caller(
                lua,
                "util.renderer",
                format!("expects a function, got {}", describe(other)),
            ),
        })?,
    )?;
    define(
        &ns.util,
        "Transform",
        lua.create_function(|lua, args: MultiValue| {
            let mut args = args.into_iter();
            let function = match args.next() {
                Some(Value::Function(f)) => Callback::new(lua, &f)?,
                other => {
                    return report_at_caller(
                        lua,
                        "util.Transform",
                        format!(
                            "the first argument must be a function, got {}",
                            describe(&other.unwrap_or(Value::Nil))
                        ),
                    )
                }
            };
            let mut renderables = Vec::new();
            for arg in args {
                match Renderable::from_option(arg, lua) {
                    Ok(r) => renderables.push(r),
                    Err(OptionError::Wrong(why)) => {
                        return report_at_caller(lua, "util.Transform", format!("argument {why}"))
                    }
                    Err(OptionError::Reported) => {
                        return lua
                            .create_userdata(Invalid { kind: "renderable" })
                            .map(Value::UserData)
                    }
                }
            }
            lua.create_userdata(Renderable::Transform {
                function,
                args: renderables,
            })
            .map(Value::UserData)
        })?,
    )?;
    define(
        &ns.util,
        "FlattenList",
        constructor(lua, "util.FlattenList", |lua, args| {
            let mut kw = Kwargs::new(
                lua,
                "util.FlattenList",
                args,
                &["nestedlist", "types"],
                FLATTEN_LIST_OPTIONS,
            );
            let list: Renderable = kw.required("nestedlist");
            // Lua has one kind of list, so `types` can only restate the default.
            kw.refuse(
                "types",
                "has no meaning in Lua: every nested list (table) is flattened",
            );
            kw.finish().then(|| Renderable::FlattenList(Box::new(list)))
        })?,
    )?;
    Ok(())
}

/// A renderable constructor's error, reported at the caller's line, with evaluation going on.
fn report_at_caller(lua: &Lua, what: &str, message: String) -> mlua::Result<Value> {
    let location = crate::config::Location::of_caller(lua);
    crate::config::report_error(
        lua,
        crate::config::ConfigError::at(location, format!("{what}: {message}")),
    );
    lua.create_userdata(Invalid { kind: "renderable" })
        .map(Value::UserData)
}

/// `util.Interpolate(fmt, arg...)` or `util.Interpolate(fmt, {kw=...})`.
fn interpolate(lua: &Lua, args: MultiValue) -> mlua::Result<Value> {
    let mut args: Vec<Value> = args.into_iter().collect();
    if args.is_empty() {
        return report_at_caller(lua, "util.Interpolate", "missing the format string".into());
    }
    let format = match args.remove(0) {
        Value::String(s) => s.to_string_lossy(),
        other => {
            return report_at_caller(
                lua,
                "util.Interpolate",
                format!("the format must be a string, got {}", describe(&other)),
            )
        }
    };
    let mut kwargs = BTreeMap::new();
    if let [Value::Table(table)] = args.as_slice() {
        if table.raw_len() == 0 {
            match BTreeMap::<String, Renderable>::from_option(Value::Table(table.clone()), lua) {
                Ok(map) => {
                    kwargs = map;
                    args.clear();
                }
                Err(OptionError::Wrong(why)) => {
                    return report_at_caller(lua, "util.Interpolate", format!("keywords {why}"))
                }
                Err(OptionError::Reported) => {
                    return lua
                        .create_userdata(Invalid { kind: "renderable" })
                        .map(Value::UserData)
                }
            }
        }
    }
    let mut positional = Vec::with_capacity(args.len());
    for arg in args {
        match Renderable::from_option(arg, lua) {
            Ok(r) => positional.push(r),
            Err(OptionError::Wrong(why)) => {
                return report_at_caller(lua, "util.Interpolate", format!("argument {why}"))
            }
            Err(OptionError::Reported) => {
                return lua
                    .create_userdata(Invalid { kind: "renderable" })
                    .map(Value::UserData)
            }
        }
    }
    match Interpolate::new(&format, positional, kwargs) {
        Ok(i) => lua
            .create_userdata(Renderable::Interpolate(i))
            .map(Value::UserData),
        Err(why) => report_at_caller(lua, "util.Interpolate", why),
    }
}

/// `util.WithProperties(fmt, "prop", ...)` or `util.WithProperties(fmt, {name=function(props) ... end})`.
fn with_properties(lua: &Lua, args: MultiValue) -> mlua::Result<Value> {
    let mut args: Vec<Value> = args.into_iter().collect();
    let format = match args.first() {
        Some(Value::String(s)) => s.to_string_lossy(),
        other => {
            let got = describe(other.unwrap_or(&Value::Nil));
            return report_at_caller(
                lua,
                "util.WithProperties",
                format!("the format must be a string, got {got}"),
            );
        }
    };
    args.remove(0);
    let mut names = Vec::new();
    let mut lambdas = BTreeMap::new();
    for arg in args {
        match arg {
            Value::String(s) => names.push(s.to_string_lossy()),
            Value::Table(table) => {
                for pair in table.pairs::<String, Value>() {
                    let (name, value) = pair?;
                    let Value::Function(f) = value else {
                        return report_at_caller(
                            lua,
                            "util.WithProperties",
                            format!("keyword '{name}' must be a function of the properties"),
                        );
                    };
                    lambdas.insert(
                        name,
                        Renderable::Renderer {
                            function: Callback::new(lua, &f)?,
                            args: Vec::new(),
                        },
                    );
                }
            }
            other => {
                return report_at_caller(
                    lua,
                    "util.WithProperties",
                    format!("arguments must be property names, got {}", describe(&other)),
                )
            }
        }
    }
    match Interpolate::with_properties(&format, &names, lambdas) {
        Ok(i) => lua
            .create_userdata(Renderable::Interpolate(i))
            .map(Value::UserData),
        Err(why) => report_at_caller(lua, "util.WithProperties", why),
    }
}
