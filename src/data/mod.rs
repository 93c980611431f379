//! The data API: Buildbot's resources (builds, steps, logs, ...) read from storage in the
//! JSON shapes of Buildbot's REST API, and the bus events that announce their changes.
//!
//! Each resource type has an [`Entity`] (its fields, for parsing a [`Query`]), a collection
//! reader that takes the query (filters, order and paging go into the SQL where a field has
//! a column) and a single-item reader. Times are whole seconds since the epoch, as Buildbot
//! shows them.
//!
//! The busiest collections (builds, steps) also have a reader whose page the database
//! writes as one JSON text (`builds_json`): no row crosses from the database one at a time
//! and no item is built in Rust. It answers the same bytes as the values would serialize
//! to, and answers `None` for what SQL cannot do, for the value reader to do.

pub mod builds;
pub mod changes;
pub mod forceschedulers;
pub mod json_text;
pub mod outbox;
pub mod query;
pub mod registry;

pub use query::{Entity, FieldType, Filter, JsonPage, Op, Page, Query};

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::bus::Bus;
use crate::db::{Db, DbError, DbResult};

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
/// for its type (a build: `builds/ID/EVENT` and `builders/B/builds/N/EVENT`, ...). An event
/// no subscriber wants is neither read nor sent: a forced buildset's `new` has none
/// without a status target.
pub async fn publish(db: &Db, bus: &Bus, resource: Resource, event: &str) -> DbResult<()> {
    if !bus.wants_any(resource.key_shapes(), event) {
        return Ok(());
    }
    let none = Query::default();
    let message = match resource {
        Resource::Change(id) => changes::change(db, id).await?,
        Resource::Buildset(id) => changes::buildset(db, id).await?,
        Resource::BuildRequest(id) => changes::buildrequest(db, id, &none).await?,
        Resource::Build(id) => builds::build(db, id, &none).await?,
        Resource::Step(id) => builds::step(db, id).await?,
        Resource::Log(id) => builds::log(db, id).await?,
        Resource::Worker(id) => registry::worker(db, id).await?,
        Resource::Builder(id) => registry::builder(db, id).await?,
        Resource::Master(id) => registry::master(db, id).await?,
        Resource::Scheduler(id) => registry::scheduler(db, id).await?,
    };
    let message = message.ok_or_else(|| DbError::NotFound(format!("{resource:?}")))?;
    announce(bus, resource, event, message);
    Ok(())
}

/// Publishes `event` with a message the caller already holds in the resource's REST shape
/// (a log writer knows its log's row), sparing `publish`'s read. Only the keys some
/// subscriber wants are sent.
pub fn announce(bus: &Bus, resource: Resource, event: &str, message: Value) {
    let mut keys = event_paths(resource, &message)
        .into_iter()
        .map(|path| format!("{path}/{event}"))
        .filter(|key| bus.wants(key))
        .collect::<Vec<_>>();
    let Some(last) = keys.pop() else {
        return;
    };
    for key in keys {
        bus.publish(key, message.clone());
    }
    bus.publish(last, message);
}

/// [`announce`] with the message `make` makes, called only when some subscriber may want
/// the event: most events of a build have no subscriber, and their JSON would be made for
/// nothing.
pub fn announce_with(
    bus: &Bus,
    resource: Resource,
    event: &str,
    make: impl FnOnce() -> DbResult<Value>,
) -> DbResult<()> {
    if bus.wants_any(resource.key_shapes(), event) {
        announce(bus, resource, event, make()?);
    }
    Ok(())
}

impl Resource {
    /// Its routing keys' paths ([`event_paths`]) with `*` for each id.
    pub fn key_shapes(self) -> &'static [&'static str] {
        match self {
            Resource::Change(_) => &["changes/*"],
            Resource::Buildset(_) => &["buildsets/*"],
            Resource::BuildRequest(_) => &[
                "buildsets/*/builders/*/buildrequests/*",
                "buildrequests/*",
                "builders/*/buildrequests/*",
            ],
            Resource::Build(_) => &["builders/*/builds/*", "builds/*", "workers/*/builds/*"],
            Resource::Step(_) => &["builds/*/steps/*", "steps/*"],
            Resource::Log(_) => &["logs/*", "steps/*/logs/*"],
            Resource::Worker(_) => &["workers/*"],
            Resource::Builder(_) => &["builders/*"],
            Resource::Master(_) => &["masters/*"],
            Resource::Scheduler(_) => &["schedulers/*"],
        }
    }
}

