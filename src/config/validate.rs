//! The cross-checks Buildbot makes once the whole config is read: unique names, and every
//! name that points at a builder, worker or scheduler points at one that exists.

use std::collections::BTreeMap;

use mlua::Lua;

use super::errors::{report, report_unimplemented, ConfigError, Location};
use super::status::StatusTarget;
use super::MasterConfig;

pub(super) fn check(lua: &Lua, config: &MasterConfig) {
    let mut errors = Vec::new();
    unique(
        &mut errors,
        "worker",
        config
            .workers
            .iter()
            .map(|w| (w.name.as_str(), &w.location)),
    );
    unique(
        &mut errors,
        "builder",
        config
            .builders
            .iter()
            .map(|b| (b.name.as_str(), &b.location)),
    );
    unique(
        &mut errors,
        "scheduler",
        config.schedulers.iter().map(|s| (s.name(), s.location())),
    );
    unique(
        &mut errors,
        "change source",
        config
            .change_sources
            .iter()
            .map(|c| (c.name(), c.location())),
    );
    unique(
        &mut errors,
        "status target",
        config.status.iter().map(|s| (s.name(), s.location())),
    );

    let workers: Vec<&str> = config.workers.iter().map(|w| w.name.as_str()).collect();
    let builders: Vec<&str> = config.builders.iter().map(|b| b.name.as_str()).collect();
    let schedulers: BTreeMap<&str, &str> = config
        .schedulers
        .iter()
        .map(|s| (s.name(), s.kind()))
        .collect();
    let complete = |list| !config.incomplete.contains(&list);

    if complete("workers") && complete("slaves") {
        for builder in &config.builders {
            for name in &builder.workernames {
                if !workers.contains(&name.as_str()) {
                    errors.push(missing(
                        &builder.location,
                        &format!("builder '{}'", builder.name),
                        "worker",
                        name,
                        &workers,
                    ));
                }
            }
        }
    }
    if complete("builders") {
        for scheduler in &config.schedulers {
            let what = format!("scheduler '{}'", scheduler.name());
            for name in scheduler.builder_names() {
                if !builders.contains(&name.as_str()) {
                    errors.push(missing(
                        scheduler.location(),
                        &what,
                        "builder",
                        name,
                        &builders,
                    ));
                }
            }
        }
        for target in &config.status {
            for name in target.builders() {
                if !builders.contains(&name.as_str()) {
                    errors.push(missing(
                        target.location(),
                        target.kind(),
                        "builder",
                        name,
                        &builders,
                    ));
                }
            }
        }
    }
    if complete("schedulers") {
        let names: Vec<&str> = schedulers.keys().copied().collect();
        for scheduler in &config.schedulers {
            if let Some(upstream) = scheduler.upstream() {
                if !schedulers.contains_key(upstream) {
                    let what = format!("scheduler '{}'", scheduler.name());
                    errors.push(missing(
                        scheduler.location(),
                        &what,
                        "upstream scheduler",
                        upstream,
                        &names,
                    ));
                }
            }
        }
        let triggerable: Vec<&str> = schedulers
            .iter()
            .filter(|(_, kind)| **kind == "Triggerable")
            .map(|(name, _)| *name)
            .collect();
        for builder in &config.builders {
            for (name, location) in builder.triggered_schedulers() {
                if !triggerable.contains(&name.as_str()) {
                    let what = format!("Trigger step of builder '{}'", builder.name);
                    errors.push(missing(
                        &location,
                        &what,
                        "Triggerable scheduler",
                        &name,
                        &triggerable,
                    ));
                }
            }
        }
    }
    for error in errors {
        report(lua, error);
    }
    second_web_servers(lua, config);
}

/// The master serves the first web server only (`www::bind`): a second one would be
/// accepted and never listen.
fn second_web_servers(lua: &Lua, config: &MasterConfig) {
    let mut web_servers = config
        .status
        .iter()
        .filter(|target| matches!(target, StatusTarget::WebStatus(_)));
    let Some(first) = web_servers.next() else {
        return;
    };
    for target in web_servers {
        report_unimplemented(
            lua,
            ConfigError::at(
                target.location().clone(),
                format!(
                    "{} '{}': a second web server is not implemented yet (the master serves '{}' only)",
                    target.kind(),
                    target.name(),
                    first.name()
                ),
            ),
        );
    }
}

fn unique<'a>(
    errors: &mut Vec<ConfigError>,
    what: &str,
    items: impl Iterator<Item = (&'a str, &'a Location)>,
) {
    let mut seen: BTreeMap<&str, &Location> = BTreeMap::new();
    for (name, location) in items {
        if let Some(first) = seen.get(name) {
            errors.push(ConfigError::at(
                location.clone(),
                format!("duplicate {what} name '{name}' (first defined at {first})"),
            ));
        } else {
            seen.insert(name, location);
        }
    }
}

/// `scheduler 'nightly': no builder named 'tset' (known: lint, test)`
fn missing(location: &Location, what: &str, kind: &str, name: &str, known: &[&str]) -> ConfigError {
    let known = if known.is_empty() {
        "none defined".to_string()
    } else {
        format!("known: {}", known.join(", "))
    };
    ConfigError::at(
        location.clone(),
        format!("{what}: no {kind} named '{name}' ({known})"),
    )
}
