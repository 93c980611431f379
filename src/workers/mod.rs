//! Where a build's commands run: on the master's machine (the LocalWorker) or on a remote
//! `buildbot-worker` over Buildbot's msgpack-over-WebSocket protocol. Steps see one
//! [`WorkerLink`] and never know which.

mod connection;
pub mod protocol;
mod quick_ack;
mod server;
mod transfer;

use std::path::{Path, PathBuf};

use rmpv::Value;
use serde_json::json;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

pub use connection::{CommandEvent, Connection, RemoteError};
pub use server::{bind, serve};

use crate::config::build::Compression;
use crate::process::{self, Chunk, CommandLine, CommandSpec, Outcome};

/// What a path on a worker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    File,
    Directory,
    /// A link, device, socket or pipe: nothing a transfer takes.
    Other,
}

impl PathKind {
    /// From a Unix `st_mode` (of what a link points to, as Python's `os.stat` reads it).
    fn of_mode(mode: u32) -> PathKind {
        match mode & 0o170000 {
            0o100000 => PathKind::File,
            0o040000 => PathKind::Directory,
            _ => PathKind::Other,
        }
    }
}

/// How a build reaches its worker.
#[derive(Clone)]
pub enum WorkerLink {
    /// Commands run as processes of the master.
    Local,
    /// Commands run on the worker at the other end of this connection.
    Remote(Connection),
}

impl WorkerLink {
    /// Runs a command in `spec.workdir` (made if missing), streaming its output into
    /// `sink` until it ends or `interrupt` is cancelled.
    pub async fn run(
        &self,
        spec: &CommandSpec,
        sink: Sender<Chunk>,
        interrupt: CancellationToken,
    ) -> Outcome {
        match self {
            WorkerLink::Local => {
                // On this thread: a directory that exists costs a syscall, less than the
                // two thread switches of tokio's blocking pool.
                if let Err(e) = std::fs::create_dir_all(&spec.workdir) {
                    return Outcome::SpawnFailed(format!(
                        "cannot create the directory {}: {e}",
                        spec.workdir.display()
                    ));
                }
                process::run(spec, sink, interrupt).await
            }
            WorkerLink::Remote(connection) => run_remote(connection, spec, sink, interrupt).await,
        }
    }

    /// Makes a directory (and its parents) on the worker.
    pub async fn make_dir(&self, dir: &Path) -> Result<Outcome, String> {
        match self {
            WorkerLink::Local => tokio::fs::create_dir_all(dir)
                .await
                .map(|()| Outcome::Exited(0))
                .map_err(|e| format!("cannot create {}: {e}", dir.display())),
            WorkerLink::Remote(connection) => {
                let args = json!({ "paths": [absolute(connection, dir)] });
                Ok(file_command(connection, "mkdir", &args, &mut no_transfers)
                    .await
                    .0)
            }
        }
    }

