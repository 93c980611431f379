//! Storage: one SQL schema for SQLite (the default, in the base directory) and PostgreSQL
//! (`db_url`), reached through sqlx's `Any` driver so both run the same queries.
//!
//! The schema is Buildbot's data model (see `migrations/`). Queries use `$1`-style
//! placeholders, which both databases accept; times are seconds since the epoch as `f64`,
//! JSON columns are text. Each part of the master keeps its queries in its own submodule
//! here.

mod batch;
mod builds;
mod buildsets;
mod changes;
mod direct;
mod events;
mod logs;
mod outbox;
mod pool;
mod registry;
mod sqlite_setup;

pub use batch::{bind_all, Batch, Bind};
pub use builds::{push_build_properties, PendingRequest, StartedMaster};
pub use buildsets::{
    properties_of, AddedBuildset, BuildsetSpec, SourceStampSpec, BUILDSET_PROPERTIES,
};
pub use changes::{AfterCommit, ChangeSpec, StoredChange, BUILDSET_SOURCESTAMPS};
pub use events::MasterEvent;
pub use logs::push_log_write;
pub use outbox::{NewMessage, OutboxMessage, Refusal};
pub use pool::{Conn, Pool, Transaction};
pub use registry::Recorded;

use std::fmt::Write;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AnyConnection, ConnectOptions, Connection, Executor, Row};
use thiserror::Error;

/// Connections to a SQLite database at most: REST reads under load keep this many busy on
/// two cores (a connection's statements run on its own thread, one at a time).
const SQLITE_CONNECTIONS: u32 = 4;

/// How long a SQLite connection stays open unused. Each is a thread, a page cache and a
/// parsed schema; an idle master holds none, and the next statement opens one (about a
/// millisecond).
pub const SQLITE_IDLE: Duration = Duration::from_secs(1);

/// How long a statement waits for a connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Embedded migrations, applied in order at start; a migration is never edited once landed.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_initial.sql")),
    (2, include_str!("migrations/0002_outbox.sql")),
    (3, include_str!("migrations/0003_outbox_recipients.sql")),
    (4, include_str!("migrations/0004_page_indexes.sql")),
    (5, include_str!("migrations/0005_events.sql")),
];

/// The SQL flavour behind a [`Db`], where the portable schema needs a word of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn schema(self, sql: &str) -> String {
        let (id, blob) = match self {
            Dialect::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"),
            Dialect::Postgres => ("BIGSERIAL PRIMARY KEY", "BYTEA"),
        };
        sql.replace("@ID@", id).replace("@BLOB@", blob)
    }
}

#[derive(Debug, Error)]
pub enum DbError {
    #[error("unsupported db_url '{0}': use sqlite:///FILE or postgresql://USER:PASS@HOST/DB")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("corrupt data in the database: {0}")]
    Corrupt(String),
    #[error("{0} not found")]
    NotFound(String),
}

pub type DbResult<T> = Result<T, DbError>;

/// A pool of connections to the master's database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: Pool,
    pub dialect: Dialect,
    /// Where batches are written on the caller's thread: SQLite files only.
    direct: Option<std::sync::Arc<direct::DirectWriter>>,
    /// Changes waiting to be committed together (`add_changes`).
    change_queue: std::sync::Arc<changes::ChangeQueue>,
    /// `c['eventHorizon']`, read as events are written.
    event_horizon: events::Horizon,
}

impl Db {
    /// Opens the database `db_url` names (relative SQLite paths are under `basedir`) and
    /// applies the migrations it has not seen yet.
    pub async fn open(db_url: &str, basedir: &Path) -> DbResult<Db> {
        Db::open_reading(db_url, basedir).await?.migrate().await
    }

