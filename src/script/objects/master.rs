//! `master_status`: Buildbot 0.8's Status object, the master seen from a callback.

use std::sync::Arc;

use mlua::{MetaMethod, UserData, Value};

use super::build::borrow;
use super::{LuaBuild, LuaBuilder, LuaLog, LuaStep};
use crate::model::MasterInfo;

/// Methods `getTitle getTitleURL getBuildbotURL getURLForThing getBuilderNames getBuilder`;
/// fields `title titleURL buildbotURL`.
#[derive(Clone)]
pub struct LuaMaster(pub Arc<MasterInfo>);

impl LuaMaster {
    /// The web UI URL of a build, step, log or builder object; nil for anything else, as
    /// Buildbot answers None for things without a page.
    fn url_for(&self, thing: &Value) -> Option<String> {
        let Value::UserData(ud) = thing else {
            return None;
        };
        let master = &self.0;
        if let Some(LuaBuild(build)) = borrow::<LuaBuild>(ud) {
            return Some(master.build_url(build.builder.id, build.number));
        }
        if let Some(step) = borrow::<LuaStep>(ud) {
            let build = step.build();
            return Some(master.step_url(build.builder.id, build.number, step.index()));
        }
        if let Some(log) = borrow::<LuaLog>(ud) {
            let step = log.step();
            let build = step.build();
            return Some(master.log_url(
                build.builder.id,
                build.number,
                step.index(),
                &log.info().slug(),
            ));
        }
        if let Some(LuaBuilder(builder)) = borrow::<LuaBuilder>(ud) {
            return Some(master.builder_url(builder.id));
        }
        None
    }
}

impl UserData for LuaMaster {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("title", |_, this| Ok(this.0.title.clone()));
        fields.add_field_method_get("titleURL", |_, this| Ok(this.0.title_url.clone()));
        fields.add_field_method_get("buildbotURL", |_, this| Ok(this.0.root_url()));
    }

    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("getTitle", |_, this, ()| Ok(this.0.title.clone()));
        methods.add_method("getTitleURL", |_, this, ()| Ok(this.0.title_url.clone()));
        methods.add_method("getBuildbotURL", |_, this, ()| Ok(this.0.root_url()));
        methods.add_method("getURLForThing", |_, this, thing: Value| {
            Ok(this.url_for(&thing))
        });
        methods.add_method("getBuilderNames", |_, this, ()| {
            Ok(this
                .0
                .builders
                .iter()
                .map(|b| b.name.clone())
                .collect::<Vec<_>>())
        });
        methods.add_method("getBuilder", |_, this, name: String| {
            Ok(this.0.builder(&name).cloned().map(LuaBuilder))
        });
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!("master {}", this.0.title))
        });
    }
}
