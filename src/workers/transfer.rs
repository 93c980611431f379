//! The master's side of `upload_file` and `download_file`: the file being written from the
//! worker's blocks, or read into blocks the worker asks for.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rmpv::Value;

use super::protocol::field;

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

/// A download's source on the master.
pub struct Reader {
    file: Option<File>,
}

impl Reader {
    pub fn new(file: File) -> Reader {
        Reader { file: Some(file) }
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
