//! Retention: sealing the live file into a segment, and dropping or
//! rewriting sealed segments.
//!
//! The seed's cleanup rewrote the live log without a lock and lost events
//! appended meanwhile. Here the live file is never rewritten:
//!
//! 1. **Seal** (under the live file's exclusive `flock`): when the live file
//!    holds events older than the cutoff, it is hard-linked into
//!    `segments/<id>/<first seq>.jsonl`, and a new empty file, created and
//!    locked beforehand, is renamed over the live name. At every instant the
//!    live name points at a locked file, so appenders wait, then notice the
//!    change and append to the new file. A crash between the two steps
//!    leaves the live file linked twice; readers ignore the extra link and
//!    the next cleanup removes it.
//! 2. **Trim** (segments only; no writer appends to them): a segment wholly
//!    older than the cutoff is removed; one holding both old and kept
//!    events is rewritten beside itself and renamed over itself, starting
//!    with a header that keeps the kept events' `seq`. Lines whose time
//!    cannot be read are kept. Old lines are dropped only where no kept
//!    line's implicit `seq` depends on them, and the newest segment keeps
//!    its last line's `seq` (as a header-only file if all else goes), so
//!    numbering continues.
//!
//! Cleanups exclude each other with an exclusive `flock` of
//! `segments/<id>/.lock`.

use std::io;
use std::path::PathBuf;

use jiff::Timestamp;

use crate::error::{Error, IoContext, Result};
use crate::fs::atomic::{ensure_dir, temp_path};
use crate::io::{File, LockMode};

use super::line;
use super::scan::{self, Part, Pos, CHUNK, SMALL_CHUNK};
use super::{EventLog, LogCleanup, ORDER_SLACK};

/// Most separate old runs dropped from one segment; past that, old lines
/// stay (retention keeps more, never less).
const MAX_DROP_RUNS: usize = 100_000;

/// What trimming one segment does.
#[derive(Debug, Default)]
struct Plan {
    /// Records (non-blank lines) in the segment.
    records: u64,
    /// Records that go.
    dropped: u64,
    /// Byte ranges that go, in order.
    drop: Vec<(u64, u64)>,
    /// `seq` of the first record kept.
    first_kept: Option<u64>,
    /// `seq` of the last record.
    last_seq: u64,
}

