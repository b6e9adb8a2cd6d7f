//! Appending events, and moving torn tails aside.
//!
//! An append opens the live file, takes its exclusive `flock`, checks the
//! locked file is still the one at the path (retention may have sealed it
//! meanwhile: then it retries on the new file), moves a torn tail to the
//! quarantine, reads the last `seq` and timestamp from the end, writes the
//! whole line with one `write`, unlocks, and syncs it (so the syncs of
//! concurrent appenders overlap).
//!
//! No append is acknowledged while the file's name may not be durable: an
//! empty file may be new, so its directory is synced under the lock before
//! the first line is written, and a file whose first line is mstate's was
//! therefore named durably. A file the seed began (its first line has a
//! whole-second timestamp) cannot be told apart from one never synced, so
//! each append to it syncs the directory too before it is acknowledged.
//! A failed sync is handled by [`super::unsynced`]: the line is written
//! again in place and synced again, or fenced for the next writer.

use std::io;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde_json::Value;

use crate::error::{Error, IoContext, Result};
use crate::fs::atomic::{self, ensure_dir};
use crate::id::EventType;
use crate::io::{File, FileId, LockMode};
use crate::model::{Actor, Event};
use crate::time;

use super::line::{self, Encoder, LineFields, TS_PREFIX};
use super::scan::{self, SMALL_CHUNK};
use super::{EventLog, ORDER_SLACK};

/// How often an append retries when the live file keeps being replaced.
const LOCK_ATTEMPTS: usize = 1000;

/// How often an append numbers its line again because the seed appended
/// meanwhile.
const RENUMBER_ATTEMPTS: usize = 100;

