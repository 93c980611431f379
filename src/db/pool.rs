//! The connections a [`Db`](super::Db) reuses, in front of sqlx's pool. sqlx takes a
//! connection back only in a task it spawns, after a round trip to the connection's thread
//! (a ping): on SQLite that doubles the cost of a statement, and a statement sent right
//! after another finds no connection idle and opens one more (a thread, a page cache and a
//! parse of the schema). Here a SQLite connection is idle again as its user drops it, and
//! closes once it has been idle for [`SQLITE_IDLE`](super::SQLITE_IDLE). A statement that
//! finds none idle waits its turn for one given back, and one more opens only once it has
//! waited about as long as an opening takes ([`GROW_AFTER`]). A PostgreSQL connection,
//! which the server can drop, goes through sqlx's own checks.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use sqlx::any::{AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Describe, Either, Execute, Executor};
use tokio::sync::oneshot;

/// How long a statement waits for a connection in use before one more opens: about what
/// opening one takes, so a few statements at once (a start registering its parts) share
/// one connection, while a steady queue (REST reads under load) grows the pool.
const GROW_AFTER: Duration = Duration::from_millis(1);

/// sqlx's pool, and on SQLite the connections idle in front of it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    sqlx: AnyPool,
    /// None on PostgreSQL.
    reuse: Option<Reuse>,
}

#[derive(Debug)]
struct Reuse {
    /// Connections open at most: sqlx's own pool's most.
    most: usize,
    /// None keeps idle connections open (an in-memory database lives as long as they do).
    idle_timeout: Option<Duration>,
    /// How long a statement waits for a connection before it fails: sqlx's own wait.
    acquire_timeout: Duration,
    state: Mutex<State>,
}

/// What a waiting statement is handed: a connection, or why the one opened for it failed.
type Handed = Result<PoolConnection<Any>, sqlx::Error>;

#[derive(Debug, Default)]
struct State {
    /// Oldest first; the last one back is the next one out, its pages the warmest, and the
    /// others are left to close.
    idle: Vec<(PoolConnection<Any>, Instant)>,
    /// Statements waiting for a connection, first come first: a connection given back
    /// goes to the first, so none waits behind later ones. None is idle while one waits.
    waiting: VecDeque<oneshot::Sender<Handed>>,
    /// Connections idle, in use or opening.
    open: usize,
    opening: bool,
    /// A task closes those idle too long (at most one such task at a time).
    reaping: bool,
    /// [`Pool::close`] began: a connection given back goes to sqlx, which closes it.
    closed: bool,
}

impl Pool {
    /// Reuses SQLite connections, at most as many open at once as `sqlx` allows, each
    /// statement waiting for one as long as `sqlx` would; `idle_timeout` None keeps them
    /// open.
    pub fn sqlite(sqlx: AnyPool, idle_timeout: Option<Duration>) -> Pool {
        let reuse = Reuse {
            most: sqlx.options().get_max_connections() as usize,
            idle_timeout,
            acquire_timeout: sqlx.options().get_acquire_timeout(),
            state: Mutex::default(),
        };
        Pool {
            shared: Arc::new(Shared {
                sqlx,
                reuse: Some(reuse),
            }),
        }
    }

    /// sqlx's pool as it is: each connection checked as sqlx checks it.
    pub fn postgres(sqlx: AnyPool) -> Pool {
        Pool {
            shared: Arc::new(Shared { sqlx, reuse: None }),
        }
    }

    /// The connection given back last, or the first one given back or opened.
    pub async fn acquire(&self) -> Result<Conn, sqlx::Error> {
        let Some(reuse) = &self.shared.reuse else {
            return Ok(Conn {
                conn: Some(self.shared.sqlx.acquire().await?),
                home: None,
            });
        };
        let conn = tokio::time::timeout(reuse.acquire_timeout, self.shared.wait_for_one())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        Ok(Conn {
            conn: Some(conn),
            home: Some(self.shared.clone()),
        })
    }

    /// How many connections sqlx holds open.
    #[cfg(test)]
    pub fn open_connections(&self) -> u32 {
        self.shared.sqlx.size()
    }

    /// What sqlx was told to connect to.
    pub fn connect_options(&self) -> Arc<sqlx::any::AnyConnectOptions> {
        self.shared.sqlx.connect_options()
    }

