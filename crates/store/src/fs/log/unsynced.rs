//! Bytes of a log whose sync failed: written again, or fenced until they
//! are.
//!
//! After a failed `fdatasync` the kernel may already have dropped the dirty
//! pages, and a later successful sync (by any process that opens the file
//! after the error was reported) would then acknowledge lines that sit
//! after bytes that never reached the disk. So an appender whose sync
//! fails takes the log's lock again, writes its own line once more at its
//! offset (which dirties those pages again) and syncs again; only if that
//! succeeds is the append acknowledged. If it fails too, the appender
//! records the range in `events/quarantine/milestone-<id>.unsynced` (one
//! JSON line per range, with the file's inode) before it reports the
//! failure. Every later append, seal and repair checks for that file under
//! the log's lock and first writes those ranges again and syncs them: no
//! line after them is acknowledged until that succeeds. Removing the file
//! afterwards needs no directory sync: if a crash brings it back, its
//! ranges are only written once more.
//!
//! Limit: between a failed sync being reported to its appender and that
//! appender taking the lock again, another process that opened the file
//! after the error was reported can sync and acknowledge a line of its own
//! after the failed bytes. If the machine loses power in that window, that
//! line survives but may be preceded by the lost bytes; readers recover a
//! whole line glued after damaged bytes, so it is still read.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fs::atomic::{ensure_dir, read_opt};
use crate::io::{File, LockMode};

use super::scan;
use super::EventLog;

/// How many lines after its expected offset an appender looks for its
/// own line (only seed lines can land there).
const FIND_LINES: usize = 10_000;

/// One range of a log whose bytes may not be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Range {
    /// Inode of the file the range is in.
    pub ino: u64,
    pub offset: u64,
    pub len: u64,
}

impl EventLog<'_> {
    /// `events/quarantine/milestone-<id>.unsynced`.
    pub(crate) fn unsynced_path(&self) -> PathBuf {
        self.layout
            .quarantine_dir()
            .join(format!("milestone-{}.unsynced", self.id))
    }

    /// Ranges recorded as possibly not on disk (empty when none).
    pub(crate) fn unsynced(&self) -> Result<Vec<Range>> {
        let path = self.unsynced_path();
        let Some(bytes) = read_opt(self.io, &path)? else {
            return Ok(Vec::new());
        };
        // A line torn by a crash while it was recorded names nothing
        // whole; the failed append it belonged to was not acknowledged.
        Ok(bytes
            .split(|&b| b == b'\n')
            .filter_map(|l| serde_json::from_slice::<Range>(l).ok())
            .collect())
    }

    /// Under the live file's lock: write every recorded range of `file`
    /// again and sync it, then forget them. An error means lines after
    /// them must not be acknowledged.
    pub(super) fn heal_unsynced(&self, file: &dyn File, path: &Path) -> Result<()> {
        let ranges = match self.io.metadata(&self.unsynced_path()) {
            Ok(_) => self.unsynced()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("inspect", self.unsynced_path(), e)),
        };
        let ino = file.id().ctx("inspect", path)?.ino;
        let mut rewrote = false;
        for r in ranges.iter().filter(|r| r.ino == ino) {
            rewrite(file, path, r.offset, r.len).map_err(|e| still_failing(path, e))?;
            rewrote = true;
        }
        if rewrote {
            file.sync().map_err(|e| still_failing(path, e))?;
        }
        // Ranges of files that are no longer the live one were sealed
        // into segments (which the seal healed first) or removed.
        match self.io.remove_file(&self.unsynced_path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", self.unsynced_path(), e)),
        }
    }

    /// After the sync of an appended `line` failed with `err`: take the
    /// lock again, write the line again where it is (at `from` or after
    /// seed lines that landed there) and sync again. Ok means the line is
    /// durable now; otherwise the range is recorded for the next writer
    /// and the error returned.
    pub(super) fn resync(
        &self,
        file: &dyn File,
        path: &Path,
        from: u64,
        line: &[u8],
        err: io::Error,
    ) -> Result<()> {
        let failed = Error::io("sync", path, err);
        if file.lock(LockMode::Exclusive).is_err() {
            return Err(failed);
        }
        let result = (|| {
            let len = file.len().ctx("inspect", path)?;
            let at = find_line(file, path, from, len, line)?;
            let (offset, n) = match at {
                Some(at) => (at, line.len() as u64),
                None => (from, len.saturating_sub(from)),
            };
            let again = (|| {
                if at.is_some() {
                    file.write_at(line, offset)?;
                } else {
                    rewrite(file, path, offset, n).map_err(io::Error::other)?;
                }
                file.sync()
            })();
            match again {
                Ok(()) if at.is_some() => Ok(()),
                Ok(()) => Err(failed),
                Err(_) => {
                    let ino = file.id().ctx("inspect", path)?.ino;
                    self.record_unsynced(Range {
                        ino,
                        offset,
                        len: n,
                    })?;
                    Err(failed)
                }
            }
        })();
        let _ = file.unlock();
        result
    }

    fn record_unsynced(&self, range: Range) -> Result<()> {
        let dir = self.layout.quarantine_dir();
        if ensure_dir(self.io, &dir)? {
            let events = self.layout.events();
            self.io.sync_dir(&events).ctx("sync directory", &events)?;
        }
        let path = self.unsynced_path();
        let mut f = self.io.open_append(&path, true).ctx("open", &path)?;
        let mut bytes =
            serde_json::to_vec(&range).map_err(|e| Error::io("encode", &path, e.into()))?;
        bytes.push(b'\n');
        f.write_all(&bytes).ctx("write", &path)?;
        // The record is checked by presence, read by every writer's own
        // process from the page cache; its sync is best effort on a disk
        // that just failed one.
        let _ = f.sync();
        let _ = self.io.sync_dir(&dir);
        Ok(())
    }
}

/// Write the bytes `[offset, offset + len)` of `file` again, as they read.
fn rewrite(file: &dyn File, path: &Path, offset: u64, len: u64) -> Result<()> {
    let mut buf = vec![0u8; scan::SMALL_CHUNK.min(len as usize).max(1)];
    let mut at = offset;
    let end = offset.saturating_add(len);
    while at < end {
        let n = (end - at).min(buf.len() as u64) as usize;
        let got = scan::read_full_at(file, &mut buf[..n], at).ctx("read", path)?;
        if got == 0 {
            break;
        }
        file.write_at(&buf[..got], at).ctx("write", path)?;
        at += got as u64;
    }
    Ok(())
}

/// Where `line` (with its newline) starts at or after `from`; only whole
/// lines are looked at.
fn find_line(
    file: &dyn File,
    path: &Path,
    from: u64,
    len: u64,
    line: &[u8],
) -> Result<Option<u64>> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let mut lines = scan::Lines::new(file, path, from, len, scan::SMALL_CHUNK);
    for _ in 0..FIND_LINES {
        match lines.next_line()? {
            Some((at, l)) if l == body => return Ok(Some(at)),
            Some(_) => {}
            None => break,
        }
    }
    Ok(None)
}

fn still_failing(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::io(
        "sync",
        path,
        io::Error::other(format!(
            "an earlier write to this log did not reach the disk, and writing it again failed: {e}; \
             check the disk (dmesg), then retry (mstate doctor lists the bytes concerned)"
        )),
    )
}
