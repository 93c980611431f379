//! `util.BuilderConfig`: a builder, the workers it may use and the factory it runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use mlua::{Lua, MultiValue, UserData, Value};

use super::factory::BuildFactory;
use super::steps::{StepConfig, StepKind};
use super::values::ValueOrFunction;
use crate::config::kwargs::{
    constructor, userdata_option, FromOption, Kwargs, OneOrMany, OptionError,
};
use crate::config::{define, Location, Namespaces};
use crate::script::{Callback, Renderable};

/// One entry of `c['builders']`.
#[derive(Clone, Debug)]
pub struct BuilderConfig {
    pub name: String,
    pub workernames: Vec<String>,
    /// The builder's directory on the master, relative to its base directory.
    pub builddir: String,
    /// The builder's directory on each worker.
    pub workerbuilddir: String,
    pub tags: Vec<String>,
    pub description: Option<String>,
    /// `Some("markdown")` when the description is Markdown.
    pub description_format: Option<String>,
    pub properties: BTreeMap<String, serde_json::Value>,
    /// Applied only where no other source set the property.
    pub default_properties: BTreeMap<String, serde_json::Value>,
    pub env: BTreeMap<String, Renderable>,
    /// Whether pending requests merge into one build; `None` follows `c['collapseRequests']`.
    pub collapse_requests: Option<CollapseRequests>,
    /// `fn(builder, workers, request)` picking the worker.
    pub next_worker: Option<Callback>,
    /// `fn(builder, requests)` picking the next request.
    pub next_build: Option<Callback>,
    /// `fn(builder, worker, request)` saying whether a build may start there.
    pub can_start_build: Option<Callback>,
    /// `fn(build)` saying whether a build runs at all.
    pub do_build_if: Option<Callback>,
    pub location: Location,
    factory: BuildFactory,
}

impl UserData for BuilderConfig {}

/// `collapseRequests`, or 0.8's `mergeRequests`, whose function takes no `master`.
#[derive(Clone, Debug)]
pub enum CollapseRequests {
    Value(bool),
    /// `fn(master, builder, request1, request2) -> bool`.
    Function(Callback),
    /// 0.8's `fn(builder, request1, request2) -> bool`.
    MergeFunction(Callback),
}

/// Taking a builder out of Lua detaches its factory: steps added after the config is read
/// do not reach the loaded config.
impl FromOption for BuilderConfig {
    fn expected() -> String {
        "a util.BuilderConfig".into()
    }
    fn from_option(value: Value, _: &Lua) -> Result<Self, OptionError> {
        userdata_option::<BuilderConfig>(value).map(|mut builder| {
            builder.factory = builder.factory.detached();
            builder
        })
    }
}

impl BuilderConfig {
    /// The factory's steps, in order.
    pub fn steps(&self) -> Arc<Vec<StepConfig>> {
        self.factory.steps()
    }

    /// Scheduler names its Trigger steps fire, with each step's place.
    pub fn triggered_schedulers(&self) -> Vec<(String, Location)> {
        self.steps()
            .iter()
            .filter_map(|step| match &step.kind {
                StepKind::Trigger(trigger) => Some((&trigger.scheduler_names, &step.location)),
                _ => None,
            })
            .flat_map(|(names, location)| names.iter().map(|n| (n.clone(), location.clone())))
            .collect()
    }
}

pub const BUILDER_OPTIONS: &[&str] = &[
    "name",
    "workername",
    "workernames",
    "slavename",
    "slavenames",
    "builddir",
    "workerbuilddir",
    "slavebuilddir",
    "factory",
    "tags",
    "category",
    "nextWorker",
    "nextSlave",
    "nextBuild",
    "canStartBuild",
    "locks",
    "env",
    "properties",
    "defaultProperties",
    "collapseRequests",
    "mergeRequests",
    "description",
    "description_format",
    "project",
    "do_build_if",
];

