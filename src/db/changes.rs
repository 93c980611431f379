//! Changes, the sourcestamps they make, and the key/value state services keep.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use sqlx::Row;
use tokio::sync::oneshot;

use super::{now, values_placeholders, Db, DbError, DbResult};
use crate::model::{Change, Patch, SourceStamp};

/// A change as a change source submits it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChangeSpec {
    pub author: String,
    pub committer: Option<String>,
    pub comments: String,
    pub branch: Option<String>,
    pub revision: Option<String>,
    pub revlink: Option<String>,
    /// Seconds since the epoch; `None` is now.
    pub when: Option<f64>,
    pub category: Option<String>,
    pub repository: String,
    pub codebase: String,
    pub project: String,
    pub files: Vec<String>,
    /// Name, value, source.
    pub properties: Vec<(String, Value, String)>,
}

/// The patch columns of a sourcestamp row (a LEFT JOIN of `patches`), if it has one.
fn patch_of(row: &sqlx::any::AnyRow) -> DbResult<Option<Patch>> {
    let Some(level) = row.try_get::<Option<i64>, _>("patchlevel")? else {
        return Ok(None);
    };
    Ok(Some(Patch {
        level,
        body: row.try_get("patch")?,
        subdir: row.try_get("patch_subdir")?,
        author: row.try_get("patch_author")?,
        comment: row.try_get("patch_comment")?,
    }))
}

/// A change as stored: what was submitted, with the ids and the time storage gave it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredChange {
    pub changeid: i64,
    pub sourcestampid: i64,
    /// `spec.when`, or the time the change was stored.
    pub when: f64,
    pub spec: ChangeSpec,
}

/// What runs right after a push's changes are committed, before its caller hears of them
/// and in commit order with other pushes: their announcement, which a caller that goes
/// away (a hook's client hanging up) cannot skip.
pub type AfterCommit = Box<dyn FnOnce(&[StoredChange]) + Send>;

/// The most pushes one transaction commits: more would hold SQLite's write lock long
/// enough to delay the builds' own writes.
const MOST_PUSHES_PER_COMMIT: usize = 64;

/// The pushes waiting for the change writer. One writer task at a time commits every push
/// that queued while the last commit ran in one transaction (group commit): concurrent
/// hooks then take SQLite's write lock once between them, instead of each waiting for it in
/// the busy handler's sleeps.
#[derive(Default)]
pub(super) struct ChangeQueue {
    state: Mutex<Queued>,
}

#[derive(Default)]
struct Queued {
    pushes: Vec<Push>,
    /// A writer task is running; it takes every push queued before it ends.
    writing: bool,
}

/// One caller's changes, stored all or none.
struct Push {
    specs: Vec<ChangeSpec>,
    after_commit: AfterCommit,
    answer: oneshot::Sender<DbResult<Vec<StoredChange>>>,
}

impl Push {
    fn finish(self, ids: DbResult<Vec<ChangeIds>>) {
        let stored = ids.map(|ids| {
            ids.into_iter()
                .zip(self.specs)
                .map(|(ids, spec)| StoredChange {
                    changeid: ids.changeid,
                    sourcestampid: ids.sourcestampid,
                    when: ids.when,
                    spec,
                })
                .collect::<Vec<_>>()
        });
        if let Ok(stored) = &stored {
            (self.after_commit)(stored);
        }
        // A caller that went away no longer needs the answer.
        let _ = self.answer.send(stored);
    }
}

impl fmt::Debug for ChangeQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queued = self.lock();
        f.debug_struct("ChangeQueue")
            .field("pushes", &queued.pushes.len())
            .field("writing", &queued.writing)
            .finish()
    }
}

impl ChangeQueue {
    fn lock(&self) -> MutexGuard<'_, Queued> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Clears the queue if its writer panics, so that later pushes start a new one (and
/// those waiting hear of the failure) rather than waiting for it forever.
struct Writing(Arc<ChangeQueue>);

impl Drop for Writing {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queued = self.0.lock();
            queued.writing = false;
            queued.pushes.clear();
        }
    }
}

