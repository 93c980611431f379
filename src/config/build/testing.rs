//! Evaluating snippets for the config tests of the build side, shared by the `tests` module
//! beside each part.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::config::{load_source, LoadedConfig};
use crate::script::{RenderData, Renderable};

pub(super) fn load(source: &str) -> LoadedConfig {
    load_source("master.cfg.lua", source, Path::new("."))
        .unwrap_or_else(|errors| panic!("config did not load:\n{errors}"))
}

pub(super) fn errors(source: &str) -> String {
    match load_source("master.cfg.lua", source, Path::new(".")) {
        Ok(_) => panic!("config loaded without errors:\n{source}"),
        Err(errors) => errors.to_string(),
    }
}

/// Each snippet fails with exactly the messages given, one a line, without the place, which
/// is always line 1.
pub(super) fn check_errors(cases: &[(&str, &str)]) {
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
pub(super) fn value(r: &Renderable) -> serde_json::Value {
    r.render(&RenderData::default(), None).unwrap()
}

pub(super) fn map_values(map: &BTreeMap<String, Renderable>) -> serde_json::Value {
    map.iter().map(|(k, v)| (k.clone(), value(v))).collect()
}

/// A builder around the steps listed from line 1, with two Triggerable schedulers to fire.
pub(super) fn steps_of(steps: &str) -> Vec<StepConfig> {
    let source = format!(
        "local s = {{{steps}}}
c = BuildmasterConfig
c.workers = {{worker.LocalWorker('w')}}
c.builders = {{util.BuilderConfig{{name='b', workernames={{'w'}}, factory=util.BuildFactory(s)}}}}
c.schedulers = {{schedulers.Triggerable{{name='t1', builderNames={{'b'}}}},
                 schedulers.Triggerable{{name='t2', builderNames={{'b'}}}}}}"
    );
    load(&source).config.builders[0].steps().to_vec()
}

pub(super) fn step(snippet: &str) -> StepConfig {
    let mut steps = steps_of(snippet);
    assert_eq!(steps.len(), 1);
    steps.remove(0)
}

/// The scheduler made on line 1, with builder `b` to point at.
pub(super) fn scheduler(snippet: &str) -> SchedulerConfig {
    let source = format!(
        "local s = {snippet}
c = BuildmasterConfig
c.workers = {{worker.LocalWorker('w')}}
c.builders = {{util.BuilderConfig{{name='b', workernames={{'w'}}, factory=util.BuildFactory()}},
               util.BuilderConfig{{name='b2', workernames={{'w'}}, factory=util.BuildFactory()}}}}
c.schedulers = {{schedulers.Triggerable{{name='up', builderNames={{'b'}}}}, s}}"
    );
    load(&source).config.schedulers.remove(1)
}

pub(super) fn change_source(snippet: &str) -> ChangeSourceConfig {
    let source = format!("BuildmasterConfig.change_source = {snippet}");
    load(&source).config.change_sources.remove(0)
}

pub(super) fn unimplemented(source: &str) -> Vec<String> {
    load(source)
        .unimplemented
        .iter()
        .map(ToString::to_string)
        .collect()
}
