//! Buildsets and their build requests: what schedulers ask for.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{now, Batch, Db, DbError, DbResult};
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

/// A buildset just stored.
pub struct AddedBuildset {
    pub bsid: i64,
    /// The request id per builder id.
    pub brids: BTreeMap<i64, i64>,
    /// Each request's row, in the columns of the data API's `buildrequests` select.
    pub request_rows: Vec<sqlx::any::AnyRow>,
}

impl Db {
    /// Stores a buildset with its sourcestamps, properties and build requests, in one
    /// transaction and, on SQLite, one round trip (a [`Batch`]: each statement finds the
    /// ids inserted before it in SQL). Returns the buildset id and the request id per
    /// builder id.
    pub async fn add_buildset(&self, spec: &BuildsetSpec) -> DbResult<(i64, BTreeMap<i64, i64>)> {
        let added = self.add_buildset_rows(spec).await?;
        Ok((added.bsid, added.brids))
    }

    /// [`Db::add_buildset`], answering each request's row too, as the data API's
    /// `buildrequests` select would read it: its `new` event needs no read.
    pub async fn add_buildset_rows(&self, spec: &BuildsetSpec) -> DbResult<AddedBuildset> {
        let submitted_at = now();
        let bsid = self.inserted_id("buildsets");
        let mut batch = Batch::new();
        batch.push(
            "INSERT INTO buildsets (external_idstring, reason, submitted_at, complete, \
             parent_buildid, parent_relationship, scheduler) \
             VALUES ($1, $2, $3, 0, $4, $5, $6) RETURNING id",
            vec![
                spec.external_idstring.clone().into(),
                spec.reason.as_str().into(),
                submitted_at.into(),
                spec.parent_buildid.into(),
                spec.parent_relationship.clone().into(),
                spec.scheduler.as_str().into(),
            ],
        );
        for ss in &spec.new_sourcestamps {
            batch
                .push(
                    "INSERT INTO sourcestamps (branch, revision, repository, codebase, project, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    vec![
                        ss.branch.clone().into(),
                        ss.revision.clone().into(),
                        ss.repository.as_str().into(),
                        ss.codebase.as_str().into(),
                        ss.project.as_str().into(),
                        submitted_at.into(),
                    ],
                )
                .push(
                    format!(
                        "INSERT INTO buildset_sourcestamps (buildsetid, sourcestampid) \
                         VALUES ({bsid}, {})",
                        self.inserted_id("sourcestamps")
                    ),
                    vec![],
                );
        }
        for &ssid in &spec.sourcestamp_ids {
            batch.push(
                format!(
                    "INSERT INTO buildset_sourcestamps (buildsetid, sourcestampid) \
                     VALUES ({bsid}, $1)"
                ),
                vec![ssid.into()],
            );
        }
        let properties = super::property_rows(&spec.properties);
        // One statement for many rows: a statement costs more than a row.
        for chunk in properties.chunks(super::ROWS_PER_INSERT) {
            let rows =
                super::values_placeholders(chunk.len(), 0, 3).replace('(', &format!("({bsid}, "));
            let sql = format!(
                "INSERT INTO buildset_properties (buildsetid, name, value, source) VALUES {rows}"
            );
            let params = chunk
                .iter()
                .flat_map(|(name, value, source)| {
                    [(*name).into(), value.as_str().into(), (*source).into()]
                })
                .collect();
            batch.push(sql, params);
        }
        for &builderid in &spec.builder_ids {
            batch.push(
                format!(
                    "INSERT INTO buildrequests (buildsetid, builderid, priority, complete, \
                     submitted_at, waited_for) VALUES ({bsid}, $1, $2, 0, $3, $4) \
                     RETURNING id, buildsetid, builderid, priority, claimed_at, \
                     claimed_by_masterid, complete, results, submitted_at, complete_at, \
                     waited_for"
                ),
                vec![
                    builderid.into(),
                    spec.priority.into(),
                    submitted_at.into(),
                    (spec.waited_for as i64).into(),
                ],
            );
        }
        let mut rows = batch.run(self).await?.into_iter().flatten();
        let bsid: i64 = rows
            .next()
            .ok_or_else(|| DbError::NotFound("the new buildset".into()))?
            .try_get(0)?;
        let request_rows: Vec<_> = rows.collect();
        let mut brids = BTreeMap::new();
        for row in &request_rows {
            brids.insert(row.try_get(2)?, row.try_get(0)?);
        }
        Ok(AddedBuildset {
            bsid,
            brids,
            request_rows,
        })
    }

    /// The properties of a buildset, with their sources.
    pub async fn buildset_properties(&self, bsid: i64) -> DbResult<Properties> {
        let rows = sqlx::query(BUILDSET_PROPERTIES)
            .bind(bsid)
            .fetch_all(&self.pool)
            .await?;
        properties_of(&rows)
    }
}

/// The properties of buildset `$1`, as [`properties_of`] reads them.
pub const BUILDSET_PROPERTIES: &str =
    "SELECT name, value, source FROM buildset_properties WHERE buildsetid = $1";

/// Properties from `(name, JSON value, source)` rows.
pub fn properties_of(rows: &[sqlx::any::AnyRow]) -> DbResult<Properties> {
    let rows = rows
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect::<DbResult<Vec<_>>>()?;
    Ok(super::properties_from_rows(rows))
}