/// What storage gave one change.
struct ChangeIds {
    changeid: i64,
    sourcestampid: i64,
    when: f64,
}

/// The sourcestamps of buildset `$1` with their changes' ids, in one statement: a row per
/// change, or one with no change id for a stamp without changes
/// ([`Db::sourcestamps_of`] reads them).
pub const BUILDSET_SOURCESTAMPS: &str = "SELECT s.id, s.branch, s.revision, s.repository, \
     s.codebase, s.project, p.patchlevel, p.patch, p.author AS patch_author, \
     p.comment AS patch_comment, p.subdir AS patch_subdir, c.changeid \
     FROM sourcestamps s JOIN buildset_sourcestamps b ON b.sourcestampid = s.id \
     LEFT JOIN patches p ON p.id = s.patchid \
     LEFT JOIN changes c ON c.sourcestampid = s.id \
     WHERE b.buildsetid = $1 ORDER BY s.codebase, s.id, c.changeid";

impl Db {
    /// Stores a change and the sourcestamp it describes; returns the change id.
    pub async fn add_change(&self, spec: &ChangeSpec) -> DbResult<i64> {
        let stored = self
            .add_changes(vec![spec.clone()], Box::new(|_| {}))
            .await?;
        Ok(stored[0].changeid)
    }

    /// Stores changes and their sourcestamps, all or none (the commits of one push), in
    /// one transaction with the pushes of other callers that queued meanwhile; runs
    /// `after_commit` once they are committed, and answers them with their ids, in order.
    pub async fn add_changes(
        &self,
        specs: Vec<ChangeSpec>,
        after_commit: AfterCommit,
    ) -> DbResult<Vec<StoredChange>> {
        let (answer, answered) = oneshot::channel();
        let start_writer = {
            let mut queued = self.change_queue.lock();
            queued.pushes.push(Push {
                specs,
                after_commit,
                answer,
            });
            !std::mem::replace(&mut queued.writing, true)
        };
        // The writer is a task of its own: a caller that goes away cannot cancel a commit
        // other callers wait for.
        if start_writer {
            tokio::spawn(self.clone().write_queued_changes());
        }
        answered
            .await
            .map_err(|_| DbError::Sql(sqlx::Error::WorkerCrashed))?
    }

    /// The writer task: commits the queued pushes together until none is left. When a
    /// group fails, each of its pushes is tried alone, so that one bad push fails no other.
    async fn write_queued_changes(self) {
        let _writing = Writing(self.change_queue.clone());
        loop {
            let mut pushes: Vec<Push> = {
                let mut queued = self.change_queue.lock();
                if queued.pushes.is_empty() {
                    queued.writing = false;
                    return;
                }
                let taken = queued.pushes.len().min(MOST_PUSHES_PER_COMMIT);
                queued.pushes.drain(..taken).collect()
            };
            let group: Vec<&[ChangeSpec]> = pushes.iter().map(|push| &push.specs[..]).collect();
            match self.insert_changes(&group).await {
                Ok(ids) => {
                    for (push, ids) in pushes.into_iter().zip(ids) {
                        push.finish(Ok(ids));
                    }
                }
                Err(error) if pushes.len() == 1 => pushes.remove(0).finish(Err(error)),
                Err(_) => {
                    for push in pushes {
                        let ids = self.insert_changes(&[&push.specs]).await;
                        push.finish(ids.map(|mut ids| ids.remove(0)));
                    }
                }
            }
        }
    }

    /// Inserts each push's changes and sourcestamps in one transaction.
    async fn insert_changes(&self, pushes: &[&[ChangeSpec]]) -> DbResult<Vec<Vec<ChangeIds>>> {
        let specs: Vec<&ChangeSpec> = pushes.iter().flat_map(|specs| specs.iter()).collect();
        let mut tx = self.begin_write().await?;
        let mut ids = Vec::with_capacity(specs.len());
        for rows in specs.chunks(CHANGES_PER_INSERT) {
            ids.extend(insert_change_rows(&mut tx, rows).await?);
        }
        tx.commit().await?;
        let mut ids = ids.into_iter();
        Ok(pushes
            .iter()
            .map(|specs| ids.by_ref().take(specs.len()).collect())
            .collect())
    }

