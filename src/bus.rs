//! The event bus: every state change, after it is written to storage, is published here
//! under Buildbot's routing keys (`builds/17/finished`), with the resource's JSON as the
//! message. Status targets, `/ws` and `/sse` subscribe.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

/// One published state change.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Buildbot's routing key, joined with '/': `builders/3/builds/5/finished`.
    pub key: String,
    /// The resource as the REST API shows it after the change.
    pub message: Value,
}

impl Event {
    /// The key's parts: `["builds", "17", "finished"]`.
    pub fn parts(&self) -> impl Iterator<Item = &str> {
        self.key.split('/')
    }

    /// The id in a key of the form `KIND/ID/NAME` (`builds/17/finished`), if it is one.
    pub fn id_of(&self, kind: &str, name: &str) -> Option<i64> {
        let mut parts = self.parts();
        let (Some(k), Some(id), Some(e), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        (k == kind && e == name).then(|| id.parse().ok()).flatten()
    }
}

/// A broadcast channel of events. A subscriber that falls more than the capacity behind
/// misses events and is told so (`RecvError::Lagged`); storage still has the truth.
#[derive(Clone, Debug)]
pub struct Bus {
    sender: broadcast::Sender<Arc<Event>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new(4096)
    }
}

impl Bus {
    pub fn new(capacity: usize) -> Bus {
        Bus {
            sender: broadcast::channel(capacity).0,
        }
    }

    pub fn publish(&self, key: impl Into<String>, message: Value) {
        // No subscriber is not an error: nobody is listening yet.
        let _ = self.sender.send(Arc::new(Event {
            key: key.into(),
            message,
        }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }
}
