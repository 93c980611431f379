//! Each class with every option it takes, each check with its exact message, and a whole
//! realistic config.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::*;
use crate::config::{load_source, LoadedConfig};
use crate::model::BuildResult;
use crate::script::{RenderData, Renderable};

fn load(source: &str) -> LoadedConfig {
    load_source("master.cfg.lua", source, Path::new("."))
        .unwrap_or_else(|errors| panic!("config did not load:\n{errors}"))
}

fn errors(source: &str) -> String {
    match load_source("master.cfg.lua", source, Path::new(".")) {
        Ok(_) => panic!("config loaded without errors:\n{source}"),
        Err(errors) => errors.to_string(),
    }
}

/// Each snippet fails with exactly the messages given, one a line, without the place, which
/// is always line 1.
fn check_errors(cases: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for (snippet, expected) in cases {
        let got = errors(snippet);
        let expected: String = expected
            .lines()
            .map(|line| format!("master.cfg.lua:1: {line}\n"))
            .collect();
        if got != expected {
            failures.push(format!(
                "{snippet}\n  expected: {expected}  got:      {got}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Constant renderables as the JSON they render to.
fn value(r: &Renderable) -> serde_json::Value {
    r.render(&RenderData::default(), None).unwrap()
}

fn map_values(map: &BTreeMap<String, Renderable>) -> serde_json::Value {
    map.iter().map(|(k, v)| (k.clone(), value(v))).collect()
}

/// A builder around the steps listed from line 1, with two Triggerable schedulers to fire.
fn steps_of(steps: &str) -> Vec<StepConfig> {
    let source = format!(
        "local s = {{{steps}}}
c = BuildmasterConfig
c.workers = {{worker.Worker('w', 'p')}}
c.builders = {{util.BuilderConfig{{name='b', workernames={{'w'}}, factory=util.BuildFactory(s)}}}}
c.schedulers = {{schedulers.Triggerable{{name='t1', builderNames={{'b'}}}},
                 schedulers.Triggerable{{name='t2', builderNames={{'b'}}}}}}"
    );
    load(&source).config.builders[0].steps()
}

fn step(snippet: &str) -> StepConfig {
    let mut steps = steps_of(snippet);
    assert_eq!(steps.len(), 1);
    steps.remove(0)
}

/// The scheduler made on line 1, with builder `b` to point at.
fn scheduler(snippet: &str) -> SchedulerConfig {
    let source = format!(
        "local s = {snippet}
c = BuildmasterConfig
c.workers = {{worker.Worker('w', 'p')}}
c.builders = {{util.BuilderConfig{{name='b', workernames={{'w'}}, factory=util.BuildFactory()}},
               util.BuilderConfig{{name='b2', workernames={{'w'}}, factory=util.BuildFactory()}}}}
c.schedulers = {{schedulers.Triggerable{{name='up', builderNames={{'b'}}}}, s}}"
    );
    load(&source).config.schedulers.remove(1)
}

fn change_source(snippet: &str) -> ChangeSourceConfig {
    let source = format!("BuildmasterConfig.change_source = {snippet}");
    load(&source).config.change_sources.remove(0)
}

fn unimplemented(source: &str) -> Vec<String> {
    load(source)
        .unimplemented
        .iter()
        .map(ToString::to_string)
        .collect()
}

// ---- workers ----------------------------------------------------------------------------

#[test]
fn worker_takes_every_option() {
    let config = load(
        r#"BuildmasterConfig.workers = {worker.Worker("w1", "pw", {max_builds=2, properties={os="linux"},
  defaultProperties={arch="x86"}, notify_on_missing={"a@example.org", "b@example.org"},
  missing_timeout=60, keepalive_interval=30})}"#,
    )
    .config;
    let w = &config.workers[0];
    assert_eq!(w.name, "w1");
    assert_eq!(
        w.kind,
        WorkerKind::Remote {
            password: "pw".into()
        }
    );
    assert!(!w.is_local());
    assert_eq!(w.max_builds, Some(2));
    assert_eq!(
        w.properties,
        BTreeMap::from([("os".into(), json!("linux"))])
    );
    assert_eq!(
        w.default_properties,
        BTreeMap::from([("arch".into(), json!("x86"))])
    );
    assert_eq!(w.notify_on_missing, ["a@example.org", "b@example.org"]);
    assert_eq!(w.missing_timeout, 60);
    assert_eq!(w.keepalive_interval, 30);
    assert_eq!(w.location.to_string(), "master.cfg.lua:1");
}

#[test]
fn worker_defaults_and_old_names() {
    let config = load(
        r#"c = BuildmasterConfig
c.workers = {worker.Worker{name="w1", password="pw"}}
c.slaves = {buildslave.BuildSlave("s1", "pw", {notify_on_missing="x@example.org"})}"#,
    )
    .config;
    let (w, s) = (&config.workers[0], &config.workers[1]);
    assert_eq!(w.max_builds, None);
    assert!(w.properties.is_empty() && w.notify_on_missing.is_empty());
    assert_eq!((w.missing_timeout, w.keepalive_interval), (3600, 3600));
    assert_eq!(s.name, "s1");
    assert_eq!(s.notify_on_missing, ["x@example.org"]);
}

#[test]
fn local_worker_runs_in_a_workdir_named_after_it() {
    let config = load(
        r#"BuildmasterConfig.workers = {worker.LocalWorker("l1"),
  worker.LocalWorker("l2", {workdir="elsewhere", max_builds=1})}"#,
    )
    .config;
    assert!(config.workers[0].is_local());
    assert_eq!(
        config.workers[0].kind,
        WorkerKind::Local {
            workdir: "l1".into()
        }
    );
    assert_eq!(
        config.workers[1].kind,
        WorkerKind::Local {
            workdir: "elsewhere".into()
        }
    );
    assert_eq!(config.workers[1].max_builds, Some(1));
}

#[test]
fn worker_errors() {
    check_errors(&[
        (r#"worker.Worker("w")"#, "Worker: missing required option 'password'"),
        (r#"worker.Worker("debug", "p")"#, "Worker: worker name 'debug' is reserved"),
        (
            r#"worker.Worker("1x", "p")"#,
            "Worker: worker name '1x' is not an identifier (letters, digits, '_' and '-', not starting with a digit)",
        ),
        (r#"worker.Worker("", "p")"#, "Worker: the worker name must not be empty"),
        (
            r#"worker.Worker(("x"):rep(51), "p")"#,
            &format!("Worker: worker name '{}' is longer than 50 characters", "x".repeat(51)),
        ),
        (
            r#"buildslave.BuildSlave("b", "p", {max_build=2})"#,
            "BuildSlave: unknown option 'max_build' (did you mean 'max_builds'?)",
        ),
        (
            r#"worker.LocalWorker("l", {password="x"})"#,
            "LocalWorker: unknown option 'password'",
        ),
        (
            r#"worker.Worker("w", "p", {max_builds=-1})"#,
            "Worker: option 'max_builds' must be an integer from 0 to 4294967295, got number -1",
        ),
    ]);
}

#[test]
fn worker_locks_and_machine_are_not_implemented_yet() {
    assert_eq!(
        unimplemented(
            r#"BuildmasterConfig.workers = {worker.Worker("w", "p", {locks={}, machine_name="m"})}"#
        ),
        [
            "master.cfg.lua:1: Worker: remote workers are not implemented yet (use worker.LocalWorker)",
            "master.cfg.lua:1: Worker: option 'locks' is not implemented yet",
            "master.cfg.lua:1: Worker: option 'machine_name' is not implemented yet",
        ]
    );
}

// ---- builders and factories -----------------------------------------------------------

#[test]
fn builder_takes_every_option() {
    let loaded = load(
        r#"c = BuildmasterConfig
c.workers = {worker.Worker("w1", "p"), worker.Worker("w2", "p"), worker.Worker("w3", "p")}
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
c.slaves = {buildslave.BuildSlave("s1", "p"), buildslave.BuildSlave("s2", "p")}
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

#[test]
fn steps_added_after_the_builder_count_and_loading_detaches_them() {
    let loaded = load(
        r#"c = BuildmasterConfig
c.workers = {worker.Worker("w", "p")}
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

// ---- steps ------------------------------------------------------------------------------

#[test]
fn shell_command_takes_every_option() {
    let s = step(
        r#"steps.ShellCommand{command={"make", util.Interpolate("-j%(prop:jobs)s")}, name="make",
  description="making", descriptionDone={"made", "it"}, descriptionSuffix="fast",
  haltOnFailure=true, flunkOnFailure=false, warnOnFailure=true, warnOnWarnings=true,
  flunkOnWarnings=true, alwaysRun=true, doStepIf=function(step) return true end,
  hideStepIf=true, logEncoding="latin-1", updateBuildSummaryPolicy={util.FAILURE},
  workdir="src", env={CC="gcc"}, want_stdout=false, want_stderr=false, usePTY=true,
  logfiles={test="test.log", trace={filename="trace.log", follow=true}}, lazylogfiles=true,
  timeout=60, maxTime=3600, max_lines=1000, logEnviron=false, interruptSignal="TERM",
  sigtermTime=5, initialStdin="yes\n", decodeRC={[0]=util.SUCCESS, [1]=util.WARNINGS}}"#,
    );
    assert_eq!(s.class(), "ShellCommand");
    let c = &s.common;
    assert_eq!(c.name, "make");
    assert_eq!(c.description.as_deref(), Some(&["making".to_string()][..]));
    assert_eq!(
        c.description_done.as_deref(),
        Some(&["made".to_string(), "it".to_string()][..])
    );
    assert_eq!(
        c.description_suffix.as_deref(),
        Some(&["fast".to_string()][..])
    );
    assert!(c.halt_on_failure && !c.flunk_on_failure && c.warn_on_failure);
    assert!(c.warn_on_warnings && c.flunk_on_warnings && c.always_run);
    assert!(matches!(&c.do_step_if, ValueOrFunction::Function(f) if f.location().line == 4));
    assert!(matches!(c.hide_step_if, ValueOrFunction::Value(true)));
    assert_eq!(c.log_encoding.as_deref(), Some("latin-1"));
    assert_eq!(c.update_build_summary_policy, [BuildResult::Failure]);
    assert_eq!(value(c.workdir.as_ref().unwrap()), json!("src"));
    let StepKind::ShellCommand(shell) = &s.kind else {
        panic!("{:?}", s.kind)
    };
    let Renderable::List(words) = &shell.command else {
        panic!("{:?}", shell.command)
    };
    assert_eq!(value(&words[0]), json!("make"));
    assert!(matches!(words[1], Renderable::Interpolate(_)));
    let o = &shell.shell;
    assert_eq!(map_values(&o.env), json!({"CC": "gcc"}));
    assert!(!o.want_stdout && !o.want_stderr && o.lazylogfiles && !o.log_environ);
    assert_eq!(o.use_pty, Some(true));
    assert_eq!(
        o.logfiles,
        BTreeMap::from([
            (
                "test".into(),
                LogFile {
                    filename: "test.log".into(),
                    follow: false
                }
            ),
            (
                "trace".into(),
                LogFile {
                    filename: "trace.log".into(),
                    follow: true
                }
            ),
        ])
    );
    assert_eq!(
        (o.timeout, o.max_time, o.max_lines),
        (Some(60), Some(3600), Some(1000))
    );
    assert_eq!(o.interrupt_signal, "TERM");
    assert_eq!(o.sigterm_time, Some(5));
    assert_eq!(o.initial_stdin.as_deref(), Some("yes\n"));
    assert_eq!(
        o.decode_rc,
        DecodeRc(BTreeMap::from([
            (0, BuildResult::Success),
            (1, BuildResult::Warnings)
        ]))
    );
    assert_eq!(s.location.line, 1);
}

#[test]
fn shell_command_defaults() {
    let s = step(r#"steps.ShellCommand{command="make", timeout=false}"#);
    let c = &s.common;
    assert_eq!(c.name, "shell");
    assert!(c.description.is_none() && c.description_done.is_none());
    assert!(!c.halt_on_failure && c.flunk_on_failure && !c.warn_on_failure);
    assert!(!c.always_run && c.log_encoding.is_none() && c.workdir.is_none());
    assert!(matches!(c.do_step_if, ValueOrFunction::Value(true)));
    assert!(matches!(c.hide_step_if, ValueOrFunction::Value(false)));
    use BuildResult::*;
    assert_eq!(
        c.update_build_summary_policy,
        [Exception, Retry, Cancelled, Failure]
    );
    let StepKind::ShellCommand(shell) = &s.kind else {
        panic!()
    };
    assert_eq!(value(&shell.command), json!("make"));
    let o = &shell.shell;
    assert!(o.want_stdout && o.want_stderr && o.log_environ && !o.lazylogfiles);
    assert_eq!(o.use_pty, None);
    assert_eq!(o.timeout, None);
    assert_eq!(
        (o.max_time, o.sigterm_time, o.max_lines),
        (None, None, None)
    );
    assert_eq!(o.interrupt_signal, "KILL");
    assert_eq!(o.decode_rc, DecodeRc::default());
}

#[test]
fn summary_policy_follows_the_flags_or_takes_a_boolean() {
    use BuildResult::*;
    let policy = |options: &str| {
        step(&format!("steps.ShellCommand{{command='x', {options}}}"))
            .common
            .update_build_summary_policy
    };
    assert_eq!(
        policy("flunkOnFailure=false"),
        [Exception, Retry, Cancelled]
    );
    assert_eq!(
        policy("warnOnWarnings=true"),
        [Exception, Retry, Cancelled, Failure, Warnings]
    );
    assert_eq!(policy("updateBuildSummaryPolicy=true"), BuildResult::ALL);
    assert!(policy("updateBuildSummaryPolicy=false").is_empty());
}

#[test]
fn configure_compile_test_have_buildbot_defaults() {
    let steps = steps_of(
        "steps.Configure{}, steps.Compile{}, steps.Test{}, steps.Compile{command='ninja', \
         warningPattern='^W: ', maxWarnCount=3, directoryEnterPattern='enter (.*)', \
         directoryLeavePattern='leave', suppressionFile='supp.txt'}, steps.Test{warningPattern=false}",
    );
    let command = |s: &StepConfig| match &s.kind {
        StepKind::Configure(shell) | StepKind::Compile(shell, _) | StepKind::Test(shell, _) => {
            value(&shell.command)
        }
        other => panic!("{other:?}"),
    };
    let warnings = |s: &StepConfig| match &s.kind {
        StepKind::Compile(_, w) | StepKind::Test(_, w) => w.clone(),
        other => panic!("{other:?}"),
    };
    let [configure, compile, test, custom, quiet] = &steps[..] else {
        panic!()
    };
    assert_eq!(command(configure), json!(["./configure"]));
    assert_eq!(configure.common.name, "configure");
    assert_eq!(
        configure.common.description.as_deref(),
        Some(&["configuring".to_string()][..])
    );
    assert!(configure.common.halt_on_failure && configure.common.flunk_on_failure);

    assert_eq!(command(compile), json!(["make", "all"]));
    assert_eq!(compile.common.name, "compile");
    assert_eq!(
        compile.common.description_done.as_deref(),
        Some(&["compile".to_string()][..])
    );
    assert!(compile.common.halt_on_failure);
    let w = warnings(compile);
    assert_eq!(
        w.warning_pattern.as_ref().unwrap().source(),
        "(?i).*warning[: ].*"
    );
    assert!(w
        .warning_pattern
        .as_ref()
        .unwrap()
        .matches_start("foo.c:1: Warning: x"));
    assert!(w
        .directory_enter_pattern
        .is_match("make[1]: Entering directory '/src'"));
    assert_eq!(w.max_warn_count, None);
    assert!(w.suppression_file.is_none());

    assert_eq!(command(test), json!(["make", "test"]));
    assert_eq!(test.common.name, "test");
    assert!(!test.common.halt_on_failure && test.common.warn_on_failure);

    assert_eq!(command(custom), json!("ninja"));
    let w = warnings(custom);
    assert_eq!(w.warning_pattern.as_ref().unwrap().source(), "^W: ");
    assert_eq!(w.max_warn_count, Some(3));
    assert_eq!(w.directory_enter_pattern.source(), "enter (.*)");
    assert_eq!(w.directory_leave_pattern.source(), "leave");
    assert_eq!(
        value(w.suppression_file.as_ref().unwrap()),
        json!("supp.txt")
    );
    assert!(warnings(quiet).warning_pattern.is_none());
}

#[test]
fn shell_sequence_runs_shell_args() {
    let s = step(
        r#"steps.ShellSequence{commands={
    util.ShellArg{command={"make", "clean"}, logname="clean", haltOnFailure=true,
      flunkOnFailure=false, warnOnFailure=true, warnOnWarnings=true, flunkOnWarnings=true},
    util.ShellArg("make", "build")},
  env={A="1"}, timeout=10}"#,
    );
    let StepKind::ShellSequence { commands, shell } = &s.kind else {
        panic!("{:?}", s.kind)
    };
    assert_eq!(s.common.name, "generic");
    let (a, b) = (&commands[0], &commands[1]);
    assert_eq!(value(&a.command), json!(["make", "clean"]));
    assert_eq!(a.logname.as_deref(), Some("clean"));
    assert!(a.halt_on_failure && !a.flunk_on_failure && a.warn_on_failure);
    assert!(a.warn_on_warnings && a.flunk_on_warnings);
    assert_eq!(a.location.line, 2);
    assert_eq!(value(&b.command), json!("make"));
    assert_eq!(b.logname.as_deref(), Some("build"));
    assert!(!b.halt_on_failure && b.flunk_on_failure && !b.warn_on_failure);
    assert_eq!(map_values(&shell.env), json!({"A": "1"}));
    assert_eq!(shell.timeout, Some(10));
}

#[test]
fn set_property_from_command_takes_a_property_or_a_function() {
    let steps = steps_of(
        r#"steps.SetPropertyFromCommand{command="git rev-parse HEAD", property="rev", strip=false,
  includeStdout=false, includeStderr=true},
  steps.SetPropertyFromCommand{command={"env"}, extract_fn=function(rc, out, err) return {} end}"#,
    );
    let StepKind::SetPropertyFromCommand(shell, p) = &steps[0].kind else {
        panic!()
    };
    assert_eq!(steps[0].common.name, "setproperty");
    assert_eq!(value(&shell.command), json!("git rev-parse HEAD"));
    assert!(matches!(&p.target, PropertyTarget::Property(r) if value(r) == json!("rev")));
    assert!(!p.strip && !p.include_stdout && p.include_stderr);
    let StepKind::SetPropertyFromCommand(_, p) = &steps[1].kind else {
        panic!()
    };
    let PropertyTarget::Extract(f) = &p.target else {
        panic!()
    };
    assert_eq!(f.location().line, 3);
    // As Buildbot: a function sees stderr too.
    assert!(p.strip && p.include_stdout && p.include_stderr);
}

#[test]
fn master_shell_command_takes_every_option() {
    let steps = steps_of(
        r#"steps.MasterShellCommand({"deploy", "now"}, {env={X="1"}, usePTY=true,
  interruptSignal="INT", logEnviron=false, runtime_timeout=60, name="deploy"}),
  steps.MasterShellCommand{command="ls"}"#,
    );
    let StepKind::MasterShellCommand(m) = &steps[0].kind else {
        panic!()
    };
    assert_eq!(value(&m.command), json!(["deploy", "now"]));
    assert_eq!(map_values(&m.env), json!({"X": "1"}));
    assert!(m.use_pty && !m.log_environ);
    assert_eq!(
        (m.interrupt_signal.as_str(), m.runtime_timeout),
        ("INT", 60)
    );
    assert_eq!(steps[0].common.name, "deploy");
    let StepKind::MasterShellCommand(m) = &steps[1].kind else {
        panic!()
    };
    assert!(!m.use_pty && m.log_environ);
    assert_eq!(
        (m.interrupt_signal.as_str(), m.runtime_timeout),
        ("KILL", 3600)
    );
    let c = &steps[1].common;
    assert_eq!(c.name, "MasterShellCommand");
    assert_eq!(c.description.as_deref(), Some(&["Running".to_string()][..]));
    assert!(c.halt_on_failure && c.flunk_on_failure);
}

#[test]
fn git_takes_every_option() {
    let s = step(
        r#"steps.Git{repourl="git@example.org:r.git", branch="dev", mode="full", method="clobber",
  submodules=true, remoteSubmodules=true, tags=true, shallow=5, reference="/cache/r.git",
  filters={"blob:none"}, progress=false, retryFetch=true, clobberOnFailure=true,
  getDescription={match="v*", abbrev=7}, config={["core.autocrlf"]="false"}, origin="upstream",
  sshPrivateKey=util.Interpolate("%(prop:key)s"), sshKnownHosts="known", port=2222,
  codebase="lib", alwaysUseLatest=true, timeout=300, retry={10, 3}, env={GIT_TRACE="1"},
  logEnviron=false, workdir="lib"}"#,
    );
    let StepKind::Git(g) = &s.kind else { panic!() };
    assert_eq!(value(&g.repourl), json!("git@example.org:r.git"));
    assert_eq!(value(&g.branch), json!("dev"));
    assert_eq!(g.mode, GitMode::Full(GitMethod::Clobber));
    assert!(g.submodules && g.remote_submodules && g.tags);
    assert_eq!(g.shallow, Some(5));
    assert_eq!(value(g.reference.as_ref().unwrap()), json!("/cache/r.git"));
    assert_eq!(g.filters, ["blob:none"]);
    assert!(!g.progress && g.retry_fetch && g.clobber_on_failure);
    assert_eq!(
        g.get_description,
        Some(BTreeMap::from([
            ("abbrev".into(), json!(7)),
            ("match".into(), json!("v*"))
        ]))
    );
    assert_eq!(
        g.config,
        BTreeMap::from([("core.autocrlf".into(), "false".into())])
    );
    assert_eq!(g.origin.as_deref(), Some("upstream"));
    assert!(matches!(
        g.ssh_private_key,
        Some(Renderable::Interpolate(_))
    ));
    assert!(g.ssh_host_key.is_none());
    assert_eq!(value(g.ssh_known_hosts.as_ref().unwrap()), json!("known"));
    assert_eq!(g.port, 2222);
    assert_eq!(g.codebase, "lib");
    assert!(g.always_use_latest && !g.log_environ);
    assert_eq!(g.timeout, 300);
    assert_eq!(g.retry, Some((10, 3)));
    assert_eq!(map_values(&g.env), json!({"GIT_TRACE": "1"}));
    // The codebase names the step, as Buildbot's Source does.
    assert_eq!(s.common.name, "git-lib");
    assert_eq!(
        s.common.description_suffix.as_deref(),
        Some(&["lib".to_string()][..])
    );
    assert_eq!(value(s.common.workdir.as_ref().unwrap()), json!("lib"));
}

#[test]
fn git_defaults() {
    let steps = steps_of(
        r#"steps.Git("https://example.org/r.git"), steps.Git{repourl="u", mode="full", shallow=true,
  getDescription=true}"#,
    );
    let StepKind::Git(g) = &steps[0].kind else {
        panic!()
    };
    assert_eq!(value(&g.branch), json!("HEAD"));
    assert_eq!(g.mode, GitMode::Incremental);
    assert!(!g.submodules && !g.tags && g.progress && !g.retry_fetch && g.log_environ);
    assert_eq!(
        (g.shallow, g.port, g.timeout, g.retry),
        (None, 22, 1200, None)
    );
    assert!(g.get_description.is_none() && g.codebase.is_empty());
    let c = &steps[0].common;
    assert_eq!(c.name, "git");
    assert_eq!(
        c.description.as_deref(),
        Some(&["updating".to_string()][..])
    );
    assert!(c.halt_on_failure && c.flunk_on_failure && c.description_suffix.is_none());
    let StepKind::Git(g) = &steps[1].kind else {
        panic!()
    };
    assert_eq!(g.mode, GitMode::Full(GitMethod::Fresh));
    assert_eq!(g.shallow, Some(1));
    assert_eq!(g.get_description, Some(BTreeMap::new()));
}

#[test]
fn set_property_trigger_and_file_steps() {
    let steps = steps_of(
        r#"steps.SetProperty("version", util.Property("tag")),
  steps.Trigger{schedulerNames={"t1", "t2"}, unimportantSchedulerNames={"t2"}, waitForFinish=true,
    updateSourceStamp=false, set_properties={quick=true}, copy_properties={"version"},
    parent_relationship="Child of"},
  steps.Trigger{schedulerNames={"t1"}, sourceStamps={{codebase="", branch="main"}}},
  steps.Trigger{schedulerNames={"t1"}, alwaysUseLatest=true},
  steps.FileUpload("out.tar", "public/out.tar", {maxsize=1000, blocksize=4096, mode="0644",
    keepstamp=true, url="http://example.org/out.tar", urlText="tarball"}),
  steps.FileUpload{slavesrc="a", masterdest="b"},
  steps.FileDownload{mastersrc="conf", workerdest="conf", maxsize=10, blocksize=512, mode=420},
  steps.FileDownload{mastersrc="conf", slavedest="old"},
  steps.MakeDirectory("build"), steps.RemoveDirectory{dir="build", alwaysRun=true}"#,
    );
    let StepKind::SetProperty { property, value: v } = &steps[0].kind else {
        panic!()
    };
    assert_eq!(value(property), json!("version"));
    assert!(matches!(v, Renderable::Property { name, .. } if name == "tag"));
    assert_eq!(steps[0].common.name, "SetProperty");

    let StepKind::Trigger(t) = &steps[1].kind else {
        panic!()
    };
    assert_eq!(t.scheduler_names, ["t1", "t2"]);
    assert_eq!(t.unimportant_scheduler_names, ["t2"]);
    assert!(t.wait_for_finish && !t.update_source_stamp && !t.always_use_latest);
    assert_eq!(map_values(&t.set_properties), json!({"quick": true}));
    assert_eq!(t.copy_properties, ["version"]);
    assert_eq!(t.parent_relationship, "Child of");
    assert_eq!(steps[1].common.name, "trigger");
    let StepKind::Trigger(t) = &steps[2].kind else {
        panic!()
    };
    assert_eq!(
        map_values(&t.source_stamps[0]),
        json!({"codebase": "", "branch": "main"})
    );
    assert!(!t.update_source_stamp && !t.wait_for_finish);
    assert_eq!(t.parent_relationship, "Triggered from");
    let StepKind::Trigger(t) = &steps[3].kind else {
        panic!()
    };
    assert!(t.always_use_latest && !t.update_source_stamp);

    let StepKind::FileUpload(u) = &steps[4].kind else {
        panic!()
    };
    assert_eq!(
        (value(&u.workersrc), value(&u.masterdest)),
        (json!("out.tar"), json!("public/out.tar"))
    );
    assert_eq!(
        (u.maxsize, u.blocksize, u.mode),
        (Some(1000), 4096, Some(FileMode(0o644)))
    );
    assert!(u.keepstamp);
    assert_eq!(
        value(u.url.as_ref().unwrap()),
        json!("http://example.org/out.tar")
    );
    assert_eq!(value(u.url_text.as_ref().unwrap()), json!("tarball"));
    assert_eq!(steps[4].common.name, "upload");
    assert!(steps[4].common.halt_on_failure);
    let StepKind::FileUpload(u) = &steps[5].kind else {
        panic!()
    };
    assert_eq!(value(&u.workersrc), json!("a"));
    assert_eq!(
        (u.maxsize, u.blocksize, u.mode, u.keepstamp),
        (None, 262144, None, false)
    );

    let StepKind::FileDownload(d) = &steps[6].kind else {
        panic!()
    };
    assert_eq!(
        (value(&d.mastersrc), value(&d.workerdest)),
        (json!("conf"), json!("conf"))
    );
    assert_eq!(
        (d.maxsize, d.blocksize, d.mode),
        (Some(10), 512, Some(FileMode(0o644)))
    );
    assert_eq!(steps[6].common.name, "download");
    let StepKind::FileDownload(d) = &steps[7].kind else {
        panic!()
    };
    assert_eq!(value(&d.workerdest), json!("old"));
    assert_eq!((d.blocksize, d.mode), (16384, None));

    assert!(
        matches!(&steps[8].kind, StepKind::MakeDirectory { dir } if value(dir) == json!("build"))
    );
    assert_eq!(steps[8].common.name, "MakeDirectory");
    assert!(
        matches!(&steps[9].kind, StepKind::RemoveDirectory { dir } if value(dir) == json!("build"))
    );
    assert_eq!(
        steps[9].common.description_done.as_deref(),
        Some(&["Deleted".to_string()][..])
    );
    assert!(steps[9].common.always_run && steps[9].common.halt_on_failure);
}

#[test]
fn trigger_steps_name_their_schedulers_for_validation() {
    let loaded = load(
        r#"c = BuildmasterConfig
c.workers = {worker.Worker("w", "p")}
local f = util.BuildFactory()
f:addStep(steps.Trigger{schedulerNames={"t1", "t2"}})
c.builders = {util.BuilderConfig{name="b", workernames="w", factory=f}}
c.schedulers = {schedulers.Triggerable{name="t1", builderNames={"b"}},
  schedulers.Triggerable{name="t2", builderNames={"b"}}}"#,
    );
    let triggered = loaded.config.builders[0].triggered_schedulers();
    assert_eq!(
        triggered
            .iter()
            .map(|(n, l)| format!("{n}@{}", l.line))
            .collect::<Vec<_>>(),
        ["t1@4", "t2@4"]
    );
    assert_eq!(
        errors(
            r#"c = BuildmasterConfig
c.workers = {worker.Worker("w", "p")}
c.builders = {util.BuilderConfig{name="b", workernames="w",
  factory=util.BuildFactory({steps.Trigger{schedulerNames={"nope"}}})}}
c.schedulers = {schedulers.Triggerable{name="t1", builderNames={"b"}}}"#
        ),
        "master.cfg.lua:4: Trigger step of builder 'b': no Triggerable scheduler named 'nope' (known: t1)\n"
    );
}

#[test]
fn step_errors() {
    let mut cases: Vec<(String, String)> = vec![
        ("steps.ShellCommand{}", "ShellCommand: missing required option 'command'"),
        (
            "steps.ShellCommand{command=5}",
            "ShellCommand: option 'command' must be a command (a string or a list of strings), got number 5",
        ),
        ("steps.ShellCommand{command={}}", "ShellCommand: option 'command' must not be an empty list"),
        (
            "steps.ShellCommand{command={a=1}}",
            "ShellCommand: option 'command' must be a command (a string or a list of strings), got table",
        ),
        (
            "steps.ShellCommand('make')",
            "ShellCommand: takes at most 0 positional arguments, got 1\n\
             ShellCommand: missing required option 'command'",
        ),
        (
            "steps.ShellCommand{command='x', decodeRC={[0]=9}}",
            "ShellCommand: option 'decodeRC' entry 0 must be a result code (util.SUCCESS ... util.CANCELLED), got number 9",
        ),
        (
            "steps.ShellCommand{command='x', decodeRC={a=0}}",
            "ShellCommand: option 'decodeRC' must have exit codes as keys, got string 'a'",
        ),
        (
            "steps.ShellCommand{command='x', timeout='long'}",
            "ShellCommand: option 'timeout' must be a number of seconds or false, got string 'long'",
        ),
        (
            "steps.ShellCommand{command='x', logfiles={a={follow=true}}}",
            "ShellCommand: option 'logfiles' entry 'a' needs a 'filename'",
        ),
        (
            "steps.ShellCommand{command='x', logfiles={a={file='x'}}}",
            "ShellCommand: option 'logfiles' entry 'a' has unknown key string 'file' (known: filename, follow)",
        ),
        (
            "steps.ShellCommand{command='x', updateBuildSummaryPolicy='x'}",
            "ShellCommand: option 'updateBuildSummaryPolicy' must be a list of result codes or a boolean, got string 'x'",
        ),
        (
            "steps.ShellCommand{command='x', updateBuildSummaryPolicy={9}}",
            "ShellCommand: option 'updateBuildSummaryPolicy' item 1 must be a result code (util.SUCCESS ... util.CANCELLED), got number 9",
        ),
        (
            "steps.ShellCommand{command='x', doStepIf='x'}",
            "ShellCommand: option 'doStepIf' must be a boolean or a function, got string 'x'",
        ),
        (
            "steps.ShellCommand{command='x', haltOnFailur=true}",
            "ShellCommand: unknown option 'haltOnFailur' (did you mean 'haltOnFailure'?)",
        ),
        (
            "steps.Compile{warningPattern='('}",
            "Compile: option 'warningPattern' is not a valid regular expression ('('): unclosed group (false counts no warnings)",
        ),
        (
            "steps.Test{directoryEnterPattern=3}",
            "Test: option 'directoryEnterPattern' must be a regular expression (a string), got number 3",
        ),
        ("steps.ShellSequence{}", "ShellSequence: missing required option 'commands'"),
        (
            "steps.ShellSequence{commands={}}",
            "ShellSequence: option 'commands' must hold at least one util.ShellArg",
        ),
        (
            "steps.ShellSequence{commands={'make'}}",
            "ShellSequence: option 'commands' item 1 must be a util.ShellArg, got string 'make'",
        ),
        (
            "steps.ShellSequence{commands={util.ShellArg('x')}, command='y'}",
            "ShellSequence: unknown option 'command' (did you mean 'commands'?)",
        ),
        ("util.ShellArg{logname='x'}", "ShellArg: missing required option 'command'"),
        (
            "steps.SetPropertyFromCommand{command='x'}",
            "SetPropertyFromCommand: give exactly one of the options 'property' and 'extract_fn'",
        ),
        (
            "steps.SetPropertyFromCommand{command='x', property='p', extract_fn=print}",
            "SetPropertyFromCommand: give exactly one of the options 'property' and 'extract_fn', not both",
        ),
        (
            "steps.MasterShellCommand{}",
            "MasterShellCommand: missing required option 'command'",
        ),
        ("steps.Git{}", "Git: missing required option 'repourl'"),
        (
            "steps.Git{repourl='u', mode='fast'}",
            "Git: option 'mode' must be 'incremental' or 'full', got 'fast'",
        ),
        (
            "steps.Git{repourl='u', mode='full', method='scrub'}",
            "Git: option 'method' must be one of 'clean', 'fresh', 'clobber' or 'copy', got 'scrub'",
        ),
        (
            "steps.Git{repourl='u', method='fresh'}",
            "Git: option 'method' only applies to mode 'full'",
        ),
        (
            "steps.Git{repourl='u', mode='full', method='fresh', shallow=true}",
            "Git: option 'shallow' needs method 'clobber'",
        ),
        (
            "steps.Git{repourl='u', shallow=0}",
            "Git: option 'shallow' must be a boolean or a positive depth, got number 0",
        ),
        (
            "steps.Git{repourl='u', sshHostKey='k'}",
            "Git: option 'sshHostKey' needs 'sshPrivateKey'",
        ),
        (
            "steps.Git{repourl='u', sshPrivateKey='p', sshHostKey='k', sshKnownHosts='h'}",
            "Git: options 'sshHostKey' and 'sshKnownHosts' cannot be given together",
        ),
        (
            "steps.Git{repourl='u', getDescription={mach='v*'}}",
            "Git: option 'getDescription': unknown git describe option 'mach' (did you mean 'match'?)",
        ),
        (
            "steps.Git{repourl='u', retry={1}}",
            "Git: option 'retry' must be {delay, repeats} (two numbers of seconds and times), got table",
        ),
        ("steps.SetProperty{property='p'}", "SetProperty: missing required option 'value'"),
        ("steps.Trigger{}", "Trigger: missing required option 'schedulerNames'"),
        (
            "steps.Trigger{schedulerNames={}}",
            "Trigger: option 'schedulerNames' must name at least one scheduler",
        ),
        (
            "steps.Trigger{schedulerNames={'a'}, unimportantSchedulerNames={'b'}}",
            "Trigger: option 'unimportantSchedulerNames' must be a subset of 'schedulerNames' ('b' is not in it)",
        ),
        (
            "steps.Trigger{schedulerNames={'a'}, sourceStamps={{branch='x'}}, updateSourceStamp=true}",
            "Trigger: options 'sourceStamps' and 'updateSourceStamp' cannot be given together",
        ),
        (
            "steps.Trigger{schedulerNames={'a'}, sourceStamp={branch='x'}, alwaysUseLatest=true}",
            "Trigger: options 'sourceStamp' and 'alwaysUseLatest' cannot be given together",
        ),
        (
            "steps.Trigger{schedulerNames={'a'}, alwaysUseLatest=true, updateSourceStamp=false}",
            "Trigger: options 'alwaysUseLatest' and 'updateSourceStamp' cannot be given together",
        ),
        (
            "steps.FileUpload{masterdest='m'}",
            "FileUpload: missing required option 'workersrc'",
        ),
        (
            "steps.FileUpload{workersrc='a', slavesrc='b', masterdest='m'}",
            "FileUpload: options 'workersrc' and 'slavesrc' are the same; give only one",
        ),
        (
            "steps.FileUpload('a', 'b', {mode='9'})",
            "FileUpload: option 'mode' must be a file mode (an integer such as 420, or an octal string such as '0644'), got string '9'",
        ),
        (
            "steps.FileDownload{mastersrc='a'}",
            "FileDownload: missing required option 'workerdest'",
        ),
        ("steps.MakeDirectory{}", "MakeDirectory: missing required option 'dir'"),
        (
            "steps.RemoveDirectory('d', {dirr='x'})",
            "RemoveDirectory: unknown option 'dirr' (did you mean 'dir'?)",
        ),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let long = "n".repeat(51);
    cases.push((
        format!("steps.ShellCommand{{command='x', name='{long}'}}"),
        format!("ShellCommand: option 'name' must be at most 50 characters, got '{long}'"),
    ));
    let cases: Vec<(&str, &str)> = cases
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    check_errors(&cases);
}

#[test]
fn step_locks_and_unported_options_are_not_implemented_yet() {
    assert_eq!(
        unimplemented(
            "steps.ShellCommand{command='x', locks={}}
steps.Compile{warningExtractor=print, suppressionList={}}
steps.Git{repourl='u', auth_credentials={'u', 'p'}, git_credentials={}}"
        ),
        [
            "master.cfg.lua:1: ShellCommand: option 'locks' is not implemented yet",
            "master.cfg.lua:2: Compile: option 'warningExtractor' is not implemented yet",
            "master.cfg.lua:2: Compile: option 'suppressionList' is not implemented yet",
            "master.cfg.lua:3: Git: option 'auth_credentials' is not implemented yet",
            "master.cfg.lua:3: Git: option 'git_credentials' is not implemented yet",
        ]
    );
}

// ---- schedulers -------------------------------------------------------------------------

#[test]
fn single_branch_scheduler_takes_every_option() {
    let s = scheduler(
        r#"schedulers.SingleBranchScheduler("sbs", {builderNames={"b", "b2"}, branch="main",
  treeStableTimer=60, fileIsImportant=function(change) return true end, onlyImportant=true,
  properties={owner="ci"}, codebases={lib={repository="r", branch="dev"}}, priority=5,
  reason="%(name)s saw a change", createAbsoluteSourceStamps=true})"#,
    );
    assert_eq!(s.kind(), "SingleBranchScheduler");
    assert_eq!(s.name(), "sbs");
    assert_eq!(s.builder_names(), ["b", "b2"]);
    assert_eq!(s.location().line, 1);
    assert_eq!(s.upstream(), None);
    let SchedulerConfig::SingleBranch(sbs) = &s else {
        panic!()
    };
    let filter = sbs.change_filter.as_ref().unwrap();
    assert_eq!(filter.branch.eq, Some(vec![Branch::Named("main".into())]));
    assert_eq!(sbs.tree_stable_timer, Some(60));
    assert!(sbs.file_is_important.is_some() && sbs.only_important);
    assert!(sbs.create_absolute_source_stamps);
    assert_eq!(sbs.reason, "sbs saw a change");
    assert_eq!(
        sbs.base.properties,
        BTreeMap::from([("owner".into(), json!("ci"))])
    );
    assert_eq!(
        sbs.base.codebases,
        Codebases(BTreeMap::from([(
            "lib".into(),
            CodebaseDefaults {
                branch: Some("dev".into()),
                repository: Some("r".into()),
                revision: None
            }
        )]))
    );
    assert!(matches!(sbs.base.priority, Some(ValueOrFunction::Value(5))));
}