    /// Closes every connection, waiting for those in use to be given back.
    pub async fn close(&self) {
        if let Some(reuse) = &self.shared.reuse {
            let (idle, waiting) = {
                let mut state = reuse.lock();
                state.closed = true;
                (
                    std::mem::take(&mut state.idle),
                    std::mem::take(&mut state.waiting),
                )
            };
            for waiter in waiting {
                let _ = waiter.send(Err(sqlx::Error::PoolClosed));
            }
            for (conn, _) in idle {
                let _ = conn.close().await;
            }
        }
        self.shared.sqlx.close().await;
    }
}

impl Reuse {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Shared {
    fn reuse(&self) -> &Reuse {
        self.reuse
            .as_ref()
            .expect("only a SQLite pool reuses connections")
    }

    /// Takes an idle connection, or waits for one, after those already waiting. One more
    /// opens meanwhile when none is open, or when this statement has waited as long as an
    /// opening takes.
    async fn wait_for_one(self: &Arc<Shared>) -> Result<PoolConnection<Any>, sqlx::Error> {
        let reuse = self.reuse();
        let handed = {
            let mut state = reuse.lock();
            if state.closed {
                return Err(sqlx::Error::PoolClosed);
            }
            if let Some((conn, _)) = state.idle.pop() {
                return Ok(conn);
            }
            let (sender, handed) = oneshot::channel();
            state.waiting.push_back(sender);
            if state.open == 0 {
                self.open_one_more(&mut state);
            }
            Waiting { handed, home: self }
        };
        let grow_at = tokio::time::Instant::now() + GROW_AFTER;
        let mut handed = std::pin::pin!(handed);
        if let Ok(conn) = tokio::time::timeout_at(grow_at, handed.as_mut()).await {
            return conn;
        }
        self.open_one_more(&mut reuse.lock());
        handed.await
    }

    /// Has one more connection opened, unless one is opening or the most are open.
    fn open_one_more(self: &Arc<Shared>, state: &mut State) {
        if !state.opening && state.open < self.reuse().most && !state.closed {
            state.opening = true;
            state.open += 1;
            tokio::spawn(self.clone().open_one());
        }
    }

    /// Opens a connection for the first statement waiting. Should it fail, that statement
    /// gets the error, and another opening is tried for the next one when none is open to
    /// be given back to it.
    async fn open_one(self: Arc<Shared>) {
        let opened = self.sqlx.acquire().await;
        let reuse = self.reuse();
        let mut state = reuse.lock();
        state.opening = false;
        match opened {
            Ok(conn) => {
                drop(state);
                self.give_back(conn);
            }
            Err(error) => {
                state.open -= 1;
                let mut error = Some(error);
                while let Some(waiter) = state.waiting.pop_front() {
                    match waiter.send(Err(error.take().expect("sent once"))) {
                        Ok(()) => break,
                        Err(Err(unsent)) => error = Some(unsent),
                        Err(Ok(_)) => unreachable!("an error was sent"),
                    }
                }
                if !state.waiting.is_empty() && state.open == 0 {
                    self.open_one_more(&mut state);
                }
            }
        }
    }

    /// Hands `conn` to the first statement waiting, or puts it among the idle ones and has
    /// a task close it once it has been idle too long.
    fn give_back(self: &Arc<Shared>, conn: PoolConnection<Any>) {
        let reuse = self.reuse();
        let mut state = reuse.lock();
        if state.closed {
            state.open -= 1;
            return;
        }
        let mut conn = conn;
        while let Some(waiter) = state.waiting.pop_front() {
            match waiter.send(Ok(conn)) {
                Ok(()) => return,
                // That statement stopped waiting.
                Err(Ok(unsent)) => conn = unsent,
                Err(Err(_)) => unreachable!("a connection was sent"),
            }
        }
        state.idle.push((conn, Instant::now()));
        if let Some(timeout) = reuse.idle_timeout {
            if !state.reaping {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    state.reaping = true;
                    runtime.spawn(self.clone().close_idle(timeout));
                }
            }
        }
    }

    /// Counts out a connection closed rather than given back, so another can open.
    fn forget(self: &Arc<Shared>) {
        let mut state = self.reuse().lock();
        state.open -= 1;
        if !state.waiting.is_empty() {
            self.open_one_more(&mut state);
        }
    }

