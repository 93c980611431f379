//! `util.BuildFactory`: the list of steps a builder runs.

use std::sync::{Arc, Mutex, MutexGuard};

use mlua::{Lua, MetaMethod, MultiValue, UserData, UserDataMethods, Value};

use super::steps::StepConfig;
use super::values::read_args;
use crate::config::kwargs::{describe, FromOption, OptionError};
use crate::config::{report_error, report_unimplemented, ConfigError, Location, Namespaces};

/// The step list is shared by the Lua object and every `BuilderConfig` made from it, because
/// a config may add steps after making the builder (`f:addStep(...)` below
/// `util.BuilderConfig{factory=f}`). A loaded config keeps a [`BuildFactory::detached`] copy.
/// The list itself is copied on write: the builders detached from one factory, and the
/// engine's builders after them, share one list until a later `addStep` copies it.
#[derive(Clone, Debug, Default)]
pub struct BuildFactory {
    steps: Arc<Mutex<Arc<Vec<StepConfig>>>>,
}

pub const BUILD_FACTORY_OPTIONS: &[&str] = &["steps"];

impl BuildFactory {
    fn lock(&self) -> MutexGuard<'_, Arc<Vec<StepConfig>>> {
        // A panic while holding the lock cannot leave the list half-written: pushes are
        // single operations, so a poisoned list is still whole.
        self.steps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The steps as they are now.
    pub fn steps(&self) -> Arc<Vec<StepConfig>> {
        self.lock().clone()
    }

    /// A copy that no later `addStep` reaches.
    pub fn detached(&self) -> BuildFactory {
        BuildFactory {
            steps: Arc::new(Mutex::new(self.steps())),
        }
    }

    /// Adds one Lua value as a step, reporting (not raising) a value that is not one, so
    /// evaluation goes on and every mistake is listed.
    fn add(&self, lua: &Lua, what: &str, value: Value, location: &Location) {
        match StepConfig::from_option(value, lua) {
            Ok(step) => Arc::make_mut(&mut self.lock()).push(step),
            Err(OptionError::Wrong(why)) => report_error(
                lua,
                ConfigError::at(location.clone(), format!("{what}: the step {why}")),
            ),
            Err(OptionError::Reported) => {}
        }
    }

    /// Adds every item of a Lua list.
    fn add_list(&self, lua: &Lua, what: &str, value: Value, location: &Location) {
        let Value::Table(table) = &value else {
            report_error(
                lua,
                ConfigError::at(
                    location.clone(),
                    format!(
                        "{what}: the steps must be a list of build steps, got {}",
                        describe(&value)
                    ),
                ),
            );
            return;
        };
        for item in table.clone().sequence_values::<Value>().flatten() {
            self.add(lua, what, item, location);
        }
    }

    /// `addStep`/`addSteps` bound to this factory. They accept both `f:addStep(s)` and the
    /// Python spelling `f.addStep(s)`: a leading factory argument is the `self` of a colon
    /// call and is skipped.
    fn method(&self, lua: &Lua, name: &str) -> mlua::Result<Value> {
        let this = self.clone();
        let function = match name {
            "addStep" => lua.create_function(move |lua, args: MultiValue| {
                let location = Location::of_caller(lua);
                let mut args = without_self(args).into_iter();
                let step = args.next().unwrap_or(Value::Nil);
                this.add(lua, "BuildFactory:addStep", step, &location);
                Ok(())
            })?,
            "addSteps" => lua.create_function(move |lua, args: MultiValue| {
                let location = Location::of_caller(lua);
                let mut args = without_self(args).into_iter();
                let steps = args.next().unwrap_or(Value::Nil);
                this.add_list(lua, "BuildFactory:addSteps", steps, &location);
                if args.next().is_some_and(|v| !v.is_nil()) {
                    report_unimplemented(
                        lua,
                        ConfigError::at(
                            location,
                            "BuildFactory:addSteps: withSecrets is not implemented yet",
                        ),
                    );
                }
                Ok(())
            })?,
            _ => return Ok(Value::Nil),
        };
        Ok(Value::Function(function))
    }
}

fn without_self(args: MultiValue) -> Vec<Value> {
    let mut args: Vec<Value> = args.into_iter().collect();
    if matches!(args.first(), Some(Value::UserData(ud)) if ud.is::<BuildFactory>()) {
        args.remove(0);
    }
    args
}