    /// A change as status objects and schedulers see it, with the id of its sourcestamp.
    pub async fn change(&self, changeid: i64) -> DbResult<(Change, i64)> {
        let sql = format!("SELECT {CHANGE_COLUMNS} FROM changes WHERE changeid = $1");
        let row = sqlx::query(&sql)
            .bind(changeid)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| DbError::NotFound(format!("change {changeid}")))?;
        change_of_row(&row)
    }

    /// Up to `limit` changes stored after change `after`, oldest first, each with the id
    /// of its sourcestamp: what a scheduler that fell behind the bus missed.
    pub async fn changes_after(&self, after: i64, limit: i64) -> DbResult<Vec<(Change, i64)>> {
        let sql = format!(
            "SELECT {CHANGE_COLUMNS} FROM changes WHERE changeid > $1 ORDER BY changeid LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(change_of_row).collect()
    }

    /// The id of the newest change, 0 when there is none.
    pub async fn last_change_id(&self) -> DbResult<i64> {
        let rows = self.read("SELECT MAX(changeid) FROM changes", &[]).await?;
        let last: Option<i64> = match rows.first() {
            Some(row) => row.try_get(0)?,
            None => None,
        };
        Ok(last.unwrap_or(0))
    }

    /// The sourcestamps of a buildset, each with the changes that made it.
    pub async fn buildset_sourcestamps(&self, bsid: i64) -> DbResult<Vec<SourceStamp>> {
        let rows = self.read(BUILDSET_SOURCESTAMPS, &[bsid.into()]).await?;
        self.sourcestamps_of(rows).await
    }

    /// The sourcestamps in rows of [`BUILDSET_SOURCESTAMPS`], with their changes.
    pub async fn sourcestamps_of(
        &self,
        rows: Vec<sqlx::any::AnyRow>,
    ) -> DbResult<Vec<SourceStamp>> {
        let mut stamps: Vec<(i64, SourceStamp)> = Vec::new();
        for row in rows {
            let ssid: i64 = row.try_get("id")?;
            if stamps.last().is_none_or(|(last, _)| *last != ssid) {
                let stamp = SourceStamp {
                    codebase: row.try_get("codebase")?,
                    branch: row.try_get("branch")?,
                    revision: row.try_get("revision")?,
                    repository: row.try_get("repository")?,
                    project: row.try_get("project")?,
                    patch: patch_of(&row)?,
                    changes: Vec::new(),
                };
                stamps.push((ssid, stamp));
            }
            if let Some(changeid) = row.try_get::<Option<i64>, _>("changeid")? {
                let change = self.change(changeid).await?.0;
                stamps
                    .last_mut()
                    .expect("pushed above")
                    .1
                    .changes
                    .push(change);
            }
        }
        Ok(stamps.into_iter().map(|(_, stamp)| stamp).collect())
    }

    /// What a service remembered under `key`, if anything.
    pub async fn get_state(&self, object: &str, key: &str) -> DbResult<Option<Value>> {
        let value: Option<String> =
            sqlx::query_scalar("SELECT value FROM object_state WHERE objectname = $1 AND key = $2")
                .bind(object)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        value
            .map(|text| serde_json::from_str(&text).map_err(|e| DbError::Corrupt(e.to_string())))
            .transpose()
    }

    pub async fn set_state(&self, object: &str, key: &str, value: &Value) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO object_state (objectname, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (objectname, key) DO UPDATE SET value = excluded.value",
        )
        .bind(object)
        .bind(key)
        .bind(value.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The columns [`change_of_row`] reads.
const CHANGE_COLUMNS: &str = "changeid, author, comments, branch, revision, revlink, \
     when_timestamp, category, repository, codebase, project, files, properties, sourcestampid";

/// A change and the id of its sourcestamp from a row of [`CHANGE_COLUMNS`].
fn change_of_row(row: &sqlx::any::AnyRow) -> DbResult<(Change, i64)> {
    let files: String = row.try_get("files")?;
    let properties: String = row.try_get("properties")?;
    let properties: serde_json::Map<String, Value> =
        serde_json::from_str(&properties).map_err(|e| DbError::Corrupt(e.to_string()))?;
    let when: f64 = row.try_get("when_timestamp")?;
    let change = Change {
        number: row.try_get("changeid")?,
        who: row.try_get("author")?,
        revision: row.try_get("revision")?,
        branch: row.try_get("branch")?,
        when: when as i64,
        files: serde_json::from_str(&files).map_err(|e| DbError::Corrupt(e.to_string()))?,
        comments: row.try_get("comments")?,
        repository: row.try_get("repository")?,
        project: row.try_get("project")?,
        codebase: row.try_get("codebase")?,
        category: row.try_get("category")?,
        revlink: row.try_get("revlink")?,
        properties: properties
            .into_iter()
            .map(|(name, pair)| (name, pair.get(0).cloned().unwrap_or(Value::Null)))
            .collect(),
    };
    Ok((change, row.try_get("sourcestampid")?))
}

/// The most changes one INSERT writes: their 14 parameters each stay far below what
/// SQLite and PostgreSQL take in one statement.
const CHANGES_PER_INSERT: usize = 100;

/// Inserts changes and the sourcestamps they describe in two statements. Neither database
/// promises the order of the rows RETURNING answers, so each sourcestamp is matched to its
/// change by its columns (identical ones are interchangeable), and each change by its
/// sourcestamp.
async fn insert_change_rows(
    tx: &mut super::Transaction,
    specs: &[&ChangeSpec],
) -> DbResult<Vec<ChangeIds>> {
    let whens: Vec<f64> = specs
        .iter()
        .map(|spec| spec.when.unwrap_or_else(now))
        .collect();
    let sql = format!(
        "INSERT INTO sourcestamps (branch, revision, repository, codebase, project, created_at) \
         VALUES {} RETURNING id, branch, revision, repository, codebase, project, created_at",
        values_placeholders(specs.len(), 0, 6)
    );
    let mut query = sqlx::query(&sql);
    for (spec, when) in specs.iter().zip(&whens) {
        query = query
            .bind(&spec.branch)
            .bind(&spec.revision)
            .bind(&spec.repository)
            .bind(&spec.codebase)
            .bind(&spec.project)
            .bind(*when);
    }
    let mut sourcestampids: Vec<Option<i64>> = vec![None; specs.len()];
    for row in query.fetch_all(&mut **tx).await? {
        let branch: Option<String> = row.try_get(1)?;
        let revision: Option<String> = row.try_get(2)?;
        let repository: String = row.try_get(3)?;
        let codebase: String = row.try_get(4)?;
        let project: String = row.try_get(5)?;
        let created_at: f64 = row.try_get(6)?;
        let index = (0..specs.len())
            .find(|&i| {
                let spec = specs[i];
                sourcestampids[i].is_none()
                    && spec.branch == branch
                    && spec.revision == revision
                    && spec.repository == repository
                    && spec.codebase == codebase
                    && spec.project == project
                    && whens[i] == created_at
            })
            .ok_or_else(|| DbError::Corrupt("a sourcestamp stored for no change".into()))?;
        sourcestampids[index] = Some(row.try_get(0)?);
    }
    let sourcestampids: Vec<i64> = sourcestampids
        .into_iter()
        .collect::<Option<_>>()
        .ok_or_else(|| DbError::Corrupt("a change's sourcestamp was not stored".into()))?;
    let sql = format!(
        "INSERT INTO changes (author, committer, comments, branch, revision, revlink, \
         when_timestamp, category, repository, codebase, project, files, properties, \
         sourcestampid) VALUES {} RETURNING changeid, sourcestampid",
        values_placeholders(specs.len(), 0, 14)
    );
    let mut query = sqlx::query(&sql);
    for ((spec, when), sourcestampid) in specs.iter().zip(&whens).zip(&sourcestampids) {
        let properties: serde_json::Map<String, Value> = spec
            .properties
            .iter()
            .map(|(name, value, source)| (name.clone(), serde_json::json!([value, source])))
            .collect();
        query = query
            .bind(&spec.author)
            .bind(&spec.committer)
            .bind(&spec.comments)
            .bind(&spec.branch)
            .bind(&spec.revision)
            .bind(&spec.revlink)
            .bind(*when)
            .bind(&spec.category)
            .bind(&spec.repository)
            .bind(&spec.codebase)
            .bind(&spec.project)
            .bind(serde_json::to_string(&spec.files).unwrap_or_else(|_| "[]".into()))
            .bind(Value::Object(properties).to_string())
            .bind(*sourcestampid);
    }
    let mut changeids: Vec<Option<i64>> = vec![None; specs.len()];
    for row in query.fetch_all(&mut **tx).await? {
        let sourcestampid: i64 = row.try_get(1)?;
        let index = sourcestampids
            .iter()
            .position(|&id| id == sourcestampid)
            .ok_or_else(|| DbError::Corrupt("a change stored for no sourcestamp".into()))?;
        changeids[index] = Some(row.try_get(0)?);
    }
    changeids
        .into_iter()
        .zip(sourcestampids)
        .zip(whens)
        .map(|((changeid, sourcestampid), when)| {
            Ok(ChangeIds {
                changeid: changeid
                    .ok_or_else(|| DbError::Corrupt("a change was not stored".into()))?,
                sourcestampid,
                when,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_comes_back_as_stored_and_state_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap();
        let spec = ChangeSpec {
            author: "alice <alice@example.org>".into(),
            comments: "fix it".into(),
            branch: Some("main".into()),
            revision: Some("abc".into()),
            when: Some(1000.0),
            files: vec!["a.c".into()],
            properties: vec![("ticket".into(), Value::from(7), "Change".into())],
            ..ChangeSpec::default()
        };
        let id = db.add_change(&spec).await.unwrap();
        let (change, ssid) = db.change(id).await.unwrap();
        assert_eq!(change.who, "alice <alice@example.org>");
        assert_eq!(change.files, vec!["a.c"]);
        assert_eq!(
            change.properties,
            vec![("ticket".to_string(), Value::from(7))]
        );
        assert!(ssid > 0);
        assert_eq!(db.get_state("poller", "last").await.unwrap(), None);
        db.set_state("poller", "last", &Value::from("x"))
            .await
            .unwrap();
        db.set_state("poller", "last", &Value::from("y"))
            .await
            .unwrap();
        assert_eq!(
            db.get_state("poller", "last").await.unwrap(),
            Some(Value::from("y"))
        );
    }

    #[tokio::test]
    async fn identical_changes_of_one_push_get_a_sourcestamp_each() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap();
        let spec = |author: &str| ChangeSpec {
            author: author.into(),
            branch: Some("main".into()),
            revision: Some("abc".into()),
            when: Some(1000.0),
            ..ChangeSpec::default()
        };
        let stored = db
            .add_changes(vec![spec("a"), spec("b"), spec("c")], Box::new(|_| {}))
            .await
            .unwrap();
        let mut sourcestamps = Vec::new();
        for (change, author) in stored.iter().zip(["a", "b", "c"]) {
            let (read, sourcestampid) = db.change(change.changeid).await.unwrap();
            assert_eq!(read.who, author);
            assert_eq!(sourcestampid, change.sourcestampid);
            sourcestamps.push(sourcestampid);
        }
        sourcestamps.sort_unstable();
        sourcestamps.dedup();
        assert_eq!(sourcestamps.len(), 3);
    }
}