fn builder_config(lua: &Lua, args: MultiValue) -> Option<BuilderConfig> {
    let mut kw = Kwargs::new(lua, "BuilderConfig", args, &[], BUILDER_OPTIONS);
    let name = kw.required_opt::<String>("name");
    if let Some(name) = &name {
        if name.is_empty() {
            kw.error("the builder name must not be empty");
        } else if name.starts_with('_') {
            kw.error(format!(
                "builder name '{name}' must not start with an underscore"
            ));
        }
    }
    let name = name.unwrap_or_default();

    // One list of worker names from the plural and singular spellings, old and new.
    let given = ["workernames", "slavenames", "workername", "slavename"]
        .iter()
        .any(|n| kw.has(n));
    let plural = kw.alias::<OneOrMany<String>>(&["workernames", "slavenames"]);
    let singular = kw.alias::<String>(&["workername", "slavename"]);
    // A value of the wrong type is reported already; an empty list is not.
    let converted = plural.is_some() || singular.is_some();
    let mut workernames = plural.unwrap_or_default().0;
    workernames.extend(singular);
    if workernames.is_empty() && (converted || !given) {
        kw.error("needs at least one worker: give 'workernames' (or 'workername')");
    }

    let factory = kw.required_opt::<BuildFactory>("factory");
    let builddir = kw
        .optional::<String>("builddir")
        .unwrap_or_else(|| safe_translate(&name));
    let workerbuilddir = kw
        .alias::<String>(&["workerbuilddir", "slavebuilddir"])
        .unwrap_or_else(|| builddir.clone());

    let tags = kw
        .alias::<OneOrMany<String>>(&["tags", "category"])
        .unwrap_or_default()
        .0;
    let mut seen = Vec::new();
    for tag in &tags {
        if seen.contains(&tag) {
            kw.error(format!("option 'tags' lists '{tag}' twice"));
        }
        seen.push(tag);
    }

    let description_format: Option<String> = kw.optional("description_format");
    // The web pages that would render it are not built yet.
    kw.unimplemented_when("description_format", description_format.is_some());
    if let Some(format) = description_format.as_deref().filter(|f| *f != "markdown") {
        kw.error(format!(
            "option 'description_format' must be 'markdown', got '{format}'"
        ));
    }
    kw.unimplemented("locks");
    kw.unimplemented("project");

    let config = BuilderConfig {
        workernames,
        builddir,
        workerbuilddir,
        tags,
        description: kw.optional("description"),
        description_format,
        properties: kw.optional("properties").unwrap_or_default(),
        default_properties: kw.optional("defaultProperties").unwrap_or_default(),
        env: kw.optional("env").unwrap_or_default(),
        collapse_requests: collapse_requests(&mut kw),
        next_worker: kw.alias(&["nextWorker", "nextSlave"]),
        next_build: kw.optional("nextBuild"),
        can_start_build: kw.optional("canStartBuild"),
        do_build_if: kw.optional("do_build_if"),
        location: kw.location(),
        factory: factory.unwrap_or_default(),
        name,
    };
    kw.finish().then_some(config)
}

fn collapse_requests(kw: &mut Kwargs) -> Option<CollapseRequests> {
    let old = kw.has("mergeRequests") && !kw.has("collapseRequests");
    Some(
        match kw.alias::<ValueOrFunction<bool>>(&["collapseRequests", "mergeRequests"])? {
            ValueOrFunction::Value(collapse) => CollapseRequests::Value(collapse),
            ValueOrFunction::Function(f) if old => CollapseRequests::MergeFunction(f),
            ValueOrFunction::Function(f) => CollapseRequests::Function(f),
        },
    )
}

/// Buildbot's `safeTranslate`: the characters a directory name should not hold become `_`.
fn safe_translate(name: &str) -> String {
    const BAD: &str = "\t !#$%&'()*+,./:;<=>?@[\\]^{|}~";
    name.chars()
        .map(|c| if BAD.contains(c) { '_' } else { c })
        .collect()
}