    /// Opens `db_url`'s database when it is a SQLite file that exists, reading but writing
    /// nothing until [`Opened::migrate`]: a start opens the default one while its config
    /// is evaluated, before the config says which database to use. None when it is not
    /// such a file, or failed to open (a start then opens it again, to report why).
    ///
    /// The start's statements up to its first answers are few and run one after another:
    /// they go on the caller's own connection ([`direct`]), opened here on this thread,
    /// rather than each a round trip to sqlx's, and so do the REST reads of those first
    /// answers ([`Db::rest_read`]): sqlx's first connection opens only once a statement
    /// needs it, after the start.
    pub async fn open_existing(db_url: &str, basedir: &Path) -> Option<Opened> {
        let (_, url) = sqlx_url(db_url, basedir).ok()?;
        let file = url.strip_prefix("sqlite://")?.split('?').next()?;
        if !Path::new(file).is_file() {
            return None;
        }
        if let Ok(db) = Db::connect(db_url, basedir) {
            if let Some(direct) = &db.direct {
                direct.open_for_start();
                match direct.read(APPLIED_MIGRATIONS, &[]) {
                    Some(applied) => {
                        let applied: Result<Vec<i64>, _> =
                            applied.iter().map(|row| row.try_get(0)).collect();
                        return Some(Opened {
                            db,
                            conn: None,
                            applied: applied.ok(),
                        });
                    }
                    // No migrations table (or no connection): sqlx's way below.
                    None => direct.close(),
                }
            }
        }
        let mut opened = Db::open_reading(db_url, basedir).await.ok()?;
        // Back in the pool before the config is evaluated: the start's next statement
        // finds it idle rather than opening one more.
        opened.conn = None;
        Some(opened)
    }

    /// Opens a first connection and reads which migrations the database has seen.
    async fn open_reading(db_url: &str, basedir: &Path) -> DbResult<Opened> {
        let db = Db::connect(db_url, basedir)?;
        let mut conn = db.pool.acquire().await?;
        let applied = applied_migrations(&mut conn).await.ok();
        Ok(Opened {
            db,
            conn: Some(conn),
            applied,
        })
    }

    /// A pool on the database `db_url` names, no connection opened yet.
    fn connect(db_url: &str, basedir: &Path) -> DbResult<Db> {
        sqlx::any::install_default_drivers();
        let (dialect, url) = sqlx_url(db_url, basedir)?;
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = match dialect {
            // SQLite takes one writer at a time; a second connection serves a reader while
            // the other writes. Each connection is a thread with its own page cache and
            // its own copy of the schema.
            Dialect::Sqlite => {
                sqlite_setup::register()?;
                let sqlx = AnyPoolOptions::new()
                    .max_connections(SQLITE_CONNECTIONS)
                    // An in-memory database lives as long as a connection to it: keep one.
                    .min_connections(u32::from(url == MEMORY))
                    // A file cannot drop a connection: no ping round trip before each query.
                    .test_before_acquire(false)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options);
                let idle_timeout = (url != MEMORY).then_some(SQLITE_IDLE);
                Pool::sqlite(sqlx, idle_timeout)
            }
            Dialect::Postgres => Pool::postgres(
                AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options),
            ),
        };
        let direct = match url.strip_prefix("sqlite://") {
            Some(file) if url != MEMORY => {
                let file = file.split('?').next().unwrap_or(file);
                Some(std::sync::Arc::new(direct::DirectWriter::new(
                    file.into(),
                    pool.clone(),
                )))
            }
            _ => None,
        };
        Ok(Db {
            pool,
            dialect,
            direct,
            change_queue: Default::default(),
            event_horizon: Default::default(),
        })
    }

    /// Empties SQLite's write-ahead log into the database file, for a master about to stop:
    /// left full, the next start reads all of it back before its first query. What is
    /// written after it (the master's own row, marked stopped) is all the log holds at the
    /// next start, and stays there: see [`Db::close`].
    pub async fn empty_log(&self) {
        if self.dialect == Dialect::Sqlite {
            if let Err(error) = self.pool.execute("PRAGMA wal_checkpoint(TRUNCATE)").await {
                tracing::warn!("cannot empty the database's write-ahead log: {error}");
            }
        }
    }

    /// Closes every connection. On SQLite the write-ahead log is kept with what was written
    /// since [`Db::empty_log`]: the last connection to close would otherwise move it into
    /// the database and delete the file, and the next start's first write would then begin
    /// a new log, which SQLite syncs to disk (and its directory, the file being new) even
    /// with `synchronous=NORMAL`, while the first REST request waits.
    pub async fn close(&self) {
        let keeper = match self.dialect {
            Dialect::Sqlite => match log_keeper(&self.pool).await {
                Ok(keeper) => Some(keeper),
                Err(error) => {
                    tracing::warn!("cannot keep the database's write-ahead log: {error}");
                    None
                }
            },
            Dialect::Postgres => None,
        };
        if let Some(direct) = &self.direct {
            direct.close();
        }
        self.pool.close().await;
        if let Some(keeper) = keeper {
            let _ = keeper.close().await;
        }
    }

    /// The start has answered its first requests: REST reads go to sqlx's threads again,
    /// where a long one holds no runtime thread.
    pub fn start_answered(&self) {
        if let Some(direct) = &self.direct {
            direct.started();
        }
    }

    /// Builds are about to write a batch every few milliseconds: on SQLite they are then
    /// written on the caller's thread ([`direct`]). A start opens it with the database
    /// ([`Db::open_existing`]).
    pub fn expect_builds(&self) {
        if let Some(direct) = &self.direct {
            direct.open();
        }
    }

    /// Begins a transaction that will write. SQLite takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first cannot wait for the lock
    /// when it later writes, and fails at once with "database is locked".
    pub async fn begin_write(&self) -> DbResult<Transaction> {
        let begin = match self.dialect {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        };
        Ok(Transaction::begin(self.pool.acquire().await?, begin).await?)
    }
}