    /// Closes each connection once it has been idle for `timeout`, until none is idle.
    async fn close_idle(self: Arc<Shared>, timeout: Duration) {
        let reuse = self.reuse();
        loop {
            let (stale, next_due) = {
                let mut state = reuse.lock();
                let now = Instant::now();
                let (stale, fresh) = std::mem::take(&mut state.idle)
                    .into_iter()
                    .partition::<Vec<_>, _>(|(_, since)| now.duration_since(*since) >= timeout);
                state.idle = fresh;
                state.open -= stale.len();
                let next_due = state.idle.iter().map(|(_, since)| *since).min();
                state.reaping = next_due.is_some();
                (stale, next_due)
            };
            for (conn, _) in stale {
                let _ = conn.close().await;
            }
            match next_due {
                Some(since) => tokio::time::sleep_until((since + timeout).into()).await,
                None => return,
            }
        }
    }
}

/// A statement's place among those waiting. Dropped (the statement cancelled) after a
/// connection was handed to it, it gives the connection back.
struct Waiting<'a> {
    handed: oneshot::Receiver<Handed>,
    home: &'a Arc<Shared>,
}

impl std::future::Future for Waiting<'_> {
    type Output = Handed;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Handed> {
        std::pin::Pin::new(&mut self.handed)
            .poll(cx)
            .map(|handed| handed.unwrap_or(Err(sqlx::Error::PoolClosed)))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.handed.close();
        if let Ok(Ok(conn)) = self.handed.try_recv() {
            self.home.give_back(conn);
        }
    }
}

/// A connection of the pool, idle again when dropped.
#[derive(Debug)]
pub struct Conn {
    conn: Option<PoolConnection<Any>>,
    /// Where a SQLite connection goes back.
    home: Option<Arc<Shared>>,
}

impl Conn {
    /// Closes the connection rather than reusing it: it may hold an open transaction (its
    /// user's future was cancelled, or a rollback failed), which closing rolls back.
    pub fn discard(mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
            if let Some(home) = &self.home {
                home.forget();
            }
        }
    }
}

impl Deref for Conn {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.conn.as_ref().expect("held until dropped")
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn.as_mut().expect("held until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let (Some(conn), Some(home)) = (self.conn.take(), &self.home) {
            home.give_back(conn);
        }
    }
}

