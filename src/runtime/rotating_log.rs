//! A log file rotated by size, shared by the master's own log and the web server's
//! `http.log`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// A log file rotated by size, as Twisted rotates Buildbot's `twistd.log`: when it would
/// pass `max_bytes`, `FILE.N-1` becomes `FILE.N` ... `FILE` becomes `FILE.1`, keeping `keep`.
pub struct RotatingLog {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: File,
    size: u64,
}

impl RotatingLog {
    /// The size at which Buildbot rotates `twistd.log`.
    pub const DEFAULT_MAX_BYTES: u64 = 10_000_000;
    /// How many rotated files Buildbot keeps.
    pub const DEFAULT_KEEP: usize = 10;

    /// Opens `path` for appending (a restarted master goes on with the same file).
    pub fn open(path: PathBuf, max_bytes: u64, keep: usize) -> anyhow::Result<RotatingLog> {
        let file = Self::append(&path)?;
        let size = file
            .metadata()
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        Ok(RotatingLog {
            path,
            max_bytes,
            keep,
            file,
            size,
        })
    }

    fn append(path: &Path) -> anyhow::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the log {}", path.display()))
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        let _ = std::fs::remove_file(self.rotated(self.keep));
        for n in (1..self.keep).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.rotated(1))?;
        self.file = Self::append(&self.path).map_err(io::Error::other)?;
        self.size = 0;
        Ok(())
    }
}

impl Write for RotatingLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let written = self.file.write(buf)?;
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rotates_by_size_keeping_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("moonbot.log");
        let mut log = RotatingLog::open(path.clone(), 20, 3).unwrap();
        for n in 0..6 {
            // Each line is 10 bytes: two fit in a file.
            log.write_all(format!("line {n:04}\n").as_bytes()).unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path), "line 0004\nline 0005\n");
        assert_eq!(read(&log.rotated(1)), "line 0002\nline 0003\n");
        assert_eq!(read(&log.rotated(2)), "line 0000\nline 0001\n");
        for n in 6..10 {
            log.write_all(format!("line {n:04}\n").as_bytes()).unwrap();
        }
        assert_eq!(read(&path), "line 0008\nline 0009\n");
        assert_eq!(read(&log.rotated(3)), "line 0002\nline 0003\n");
        assert!(
            !log.rotated(4).exists(),
            "only three rotated files are kept"
        );
    }

    #[test]
    fn a_reopened_log_counts_what_it_already_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("moonbot.log");
        std::fs::write(&path, "0123456789012345\n").unwrap();
        let mut log = RotatingLog::open(path.clone(), 20, 2).unwrap();
        log.write_all(b"next\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "next\n");
        assert_eq!(
            std::fs::read_to_string(log.rotated(1)).unwrap(),
            "0123456789012345\n"
        );
    }
}