#[test]
fn single_branch_scheduler_defaults_and_old_forms() {
    let s = scheduler(
        r#"schedulers.Scheduler{name="old", builderNames={"b"}, branch=false, categories="web"}"#,
    );
    let SchedulerConfig::SingleBranch(sbs) = &s else {
        panic!()
    };
    let filter = sbs.change_filter.as_ref().unwrap();
    assert_eq!(filter.branch.eq, Some(vec![Branch::Default]));
    assert_eq!(filter.category.eq, Some(vec!["web".to_string()]));
    assert_eq!(sbs.tree_stable_timer, None);
    assert!(!sbs.only_important && !sbs.create_absolute_source_stamps);
    assert_eq!(
        sbs.reason,
        "The Scheduler scheduler named 'old' triggered this build"
    );
    assert_eq!(sbs.base.codebases, Codebases::default());
    assert!(sbs.base.properties.is_empty() && sbs.base.priority.is_none());

    let s = scheduler(
        r#"schedulers.SingleBranchScheduler{name="f", builderNames={"b"},
  change_filter=util.ChangeFilter{branch={"main", "dev"}}, codebases={"a", "b"}}"#,
    );
    let SchedulerConfig::SingleBranch(sbs) = &s else {
        panic!()
    };
    assert_eq!(
        sbs.change_filter.as_ref().unwrap().branch.eq,
        Some(vec![
            Branch::Named("main".into()),
            Branch::Named("dev".into())
        ])
    );
    assert_eq!(sbs.base.codebases.0.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(
        sbs.reason,
        "The SingleBranchScheduler scheduler named 'f' triggered this build"
    );
}

