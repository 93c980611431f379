//! Watching the files a step names in `logfiles`, as Buildbot's `LogFileWatcher` does: the
//! file is read once it has changed since the command started, and what is appended is
//! streamed as that log's own channel.

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{Chunk, Output, READ_SIZE};

/// What tells a changed file from the one seen at the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    ctime: (i64, i64),
    mtime: (i64, i64),
    size: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            ctime: (meta.ctime(), meta.ctime_nsec()),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            size: meta.size(),
        })
    }
}

pub(super) struct LogFileWatcher {
    name: String,
    path: PathBuf,
    /// Only what is appended after the start, rather than the whole file once it changes.
    follow: bool,
    initial: Option<FileStamp>,
    file: Option<File>,
}

impl LogFileWatcher {
    /// Records how the file looks now, before the command starts.
    pub(super) fn new(name: &str, path: PathBuf, follow: bool) -> Self {
        let initial = FileStamp::of(&path);
        Self {
            name: name.to_owned(),
            path,
            follow,
            initial,
            file: None,
        }
    }

    /// Streams what the file gained since the last poll; true when something was sent.
    pub(super) async fn poll(&mut self, out: &Output<'_>) -> bool {
        if self.file.is_none() && !self.open_if_changed().await {
            return false;
        }
        let Some(file) = self.file.as_mut() else {
            return false;
        };
        match Self::read_new(&self.name, file, out).await {
            Ok(sent) => sent,
            Err(error) => {
                tracing::warn!(logfile = %self.path.display(), %error, "cannot read watched log file");
                false
            }
        }
    }

    async fn open_if_changed(&mut self) -> bool {
        let now = FileStamp::of(&self.path);
        if now == self.initial {
            return false;
        }
        let Some(now) = now else {
            // Deleted since the start: whatever comes next is a new file.
            self.initial = None;
            return false;
        };
        let mut file = match File::open(&self.path).await {
            Ok(file) => file,
            Err(error) => {
                tracing::debug!(logfile = %self.path.display(), %error, "watched log file not readable yet");
                return false;
            }
        };
        let start = match self.initial {
            Some(initial) if self.follow && initial.size <= now.size => initial.size,
            _ => 0,
        };
        if let Err(error) = file.seek(SeekFrom::Start(start)).await {
            tracing::warn!(logfile = %self.path.display(), %error, "cannot seek in watched log file");
            return false;
        }
        self.file = Some(file);
        true
    }

    /// Reads up to the size the file has now, so a file growing as fast as it is read cannot
    /// hold the runner here.
    async fn read_new(name: &str, file: &mut File, out: &Output<'_>) -> std::io::Result<bool> {
        let end = file.metadata().await?.len();
        let mut position = file.stream_position().await?;
        let mut buffer = vec![0; READ_SIZE];
        let mut sent = false;
        while position < end {
            let want = READ_SIZE.min((end - position) as usize);
            let read = file.read(&mut buffer[..want]).await?;
            if read == 0 {
                break;
            }
            position += read as u64;
            out.send(Chunk::LogFile(name.to_owned(), buffer[..read].to_vec()))
                .await;
            sent = true;
        }
        Ok(sent)
    }
}