impl EventLog<'_> {
    /// Remove events older than `cutoff` without ever rewriting what
    /// writers append to. With `dry_run`, change nothing and report what
    /// would go.
    pub fn cleanup(&self, cutoff: Timestamp, dry_run: bool) -> Result<LogCleanup> {
        if dry_run {
            return self.plan_cleanup(cutoff);
        }
        let mut report = LogCleanup::default();
        if !scan::segments_dir_exists(self.io, self.layout, self.id)? {
            if !self.live_holds_older(cutoff)? {
                return Ok(report);
            }
            self.ensure_segment_dirs()?;
        }
        let lock = self.cleanup_lock()?;
        let result = (|| {
            self.remove_stale_temps()?;
            self.seal(Some(cutoff))?;
            let segments = scan::list_segments(self.io, self.layout, self.id)?;
            let newest = segments.len().saturating_sub(1);
            for (k, (name, path)) in segments.into_iter().enumerate() {
                if let Some(part) = scan::open_segment(self.io, name, path)? {
                    self.trim(&part, k == newest, cutoff, &mut report)?;
                }
            }
            Ok(report)
        })();
        let _ = lock.unlock();
        result
    }

    /// What a cleanup would remove: the same decisions, on a snapshot,
    /// with the live file counted as the segment it would be sealed into.
    fn plan_cleanup(&self, cutoff: Timestamp) -> Result<LogCleanup> {
        let mut report = LogCleanup::default();
        let mut parts = scan::snapshot(self.io, self.layout, self.id)?;
        let live_seals = match parts.last() {
            Some(p) if p.base.is_none() => first_timestamp(p, p.body)?.is_some_and(|t| t < cutoff),
            _ => false,
        };
        if !live_seals && parts.last().is_some_and(|p| p.base.is_none()) {
            parts.pop();
        }
        let n = parts.len();
        for k in 0..n {
            if parts[k].base.is_none() {
                let base = scan::seq_before(&parts, k, 0)?;
                parts[k].base = Some(base);
            }
            let p = &parts[k];
            if !may_hold_older(p, cutoff)? {
                continue;
            }
            let plan = plan_trim(p, k + 1 == n, cutoff)?;
            if plan.dropped > 0 || (plan.records == 0 && k + 1 < n) {
                report.events_removed += plan.dropped;
                report.files.push(self.display(&p.path));
            }
        }
        Ok(report)
    }

    /// Whether the live file's first event is older than `cutoff` (read
    /// without a lock; the seal checks again under it).
    fn live_holds_older(&self, cutoff: Timestamp) -> Result<bool> {
        let path = self.live_path();
        let file = match self.io.open_read(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let len = file.len().ctx("inspect", &path)?;
        let id = file.id().ctx("inspect", &path)?;
        let part = scan::live_part(file, path, id, len)?;
        Ok(first_timestamp(&part, 0)?.is_some_and(|t| t < cutoff))
    }

    /// Create `events/segments/<id>/` (and its parent) durably.
    fn ensure_segment_dirs(&self) -> Result<()> {
        let events = self.layout.events();
        let parent = events.join("segments");
        if ensure_dir(self.io, &parent)? {
            self.io.sync_dir(&events).ctx("sync directory", &events)?;
        }
        let segdir = self.layout.segments_dir(self.id);
        if ensure_dir(self.io, &segdir)? {
            self.io.sync_dir(&parent).ctx("sync directory", &parent)?;
        }
        Ok(())
    }

    /// Take the lock that makes cleanups (and segment repairs) exclusive.
    fn cleanup_lock(&self) -> Result<Box<dyn File>> {
        let path = self.layout.segments_dir(self.id).join(".lock");
        let file = self.io.open_append(&path, true).ctx("open", &path)?;
        file.lock(LockMode::Exclusive).ctx("lock", &path)?;
        Ok(file)
    }

    /// Remove temporary files a crashed cleanup left in the segment
    /// directory (under the cleanup lock, so none is being written).
    fn remove_stale_temps(&self) -> Result<()> {
        let dir = self.layout.segments_dir(self.id);
        let entries = self.io.read_dir(&dir).ctx("list", &dir)?;
        for e in entries {
            if e.name.contains(".tmp.") {
                let p = dir.join(&e.name);
                match self.io.remove_file(&p) {
                    Ok(()) => {}
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(Error::io("remove", &p, err)),
                }
            }
        }
        Ok(())
    }

    /// Seal the live file into a segment if it holds an event older than
    /// `cutoff` (any event when `None`). Runs under the cleanup lock;
    /// returns the new segment.
    pub(super) fn seal(&self, cutoff: Option<Timestamp>) -> Result<Option<PathBuf>> {
        let Some(file) = self.lock_live(false)? else {
            return Ok(None);
        };
        let result = self.seal_locked(&*file, cutoff);
        let _ = file.unlock();
        result
    }

    fn seal_locked(&self, file: &dyn File, cutoff: Option<Timestamp>) -> Result<Option<PathBuf>> {
        let path = self.live_path();
        // Bytes a failed sync left must be on disk before the file
        // becomes a segment no appender looks at again.
        self.heal_unsynced(file, &path)?;
        let segdir = self.layout.segments_dir(self.id);
        let live_id = file.id().ctx("inspect", &path)?;
        // A seal interrupted after its link leaves the live file linked as
        // a segment too: undo that first.
        let mut segments = Vec::new();
        for (name, seg) in scan::list_segments(self.io, self.layout, self.id)? {
            match self.io.metadata(&seg) {
                Ok(m) if m.id == live_id => {
                    self.io.remove_file(&seg).ctx("remove", &seg)?;
                    self.io.sync_dir(&segdir).ctx("sync directory", &segdir)?;
                }
                Ok(_) => segments.push(name),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("inspect", &seg, e)),
            }
        }
        let mut len = file.len().ctx("inspect", &path)?;
        let end = scan::complete_end(file, 0, len, &path)?;
        if end < len {
            self.quarantine(file, &path, end, len)?;
            file.set_len(end).ctx("truncate", &path)?;
            file.sync().ctx("sync", &path)?;
            len = end;
        }
        let part = Part {
            path: path.clone(),
            file: self.io.open_read(&path).ctx("open", &path)?,
            id: live_id,
            len,
            body: 0,
            end,
            base: None,
        };
        let Some(first) = first_record(&part)? else {
            return Ok(None);
        };
        if let Some(cutoff) = cutoff {
            if first_timestamp(&part, 0)?.is_none_or(|t| t >= cutoff) {
                return Ok(None);
            }
        }
        let first_seq = match first.1 {
            Some(seq) => seq,
            None => self.newest_segment_tail(live_id)?.0.saturating_add(1),
        };
        // Names sort like the log; a name is taken only if numbering went
        // wrong somewhere, and then the next free one keeps the order.
        let name = match segments.last() {
            Some(&last) if last >= first_seq => last.saturating_add(1),
            _ => first_seq,
        };
        let target = segdir.join(format!("{name:020}.jsonl"));
        // The live file's successor: created and locked before it gets the
        // live name, so no append lands in it before the names are durable.
        let tmp = temp_path(&segdir.join(".live"));
        let fresh = self.io.create_new(&tmp).ctx("create", &tmp)?;
        let swapped = (|| {
            fresh.lock(LockMode::Exclusive).ctx("lock", &tmp)?;
            self.io
                .hard_link(&path, &target)
                .ctx("link into the segments", &target)?;
            self.io.sync_dir(&segdir).ctx("sync directory", &segdir)?;
            if let Err(e) = self.io.rename(&tmp, &path) {
                let _ = self.io.remove_file(&target);
                return Err(Error::io("replace", &path, e));
            }
            let events = self.layout.events();
            self.io.sync_dir(&events).ctx("sync directory", &events)
        })();
        let _ = fresh.unlock();
        drop(fresh);
        if swapped.is_err() {
            let _ = self.io.remove_file(&tmp);
        }
        swapped?;
        Ok(Some(target))
    }

    /// Drop what is older than `cutoff` from one segment.
    fn trim(
        &self,
        part: &Part,
        newest: bool,
        cutoff: Timestamp,
        report: &mut LogCleanup,
    ) -> Result<()> {
        if !may_hold_older(part, cutoff)? {
            return Ok(());
        }
        let plan = plan_trim(part, newest, cutoff)?;
        let empty_leftover = plan.records == 0 && !newest;
        if plan.dropped == 0 && !empty_leftover {
            return Ok(());
        }
        let segdir = self.layout.segments_dir(self.id);
        if part.torn() > 0 {
            // Never lose bytes silently, even unreadable ones.
            self.quarantine(&*part.file, &part.path, part.end, part.len)?;
        }
        if plan.records == plan.dropped && !newest {
            self.io.remove_file(&part.path).ctx("remove", &part.path)?;
        } else {
            let first_seq = plan
                .first_kept
                .unwrap_or_else(|| plan.last_seq.saturating_add(1));
            self.rewrite(part, &plan, first_seq)?;
        }
        self.io.sync_dir(&segdir).ctx("sync directory", &segdir)?;
        report.events_removed += plan.dropped;
        report.files.push(self.display(&part.path));
        Ok(())
    }

    /// Replace a segment by its kept lines, after a header giving the
    /// `seq` of the first.
    fn rewrite(&self, part: &Part, plan: &Plan, first_seq: u64) -> Result<()> {
        let tmp = temp_path(&part.path);
        let mut out = self.io.create_new(&tmp).ctx("create", &tmp)?;
        let written = (|| {
            out.write_all(&line::segment_header(first_seq))
                .ctx("write", &tmp)?;
            let mut buf = vec![0u8; CHUNK.min((part.end - part.body) as usize).max(1)];
            let mut at = part.body;
            let mut copy_to = |at: u64, to: u64, out: &mut Box<dyn File>| -> Result<()> {
                let mut pos = at;
                while pos < to {
                    let n = (to - pos).min(buf.len() as u64) as usize;
                    let got = scan::read_full_at(&*part.file, &mut buf[..n], pos)
                        .ctx("read", &part.path)?;
                    if got < n {
                        return Err(Error::io(
                            "read",
                            &part.path,
                            io::Error::from(io::ErrorKind::UnexpectedEof),
                        ));
                    }
                    out.write_all(&buf[..n]).ctx("write", &tmp)?;
                    pos += n as u64;
                }
                Ok(())
            };
            for &(from, to) in &plan.drop {
                copy_to(at, from, &mut out)?;
                at = to;
            }
            copy_to(at, part.end, &mut out)?;
            out.sync().ctx("sync", &tmp)
        })();
        drop(out);
        let placed =
            written.and_then(|()| self.io.rename(&tmp, &part.path).ctx("replace", &part.path));
        if placed.is_err() {
            let _ = self.io.remove_file(&tmp);
        }
        placed
    }

    /// Seal the live file now, whatever its age.
    #[cfg(test)]
    pub(super) fn rotate(&self) -> Result<Option<PathBuf>> {
        self.ensure_segment_dirs()?;
        let lock = self.cleanup_lock()?;
        let sealed = self.seal(None);
        let _ = lock.unlock();
        sealed
    }

    /// Move torn tails of segments to the quarantine (doctor's repair).
    pub(super) fn repair_segments(&self) -> Result<Vec<PathBuf>> {
        if !scan::segments_dir_exists(self.io, self.layout, self.id)? {
            return Ok(Vec::new());
        }
        let lock = self.cleanup_lock()?;
        let result = (|| {
            let mut moved = Vec::new();
            for (name, path) in scan::list_segments(self.io, self.layout, self.id)? {
                let file = match self.io.open_append(&path, false) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io("open", &path, e)),
                };
                let len = file.len().ctx("inspect", &path)?;
                let id = file.id().ctx("inspect", &path)?;
                let part = scan::segment_part(file, path, id, len, name)?;
                if part.torn() > 0 {
                    moved.push(self.quarantine(&*part.file, &part.path, part.end, part.len)?);
                    part.file.set_len(part.end).ctx("truncate", &part.path)?;
                    part.file.sync().ctx("sync", &part.path)?;
                }
            }
            Ok(moved)
        })();
        let _ = lock.unlock();
        result
    }
}

