//! The audit log on disk: one chain shared by every keygate process that appends to it
//! (`keygate start` and any number of `keygate run` sessions), rotated by size.
//!
//! Each batch is appended under an exclusive `flock` on `audit.jsonl.lock`, a file that
//! is never renamed (a lock on `audit.jsonl` itself would stay on the old file when
//! another process rotates it). Under the lock the writer reopens `audit.jsonl` if
//! another process rotated it, reads the last line's hash from the file's end (or knows
//! it, when the file is as long as its own last write left it), rotates when the batch
//! would take the file past `max_bytes`, and appends the batch in one `write`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::Event;
use super::chain::{Chain, Link, REASON_ROTATED, Tail, read_tail};

/// Default size past which `audit.jsonl` is rotated: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Default number of files kept, `audit.jsonl` included.
pub const DEFAULT_KEEP: u32 = 5;

/// `audit:` in keygate.yaml: when the log is rotated and how many files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// `audit.jsonl` is rotated before a write would take it past this size (default
    /// 64 MiB); a single batch larger than this still goes into one file.
    pub max_bytes: u64,
    /// Files kept, `audit.jsonl` included (default 5: `audit.jsonl` and
    /// `audit.jsonl.1` to `audit.jsonl.4`); the oldest is deleted.
    pub keep: u32,
}

impl Default for Rotation {
    fn default() -> Rotation {
        Rotation {
            max_bytes: DEFAULT_MAX_BYTES,
            keep: DEFAULT_KEEP,
        }
    }
}

pub use crate::home::rotated;

/// `audit.jsonl.lock`: held while a batch is appended.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The files of a log, oldest first: `audit.jsonl.N` … `audit.jsonl.1`, `audit.jsonl`
/// (the rotated ones while they exist without a gap).
pub fn chain_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..)
        .map(|n| rotated(path, n))
        .take_while(|p| p.is_file())
        .collect();
    files.reverse();
    files.push(path.to_path_buf());
    files
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true).read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, crate::home::FILE_MODE);
    options.open(path)
}

/// Identifies a file across renames (device and inode).
#[cfg(unix)]
pub fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
pub fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.len(), 0)
}

/// An exclusive advisory lock, released on drop.
struct Locked<'a>(&'a File);

impl<'a> Locked<'a> {
    #[cfg(unix)]
    fn exclusive(file: &'a File) -> io::Result<Locked<'a>> {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: flock on a descriptor this File owns for the guard's lifetime.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Locked(file));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    #[cfg(not(unix))]
    fn exclusive(file: &'a File) -> io::Result<Locked<'a>> {
        Ok(Locked(file))
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: as above; unlocking a lock this guard took.
            unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

/// What this writer left at the end of the file after its last write.
struct Known {
    id: (u64, u64),
    len: u64,
    link: Link,
}

/// Appends chained batches to a log file shared with other processes.
pub struct FileSink {
    path: PathBuf,
    lock: File,
    rotation: Rotation,
    file: File,
    known: Option<Known>,
}

impl FileSink {
    /// Opens (creating, 0600) the log and its lock file.
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<FileSink> {
        let lock = open_append(&lock_path(path))?;
        let file = open_append(path)?;
        Ok(FileSink {
            path: path.to_path_buf(),
            lock,
            rotation,
            file,
            known: None,
        })
    }

    /// Appends `events` as one write, under the lock.
    pub fn append(&mut self, events: &[std::sync::Arc<Event>]) -> io::Result<()> {
        let lock = self.lock.try_clone()?;
        let _locked = Locked::exclusive(&lock)?;
        self.reopen_if_rotated()?;
        let meta = self.file.metadata()?;
        let (id, len) = (identity(&meta), meta.len());
        let tail = match &self.known {
            Some(k) if k.id == id && k.len == len => Tail::Chained(k.link),
            _ => read_tail(&mut self.file, len)?,
        };
        let newline = matches!(
            tail,
            Tail::Unchained {
                complete: false,
                ..
            }
        );
        let (mut out, mut last) = lines(tail, newline, None, events)?;
        let mut len = len;
        if len > 0 && len + out.len() as u64 > self.rotation.max_bytes {
            // The new file begins with a marker linked to the old file's last line.
            (out, last) = lines(tail, false, Some(REASON_ROTATED), events)?;
            self.rotate()?;
            len = 0;
        }
        self.file.write_all(&out)?;
        let id = identity(&self.file.metadata()?);
        self.known = last.map(|link| Known {
            id,
            len: len + out.len() as u64,
            link,
        });
        Ok(())
    }

    fn reopen_if_rotated(&mut self) -> io::Result<()> {
        let current = std::fs::metadata(&self.path).map(|m| identity(&m)).ok();
        if current != Some(identity(&self.file.metadata()?)) {
            self.file = open_append(&self.path)?;
            self.known = None;
        }
        Ok(())
    }

    /// `audit.jsonl.K-1` is deleted, each `.N` becomes `.N+1`, `audit.jsonl` becomes
    /// `.1`, and a new `audit.jsonl` is opened.
    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.rotation.keep.max(1);
        let oldest = rotated(&self.path, keep.saturating_sub(1).max(1));
        if keep == 1 {
            std::fs::remove_file(&self.path)?;
        } else {
            remove_if_present(&oldest)?;
            for n in (1..keep - 1).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.file = open_append(&self.path)?;
        self.known = None;
        Ok(())
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The lines of `events` chained after `tail`: after a newline that ends a cut-off
/// line when `newline`, after a marker when `marker`. Returns them and the chain's end.
fn lines(
    tail: Tail,
    newline: bool,
    marker: Option<&str>,
    events: &[std::sync::Arc<Event>],
) -> io::Result<(Vec<u8>, Option<Link>)> {
    let mut out = Vec::new();
    if newline {
        out.push(b'\n');
    }
    let mut chain = Chain::after(tail);
    if let Some(reason) = marker {
        chain.marker(reason, &mut out)?;
    }
    for event in events {
        chain.push(event.as_ref(), &mut out)?;
    }
    Ok((out, chain.last()))
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