#[test]
fn any_branch_scheduler() {
    let s = scheduler(
        r#"schedulers.AnyBranchScheduler{name="any", builderNames={"b"}, branches={"main", "dev"},
  treeStableTimer=false, onlyImportant=true, reason="r"}"#,
    );
    assert_eq!(s.kind(), "AnyBranchScheduler");
    let SchedulerConfig::AnyBranch(any) = &s else {
        panic!()
    };
    assert_eq!(
        any.change_filter
            .as_ref()
            .unwrap()
            .branch
            .eq
            .as_ref()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(any.tree_stable_timer, None);
    assert_eq!(any.reason, "r");
    let s = scheduler(r#"schedulers.AnyBranchScheduler{name="all", builderNames={"b"}}"#);
    let SchedulerConfig::AnyBranch(any) = &s else {
        panic!()
    };
    assert!(any.change_filter.is_none());
}

#[test]
fn periodic_and_nightly() {
    let s = scheduler(
        r#"schedulers.Periodic{name="p", builderNames={"b"}, periodicBuildTimer=3600, branch="main",
  onlyIfChanged=true, onlyImportant=true, createAbsoluteSourceStamps=true,
  change_filter=util.ChangeFilter{project="x"}, fileIsImportant=function() return true end}"#,
    );
    assert_eq!(s.kind(), "Periodic");
    let SchedulerConfig::Periodic(p) = &s else {
        panic!()
    };
    assert_eq!(p.schedule, Schedule::Periodic { seconds: 3600 });
    assert_eq!(p.branch, Some(Branch::Named("main".into())));
    assert!(p.only_if_changed && p.only_important && p.create_absolute_source_stamps);
    assert!(p.change_filter.is_some() && p.file_is_important.is_some());
    assert_eq!(
        p.reason,
        "The Periodic scheduler named 'p' triggered this build"
    );

    let s = scheduler(
        r#"schedulers.Nightly{name="n", builderNames={"b"}, minute={0, 30}, hour=3, dayOfMonth="*",
  month={1, 7}, dayOfWeek=0, force_at_hour=4, force_at_day_of_week={5, 6}, reason="nightly %(name)s"}"#,
    );
    let SchedulerConfig::Nightly(n) = &s else {
        panic!()
    };
    use CronField::*;
    assert_eq!(
        n.schedule,
        Schedule::Nightly {
            at: Box::new(CronTimes {
                minute: Values(vec![0, 30]),
                hour: Values(vec![3]),
                day_of_month: Any,
                month: Values(vec![1, 7]),
                day_of_week: Values(vec![0]),
            }),
            force_at: Some(Box::new(CronTimes {
                minute: Values(vec![0]),
                hour: Values(vec![4]),
                day_of_month: Any,
                month: Any,
                day_of_week: Values(vec![5, 6]),
            })),
        }
    );
    assert_eq!(n.reason, "nightly n");
    assert!(!n.only_if_changed && n.branch.is_none());

    let s = scheduler(r#"schedulers.Nightly{name="d", builderNames={"b"}}"#);
    let SchedulerConfig::Nightly(n) = &s else {
        panic!()
    };
    let Schedule::Nightly { at, force_at } = &n.schedule else {
        panic!()
    };
    assert_eq!(at.minute, Values(vec![0]));
    assert_eq!((&at.hour, &at.day_of_week), (&Any, &Any));
    assert!(force_at.is_none());
}