/// A statement sent to the pool runs on a connection acquired for it alone.
impl<'p> Executor<'p> for &'p Pool {
    type Database = Any;

    fn execute<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<AnyQueryResult, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        Box::pin(async move { self.acquire().await?.execute(query).await })
    }

    fn fetch_all<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Vec<AnyRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        Box::pin(async move { self.acquire().await?.fetch_all(query).await })
    }

    /// The results are gathered before the first is yielded: the connection is the
    /// stream's own, and every caller here reads them all.
    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        stream::once(async move {
            let mut conn = self.acquire().await?;
            let steps: Vec<_> = conn.fetch_many(query).try_collect().await?;
            Ok::<_, sqlx::Error>(stream::iter(steps.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        Box::pin(async move { self.acquire().await?.fetch_optional(query).await })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement<'q>, sqlx::Error>>
    where
        'p: 'e,
    {
        Box::pin(async move { self.acquire().await?.prepare_with(sql, parameters).await })
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Any>, sqlx::Error>>
    where
        'p: 'e,
    {
        Box::pin(async move { self.acquire().await?.describe(sql).await })
    }
}

/// A transaction on a connection of the pool. Dropped before it ends, it closes the
/// connection, which rolls the transaction back.
#[derive(Debug)]
pub struct Transaction {
    conn: Option<Conn>,
}

impl Transaction {
    /// Opens a transaction with `statement` (`BEGIN`, or SQLite's `BEGIN IMMEDIATE`).
    pub async fn begin(mut conn: Conn, statement: &str) -> Result<Transaction, sqlx::Error> {
        conn.execute(statement).await?;
        Ok(Transaction { conn: Some(conn) })
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.end("COMMIT").await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.end("ROLLBACK").await
    }

    /// Ends the transaction with `statement`; the connection is reused once it has.
    async fn end(mut self, statement: &str) -> Result<(), sqlx::Error> {
        let mut conn = self.conn.take().expect("held until the end");
        match conn.execute(statement).await {
            Ok(_) => Ok(()),
            Err(error) => {
                conn.discard();
                Err(error)
            }
        }
    }
}

impl Deref for Transaction {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.conn.as_ref().expect("held until the end")
    }
}

impl DerefMut for Transaction {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn.as_mut().expect("held until the end")
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.discard();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::any::AnyPoolOptions;

    /// A pool on a new SQLite file of `dir`, holding at most two connections.
    fn two_connections(dir: &std::path::Path, idle_timeout: Option<Duration>) -> Pool {
        connections(dir, 2, idle_timeout)
    }

    fn connections(dir: &std::path::Path, most: u32, idle_timeout: Option<Duration>) -> Pool {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}/pool.sqlite?mode=rwc", dir.display());
        let sqlx = AnyPoolOptions::new()
            .max_connections(most)
            .connect_lazy(&url)
            .unwrap();
        Pool::sqlite(sqlx, idle_timeout)
    }

    /// Whether the connection `conn` is the one that created the temporary table `mark`
    /// (a temporary table is its connection's own).
    async fn made(conn: &mut AnyConnection, mark: &str) -> bool {
        let sql = format!("SELECT count(*) FROM temp.sqlite_master WHERE name = '{mark}'");
        sqlx::query_scalar::<_, i64>(&sql)
            .fetch_one(conn)
            .await
            .unwrap()
            == 1
    }

    #[tokio::test]
    async fn a_connection_given_back_is_the_next_one_out_without_a_new_one_opened() {
        let dir = tempfile::tempdir().unwrap();
        let pool = two_connections(dir.path(), None);
        let mut first = pool.acquire().await.unwrap();
        first.execute("CREATE TEMP TABLE mark (x)").await.unwrap();
        drop(first);
        let mut again = pool.acquire().await.unwrap();
        assert!(made(&mut again, "mark").await);
        assert_eq!(pool.shared.sqlx.size(), 1);
        // A statement sent to the pool right after another finds it idle too.
        drop(again);
        for _ in 0..10 {
            pool.execute("SELECT 1").await.unwrap();
        }
        assert_eq!(pool.shared.sqlx.size(), 1);
    }

    #[tokio::test]
    async fn no_more_than_the_most_connections_open_and_a_waiter_gets_the_first_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let pool = two_connections(dir.path(), None);
        let mut first = pool.acquire().await.unwrap();
        first.execute("CREATE TEMP TABLE mark (x)").await.unwrap();
        let _second = pool.acquire().await.unwrap();
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { made(&mut pool.acquire().await.unwrap(), "mark").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a third waits for one of two");
        drop(first);
        assert!(waiting.await.unwrap(), "the first connection given back");
        assert_eq!(pool.shared.sqlx.size(), 2);
    }

    #[tokio::test]
    async fn statements_sent_at_once_share_one_connection_rather_than_each_open_one() {
        let dir = tempfile::tempdir().unwrap();
        let pool = connections(dir.path(), 4, None);
        // Opened first: the first open of a new file (its write-ahead log made, when the
        // process's connections are set up for one) can take longer than `GROW_AFTER`,
        // and statements that wait that long rightly open one more.
        pool.execute("SELECT 1").await.unwrap();
        let statements = (0..8).map(|_| pool.execute("SELECT 1"));
        for done in futures_util::future::join_all(statements).await {
            done.unwrap();
        }
        // The first opened serves them in turn.
        assert_eq!(pool.shared.sqlx.size(), 1);
    }

    #[tokio::test]
    async fn a_connection_given_back_goes_to_the_statement_that_waited_first() {
        let dir = tempfile::tempdir().unwrap();
        let pool = connections(dir.path(), 1, None);
        let held = pool.acquire().await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let waiters: Vec<_> = (1..=2)
            .map(|n| {
                let (pool, order) = (pool.clone(), order.clone());
                tokio::spawn(async move {
                    let _conn = pool.acquire().await.unwrap();
                    order.lock().unwrap().push(n);
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Given back, then asked for at once by a statement that has not waited: it waits
        // behind the two that have.
        drop(held);
        let _conn = pool.acquire().await.unwrap();
        order.lock().unwrap().push(3);
        for waiter in waiters {
            waiter.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_statement_cancelled_while_waiting_leaves_the_connection_to_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let pool = connections(dir.path(), 1, None);
        let held = pool.acquire().await.unwrap();
        let cancelled = tokio::time::timeout(Duration::from_millis(20), pool.acquire()).await;
        assert!(cancelled.is_err());
        drop(held);
        let again = tokio::time::timeout(Duration::from_secs(10), pool.acquire()).await;
        assert!(
            again.is_ok(),
            "the connection is not lost to the cancelled statement"
        );
        assert_eq!(pool.shared.reuse().lock().open, 1);
    }

    #[tokio::test]
    async fn a_statement_kept_waiting_has_one_more_connection_opened() {
        let dir = tempfile::tempdir().unwrap();
        let pool = two_connections(dir.path(), None);
        let _held = pool.acquire().await.unwrap();
        let second = tokio::time::timeout(Duration::from_secs(10), pool.acquire()).await;
        assert!(
            second.is_ok(),
            "the second waits for the first only briefly"
        );
        assert_eq!(pool.shared.sqlx.size(), 2);
    }

    #[tokio::test]
    async fn a_failed_opening_fails_each_waiting_statement_with_its_error() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        // mode=rw: the file must exist, and it does not.
        let url = format!("sqlite://{}/missing.sqlite?mode=rw", dir.path().display());
        let sqlx = AnyPoolOptions::new().connect_lazy(&url).unwrap();
        let pool = Pool::sqlite(sqlx, None);
        let statements = (0..3).map(|_| pool.execute("SELECT 1"));
        for failed in futures_util::future::join_all(statements).await {
            let error = failed.unwrap_err().to_string();
            assert!(error.contains("unable to open database file"), "{error}");
        }
        assert_eq!(pool.shared.reuse().lock().open, 0);
    }

    #[tokio::test]
    async fn an_idle_connection_closes_after_the_idle_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pool = two_connections(dir.path(), Some(Duration::from_millis(20)));
        pool.execute("SELECT 1").await.unwrap();
        assert_eq!(pool.shared.sqlx.size(), 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.shared.sqlx.size() > 0 {
            assert!(
                Instant::now() < deadline,
                "the idle connection never closed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!pool.shared.reuse().lock().reaping);
        // The next statement opens another.
        pool.execute("SELECT 1").await.unwrap();
    }

    #[tokio::test]
    async fn a_transaction_dropped_before_its_end_is_rolled_back_and_one_rolled_back_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let pool = two_connections(dir.path(), None);
        pool.execute("CREATE TABLE t (x)").await.unwrap();
        let mut tx = Transaction::begin(pool.acquire().await.unwrap(), "BEGIN IMMEDIATE")
            .await
            .unwrap();
        tx.execute("CREATE TEMP TABLE mark (x); INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        drop(tx);
        let count = || sqlx::query_scalar::<_, i64>("SELECT count(*) FROM t").fetch_one(&pool);
        assert_eq!(count().await.unwrap(), 0);
        let mut conn = pool.acquire().await.unwrap();
        assert!(!made(&mut conn, "mark").await, "closed, not reused");

        conn.execute("CREATE TEMP TABLE kept (x)").await.unwrap();
        let mut tx = Transaction::begin(conn, "BEGIN IMMEDIATE").await.unwrap();
        tx.execute("INSERT INTO t VALUES (1)").await.unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(count().await.unwrap(), 0);
        assert!(made(&mut pool.acquire().await.unwrap(), "kept").await);

        let mut tx = Transaction::begin(pool.acquire().await.unwrap(), "BEGIN IMMEDIATE")
            .await
            .unwrap();
        tx.execute("INSERT INTO t VALUES (1)").await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_closed_pool_closes_the_connections_given_back_after() {
        let dir = tempfile::tempdir().unwrap();
        let pool = two_connections(dir.path(), None);
        let conn = pool.acquire().await.unwrap();
        pool.execute("SELECT 1").await.unwrap();
        let closing = tokio::spawn({
            let pool = pool.clone();
            async move { pool.close().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !closing.is_finished(),
            "closing waits for the connection in use"
        );
        drop(conn);
        closing.await.unwrap();
        assert_eq!(pool.shared.sqlx.size(), 0);
        assert!(matches!(pool.acquire().await, Err(sqlx::Error::PoolClosed)));
    }
}
