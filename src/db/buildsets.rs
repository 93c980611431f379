//! Buildsets and their build requests: what schedulers ask for.

use std::collections::BTreeMap;

use super::{now, Db, DbResult};
use crate::model::Properties;

/// A sourcestamp to build, as a scheduler or a force request gives it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceStampSpec {
    pub codebase: String,
    pub branch: Option<String>,
    pub revision: Option<String>,
    pub repository: String,
    pub project: String,
}

/// What a scheduler submits: one buildset, one request per builder.
#[derive(Clone, Debug, Default)]
pub struct BuildsetSpec {
    pub reason: String,
    pub scheduler: String,
    pub external_idstring: Option<String>,
    /// Existing sourcestamps (those of changes) ...
    pub sourcestamp_ids: Vec<i64>,
    /// ... and new ones (forced builds, timed schedulers).
    pub new_sourcestamps: Vec<SourceStampSpec>,
    pub properties: Properties,
    /// Builder ids; a builder the config names is registered before it is scheduled.
    pub builder_ids: Vec<i64>,
    pub priority: i64,
    pub parent_buildid: Option<i64>,
    pub parent_relationship: Option<String>,
    /// The requests are waited for (Trigger with waitForFinish).
    pub waited_for: bool,
}

impl Db {
    /// Stores a buildset with its sourcestamps, properties and build requests, in one
    /// transaction. Returns the buildset id and the request id per builder id.
    pub async fn add_buildset(&self, spec: &BuildsetSpec) -> DbResult<(i64, BTreeMap<i64, i64>)> {
        let submitted_at = now();
        let mut tx = self.begin_write().await?;
        let bsid: i64 = sqlx::query_scalar(
            "INSERT INTO buildsets (external_idstring, reason, submitted_at, complete, \
             parent_buildid, parent_relationship, scheduler) \
             VALUES ($1, $2, $3, 0, $4, $5, $6) RETURNING id",
        )
        .bind(&spec.external_idstring)
        .bind(&spec.reason)
        .bind(submitted_at)
        .bind(spec.parent_buildid)
        .bind(&spec.parent_relationship)
        .bind(&spec.scheduler)
        .fetch_one(&mut *tx)
        .await?;
        let mut ssids = spec.sourcestamp_ids.clone();
        for ss in &spec.new_sourcestamps {
            let ssid: i64 = sqlx::query_scalar(
                "INSERT INTO sourcestamps (branch, revision, repository, codebase, project, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(&ss.branch)
            .bind(&ss.revision)
            .bind(&ss.repository)
            .bind(&ss.codebase)
            .bind(&ss.project)
            .bind(submitted_at)
            .fetch_one(&mut *tx)
            .await?;
            ssids.push(ssid);
        }
        for ssid in ssids {
            sqlx::query(
                "INSERT INTO buildset_sourcestamps (buildsetid, sourcestampid) VALUES ($1, $2)",
            )
            .bind(bsid)
            .bind(ssid)
            .execute(&mut *tx)
            .await?;
        }
        let properties = super::property_rows(&spec.properties);
        // One statement for many rows: a round trip costs more than a row.
        for chunk in properties.chunks(super::ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO buildset_properties (buildsetid, name, value, source) VALUES {}",
                super::values_placeholders(chunk.len(), 1, 3)
            );
            let mut query = sqlx::query(&sql).bind(bsid);
            for (name, value, source) in chunk {
                query = query.bind(*name).bind(value.as_str()).bind(*source);
            }
            query.execute(&mut *tx).await?;
        }
        let mut brids = BTreeMap::new();
        for &builderid in &spec.builder_ids {
            let brid: i64 = sqlx::query_scalar(
                "INSERT INTO buildrequests (buildsetid, builderid, priority, complete, \
                 submitted_at, waited_for) VALUES ($1, $2, $3, 0, $4, $5) RETURNING id",
            )
            .bind(bsid)
            .bind(builderid)
            .bind(spec.priority)
            .bind(submitted_at)
            .bind(spec.waited_for as i64)
            .fetch_one(&mut *tx)
            .await?;
            brids.insert(builderid, brid);
        }
        tx.commit().await?;
        Ok((bsid, brids))
    }

    /// The properties of a buildset, with their sources.
    pub async fn buildset_properties(&self, bsid: i64) -> DbResult<Properties> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT name, value, source FROM buildset_properties WHERE buildsetid = $1",
        )
        .bind(bsid)
        .fetch_all(&self.pool)
        .await?;
        Ok(super::properties_from_rows(rows))
    }
}
