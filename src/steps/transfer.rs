//! FileUpload and FileDownload: the local worker shares the master's file system, so a
//! transfer is a copy between the worker's build directory and the master's; a remote
//! worker's goes over its connection in blocks.

use std::path::Path;

use super::{StepOutcome, StepRun};
use crate::config::build::{FileDownload, FileMode, FileUpload};
use crate::model::BuildResult;
use crate::process::Outcome;

impl StepRun<'_> {
    pub async fn upload(&self, step: &FileUpload) -> Result<StepOutcome, String> {
        let build = self.build;
        let source = build
            .workdir(self.config)
            .await?
            .join(build.render_string(&step.workersrc).await?);
        let dest = build
            .ctx
            .basedir
            .join(build.render_string(&step.masterdest).await?);
        if !build.worker.is_local() {
            let sent = build
                .worker
                .upload(&source, &dest, step.maxsize, step.blocksize, step.keepstamp)
                .await?;
            return self.transferred(sent).await;
        }
        self.copy(
            &source,
            &dest,
            step.maxsize,
            step.mode.as_ref(),
            step.keepstamp,
        )
        .await
    }

    pub async fn download(&self, step: &FileDownload) -> Result<StepOutcome, String> {
        let build = self.build;
        let source = build
            .ctx
            .basedir
            .join(build.render_string(&step.mastersrc).await?);
        let dest = build
            .workdir(self.config)
            .await?
            .join(build.render_string(&step.workerdest).await?);
        if !build.worker.is_local() {
            let mode = step.mode.as_ref().map(|mode| mode.0);
            let sent = build
                .worker
                .download(&source, &dest, step.maxsize, step.blocksize, mode)
                .await?;
            return self.transferred(sent).await;
        }
        self.copy(&source, &dest, step.maxsize, step.mode.as_ref(), false)
            .await
    }

    async fn copy(
        &self,
        source: &Path,
        dest: &Path,
        maxsize: Option<u64>,
        mode: Option<&FileMode>,
        keepstamp: bool,
    ) -> Result<StepOutcome, String> {
        let meta = match tokio::fs::metadata(source).await {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => {
                return self
                    .refuse(format!("{} is not a file", source.display()))
                    .await
            }
            Err(e) => {
                return self
                    .refuse(format!("cannot read {}: {e}", source.display()))
                    .await
            }
        };
        if let Some(max) = maxsize.filter(|max| meta.len() > *max) {
            return self
                .refuse(format!(
                    "{} is {} bytes, more than maxsize {max}",
                    source.display(),
                    meta.len()
                ))
                .await;
        }
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        tokio::fs::copy(source, dest).await.map_err(|e| {
            format!(
                "cannot copy {} to {}: {e}",
                source.display(),
                dest.display()
            )
        })?;
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            let permissions = std::fs::Permissions::from_mode(mode.0);
            tokio::fs::set_permissions(dest, permissions)
                .await
                .map_err(|e| format!("cannot chmod {}: {e}", dest.display()))?;
        }
        if keepstamp {
            let times = std::fs::FileTimes::new()
                .set_accessed(meta.accessed().map_err(|e| e.to_string())?)
                .set_modified(meta.modified().map_err(|e| e.to_string())?);
            let file = std::fs::File::options()
                .write(true)
                .open(dest)
                .map_err(|e| e.to_string())?;
            file.set_times(times)
                .map_err(|e| format!("cannot keep the times of {}: {e}", dest.display()))?;
        }
        self.note(
            "stdio",
            &format!(
                "copied {} bytes from {} to {}",
                meta.len(),
                source.display(),
                dest.display()
            ),
        )
        .await?;
        Ok(StepOutcome::of(BuildResult::Success))
    }

    /// A remote transfer's end: what the worker said in the log, its `rc` as the result.
    async fn transferred(&self, (outcome, said): (Outcome, String)) -> Result<StepOutcome, String> {
        self.note("stdio", &said).await?;
        Ok(StepOutcome::of(match outcome {
            Outcome::Exited(0) => BuildResult::Success,
            Outcome::WorkerLost => BuildResult::Retry,
            _ => BuildResult::Failure,
        }))
    }

    /// A transfer that cannot happen fails the step, with the reason in its log.
    async fn refuse(&self, why: String) -> Result<StepOutcome, String> {
        self.note("stdio", &why).await?;
        Ok(StepOutcome::of(BuildResult::Failure))
    }
}
