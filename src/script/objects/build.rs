//! `build`, `step`, `log` and `builder`: Buildbot 0.8's BuildStatus, BuildStepStatus,
//! LogFile and BuilderStatus over snapshots, with plain fields beside the methods.

use std::sync::Arc;

use mlua::{AnyUserData, Lua, LuaSerdeExt, MetaMethod, MultiValue, UserData, Value};

use super::{LuaChange, LuaProperties, LuaSourceStamp};
use crate::model::{BuildInfo, BuilderInfo, LogInfo, StepInfo};
use crate::script::renderable::{lua_serialize_options, RenderData};

/// A build. Methods: `getNumber getBuilder getProperties getProperty getReason getResults
/// getText getTimes isFinished getSlavename/getWorkername getResponsibleUsers getSourceStamps
/// getSourceStamp getChanges getSteps getLogs getPreviousBuild`.
#[derive(Clone)]
pub struct LuaBuild(pub Arc<BuildInfo>);

/// A step of a build: `getName getNumber getResults getText isFinished getLogs getTimes
/// getBuild`.
#[derive(Clone)]
pub struct LuaStep {
    build: Arc<BuildInfo>,
    index: usize,
}

/// A log of a step: `getName getStep getText isFinished`. The text is read only when
/// `getText` is called.
#[derive(Clone)]
pub struct LuaLog {
    build: Arc<BuildInfo>,
    step: usize,
    index: usize,
}

/// A builder: `getName getTags`.
#[derive(Clone)]
pub struct LuaBuilder(pub BuilderInfo);

impl LuaStep {
    /// The step at `index` of `build`, if there is one.
    pub fn new(build: Arc<BuildInfo>, index: usize) -> Option<LuaStep> {
        (index < build.steps.len()).then_some(LuaStep { build, index })
    }

    pub fn build(&self) -> &Arc<BuildInfo> {
        &self.build
    }

    /// The step's number in its build.
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn info(&self) -> &StepInfo {
        &self.build.steps[self.index]
    }
}

impl LuaLog {
    /// Log `index` of step `step` of `build`, if there is one.
    pub fn new(build: Arc<BuildInfo>, step: usize, index: usize) -> Option<LuaLog> {
        let exists = build.steps.get(step).is_some_and(|s| index < s.logs.len());
        exists.then_some(LuaLog { build, step, index })
    }

    pub fn step(&self) -> LuaStep {
        LuaStep {
            build: self.build.clone(),
            index: self.step,
        }
    }

    pub fn info(&self) -> &LogInfo {
        &self.build.steps[self.step].logs[self.index]
    }
}

fn steps(lua: &Lua, build: &Arc<BuildInfo>) -> mlua::Result<mlua::Table> {
    lua.create_sequence_from((0..build.steps.len()).map(|index| LuaStep {
        build: build.clone(),
        index,
    }))
}

fn sourcestamps(lua: &Lua, build: &BuildInfo) -> mlua::Result<mlua::Table> {
    lua.create_sequence_from(
        build
            .sourcestamps
            .iter()
            .map(|ss| LuaSourceStamp(Arc::new(ss.clone()))),
    )
}

fn properties(build: &BuildInfo) -> LuaProperties {
    LuaProperties(Arc::new(RenderData {
        properties: build.properties.clone(),
        sourcestamps: build.sourcestamps.clone(),
        ..RenderData::default()
    }))
}

/// `start, finish` as two values, `finish` nil while running (0.8's `(start, end)` tuple).
fn times(start: Option<f64>, end: Option<f64>) -> MultiValue {
    let num = |t: Option<f64>| t.map_or(Value::Nil, Value::Number);
    MultiValue::from_vec(vec![num(start), num(end)])
}