    /// Removes a directory tree on the worker; a missing one is no error.
    pub async fn remove_dir(&self, dir: &Path) -> Result<Outcome, String> {
        match self {
            WorkerLink::Local => match tokio::fs::remove_dir_all(dir).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(format!("cannot remove {}: {e}", dir.display()))
                }
                _ => Ok(Outcome::Exited(0)),
            },
            WorkerLink::Remote(connection) => {
                let args = json!({ "paths": [absolute(connection, dir)], "logEnviron": false });
                Ok(file_command(connection, "rmdir", &args, &mut no_transfers)
                    .await
                    .0)
            }
        }
    }

    /// What is at `path` on the worker, `None` when nothing is.
    pub async fn kind(&self, path: &Path) -> Result<Option<PathKind>, String> {
        match self {
            WorkerLink::Local => match tokio::fs::metadata(path).await {
                Ok(meta) => Ok(Some(PathKind::of_mode(
                    std::os::unix::fs::MetadataExt::mode(&meta),
                ))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("cannot stat {}: {e}", path.display())),
            },
            WorkerLink::Remote(connection) => {
                let args = json!({ "path": absolute(connection, path) });
                let (outcome, _, reports) =
                    file_command(connection, "stat", &args, &mut no_transfers).await;
                match outcome {
                    // `stat` answers `os.stat`'s tuple, the mode first; its rc is the errno.
                    Outcome::Exited(0) => Ok(reports
                        .iter()
                        .find(|(key, _)| key == "stat")
                        .and_then(|(_, stat)| stat.as_array()?.first()?.as_u64())
                        .map(|mode| PathKind::of_mode(mode as u32))),
                    Outcome::Exited(_) => Ok(None),
                    Outcome::WorkerLost => Err("the worker's connection is lost".into()),
                    other => Err(format!("stat {} failed: {other:?}", path.display())),
                }
            }
        }
    }

    /// Whether a path exists on the worker.
    pub async fn exists(&self, path: &Path) -> Result<bool, String> {
        self.kind(path).await.map(|kind| kind.is_some())
    }

    /// The paths matching a pattern on the worker (Python's `glob`, `**` included), sorted.
    pub async fn glob(&self, pattern: &Path) -> Result<Vec<PathBuf>, String> {
        let mut found = match self {
            WorkerLink::Local => {
                let pattern = pattern.to_string_lossy();
                glob::glob(&pattern)
                    .map_err(|e| format!("bad pattern {pattern}: {e}"))?
                    .filter_map(Result::ok)
                    .collect::<Vec<_>>()
            }
            WorkerLink::Remote(connection) => {
                let args = json!({ "path": absolute(connection, pattern) });
                let (outcome, said, reports) =
                    file_command(connection, "glob", &args, &mut no_transfers).await;
                if outcome != Outcome::Exited(0) {
                    return Err(format!(
                        "glob {} failed: {outcome:?} {said}",
                        pattern.display()
                    ));
                }
                reports
                    .iter()
                    .filter(|(key, _)| key == "files")
                    .filter_map(|(_, files)| files.as_array())
                    .flatten()
                    .map(|file| PathBuf::from(protocol::text(file)))
                    .collect()
            }
        };
        found.sort();
        Ok(found)
    }

    /// CopyDirectory: `cp -R -P -p -v FROM TO` as buildbot-worker's `cpdir` runs it, with
    /// `spec`'s limits; both paths relative to `spec.workdir` (the builder directory).
    pub async fn copy_dir(
        &self,
        spec: &CommandSpec,
        from: &Path,
        to: &Path,
        sink: Sender<Chunk>,
        interrupt: CancellationToken,
    ) -> Outcome {
        match self {
            WorkerLink::Local => {
                if let Some(parent) = spec.workdir.join(to).parent() {
                    if let Err(e) = tokio::fs::create_dir_all(parent).await {
                        return Outcome::SpawnFailed(format!(
                            "cannot create the directory {}: {e}",
                            parent.display()
                        ));
                    }
                }
                let argv = ["cp", "-R", "-P", "-p", "-v"]
                    .into_iter()
                    .map(String::from)
                    .chain([from, to].map(|p| p.to_string_lossy().into_owned()))
                    .collect();
                let spec = CommandSpec {
                    command: CommandLine::Argv(argv),
                    ..spec.clone()
                };
                self.run(&spec, sink, interrupt).await
            }
            WorkerLink::Remote(connection) => {
                let args = json!({
                    "from_path": absolute(connection, &spec.workdir.join(from)),
                    "to_path": absolute(connection, &spec.workdir.join(to)),
                    "timeout": spec.timeout.map(|t| t.as_secs()),
                    "maxTime": spec.max_time.map(|t| t.as_secs()),
                    "logEnviron": spec.log_environ,
                });
                remote_command(connection, "cpdir", &args, sink, interrupt, None)
                    .await
                    .0
            }
        }
    }

    /// Whether the worker went away (a LocalWorker never does).
    pub fn is_lost(&self) -> bool {
        matches!(self, WorkerLink::Remote(connection) if connection.is_closed())
    }

    /// FileUpload on a remote worker: `upload_file` sends the file in blocks, written to
    /// `master_dest` as they come. The outcome and what the worker said (header, stderr).
    pub async fn upload(
        &self,
        worker_src: &Path,
        master_dest: &Path,
        maxsize: Option<u64>,
        blocksize: u64,
        keepstamp: bool,
    ) -> Result<(Outcome, String), String> {
        let connection = self.remote()?;
        if let Some(parent) = master_dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let file = std::fs::File::create(master_dest)
            .map_err(|e| format!("cannot create {}: {e}", master_dest.display()))?;
        let mut writer = transfer::Writer::new(file, master_dest);
        let args = json!({
            "path": absolute(connection, worker_src),
            "maxsize": maxsize,
            "blocksize": blocksize,
            "keepstamp": keepstamp,
        });
        let (outcome, said, _) =
            file_command(connection, "upload_file", &args, &mut |op, message| {
                writer.handle(op, message)
            })
            .await;
        if outcome != Outcome::Exited(0) {
            // No half-written file is left behind on the master.
            let _ = std::fs::remove_file(master_dest);
        }
        Ok((outcome, said))
    }

    /// A download to the worker: `download_file` asks for `source`'s bytes in blocks. On a
    /// LocalWorker the bytes are written directly, with the same limit and messages.
    pub async fn download(
        &self,
        source: Box<dyn std::io::Read + Send>,
        worker_dest: &Path,
        maxsize: Option<u64>,
        blocksize: u64,
        mode: Option<u32>,
    ) -> Result<(Outcome, String), String> {
        let connection = match self {
            WorkerLink::Remote(connection) => connection,
            WorkerLink::Local => {
                let dest = worker_dest.to_path_buf();
                return tokio::task::spawn_blocking(move || {
                    transfer::write_local(source, &dest, maxsize, mode)
                })
                .await
                .map_err(|e| format!("the download failed: {e}"));
            }
        };
        let mut reader = transfer::Reader::new(source);
        let args = json!({
            "path": absolute(connection, worker_dest),
            "maxsize": maxsize,
            "blocksize": blocksize,
            "mode": mode,
        });
        let (outcome, said, _) =
            file_command(connection, "download_file", &args, &mut |op, message| {
                reader.handle(op, message)
            })
            .await;
        Ok((outcome, said))
    }

    /// DirectoryUpload: the worker packs `worker_src` into a tar archive (compressed as
    /// asked), sends it in blocks, and the master unpacks it into `master_dest`. A
    /// LocalWorker's directory is packed and unpacked the same way, so both give the same
    /// tree and the same `maxsize` rule.
    pub async fn upload_directory(
        &self,
        worker_src: &Path,
        master_dest: &Path,
        maxsize: Option<u64>,
        blocksize: u64,
        compress: Option<Compression>,
    ) -> Result<(Outcome, String), String> {
        let connection = match self {
            WorkerLink::Remote(connection) => connection,
            WorkerLink::Local => {
                let (src, dest) = (worker_src.to_path_buf(), master_dest.to_path_buf());
                return tokio::task::spawn_blocking(move || {
                    transfer::copy_directory_local(&src, &dest, maxsize)
                })
                .await
                .map_err(|e| format!("the upload failed: {e}"));
            }
        };
        let mut writer = transfer::DirectoryWriter::new(master_dest)?;
        let args = json!({
            "path": absolute(connection, worker_src),
            "maxsize": maxsize,
            "blocksize": blocksize,
            "compress": compress.map(Compression::name),
        });
        let (outcome, said, _) =
            file_command(connection, "upload_directory", &args, &mut |op, message| {
                writer.handle(op, message)
            })
            .await;
        Ok((outcome, said))
    }

    fn remote(&self) -> Result<&Connection, String> {
        match self {
            WorkerLink::Remote(connection) => Ok(connection),
            WorkerLink::Local => Err("a LocalWorker's transfers are copies".into()),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, WorkerLink::Local)
    }
}

