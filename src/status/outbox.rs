//! The durable outbox every sending status target shares: a message is rendered, written to
//! storage, then delivered by one task per target that retries with exponential backoff
//! and jitter, and marks it sent only after the peer accepted it.
//!
//! A peer that is down, refuses or times out delays messages but loses none, and a restart
//! resumes delivery from storage. A message that keeps failing past the policy's limit is
//! marked dead with its last error; nothing is deleted unsent.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::RetryPolicy;
use crate::db::{now, Db, OutboxMessage};

/// Delivers rendered messages to a peer.
pub trait Transport: Send + Sync + 'static {
    /// Delivers a batch, over one connection when the peer allows, and answers one result
    /// per message in order. Only `Ok` marks a message sent; an `Err` is one line naming
    /// the peer and what it answered.
    fn deliver(
        &self,
        batch: &[OutboxMessage],
    ) -> impl Future<Output = Vec<Result<(), String>>> + Send;
}

/// Messages fetched per batch, and so per connection.
const BATCH: i64 = 100;

/// The wait before trying storage again after it failed.
const STORAGE_RETRY: Duration = Duration::from_secs(1);

/// Sent messages are kept this long (for a look at what went out), then forgotten.
const KEEP_SENT: Duration = Duration::from_secs(7 * 24 * 3600);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What the delivery task reads afresh before each batch: a reconfig replaces it.
struct Settings<T> {
    transport: Arc<T>,
    policy: RetryPolicy,
}

/// The delivery task of one status target.
pub struct Delivery<T> {
    settings: Arc<Mutex<Settings<T>>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl<T: Transport> Delivery<T> {
    /// Starts delivering `reporter`'s pending messages, those left from before a restart
    /// first.
    pub fn spawn(db: Db, reporter: String, transport: T, policy: RetryPolicy) -> Delivery<T> {
        let settings = Arc::new(Mutex::new(Settings {
            transport: Arc::new(transport),
            policy,
        }));
        let wake = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let task = tokio::spawn(deliver_forever(
            db,
            reporter,
            settings.clone(),
            wake.clone(),
            stop.clone(),
        ));
        Delivery {
            settings,
            wake,
            stop,
            task,
        }
    }

    /// Says a message was written: deliver now rather than at the next due time.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A handle to [`Delivery::wake`] with, for the task that writes the messages.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// The next batch goes through `transport` (a reconfig changed the peer) under `policy`.
    pub fn reconfigure(&self, transport: T, policy: RetryPolicy) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = Settings {
            transport: Arc::new(transport),
            policy,
        };
        self.wake();
    }

    /// Stops after the batch in flight; what is still pending stays in storage.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn deliver_forever<T: Transport>(
    db: Db,
    reporter: String,
    settings: Arc<Mutex<Settings<T>>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut pruned_at: Option<std::time::Instant> = None;
    while !stop.is_cancelled() {
        if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            pruned_at = Some(std::time::Instant::now());
            if let Err(error) = db.prune_sent_outbox(now() - KEEP_SENT.as_secs_f64()).await {
                tracing::warn!("{reporter}: cannot prune sent messages: {error}");
            }
        }
        let (transport, policy) = {
            let settings = settings.lock().unwrap_or_else(|e| e.into_inner());
            (settings.transport.clone(), settings.policy)
        };
        let wait = match deliver_due(&db, &reporter, transport.as_ref(), &policy).await {
            Ok(Some(batch_size)) if batch_size as i64 == BATCH => continue,
            Ok(_) => match db.next_outbox_due(&reporter).await {
                Ok(Some(due)) => Duration::from_secs_f64((due - now()).max(0.0)),
                Ok(None) => Duration::MAX,
                Err(error) => {
                    tracing::warn!("{reporter}: cannot read the outbox: {error}");
                    STORAGE_RETRY
                }
            },
            Err(error) => {
                tracing::warn!("{reporter}: cannot read the outbox: {error}");
                STORAGE_RETRY
            }
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = wake.notified() => {}
            () = sleep_at_most(wait) => {}
        }
    }
}

async fn sleep_at_most(wait: Duration) {
    match wait {
        Duration::MAX => std::future::pending().await,
        wait => tokio::time::sleep(wait).await,
    }
}

