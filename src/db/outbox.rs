//! The outbox table: notifications written before delivery, marked sent after it.

use sqlx::Row;

use super::{now, Batch, Bind, Db, DbError, DbResult};

/// A notification to write: rendered, addressed, not yet sent.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    pub reporter: String,
    pub kind: String,
    /// What the message is about; a second message with the same key is not written.
    pub dedup_key: String,
    pub summary: String,
    pub meta: serde_json::Value,
    pub body: Vec<u8>,
}

/// A stored notification.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxMessage {
    pub id: i64,
    pub reporter: String,
    pub kind: String,
    pub dedup_key: String,
    pub summary: String,
    pub meta: serde_json::Value,
    pub body: Vec<u8>,
    /// `pending`, `sent` or `dead`.
    pub state: String,
    pub attempts: i64,
    pub created_at: f64,
    pub next_attempt_at: f64,
    pub sent_at: Option<f64>,
    pub last_error: Option<String>,
    /// The recipients the next attempt goes to, and only they, after an attempt the peer
    /// took for some recipients and not others; `None`: every recipient in `meta`.
    pub retry_recipients: Option<Vec<String>>,
    /// Recipients the peer refused for good: never tried again.
    pub refused_recipients: Vec<Refusal>,
}

/// A recipient a peer did not take a message for, and what it answered.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refusal {
    pub recipient: String,
    pub answer: String,
}

const COLUMNS: &str = "id, reporter, kind, dedup_key, summary, meta, body, state, attempts, \
                       created_at, next_attempt_at, sent_at, last_error, retry_recipients, \
                       refused_recipients";

/// A JSON column that may be NULL.
fn json_column<T: serde::de::DeserializeOwned>(
    row: &sqlx::any::AnyRow,
    name: &str,
) -> DbResult<Option<T>> {
    let text: Option<String> = row.try_get(name)?;
    text.map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| super::DbError::Corrupt(format!("outbox.{name}: {e}")))
}

fn message_of(row: &sqlx::any::AnyRow) -> DbResult<OutboxMessage> {
    let meta: String = row.try_get("meta")?;
    Ok(OutboxMessage {
        id: row.try_get("id")?,
        reporter: row.try_get("reporter")?,
        kind: row.try_get("kind")?,
        dedup_key: row.try_get("dedup_key")?,
        summary: row.try_get("summary")?,
        meta: serde_json::from_str(&meta).map_err(|e| super::DbError::Corrupt(e.to_string()))?,
        body: row.try_get("body")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        created_at: row.try_get("created_at")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        sent_at: row.try_get("sent_at")?,
        last_error: row.try_get("last_error")?,
        retry_recipients: json_column(row, "retry_recipients")?,
        refused_recipients: json_column(row, "refused_recipients")?.unwrap_or_default(),
    })
}

impl Db {
    /// Writes a pending message, due now. `None` when the reporter already has a message
    /// with this key (the event was seen before).
    pub async fn add_outbox_message(&self, message: &NewMessage) -> DbResult<Option<i64>> {
        self.insert_outbox_message(message, None).await
    }

    /// Writes a message about build request `brid` being queued, only while it is: not
    /// claimed, not complete (else `None`). Its build's messages, written once it is
    /// claimed, supersede the waiting ones about it; one about the queued request written
    /// after them would supersede theirs.
    pub async fn add_outbox_message_while_queued(
        &self,
        message: &NewMessage,
        brid: i64,
    ) -> DbResult<Option<i64>> {
        self.insert_outbox_message(message, Some(brid)).await
    }

    async fn insert_outbox_message(
        &self,
        message: &NewMessage,
        queued: Option<i64>,
    ) -> DbResult<Option<i64>> {
        let at = now();
        let mut params: Vec<Bind> = vec![
            message.reporter.as_str().into(),
            message.kind.as_str().into(),
            message.dedup_key.as_str().into(),
            message.summary.as_str().into(),
            message.meta.to_string().into(),
            message.body.clone().into(),
            at.into(),
        ];
        let only_if = match queued {
            Some(brid) => {
                params.push(brid.into());
                "EXISTS (SELECT 1 FROM buildrequests WHERE id = $8 \
                 AND claimed_by_masterid IS NULL AND complete = 0)"
            }
            None => "1 = 1",
        };
        // A batch: while builds run, written on this thread ([`Db::expect_builds`]).
        let mut batch = Batch::new();
        batch.push(
            format!(
                "INSERT INTO outbox (reporter, kind, dedup_key, summary, meta, body, state, \
                 attempts, created_at, next_attempt_at) \
                 SELECT $1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7 WHERE {only_if} \
                 ON CONFLICT (reporter, dedup_key) DO NOTHING RETURNING id"
            ),
            params,
        );
        let rows = batch.run(self).await?;
        Ok(rows[0].first().map(|row| row.try_get(0)).transpose()?)
    }

