//! Where a build's commands run: on the master's machine (the LocalWorker) or on a remote
//! `buildbot-worker` over Buildbot's msgpack-over-WebSocket protocol. Steps see one
//! [`WorkerLink`] and never know which.

mod connection;
pub mod protocol;
mod server;
mod transfer;

use std::path::{Path, PathBuf};

use rmpv::Value;
use serde_json::json;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

pub use connection::{CommandEvent, Connection, RemoteError};
pub use server::{bind, serve};

use crate::process::{self, Chunk, CommandLine, CommandSpec, Outcome};

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
                if let Err(e) = tokio::fs::create_dir_all(&spec.workdir).await {
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
                Ok(simple_command(connection, "mkdir", args).await)
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
                Ok(simple_command(connection, "rmdir", args).await)
            }
        }
    }

    /// Whether a path exists on the worker.
    pub async fn exists(&self, path: &Path) -> Result<bool, String> {
        match self {
            WorkerLink::Local => Ok(tokio::fs::try_exists(path).await.unwrap_or(false)),
            WorkerLink::Remote(connection) => {
                let args = json!({ "path": absolute(connection, path) });
                match simple_command(connection, "stat", args).await {
                    Outcome::Exited(rc) => Ok(rc == 0),
                    Outcome::WorkerLost => Err("the worker's connection is lost".into()),
                    other => Err(format!("stat {} failed: {other:?}", path.display())),
                }
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
        let (outcome, said) =
            transfer_command(connection, "upload_file", &args, &mut |op, message| {
                writer.handle(op, message)
            })
            .await;
        if outcome != Outcome::Exited(0) {
            // No half-written file is left behind on the master.
            let _ = std::fs::remove_file(master_dest);
        }
        Ok((outcome, said))
    }

    /// FileDownload to a remote worker: `download_file` asks for `master_src` in blocks.
    pub async fn download(
        &self,
        master_src: &Path,
        worker_dest: &Path,
        maxsize: Option<u64>,
        blocksize: u64,
        mode: Option<u32>,
    ) -> Result<(Outcome, String), String> {
        let connection = self.remote()?;
        let file = std::fs::File::open(master_src)
            .map_err(|e| format!("cannot read {}: {e}", master_src.display()))?;
        let mut reader = transfer::Reader::new(file);
        let args = json!({
            "path": absolute(connection, worker_dest),
            "maxsize": maxsize,
            "blocksize": blocksize,
            "mode": mode,
        });
        Ok(
            transfer_command(connection, "download_file", &args, &mut |op, message| {
                reader.handle(op, message)
            })
            .await,
        )
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

/// A command whose only report is its `rc`.
async fn simple_command(connection: &Connection, name: &str, args: serde_json::Value) -> Outcome {
    transfer_command(
        connection,
        name,
        &args,
        &mut |_, _| Err("unexpected".into()),
    )
    .await
    .0
}

/// A command answering the worker's transfer requests with `transfers`; its outcome and
/// the text the worker sent (header and stderr lines).
async fn transfer_command(
    connection: &Connection,
    name: &str,
    args: &serde_json::Value,
    transfers: &mut TransferHandler<'_>,
) -> (Outcome, String) {
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
    tokio::join!(command, collect)
}

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
    remote_command(connection, "shell", &args, sink, interrupt, None).await
}

/// Starts a command on the worker and turns its updates into chunks until it completes.
async fn remote_command(
    connection: &Connection,
    name: &str,
    args: &serde_json::Value,
    sink: Sender<Chunk>,
    interrupt: CancellationToken,
    mut transfers: Option<&mut TransferHandler<'_>>,
) -> Outcome {
    let (command_id, mut events) = match connection
        .start_command(name, protocol::from_json(args))
        .await
    {
        Ok(started) => started,
        Err(RemoteError::Lost) => return Outcome::WorkerLost,
        Err(RemoteError::Exception(why)) => return Outcome::SpawnFailed(why),
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
            None => return Outcome::WorkerLost,
            Some(CommandEvent::Complete(failure)) => {
                return match (interrupted, rc, failure) {
                    (true, _, _) => Outcome::Interrupted,
                    (_, _, Some(failure)) => Outcome::SpawnFailed(failure),
                    (_, Some(rc), None) => Outcome::Exited(rc),
                    (_, None, None) => Outcome::Lost("the worker sent no rc".into()),
                };
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
                        _ => continue,
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