#[test]
fn triggerable_and_dependent() {
    let s = scheduler(
        r#"schedulers.Triggerable{name="trig", builderNames={"b"}, reason="asked", properties={a=1}}"#,
    );
    assert_eq!(s.kind(), "Triggerable");
    let SchedulerConfig::Triggerable(t) = &s else {
        panic!()
    };
    assert_eq!(t.reason.as_deref(), Some("asked"));
    let loaded = load(
        r#"c = BuildmasterConfig
c.workers = {worker.Worker("w", "p")}
c.builders = {util.BuilderConfig{name="b", workernames="w", factory=util.BuildFactory()}}
local up = schedulers.Triggerable{name="up", builderNames={"b"}}
c.schedulers = {up, schedulers.Dependent("d1", up, {"b"}),
  schedulers.Dependent{name="d2", upstream="up", builderNames={"b"}}}"#,
    );
    let s = &loaded.config.schedulers;
    assert_eq!(s[1].kind(), "Dependent");
    assert_eq!(s[1].upstream(), Some("up"));
    assert_eq!(s[1].builder_names(), ["b"]);
    assert_eq!(s[2].upstream(), Some("up"));
    assert_eq!(
        errors(
            r#"c = BuildmasterConfig
c.workers = {worker.Worker("w", "p")}
c.builders = {util.BuilderConfig{name="b", workernames="w", factory=util.BuildFactory()}}
c.schedulers = {schedulers.Dependent{name="d", upstream="nope", builderNames={"b"}}}"#
        ),
        "master.cfg.lua:4: scheduler 'd': no upstream scheduler named 'nope' (known: d)\n"
    );
}

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
fn scheduler_errors() {
    let b = "builderNames={'b'}";
    let cases: Vec<(String, &str)> = vec![
        (
            format!("schedulers.SingleBranchScheduler{{name='s', {b}}}"),
            "SingleBranchScheduler: needs option 'branch' or 'change_filter'",
        ),
        (
            format!("schedulers.SingleBranchScheduler{{name='s', {b}, branch='m', change_filter=util.ChangeFilter{{}}}}"),
            "SingleBranchScheduler: options 'branch' and 'change_filter' cannot be given together",
        ),
        (
            format!("schedulers.SingleBranchScheduler{{name='s', {b}, categories='c', change_filter=util.ChangeFilter{{}}}}"),
            "SingleBranchScheduler: options 'categories' and 'change_filter' cannot be given together",
        ),
        (
            format!("schedulers.SingleBranchScheduler{{name='s', {b}, branches={{'m'}}}}"),
            "SingleBranchScheduler: needs option 'branch' or 'change_filter'\n\
             SingleBranchScheduler: unknown option 'branches' (did you mean 'branch'?)",
        ),
        (
            "schedulers.SingleBranchScheduler{name='s', builderNames={}, branch='m'}".into(),
            "SingleBranchScheduler: option 'builderNames' must name at least one builder",
        ),
        (
            "schedulers.SingleBranchScheduler{name='s', branch='m'}".into(),
            "SingleBranchScheduler: missing required option 'builderNames'",
        ),
        (
            format!("schedulers.SingleBranchScheduler{{{b}, branch='m'}}"),
            "SingleBranchScheduler: missing required option 'name'",
        ),
        (
            format!("schedulers.SingleBranchScheduler{{name='', {b}, branch='m'}}"),
            "SingleBranchScheduler: the scheduler name must not be empty",
        ),
        (
            format!("schedulers.SingleBranchScheduler{{name='s', {b}, branch=3}}"),
            "SingleBranchScheduler: option 'branch' must be a branch name or false (the default branch), got number 3",
        ),
        (
            format!("schedulers.SingleBranchScheduler{{name='s', {b}, branch='m', codebases={{a={{tag='x'}}}}}}"),
            "SingleBranchScheduler: option 'codebases' entry 'a': unknown key 'tag'",
        ),
        (
            format!("schedulers.SingleBranchScheduler{{name='s', {b}, branch='m', priority='high'}}"),
            "SingleBranchScheduler: option 'priority' must be an integer or a function, got string 'high'",
        ),
        (
            format!("schedulers.AnyBranchScheduler{{name='s', {b}, branches={{'m'}}, change_filter=util.ChangeFilter{{}}}}"),
            "AnyBranchScheduler: options 'branches' and 'change_filter' cannot be given together",
        ),
        (
            format!("schedulers.Periodic{{name='p', {b}, periodicBuildTimer=0}}"),
            "Periodic: option 'periodicBuildTimer' must be positive",
        ),
        (
            format!("schedulers.Periodic{{name='p', {b}}}"),
            "Periodic: missing required option 'periodicBuildTimer'",
        ),
        (
            format!("schedulers.Nightly{{name='n', {b}, hour=24}}"),
            "Nightly: option 'hour' must be from 0 to 23, got 24",
        ),
        (
            format!("schedulers.Nightly{{name='n', {b}, dayOfMonth={{0}}}}"),
            "Nightly: option 'dayOfMonth' must be from 1 to 31, got 0",
        ),
        (
            format!("schedulers.Nightly{{name='n', {b}, hour='x'}}"),
            "Nightly: option 'hour' must be an integer, a list of integers or '*', got string 'x'",
        ),
        (
            format!("schedulers.Nightly{{name='n', {b}, force_at_month=13}}"),
            "Nightly: option 'force_at_month' must be from 1 to 12, got 13",
        ),
        (
            format!("schedulers.Dependent{{name='d', {b}, upstream=5}}"),
            "Dependent: option 'upstream' must be a scheduler or a scheduler name, got number 5",
        ),
        (
            format!("schedulers.Dependent{{name='d', {b}}}"),
            "Dependent: missing required option 'upstream'",
        ),
        (
            format!("schedulers.ForceScheduler{{name='a b', {b}}}"),
            "ForceScheduler: the name 'a b' must be an identifier (letters, digits, '_' and '-', not starting with a digit)",
        ),
        (
            format!("schedulers.ForceScheduler{{name='f', {b}, codebases={{}}}}"),
            "ForceScheduler: option 'codebases' must not be empty (use {util.CodebaseParameter{codebase='', hide=true}})",
        ),
        (
            format!("schedulers.ForceScheduler{{name='f', {b}, codebases={{'a'}}, branch='x'}}"),
            "ForceScheduler: options 'branch' and 'codebases' cannot be given together: give the codebase's fields in util.CodebaseParameter",
        ),
        (
            format!("schedulers.ForceScheduler{{name='f', {b}, codebases={{5}}}}"),
            "ForceScheduler: option 'codebases' item 1 must be a codebase name or a util.CodebaseParameter, got number 5",
        ),
        (
            format!("schedulers.ForceScheduler{{name='f', {b}, priority=util.StringParameter{{name='p'}}}}"),
            "ForceScheduler: option 'priority' must be a util.IntParameter",
        ),
        (
            format!("schedulers.ForceScheduler{{name='f', {b}, reason='x'}}"),
            "ForceScheduler: option 'reason' must be a force parameter (util.StringParameter{...}, ...), got string 'x'",
        ),
        (
            format!("schedulers.ForceScheduler{{name='f', {b}, properties={{util.ChangeFilter{{}}}}}}"),
            "ForceScheduler: option 'properties' item 1 must be a force parameter (util.StringParameter{...}, ...), got a ChangeFilter",
        ),
        ("util.StringParameter{label='x'}".into(), "StringParameter: missing required option 'name'"),
        (
            "util.IntParameter{name='n', default='x'}".into(),
            "IntParameter: option 'default' must be an integer, got string 'x'",
        ),
        (
            "util.StringParameter{name='owner'}".into(),
            "StringParameter: 'owner' cannot be a parameter name: the force form uses it",
        ),
        (
            "util.ChoiceStringParameter{name='c', choices={'a'}, multiple=true, default='a'}".into(),
            "ChoiceStringParameter: option 'default' must be a list of strings, got string 'a'",
        ),
        (
            "util.StringParameter{name='s', regex='['}".into(),
            "StringParameter: option 'regex' is not a valid regular expression ('['): unclosed character class",
        ),
        (
            "util.StringParameter{name='s', value='x'}".into(),
            "StringParameter: unknown option 'value'",
        ),
        (
            "util.CodebaseParameter{codebase='', branch=5}".into(),
            "CodebaseParameter: option 'branch' must be a force parameter, a fixed value (a string) or false, got number 5",
        ),
        ("util.CodebaseParameter{}".into(), "CodebaseParameter: missing required option 'codebase'"),
    ];
    let cases: Vec<(&str, &str)> = cases.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    check_errors(&cases);
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

// ---- change filters and change sources -------------------------------------------------

#[test]
fn change_filter_takes_every_option() {
    let s = scheduler(
        r#"schedulers.AnyBranchScheduler{name="s", builderNames={"b"}, change_filter=util.ChangeFilter{
  filter_fn=function(change) return true end,
  project="p", project_not_eq={"q"}, project_re="^p", project_not_re={"x", "y"}, project_fn=print,
  repository={"r1", "r2"}, repository_not_eq="r3", repository_re="git@", repository_not_re="svn", repository_fn=print,
  branch={"main", false}, branch_not_eq=false, branch_re="^release/", branch_not_re="wip", branch_fn=print,
  category="c", category_not_eq="d", category_re="c.*", category_not_re="e", category_fn=print,
  codebase="", codebase_not_eq="lib", codebase_re=".*", codebase_not_re="z", codebase_fn=print,
  property_eq={owner="me"}, property_not_eq={owner={"you", "them"}}, property_re={tag="^v"},
  property_not_re={tag={"rc", "beta"}}}}"#,
    );
    let SchedulerConfig::AnyBranch(any) = &s else {
        panic!()
    };
    let f = any.change_filter.as_ref().unwrap();
    let sources = |p: &[Pattern]| p.iter().map(|p| p.source().to_string()).collect::<Vec<_>>();
    assert_eq!(f.filter_fn.as_ref().unwrap().location().line, 2);
    assert_eq!(f.project.eq, Some(vec!["p".to_string()]));
    assert_eq!(f.project.not_eq, Some(vec!["q".to_string()]));
    assert_eq!(sources(&f.project.re), ["^p"]);
    assert_eq!(sources(&f.project.not_re), ["x", "y"]);
    assert!(f.project.function.is_some());
    assert_eq!(
        f.repository.eq,
        Some(vec!["r1".to_string(), "r2".to_string()])
    );
    assert_eq!(f.repository.not_eq, Some(vec!["r3".to_string()]));
    assert_eq!(sources(&f.repository.re), ["git@"]);
    assert_eq!(
        f.branch.eq,
        Some(vec![Branch::Named("main".into()), Branch::Default])
    );
    assert_eq!(f.branch.not_eq, Some(vec![Branch::Default]));
    assert!(f.branch.re[0].matches_start("release/1.0"));
    assert!(!f.branch.re[0].matches_start("x/release/1.0"));
    assert_eq!(sources(&f.branch.not_re), ["wip"]);
    assert!(f.branch.function.is_some() && f.category.function.is_some());
    assert_eq!(f.category.eq, Some(vec!["c".to_string()]));
    assert_eq!(sources(&f.category.re), ["c.*"]);
    assert_eq!(f.codebase.eq, Some(vec![String::new()]));
    assert_eq!(f.codebase.not_eq, Some(vec!["lib".to_string()]));
    assert!(f.codebase.function.is_some());
    assert_eq!(
        f.properties.eq,
        BTreeMap::from([("owner".into(), vec!["me".into()])])
    );
    assert_eq!(
        f.properties.not_eq,
        BTreeMap::from([("owner".into(), vec!["you".into(), "them".into()])])
    );
    assert_eq!(sources(&f.properties.re["tag"]), ["^v"]);
    assert_eq!(sources(&f.properties.not_re["tag"]), ["rc", "beta"]);
    assert_eq!(f.location.line, 1);
}

