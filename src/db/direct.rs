//! Batches written on the caller's own thread.
//!
//! sqlx runs each SQLite connection's statements on a thread of its own, so a batch is a
//! hop to that thread and back: two thread switches, which cost the master more than the
//! batch's statements (`benches/README.md`). While builds run, and through a start until
//! its first answers, a connection of our own (rusqlite) writes each batch where it is
//! asked for, holding SQLite's write lock for tens of microseconds, and hands back the rows
//! as sqlx's would be.
//!
//! It keeps a runtime thread no longer than that, beyond its open (about a millisecond,
//! once builds start after an idle second, or beside a start's config evaluation). A batch
//! that finds the connection busy on another thread waits for it: that batch's tens of
//! microseconds cost less than the sqlx way, whose hops, and then both connections' page
//! caches read again, cost the master about a sixth of its CPU a build when one batch in
//! five went that way (`benches/README.md`). When another connection holds the write lock
//! past a short spin, or when a statement fails (rolled back here), the batch goes the
//! sqlx way, which waits as long as it must and answers sqlx's own error. Its log
//! checkpoints run on sqlx's thread too, and it closes once idle for [`SQLITE_IDLE`], as
//! sqlx's connections do.
//!
//! A checkpoint holds the write lock while it copies the log (SQLite's `RESTART`), so that
//! the next commit starts the log over; batches wait for its end meanwhile (no thread
//! waits) and are then written here. One that let batches commit alongside (`PASSIVE`)
//! never caught up with them while builds ran: the log was asked for a checkpoint at nearly
//! every build and still grew without end.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use sqlx::any::AnyRow;
use sqlx_core::any::{AnyColumn, AnyTypeInfo, AnyTypeInfoKind, AnyValue, AnyValueKind};
use sqlx_core::ext::ustr::UStr;

use super::{Bind, Pool, SQLITE_IDLE};

/// Log pages after which a commit asks for a checkpoint: SQLite's own default, about
/// twenty builds' writes in the jobs bench.
const CHECKPOINT_PAGES: i32 = 1000;

/// Statements kept prepared: every statement the engine's batches use, with room.
const PREPARED: usize = 64;

/// How many short sleeps the write lock is waited for here before the batch goes the
/// sqlx way (each about 60 µs, with the kernel's timer slack).
const SPINS: i32 = 3;

/// The writer of a SQLite file database, open while builds write.
pub(super) struct DirectWriter {
    path: PathBuf,
    /// Where checkpoints run.
    pool: Pool,
    connection: Mutex<Option<Writer>>,
    /// Written since the idle check last looked.
    used: AtomicBool,
    /// A checkpoint is asked for or running: batches wait for its end.
    checkpoint: Arc<Checkpoint>,
    /// Opened by a start that has not answered its first requests yet: REST reads come
    /// here too ([`super::Db::rest_read`]).
    starting: AtomicBool,
    /// The connection is being opened, its lock held meanwhile.
    opening: AtomicBool,
}

impl std::fmt::Debug for DirectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The log's checkpoint, run on sqlx's thread: whether one is asked for or running, and
/// the batches waiting for its end.
#[derive(Default)]
struct Checkpoint {
    running: AtomicBool,
    ended: tokio::sync::Notify,
}

/// A checkpoint under way: ended when dropped, also by a task that panicked or was dropped
/// at a shutdown (before it ran, too), so that no batch waits for it for good.
struct Running(Arc<Checkpoint>);

