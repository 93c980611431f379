//! The durable outbox every sending status target shares: a message is rendered, written to
//! storage, then delivered by one task per target that retries with exponential backoff
//! and jitter, and records each message's outcome as soon as the peer answered it.
//!
//! A peer that is down, refuses or times out delays messages but loses none, and a restart
//! resumes delivery from storage; a kill repeats at most the message that was in flight. A
//! message that keeps failing past the policy's limit, or that the peer refuses for good,
//! is marked dead with the peer's answer; nothing is deleted unsent.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::RetryPolicy;
use crate::db::{now, Db, DbResult, OutboxMessage, Refusal};

/// A peer's way in: opens sessions (a connection, secured and logged in) and sends one
/// message at a time over one.
///
/// An HTTP push opens a session per batch and closes it after; SMTP keeps its session open
/// for a while after a batch, for the next one, and a chat peer (IRC) keeps it for good
/// ([`Transport::KEEP_IDLE`]). A kept session the peer dropped meanwhile is replaced by a
/// new one for the same messages. A session that must answer the peer while idle (IRC's
/// PING) does so from a task of its own.
pub trait Transport: Send + Sync + 'static {
    /// One open connection to the peer.
    type Session: Send;

    /// How long a session stays open after a batch for the next one: none, closed after
    /// each batch; `Duration::MAX`, until it breaks or the task stops.
    const KEEP_IDLE: Duration = Duration::ZERO;

    /// Whether messages go strictly in the order they were written: a message that is not
    /// taken holds every later one back until it went (or died).
    const IN_ORDER: bool = false;

    /// Connects, secures and authenticates. An `Err` is one line naming the peer and what
    /// went wrong; every message of the batch fails with it.
    fn open(&self) -> impl Future<Output = Result<Self::Session, String>> + Send;

    /// Sends one message (to its `retry_recipients` alone when it has them) and answers
    /// what the peer did with it.
    fn send(
        &self,
        session: &mut Self::Session,
        message: &OutboxMessage,
    ) -> impl Future<Output = Outcome> + Send;

    /// How long a new message waits for others to join it in one chunk (the pushes'
    /// `bufferDelay`); a retried one goes when it is due.
    fn gather(&self) -> Duration {
        Duration::ZERO
    }

    /// Sends the leading messages of `messages` as one unit where the peer takes several at
    /// once (HttpStatusPush's `chunkSize` events in one request, a StatusPush callback's
    /// `popChunk`), and answers one outcome per message it handled, in order; the others
    /// are offered again. One message at a time unless a transport says otherwise.
    fn send_chunk<'a>(
        &'a self,
        session: &'a mut Self::Session,
        messages: &'a [OutboxMessage],
    ) -> impl Future<Output = Vec<Outcome>> + Send + 'a {
        async move { vec![self.send(session, &messages[0]).await] }
    }

    /// Ends a session that is done with (politely: SMTP's QUIT). A broken one is dropped.
    fn close(&self, session: Self::Session) -> impl Future<Output = ()> + Send;
}

/// What became of one message. Errors and answers are one line naming the peer and what it
/// said.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The peer took it for every recipient: sent.
    Accepted,
    /// The peer took it for the recipients not listed here. Those in `retry` get it on a
    /// later attempt, alone, with the backoff of a failure; those in `refused` never do.
    /// With `retry` empty the message is sent.
    Partly {
        retry: Vec<Refusal>,
        refused: Vec<Refusal>,
    },
    /// Not taken this time, the session still good: tried again after the backoff.
    Failed(String),
    /// Refused for good (a 5xx): dead at once, with the answer.
    Refused(String),
    /// The session broke before the peer answered: this message and the rest of the batch
    /// are tried again after the backoff, over a new session.
    Broken(String),
    /// The peer asked to wait (HTTP's `Retry-After`, a rate limit's reset): tried again
    /// at `until` (Unix seconds) rather than after the backoff.
    Deferred { error: String, until: f64 },
}

impl Outcome {
    /// Whether the message stays pending after this outcome.
    fn leaves_pending(&self) -> bool {
        match self {
            Outcome::Accepted | Outcome::Refused(_) => false,
            Outcome::Partly { retry, .. } => !retry.is_empty(),
            Outcome::Failed(_) | Outcome::Broken(_) | Outcome::Deferred { .. } => true,
        }
    }
}

