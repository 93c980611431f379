//! Build steps as they run: each step kind of `config::build::StepKind` turns into work on
//! the build's worker directory, its logs, and the build's properties.

mod log;
mod shell;
mod source;
mod transfer;
mod trigger;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use log::LogWriter;

use crate::config::build::{StepConfig, StepKind};
use crate::data::builds::LogEnd;
use crate::model::{BuildResult, Properties, SourceStamp};
use crate::runtime::Context;
use crate::script::{Arg, RenderData, Renderable};
use crate::workers::WorkerLink;

/// What steps share of the build they run in.
pub struct RunningBuild {
    pub ctx: Context,
    pub buildid: i64,
    pub number: i64,
    pub builderid: i64,
    pub builder_name: String,
    pub worker_name: String,
    /// The builder's directory on the worker; steps run in `workdir` below it. Relative to
    /// the worker's base directory on a remote worker.
    pub builder_dir: PathBuf,
    /// Where the steps' commands run.
    pub worker: WorkerLink,
    pub properties: Mutex<Properties>,
    pub sourcestamps: Vec<SourceStamp>,
    /// The builder's `env`, under every shell step's own.
    pub env: Vec<(String, Renderable)>,
    /// Cancelled when the build is stopped (`stop` through the API, or shutdown's timeout).
    pub stop: CancellationToken,
}

impl RunningBuild {
    pub fn properties(&self) -> Properties {
        self.properties
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_property(&self, name: &str, value: Value, source: &str) {
        self.properties
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set(name, value, source);
    }

    fn render_data(&self) -> RenderData {
        RenderData {
            properties: self.properties(),
            sourcestamps: self.sourcestamps.clone(),
            worker_info: Default::default(),
        }
    }

    /// Renders against the build's properties now. Lua renderers run on the script host;
    /// everything else renders here.
    pub async fn render(&self, renderable: &Renderable) -> Result<Value, String> {
        let data = self.render_data();
        if renderable.needs_lua() {
            self.ctx
                .script
                .render(renderable, data)
                .await
                .map_err(|e| e.to_string())
        } else {
            renderable.render(&data, None).map_err(|e| e.to_string())
        }
    }

    pub async fn render_string(&self, renderable: &Renderable) -> Result<String, String> {
        Ok(match self.render(renderable).await? {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        })
    }

    /// A Lua `fn(props...)` deciding something about a step (`doStepIf`, `hideStepIf`).
    pub async fn decide(
        &self,
        callback: &crate::script::Callback,
        mut args: Vec<Arg>,
    ) -> Result<bool, String> {
        args.push(Arg::Properties(Arc::new(self.render_data())));
        self.ctx
            .script
            .call::<Value>(callback, args)
            .await
            .map(|value| !crate::script::is_falsy(&value))
            .map_err(|e| e.to_string())
    }

    /// The directory a step runs in.
    pub async fn workdir(&self, step: &StepConfig) -> Result<PathBuf, String> {
        let relative = match &step.common.workdir {
            Some(workdir) => self.render_string(workdir).await?,
            None => "build".to_string(),
        };
        Ok(self.builder_dir.join(relative))
    }
}

/// How a step ended: its result and the words the UI shows for it.
#[derive(Clone, Debug, PartialEq)]
pub struct StepOutcome {
    pub results: BuildResult,
    /// Replaces the step's usual summary (`descriptionDone`), e.g. with the reason it failed.
    pub summary: Option<String>,
}

impl StepOutcome {
    pub fn of(results: BuildResult) -> StepOutcome {
        StepOutcome {
            results,
            summary: None,
        }
    }