/// The first record of a part: its offset and explicit `seq`.
fn first_record(part: &Part) -> Result<Option<(u64, Option<u64>)>> {
    let mut found = None;
    scan::forward(
        std::slice::from_ref(part),
        Pos {
            part: 0,
            off: part.body,
        },
        Pos { part: 1, off: 0 },
        SMALL_CHUNK,
        &mut |_, off, raw| match line::record(raw) {
            Some(rec) => {
                found = Some((off, line::explicit_seq(rec.payload)));
                Ok(false)
            }
            None => Ok(true),
        },
    )?;
    Ok(found)
}

/// Whether a part may hold a line older than `cutoff`: not if its first
/// line is newer by more than the order slack (then reading it all is
/// saved; a line further out of order than that stays, which keeps more,
/// never less).
fn may_hold_older(part: &Part, cutoff: Timestamp) -> Result<bool> {
    let edge = cutoff.checked_add(ORDER_SLACK).unwrap_or(cutoff);
    Ok(first_timestamp(part, part.body)?.is_none_or(|t| t < edge))
}

/// The first readable timestamp of a part from `from` on.
fn first_timestamp(part: &Part, from: u64) -> Result<Option<Timestamp>> {
    let mut found = None;
    scan::forward(
        std::slice::from_ref(part),
        Pos { part: 0, off: from },
        Pos { part: 1, off: 0 },
        SMALL_CHUNK,
        &mut |_, _, raw| {
            found = line::record(raw).and_then(|r| line::timestamp_of(r.payload));
            Ok(found.is_none())
        },
    )?;
    Ok(found)
}

