//! Reconfig: load the config file into a fresh VM, check everything, refuse what needs a
//! restart, and only then swap: the VM, the shared config, and every service by name.
//! Each reconfig ends in exactly one outcome line, also kept for `moonbot reconfig` and
//! `/api/v2/masters`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::oneshot;

use super::Master;
use crate::config::status::StatusTarget;
use crate::config::{self, LoadedConfig, MasterConfig};
use crate::data::{publish, Resource};
use crate::db::MasterEvent;
use crate::engine::{Diff, Reconfigure};
use crate::runtime::{Context, Reconfigured, Service};
use crate::status::targets;

/// The file in the base directory holding the last reconfig's outcome, which
/// `moonbot reconfig` waits for (it works whether the log goes to a file or to stderr).
pub const RECONFIG_FILE: &str = "moonbot.reconfig";

/// How a reconfig ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// `reconfig complete (+1 ~2 -0 services)`, `reconfig aborted without changes: N errors`
    /// or `reconfig partially applied: ...; restart advised`.
    pub line: String,
    /// Every error, each naming its file and line where it has one.
    pub errors: Vec<String>,
}

impl Outcome {
    fn aborted(errors: Vec<String>) -> Outcome {
        let count = errors.len();
        let noun = if count == 1 { "error" } else { "errors" };
        Outcome {
            ok: false,
            line: format!("reconfig aborted without changes: {count} {noun}"),
            errors,
        }
    }
}

/// Loads and checks the config as `checkconfig` does; documented options that are not
/// implemented yet are errors here, since the master cannot honour them.
pub fn load_checked(basedir: &Path) -> Result<LoadedConfig, Vec<String>> {
    let loaded = config::load_path(basedir).map_err(|errors| {
        errors
            .to_string()
            .lines()
            .map(String::from)
            .collect::<Vec<_>>()
    })?;
    if loaded.unimplemented.is_empty() {
        Ok(loaded)
    } else {
        Err(loaded
            .unimplemented
            .iter()
            .map(|e| format!("{e} (not implemented yet)"))
            .collect())
    }
}

/// What the running master cannot take without a restart, as errors that say so.
fn needs_restart(old: &MasterConfig, new: &MasterConfig) -> Vec<String> {
    let mut errors = Vec::new();
    if old.db_url != new.db_url {
        errors.push(format!(
            "c['db_url'] changed from '{}' to '{}': restart the master to use another database",
            old.db_url, new.db_url
        ));
    }
    let web_port = |c: &MasterConfig| {
        c.status.iter().find_map(|t| match t {
            StatusTarget::WebStatus(web) => Some(format!("{:?}", web.http_port)),
            _ => None,
        })
    };
    if web_port(old) != web_port(new) {
        errors.push("the web server's port changed: restart the master to move it".into());
    }
    if old.script_limits != new.script_limits {
        errors.push("c['lua'] limits changed: restart the master to apply them".into());
    }
    if old.msgpack_port != new.msgpack_port {
        errors.push(
            "c['protocols'].msgpack_experimental_v7 port changed: restart the master to move it"
                .into(),
        );
    }
    errors
}

impl Master {
    /// Runs one reconfig now and reports it: the log, the bus, the masters row and
    /// the outcome file.
    pub async fn reconfig(&mut self) -> Outcome {
        tracing::info!("reconfig started");
        let outcome = self.apply_config_file().await;
        for error in &outcome.errors {
            tracing::error!("{error}");
        }
        if outcome.ok {
            tracing::info!("{}", outcome.line);
        } else {
            tracing::error!("{}", outcome.line);
        }
        self.reconfig_count += 1;
        let ctx = &self.context;
        let record = json!({"count": self.reconfig_count, "ok": outcome.ok, "line": outcome.line, "errors": outcome.errors});
        let file = ctx.basedir.join(RECONFIG_FILE);
        let partial = file.with_extension("reconfig.tmp");
        let written = std::fs::write(&partial, record.to_string())
            .and_then(|()| std::fs::rename(&partial, &file));
        if let Err(error) = written {
            tracing::warn!("cannot write {}: {error}", file.display());
        }
        if let Err(error) = ctx
            .db
            .set_last_reconfig(ctx.masterid.get(), &outcome.line)
            .await
        {
            tracing::warn!("cannot record the reconfig outcome: {error}");
        }
        if outcome.ok {
            if let Err(error) = ctx
                .db
                .record_master_event(ctx.masterid.get(), MasterEvent::Reconfig)
                .await
            {
                tracing::warn!("cannot record the reconfig event: {error}");
            }
        }
        let _ = publish(
            &ctx.db,
            &ctx.bus,
            Resource::Master(ctx.masterid.get()),
            "reconfig",
        )
        .await;
        outcome
    }