/// A path below the worker's base directory, as the file commands want it.
fn absolute(connection: &Connection, relative: &Path) -> String {
    let basedir = connection.info()["basedir"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_default();
    basedir.join(relative).to_string_lossy().into_owned()
}

/// For a command that moves no file: a transfer request is refused.
fn no_transfers(op: &str, _: &Value) -> Result<Value, String> {
    Err(format!("'{op}' is not part of this command"))
}

/// One of the worker's file commands (`stat`, `glob`, `mkdir`, the transfers), answering its
/// transfer requests with `transfers`; its outcome, the text the worker sent (header and
/// stderr lines), and its other reports (`stat`, `files`).
async fn file_command(
    connection: &Connection,
    name: &str,
    args: &serde_json::Value,
    transfers: &mut TransferHandler<'_>,
) -> (Outcome, String, Reports) {
    let (sink, mut output) = tokio::sync::mpsc::channel(4);
    let collect = async {
        let mut said = String::new();
        while let Some(chunk) = output.recv().await {
            match chunk {
                Chunk::Header(text) => said.push_str(&text),
                Chunk::Stderr(bytes) | Chunk::Stdout(bytes) => {
                    said.push_str(&String::from_utf8_lossy(&bytes))
                }
                Chunk::LogFile(..) => {}
            }
        }
        said
    };
    let command = remote_command(
        connection,
        name,
        args,
        sink,
        CancellationToken::new(),
        Some(transfers),
    );
    let ((outcome, reports), said) = tokio::join!(command, collect);
    (outcome, said, reports)
}

/// A command's updates that are not output: `[key, value]` pairs as they came.
type Reports = Vec<(String, Value)>;

/// Answers one transfer request (`update_upload_file_write`, `update_read_file`, ...).
type TransferHandler<'a> = dyn FnMut(&str, &Value) -> Result<Value, String> + Send + 'a;

async fn run_remote(
    connection: &Connection,
    spec: &CommandSpec,
    sink: Sender<Chunk>,
    interrupt: CancellationToken,
) -> Outcome {
    let command = match &spec.command {
        CommandLine::Shell(script) => json!(script),
        CommandLine::Argv(argv) => json!(argv),
    };
    let env: serde_json::Map<String, serde_json::Value> = spec
        .env
        .iter()
        .map(|(name, value)| (name.clone(), json!(value)))
        .collect();
    let logfiles: serde_json::Map<String, serde_json::Value> = spec
        .logfiles
        .iter()
        .map(|(name, path, follow)| {
            (
                name.clone(),
                json!({ "filename": path.strip_prefix(&spec.workdir).unwrap_or(path).to_string_lossy(), "follow": follow }),
            )
        })
        .collect();
    let mut args = json!({
        "workdir": spec.workdir.to_string_lossy(),
        "command": command,
        "env": env,
        "want_stdout": true,
        "want_stderr": true,
        "logfiles": logfiles,
        "usePTY": false,
        "logEnviron": spec.log_environ,
        "timeout": spec.timeout.map(|t| t.as_secs()),
        "maxTime": spec.max_time.map(|t| t.as_secs()),
        "sigtermTime": spec.sigterm_time.map(|t| t.as_secs()),
        "interruptSignal": spec.interrupt_signal.to_string().trim_start_matches("SIG"),
    });
    if let Some(stdin) = &spec.initial_stdin {
        args["initial_stdin"] = json!(stdin);
    }
    remote_command(connection, "shell", &args, sink, interrupt, None)
        .await
        .0
}

/// Starts a command on the worker and turns its updates into chunks until it completes;
/// its outcome and the updates that are not output.
async fn remote_command(
    connection: &Connection,
    name: &str,
    args: &serde_json::Value,
    sink: Sender<Chunk>,
    interrupt: CancellationToken,
    mut transfers: Option<&mut TransferHandler<'_>>,
) -> (Outcome, Reports) {
    let mut reports = Reports::new();
    let (command_id, mut events) = match connection
        .start_command(name, protocol::from_json(args))
        .await
    {
        Ok(started) => started,
        Err(RemoteError::Lost) => return (Outcome::WorkerLost, reports),
        Err(RemoteError::Exception(why)) => return (Outcome::SpawnFailed(why), reports),
    };
    let mut rc = None;
    let mut interrupted = false;
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = interrupt.cancelled(), if !interrupted => {
                interrupted = true;
                // Not awaited here: the reader may be waiting for this loop to take an
                // update before it can read the answer. A lost worker shows as `None` below.
                let (connection, command_id) = (connection.clone(), command_id.clone());
                tokio::spawn(async move {
                    let _ = connection.interrupt(&command_id, "the build was stopped").await;
                });
                continue;
            }
        };
        match event {
            None => return (Outcome::WorkerLost, reports),
            Some(CommandEvent::Complete(failure)) => {
                let outcome = match (interrupted, rc, failure) {
                    (true, _, _) => Outcome::Interrupted,
                    (_, _, Some(failure)) => Outcome::SpawnFailed(failure),
                    (_, Some(rc), None) => Outcome::Exited(rc),
                    (_, None, None) => Outcome::Lost("the worker sent no rc".into()),
                };
                return (outcome, reports);
            }
            Some(CommandEvent::Transfer { op, message, reply }) => {
                let result = match transfers.as_mut() {
                    Some(handle) => handle(&op, &message),
                    None => Err(format!("'{op}' is not part of a {name} command")),
                };
                let _ = reply.send(result);
            }
            Some(CommandEvent::Update(updates)) => {
                for (key, value) in updates {
                    let chunk = match key.as_str() {
                        "stdout" => Chunk::Stdout(line_text(&value).into_bytes()),
                        "stderr" => Chunk::Stderr(line_text(&value).into_bytes()),
                        "header" => Chunk::Header(line_text(&value)),
                        "log" => match value.as_array().map(Vec::as_slice) {
                            Some([name, lines]) => {
                                Chunk::LogFile(protocol::text(name), line_text(lines).into_bytes())
                            }
                            _ => continue,
                        },
                        "rc" => {
                            rc = value.as_i64().and_then(|rc| i32::try_from(rc).ok());
                            continue;
                        }
                        "elapsed" => continue,
                        _ => {
                            reports.push((key, value));
                            continue;
                        }
                    };
                    // A step that stopped reading is ending; the worker's rest is dropped.
                    let _ = sink.send(chunk).await;
                }
            }
        }
    }
}

/// The text of an output update: `[text, newline indexes, times]`, or plain text.
fn line_text(value: &Value) -> String {
    match value.as_array().and_then(|parts| parts.first()) {
        Some(text) => protocol::text(text),
        None => protocol::text(value),
    }
}
