//! The master's side of `upload_file`, `upload_directory` and `download_file`: the file
//! being written from the worker's blocks, or read into blocks the worker asks for; and the
//! same transfers on a LocalWorker, which shares the master's file system.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rmpv::Value;

use super::protocol::field;
use crate::process::Outcome;

/// An upload's destination on the master.
pub struct Writer {
    file: Option<File>,
    path: PathBuf,
}

impl Writer {
    pub fn new(file: File, path: &Path) -> Writer {
        Writer {
            file: Some(file),
            path: path.to_path_buf(),
        }
    }

    pub fn handle(&mut self, op: &str, message: &Value) -> Result<Value, String> {
        match op {
            "update_upload_file_write" => {
                let data = match field(message, "args") {
                    Some(Value::Binary(bytes)) => bytes.as_slice(),
                    Some(Value::String(text)) => text.as_bytes(),
                    _ => return Err("update_upload_file_write without data".into()),
                };
                let file = self.file.as_mut().ok_or("the file is closed")?;
                file.write_all(data)
                    .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
            }
            "update_upload_file_close" => {
                if let Some(file) = self.file.take() {
                    file.sync_all()
                        .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
                }
            }
            "update_upload_file_utime" => {
                let time = |key| {
                    field(message, key)
                        .and_then(Value::as_f64)
                        .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs.max(0.0)))
                        .ok_or(format!("update_upload_file_utime without {key}"))
                };
                let times = std::fs::FileTimes::new()
                    .set_accessed(time("access_time")?)
                    .set_modified(time("modified_time")?);
                File::options()
                    .write(true)
                    .open(&self.path)
                    .and_then(|file| file.set_times(times))
                    .map_err(|e| format!("cannot set the times of {}: {e}", self.path.display()))?;
            }
            other => return Err(format!("'{other}' is not part of an upload")),
        }
        Ok(Value::Nil)
    }
}

/// A download's source on the master: a file, or bytes a step made.
pub struct Reader {
    file: Option<Box<dyn Read + Send>>,
}

impl Reader {
    pub fn new(source: Box<dyn Read + Send>) -> Reader {
        Reader { file: Some(source) }
    }

    pub fn handle(&mut self, op: &str, message: &Value) -> Result<Value, String> {
        match op {
            "update_read_file" => {
                let length = field(message, "length")
                    .and_then(Value::as_u64)
                    .ok_or("update_read_file without a length")?;
                let file = self.file.as_mut().ok_or("the file is closed")?;
                let mut block = Vec::new();
                file.take(length)
                    .read_to_end(&mut block)
                    .map_err(|e| format!("cannot read: {e}"))?;
                Ok(Value::Binary(block))
            }
            "update_read_file_close" => {
                self.file = None;
                Ok(Value::Nil)
            }
            other => Err(format!("'{other}' is not part of a download")),
        }
    }
}

/// A download on a LocalWorker: `source` written to `dest` (its directory made), as the
/// worker's `download_file` does: at most `maxsize` bytes, more is a failure that keeps the
/// truncated file; `mode` applied. The outcome and the worker-style message.
pub fn write_local(
    mut source: Box<dyn Read + Send>,
    dest: &Path,
    maxsize: Option<u64>,
    mode: Option<u32>,
) -> (Outcome, String) {
    let written = (|| {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = File::create(dest)?;
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        let limit = maxsize.unwrap_or(u64::MAX);
        let copied = std::io::copy(&mut (&mut source).take(limit), &mut file)?;
        let more = copied == limit && source.read(&mut [0u8])? > 0;
        file.sync_all()?;
        Ok::<_, std::io::Error>((copied, more))
    })();
    match written {
        Ok((_, true)) => (
            Outcome::Exited(1),
            format!(
                "Maximum filesize reached, truncating file '{}'",
                dest.display()
            ),
        ),
        Ok((copied, false)) => (
            Outcome::Exited(0),
            format!("wrote {copied} bytes to {}\n", dest.display()),
        ),
        Err(e) => (
            Outcome::Exited(1),
            format!("Cannot open file '{}' for download: {e}", dest.display()),
        ),
    }
}