impl UserData for BuildFactory {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::Index, |lua, this, key: String| {
            match this.method(lua, &key)? {
                // Raised, as a misspelt method cannot be called anyway; the place leads the
                // message so that it reads like the other config errors.
                Value::Nil => Err(mlua::Error::runtime(format!(
                    "{}: util.BuildFactory has no '{key}' (it has addStep and addSteps)",
                    Location::of_caller(lua)
                ))),
                method => Ok(method),
            }
        });
    }
}

crate::config_object!(BuildFactory, "util.BuildFactory");

pub(super) fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    let new = lua.create_function(|lua, args: MultiValue| {
        let mut kw = read_args(
            lua,
            "BuildFactory",
            args,
            &["steps"],
            &["steps"],
            &[],
            BUILD_FACTORY_OPTIONS,
        );
        let factory = BuildFactory::default();
        if let Some(steps) = kw.raw("steps") {
            factory.add_list(lua, "BuildFactory", steps, &kw.location());
        }
        kw.finish();
        // Always a factory, even after errors (they are reported), so that the config's
        // `f:addStep(...)` lines still run and report their own mistakes.
        Ok(factory)
    })?;
    crate::config::define(&ns.util, "BuildFactory", new)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::config::build::testing::*;
    use crate::config::build::*;

    #[test]
    fn steps_added_after_the_builder_count_and_loading_detaches_them() {
        let loaded = load(
            r#"c = BuildmasterConfig
c.workers = {worker.LocalWorker("w")}
f = util.BuildFactory({steps.ShellCommand{command="one"}})
c.builders = {util.BuilderConfig{name="b", workernames={"w"}, factory=f}}
f:addStep(steps.ShellCommand{command="two"})
f.addStep(steps.ShellCommand{command="three"})
f:addSteps({steps.ShellCommand{command="four"}, steps.ShellCommand{command="five"}})
local g = util.BuildFactory{steps={steps.ShellCommand{command="six"}}}
c.builders:append(util.BuilderConfig{name="b2", workernames={"w"}, factory=g})"#,
        );
        let names = |b: &BuilderConfig| -> Vec<serde_json::Value> {
            b.steps()
                .iter()
                .map(|s| match &s.kind {
                    StepKind::ShellCommand(shell) => value(&shell.command),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        let builder = &loaded.config.builders[0];
        assert_eq!(
            names(builder),
            [
                json!("one"),
                json!("two"),
                json!("three"),
                json!("four"),
                json!("five")
            ]
        );
        assert_eq!(builder.steps()[1].location.line, 5);
        assert_eq!(names(&loaded.config.builders[1]), [json!("six")]);
        // A callback running later cannot change the loaded config.
        loaded
            .lua
            .load("f:addStep(steps.ShellCommand{command='late'})")
            .exec()
            .unwrap();
        assert_eq!(builder.steps().len(), 5);
    }

    #[test]
    fn factory_errors() {
        check_errors(&[
        (
            "util.BuildFactory():addStep({})",
            "BuildFactory:addStep: the step must be a build step (steps.ShellCommand{...}, ...), got table",
        ),
        (
            "util.BuildFactory({1})",
            "BuildFactory: the step must be a build step (steps.ShellCommand{...}, ...), got number 1",
        ),
        (
            "util.BuildFactory():addSteps(5)",
            "BuildFactory:addSteps: the steps must be a list of build steps, got number 5",
        ),
        (
            "util.BuildFactory():addStepp(steps.ShellCommand{command='x'})",
            "util.BuildFactory has no 'addStepp' (it has addStep and addSteps)",
        ),
        (
            "util.BuildFactory{step={}}",
            "BuildFactory: unknown option 'step' (did you mean 'steps'?)",
        ),
    ]);
        // A step whose own options were wrong is reported once, by the step.
        assert_eq!(
            errors("util.BuildFactory():addStep(steps.ShellCommand{})"),
            "master.cfg.lua:1: ShellCommand: missing required option 'command'\n"
        );
        assert_eq!(
            unimplemented("util.BuildFactory():addSteps({}, {'secret'})"),
            ["master.cfg.lua:1: BuildFactory:addSteps: withSecrets is not implemented yet"]
        );
    }
}