/// A connection to the pool's SQLite database that leaves the write-ahead log as it is
/// when it closes last (`SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE`). sqlx's `Any` connections do
/// not reach SQLite's handle, so this one is its own SQLite connection.
async fn log_keeper(pool: &Pool) -> Result<SqliteConnection, sqlx::Error> {
    let options = SqliteConnectOptions::from_url(&pool.connect_options().database_url)?;
    let mut keeper = options.connect().await?;
    let mut handle = keeper.lock_handle().await?;
    // SAFETY: the handle is the open connection's, locked for this call.
    let code = unsafe { sqlite_setup::keep_log_at_close(handle.as_raw_handle().as_ptr()) };
    drop(handle);
    if code != libsqlite3_sys::SQLITE_OK {
        let _ = keeper.close().await;
        return Err(sqlx::Error::Protocol(format!(
            "SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE refused ({code})"
        )));
    }
    // A connection in WAL mode holds its shared lock on the database from its first read
    // until it closes, and a closing one empties the log only if it can lock the database
    // alone: with this read, no connection of the pool can.
    keeper.execute("SELECT count(*) FROM sqlite_master").await?;
    Ok(keeper)
}

/// A database opened and not yet migrated ([`Db::open_existing`]): the connection that
/// read the migrations it has seen (none read when it has no migrations table yet).
pub struct Opened {
    db: Db,
    conn: Option<Conn>,
    applied: Option<Vec<i64>>,
}

impl Opened {
    /// Applies the migrations the database has not seen; a current one costs nothing more.
    pub async fn migrate(self) -> DbResult<Db> {
        let current = self
            .applied
            .as_ref()
            .is_some_and(|applied| MIGRATIONS.iter().all(|(v, _)| applied.contains(v)));
        if !current {
            let mut conn = match self.conn {
                Some(conn) => conn,
                None => self.db.pool.acquire().await?,
            };
            migrate(&mut conn, self.db.dialect, self.applied).await?;
        }
        Ok(self.db)
    }

    /// Closes the pool unused: the config named another database.
    pub fn abandon(self) {
        drop(self.conn);
        if let Some(direct) = &self.db.direct {
            direct.close();
        }
        tokio::spawn(async move { self.db.pool.close().await });
    }
}

