//! The transfer steps: the local worker shares the master's file system, so a transfer is a
//! copy between the worker's build directory and the master's; a remote worker's goes over
//! its connection in blocks (a directory as a tar archive). CopyDirectory runs on the worker.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::shell::{plain_shell, Capture};
use super::{StepOutcome, StepRun};
use crate::config::build::{
    CopyDirectory, DirectoryUpload, DownloadSource, FileDownload, FileMode, FileUpload,
    MultipleFileUpload, StringDownload,
};
use crate::model::BuildResult;
use crate::process::{CommandLine, Outcome};
use crate::workers::PathKind;

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
        let sent = self
            .upload_file(
                &source,
                &dest,
                step.maxsize,
                step.blocksize,
                step.mode,
                step.keepstamp,
            )
            .await?;
        self.transferred(sent).await
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
            let file = std::fs::File::open(&source)
                .map_err(|e| format!("cannot read {}: {e}", source.display()))?;
            let mode = step.mode.as_ref().map(|mode| mode.0);
            let sent = build
                .worker
                .download(Box::new(file), &dest, step.maxsize, step.blocksize, mode)
                .await?;
            return self.transferred(sent).await;
        }
        let copied = copy(&source, &dest, step.maxsize, step.mode, false).await?;
        self.transferred(copied).await
    }

    /// DirectoryUpload: the worker's directory unpacked into the master's `masterdest`.
    pub async fn directory_upload(&self, step: &DirectoryUpload) -> Result<StepOutcome, String> {
        let build = self.build;
        let source = build
            .workdir(self.config)
            .await?
            .join(build.render_string(&step.workersrc).await?);
        let dest = build
            .ctx
            .basedir
            .join(build.render_string(&step.masterdest).await?);
        let sent = build
            .worker
            .upload_directory(&source, &dest, step.maxsize, step.blocksize, step.compress)
            .await?;
        self.transferred(sent).await
    }

    /// MultipleFileUpload: each source (or each match of each pattern) into `masterdest`
    /// under its own name, files as FileUpload and directories as DirectoryUpload; the first
    /// that fails ends the step. Nothing to upload is SKIPPED, as in Buildbot.
    pub async fn multiple_upload(&self, step: &MultipleFileUpload) -> Result<StepOutcome, String> {
        let build = self.build;
        let workdir = build.workdir(self.config).await?;
        let sources = match build.render(&step.workersrcs).await? {
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
            Value::Null => Vec::new(),
            Value::String(s) => vec![s],
            other => vec![other.to_string()],
        };
        let mut paths = Vec::new();
        for source in sources {
            let path = workdir.join(source);
            if step.glob {
                paths.extend(build.worker.glob(&path).await?);
            } else {
                paths.push(path);
            }
        }
        if paths.is_empty() {
            self.note("stdio", "no file to upload").await?;
            return Ok(StepOutcome::of(BuildResult::Skipped));
        }
        let masterdest = build
            .ctx
            .basedir
            .join(build.render_string(&step.masterdest).await?);
        let mut said = String::new();
        let mut last = Outcome::Exited(0);
        for path in paths {
            let Some(name) = path.file_name() else {
                said.push_str(&format!(
                    "{}: no file name to upload it as\n",
                    path.display()
                ));
                last = Outcome::Exited(1);
                break;
            };
            let dest = masterdest.join(name);
            let (outcome, text) = match build.worker.kind(&path).await? {
                Some(PathKind::File) => {
                    self.upload_file(
                        &path,
                        &dest,
                        step.maxsize,
                        step.blocksize,
                        step.mode,
                        step.keepstamp,
                    )
                    .await?
                }
                Some(PathKind::Directory) => {
                    build
                        .worker
                        .upload_directory(&path, &dest, step.maxsize, step.blocksize, step.compress)
                        .await?
                }
                _ => (
                    Outcome::Exited(1),
                    format!("{}: not a directory or file\n", path.display()),
                ),
            };
            said.push_str(&text);
            last = outcome;
            if last != Outcome::Exited(0) {
                break;
            }
        }
        self.transferred((last, said)).await
    }

    /// StringDownload, JSONStringDownload and JSONPropertiesDownload.
    pub async fn string_download(&self, step: &StringDownload) -> Result<StepOutcome, String> {
        let build = self.build;
        let bytes = match &step.source {
            DownloadSource::String(s) => build.render_string(s).await?.into_bytes(),
            DownloadSource::Json(o) => python_json(&build.render(o).await?),
            DownloadSource::Properties => {
                let properties: serde_json::Map<String, Value> = build
                    .properties()
                    .values()
                    .map(|(name, value)| (name.to_string(), value.clone()))
                    .collect();
                let sourcestamps: Vec<Value> = build
                    .sourcestamps
                    .iter()
                    .map(|ss| {
                        json!({
                            "branch": ss.branch,
                            "codebase": ss.codebase,
                            "project": ss.project,
                            "repository": ss.repository,
                            "revision": ss.revision,
                        })
                    })
                    .collect();
                python_json(&json!({"properties": properties, "sourcestamps": sourcestamps}))
            }
        };
        let dest = build
            .workdir(self.config)
            .await?
            .join(build.render_string(&step.workerdest).await?);
        let mode = step.mode.map(|mode| mode.0);
        let sent = build
            .worker
            .download(
                Box::new(std::io::Cursor::new(bytes)),
                &dest,
                step.maxsize,
                step.blocksize,
                mode,
            )
            .await?;
        self.transferred(sent).await
    }

    /// CopyDirectory: `src` copied to `dest` on the worker, both relative to the builder
    /// directory, the copy's output in the step's log.
    pub async fn copy_directory(&self, step: &CopyDirectory) -> Result<StepOutcome, String> {
        let build = self.build;
        let from = PathBuf::from(build.render_string(&step.src).await?);
        let to = PathBuf::from(build.render_string(&step.dest).await?);
        let mut shell = plain_shell(Default::default(), step.timeout, false);
        shell.max_time = step.max_time;
        let described = CommandLine::Argv(vec![
            "cpdir".into(),
            from.display().to_string(),
            to.display().to_string(),
        ]);
        let capture = Capture {
            copy: Some((&from, &to)),
            ..Capture::default()
        };
        let mut stdio = self.log("stdio", true).await?;
        let ran = self
            .run_in_log(&mut stdio, described, &shell, &build.builder_dir, capture)
            .await?;
        stdio.finish().await.map_err(|e| e.to_string())?;
        Ok(StepOutcome::of(ran.results))
    }

    /// One file from the worker to the master: a copy on a LocalWorker, `upload_file` on a
    /// remote one; `mode` is applied to the master's copy.
    async fn upload_file(
        &self,
        source: &Path,
        dest: &Path,
        maxsize: Option<u64>,
        blocksize: u64,
        mode: Option<FileMode>,
        keepstamp: bool,
    ) -> Result<(Outcome, String), String> {
        let worker = &self.build.worker;
        if worker.is_local() {
            return copy(source, dest, maxsize, mode, keepstamp).await;
        }
        let (outcome, said) = worker
            .upload(source, dest, maxsize, blocksize, keepstamp)
            .await?;
        if let (Outcome::Exited(0), Some(mode)) = (&outcome, mode) {
            set_mode(dest, mode).await?;
        }
        Ok((outcome, said))
    }

    /// A transfer's end: what was said in the log, its `rc` as the result.
    async fn transferred(&self, (outcome, said): (Outcome, String)) -> Result<StepOutcome, String> {
        self.note("stdio", &said).await?;
        Ok(StepOutcome::of(match outcome {
            Outcome::Exited(0) => BuildResult::Success,
            Outcome::WorkerLost => BuildResult::Retry,
            Outcome::Interrupted => BuildResult::Cancelled,
            _ => BuildResult::Failure,
        }))
    }
}