pub(super) fn register(lua: &Lua, ns: &Namespaces) -> mlua::Result<()> {
    define(
        &ns.util,
        "BuilderConfig",
        constructor(lua, "util.BuilderConfig", builder_config)?,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use crate::config::build::testing::*;
    use crate::config::build::*;

    #[test]
    fn builder_takes_every_option() {
        let loaded = load(
            r#"c = BuildmasterConfig
c.protocols = {msgpack_experimental_v7 = {port = 9989}}; c.workers = {worker.Worker("w1", "p"), worker.Worker("w2", "p"), worker.Worker("w3", "p")}
local f = util.BuildFactory()
c.builders = {util.BuilderConfig{name="linux build", workernames={"w1", "w2"}, workername="w3",
  factory=f, builddir="bdir", workerbuilddir="wdir", tags={"fast", "linux"},
  nextWorker=function(b, ws, r) return ws[1] end, nextBuild=function(b, rs) return rs[1] end,
  canStartBuild=function(b, w, r) return true end, env={PATH="/bin"}, properties={p=1},
  defaultProperties={d="x"}, collapseRequests=false, description="Builds it",
  description_format="markdown", do_build_if=function(build) return true end}}"#,
        );
        let b = &loaded.config.builders[0];
        assert_eq!(b.name, "linux build");
        assert_eq!(b.workernames, ["w1", "w2", "w3"]);
        assert_eq!(
            (b.builddir.as_str(), b.workerbuilddir.as_str()),
            ("bdir", "wdir")
        );
        assert_eq!(b.tags, ["fast", "linux"]);
        assert_eq!(b.next_worker.as_ref().unwrap().location().line, 6);
        assert_eq!(b.next_build.as_ref().unwrap().location().line, 6);
        assert_eq!(b.can_start_build.as_ref().unwrap().location().line, 7);
        assert_eq!(b.do_build_if.as_ref().unwrap().location().line, 9);
        assert_eq!(map_values(&b.env), json!({"PATH": "/bin"}));
        assert_eq!(b.properties, BTreeMap::from([("p".into(), json!(1))]));
        assert_eq!(
            b.default_properties,
            BTreeMap::from([("d".into(), json!("x"))])
        );
        assert!(matches!(
            b.collapse_requests,
            Some(CollapseRequests::Value(false))
        ));
        assert_eq!(b.description.as_deref(), Some("Builds it"));
        assert_eq!(b.description_format.as_deref(), Some("markdown"));
        assert_eq!(b.location.line, 4);
        assert!(b.steps().is_empty());
    }

    #[test]
    fn builder_defaults_and_old_names() {
        let loaded = load(
            r#"c = BuildmasterConfig
c.protocols = {msgpack_experimental_v7 = {port = 9989}}; c.slaves = {buildslave.BuildSlave("s1", "p"), buildslave.BuildSlave("s2", "p")}
c.builders = {
  util.BuilderConfig{name="a/b c", slavenames={"s1"}, factory=util.BuildFactory()},
  util.BuilderConfig{name="old", slavenames="s1", slavename="s2", slavebuilddir="sb",
    category="nightly", nextSlave=function() end, mergeRequests=function() return true end,
    factory=util.BuildFactory()},
  util.BuilderConfig{name="new", workername="s1", factory=util.BuildFactory(),
    collapseRequests=function(master, builder, a, b) return true end},
}"#,
        );
        let (a, old) = (&loaded.config.builders[0], &loaded.config.builders[1]);
        assert!(matches!(
            loaded.config.builders[2].collapse_requests,
            Some(CollapseRequests::Function(_))
        ));
        assert_eq!(a.builddir, "a_b_c");
        assert_eq!(a.workerbuilddir, "a_b_c");
        assert!(a.tags.is_empty() && a.env.is_empty() && a.collapse_requests.is_none());
        assert!(a.next_worker.is_none() && a.description.is_none());
        assert_eq!(old.workernames, ["s1", "s2"]);
        assert_eq!(old.builddir, "old");
        assert_eq!(old.workerbuilddir, "sb");
        assert_eq!(old.tags, ["nightly"]);
        assert!(old.next_worker.is_some());
        assert!(matches!(
            old.collapse_requests,
            Some(CollapseRequests::MergeFunction(_))
        ));
    }

    #[test]
    fn builder_errors() {
        let f = "factory=util.BuildFactory()";
        check_errors(&[
        (
            &format!("util.BuilderConfig{{name='b', {f}}}"),
            "BuilderConfig: needs at least one worker: give 'workernames' (or 'workername')",
        ),
        (
            &format!("util.BuilderConfig{{name='b', workernames={{}}, {f}}}"),
            "BuilderConfig: needs at least one worker: give 'workernames' (or 'workername')",
        ),
        (
            &format!("util.BuilderConfig{{workernames='w', {f}}}"),
            "BuilderConfig: missing required option 'name'",
        ),
        (
            &format!("util.BuilderConfig{{name='_b', workernames='w', {f}}}"),
            "BuilderConfig: builder name '_b' must not start with an underscore",
        ),
        (
            "util.BuilderConfig{name='b', workernames='w'}",
            "BuilderConfig: missing required option 'factory'",
        ),
        (
            "util.BuilderConfig{name='b', workernames='w', factory={}}",
            "BuilderConfig: option 'factory' must be a util.BuildFactory, got table",
        ),
        (
            &format!("util.BuilderConfig{{name='b', workernames='w', tags={{'a', 'a'}}, {f}}}"),
            "BuilderConfig: option 'tags' lists 'a' twice",
        ),
        (
            &format!("util.BuilderConfig{{name='b', workernames='w', description_format='html', {f}}}"),
            "BuilderConfig: option 'description_format' must be 'markdown', got 'html'",
        ),
        (
            &format!("util.BuilderConfig{{name='b', workernames='w', slavenames='w', {f}}}"),
            "BuilderConfig: options 'workernames' and 'slavenames' are the same; give only one",
        ),
        (
            &format!("util.BuilderConfig{{name='b', workernames='w', collapseRequests='yes', {f}}}"),
            "BuilderConfig: option 'collapseRequests' must be a boolean or a function, got string 'yes'",
        ),
        (
            &format!("util.BuilderConfig{{name='b', workernames='w', tag={{'x'}}, {f}}}"),
            "BuilderConfig: unknown option 'tag' (did you mean 'tags'?)",
        ),
    ]);
    }

    #[test]
    fn builder_locks_and_project_are_not_implemented_yet() {
        assert_eq!(
        unimplemented(
            "c = BuildmasterConfig
c.workers = {worker.LocalWorker('w')}
c.builders = {util.BuilderConfig{name='b', workernames='w', factory=util.BuildFactory(), locks={}, project='p'}}"
        ),
        [
            "master.cfg.lua:3: BuilderConfig: option 'locks' is not implemented yet",
            "master.cfg.lua:3: BuilderConfig: option 'project' is not implemented yet",
        ]
    );
    }
}