/// Decide which lines of a segment go. A line goes if its timestamp is
/// older than `cutoff` and dropping it renumbers nothing: it lies before
/// the first kept line (the rewritten header anchors that one), or in a
/// run of old lines followed by a line with an explicit `seq`. The newest
/// segment keeps its trailing old lines (the live file's numbering
/// continues from its last line) unless every line goes.
fn plan_trim(part: &Part, newest: bool, cutoff: Timestamp) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut cur = part.base.unwrap_or(0);
    let mut prefix: Option<(u64, u64)> = None;
    let mut run: Option<(u64, u64, u64)> = None;
    let mut runs = Vec::new();
    let mut run_dropped = 0u64;
    scan::forward(
        std::slice::from_ref(part),
        Pos {
            part: 0,
            off: part.body,
        },
        Pos { part: 1, off: 0 },
        CHUNK,
        &mut |_, off, raw| {
            let Some(rec) = line::record(raw) else {
                return Ok(true);
            };
            plan.records += 1;
            let explicit = line::explicit_seq(rec.payload);
            let seq = explicit.unwrap_or(cur.saturating_add(1));
            cur = seq;
            plan.last_seq = seq;
            let line_end = off + raw.len() as u64 + 1;
            let old = line::timestamp_of(rec.payload).is_some_and(|t| t < cutoff);
            if old {
                if plan.first_kept.is_none() {
                    let count = prefix.map_or(0, |(_, c)| c);
                    prefix = Some((line_end, count + 1));
                } else {
                    run = Some(match run {
                        Some((s, _, c)) => (s, line_end, c + 1),
                        None => (off, line_end, 1),
                    });
                }
            } else {
                if let Some((s, e, c)) = run.take() {
                    if explicit.is_some() && runs.len() < MAX_DROP_RUNS {
                        runs.push((s, e));
                        run_dropped += c;
                    }
                }
                plan.first_kept.get_or_insert(seq);
            }
            Ok(true)
        },
    )?;
    if let Some((s, e, c)) = run {
        if !newest && runs.len() < MAX_DROP_RUNS {
            runs.push((s, e));
            run_dropped += c;
        }
    }
    if let Some((end, count)) = prefix {
        plan.drop.push((part.body, end));
        plan.dropped += count;
    }
    plan.drop.extend(runs);
    plan.dropped += run_dropped;
    Ok(plan)
}