/// Messages fetched per batch.
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
        let worker = Worker {
            db,
            reporter,
            settings: settings.clone(),
            stop: stop.clone(),
        };
        let task = tokio::spawn(worker.deliver_forever(wake.clone()));
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

    /// The next batch goes through `transport` (a reconfig changed the peer) under `policy`;
    /// a session kept open to the old peer is closed.
    pub fn reconfigure(&self, transport: T, policy: RetryPolicy) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = Settings {
            transport: Arc::new(transport),
            policy,
        };
        self.wake();
    }

    /// Stops after the message in flight; what is still pending stays in storage.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// A session kept after a batch, the transport that opened it, and when it is closed unless
/// another batch takes it first (`None`: never).
struct Open<T: Transport> {
    transport: Arc<T>,
    session: T::Session,
    idle_until: Option<Instant>,
}

/// The delivery task's state.
struct Worker<T: Transport> {
    db: Db,
    reporter: String,
    settings: Arc<Mutex<Settings<T>>>,
    stop: CancellationToken,
}

impl<T: Transport> Worker<T> {
    async fn deliver_forever(self, wake: Arc<Notify>) {
        let reporter = &self.reporter;
        // A session kept open between batches ([`Transport::KEEP_IDLE`]).
        let mut kept: Option<Open<T>> = None;
        let mut pruned_at: Option<Instant> = None;
        while !self.stop.is_cancelled() {
            if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                pruned_at = Some(Instant::now());
                let before = now() - KEEP_SENT.as_secs_f64();
                if let Err(error) = self.db.prune_sent_outbox(before).await {
                    tracing::warn!("{reporter}: cannot prune sent messages: {error}");
                }
            }
            let wait = match self.deliver_due(&mut kept).await {
                Ok(Some(batch_size)) if batch_size as i64 == BATCH => continue,
                Ok(_) => match self.next_due().await {
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
            let idle_left = kept
                .as_ref()
                .and_then(|open| open.idle_until)
                .map(|until| until.saturating_duration_since(Instant::now()));
            let wait = match idle_left {
                Some(left) if left.is_zero() => {
                    let open = kept.take().expect("a kept session");
                    open.transport.close(open.session).await;
                    wait
                }
                Some(left) => wait.min(left),
                None => wait,
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                () = self.stop.cancelled() => break,
                () = wake.notified() => {}
                () = sleep_at_most(wait) => {}
            }
        }
        if let Some(open) = kept {
            open.transport.close(open.session).await;
        }
    }

    /// When the next message falls due; in order, the oldest pending one.
    async fn next_due(&self) -> DbResult<Option<f64>> {
        match T::IN_ORDER {
            true => self.db.first_pending_outbox_due(&self.reporter).await,
            false => self.db.next_outbox_due(&self.reporter).await,
        }
    }

    /// Delivers one batch of due messages, recording each outcome as it comes; answers how
    /// many were due, `None` when none was.
    async fn deliver_due(&self, kept: &mut Option<Open<T>>) -> DbResult<Option<usize>> {
        let batch = match T::IN_ORDER {
            true => {
                self.db
                    .due_outbox_head(&self.reporter, now(), BATCH)
                    .await?
            }
            false => {
                self.db
                    .due_outbox_messages(&self.reporter, now(), BATCH)
                    .await?
            }
        };
        if batch.is_empty() {
            return Ok(None);
        }
        let (transport, policy) = {
            let settings = self.settings.lock().unwrap_or_else(|e| e.into_inner());
            (settings.transport.clone(), settings.policy)
        };
        let first = &batch[0];
        let gathered_at = first.created_at + transport.gather().as_secs_f64();
        if first.attempts == 0 && gathered_at > now() {
            tokio::select! {
                () = self.stop.cancelled() => return Ok(None),
                () = tokio::time::sleep(Duration::from_secs_f64(gathered_at - now())) => {}
            }
            return Box::pin(self.deliver_due(kept)).await;
        }
        // A kept session goes with the transport that opened it: a reconfig ends it. The
        // flag says the session comes from an earlier batch and has not proved alive yet.
        let mut session: Option<(T::Session, bool)> = match kept.take() {
            Some(open) if Arc::ptr_eq(&open.transport, &transport) => Some((open.session, true)),
            Some(open) => {
                open.transport.close(open.session).await;
                None
            }
            None => None,
        };
        // Once the peer cannot be reached, the error the rest of the batch fails with.
        let mut unreachable: Option<String> = None;
        let mut next = 0;
        while next < batch.len() && !self.stop.is_cancelled() {
            let rest = &batch[next..];
            if let Some(error) = &unreachable {
                self.record(&rest[0], Outcome::Failed(error.clone()), &policy)
                    .await?;
                next += 1;
                continue;
            }
            let (mut current, stale) = match session.take() {
                Some(open) => open,
                None => match transport.open().await {
                    Ok(session) => (session, false),
                    Err(error) => {
                        unreachable = Some(error.clone());
                        self.record(&rest[0], Outcome::Failed(error), &policy)
                            .await?;
                        next += 1;
                        if T::IN_ORDER {
                            break;
                        }
                        continue;
                    }
                },
            };
            let mut outcomes = transport.send_chunk(&mut current, rest).await;
            if stale && matches!(outcomes.first(), Some(Outcome::Broken(_))) {
                // The peer dropped the kept session while it was idle: one more try over
                // a new one.
                match transport.open().await {
                    Ok(fresh) => {
                        current = fresh;
                        outcomes = transport.send_chunk(&mut current, rest).await;
                    }
                    Err(error) => outcomes = vec![Outcome::Broken(error)],
                }
            }
            if outcomes.is_empty() {
                outcomes.push(Outcome::Failed("the transport sent nothing".into()));
            }
            match outcomes.iter().find_map(|outcome| match outcome {
                Outcome::Broken(why) => Some(why),
                _ => None,
            }) {
                Some(why) => unreachable = Some(format!("not sent, the session broke: {why}")),
                None => session = Some((current, false)),
            }
            let mut held = false;
            for (message, outcome) in rest.iter().zip(outcomes) {
                held = T::IN_ORDER && outcome.leaves_pending();
                self.record(message, outcome, &policy).await?;
                next += 1;
                if held {
                    break;
                }
            }
            if held {
                break;
            }
        }
        if let Some((open, _)) = session {
            if !T::KEEP_IDLE.is_zero() && !self.stop.is_cancelled() {
                *kept = Some(Open {
                    transport,
                    session: open,
                    idle_until: Instant::now().checked_add(T::KEEP_IDLE),
                });
            } else {
                transport.close(open).await;
            }
        }
        Ok(Some(batch.len()))
    }

    /// Writes what became of `message`, with its next attempt when it failed.
    async fn record(
        &self,
        message: &OutboxMessage,
        outcome: Outcome,
        policy: &RetryPolicy,
    ) -> DbResult<()> {
        let reporter = &self.reporter;
        let summary = &message.summary;
        let failures = u32::try_from(message.attempts + 1).unwrap_or(u32::MAX);
        let age = now() - message.created_at;
        let retry_at = (age < policy.give_up_after.as_secs_f64())
            .then(|| now() + policy.delay(failures).as_secs_f64());
        let log_failure = |error: &str| {
            if retry_at.is_some() {
                tracing::warn!(
                    "{reporter}: delivering '{summary}' failed (attempt {failures}), \
                     will retry: {error}"
                );
            } else {
                tracing::error!(
                    "{reporter}: giving up on '{summary}' after {failures} attempts over \
                     {age:.0} s; it stays in the outbox as dead: {error}"
                );
            }
        };
        match outcome {
            Outcome::Accepted => self.db.mark_outbox_sent(&[message.id]).await,
            Outcome::Failed(error) | Outcome::Broken(error) => {
                log_failure(&error);
                self.db
                    .mark_outbox_failed(message.id, &error, retry_at)
                    .await
            }
            Outcome::Deferred { error, until } => {
                let retry_at = retry_at.map(|_| until.max(now()));
                log_failure(&error);
                self.db
                    .mark_outbox_failed(message.id, &error, retry_at)
                    .await
            }
            Outcome::Refused(error) => {
                tracing::error!(
                    "{reporter}: '{summary}' refused for good; it stays in the outbox as dead: \
                     {error}"
                );
                self.db.mark_outbox_failed(message.id, &error, None).await
            }
            Outcome::Partly { retry, refused } => {
                if !refused.is_empty() {
                    tracing::warn!(
                        "{reporter}: '{summary}' refused for good to some recipients: {}",
                        answers(&refused)
                    );
                }
                let mut all_refused = message.refused_recipients.clone();
                all_refused.extend(refused);
                let error = match retry.is_empty() {
                    true => answers(&all_refused),
                    false => {
                        let error = answers(&retry);
                        log_failure(&error);
                        error
                    }
                };
                let retry: Vec<String> = retry.into_iter().map(|r| r.recipient).collect();
                self.db
                    .mark_outbox_partly_sent(message.id, &retry, &all_refused, &error, retry_at)
                    .await
            }
        }
    }
}

/// The peer's answers to refused recipients, as one line.
fn answers(refusals: &[Refusal]) -> String {
    let answers: Vec<&str> = refusals.iter().map(|r| r.answer.as_str()).collect();
    answers.join("; ")
}

async fn sleep_at_most(wait: Duration) {
    match wait {
        Duration::MAX => std::future::pending().await,
        wait => tokio::time::sleep(wait).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::NewMessage;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A peer that accepts everything when up, or answers what a test scripts; counting
    /// sessions opened and messages accepted.
    #[derive(Default)]
    struct Peer {
        up: AtomicBool,
        connections: AtomicUsize,
        closed: AtomicUsize,
        accepted: Mutex<Vec<String>>,
        /// Answers given before accepting anything, one per message sent.
        script: Mutex<VecDeque<Outcome>>,
        /// Bumped to break every session opened before.
        generation: AtomicUsize,
    }

    impl Peer {
        /// A peer that is up from the start.
        fn up() -> Peer {
            Peer {
                up: AtomicBool::new(true),
                ..Peer::default()
            }
        }
    }

    /// Keeps an idle session this many milliseconds; [`FOR_GOOD`], until it breaks.
    struct ToPeer<const KEEP_MS: u64, const ORDER: bool = false>(Arc<Peer>);

    const FOR_GOOD: u64 = u64::MAX;

    impl<const KEEP_MS: u64, const ORDER: bool> Transport for ToPeer<KEEP_MS, ORDER> {
        /// The peer's generation when the session was opened.
        type Session = usize;
        const KEEP_IDLE: Duration = match KEEP_MS {
            FOR_GOOD => Duration::MAX,
            ms => Duration::from_millis(ms),
        };
        const IN_ORDER: bool = ORDER;

        async fn open(&self) -> Result<usize, String> {
            self.0.connections.fetch_add(1, Ordering::SeqCst);
            match self.0.up.load(Ordering::SeqCst) {
                true => Ok(self.0.generation.load(Ordering::SeqCst)),
                false => Err("peer: connection refused".into()),
            }
        }

        async fn send(&self, session: &mut usize, message: &OutboxMessage) -> Outcome {
            if *session != self.0.generation.load(Ordering::SeqCst) {
                return Outcome::Broken("peer: connection reset".into());
            }
            if let Some(answer) = self.0.script.lock().unwrap().pop_front() {
                return answer;
            }
            let mut accepted = self.0.accepted.lock().unwrap();
            match &message.retry_recipients {
                Some(only) => accepted.push(format!("{} to {}", message.summary, only.join(","))),
                None => accepted.push(message.summary.clone()),
            }
            Outcome::Accepted
        }

        async fn close(&self, _: usize) {
            self.0.closed.fetch_add(1, Ordering::SeqCst);
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

    /// Writes message `n`, wakes the delivery, and waits until the peer has accepted `n`.
    async fn deliver_nth<T: Transport>(db: &Db, delivery: &Delivery<T>, peer: &Peer, n: usize) {
        db.add_outbox_message(&message(n)).await.unwrap();
        delivery.wake();
        until(|| peer.accepted.lock().unwrap().len() == n).await;
    }

    async fn open_db(dir: &tempfile::TempDir) -> Db {
        Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn messages_wait_for_a_peer_that_is_down_then_go_once_each_in_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(&dir).await;
        let peer = Arc::new(Peer::default());
        let transport = ToPeer::<0>(peer.clone());
        let delivery = Delivery::spawn(db.clone(), "test".into(), transport, FAST);
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
        let db = open_db(&dir).await;
        db.add_outbox_message(&message(1)).await.unwrap();
        let peer = Arc::new(Peer::default());
        let brief = RetryPolicy {
            give_up_after: Duration::from_millis(100),
            ..FAST
        };
        let transport = ToPeer::<0>(peer.clone());
        let delivery = Delivery::spawn(db.clone(), "test".into(), transport, brief);
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
        let transport = ToPeer::<0>(peer.clone());
        let delivery = Delivery::spawn(db.clone(), "test".into(), transport, FAST);
        until(|| peer.accepted.lock().unwrap().as_slice() == ["m2"]).await;
        delivery.stop().await;
    }

    #[tokio::test]
    async fn each_outcome_is_recorded_as_it_comes_and_refusals_for_good_are_dead_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(&dir).await;
        let refusal = |recipient: &str, answer: &str| Refusal {
            recipient: recipient.into(),
            answer: answer.into(),
        };
        let peer = Arc::new(Peer {
            script: Mutex::new(VecDeque::from([
                Outcome::Refused("peer: 550 no such list".into()),
                Outcome::Partly {
                    retry: vec![refusal("b", "peer: 450 b is busy")],
                    refused: vec![refusal("c", "peer: 550 no c here")],
                },
                Outcome::Partly {
                    retry: vec![],
                    refused: vec![refusal("e", "peer: 550 no e here")],
                },
            ])),
            ..Peer::up()
        });
        for n in 1..=3 {
            db.add_outbox_message(&message(n)).await.unwrap();
        }
        let transport = ToPeer::<0>(peer.clone());
        let delivery = Delivery::spawn(db.clone(), "test".into(), transport, FAST);
        // m2 goes again to b alone, after its backoff.
        until(|| peer.accepted.lock().unwrap().as_slice() == ["m2 to b"]).await;
        delivery.stop().await;

        let listed = db.undelivered_outbox_messages("test").await.unwrap();
        let by_summary = |summary: &str| listed.iter().find(|m| m.summary == summary).unwrap();
        let m1 = by_summary("m1");
        assert_eq!(
            (m1.state.as_str(), m1.attempts),
            ("dead", 1),
            "a refusal for good is not retried"
        );
        assert_eq!(m1.last_error.as_deref(), Some("peer: 550 no such list"));
        let m2 = by_summary("m2");
        assert_eq!((m2.state.as_str(), m2.attempts), ("sent", 2));
        assert_eq!(m2.refused_recipients, [refusal("c", "peer: 550 no c here")]);
        let m3 = by_summary("m3");
        assert_eq!(m3.state, "sent");
        assert_eq!(m3.refused_recipients, [refusal("e", "peer: 550 no e here")]);
        assert_eq!(listed.len(), 3);
    }

    #[tokio::test]
    async fn in_order_a_message_not_taken_holds_back_the_later_ones_until_it_went() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(&dir).await;
        let peer = Arc::new(Peer {
            script: Mutex::new(VecDeque::from([
                Outcome::Failed("peer: 500".into()),
                Outcome::Deferred {
                    error: "peer: 429".into(),
                    until: now() + 0.3,
                },
            ])),
            ..Peer::up()
        });
        for n in 1..=3 {
            db.add_outbox_message(&message(n)).await.unwrap();
        }
        let started = Instant::now();
        let transport = ToPeer::<0, true>(peer.clone());
        let delivery = Delivery::spawn(db.clone(), "test".into(), transport, FAST);
        until(|| peer.accepted.lock().unwrap().len() == 3).await;
        assert_eq!(peer.accepted.lock().unwrap().as_slice(), ["m1", "m2", "m3"]);
        assert!(
            started.elapsed() >= Duration::from_millis(290),
            "the peer's wait was not kept"
        );
        delivery.stop().await;
        let m1 = db.outbox_messages(Some("test"), &["sent"]).await.unwrap();
        let attempts: Vec<i64> = m1.iter().rev().map(|m| m.attempts).collect();
        assert_eq!(
            attempts,
            [3, 1, 1],
            "only the first message was tried before it went"
        );
    }

    #[tokio::test]
    async fn a_kept_session_serves_later_batches_and_is_reopened_when_it_broke() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(&dir).await;
        let peer = Arc::new(Peer::up());
        let transport = ToPeer::<FOR_GOOD>(peer.clone());
        let delivery = Delivery::spawn(db.clone(), "test".into(), transport, FAST);
        for n in 1..=3 {
            deliver_nth(&db, &delivery, &peer, n).await;
        }
        assert_eq!(peer.connections.load(Ordering::SeqCst), 1);

        // The peer drops the idle session: the next message goes over a new one, at once.
        peer.generation.fetch_add(1, Ordering::SeqCst);
        deliver_nth(&db, &delivery, &peer, 4).await;
        assert_eq!(peer.connections.load(Ordering::SeqCst), 2);
        let m4 = db.outbox_messages(Some("test"), &["sent"]).await.unwrap();
        assert_eq!(m4[0].attempts, 1);
        delivery.stop().await;
    }

    #[tokio::test]
    async fn a_session_kept_for_a_while_serves_the_next_batch_then_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(&dir).await;
        let peer = Arc::new(Peer::up());
        let delivery =
            Delivery::spawn(db.clone(), "test".into(), ToPeer::<500>(peer.clone()), FAST);
        for n in 1..=2 {
            deliver_nth(&db, &delivery, &peer, n).await;
        }
        assert_eq!(peer.connections.load(Ordering::SeqCst), 1);

        until(|| peer.closed.load(Ordering::SeqCst) == 1).await;
        deliver_nth(&db, &delivery, &peer, 3).await;
        assert_eq!(peer.connections.load(Ordering::SeqCst), 2);
        delivery.stop().await;
        assert_eq!(
            peer.closed.load(Ordering::SeqCst),
            2,
            "the stop closes the kept one"
        );
    }
}