impl Running {
    /// Marks a checkpoint running, unless one already is.
    fn begin(checkpoint: &Arc<Checkpoint>) -> Option<Running> {
        let already = checkpoint.running.swap(true, Ordering::AcqRel);
        (!already).then(|| Running(checkpoint.clone()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
        self.0.ended.notify_waiters();
    }
}

/// An open connection, with the column names of each statement that returns rows.
struct Writer {
    connection: Connection,
    columns: HashMap<String, Columns>,
    /// The pages in the log after the last commit, as SQLite's log hook reports them;
    /// boxed, as the hook keeps its address.
    log_pages: Box<AtomicI32>,
}

/// The columns of a statement's rows, as [`AnyRow`] holds them.
#[derive(Clone)]
struct Columns {
    names: Arc<sqlx_core::HashMap<UStr, usize>>,
    columns: Vec<AnyColumn>,
}

/// Why a batch was not written here; it is then written the sqlx way.
enum NotHere {
    /// Another connection holds the write lock.
    Busy,
    /// A statement failed (rolled back), or a value cannot be handed over.
    Failed,
}

impl From<rusqlite::Error> for NotHere {
    fn from(_: rusqlite::Error) -> NotHere {
        NotHere::Failed
    }
}

impl DirectWriter {
    pub fn new(path: PathBuf, pool: Pool) -> DirectWriter {
        DirectWriter {
            path,
            pool,
            connection: Mutex::new(None),
            used: AtomicBool::new(false),
            checkpoint: Arc::default(),
            starting: AtomicBool::new(false),
            opening: AtomicBool::new(false),
        }
    }

    /// Opens the connection for a start, which reads here until [`DirectWriter::started`].
    pub fn open_for_start(self: &Arc<Self>) {
        self.starting.store(true, Ordering::Relaxed);
        self.open();
    }

    /// The start has answered its first requests.
    pub fn started(&self) {
        self.starting.store(false, Ordering::Relaxed);
    }

    /// Whether a start opened it and has not answered its first requests yet.
    pub fn starting(&self) -> bool {
        self.starting.load(Ordering::Relaxed)
    }

    /// Opens the connection if it is closed (about a millisecond, on this thread), and
    /// watches it, to close it once idle.
    pub fn open(self: &Arc<Self>) {
        let Ok(mut connection) = self.connection.try_lock() else {
            return;
        };
        if connection.is_some() {
            return;
        }
        self.opening.store(true, Ordering::Relaxed);
        let opened = open(&self.path);
        self.opening.store(false, Ordering::Relaxed);
        match opened {
            Ok(writer) => {
                *connection = Some(writer);
                self.used.store(true, Ordering::Relaxed);
                tokio::spawn(self.clone().close_when_idle());
            }
            Err(error) => tracing::debug!("batches go through sqlx: {error}"),
        }
    }

    /// Returns once no checkpoint runs: it holds the write lock, and a batch written the
    /// sqlx way meanwhile would only wait for it there, then leave both connections'
    /// caches to be read again.
    pub async fn checkpoint_ended(&self) {
        while self.checkpoint.running.load(Ordering::Acquire) {
            let ended = self.checkpoint.ended.notified();
            tokio::pin!(ended);
            // Registered before the second look, so that an end between the two is seen.
            ended.as_mut().enable();
            if !self.checkpoint.running.load(Ordering::Acquire) {
                return;
            }
            ended.await;
        }
    }

    /// The connection, for a batch or a read on this thread: waited for while another
    /// batch or read holds it (tens of microseconds), as writes would wait for SQLite's
    /// write lock the sqlx way too; not while it opens (about a millisecond).
    fn held(&self) -> Option<MutexGuard<'_, Option<Writer>>> {
        match self.connection.try_lock() {
            Ok(connection) => Some(connection),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) if self.opening.load(Ordering::Relaxed) => None,
            Err(TryLockError::WouldBlock) => {
                Some(self.connection.lock().unwrap_or_else(|e| e.into_inner()))
            }
        }
    }

    /// Closes the connection (a master's stop).
    pub fn close(&self) {
        let mut connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        *connection = None;
    }

    async fn close_when_idle(self: Arc<Self>) {
        loop {
            tokio::time::sleep(SQLITE_IDLE).await;
            if self.used.swap(false, Ordering::Relaxed) {
                continue;
            }
            let mut connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
            // Unless it was used while the lock was awaited.
            if !self.used.load(Ordering::Relaxed) {
                *connection = None;
                return;
            }
        }
    }

    /// Runs the read `sql` on this thread, outside any transaction (a reader never waits
    /// for the write lock), and answers its rows; `None` when it is to go the sqlx way.
    pub fn read(&self, sql: &str, params: &[Bind]) -> Option<Vec<AnyRow>> {
        let mut connection = self.held()?;
        let writer = connection.as_mut()?;
        self.used.store(true, Ordering::Relaxed);
        writer.run(sql, params).ok()
    }