/// Applies the migrations the database has not seen (`applied`, or none read when it has
/// no migrations table yet).
async fn migrate(
    conn: &mut AnyConnection,
    dialect: Dialect,
    applied: Option<Vec<i64>>,
) -> DbResult<()> {
    let applied = match applied {
        Some(applied) => applied,
        // A new database. Any other error is met again by the second read.
        None => {
            conn.execute(
                "CREATE TABLE IF NOT EXISTS moonbot_migrations (version BIGINT PRIMARY KEY)",
            )
            .await?;
            applied_migrations(conn).await?
        }
    };
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        // SQLite takes the write lock up front, as `Db::begin_write` does.
        let mut tx = match dialect {
            Dialect::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => conn.begin().await?,
        };
        for statement in split_statements(&dialect.schema(sql)) {
            tx.execute(statement.as_str()).await?;
        }
        sqlx::query("INSERT INTO moonbot_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// The versions of the migrations a database has seen.
const APPLIED_MIGRATIONS: &str = "SELECT version FROM moonbot_migrations";

async fn applied_migrations(conn: &mut AnyConnection) -> DbResult<Vec<i64>> {
    Ok(sqlx::query_scalar(APPLIED_MIGRATIONS)
        .fetch_all(conn)
        .await?)
}

/// sqlx's URL of an in-memory SQLite database (`sqlite:///:memory:`).
const MEMORY: &str = "sqlite::memory:";

/// Turns a Buildbot-style `db_url` into the URL sqlx understands.
fn sqlx_url(db_url: &str, basedir: &Path) -> DbResult<(Dialect, String)> {
    let (scheme, rest) = db_url
        .split_once("://")
        .ok_or_else(|| DbError::UnsupportedUrl(db_url.into()))?;
    // SQLAlchemy names a driver after a '+': postgresql+psycopg2://...
    match scheme.split('+').next().unwrap_or_default() {
        "sqlite" => {
            // sqlite:///state.sqlite is relative to the base directory, sqlite:////abs absolute.
            let path = rest.strip_prefix('/').unwrap_or(rest);
            let (path, _query) = path.split_once('?').unwrap_or((path, ""));
            let file = if path == ":memory:" {
                return Ok((Dialect::Sqlite, MEMORY.into()));
            } else {
                basedir.join(path)
            };
            Ok((
                Dialect::Sqlite,
                format!("sqlite://{}?mode=rwc", file.display()),
            ))
        }
        "postgresql" | "postgres" => Ok((Dialect::Postgres, format!("postgres://{rest}"))),
        _ => Err(DbError::UnsupportedUrl(db_url.into())),
    }
}

/// Splits a migration into statements: each ends with `;` at the end of a line.
fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let code = line.split("--").next().unwrap_or_default();
        if code.trim().is_empty() {
            continue;
        }
        current.push_str(code);
        current.push('\n');
        if code.trim_end().ends_with(';') {
            statements.push(std::mem::take(&mut current));
        }
    }
    statements
}

/// Rows in one multi-row INSERT of an id and three values a row, far below SQLite's and
/// PostgreSQL's limits on a statement's parameters.
const ROWS_PER_INSERT: usize = 200;

/// The VALUES of a multi-row INSERT: `rows` rows whose first `shared` parameters are the
/// same in every row (`$1`, a parent's id) and whose `own` others are each row's:
/// `values_placeholders(2, 1, 2)` is `($1, $2, $3), ($1, $4, $5)`.
fn values_placeholders(rows: usize, shared: usize, own: usize) -> String {
    let mut sql = String::new();
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        let first_own = shared + row * own + 1;
        let numbers = (1..=shared).chain(first_own..first_own + own);
        for (column, number) in numbers.enumerate() {
            let separator = if column == 0 { "" } else { ", " };
            let _ = write!(sql, "{separator}${number}");
        }
        sql.push(')');
    }
    sql
}

/// `(name, JSON value, source)` rows of a property set, as its tables store them.
fn property_rows(properties: &crate::model::Properties) -> Vec<(&str, String, &str)> {
    properties
        .values()
        .map(|(name, value)| {
            let source = properties.source(name).unwrap_or_default();
            (name, value.to_string(), source)
        })
        .collect()
}

/// Properties from `(name, JSON value, source)` rows.
fn properties_from_rows(rows: Vec<(String, String, String)>) -> crate::model::Properties {
    let mut properties = crate::model::Properties::new();
    for (name, value, source) in rows {
        let value = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
        properties.set(name, value, &source);
    }
    properties
}

