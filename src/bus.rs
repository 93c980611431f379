//! The event bus: every state change, after it is written to storage, is published here
//! under Buildbot's routing keys (`builds/17/finished`), with the resource's JSON as the
//! message. The engine, schedulers, status targets, `/ws` and `/sse` subscribe.
//!
//! A subscriber names the keys it wants, as Buildbot's `mq` consumers pass a filter
//! (`buildrequests/*/new`). An event is queued only for the subscribers that want it, so
//! a task is woken only for its own events; one that nobody wants is not sent at all, and
//! [`Bus::wants_any`] lets a publisher skip building its message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::mpsc;

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

/// The keys a subscriber wants: each a key whose parts may be `*`, matching any one part
/// (`builds/*/finished`), or [`Topics::All`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topics {
    All,
    Only(&'static [&'static str]),
}

impl Topics {
    fn matches(self, key: &str) -> bool {
        match self {
            Topics::All => true,
            Topics::Only(patterns) => patterns.iter().any(|pattern| {
                let mut parts = key.split('/');
                pattern
                    .split('/')
                    .all(|want| parts.next().is_some_and(|part| want == "*" || want == part))
                    && parts.next().is_none()
            }),
        }
    }

    /// Whether some key `SHAPE/event` may match, for a shape of `shapes` (`builds/*`,
    /// whose `*` stands for any one part).
    fn may_match(self, shapes: &[&str], event: &str) -> bool {
        match self {
            Topics::All => true,
            Topics::Only(patterns) => patterns.iter().any(|pattern| {
                shapes.iter().any(|shape| {
                    let mut parts = shape.split('/').chain([event]);
                    pattern.split('/').all(|want| {
                        parts
                            .next()
                            .is_some_and(|part| want == "*" || part == "*" || want == part)
                    }) && parts.next().is_none()
                })
            }),
        }
    }
}

/// The bus. Cheap to clone; every clone publishes to the same subscribers.
#[derive(Clone, Debug)]
pub struct Bus {
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
    /// Events queued for one subscriber before it is told it missed some.
    capacity: usize,
}

#[derive(Debug)]
struct Subscriber {
    topics: Topics,
    queue: mpsc::Sender<Arc<Event>>,
    missed: Arc<AtomicU64>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new(4096)
    }
}

impl Bus {
    pub fn new(capacity: usize) -> Bus {
        Bus {
            subscribers: Arc::default(),
            capacity,
        }
    }