#[test]
fn change_filter_errors() {
    check_errors(&[
        (
            "util.ChangeFilter{branch_re='('}",
            "ChangeFilter: option 'branch_re' is not a valid regular expression ('('): unclosed group",
        ),
        (
            "util.ChangeFilter{project_not_re={'ok', '+'}}",
            "ChangeFilter: option 'project_not_re' item 2 is not a valid regular expression ('+'): repetition operator missing expression",
        ),
        (
            "util.ChangeFilter{project=5}",
            "ChangeFilter: option 'project' must be a string, got number 5",
        ),
        (
            "util.ChangeFilter{branch_fn='main'}",
            "ChangeFilter: option 'branch_fn' must be a function, got string 'main'",
        ),
        (
            "util.ChangeFilter{branches='main'}",
            "ChangeFilter: unknown option 'branches' (did you mean 'branch'?)",
        ),
        (
            "util.ChangeFilter{property_re={tag=5}}",
            "ChangeFilter: option 'property_re' entry 'tag' must be a regular expression (a string), got number 5",
        ),
    ]);
}

#[test]
fn git_poller_takes_every_option() {
    let c = change_source(
        r#"changes.GitPoller("https://example.org/r.git", {branches={"main", "dev"},
  workdir="gp", pollInterval=60, pollAtLaunch=true, pollRandomDelayMin=1, pollRandomDelayMax=5,
  gitbin="/usr/bin/git", usetimestamps=false, category="ci", project="proj", encoding="latin-1",
  name="poller", buildPushesWithNoCommits=true, sshPrivateKey="key", sshHostKey="host"})"#,
    );
    assert_eq!(
        (c.kind(), c.name(), c.location().line),
        ("GitPoller", "poller", 1)
    );
    let ChangeSourceConfig::GitPoller(p) = &c else {
        panic!()
    };
    assert_eq!(p.repourl, "https://example.org/r.git");
    assert!(matches!(&p.branches, GitBranches::Named(b) if b == &["main", "dev"]));
    assert_eq!(p.workdir, "gp");
    assert_eq!(p.poll_interval, 60);
    assert!(p.poll_at_launch && !p.usetimestamps && p.build_pushes_with_no_commits);
    assert_eq!((p.poll_random_delay_min, p.poll_random_delay_max), (1, 5));
    assert_eq!(p.gitbin, "/usr/bin/git");
    assert!(matches!(&p.category, Some(ValueOrFunction::Value(c)) if c == "ci"));
    assert_eq!(
        (p.project.as_str(), p.encoding.as_str()),
        ("proj", "latin-1")
    );
    assert_eq!(value(p.ssh_private_key.as_ref().unwrap()), json!("key"));
    assert_eq!(value(p.ssh_host_key.as_ref().unwrap()), json!("host"));
    assert!(p.ssh_known_hosts.is_none());
}