    pub fn failed(results: BuildResult, why: impl Into<String>) -> StepOutcome {
        StepOutcome {
            results,
            summary: Some(why.into()),
        }
    }
}

/// One step being run.
pub struct StepRun<'a> {
    pub build: &'a RunningBuild,
    pub config: &'a StepConfig,
    pub stepid: i64,
    /// The stdio log stored with the step ([`StepRun::first_log`]): `(name, id)` until the
    /// step opens it.
    pub first_log: Mutex<Option<(&'static str, i64)>>,
    /// Logs whose command is over, their last lines and end stored with the step's end
    /// (one round trip fewer for each).
    pub ended_logs: Mutex<Vec<LogEnd>>,
}

impl StepRun<'_> {
    /// The name of the stdio log a step of `kind` opens first, which is stored with the step
    /// in its round trip; `None` when that depends on what it runs.
    pub fn first_log(kind: &StepKind) -> Option<&'static str> {
        match kind {
            StepKind::ShellCommand(_)
            | StepKind::Configure(_)
            | StepKind::Compile(..)
            | StepKind::Test(..)
            | StepKind::SetPropertyFromCommand(..)
            | StepKind::MasterShellCommand(_) => Some("stdio"),
            _ => None,
        }
    }

    pub async fn log(&self, name: &str, stdio: bool) -> Result<LogWriter, String> {
        let stored = {
            let mut first = self.first_log.lock().unwrap_or_else(|e| e.into_inner());
            match *first {
                Some((first_name, logid)) if stdio && first_name == name => {
                    *first = None;
                    Some(logid)
                }
                _ => None,
            }
        };
        if let Some(logid) = stored {
            return Ok(LogWriter::stored(&self.build.ctx, self.stepid, name, logid));
        }
        LogWriter::create(&self.build.ctx, self.stepid, name, stdio)
            .await
            .map_err(|e| e.to_string())
    }

    /// Leaves the end of `log` to the step's end.
    pub fn end_log_with_step(&self, log: LogWriter) {
        let mut ended = self.ended_logs.lock().unwrap_or_else(|e| e.into_inner());
        ended.push(log.end());
    }

    /// The logs left to the step's end, in the order they ended.
    pub fn take_ended_logs(&self) -> Vec<LogEnd> {
        let mut ended = self.ended_logs.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut ended)
    }

    /// The first log's id if the step never opened it.
    pub fn unused_first_log(&self) -> Option<i64> {
        let first = self.first_log.lock().unwrap_or_else(|e| e.into_inner());
        first.map(|(_, logid)| logid)
    }

    /// Writes `text` to a text log named `name` (what a step that fails early explains).
    pub async fn note(&self, name: &str, text: &str) -> Result<(), String> {
        let mut log = self.log(name, false).await?;
        log.text('o', text).await.map_err(|e| e.to_string())?;
        log.finish().await.map_err(|e| e.to_string())
    }

    /// Runs the step; any error it meets becomes an EXCEPTION with the reason in a log.
    pub async fn run(&self) -> StepOutcome {
        match self.execute().await {
            Ok(outcome) => outcome,
            Err(why) => {
                tracing::warn!(build = self.build.buildid, step = %self.config.common.name, "step failed: {why}");
                let _ = self.note("err.text", &why).await;
                StepOutcome::failed(
                    BuildResult::Exception,
                    format!("{} (exception)", self.config.common.name),
                )
            }
        }
    }

    async fn execute(&self) -> Result<StepOutcome, String> {
        let build = self.build;
        match &self.config.kind {
            StepKind::SetProperty { property, value } => {
                let name = build.render_string(property).await?;
                let value = build.render(value).await?;
                build.set_property(&name, value, "SetProperty Step");
                Ok(StepOutcome::of(BuildResult::Success))
            }
            StepKind::MakeDirectory { dir } => {
                let dir = build.builder_dir.join(build.render_string(dir).await?);
                Ok(file_command_outcome(build.worker.make_dir(&dir).await?))
            }
            StepKind::RemoveDirectory { dir } => {
                let dir = build.builder_dir.join(build.render_string(dir).await?);
                Ok(file_command_outcome(build.worker.remove_dir(&dir).await?))
            }
            StepKind::ShellCommand(step) | StepKind::Configure(step) => {
                self.shell(step, None, false).await
            }
            StepKind::Compile(step, warnings) => self.shell(step, Some(warnings), false).await,
            StepKind::Test(step, warnings) => self.shell(step, Some(warnings), true).await,
            StepKind::ShellSequence { commands, shell } => self.sequence(commands, shell).await,
            StepKind::SetPropertyFromCommand(step, target) => {
                self.property_from_command(step, target).await
            }
            StepKind::MasterShellCommand(step) => self.master_shell(step).await,
            StepKind::Git(step) => self.git(step).await,
            StepKind::FileUpload(step) => self.upload(step).await,
            StepKind::FileDownload(step) => self.download(step).await,
            StepKind::DirectoryUpload(step) => self.directory_upload(step).await,
            StepKind::MultipleFileUpload(step) => self.multiple_upload(step).await,
            StepKind::StringDownload(step) => self.string_download(step).await,
            StepKind::CopyDirectory(step) => self.copy_directory(step).await,
            StepKind::Trigger(step) => self.trigger(step).await,
        }
    }
}

/// MakeDirectory and RemoveDirectory: the worker's `rc`, or RETRY when it went away.
fn file_command_outcome(outcome: crate::process::Outcome) -> StepOutcome {
    use crate::process::Outcome;
    match outcome {
        Outcome::Exited(0) => StepOutcome::of(BuildResult::Success),
        Outcome::WorkerLost => StepOutcome::of(BuildResult::Retry),
        Outcome::Interrupted => StepOutcome::of(BuildResult::Cancelled),
        _ => StepOutcome::of(BuildResult::Failure),
    }
}