impl EventLog<'_> {
    /// Append one event durably and return it as stored.
    ///
    /// The line gets the next `seq` and a timestamp no earlier than the
    /// last line's. It is on disk when this returns; on error it was not
    /// acknowledged (it may or may not be in the log).
    pub fn append(
        &self,
        actor: &Actor,
        session_id: &str,
        event_type: &EventType,
        data: &Value,
    ) -> Result<Event> {
        let path = self.live_path();
        let fields = LineFields {
            timestamp: "",
            milestone_id: self.id.as_str(),
            session_id,
            event_type: event_type.as_str(),
            data,
            pid: actor.pid,
            user: actor.user(),
            seq: 0,
            host: &actor.host,
        };
        let encoder =
            Encoder::new(&fields).map_err(|e| Error::invalid("event data", e.to_string()))?;
        self.note_clock()?;
        let Some(mut file) = self.lock_live(true)? else {
            return Err(Error::io(
                "open",
                &path,
                io::Error::from(io::ErrorKind::NotFound),
            ));
        };
        let result = self.append_locked(&mut *file, &path, &encoder);
        // Closing the file releases the lock too; an unlock error must not
        // turn a durable append into a reported failure.
        let _ = file.unlock();
        let done = result?;
        // The line's place and seq were fixed by the write under the lock;
        // its sync runs outside it, so appenders' syncs overlap and the
        // filesystem commits several in one flush (group commit). The
        // append is acknowledged only after its own sync, which covers
        // every earlier write to the file.
        if let Err(e) = file.sync() {
            self.resync(&*file, &path, done.offset, &done.line, e)?;
        }
        if done.sync_dir {
            let dir = self.layout.events();
            self.io.sync_dir(&dir).ctx("sync directory", &dir)?;
        }
        let (timestamp, seq) = (done.timestamp, done.seq);
        Ok(Event {
            timestamp,
            milestone_id: self.id.to_string(),
            session_id: Some(session_id.to_string()),
            event_type: event_type.to_string(),
            data: data.clone(),
            pid: Some(i64::from(actor.pid)),
            user: Some(actor.user().to_string()),
            seq: Some(seq),
            host: Some(actor.host.clone()),
        })
    }

    /// Append under the lock: heal bytes an earlier failed sync left,
    /// move a torn tail aside, number the line and write it.
    fn append_locked(
        &self,
        file: &mut dyn File,
        path: &Path,
        encoder: &Encoder,
    ) -> Result<Appended> {
        self.heal_unsynced(&*file, path)?;
        let mut len = file.len().ctx("inspect", path)?;
        let mut tries = 0;
        let (end, timestamp, seq, bytes) = loop {
            let end = scan::complete_end(&*file, 0, len, path)?;
            if end < len {
                self.quarantine(&*file, path, end, len)?;
                file.set_len(end).ctx("truncate", path)?;
                file.sync().ctx("sync", path)?;
            }
            let (last_seq, last_ts) = self.tail_of_live(&*file, path, end)?;
            let seq = last_seq.checked_add(1).ok_or_else(|| Error::Corrupt {
                what: "event log".into(),
                path: path.to_path_buf(),
                detail: "its last seq is the largest number there is".into(),
                hint: None,
            })?;
            let now = time::now();
            let stamp = next_timestamp(last_ts, now);
            let timestamp = time::format_micros(stamp);
            let bytes = encoder.line(&timestamp, seq);
            // The seed appends without the lock: if a line of its landed
            // while this one was numbered, number again after it. This
            // narrows the window in which both get one seq to the gap
            // between this check and the write; only the seed taking the
            // lock would close it.
            let now_len = file.len().ctx("inspect", path)?;
            if now_len == len || tries >= RENUMBER_ATTEMPTS {
                if last_ts.is_some_and(|l| stamp < l) {
                    // The clock is behind the last line by more than the
                    // hold: from now on queries cannot bisect this log.
                    self.mark_unordered(seq, &timestamp)?;
                }
                break (end, timestamp, seq, bytes);
            }
            len = now_len;
            tries += 1;
        };
        // Whether the file's name is durable: a file mstate began starts
        // with an mstate line, written only after the directory was synced
        // with the name in it; an empty file may be new; a file the seed
        // began (or that cannot be told) gets its directory synced by
        // every append before it is acknowledged.
        let sync_dir = if end == 0 {
            let dir = self.layout.events();
            self.io.sync_dir(&dir).ctx("sync directory", &dir)?;
            false
        } else {
            !begun_by_mstate(&*file, path)?
        };
        file.write_all(&bytes).ctx("append to", path)?;
        Ok(Appended {
            timestamp,
            seq,
            offset: len,
            line: bytes,
            sync_dir,
        })
    }

    /// The `seq` and timestamp of the log's last line, reading back from
    /// `end` of the (locked) live file and, if no line there has an
    /// explicit `seq`, from the end of the newest segment.
    fn tail_of_live(
        &self,
        file: &dyn File,
        path: &Path,
        end: u64,
    ) -> Result<(u64, Option<Timestamp>)> {
        let back = scan::walk_back(file, path, 0, end)?;
        if let Some(seq) = back.explicit {
            return Ok((seq.saturating_add(back.count), back.timestamp));
        }
        let live_id = file.id().ctx("inspect", path)?;
        let (seq, ts) = self.newest_segment_tail(live_id)?;
        Ok((seq.saturating_add(back.count), back.timestamp.or(ts)))
    }

    /// The last `seq` and timestamp of the newest segment (0 without one).
    /// A segment that is the live file itself (a seal interrupted by a
    /// crash) is not a segment.
    pub(super) fn newest_segment_tail(&self, live: FileId) -> Result<(u64, Option<Timestamp>)> {
        for _ in 0..LOCK_ATTEMPTS {
            let mut vanished = false;
            for (name, seg) in scan::list_segments(self.io, self.layout, self.id)?
                .into_iter()
                .rev()
            {
                let Some(part) = scan::open_segment(self.io, name, seg)? else {
                    vanished = true;
                    break;
                };
                if part.id == live {
                    continue;
                }
                let back = scan::walk_back(&*part.file, &part.path, part.body, part.end)?;
                let seq = back
                    .explicit
                    .or(part.base)
                    .unwrap_or(0)
                    .saturating_add(back.count);
                return Ok((seq, back.timestamp));
            }
            if !vanished {
                return Ok((0, None));
            }
        }
        Err(Error::io(
            "list",
            self.layout.segments_dir(self.id),
            io::Error::other("segments kept changing while they were read; retry"),
        ))
    }

    /// Open the live file and take its exclusive lock, making sure the
    /// locked file is still the one at the path. `None` if it does not
    /// exist and `create` is false.
    pub(super) fn lock_live(&self, create: bool) -> Result<Option<Box<dyn File>>> {
        let path = self.live_path();
        for _ in 0..LOCK_ATTEMPTS {
            let file = match self.io.open_append(&path, create) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    self.ensure_events_dir()?;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io("open", &path, e)),
            };
            file.lock(LockMode::Exclusive).ctx("lock", &path)?;
            match is_at_path(self.io, &*file, &path) {
                Ok(true) => return Ok(Some(file)),
                Ok(false) => {
                    let _ = file.unlock();
                }
                Err(e) => {
                    let _ = file.unlock();
                    return Err(e);
                }
            }
        }
        Err(Error::io(
            "lock",
            &path,
            io::Error::other("the file kept being replaced while it was locked; retry"),
        ))
    }

    pub(super) fn ensure_events_dir(&self) -> Result<()> {
        let dir = self.layout.events();
        if !atomic::exists(self.io, self.layout.root())? {
            return Err(Error::io(
                "open",
                self.layout.root(),
                io::Error::from(io::ErrorKind::NotFound),
            ));
        }
        if ensure_dir(self.io, &dir)? {
            let root = self.layout.root();
            self.io.sync_dir(root).ctx("sync directory", root)?;
        }
        Ok(())
    }

    /// Copy the bytes `[from, len)` of `file` to a new, synced file in the
    /// quarantine; the caller then cuts them off.
    pub(super) fn quarantine(
        &self,
        file: &dyn File,
        path: &Path,
        from: u64,
        len: u64,
    ) -> Result<PathBuf> {
        let dir = self.layout.quarantine_dir();
        if ensure_dir(self.io, &dir)? {
            let events = self.layout.events();
            self.io.sync_dir(&events).ctx("sync directory", &events)?;
        }
        let stamp = time::file_stamp(time::now());
        let mut n = 0u32;
        let (target, mut out) = loop {
            let name = match n {
                0 => format!("milestone-{}.{stamp}.torn", self.id),
                _ => format!("milestone-{}.{stamp}.{n}.torn", self.id),
            };
            let target = dir.join(name);
            match self.io.create_new(&target) {
                Ok(f) => break (target, f),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(Error::io("create", &target, e)),
            }
        };
        let copied = (|| {
            let mut buf = vec![0u8; SMALL_CHUNK.min((len - from) as usize).max(1)];
            let mut at = from;
            while at < len {
                let chunk = (len - at).min(buf.len() as u64) as usize;
                let got = scan::read_full_at(file, &mut buf[..chunk], at).ctx("read", path)?;
                if got == 0 {
                    break;
                }
                out.write_all(&buf[..got]).ctx("write", &target)?;
                at += got as u64;
            }
            out.sync().ctx("sync", &target)
        })();
        drop(out);
        if let Err(e) = copied {
            let _ = self.io.remove_file(&target);
            return Err(e);
        }
        self.io.sync_dir(&dir).ctx("sync directory", &dir)?;
        Ok(target)
    }

    /// `events/quarantine/milestone-<id>.unordered`: present once a line
    /// was written with a timestamp before the line ahead of it by more
    /// than [`ORDER_SLACK`]. Queries of such a log scan it whole instead
    /// of bisecting it by time, so their answers stay exact.
    pub(crate) fn unordered_path(&self) -> PathBuf {
        self.layout
            .quarantine_dir()
            .join(format!("milestone-{}.unordered", self.id))
    }

    /// Whether the log is marked as out of time order.
    pub(crate) fn is_unordered(&self) -> Result<bool> {
        atomic::exists(self.io, &self.unordered_path())
    }

    /// Record, durably and before the line is written, that the line `seq`
    /// stamped `timestamp` goes back in time.
    pub(crate) fn mark_unordered(&self, seq: u64, timestamp: &str) -> Result<()> {
        let dir = self.layout.quarantine_dir();
        if ensure_dir(self.io, &dir)? {
            let events = self.layout.events();
            self.io.sync_dir(&events).ctx("sync directory", &events)?;
        }
        let path = self.unordered_path();
        let existed = atomic::exists(self.io, &path)?;
        let mut f = self.io.open_append(&path, true).ctx("open", &path)?;
        let mut bytes =
            serde_json::to_vec(&serde_json::json!({"seq": seq, "timestamp": timestamp}))
                .map_err(|e| Error::io("encode", &path, e.into()))?;
        bytes.push(b'\n');
        f.write_all(&bytes).ctx("write", &path)?;
        f.sync().ctx("sync", &path)?;
        if !existed {
            self.io.sync_dir(&dir).ctx("sync directory", &dir)?;
        }
        Ok(())
    }

    /// Move torn tails of the log's files to the quarantine now (doctor's
    /// repair). Returns where the bytes went, if anything was moved.
    pub fn repair(&self) -> Result<Option<String>> {
        let mut moved = Vec::new();
        if let Some(file) = self.lock_live(false)? {
            let path = self.live_path();
            let result = (|| {
                self.heal_unsynced(&*file, &path)?;
                let len = file.len().ctx("inspect", &path)?;
                let end = scan::complete_end(&*file, 0, len, &path)?;
                if end < len {
                    moved.push(self.quarantine(&*file, &path, end, len)?);
                    file.set_len(end).ctx("truncate", &path)?;
                    file.sync().ctx("sync", &path)?;
                }
                Ok(())
            })();
            let _ = file.unlock();
            result?;
        }
        moved.extend(self.repair_segments()?);
        Ok((!moved.is_empty()).then(|| {
            moved
                .iter()
                .map(|p| self.display(p))
                .collect::<Vec<_>>()
                .join(", ")
        }))
    }
}