    /// Writes `statements` in one transaction on this thread, and answers each one's
    /// rows; `None` when they are to go the sqlx way (see the module's documentation).
    pub fn write(&self, statements: &[(String, Vec<Bind>)]) -> Option<Vec<Vec<AnyRow>>> {
        if self.checkpoint.running.load(Ordering::Acquire) {
            // The checkpoint holds the write lock: no use spinning for it here.
            return None;
        }
        let mut connection = self.held()?;
        let writer = connection.as_mut()?;
        self.used.store(true, Ordering::Relaxed);
        let rows = match writer.write(statements) {
            Ok(rows) => rows,
            Err(NotHere::Busy) => return None,
            Err(NotHere::Failed) => {
                if !writer.connection.is_autocommit() {
                    // A connection that cannot roll back is not used again.
                    if writer.connection.execute_batch("ROLLBACK").is_err() {
                        *connection = None;
                    }
                }
                return None;
            }
        };
        let running = (writer.log_pages.load(Ordering::Relaxed) >= CHECKPOINT_PAGES)
            .then(|| Running::begin(&self.checkpoint))
            .flatten();
        // Begun before the task, so that a task dropped before it ran ends it too.
        if let Some(running) = running {
            let pool = self.pool.clone();
            tokio::spawn(async move {
                let _running = running;
                let restart = sqlx::query("PRAGMA wal_checkpoint(RESTART)");
                if let Err(error) = restart.execute(&pool).await {
                    tracing::warn!("cannot checkpoint the database's write-ahead log: {error}");
                }
            });
        }
        Some(rows)
    }
}

impl Writer {
    fn write(&mut self, statements: &[(String, Vec<Bind>)]) -> Result<Vec<Vec<AnyRow>>, NotHere> {
        match self
            .connection
            .prepare_cached("BEGIN IMMEDIATE")?
            .raw_execute()
        {
            Ok(_) => {}
            Err(error) if error.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => {
                return Err(NotHere::Busy)
            }
            Err(error) => return Err(error.into()),
        }
        let mut answers = Vec::with_capacity(statements.len());
        for (sql, params) in statements {
            answers.push(self.run(sql, params)?);
        }
        self.connection.prepare_cached("COMMIT")?.raw_execute()?;
        Ok(answers)
    }

    /// Runs one statement and reads the rows it returns.
    fn run(&mut self, sql: &str, params: &[Bind]) -> Result<Vec<AnyRow>, NotHere> {
        let mut statement = self.connection.prepare_cached(sql)?;
        for index in 1..=statement.parameter_count() {
            // The engine's statements number their parameters `$1`, `$2`, ...
            let number = statement
                .parameter_name(index)
                .and_then(|name| name.strip_prefix('$')?.parse::<usize>().ok())
                .ok_or(NotHere::Failed)?;
            let value = params.get(number - 1).ok_or(NotHere::Failed)?;
            match value {
                Bind::Int(value) => statement.raw_bind_parameter(index, value)?,
                Bind::Real(value) => statement.raw_bind_parameter(index, value)?,
                Bind::Text(value) => statement.raw_bind_parameter(index, value)?,
                Bind::Blob(value) => statement.raw_bind_parameter(index, value)?,
                Bind::OptInt(value) => statement.raw_bind_parameter(index, value)?,
                Bind::OptText(value) => statement.raw_bind_parameter(index, value)?,
            }
        }
        let count = statement.column_count();
        if count == 0 {
            statement.raw_execute()?;
            return Ok(Vec::new());
        }
        let columns = match self.columns.get(sql) {
            Some(columns) => columns.clone(),
            None => {
                let names = statement.column_names();
                let columns = Columns {
                    names: Arc::new(
                        names
                            .iter()
                            .enumerate()
                            .map(|(index, name)| (UStr::new(name), index))
                            .collect(),
                    ),
                    columns: names
                        .iter()
                        .enumerate()
                        .map(|(ordinal, name)| AnyColumn {
                            ordinal,
                            name: UStr::new(name),
                            type_info: AnyTypeInfo {
                                kind: AnyTypeInfoKind::Null,
                            },
                        })
                        .collect(),
                };
                if self.columns.len() >= PREPARED {
                    self.columns.clear();
                }
                self.columns.insert(sql.to_string(), columns.clone());
                columns
            }
        };
        let mut rows = statement.raw_query();
        let mut answered = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(count);
            for index in 0..count {
                values.push(AnyValue {
                    kind: any_value(row.get_ref(index)?)?,
                });
            }
            answered.push(AnyRow {
                column_names: columns.names.clone(),
                columns: columns.columns.clone(),
                values,
            });
        }
        Ok(answered)
    }
}

