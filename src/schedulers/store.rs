//! The queries only schedulers make: classified changes (`scheduler_changes`), the claim
//! on a scheduler row, and the buildset facts a Dependent scheduler watches.

use sqlx::Row;

use crate::db::{Db, DbResult};

/// A change a scheduler has seen but not yet built, with whether it matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    pub changeid: i64,
    pub important: bool,
}

/// What a Dependent scheduler needs to know of an upstream buildset.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildsetState {
    pub scheduler: Option<String>,
    pub complete: bool,
    pub results: Option<i64>,
    pub sourcestamp_ids: Vec<i64>,
}

pub async fn classify(db: &Db, schedulerid: i64, changeid: i64, important: bool) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO scheduler_changes (schedulerid, changeid, important) VALUES ($1, $2, $3) \
         ON CONFLICT (schedulerid, changeid) DO UPDATE SET important = excluded.important",
    )
    .bind(schedulerid)
    .bind(changeid)
    .bind(important as i64)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// The scheduler's classified changes, oldest first.
pub async fn classified(db: &Db, schedulerid: i64) -> DbResult<Vec<Classified>> {
    let rows = sqlx::query(
        "SELECT changeid, important FROM scheduler_changes WHERE schedulerid = $1 \
         ORDER BY changeid",
    )
    .bind(schedulerid)
    .fetch_all(&db.pool)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(Classified {
                changeid: row.try_get("changeid")?,
                important: row.try_get::<i64, _>("important")? != 0,
            })
        })
        .collect()
}

/// Forgets the given classified changes (all of them when `changeids` is `None`).
pub async fn flush(db: &Db, schedulerid: i64, changeids: Option<&[i64]>) -> DbResult<()> {
    match changeids {
        None => {
            sqlx::query("DELETE FROM scheduler_changes WHERE schedulerid = $1")
                .bind(schedulerid)
                .execute(&db.pool)
                .await?;
        }
        Some(ids) => {
            let mut tx = db.begin_write().await?;
            for id in ids {
                sqlx::query(
                    "DELETE FROM scheduler_changes WHERE schedulerid = $1 AND changeid = $2",
                )
                .bind(schedulerid)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }
    }
    Ok(())
}

/// Records which master runs the scheduler (`None` when it stops).
pub async fn set_master(db: &Db, schedulerid: i64, masterid: Option<i64>) -> DbResult<()> {
    sqlx::query("UPDATE schedulers SET masterid = $1 WHERE id = $2")
        .bind(masterid)
        .bind(schedulerid)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Whether the scheduler is enabled (the web UI can turn one off).
pub async fn enabled(db: &Db, schedulerid: i64) -> DbResult<bool> {
    let enabled: Option<i64> = sqlx::query_scalar("SELECT enabled FROM schedulers WHERE id = $1")
        .bind(schedulerid)
        .fetch_optional(&db.pool)
        .await?;
    Ok(enabled.unwrap_or(1) != 0)
}

/// The ids of the changes that made a sourcestamp.
pub async fn changes_of_sourcestamp(db: &Db, ssid: i64) -> DbResult<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT changeid FROM changes WHERE sourcestampid = $1 ORDER BY changeid",
    )
    .bind(ssid)
    .fetch_all(&db.pool)
    .await?)
}

/// A buildset's scheduler, completion and sourcestamps; `None` when there is no such
/// buildset.
pub async fn buildset_state(db: &Db, bsid: i64) -> DbResult<Option<BuildsetState>> {
    let Some(row) = sqlx::query("SELECT scheduler, complete, results FROM buildsets WHERE id = $1")
        .bind(bsid)
        .fetch_optional(&db.pool)
        .await?
    else {
        return Ok(None);
    };
    let sourcestamp_ids = sqlx::query_scalar(
        "SELECT sourcestampid FROM buildset_sourcestamps WHERE buildsetid = $1 \
         ORDER BY sourcestampid",
    )
    .bind(bsid)
    .fetch_all(&db.pool)
    .await?;
    Ok(Some(BuildsetState {
        scheduler: row.try_get("scheduler")?,
        complete: row.try_get::<i64, _>("complete")? != 0,
        results: row.try_get("results")?,
        sourcestamp_ids,
    }))
}