    fn subscribers(&self) -> MutexGuard<'_, Vec<Subscriber>> {
        // A panic while the list was held cannot leave it half-changed.
        self.subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues the event for each subscriber that wants `key`. A subscriber whose queue is
    /// full misses it and is told so at its next receive; the bus never waits.
    pub fn publish(&self, key: impl Into<String>, message: Value) {
        let event = Arc::new(Event {
            key: key.into(),
            message,
        });
        let mut subscribers = self.subscribers();
        subscribers.retain(|subscriber| {
            if !subscriber.topics.matches(&event.key) {
                return !subscriber.queue.is_closed();
            }
            match subscriber.queue.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    subscriber.missed.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Whether some subscriber wants `key`.
    pub fn wants(&self, key: &str) -> bool {
        self.subscribers()
            .iter()
            .any(|subscriber| subscriber.topics.matches(key) && !subscriber.queue.is_closed())
    }

    /// Whether some subscriber may want an `event` under a key of one of `shapes`
    /// (`builds/*` for `builds/17/finished`): when none does, the event's message need not
    /// be made.
    pub fn wants_any(&self, shapes: &[&str], event: &str) -> bool {
        self.subscribers().iter().any(|subscriber| {
            subscriber.topics.may_match(shapes, event) && !subscriber.queue.is_closed()
        })
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> Subscription {
        self.subscribe_to(Topics::All)
    }

    /// The events under keys `topics` names, from now on.
    pub fn subscribe_to(&self, topics: Topics) -> Subscription {
        let (queue, receiver) = mpsc::channel(self.capacity);
        let missed = Arc::new(AtomicU64::new(0));
        self.subscribers().push(Subscriber {
            topics,
            queue,
            missed: missed.clone(),
        });
        Subscription { receiver, missed }
    }
}

/// What one subscriber receives, in the order published.
#[derive(Debug)]
pub struct Subscription {
    receiver: mpsc::Receiver<Arc<Event>>,
    missed: Arc<AtomicU64>,
}

impl Subscription {
    /// The next event; `Lagged(n)` once after `n` were missed (storage has the truth),
    /// `Closed` when the bus is gone.
    pub async fn recv(&mut self) -> Result<Arc<Event>, RecvError> {
        if let Some(missed) = self.take_missed() {
            return Err(RecvError::Lagged(missed));
        }
        self.receiver.recv().await.ok_or(RecvError::Closed)
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Result<Arc<Event>, TryRecvError> {
        if let Some(missed) = self.take_missed() {
            return Err(TryRecvError::Lagged(missed));
        }
        self.receiver.try_recv().map_err(|error| match error {
            mpsc::error::TryRecvError::Empty => TryRecvError::Empty,
            mpsc::error::TryRecvError::Disconnected => TryRecvError::Closed,
        })
    }

    fn take_missed(&self) -> Option<u64> {
        match self.missed.swap(0, Ordering::Relaxed) {
            0 => None,
            missed => Some(missed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(subscription: &mut Subscription) -> Vec<String> {
        let mut keys = Vec::new();
        while let Ok(event) = subscription.try_recv() {
            keys.push(event.key.clone());
        }
        keys
    }

    #[test]
    fn a_subscriber_receives_only_the_keys_it_names() {
        let bus = Bus::new(16);
        let mut finished = bus.subscribe_to(Topics::Only(&["builds/*/finished"]));
        let mut everything = bus.subscribe();
        for key in [
            "builds/1/new",
            "builds/1/finished",
            "builders/2/builds/1/finished",
            "builds/1/finished/more",
        ] {
            bus.publish(key, Value::Null);
        }
        assert_eq!(keys(&mut finished), ["builds/1/finished"]);
        assert_eq!(keys(&mut everything).len(), 4);
    }

    #[test]
    fn a_key_nobody_subscribed_to_is_not_wanted_and_a_dropped_subscription_wants_nothing() {
        let bus = Bus::new(16);
        assert!(!bus.wants("buildrequests/1/new"));
        assert!(!bus.wants_any(&["buildrequests/*"], "new"));
        let requests = bus.subscribe_to(Topics::Only(&["buildrequests/*/new"]));
        assert!(bus.wants("buildrequests/1/new"));
        assert!(!bus.wants("buildrequests/1/claimed"));
        assert!(bus.wants_any(&["buildsets/*/builders/*", "buildrequests/*"], "new"));
        assert!(!bus.wants_any(&["buildrequests/*"], "claimed"));
        assert!(!bus.wants_any(&["builders/*/buildrequests/*"], "new"));
        assert!(!bus.wants_any(&["builds/*"], "new"));
        drop(requests);
        assert!(!bus.wants("buildrequests/1/new"));
        bus.publish("buildrequests/1/new", Value::Null);
        assert!(bus.subscribers().is_empty(), "the closed queue is let go");
    }

    #[test]
    fn a_subscriber_that_falls_behind_is_told_how_many_events_it_missed() {
        let bus = Bus::new(2);
        let mut events = bus.subscribe();
        for n in 0..5 {
            bus.publish(format!("builds/{n}/new"), Value::Null);
        }
        assert_eq!(events.try_recv(), Err(TryRecvError::Lagged(3)));
        assert_eq!(keys(&mut events), ["builds/0/new", "builds/1/new"]);
        bus.publish("builds/5/new", Value::Null);
        assert_eq!(keys(&mut events), ["builds/5/new"]);
    }
}