#[test]
fn git_poller_defaults_and_branch_forms() {
    let branches = |options: &str| {
        let c = change_source(&format!("changes.GitPoller{{repourl='u', {options}}}"));
        let ChangeSourceConfig::GitPoller(p) = c else {
            panic!()
        };
        p
    };
    let p = branches("pollinterval=30");
    assert_eq!(p.name, "u");
    assert!(matches!(p.branches, GitBranches::Default));
    assert_eq!(p.poll_interval, 30);
    assert_eq!(
        (p.workdir.as_str(), p.gitbin.as_str(), p.encoding.as_str()),
        ("gitpoller-work", "git", "utf-8")
    );
    assert!(p.usetimestamps && !p.poll_at_launch && p.category.is_none() && p.project.is_empty());
    assert!(matches!(branches("branch='dev'").branches, GitBranches::Named(b) if b == ["dev"]));
    assert!(matches!(
        branches("branches=true").branches,
        GitBranches::All
    ));
    assert!(matches!(
        branches("branches=function(ref) return true end").branches,
        GitBranches::Matching(_)
    ));
    assert!(matches!(
        branches("only_tags=true").branches,
        GitBranches::Tags
    ));
    assert!(matches!(
        branches("category=function(c) return 'x' end").category,
        Some(ValueOrFunction::Function(_))
    ));
    assert_eq!(branches("").poll_interval, 600);
}

