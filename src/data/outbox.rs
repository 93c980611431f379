//! The outbox as the REST API shows it: `/reporters` (each status target that sends
//! something, with how many of its messages wait or died) and
//! `/reporters/NAME/messages` (those messages, newest first, and sent ones that some
//! recipient refused for good).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::query::FieldType as F;
use super::Entity;
use crate::config::status::StatusTarget;
use crate::config::MasterConfig;
use crate::db::{Db, DbResult, OutboxMessage};

pub const REPORTER: Entity = Entity {
    name: "reporter",
    plural: "reporters",
    fields: &[
        ("name", F::String),
        ("kind", F::String),
        ("configured", F::Boolean),
        ("pending", F::Integer),
        ("dead", F::Integer),
    ],
};

pub const MESSAGE: Entity = Entity {
    name: "message",
    plural: "messages",
    fields: &[
        ("messageid", F::Integer),
        ("reporter", F::String),
        ("kind", F::String),
        ("about", F::String),
        ("summary", F::String),
        ("state", F::String),
        ("attempts", F::Integer),
        ("created_at", F::DateTime),
        ("next_attempt_at", F::DateTime),
        ("last_error", F::String),
        ("recipients", F::StringList),
        ("pending_recipients", F::StringList),
        ("refused_recipients", F::Object),
    ],
};

/// Every configured status target but the web server, and any other that still has
/// messages in the outbox (one removed by a reconfig, say).
pub async fn reporters(db: &Db, config: &MasterConfig) -> DbResult<Vec<Value>> {
    let mut counts: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (reporter, state, count) in db.unsent_outbox_counts().await? {
        let counted = counts.entry(reporter).or_default();
        match state.as_str() {
            "pending" => counted.0 += count,
            _ => counted.1 += count,
        }
    }
    let mut items = Vec::new();
    let sending = |t: &&StatusTarget| !matches!(t, StatusTarget::WebStatus(_));
    for target in config.status.iter().filter(sending) {
        let (pending, dead) = counts.remove(target.name()).unwrap_or_default();
        items.push(
            json!({"name": target.name(), "kind": target.kind(), "configured": true,
                          "pending": pending, "dead": dead}),
        );
    }
    for (name, (pending, dead)) in counts {
        items.push(json!({"name": name, "kind": null, "configured": false,
                          "pending": pending, "dead": dead}));
    }
    Ok(items)
}

/// A reporter's messages that did not reach everyone, newest first; `None` for a reporter
/// that is neither configured nor in the outbox.
pub async fn messages(
    db: &Db,
    config: &MasterConfig,
    reporter: &str,
) -> DbResult<Option<Vec<Value>>> {
    let configured = config
        .status
        .iter()
        .any(|t| t.name() == reporter && !matches!(t, StatusTarget::WebStatus(_)));
    if !configured && !db.has_outbox_messages(reporter).await? {
        return Ok(None);
    }
    let messages = db.undelivered_outbox_messages(reporter).await?;
    Ok(Some(messages.iter().map(message).collect()))
}

fn message(message: &OutboxMessage) -> Value {
    json!({
        "messageid": message.id,
        "reporter": message.reporter,
        "kind": message.kind,
        "about": message.dedup_key,
        "summary": message.summary,
        "state": message.state,
        "attempts": message.attempts,
        "created_at": message.created_at as i64,
        "next_attempt_at": message.next_attempt_at as i64,
        "last_error": message.last_error,
        "recipients": message.meta["to"],
        // Who the next attempt goes to; none once the message is sent or dead.
        "pending_recipients": match (message.state.as_str(), &message.retry_recipients) {
            ("pending", Some(only)) => json!(only),
            ("pending", None) => message.meta["to"].clone(),
            _ => json!([]),
        },
        "refused_recipients": message.refused_recipients.iter()
            .map(|r| json!({"recipient": r.recipient, "answer": r.answer}))
            .collect::<Vec<_>>(),
    })
}