impl UserData for LuaBuild {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("number", |_, this| Ok(this.0.number));
        fields.add_field_method_get("builderName", |_, this| Ok(this.0.builder.name.clone()));
        fields.add_field_method_get("builderid", |_, this| Ok(this.0.builder.id));
        fields.add_field_method_get("results", |_, this| Ok(this.0.results.map(|r| r.code())));
        fields.add_field_method_get("reason", |_, this| Ok(this.0.reason.clone()));
        fields.add_field_method_get("state_string", |_, this| Ok(this.0.text.join(" ")));
        fields.add_field_method_get("started_at", |_, this| Ok(this.0.started_at));
        fields.add_field_method_get("complete_at", |_, this| Ok(this.0.complete_at));
        fields.add_field_method_get("workername", |_, this| Ok(this.0.worker_name.clone()));
        fields.add_field_method_get("properties", |_, this| Ok(properties(&this.0)));
        fields.add_field_method_get("sourcestamps", |lua, this| sourcestamps(lua, &this.0));
        fields.add_field_method_get("steps", |lua, this| steps(lua, &this.0));
    }

    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("getNumber", |_, this, ()| Ok(this.0.number));
        methods.add_method("getBuilder", |_, this, ()| {
            Ok(LuaBuilder(this.0.builder.clone()))
        });
        methods.add_method("getProperties", |_, this, ()| Ok(properties(&this.0)));
        methods.add_method(
            "getProperty",
            |lua, this, (name, default): (String, Value)| match this.0.properties.get(&name) {
                Some(value) => lua.to_value_with(value, lua_serialize_options()),
                None => Ok(default),
            },
        );
        methods.add_method("getReason", |_, this, ()| Ok(this.0.reason.clone()));
        methods.add_method("getResults", |_, this, ()| {
            Ok(this.0.results.map(|r| r.code()))
        });
        methods.add_method("getText", |_, this, ()| Ok(this.0.text.clone()));
        methods.add_method("getTimes", |_, this, ()| {
            Ok(times(Some(this.0.started_at), this.0.complete_at))
        });
        methods.add_method("isFinished", |_, this, ()| Ok(this.0.is_finished()));
        for name in ["getSlavename", "getWorkername"] {
            methods.add_method(name, |_, this, ()| Ok(this.0.worker_name.clone()));
        }
        methods.add_method("getResponsibleUsers", |_, this, ()| {
            Ok(this.0.responsible_users())
        });
        methods.add_method("getSourceStamps", |lua, this, ()| {
            sourcestamps(lua, &this.0)
        });
        methods.add_method("getSourceStamp", |_, this, ()| {
            Ok(this
                .0
                .sourcestamps
                .first()
                .map(|ss| LuaSourceStamp(Arc::new(ss.clone()))))
        });
        methods.add_method("getChanges", |lua, this, ()| {
            lua.create_sequence_from(
                this.0
                    .changes()
                    .map(|change| LuaChange(Arc::new(change.clone()))),
            )
        });
        methods.add_method("getSteps", |lua, this, ()| steps(lua, &this.0));
        methods.add_method("getLogs", |lua, this, ()| {
            lua.create_sequence_from(this.0.logs().map(|(step, index, _)| LuaLog {
                build: this.0.clone(),
                step,
                index,
            }))
        });
        methods.add_method("getPreviousBuild", |_, this, ()| {
            let Some(history) = &this.0.history else {
                return Ok(None);
            };
            history
                .previous_finished(&this.0.builder, this.0.number)
                .map(|build| build.map(LuaBuild))
                .map_err(|e| {
                    mlua::Error::runtime(format!(
                        "getPreviousBuild: cannot read the builds of '{}': {e:#}",
                        this.0.builder.name
                    ))
                })
        });
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!("build {} #{}", this.0.builder.name, this.0.number))
        });
    }
}

impl UserData for LuaStep {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("name", |_, this| Ok(this.info().name.clone()));
        fields.add_field_method_get("number", |_, this| Ok(this.index));
        fields.add_field_method_get("results", |_, this| {
            Ok(this.info().results.map(|r| r.code()))
        });
        fields.add_field_method_get("state_string", |_, this| Ok(this.info().text.join(" ")));
        fields.add_field_method_get("started_at", |_, this| Ok(this.info().started_at));
        fields.add_field_method_get("complete_at", |_, this| Ok(this.info().complete_at));
    }

    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("getName", |_, this, ()| Ok(this.info().name.clone()));
        methods.add_method("getNumber", |_, this, ()| Ok(this.index));
        // `result, text = step:getResults()`, as the spec's examples unpack it.
        methods.add_method("getResults", |lua, this, ()| {
            let info = this.info();
            Ok(MultiValue::from_vec(vec![
                info.results
                    .map_or(Value::Nil, |r| Value::Integer(r.code())),
                Value::Table(lua.create_sequence_from(info.text.iter().map(String::as_str))?),
            ]))
        });
        methods.add_method("getText", |_, this, ()| Ok(this.info().text.clone()));
        methods.add_method("isFinished", |_, this, ()| Ok(this.info().is_finished()));
        methods.add_method("getTimes", |_, this, ()| {
            let info = this.info();
            Ok(times(info.started_at, info.complete_at))
        });
        methods.add_method("getLogs", |lua, this, ()| {
            lua.create_sequence_from((0..this.info().logs.len()).map(|index| LuaLog {
                build: this.build.clone(),
                step: this.index,
                index,
            }))
        });
        methods.add_method("getBuild", |_, this, ()| Ok(LuaBuild(this.build.clone())));
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!("step {}", this.info().name))
        });
    }
}

impl UserData for LuaLog {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("name", |_, this| Ok(this.info().name.clone()));
    }

    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("getName", |_, this, ()| Ok(this.info().name.clone()));
        methods.add_method("getStep", |_, this, ()| Ok(this.step()));
        methods.add_method("isFinished", |_, this, ()| Ok(this.info().finished));
        methods.add_method("getText", |lua, this, ()| {
            let info = this.info();
            let text = info.source.text().map_err(|e| {
                mlua::Error::runtime(format!(
                    "getText: cannot read log '{}' of step '{}': {e:#}",
                    info.name,
                    this.step().info().name
                ))
            })?;
            lua.create_string(text)
        });
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!(
                "log {}.{}",
                this.step().info().name,
                this.info().name
            ))
        });
    }
}

impl UserData for LuaBuilder {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("name", |_, this| Ok(this.0.name.clone()));
        fields.add_field_method_get("builderid", |_, this| Ok(this.0.id));
        fields.add_field_method_get("tags", |_, this| Ok(this.0.tags.clone()));
    }

    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("getName", |_, this, ()| Ok(this.0.name.clone()));
        methods.add_method("getTags", |_, this, ()| Ok(this.0.tags.clone()));
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!("builder {}", this.0.name))
        });
    }
}

/// The build behind a Lua value, when it is a build object.
pub fn build_of(value: &Value) -> Option<Arc<BuildInfo>> {
    match value {
        Value::UserData(ud) => borrow::<LuaBuild>(ud).map(|b| b.0),
        _ => None,
    }
}

pub(super) fn borrow<T: UserData + Clone + 'static>(ud: &AnyUserData) -> Option<T> {
    ud.borrow::<T>().ok().map(|b| b.clone())
}