/// A SQLite value as sqlx's SQLite driver hands it to `Any`: by the value's own type.
fn any_value(value: ValueRef<'_>) -> Result<AnyValueKind<'static>, NotHere> {
    Ok(match value {
        ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
        ValueRef::Integer(value) => AnyValueKind::BigInt(value),
        ValueRef::Real(value) => AnyValueKind::Double(value),
        ValueRef::Text(text) => AnyValueKind::Text(Cow::Owned(
            std::str::from_utf8(text)
                .map_err(|_| NotHere::Failed)?
                .to_string(),
        )),
        ValueRef::Blob(blob) => AnyValueKind::Blob(Cow::Owned(blob.to_vec())),
    })
}

/// Opens the database with the set-up every connection gets ([`super::sqlite_setup`]),
/// then a short busy spin of its own, the log hook in place of automatic checkpoints, and
/// no checkpoint at its close: writing the log into the database is left to sqlx's
/// connections, off the runtime's threads.
fn open(path: &std::path::Path) -> rusqlite::Result<Writer> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.set_prepared_statement_cache_capacity(PREPARED);
    super::sqlite_setup::keep_busy_handler(&connection);
    connection.busy_handler(Some(spin))?;
    // As sqlx's connections have it.
    connection.pragma_update(None, "foreign_keys", true)?;
    let log_pages = Box::new(AtomicI32::new(0));
    // SAFETY: the handle is this open connection's, used by this thread alone. The hook's
    // data is the boxed counter, which lives as long as the connection (dropped after it,
    // as a field declared later).
    unsafe {
        let handle = connection.handle();
        libsqlite3_sys::sqlite3_wal_hook(
            handle,
            Some(count_log_pages),
            std::ptr::from_ref::<AtomicI32>(&log_pages)
                .cast_mut()
                .cast(),
        );
        // Closing last, it would write the log into the database on a runtime thread; a
        // refusal (an older SQLite) leaves that as it was.
        super::sqlite_setup::keep_log_at_close(handle);
    }
    Ok(Writer {
        connection,
        columns: HashMap::new(),
        log_pages,
    })
}

/// The busy handler: a few short sleeps, then the batch goes the sqlx way.
fn spin(tries: i32) -> bool {
    if tries >= SPINS {
        return false;
    }
    std::thread::sleep(Duration::from_micros(10));
    true
}