/// Delivers one batch of due messages and records each outcome; answers how many there
/// were, `None` when none was due.
async fn deliver_due<T: Transport>(
    db: &Db,
    reporter: &str,
    transport: &T,
    policy: &RetryPolicy,
) -> crate::db::DbResult<Option<usize>> {
    let batch = db.due_outbox_messages(reporter, now(), BATCH).await?;
    if batch.is_empty() {
        return Ok(None);
    }
    let results = transport.deliver(&batch).await;
    let mut sent = Vec::with_capacity(batch.len());
    for (message, result) in batch.iter().zip(results) {
        match result {
            Ok(()) => sent.push(message.id),
            Err(error) => {
                let failures = u32::try_from(message.attempts + 1).unwrap_or(u32::MAX);
                let age = now() - message.created_at;
                let retry_at = (age < policy.give_up_after.as_secs_f64())
                    .then(|| now() + policy.delay(failures).as_secs_f64());
                match retry_at {
                    Some(_) => tracing::warn!(
                        "{reporter}: delivering '{}' failed (attempt {failures}), will retry: {error}",
                        message.summary
                    ),
                    None => tracing::error!(
                        "{reporter}: giving up on '{}' after {failures} attempts over {:.0} s; \
                         it stays in the outbox as dead: {error}",
                        message.summary,
                        age
                    ),
                }
                db.mark_outbox_failed(message.id, &error, retry_at).await?;
            }
        }
    }
    db.mark_outbox_sent(&sent).await?;
    Ok(Some(batch.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::NewMessage;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A peer that accepts or refuses everything, counting connections and messages.
    #[derive(Default)]
    struct Peer {
        up: AtomicBool,
        connections: AtomicUsize,
        accepted: Mutex<Vec<String>>,
    }

    struct ToPeer(Arc<Peer>);

    impl Transport for ToPeer {
        async fn deliver(&self, batch: &[OutboxMessage]) -> Vec<Result<(), String>> {
            self.0.connections.fetch_add(1, Ordering::SeqCst);
            batch
                .iter()
                .map(|message| {
                    if self.0.up.load(Ordering::SeqCst) {
                        self.0
                            .accepted
                            .lock()
                            .unwrap()
                            .push(message.summary.clone());
                        Ok(())
                    } else {
                        Err("peer: connection refused".into())
                    }
                })
                .collect()
        }
    }

    fn message(n: usize) -> NewMessage {
        NewMessage {
            reporter: "test".into(),
            kind: "mail".into(),
            dedup_key: format!("build:{n}"),
            summary: format!("m{n}"),
            meta: serde_json::json!({}),
            body: Vec::new(),
        }
    }

    const FAST: RetryPolicy = RetryPolicy {
        first_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(80),
        give_up_after: Duration::from_secs(3600),
    };

    async fn until(what: impl Fn() -> bool) {
        for _ in 0..500 {
            if what() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out");
    }

    #[tokio::test]
    async fn messages_wait_for_a_peer_that_is_down_then_go_once_each_in_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap();
        let peer = Arc::new(Peer::default());
        let delivery = Delivery::spawn(db.clone(), "test".into(), ToPeer(peer.clone()), FAST);
        for n in 0..10 {
            db.add_outbox_message(&message(n)).await.unwrap();
            delivery.wake();
        }
        until(|| peer.connections.load(Ordering::SeqCst) >= 3).await;
        peer.up.store(true, Ordering::SeqCst);
        until(|| peer.accepted.lock().unwrap().len() == 10).await;
        let pending = db
            .outbox_messages(None, &["pending", "dead"])
            .await
            .unwrap();
        assert!(pending.is_empty());
        let mut accepted = peer.accepted.lock().unwrap().clone();
        accepted.sort();
        accepted.dedup();
        assert_eq!(accepted.len(), 10);
        delivery.stop().await;
    }

    #[tokio::test]
    async fn a_restart_resumes_and_old_failures_end_dead_with_their_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap();
        db.add_outbox_message(&message(1)).await.unwrap();
        let peer = Arc::new(Peer::default());
        let brief = RetryPolicy {
            give_up_after: Duration::from_millis(100),
            ..FAST
        };
        let delivery = Delivery::spawn(db.clone(), "test".into(), ToPeer(peer.clone()), brief);
        let dead = || async { db.outbox_messages(Some("test"), &["dead"]).await.unwrap() };
        for _ in 0..200 {
            if !dead().await.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let dead = dead().await;
        assert_eq!(dead.len(), 1);
        assert_eq!(
            dead[0].last_error.as_deref(),
            Some("peer: connection refused")
        );
        delivery.stop().await;

        // Written while no delivery task runs, as if the master had died: the next one
        // delivers it.
        db.add_outbox_message(&message(2)).await.unwrap();
        peer.up.store(true, Ordering::SeqCst);
        let delivery = Delivery::spawn(db.clone(), "test".into(), ToPeer(peer.clone()), FAST);
        until(|| peer.accepted.lock().unwrap().as_slice() == ["m2"]).await;
        delivery.stop().await;
    }
}