#[test]
fn pb_change_source() {
    let c = change_source(
        r#"{changes.PBChangeSource{port=9999, user="u", passwd="p", prefix="trunk/"},
  changes.PBChangeSource(), changes.PBChangeSource{name="pb", port="tcp:9998:interface=127.0.0.1"}}"#,
    );
    assert_eq!(
        (c.kind(), c.name()),
        ("PBChangeSource", "PBChangeSource:trunk/:9999")
    );
    let ChangeSourceConfig::PBChangeSource(p) = &c else {
        panic!()
    };
    assert_eq!(p.port.as_ref().unwrap().port, 9999);
    assert_eq!((p.user.as_str(), p.passwd.as_str()), ("u", "p"));
    assert_eq!(p.prefix.as_deref(), Some("trunk/"));
    let loaded = load(
        r#"BuildmasterConfig.change_source = {changes.PBChangeSource(),
  changes.PBChangeSource{name="pb", port="tcp:9998:interface=127.0.0.1"}}"#,
    );
    let sources = &loaded.config.change_sources;
    let ChangeSourceConfig::PBChangeSource(p) = &sources[0] else {
        panic!()
    };
    assert_eq!(p.name, "PBChangeSource");
    assert_eq!((p.user.as_str(), p.passwd.as_str()), ("change", "changepw"));
    assert!(p.port.is_none() && p.prefix.is_none());
    assert_eq!(sources[1].name(), "pb");
}