/// Buildbot's `eventPathPatterns` of a resource type, filled in from its message. A build
/// on no worker has no `workers/...` path.
pub fn event_paths(resource: Resource, message: &Value) -> Vec<String> {
    let field = |name: &str| match &message[name] {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let has = |name: &str| !message[name].is_null();
    match resource {
        Resource::Change(id) => vec![format!("changes/{id}")],
        Resource::Buildset(id) => vec![format!("buildsets/{id}")],
        Resource::BuildRequest(id) => vec![
            format!(
                "buildsets/{}/builders/{}/buildrequests/{id}",
                field("buildsetid"),
                field("builderid")
            ),
            format!("buildrequests/{id}"),
            format!("builders/{}/buildrequests/{id}", field("builderid")),
        ],
        Resource::Build(id) => {
            let mut paths = vec![
                format!("builders/{}/builds/{}", field("builderid"), field("number")),
                format!("builds/{id}"),
            ];
            if has("workerid") {
                paths.push(format!("workers/{}/builds/{id}", field("workerid")));
            }
            paths
        }
        Resource::Step(id) => vec![
            format!("builds/{}/steps/{id}", field("buildid")),
            format!("steps/{id}"),
        ],
        Resource::Log(id) => vec![
            format!("logs/{id}"),
            format!("steps/{}/logs/{}", field("stepid"), field("slug")),
        ],
        Resource::Worker(id) => vec![format!("workers/{id}")],
        Resource::Builder(id) => vec![format!("builders/{id}")],
        Resource::Master(id) => vec![format!("masters/{id}")],
        Resource::Scheduler(id) => vec![format!("schedulers/{id}")],
    }
}

// ---- reading rows --------------------------------------------------------------------

/// A nullable integer column as JSON.
fn opt_int(row: &AnyRow, index: usize) -> DbResult<Value> {
    Ok(row
        .try_get::<Option<i64>, _>(index)?
        .map_or(Value::Null, Value::from))
}

/// A time column as Buildbot shows times: whole seconds.
fn time(row: &AnyRow, index: usize) -> DbResult<Value> {
    Ok(Value::from(row.try_get::<f64, _>(index)? as i64))
}

fn opt_time(row: &AnyRow, index: usize) -> DbResult<Value> {
    Ok(row
        .try_get::<Option<f64>, _>(index)?
        .map_or(Value::Null, |t| Value::from(t as i64)))
}

/// A 0/1 flag column.
fn flag(row: &AnyRow, index: usize) -> DbResult<bool> {
    Ok(row.try_get::<i64, _>(index)? != 0)
}

/// Applies `field=` to each item of a page.
fn projected(query: &Query, mut page: Page) -> Page {
    for item in &mut page.items {
        query.project(item);
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_type_has_buildbots_routing_keys() {
        let cases = [
            (
                Resource::Build(7),
                json!({"buildid": 7, "builderid": 2, "number": 5, "workerid": 3}),
                vec!["builders/2/builds/5", "builds/7", "workers/3/builds/7"],
            ),
            (
                Resource::Build(7),
                json!({"buildid": 7, "builderid": 2, "number": 5, "workerid": null}),
                vec!["builders/2/builds/5", "builds/7"],
            ),
            (
                Resource::Step(9),
                json!({"stepid": 9, "buildid": 7}),
                vec!["builds/7/steps/9", "steps/9"],
            ),
            (
                Resource::Log(4),
                json!({"logid": 4, "stepid": 9, "slug": "stdio"}),
                vec!["logs/4", "steps/9/logs/stdio"],
            ),
            (
                Resource::BuildRequest(11),
                json!({"buildrequestid": 11, "buildsetid": 6, "builderid": 2}),
                vec![
                    "buildsets/6/builders/2/buildrequests/11",
                    "buildrequests/11",
                    "builders/2/buildrequests/11",
                ],
            ),
            (Resource::Buildset(6), json!({}), vec!["buildsets/6"]),
            (Resource::Change(3), json!({}), vec!["changes/3"]),
            (Resource::Worker(3), json!({}), vec!["workers/3"]),
            (Resource::Builder(2), json!({}), vec!["builders/2"]),
            (Resource::Master(1), json!({}), vec!["masters/1"]),
            (Resource::Scheduler(8), json!({}), vec!["schedulers/8"]),
        ];
        for (resource, message, expected) in cases {
            let paths = event_paths(resource, &message);
            assert_eq!(paths, expected, "{resource:?}");
            for path in paths {
                let shaped = resource.key_shapes().iter().any(|shape| {
                    let parts = shape.split('/').zip(path.split('/'));
                    shape.split('/').count() == path.split('/').count()
                        && parts.into_iter().all(|(s, p)| s == "*" || s == p)
                });
                assert!(shaped, "{resource:?}: {path}");
            }
        }
    }

    #[test]
    fn an_event_no_subscriber_wants_has_no_message_made_and_no_key_sent() {
        let bus = Bus::new(16);
        let made = std::cell::Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            Ok(json!({"buildid": 7, "builderid": 2, "number": 5, "workerid": 3}))
        };
        announce_with(&bus, Resource::Build(7), "finished", make).unwrap();
        let mut events = bus.subscribe_to(crate::bus::Topics::Only(&["builds/*/finished"]));
        announce_with(&bus, Resource::Build(7), "new", make).unwrap();
        announce_with(&bus, Resource::Step(9), "finished", make).unwrap();
        assert_eq!(made.get(), 0);
        announce_with(&bus, Resource::Build(7), "finished", make).unwrap();
        assert_eq!(made.get(), 1);
        assert_eq!(events.try_recv().unwrap().key, "builds/7/finished");
        assert!(
            events.try_recv().is_err(),
            "the build's other keys are not sent"
        );
    }

    #[tokio::test]
    async fn publish_sends_the_stored_build_under_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO builds (id, number, builderid, buildrequestid, workerid, masterid, \
             started_at, state_string) VALUES (7, 5, 2, 1, 3, 1, 100.5, 'building')",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        let bus = Bus::new(16);
        let mut events = bus.subscribe();
        publish(&db, &bus, Resource::Build(7), "new").await.unwrap();
        let mut keys = Vec::new();
        for _ in 0..3 {
            let event = events.try_recv().unwrap();
            assert_eq!(event.message["state_string"], "building");
            assert_eq!(event.message["started_at"], 100);
            keys.push(event.key.clone());
        }
        assert_eq!(
            keys,
            [
                "builders/2/builds/5/new",
                "builds/7/new",
                "workers/3/builds/7/new"
            ]
        );
        assert!(matches!(
            publish(&db, &bus, Resource::Build(8), "new").await,
            Err(DbError::NotFound(_))
        ));
    }
}