    /// The reporter's pending messages that are due at `at`, oldest first.
    pub async fn due_outbox_messages(
        &self,
        reporter: &str,
        at: f64,
        limit: i64,
    ) -> DbResult<Vec<OutboxMessage>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM outbox WHERE reporter = $1 AND state = 'pending' \
             AND next_attempt_at <= $2 ORDER BY id LIMIT $3"
        );
        let rows = self
            .read(&sql, &[reporter.into(), at.into(), limit.into()])
            .await?;
        rows.iter().map(message_of).collect()
    }

    /// The reporter's oldest pending messages up to the first that is not due at `at`: what
    /// a transport that delivers strictly in order may send now.
    pub async fn due_outbox_head(
        &self,
        reporter: &str,
        at: f64,
        limit: i64,
    ) -> DbResult<Vec<OutboxMessage>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM outbox WHERE reporter = $1 AND state = 'pending' \
             ORDER BY id LIMIT $2"
        );
        let rows = self.read(&sql, &[reporter.into(), limit.into()]).await?;
        let mut head = Vec::with_capacity(rows.len());
        for row in &rows {
            let message = message_of(row)?;
            if message.next_attempt_at > at {
                break;
            }
            head.push(message);
        }
        Ok(head)
    }

    /// When the reporter's oldest pending message falls due, if it has one: the next
    /// delivery of a transport that delivers in order.
    pub async fn first_pending_outbox_due(&self, reporter: &str) -> DbResult<Option<f64>> {
        let rows = self
            .read(
                "SELECT next_attempt_at FROM outbox WHERE reporter = $1 AND state = 'pending' \
                 ORDER BY id LIMIT 1",
                &[reporter.into()],
            )
            .await?;
        Ok(rows.first().map(|row| row.try_get(0)).transpose()?)
    }

    /// Marks the reporter's pending messages older than `newer` whose key starts with
    /// `group` as superseded: only the newest status about one thing is worth sending.
    pub async fn supersede_outbox_messages(
        &self,
        reporter: &str,
        group: &str,
        newer: i64,
    ) -> DbResult<u64> {
        let done = sqlx::query(
            "UPDATE outbox SET state = 'superseded', sent_at = $1, \
             last_error = 'superseded by a newer message' \
             WHERE reporter = $2 AND state = 'pending' AND id < $3 \
             AND substr(dedup_key, 1, length($4)) = $4",
        )
        .bind(now())
        .bind(reporter)
        .bind(newer)
        .bind(group)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Marks the reporter's oldest pending messages dead, with `why`, so that at most `keep`
    /// stay pending (a push's `maxMemoryItems` plus `maxDiskItems`); answers how many.
    pub async fn drop_oldest_outbox_messages(
        &self,
        reporter: &str,
        keep: usize,
        why: &str,
    ) -> DbResult<u64> {
        // The `keep`-th newest pending message; those older go. Too few: NULL, none go.
        let done = sqlx::query(
            "UPDATE outbox SET state = 'dead', last_error = $1 \
             WHERE reporter = $2 AND state = 'pending' AND id < (SELECT id FROM outbox \
             WHERE reporter = $2 AND state = 'pending' ORDER BY id DESC LIMIT 1 OFFSET $3)",
        )
        .bind(why)
        .bind(reporter)
        .bind(keep.saturating_sub(1) as i64)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// When the reporter's next pending message falls due, if it has one.
    pub async fn next_outbox_due(&self, reporter: &str) -> DbResult<Option<f64>> {
        let rows = self
            .read(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE reporter = $1 \
                 AND state = 'pending'",
                &[reporter.into()],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| DbError::NotFound("the earliest outbox message".into()))?;
        Ok(row.try_get(0)?)
    }

    /// Records an attempt the peer took for some recipients and not others: the message
    /// goes next to `retry` alone (at `retry_at`, or, with `None`, it is dead), or is sent
    /// when `retry` is empty. `refused` is every recipient refused for good so far. Like a
    /// failure, it does not bring back to be tried a message superseded or dropped
    /// meanwhile.
    pub async fn mark_outbox_partly_sent(
        &self,
        id: i64,
        retry: &[String],
        refused: &[Refusal],
        error: &str,
        retry_at: Option<f64>,
    ) -> DbResult<()> {
        let at = now();
        let (state, next) = match retry_at {
            _ if retry.is_empty() => ("sent", at),
            Some(next) => ("pending", next),
            None => ("dead", at),
        };
        let refused = (!refused.is_empty())
            .then(|| serde_json::to_string(refused).expect("refusals serialize"));
        let retry = (!retry.is_empty())
            .then(|| serde_json::to_string(retry).expect("recipients serialize"));
        sqlx::query(
            // `sent_at` is not bound as an `Option<f64>`: sqlx's `Any` declares a NULL f64 as
            // float4 to PostgreSQL, and the statement cached with it then refuses a float8.
            "UPDATE outbox SET state = $1, next_attempt_at = $2, \
             sent_at = CASE WHEN $1 = 'sent' THEN $2 END, \
             attempts = attempts + 1, last_error = $3, retry_recipients = $4, \
             refused_recipients = $5 WHERE id = $6 AND (state = 'pending' OR $1 <> 'pending')",
        )
        .bind(state)
        .bind(next)
        .bind(error)
        .bind(retry)
        .bind(refused)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks messages the peer accepted.
    pub async fn mark_outbox_sent(&self, ids: &[i64]) -> DbResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        // A batch: while builds run, written on this thread ([`Db::expect_builds`]).
        let mut batch = Batch::new();
        batch.push(
            format!(
                "UPDATE outbox SET state = 'sent', sent_at = $1, attempts = attempts + 1, \
                 last_error = NULL WHERE id IN ({list})"
            ),
            vec![now().into()],
        );
        batch.run(self).await?;
        Ok(())
    }

    /// Records a failed attempt: the message is tried again at `retry_at`, or, with `None`,
    /// is dead. A message superseded or dropped while it was being tried is not brought
    /// back to be tried again; a refusal for good still records it dead, with its answer.
    pub async fn mark_outbox_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<f64>,
    ) -> DbResult<()> {
        let (state, at) = match retry_at {
            Some(at) => ("pending", at),
            None => ("dead", now()),
        };
        sqlx::query(
            "UPDATE outbox SET state = $1, next_attempt_at = $2, attempts = attempts + 1, \
             last_error = $3 WHERE id = $4 AND (state = 'pending' OR $1 <> 'pending')",
        )
        .bind(state)
        .bind(at)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Messages for listings, newest first: a reporter's or everyone's, in some states.
    pub async fn outbox_messages(
        &self,
        reporter: Option<&str>,
        states: &[&str],
    ) -> DbResult<Vec<OutboxMessage>> {
        let states = states
            .iter()
            .map(|s| format!("'{}'", s.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(",");
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM outbox WHERE ($1 IS NULL OR reporter = $1) \
             AND state IN ({states}) ORDER BY id DESC"
        ))
        .bind(reporter)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_of).collect()
    }

    /// A reporter's messages that did not reach everyone, newest first: pending, dead, and
    /// sent with recipients refused for good.
    pub async fn undelivered_outbox_messages(
        &self,
        reporter: &str,
    ) -> DbResult<Vec<OutboxMessage>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM outbox WHERE reporter = $1 \
             AND (state IN ('pending', 'dead') OR refused_recipients IS NOT NULL) ORDER BY id DESC"
        ))
        .bind(reporter)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_of).collect()
    }

    /// Whether the reporter has any message, in any state.
    pub async fn has_outbox_messages(&self, reporter: &str) -> DbResult<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM outbox WHERE reporter = $1 LIMIT 1")
                .bind(reporter)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    /// How many messages each reporter has pending and dead.
    pub async fn unsent_outbox_counts(&self) -> DbResult<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT reporter, state, COUNT(*) FROM outbox WHERE state IN ('pending', 'dead') \
             GROUP BY reporter, state",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Forgets sent (and superseded) messages older than `before`; pending and dead ones
    /// stay.
    pub async fn prune_sent_outbox(&self, before: f64) -> DbResult<u64> {
        let done = sqlx::query(
            "DELETE FROM outbox WHERE state IN ('sent', 'superseded') AND sent_at < $1",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(key: &str) -> NewMessage {
        NewMessage {
            reporter: "MailNotifier".into(),
            kind: "mail".into(),
            dedup_key: key.into(),
            summary: format!("about {key}"),
            meta: json!({"from": "bb@example.org", "to": ["a@example.org"]}),
            body: b"Subject: x\r\n\r\nbody\r\n".to_vec(),
        }
    }

    #[tokio::test]
    async fn a_message_is_written_once_retried_then_sent_or_dead() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap();
        let first = db.add_outbox_message(&message("build:1")).await.unwrap();
        assert!(first.is_some());
        assert_eq!(
            db.add_outbox_message(&message("build:1")).await.unwrap(),
            None
        );
        let second = db.add_outbox_message(&message("build:2")).await.unwrap();

        let due = db
            .due_outbox_messages("MailNotifier", now(), 10)
            .await
            .unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].body, message("build:1").body);
        assert_eq!(due[0].meta, message("build:1").meta);

        let later = now() + 100.0;
        db.mark_outbox_failed(due[0].id, "451 try later", Some(later))
            .await
            .unwrap();
        db.mark_outbox_sent(&[second.unwrap()]).await.unwrap();
        assert!(db
            .due_outbox_messages("MailNotifier", now(), 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            db.next_outbox_due("MailNotifier").await.unwrap(),
            Some(later)
        );

        db.mark_outbox_failed(due[0].id, "550 no such user", None)
            .await
            .unwrap();
        let dead = db
            .outbox_messages(Some("MailNotifier"), &["pending", "dead"])
            .await
            .unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].state, "dead");
        assert_eq!(dead[0].attempts, 2);
        assert_eq!(dead[0].last_error.as_deref(), Some("550 no such user"));
        assert_eq!(db.next_outbox_due("MailNotifier").await.unwrap(), None);
        assert_eq!(db.prune_sent_outbox(now() + 1.0).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_newer_message_of_a_group_supersedes_the_older_ones_still_pending() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open("sqlite:///state.sqlite", dir.path())
            .await
            .unwrap();
        let sent = db
            .add_outbox_message(&message("sha1/ci#build:1:started"))
            .await
            .unwrap();
        db.mark_outbox_sent(&[sent.unwrap()]).await.unwrap();
        let waiting = db
            .add_outbox_message(&message("sha1/ci#build:2:started"))
            .await
            .unwrap();
        let other = db
            .add_outbox_message(&message("sha2/ci#build:3:started"))
            .await
            .unwrap();
        let newest = db
            .add_outbox_message(&message("sha1/ci#build:2:finished"))
            .await
            .unwrap();
        let count = db
            .supersede_outbox_messages("MailNotifier", "sha1/ci#", newest.unwrap())
            .await
            .unwrap();
        assert_eq!(count, 1);
        // The attempt that was under way when it was superseded fails after: it stays
        // superseded, not to be sent after the newer one.
        db.mark_outbox_failed(waiting.unwrap(), "connection refused", Some(now()))
            .await
            .unwrap();
        let states: Vec<(i64, String)> = db
            .outbox_messages(Some("MailNotifier"), &["sent", "pending", "superseded"])
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.id, m.state))
            .collect();
        assert_eq!(
            states,
            [
                (newest.unwrap(), "pending".to_string()),
                (other.unwrap(), "pending".to_string()),
                (waiting.unwrap(), "superseded".to_string()),
                (sent.unwrap(), "sent".to_string()),
            ]
        );
        let counts = db.unsent_outbox_counts().await.unwrap();
        assert_eq!(
            counts,
            [("MailNotifier".to_string(), "pending".to_string(), 2)]
        );
        // A refusal for good of that attempt still records it dead, with the answer.
        db.mark_outbox_failed(waiting.unwrap(), "422 Unprocessable Entity", None)
            .await
            .unwrap();
        let dead = db
            .outbox_messages(Some("MailNotifier"), &["dead"])
            .await
            .unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            dead[0].last_error.as_deref(),
            Some("422 Unprocessable Entity")
        );
    }
}
