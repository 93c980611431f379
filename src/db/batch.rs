//! Statements written together in one transaction. On SQLite each statement sent through
//! sqlx is a round trip to the connection's thread (a channel send, a thread wake-up and
//! another back), which costs more than the statement: a batch sends `BEGIN IMMEDIATE`,
//! its statements and `COMMIT` as one multi-statement query, one round trip in all. On
//! PostgreSQL, which prepares one statement at a time, they run one after the other in a
//! transaction. While builds run, a SQLite batch has no round trip at all: it is written
//! on the caller's thread ([`super::direct`]), and goes as one query only when that cannot.

use futures_util::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::{Acquire, Either, Executor};

use super::{Db, DbResult, Dialect};

/// A value bound to a SQL placeholder (a [`Batch`]'s statements, the REST listings' filters).
/// There is no nullable float: sqlx's `Any`
/// driver declares a NULL `f64` as float4 to PostgreSQL, which then refuses float8.
#[derive(Clone, Debug, PartialEq)]
pub enum Bind {
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    /// A NULL is bound with the type of its column (PostgreSQL checks it).
    OptInt(Option<i64>),
    OptText(Option<String>),
}

impl From<Option<i64>> for Bind {
    fn from(value: Option<i64>) -> Bind {
        Bind::OptInt(value)
    }
}

impl From<Option<String>> for Bind {
    fn from(value: Option<String>) -> Bind {
        Bind::OptText(value)
    }
}

impl From<i64> for Bind {
    fn from(value: i64) -> Bind {
        Bind::Int(value)
    }
}

impl From<f64> for Bind {
    fn from(value: f64) -> Bind {
        Bind::Real(value)
    }
}

impl From<&str> for Bind {
    fn from(value: &str) -> Bind {
        Bind::Text(value.to_string())
    }
}

impl From<String> for Bind {
    fn from(value: String) -> Bind {
        Bind::Text(value)
    }
}

impl From<Vec<u8>> for Bind {
    fn from(value: Vec<u8>) -> Bind {
        Bind::Blob(value)
    }
}

/// Statements that commit together or not at all, each with its own `$1 ..` parameters.
#[derive(Debug, Default)]
pub struct Batch {
    pub(super) statements: Vec<(String, Vec<Bind>)>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds a statement; `sql` numbers its parameters from `$1`, as if it ran alone.
    pub fn push(&mut self, sql: impl Into<String>, params: Vec<Bind>) -> &mut Batch {
        self.statements.push((sql.into(), params));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// How many statements it holds: the index the next one's rows will have.
    pub fn len(&self) -> usize {
        self.statements.len()
    }

    /// Runs every statement in one transaction and answers the rows each returned, one
    /// list a statement (empty for a statement without `RETURNING`).
    pub async fn run(self, db: &Db) -> DbResult<Vec<Vec<AnyRow>>> {
        match db.dialect {
            Dialect::Sqlite => {
                if let Some(direct) = &db.direct {
                    direct.checkpoint_ended().await;
                }
                match db.direct.as_ref().and_then(|d| d.write(&self.statements)) {
                    Some(rows) => Ok(rows),
                    None => self.run_as_one_query(db).await,
                }
            }
            Dialect::Postgres => self.run_one_by_one(db).await,
        }
    }

    pub(super) async fn run_as_one_query(self, db: &Db) -> DbResult<Vec<Vec<AnyRow>>> {
        let count = self.statements.len();
        // Room for the statements and their renumbered parameters.
        let length: usize = self.statements.iter().map(|(sql, _)| sql.len() + 8).sum();
        let mut sql = String::with_capacity(32 + length);
        sql.push_str("BEGIN IMMEDIATE;\n");
        let mut params = Vec::new();
        for (statement, own) in self.statements {
            push_renumbered(&mut sql, &statement, params.len());
            sql.push_str(";\n");
            params.extend(own);
        }
        sql.push_str("COMMIT");
        let mut connection = OpenTransaction(Some(db.pool.acquire().await?));
        let conn = connection.0.as_mut().expect("held until the end");
        let ran = async {
            // Several statements in one query: sqlx 0.8 deprecates it, but its SQLite
            // driver runs them in order, each ending with its result (`Left`).
            #[allow(deprecated)]
            let mut steps = bind_all(sqlx::query(&sql), &params).fetch_many(&mut **conn);
            let mut rows: Vec<Vec<AnyRow>> = vec![Vec::new()];
            while let Some(step) = steps.try_next().await? {
                match step {
                    Either::Left(_) => rows.push(Vec::new()),
                    Either::Right(row) => rows.last_mut().expect("never empty").push(row),
                }
            }
            // The first list is BEGIN's, the last COMMIT's end.
            Ok::<_, sqlx::Error>(rows.into_iter().skip(1).take(count).collect())
        }
        .await;
        match ran {
            Ok(rows) => {
                connection.0 = None;
                Ok(rows)
            }
            Err(error) => {
                // The statement that failed left the transaction open on this connection.
                if conn.execute("ROLLBACK").await.is_ok() {
                    connection.0 = None;
                }
                Err(error.into())
            }
        }
    }

    async fn run_one_by_one(self, db: &Db) -> DbResult<Vec<Vec<AnyRow>>> {
        if let [(sql, params)] = &self.statements[..] {
            // One statement is a transaction of its own.
            return Ok(vec![
                bind_all(sqlx::query(sql), params)
                    .fetch_all(&db.pool)
                    .await?,
            ]);
        }
        let mut connection = db.pool.acquire().await?;
        let mut tx = connection.begin().await?;
        let mut rows = Vec::new();
        for (sql, params) in &self.statements {
            rows.push(
                bind_all(sqlx::query(sql), params)
                    .fetch_all(&mut *tx)
                    .await?,
            );
        }
        tx.commit().await?;
        Ok(rows)
    }
}

impl Db {
    /// The rows of the read `sql` with `params` bound to its `$1 ..`: while builds run,
    /// on SQLite, read on the caller's thread ([`Db::expect_builds`]).
    pub async fn read(&self, sql: &str, params: &[Bind]) -> DbResult<Vec<AnyRow>> {
        self.read_on(true, sql, params).await
    }