/// A transfer on a LocalWorker: a copy on the shared file system. A source that is missing,
/// not a file or over `maxsize` fails with the reason.
async fn copy(
    source: &Path,
    dest: &Path,
    maxsize: Option<u64>,
    mode: Option<FileMode>,
    keepstamp: bool,
) -> Result<(Outcome, String), String> {
    let refused = |why: String| Ok((Outcome::Exited(1), why));
    let meta = match tokio::fs::metadata(source).await {
        Ok(meta) if meta.is_file() => meta,
        Ok(_) => return refused(format!("{} is not a file", source.display())),
        Err(e) => return refused(format!("cannot read {}: {e}", source.display())),
    };
    if let Some(max) = maxsize.filter(|max| meta.len() > *max) {
        return refused(format!(
            "{} is {} bytes, more than maxsize {max}",
            source.display(),
            meta.len()
        ));
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
        set_mode(dest, mode).await?;
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
    Ok((
        Outcome::Exited(0),
        format!(
            "copied {} bytes from {} to {}\n",
            meta.len(),
            source.display(),
            dest.display()
        ),
    ))
}

async fn set_mode(path: &Path, mode: FileMode) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode.0))
        .await
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))
}

/// JSON as Python's `json.dumps` writes it, which Buildbot's JSON downloads use: `", "` and
/// `": "` between items, and every character past ASCII escaped as `\uXXXX`.
fn python_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    serde::Serialize::serialize(value, &mut serializer).expect("a JSON value serializes");
    out
}

struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                writer.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::python_json;

    #[test]
    fn json_downloads_are_written_as_python_writes_them() {
        let value = json!({"a": [1, 2.5, null, true], "b": {"c": "é😀\n"}});
        assert_eq!(
            String::from_utf8(python_json(&value)).unwrap(),
            r#"{"a": [1, 2.5, null, true], "b": {"c": "\u00e9\ud83d\ude00\n"}}"#
        );
    }
}