/// What an append wrote under the lock.
struct Appended {
    timestamp: String,
    seq: u64,
    /// Where the line was written, unless seed lines landed first.
    offset: u64,
    /// The line, with its newline.
    line: Vec<u8>,
    /// Whether the directory must be synced before acknowledging.
    sync_dir: bool,
}

/// Whether the log's first line is one mstate wrote: its timestamp has
/// microseconds (the seed writes whole seconds).
fn begun_by_mstate(file: &dyn File, path: &Path) -> Result<bool> {
    // `{"timestamp":"2026-11-24T21:03:37.123456Z"`
    const LEN: usize = TS_PREFIX.len() + 28;
    let mut head = [0u8; LEN];
    let got = scan::read_full_at(file, &mut head, 0).ctx("read", path)?;
    Ok(got == LEN
        && head.starts_with(TS_PREFIX)
        && head[TS_PREFIX.len() + 19] == b'.'
        && head[TS_PREFIX.len() + 26..] == *b"Z\""
        && line::parse_ts(&head[TS_PREFIX.len()..LEN - 1]).is_some())
}

/// Whether the open `file` is the file at `path` now.
fn is_at_path(io: &dyn crate::io::Io, file: &dyn File, path: &Path) -> Result<bool> {
    let id = file.id().ctx("inspect", path)?;
    match io.metadata(path) {
        Ok(m) => Ok(m.id == id),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("inspect", path, e)),
    }
}

/// The timestamp of a new line: now, to the microsecond mstate writes,
/// but never before `last` when `last` is at most [`ORDER_SLACK`] ahead
/// (small clock steps and other hosts' skew keep the log in order). A
/// `last` further ahead (a clock stepped back, a line stamped in the
/// future) is not followed: the line gets the real time and the log is
/// marked as out of order (see [`EventLog::mark_unordered`]), so one
/// wrong stamp does not hold every later one.
pub(super) fn next_timestamp(last: Option<Timestamp>, now: Timestamp) -> Timestamp {
    let hold =
        last.filter(|&l| l > now && now.checked_add(ORDER_SLACK).is_ok_and(|edge| l <= edge));
    let t = hold.unwrap_or(now);
    let micros = t.as_microsecond();
    let floor = Timestamp::from_microsecond(micros).unwrap_or(t);
    match hold.or(last.filter(|&l| l <= now)) {
        Some(l) if floor < l => Timestamp::from_microsecond(micros + 1).unwrap_or(t),
        _ => floor,
    }
}