    /// The rows of a REST read: on a start's own connection until it has answered its
    /// first requests ([`Db::open_existing`]), on sqlx's threads otherwise.
    pub async fn rest_read(&self, sql: &str, params: &[Bind]) -> DbResult<Vec<AnyRow>> {
        let starting = self.direct.as_ref().is_some_and(|d| d.starting());
        self.read_on(starting, sql, params).await
    }

    /// A read on the caller's thread when `here` and that connection is open and free,
    /// through sqlx otherwise.
    async fn read_on(&self, here: bool, sql: &str, params: &[Bind]) -> DbResult<Vec<AnyRow>> {
        let direct = self.direct.as_ref().filter(|_| here);
        if let Some(rows) = direct.and_then(|d| d.read(sql, params)) {
            return Ok(rows);
        }
        Ok(bind_all(sqlx::query(sql), params)
            .fetch_all(&self.pool)
            .await?)
    }

    /// The id of the row a batch inserted last into `table`, as SQL for a later statement
    /// of the same batch. On SQLite the batch holds the write lock, so the largest id is
    /// its own; on PostgreSQL the sequence's `currval` is the session's own.
    pub(crate) fn inserted_id(&self, table: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("(SELECT MAX(id) FROM {table})"),
            Dialect::Postgres => format!("currval(pg_get_serial_sequence('{table}', 'id'))"),
        }
    }
}

/// A pooled connection that may hold an open transaction: dropped before the batch ended
/// (its future cancelled, a failed rollback), it is closed rather than returned to the
/// pool, and closing rolls the transaction back.
struct OpenTransaction(Option<super::Conn>);

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(connection) = self.0.take() {
            connection.discard();
        }
    }
}

/// `query` with `binds` bound to its placeholders in order.
pub fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for bind in binds {
        query = match bind {
            Bind::Int(value) => query.bind(*value),
            Bind::Real(value) => query.bind(*value),
            Bind::Text(value) => query.bind(value.as_str()),
            Bind::Blob(value) => query.bind(value.as_slice()),
            Bind::OptInt(value) => query.bind(*value),
            Bind::OptText(value) => query.bind(value.as_deref()),
        };
    }
    query
}

/// Appends `sql` to `out` with each `$N` parameter moved to `$(N + offset)`, so that
/// statements joined in one query each find their own values; written in place, as a
/// string for each parameter cost a batch more than its renumbering. The engine's
/// statements hold no `$` in literals.
fn push_renumbered(out: &mut String, sql: &str, offset: usize) {
    use std::fmt::Write;
    if offset == 0 {
        out.push_str(sql);
        return;
    }
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            // Writing to a String cannot fail.
            Ok(number) => {
                let _ = write!(out, "{}", number + offset);
            }
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_statements_parameters_follow_the_earlier_ones() {
        let renumbered = |sql: &str, offset: usize| {
            let mut out = String::from("x; ");
            push_renumbered(&mut out, sql, offset);
            out
        };
        assert_eq!(renumbered("a = $1 AND b = $2", 0), "x; a = $1 AND b = $2");
        assert_eq!(
            renumbered("a = $1 AND b = $12, c = $2", 3),
            "x; a = $4 AND b = $15, c = $5"
        );
    }

    #[tokio::test]
    async fn a_batch_that_fails_midway_leaves_nothing_written_and_its_connection_usable() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap();
        let insert =
            "INSERT INTO masters (name, active, last_active) VALUES ($1, 1, 0) RETURNING id";
        let mut good = Batch::new();
        good.push(insert, vec!["one".into()])
            .push(insert, vec!["two".into()]);
        let rows = good.run(&db).await.unwrap();
        assert_eq!(rows.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
        let mut bad = Batch::new();
        bad.push(insert, vec!["three".into()])
            .push(insert, vec!["one".into()]);
        assert!(bad.run(&db).await.is_err(), "a master's name is unique");
        // Every connection of the pool, the failed batch's too, still writes.
        for name in ["four", "five", "six", "seven", "eight"] {
            let mut next = Batch::new();
            next.push(insert, vec![name.into()]);
            next.run(&db).await.unwrap();
        }
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM masters ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
        assert_eq!(
            names,
            ["one", "two", "four", "five", "six", "seven", "eight"]
        );
    }
}
