//! Snapshots of builds, steps and logs, as status targets and Lua callbacks see them.
//!
//! A snapshot is taken when the event happens (a build finished, a step started) and never
//! changes afterwards, so callbacks can read it from another thread while the build goes on.
//! Two things are too big or too far to copy up front and are read on demand through a
//! trait object: a log's text ([`LogSource`]) and the builder's earlier builds
//! ([`BuildHistory`]).

use std::fmt;
use std::sync::Arc;

use super::{BuildResult, Change, Properties, SourceStamp};

/// A builder as status objects name it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BuilderInfo {
    /// The builder's database id, which web UI URLs use.
    pub id: i64,
    pub name: String,
    pub tags: Vec<String>,
}

/// One build, frozen at the moment it was taken.
#[derive(Clone, Default)]
pub struct BuildInfo {
    pub builder: BuilderInfo,
    /// The build's number within its builder.
    pub number: i64,
    pub reason: String,
    /// `None` while the build runs.
    pub results: Option<BuildResult>,
    /// Buildbot's status text (`state_string`), word by word.
    pub text: Vec<String>,
    /// Seconds since the epoch.
    pub started_at: f64,
    /// Set once the build finished; a build is finished exactly when this is set.
    pub complete_at: Option<f64>,
    pub worker_name: String,
    pub properties: Properties,
    pub sourcestamps: Vec<SourceStamp>,
    pub steps: Vec<StepInfo>,
    /// Where `getPreviousBuild` looks; `None` answers "no previous build".
    pub history: Option<Arc<dyn BuildHistory>>,
}

impl BuildInfo {
    pub fn is_finished(&self) -> bool {
        self.complete_at.is_some()
    }

    /// Every change of every sourcestamp, in order.
    pub fn changes(&self) -> impl Iterator<Item = &Change> {
        self.sourcestamps.iter().flat_map(|ss| ss.changes.iter())
    }

    /// Buildbot's blamelist: the authors of the changes, the authors of any patch, then the
    /// build's `owner`/`owners` properties (forced and try builds), each name once.
    pub fn responsible_users(&self) -> Vec<String> {
        let mut users: Vec<String> = Vec::new();
        let mut add = |name: &str| {
            if !name.is_empty() && !users.iter().any(|u| u == name) {
                users.push(name.to_string());
            }
        };
        self.changes().for_each(|change| add(&change.who));
        self.sourcestamps
            .iter()
            .filter_map(|ss| ss.patch.as_ref()?.author.as_deref())
            .for_each(&mut add);
        for name in ["owner", "owners"] {
            match self.properties.get(name) {
                Some(serde_json::Value::String(owner)) => add(owner),
                Some(serde_json::Value::Array(owners)) => owners
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .for_each(&mut add),
                _ => {}
            }
        }
        users
    }

    /// The logs of every step, step by step.
    pub fn logs(&self) -> impl Iterator<Item = (usize, usize, &LogInfo)> {
        self.steps.iter().enumerate().flat_map(|(step, info)| {
            info.logs
                .iter()
                .enumerate()
                .map(move |(log, info)| (step, log, info))
        })
    }
}

impl fmt::Debug for BuildInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildInfo")
            .field("builder", &self.builder.name)
            .field("number", &self.number)
            .field("results", &self.results)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

/// One step of a build. Its number is its index in [`BuildInfo::steps`], from 0 as in
/// Buildbot's data API.
#[derive(Clone, Debug, Default)]
pub struct StepInfo {
    pub name: String,
    /// `None` until the step finished.
    pub results: Option<BuildResult>,
    pub text: Vec<String>,
    pub started_at: Option<f64>,
    /// Set once the step finished; a step is finished exactly when this is set.
    pub complete_at: Option<f64>,
    pub logs: Vec<LogInfo>,
}

impl StepInfo {
    pub fn is_finished(&self) -> bool {
        self.complete_at.is_some()
    }
}

/// One log of a step: its name, and where its text can be read from.
#[derive(Clone)]
pub struct LogInfo {
    pub name: String,
    pub finished: bool,
    pub source: Arc<dyn LogSource>,
}

impl LogInfo {
    /// The URL-safe name Buildbot derives from the log's name (`forceIdentifier(50, name)`).
    pub fn slug(&self) -> String {
        Self::slug_of(&self.name)
    }

    pub fn slug_of(name: &str) -> String {
        name.chars()
            .take(50)
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

impl fmt::Debug for LogInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogInfo")
            .field("name", &self.name)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// Reads a log's text on demand: logs can be very large, so only a callback that asks for
/// the text (`log:getText()`) pays for reading it.
pub trait LogSource: Send + Sync {
    fn text(&self) -> anyhow::Result<String>;
}

/// Finds earlier builds of a builder (from storage, in the running master).
pub trait BuildHistory: Send + Sync {
    /// The most recent *finished* build of `builder` numbered below `number`.
    fn previous_finished(
        &self,
        builder: &BuilderInfo,
        number: i64,
    ) -> anyhow::Result<Option<Arc<BuildInfo>>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Patch;
    use serde_json::json;

    #[test]
    fn responsible_users_are_change_authors_patch_authors_then_owners_once_each() {
        let change = |who: &str| Change {
            who: who.into(),
            ..Change::default()
        };
        let build = BuildInfo {
            sourcestamps: vec![
                SourceStamp {
                    changes: vec![change("alice"), change("bob"), change("alice")],
                    ..SourceStamp::default()
                },
                SourceStamp {
                    patch: Some(Patch {
                        author: Some("carol".into()),
                        ..Patch::default()
                    }),
                    ..SourceStamp::default()
                },
            ],
            properties: Properties::from_pairs(
                [("owners", json!(["dave", "bob"])), ("owner", json!("erin"))],
                "Build",
            ),
            ..BuildInfo::default()
        };
        assert_eq!(
            build.responsible_users(),
            ["alice", "bob", "carol", "erin", "dave"]
        );
    }

    #[test]
    fn log_slug_replaces_what_urls_cannot_hold() {
        struct Empty;
        impl LogSource for Empty {
            fn text(&self) -> anyhow::Result<String> {
                Ok(String::new())
            }
        }
        let log = LogInfo {
            name: "test results.xml".into(),
            finished: true,
            source: Arc::new(Empty),
        };
        assert_eq!(log.slug(), "test_results_xml");
    }
}
