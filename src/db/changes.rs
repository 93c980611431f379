//! Changes, the sourcestamps they make, and the key/value state services keep.

use serde_json::Value;
use sqlx::Row;

use super::{now, Db, DbError, DbResult};
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

impl Db {
    /// Stores a change and the sourcestamp it describes; returns the change id.
    pub async fn add_change(&self, spec: &ChangeSpec) -> DbResult<i64> {
        let ids = self.add_changes(std::slice::from_ref(spec)).await?;
        Ok(ids[0])
    }

    /// Stores changes and their sourcestamps in one transaction, all or none (the commits
    /// of one webhook); returns their ids in order.
    pub async fn add_changes(&self, specs: &[ChangeSpec]) -> DbResult<Vec<i64>> {
        let mut tx = self.begin_write().await?;
        let mut ids = Vec::with_capacity(specs.len());
        for spec in specs {
            let when = spec.when.unwrap_or_else(now);
            let properties: serde_json::Map<String, Value> = spec
                .properties
                .iter()
                .map(|(name, value, source)| (name.clone(), serde_json::json!([value, source])))
                .collect();
            let ssid: i64 = sqlx::query_scalar(
                "INSERT INTO sourcestamps (branch, revision, repository, codebase, project, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(&spec.branch)
            .bind(&spec.revision)
            .bind(&spec.repository)
            .bind(&spec.codebase)
            .bind(&spec.project)
            .bind(when)
            .fetch_one(&mut *tx)
            .await?;
            let changeid: i64 = sqlx::query_scalar(
                "INSERT INTO changes (author, committer, comments, branch, revision, revlink, \
                 when_timestamp, category, repository, codebase, project, files, properties, \
                 sourcestampid) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING changeid",
            )
            .bind(&spec.author)
            .bind(&spec.committer)
            .bind(&spec.comments)
            .bind(&spec.branch)
            .bind(&spec.revision)
            .bind(&spec.revlink)
            .bind(when)
            .bind(&spec.category)
            .bind(&spec.repository)
            .bind(&spec.codebase)
            .bind(&spec.project)
            .bind(serde_json::to_string(&spec.files).unwrap_or_else(|_| "[]".into()))
            .bind(Value::Object(properties).to_string())
            .bind(ssid)
            .fetch_one(&mut *tx)
            .await?;
            ids.push(changeid);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// A change as status objects and schedulers see it, with the id of its sourcestamp.
    pub async fn change(&self, changeid: i64) -> DbResult<(Change, i64)> {
        let row = sqlx::query(
            "SELECT author, comments, branch, revision, revlink, when_timestamp, category, \
             repository, codebase, project, files, properties, sourcestampid \
             FROM changes WHERE changeid = $1",
        )
        .bind(changeid)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| DbError::NotFound(format!("change {changeid}")))?;
        let files: String = row.try_get("files")?;
        let properties: String = row.try_get("properties")?;
        let properties: serde_json::Map<String, Value> =
            serde_json::from_str(&properties).map_err(|e| DbError::Corrupt(e.to_string()))?;
        let when: f64 = row.try_get("when_timestamp")?;
        let change = Change {
            number: changeid,
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

    /// The sourcestamps of a buildset, each with the changes that made it.
    pub async fn buildset_sourcestamps(&self, bsid: i64) -> DbResult<Vec<SourceStamp>> {
        let rows = sqlx::query(
            "SELECT s.id, s.branch, s.revision, s.repository, s.codebase, s.project, \
             p.patchlevel, p.patch, p.author AS patch_author, p.comment AS patch_comment, \
             p.subdir AS patch_subdir \
             FROM sourcestamps s JOIN buildset_sourcestamps b ON b.sourcestampid = s.id \
             LEFT JOIN patches p ON p.id = s.patchid \
             WHERE b.buildsetid = $1 ORDER BY s.codebase",
        )
        .bind(bsid)
        .fetch_all(&self.pool)
        .await?;
        let mut stamps = Vec::new();
        for row in rows {
            let ssid: i64 = row.try_get("id")?;
            let changeids: Vec<i64> = sqlx::query_scalar(
                "SELECT changeid FROM changes WHERE sourcestampid = $1 ORDER BY changeid",
            )
            .bind(ssid)
            .fetch_all(&self.pool)
            .await?;
            let mut changes = Vec::new();
            for changeid in changeids {
                changes.push(self.change(changeid).await?.0);
            }
            stamps.push(SourceStamp {
                codebase: row.try_get("codebase")?,
                branch: row.try_get("branch")?,
                revision: row.try_get("revision")?,
                repository: row.try_get("repository")?,
                project: row.try_get("project")?,
                patch: patch_of(&row)?,
                changes,
            });
        }
        Ok(stamps)
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
}