/// Seconds since the epoch, as the database stores times.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_placeholders_repeat_the_shared_parameters_in_every_row() {
        assert_eq!(values_placeholders(2, 0, 2), "($1, $2), ($3, $4)");
        assert_eq!(values_placeholders(2, 1, 2), "($1, $2, $3), ($1, $4, $5)");
    }

    #[test]
    fn buildbot_urls_become_sqlx_urls() {
        let base = Path::new("/srv/master");
        assert_eq!(
            sqlx_url("sqlite:///state.sqlite", base).unwrap(),
            (
                Dialect::Sqlite,
                "sqlite:///srv/master/state.sqlite?mode=rwc".into()
            )
        );
        assert_eq!(
            sqlx_url("sqlite:////var/db.sqlite", base).unwrap().1,
            "sqlite:///var/db.sqlite?mode=rwc"
        );
        assert_eq!(
            sqlx_url("postgresql+psycopg2://bb:pw@localhost/bb", base).unwrap(),
            (Dialect::Postgres, "postgres://bb:pw@localhost/bb".into())
        );
        assert!(sqlx_url("mysql://x", base).is_err());
    }

    #[tokio::test]
    async fn an_existing_database_is_opened_on_the_callers_own_connection() {
        let dir = tempfile::tempdir().unwrap();
        let url = "sqlite:///state.sqlite";
        Db::open(url, dir.path()).await.unwrap().close().await;
        let opened = Db::open_existing(url, dir.path())
            .await
            .expect("the file exists");
        let mut applied = opened.applied.clone().expect("read");
        applied.sort_unstable();
        let every: Vec<i64> = MIGRATIONS.iter().map(|(version, _)| *version).collect();
        assert_eq!(applied, every);
        let db = opened.migrate().await.unwrap();
        // The start's first batch is written on it, with no round trip to sqlx's thread.
        let register = (
            "INSERT INTO masters (name, active, last_active) VALUES ($1, 1, 0)".to_string(),
            vec!["master".into()],
        );
        let direct = db.direct.clone().unwrap();
        assert!(direct.write(&[register]).is_some(), "written on it");
        // So are the REST reads of the start's first answers, and no more once it answered.
        assert!(direct.starting());
        db.start_answered();
        assert!(!direct.starting());
        let rows = db.rest_read("SELECT name FROM masters", &[]).await.unwrap();
        assert_eq!(rows[0].get::<String, _>(0), "master");
    }

    #[tokio::test]
    async fn an_existing_file_without_the_migrations_is_migrated_through_sqlx() {
        let dir = tempfile::tempdir().unwrap();
        let url = "sqlite:///state.sqlite";
        // An empty file is an empty SQLite database.
        std::fs::write(dir.path().join("state.sqlite"), b"").unwrap();
        let opened = Db::open_existing(url, dir.path())
            .await
            .expect("the file exists");
        assert_eq!(opened.applied, None);
        let db = opened.migrate().await.unwrap();
        let masters: i64 = sqlx::query_scalar("SELECT count(*) FROM masters")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(masters, 0);
    }

    #[tokio::test]
    async fn every_sqlite_connection_writes_ahead_syncs_normally_and_waits_for_locks_briefly() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap();
        // Both connections at once: the second is opened after the journal mode was set.
        let mut first = db.pool.acquire().await.unwrap();
        let mut second = db.pool.acquire().await.unwrap();
        for conn in [&mut first, &mut second] {
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            // 0: SQLite's own handler, which a timeout sets, was replaced.
            let busy_timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!((mode.as_str(), synchronous, busy_timeout), ("wal", 1, 0));
        }
        // A write waits for the one that holds the lock, rather than failing at once.
        first.execute("BEGIN IMMEDIATE").await.unwrap();
        let waiting = tokio::spawn(async move {
            second
                .execute("BEGIN IMMEDIATE; INSERT INTO masters (name, last_active) VALUES ('second', 0); COMMIT")
                .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the second write waits");
        first
            .execute("INSERT INTO masters (name, last_active) VALUES ('first', 0); COMMIT")
            .await
            .unwrap();
        waiting.await.unwrap().unwrap();
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM masters ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
        assert_eq!(names, ["first", "second"]);
    }

    #[tokio::test]
    async fn migrations_apply_once() {
        let dir = tempfile::tempdir().unwrap();
        Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap();
        let db = Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap();
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM moonbot_migrations")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(count, MIGRATIONS.len() as i64);
    }
}
