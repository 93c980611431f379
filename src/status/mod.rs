//! Running status targets, and what they share: the outbox, the master's identity as
//! callbacks see it, and the watermark that lets a target catch up after a restart.

pub mod mail;
pub mod outbox;
pub mod snapshot;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::MasterConfig;
use crate::db::{Db, DbResult};
use crate::model::{BuilderInfo, MasterInfo};

/// `master_status` for the config running now: its title, URLs and builders with their ids.
/// The engine registers the configured builders before status targets start or
/// reconfigure, so one read finds their ids; one it has not is registered here.
pub async fn master_info(db: &Db, config: &MasterConfig) -> DbResult<Arc<MasterInfo>> {
    let ids: HashMap<String, i64> = sqlx::query_as("SELECT name, id FROM builders")
        .fetch_all(&db.pool)
        .await?
        .into_iter()
        .collect();
    let mut builders = Vec::with_capacity(config.builders.len());
    for builder in &config.builders {
        let id = match ids.get(&builder.name) {
            Some(id) => *id,
            None => db.builder_id(&builder.name).await?,
        };
        builders.push(BuilderInfo {
            id,
            name: builder.name.clone(),
            tags: builder.tags.clone(),
        });
    }
    Ok(Arc::new(MasterInfo {
        title: config.title.clone(),
        title_url: config.title_url.clone(),
        buildbot_url: config.buildbot_url.clone(),
        builders,
    }))
}

/// Where a status target remembers how far it has handled finished builds, so that a
/// restart catches up on what finished while it was down (the outbox's key keeps a message
/// from being written twice).
pub struct Watermark {
    object: String,
}

const WATERMARK_KEY: &str = "handled_until";

impl Watermark {
    pub fn new(target: &str) -> Watermark {
        Watermark {
            object: format!("status/{target}"),
        }
    }

    /// The completion time handled so far; the first time, now (history is not replayed).
    pub async fn load(&self, db: &Db) -> DbResult<f64> {
        match db.get_state(&self.object, WATERMARK_KEY).await? {
            Some(value) => Ok(value.as_f64().unwrap_or_default()),
            None => {
                let now = crate::db::now();
                self.store(db, now).await?;
                Ok(now)
            }
        }
    }

    pub async fn store(&self, db: &Db, until: f64) -> DbResult<()> {
        db.set_state(&self.object, WATERMARK_KEY, &until.into())
            .await
    }
}