    async fn apply_config_file(&mut self) -> Outcome {
        let ctx = self.context.clone();
        let loaded = match load_checked(&ctx.basedir) {
            Ok(loaded) => loaded,
            Err(errors) => return Outcome::aborted(errors),
        };
        let old = ctx.config.current();
        let refused = needs_restart(&old, &loaded.config);
        if !refused.is_empty() {
            return Outcome::aborted(refused);
        }
        // From here on the new config's callbacks are the live ones.
        if let Err(error) = ctx.script.replace_vm(loaded.lua).await {
            return Outcome::aborted(vec![format!(
                "cannot switch to the new config's Lua VM: {error}"
            )]);
        }
        let config = Arc::new(loaded.config);
        ctx.config.replace(config.clone());
        ctx.db.set_event_horizon(config.event_horizon);

        let mut diff = Diff::default();
        let mut failures = Vec::new();
        let (reply, answer) = oneshot::channel();
        let sent = self
            .engine_reconfigs
            .send(Reconfigure {
                config: config.clone(),
                reply,
            })
            .await;
        match (sent, answer.await) {
            (Ok(()), Ok(Ok(engine))) => diff += engine,
            (_, Ok(Err(error))) => failures.push(format!("builders and workers: {error}")),
            _ => failures.push("builders and workers: the engine is shutting down".into()),
        }
        // Held throughout, so that a poll request waits for the sources of the new config.
        let mut running_sources = self.change_sources.0.lock().await;
        let sources = std::mem::take(&mut *running_sources);
        *running_sources = reconcile(
            &ctx,
            "change source",
            sources,
            &config.change_sources,
            &mut diff,
            &mut failures,
        )
        .await;
        drop(running_sources);
        let schedulers = std::mem::take(&mut self.schedulers);
        self.schedulers = reconcile(
            &ctx,
            "scheduler",
            schedulers,
            &config.schedulers,
            &mut diff,
            &mut failures,
        )
        .await;
        let targets = std::mem::take(&mut self.status_targets);
        self.status_targets = reconcile(
            &ctx,
            "status target",
            targets,
            &targets::reported(&config),
            &mut diff,
            &mut failures,
        )
        .await;
        if failures.is_empty() {
            Outcome {
                ok: true,
                line: format!(
                    "reconfig complete (+{} ~{} -{} services)",
                    diff.added, diff.changed, diff.removed
                ),
                errors: Vec::new(),
            }
        } else {
            Outcome {
                ok: false,
                line: format!(
                    "reconfig partially applied: {}; restart advised",
                    failures.join("; ")
                ),
                errors: failures,
            }
        }
    }
}

/// Diffs one kind of service by name: the ones no longer configured stop (after what
/// they hold, which frees their ports first), the kept ones take their new config or are
/// restarted when they cannot, and new ones start. A failure is collected naming the
/// service; one that fails to reconfigure keeps running on its old config.
async fn reconcile<S: Service>(
    ctx: &Context,
    kind: &str,
    running: Vec<(String, S)>,
    configs: &[S::Config],
    diff: &mut Diff,
    failures: &mut Vec<String>,
) -> Vec<(String, S)> {
    let wanted: HashSet<&str> = configs.iter().map(S::name_of).collect();
    let mut old: HashMap<String, S> = HashMap::new();
    for (name, service) in running {
        if wanted.contains(name.as_str()) {
            old.insert(name, service);
        } else {
            service.stop().await;
            diff.removed += 1;
        }
    }
    let mut kept = Vec::with_capacity(configs.len());
    for config in configs {
        let name = S::name_of(config).to_string();
        let service = match old.remove(&name) {
            Some(mut service) => match service.reconfigure(ctx, config).await {
                Ok(Reconfigured::Unchanged) => Some(service),
                Ok(Reconfigured::Changed) => {
                    diff.changed += 1;
                    Some(service)
                }
                Ok(Reconfigured::NeedsRestart) => {
                    service.stop().await;
                    diff.changed += 1;
                    S::start(ctx, config)
                        .await
                        .map_err(|e| failures.push(format!("{kind} '{name}': {e:#}")))
                        .ok()
                }
                Err(e) => {
                    failures.push(format!("{kind} '{name}': {e:#}"));
                    Some(service)
                }
            },
            None => {
                diff.added += 1;
                S::start(ctx, config)
                    .await
                    .map_err(|e| failures.push(format!("{kind} '{name}': {e:#}")))
                    .ok()
            }
        };
        if let Some(service) = service {
            kept.push((name, service));
        }
    }
    kept
}