/// A directory upload's archive, written to a temporary file as the blocks come and
/// unpacked into `dest` when the worker says it is complete.
pub struct DirectoryWriter {
    archive: Option<File>,
    archive_path: PathBuf,
    dest: PathBuf,
}

impl DirectoryWriter {
    pub fn new(dest: &Path) -> Result<DirectoryWriter, String> {
        let archive_path = temporary_archive();
        let archive = File::create(&archive_path)
            .map_err(|e| format!("cannot create {}: {e}", archive_path.display()))?;
        Ok(DirectoryWriter {
            archive: Some(archive),
            archive_path,
            dest: dest.to_path_buf(),
        })
    }

    pub fn handle(&mut self, op: &str, message: &Value) -> Result<Value, String> {
        match op {
            "update_upload_directory_write" => {
                let data = match field(message, "args") {
                    Some(Value::Binary(bytes)) => bytes.as_slice(),
                    Some(Value::String(text)) => text.as_bytes(),
                    _ => return Err("update_upload_directory_write without data".into()),
                };
                let archive = self.archive.as_mut().ok_or("the archive is unpacked")?;
                archive
                    .write_all(data)
                    .map_err(|e| format!("cannot write {}: {e}", self.archive_path.display()))?;
            }
            "update_upload_directory_unpack" => {
                let archive = self.archive.take().ok_or("the archive is unpacked")?;
                drop(archive);
                let (archive, dest) = (&self.archive_path, &self.dest);
                blocking(|| unpack(archive, dest))?;
            }
            other => return Err(format!("'{other}' is not part of a directory upload")),
        }
        Ok(Value::Nil)
    }
}

impl Drop for DirectoryWriter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.archive_path);
    }
}

/// DirectoryUpload on a LocalWorker: `src` packed as the worker packs it, then unpacked
/// into `dest`, so both kinds of worker leave the same tree and apply `maxsize` alike.
pub fn copy_directory_local(src: &Path, dest: &Path, maxsize: Option<u64>) -> (Outcome, String) {
    let archive = temporary_archive();
    let result = (|| {
        let packed = Command::new("tar")
            .arg("-c")
            .arg("-f")
            .arg(&archive)
            .arg("-C")
            .arg(src)
            .arg(".")
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run tar: {e}"))?;
        if !packed.status.success() {
            return Err(format!(
                "Cannot read directory '{}' for upload: {}",
                src.display(),
                String::from_utf8_lossy(&packed.stderr).trim_end()
            ));
        }
        let size = std::fs::metadata(&archive)
            .map_err(|e| e.to_string())?
            .len();
        if let Some(max) = maxsize.filter(|max| size > *max) {
            return Err(format!(
                "Maximum filesize reached: the archive of '{}' is {size} bytes, more than {max}",
                src.display()
            ));
        }
        unpack(&archive, dest)
    })();
    let _ = std::fs::remove_file(&archive);
    match result {
        Ok(()) => (Outcome::Exited(0), format!("sending {}\n", src.display())),
        Err(why) => (Outcome::Exited(1), why),
    }
}

/// Unpacks a tar archive (plain, gzip or bzip2: GNU tar tells them apart) into `dest`. GNU
/// tar keeps members inside `dest`: it drops a leading `/` and refuses `..`.
fn unpack(archive: &Path, dest: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let unpacked = Command::new("tar")
        .arg("-x")
        .arg("-f")
        .arg(archive)
        .arg("-C")
        .arg(dest)
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if unpacked.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cannot unpack the directory into {}: {}",
            dest.display(),
            String::from_utf8_lossy(&unpacked.stderr).trim_end()
        ))
    }
}

/// A fresh path for an archive in transit.
fn temporary_archive() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "moonbot-transfer-{}-{}.tar",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Runs blocking work (unpacking a large archive) without stalling the runtime's other
/// tasks where the runtime allows it.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}
