use std::sync::Arc;

use mlua::{Lua, LuaSerdeExt, UserData, UserDataMethods, Value};

use crate::script::renderable::{lua_serialize_options, RenderData, Renderable};

/// Buildbot's `Properties` (IProperties) as Lua sees it: `getProperty`, `hasProperty`,
/// `has_key`, `asDict`, `render`, over a snapshot.
#[derive(Clone)]
pub struct LuaProperties(pub Arc<RenderData>);

/// Wraps a snapshot of render data as a Lua `Properties` object.
pub fn properties_userdata(lua: &Lua, data: &RenderData) -> mlua::Result<Value> {
    lua.create_userdata(LuaProperties(Arc::new(data.clone())))
        .map(Value::UserData)
}

impl UserData for LuaProperties {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method(
            "getProperty",
            |lua, this, (name, default): (String, Value)| match this.0.properties.get(&name) {
                Some(value) => lua.to_value_with(value, lua_serialize_options()),
                None => Ok(default),
            },
        );
        methods.add_method("hasProperty", |_, this, name: String| {
            Ok(this.0.properties.has(&name))
        });
        methods.add_method("has_key", |_, this, name: String| {
            Ok(this.0.properties.has(&name))
        });
        methods.add_method("asDict", |lua, this, ()| {
            let dict = lua.create_table()?;
            for (name, (value, source)) in this.0.properties.as_dict() {
                let pair = lua.create_sequence_from([
                    lua.to_value_with(&value, lua_serialize_options())?,
                    Value::String(lua.create_string(&source)?),
                ])?;
                dict.set(name, pair)?;
            }
            Ok(dict)
        });
        methods.add_method("render", |lua, this, value: Value| {
            let renderable = Renderable::from_lua_value(lua, value)?;
            let rendered = renderable
                .render(&this.0, Some(lua))
                .map_err(mlua::Error::external)?;
            lua.to_value_with(&rendered, lua_serialize_options())
        });
        methods.add_meta_method("__index", |lua, this, name: String| {
            // props["name"] reads a property, as in Python.
            match this.0.properties.get(&name) {
                Some(value) => lua.to_value_with(value, lua_serialize_options()),
                None => Ok(Value::Nil),
            }
        });
    }
}