#[test]
fn change_source_errors() {
    check_errors(&[
        ("changes.GitPoller{}", "GitPoller: missing required option 'repourl'"),
        (
            "changes.GitPoller{repourl='u', branch='a', branches={'b'}}",
            "GitPoller: options 'branch' and 'branches' cannot be given together",
        ),
        (
            "changes.GitPoller{repourl='u', only_tags=true, branch='a'}",
            "GitPoller: option 'only_tags' cannot be given with 'branch' or 'branches'",
        ),
        (
            "changes.GitPoller{repourl='u', branches=5}",
            "GitPoller: option 'branches' must be a list of branch names, true (all branches) or a function, got number 5",
        ),
        (
            "changes.GitPoller{repourl='u', pollInterval=1, pollinterval=2}",
            "GitPoller: options 'pollInterval' and 'pollinterval' are the same; give only one",
        ),
        (
            "changes.GitPoller{repourl='u', fetch_refspec='+refs/*'}",
            "GitPoller: option 'fetch_refspec' is no longer supported: GitPoller fetches only the branches it polls",
        ),
        (
            "changes.GitPoller{repourl='u', pollRandomDelayMin=5, pollRandomDelayMax=3}",
            "GitPoller: option 'pollRandomDelayMin' (5) must not exceed 'pollRandomDelayMax' (3)",
        ),
        (
            "changes.GitPoller{repourl='u', pollInterval=10, pollRandomDelayMax=10}",
            "GitPoller: option 'pollRandomDelayMax' (10) must be less than 'pollInterval' (10)",
        ),
        (
            "changes.GitPoller{repourl='u', sshKnownHosts='k'}",
            "GitPoller: option 'sshKnownHosts' needs 'sshPrivateKey'",
        ),
        (
            "changes.PBChangeSource{port='x'}",
            "PBChangeSource: option 'port' 'x' is not a port (use 8010 or 'tcp:8010:interface=127.0.0.1')",
        ),
        (
            "changes.PBChangeSource{password='x'}",
            "PBChangeSource: unknown option 'password' (did you mean 'passwd'?)",
        ),
    ]);
    assert_eq!(
        unimplemented(
            "changes.GitPoller{repourl='u', codebase={}, auth_credentials={}, git_credentials={}}"
        ),
        [
            "master.cfg.lua:1: GitPoller: option 'codebase' is not implemented yet",
            "master.cfg.lua:1: GitPoller: option 'auth_credentials' is not implemented yet",
            "master.cfg.lua:1: GitPoller: option 'git_credentials' is not implemented yet",
        ]
    );
}

// ---- a whole config ---------------------------------------------------------------------

const REALISTIC: &str = r#"-- A translated master.cfg with the build side in full.
local c = BuildmasterConfig

c['title'] = "Example"
c['buildbotURL'] = "http://localhost:8010/"
c['protocols'] = { pb = { port = 9989 } }

c['workers'] = {
  worker.Worker("linux-1", "secret", { max_builds = 2, properties = { os = "linux" } }),
  worker.LocalWorker("local"),
}
c['slaves'] = { buildslave.BuildSlave("old-mac", "pw", { notify_on_missing = "ops@example.org" }) }

c['change_source'] = changes.GitPoller{
  repourl = "https://example.org/project.git",
  branches = { "main", "release" },
  pollInterval = 120,
  pollAtLaunch = true,
}

local repo = "https://example.org/project.git"
local build = util.BuildFactory()
build:addStep(steps.Git{ repourl = repo, mode = "full", method = "fresh", progress = true })
build:addStep(steps.SetPropertyFromCommand{ command = "git describe --tags", property = "version" })
build:addStep(steps.Configure{ command = { "./configure", "--prefix=/usr" } })

c['builders'] = {}
c['builders']:append(util.BuilderConfig{
  name = "linux",
  workernames = { "linux-1", "local" },
  factory = build,
  tags = { "linux" },
  env = { MAKEFLAGS = "-j4" },
})

-- Steps added after the builder was made still belong to it.
build:addStep(steps.Compile{ warningPattern = "^.*warning: .*$" })
build:addStep(steps.Test{ command = { "make", "check" }, timeout = 3600 })
build:addStep(steps.FileUpload{ workersrc = util.Interpolate("dist/p-%(prop:version)s.tar.gz"),
  masterdest = "public_html/p.tar.gz", mode = "0644" })
build:addStep(steps.Trigger{ schedulerNames = { "package" }, waitForFinish = true,
  set_properties = { version = util.Property("version") } })

local package = util.BuildFactory({
  steps.ShellSequence{ commands = {
    util.ShellArg{ command = "make dist", logname = "dist" },
    util.ShellArg{ command = { "make", "upload" }, haltOnFailure = true },
  } },
  steps.MasterShellCommand{ command = "publish.sh", env = { DEST = "/srv" } },
  steps.RemoveDirectory{ dir = "build/dist", alwaysRun = true },
})
c['builders']:append(util.BuilderConfig{ name = "package", slavenames = { "old-mac" }, factory = package })

c['schedulers'] = {
  schedulers.SingleBranchScheduler{
    name = "main",
    change_filter = util.ChangeFilter{ branch = "main", project_re = "^proj" },
    treeStableTimer = 60,
    builderNames = { "linux" },
  },
  schedulers.Triggerable{ name = "package", builderNames = { "package" } },
  schedulers.ForceScheduler{
    name = "force",
    builderNames = { "linux", "package" },
    properties = { util.BooleanParameter{ name = "clean", label = "Clean build", default = false } },
  },
  schedulers.Nightly{ name = "nightly", builderNames = { "linux" }, hour = 3, minute = 15,
    onlyIfChanged = true, branch = "main" },
}
"#;

#[test]
fn a_realistic_config_loads() {
    let loaded = load(REALISTIC);
    let config = &loaded.config;
    // Its remote workers are the only thing not implemented yet.
    let unimplemented: Vec<String> = loaded.unimplemented.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        unimplemented,
        [
            "master.cfg.lua:9: Worker: remote workers are not implemented yet (use worker.LocalWorker)",
            "master.cfg.lua:12: BuildSlave: remote workers are not implemented yet (use worker.LocalWorker)",
        ]
    );
    assert_eq!(
        config
            .workers
            .iter()
            .map(|w| w.name.as_str())
            .collect::<Vec<_>>(),
        ["linux-1", "local", "old-mac"]
    );
    assert_eq!(config.change_sources.len(), 1);
    assert_eq!(
        config.change_sources[0].name(),
        "https://example.org/project.git"
    );

    let linux = &config.builders[0];
    assert_eq!(
        linux.steps().iter().map(|s| s.class()).collect::<Vec<_>>(),
        [
            "Git",
            "SetPropertyFromCommand",
            "Configure",
            "Compile",
            "Test",
            "FileUpload",
            "Trigger"
        ]
    );
    assert_eq!(
        linux
            .triggered_schedulers()
            .into_iter()
            .map(|(name, location)| (name, location.line))
            .collect::<Vec<_>>(),
        [("package".to_string(), 41)]
    );
    let package = &config.builders[1];
    assert_eq!(package.workernames, ["old-mac"]);
    assert_eq!(
        package
            .steps()
            .iter()
            .map(|s| s.class())
            .collect::<Vec<_>>(),
        ["ShellSequence", "MasterShellCommand", "RemoveDirectory"]
    );

    assert_eq!(
        config
            .schedulers
            .iter()
            .map(|s| (s.kind(), s.name()))
            .collect::<Vec<_>>(),
        [
            ("SingleBranchScheduler", "main"),
            ("Triggerable", "package"),
            ("ForceScheduler", "force"),
            ("Nightly", "nightly")
        ]
    );
}

#[test]
fn options_the_engine_does_not_carry_out_yet_are_reported() {
    let step = |options: &str| {
        unimplemented(&format!(
            "local f = util.BuildFactory()\nf:addStep({options})"
        ))
    };
    assert_eq!(
        step("steps.ShellCommand{command='x', usePTY=true, lazylogfiles=true, max_lines=10}"),
        [
            "master.cfg.lua:2: ShellCommand: option 'usePTY' is not implemented yet",
            "master.cfg.lua:2: ShellCommand: option 'lazylogfiles' is not implemented yet",
            "master.cfg.lua:2: ShellCommand: option 'max_lines' is not implemented yet",
        ]
    );
    assert!(step("steps.ShellCommand{command='x', usePTY=false, logEncoding='utf-8'}").is_empty());
    assert_eq!(
        step("steps.ShellCommand{command='x', logEncoding='latin-1'}"),
        ["master.cfg.lua:2: ShellCommand: option 'logEncoding' is not implemented yet"]
    );
    assert_eq!(
        step("steps.Git{repourl='r', origin='o', port=2222, retryFetch=true}"),
        [
            "master.cfg.lua:2: Git: option 'retryFetch' is not implemented yet",
            "master.cfg.lua:2: Git: option 'origin' is not implemented yet",
            "master.cfg.lua:2: Git: option 'port' is not implemented yet",
        ]
    );
    assert_eq!(
        step("steps.FileUpload{workersrc='a', masterdest='b', url='http://x/'}"),
        ["master.cfg.lua:2: FileUpload: option 'url' is not implemented yet"]
    );
}