/// SQLite's log hook, called after each commit: records how many pages the log holds.
unsafe extern "C" fn count_log_pages(
    data: *mut c_void,
    _db: *mut libsqlite3_sys::sqlite3,
    _name: *const c_char,
    pages: c_int,
) -> c_int {
    // SAFETY: `data` is the counter given with the hook, alive while the connection is.
    unsafe { (*data.cast::<AtomicI32>()).store(pages, Ordering::Relaxed) };
    libsqlite3_sys::SQLITE_OK
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use crate::db::{Batch, Db};

    const INSERT: &str =
        "INSERT INTO masters (name, active, last_active) VALUES ($1, 1, $2) RETURNING id, name";

    async fn opened() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap();
        db.expect_builds();
        (dir, db)
    }

    fn statements(names: &[&str]) -> Vec<(String, Vec<crate::db::Bind>)> {
        names
            .iter()
            .map(|name| (INSERT.to_string(), vec![(*name).into(), 1.5.into()]))
            .collect()
    }

    async fn names(db: &Db) -> Vec<String> {
        sqlx::query_scalar("SELECT name FROM masters ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_batch_is_written_here_and_its_rows_read_as_sqlxs() {
        let (_dir, db) = opened().await;
        let direct = db.direct.clone().unwrap();
        let rows = direct
            .write(&statements(&["one", "two"]))
            .expect("written here");
        let read: Vec<(i64, String)> = rows
            .iter()
            .map(|rows| (rows[0].get("id"), rows[0].get(1)))
            .collect();
        assert_eq!(read, [(1, "one".to_string()), (2, "two".to_string())]);
        // The same batch the sqlx way reads alike.
        let mut batch = Batch::new();
        batch.push(
            "SELECT id, name, last_active, NULL AS none FROM masters WHERE id = $1",
            vec![2.into()],
        );
        let here = direct.write(&batch.statements).unwrap();
        let there = batch.run_as_one_query(&db).await.unwrap();
        for row in [&here[0][0], &there[0][0]] {
            assert_eq!(row.get::<i64, _>("id"), 2);
            assert_eq!(row.get::<String, _>("name"), "two");
            assert_eq!(row.get::<f64, _>("last_active"), 1.5);
            assert_eq!(row.get::<Option<i64>, _>("none"), None);
        }
    }

    #[tokio::test]
    async fn a_failing_batch_is_rolled_back_and_left_to_sqlx() {
        let (_dir, db) = opened().await;
        let direct = db.direct.clone().unwrap();
        assert!(
            direct.write(&statements(&["one", "one"])).is_none(),
            "names are unique"
        );
        assert!(names(&db).await.is_empty());
        direct
            .write(&statements(&["two"]))
            .expect("the connection writes on");
        assert_eq!(names(&db).await, ["two"]);
    }

    #[tokio::test]
    async fn a_batch_finding_the_write_lock_held_is_left_to_sqlx() {
        let (_dir, db) = opened().await;
        let direct = db.direct.clone().unwrap();
        let held = db.begin_write().await.unwrap();
        assert!(direct.write(&statements(&["one"])).is_none());
        held.commit().await.unwrap();
        let mut batch = Batch::new();
        batch.push(INSERT, vec!["one".into(), 1.5.into()]);
        batch.run(&db).await.unwrap();
        assert_eq!(names(&db).await, ["one"]);
    }

    #[tokio::test]
    async fn a_batch_finding_the_connection_busy_on_another_thread_waits_for_it() {
        let (_dir, db) = opened().await;
        let direct = db.direct.clone().unwrap();
        let (taken, take) = std::sync::mpsc::channel();
        let holder = {
            let direct = direct.clone();
            std::thread::spawn(move || {
                let _busy = direct.connection.lock().unwrap();
                taken.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(50));
            })
        };
        take.recv().unwrap();
        assert!(
            direct.write(&statements(&["one"])).is_some(),
            "written here"
        );
        holder.join().unwrap();
        assert_eq!(names(&db).await, ["one"]);
    }

    #[tokio::test]
    async fn a_batch_during_a_checkpoint_waits_for_its_end_then_is_written_here() {
        let (_dir, db) = opened().await;
        let direct = db.direct.clone().unwrap();
        direct.write(&statements(&["one"])).unwrap();
        let pages = log_pages(&direct);
        let checkpoint = super::Running::begin(&direct.checkpoint).unwrap();
        let written = tokio::spawn({
            let db = db.clone();
            async move {
                let mut batch = Batch::new();
                batch.push(INSERT, vec!["two".into(), 1.5.into()]);
                batch.run(&db).await.unwrap();
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!written.is_finished());
        assert_eq!(names(&db).await, ["one"]);
        drop(checkpoint);
        written.await.unwrap();
        assert_eq!(names(&db).await, ["one", "two"]);
        assert!(log_pages(&direct) > pages, "committed by this connection");
    }

    #[tokio::test]
    async fn its_log_is_checkpointed_by_sqlx_as_it_grows() {
        let (dir, db) = opened().await;
        let direct = db.direct.clone().unwrap();
        sqlx::query("CREATE TABLE scratch (data BLOB)")
            .execute(&db.pool)
            .await
            .unwrap();
        // 6,000 pages of 4 KiB: six times the pages after which a checkpoint is asked for,
        // written while the checkpoints run, as builds write.
        let blob = vec![7u8; 40 * 1024];
        let (mut here, mut restarts, mut last_pages) = (0, 0, 0);
        for _ in 0..600 {
            let mut batch = Batch::new();
            batch.push(
                "INSERT INTO scratch (data) VALUES ($1)",
                vec![blob.clone().into()],
            );
            if direct.write(&batch.statements).is_some() {
                here += 1;
                let pages = log_pages(&direct);
                if pages < last_pages {
                    restarts += 1;
                }
                last_pages = pages;
            } else {
                batch.run(&db).await.unwrap();
            }
            tokio::task::yield_now().await;
        }
        assert!(here > 300, "{here} of 600 batches written here");
        assert!(restarts >= 2, "the log started over {restarts} times");
        let log = std::fs::metadata(dir.path().join("state.sqlite-wal")).unwrap();
        assert!(log.len() < 6 << 20, "the log grew to {} bytes", log.len());
    }

    /// The pages in the log after the direct connection's last commit.
    fn log_pages(direct: &super::DirectWriter) -> i32 {
        let connection = direct.connection.lock().unwrap();
        let writer = connection.as_ref().expect("open");
        writer.log_pages.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[tokio::test]
    async fn it_is_closed_once_idle() {
        let (_dir, db) = opened().await;
        let direct = db.direct.clone().unwrap();
        assert!(direct.write(&statements(&["one"])).is_some());
        tokio::time::sleep(crate::db::SQLITE_IDLE * 5 / 2).await;
        assert!(direct.write(&statements(&["two"])).is_none(), "closed");
        db.expect_builds();
        assert!(
            direct.write(&statements(&["three"])).is_some(),
            "open again"
        );
    }
}
