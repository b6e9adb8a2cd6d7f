//! The event log of one milestone: `events/milestone-<id>.jsonl`, the
//! seed's file, appended in place, plus sealed segments of older events in
//! `events/segments/<id>/` once retention has run.
//!
//! Guarantees:
//! - every line is written whole, by one `write` under an exclusive `flock`
//!   of the live file, and synced before the append returns: an append
//!   reported successful survives power loss;
//! - `seq` runs 1, 2, 3, ... with no gap or repeat whatever the number of
//!   writers; a line without `seq` (the seed's) counts as the previous
//!   line's plus one; finding the last `seq` reads only the tail;
//! - timestamps never go back within a log;
//! - a torn tail left by a crash is skipped by readers (with a warning) and
//!   moved to `events/quarantine/` by the next append, so torn bytes never
//!   sit between whole lines;
//! - retention never rewrites the file writers append to: it seals the live
//!   file into a segment (the live name then starts afresh) and drops or
//!   rewrites only sealed segments.

mod line;
mod scan;

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use crate::error::{Error, IoContext, Result};
use crate::fs::atomic::{ensure_dir, write_replace};
use crate::fs::layout::Layout;
use crate::id::{EventType, MilestoneId};
use crate::io::{File, Io, LockMode, PollWatch};
use crate::model::{Actor, Event, EventQuery, ReadReport};
use crate::time;

use self::scan::{Source, CHUNK};

/// One line handed to a query's sink.
#[derive(Debug)]
pub struct LogLine<'a> {
    /// The stored line, without its newline.
    pub raw: &'a str,
    /// Its timestamp.
    pub timestamp: Timestamp,
    /// Its `seq`, or the implicit one for lines without (seed lines).
    pub seq: u64,
}

/// What a cleanup of the log did or would do.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LogCleanup {
    /// Events removed (or that would be).
    pub events_removed: u64,
    /// Files removed or rewritten, for the report.
    pub files: Vec<String>,
}

/// Slack when stopping a time-bounded scan early: the seed's lines have
/// one-second timestamps and its concurrent writers may interleave.
const ORDER_SLACK: Duration = Duration::from_secs(2);

/// The event log of one milestone in a filesystem store.
pub struct EventLog<'a> {
    pub io: &'a dyn Io,
    pub layout: &'a Layout,
    pub id: &'a MilestoneId,
}

/// Filters of a query, prepared for raw-line matching.
struct Filter {
    type_needles: Vec<(Vec<u8>, Vec<u8>)>,
    types: Vec<String>,
    session_needle: Option<Vec<u8>>,
    session: Option<String>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
}

impl Filter {
    fn new(q: &EventQuery) -> Self {
        let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
        Filter {
            type_needles: q
                .types
                .iter()
                .map(|t| {
                    (
                        format!("\"event_type\":{}", quoted(t)).into_bytes(),
                        format!("\"event\":{}", quoted(t)).into_bytes(),
                    )
                })
                .collect(),
            types: q.types.clone(),
            session_needle: q
                .session
                .as_deref()
                .map(|s| format!("\"session_id\":{}", quoted(s)).into_bytes()),
            session: q.session.clone(),
            since: q.since,
            until: q.until,
        }
    }

    /// Whether a line matches; `None` when it is not a valid event line.
    fn matches(&self, raw: &[u8], ts: Timestamp) -> Option<bool> {
        if self.since.is_some_and(|s| ts < s) || self.until.is_some_and(|u| ts > u) {
            return Some(false);
        }
        let pre_type = self.type_needles.is_empty()
            || self.type_needles.iter().any(|(a, b)| {
                memchr::memmem::find(raw, a).is_some() || memchr::memmem::find(raw, b).is_some()
            });
        let pre_session = self
            .session_needle
            .as_ref()
            .is_none_or(|n| memchr::memmem::find(raw, n).is_some());
        if !(pre_type && pre_session) {
            // Cannot match; validity does not matter for a line not shown.
            return Some(false);
        }
        if self.types.is_empty() && self.session.is_none() {
            return line::is_valid(raw).then_some(true);
        }
        let (ty, session) = line::type_and_session(raw)?;
        let ok_type = self.types.is_empty() || ty.is_some_and(|t| self.types.contains(&t));
        let ok_session = self.session.is_none() || session == self.session;
        Some(ok_type && ok_session)
    }
}

/// Warnings met while reading, capped so a damaged log cannot flood stderr.
#[derive(Default)]
struct Warnings {
    report: ReadReport,
    corrupt: u64,
}

impl Warnings {
    fn torn(&mut self, s: &Source) {
        if s.len > s.complete {
            let tail = s.len - s.complete;
            self.report.warnings.push(format!(
                "skipped a torn last line of {tail} bytes at offset {} of {} (a crash cut it short; the next append moves it to events/quarantine/)",
                s.complete,
                s.path.display()
            ));
        }
    }

    fn corrupt(&mut self, s: &Source, offset: u64) {
        self.corrupt += 1;
        if self.corrupt <= 5 {
            self.report.warnings.push(format!(
                "skipped a corrupt line at offset {offset} of {} (not a JSON event)",
                s.path.display()
            ));
        }
    }

    fn finish(mut self) -> ReadReport {
        if self.corrupt > 5 {
            self.report
                .warnings
                .push(format!("skipped {} corrupt lines in all", self.corrupt));
        }
        self.report
    }
}

impl EventLog<'_> {
    fn live(&self) -> PathBuf {
        self.layout.event_log(self.id)
    }

    /// Append one event durably and return it as stored.
    pub fn append(
        &self,
        actor: &Actor,
        session_id: &str,
        event_type: &EventType,
        data: &Value,
    ) -> Result<Event> {
        let path = self.live();
        loop {
            let existed = crate::fs::atomic::exists(self.io, &path)?;
            let mut file = self.io.open_append(&path, true).ctx("open", &path)?;
            file.lock(LockMode::Exclusive).ctx("lock", &path)?;
            // A cleanup may have sealed the file we opened; append to the
            // file now at the path instead.
            let same = match (file.id(), self.io.metadata(&path)) {
                (Ok(a), Ok(b)) => a == b.id,
                _ => false,
            };
            if !same {
                let _ = file.unlock();
                continue;
            }
            let result = self.append_locked(&mut *file, &path, actor, session_id, event_type, data);
            let _ = file.unlock();
            let event = result?;
            if !existed {
                let dir = self.layout.events();
                self.io.sync_dir(&dir).ctx("sync directory", &dir)?;
            }
            return Ok(event);
        }
    }

    fn append_locked(
        &self,
        file: &mut dyn File,
        path: &Path,
        actor: &Actor,
        session_id: &str,
        event_type: &EventType,
        data: &Value,
    ) -> Result<Event> {
        let len = file.len().ctx("inspect", path)?;
        let complete = scan::complete_end(file, len).ctx("read", path)?;
        if complete < len {
            self.quarantine(file, path, complete, len)?;
        }
        let (last_seq, last_ts) = self.last_seq_and_time(file, complete)?;
        let now = time::now();
        let ts = match last_ts {
            Some(last) if last > now => last,
            _ => now,
        };
        let timestamp = time::format_micros(ts);
        let seq = last_seq + 1;
        let out = line::LineOut {
            timestamp: &timestamp,
            milestone_id: self.id.as_str(),
            session_id,
            event_type: event_type.as_str(),
            data,
            pid: actor.pid,
            user: &actor.user,
            seq,
            host: &actor.host,
        };
        let mut bytes =
            serde_json::to_vec(&out).map_err(|e| Error::io("encode", path, e.into()))?;
        bytes.push(b'\n');
        file.write_all(&bytes).ctx("append to", path)?;
        file.sync().ctx("sync", path)?;
        Ok(Event {
            timestamp,
            milestone_id: self.id.to_string(),
            session_id: Some(session_id.to_string()),
            event_type: event_type.to_string(),
            data: data.clone(),
            pid: Some(i64::from(actor.pid)),
            user: Some(actor.user.clone()),
            seq: Some(seq),
            host: Some(actor.host.clone()),
        })
    }

    /// Move the torn bytes `[complete, len)` of the live file to the
    /// quarantine and cut the file back to its last whole line. Runs under
    /// the exclusive lock.
    fn quarantine(
        &self,
        file: &mut dyn File,
        path: &Path,
        complete: u64,
        len: u64,
    ) -> Result<PathBuf> {
        let mut torn = vec![0u8; (len - complete) as usize];
        let n = scan::read_exact_at(file, &mut torn, complete).ctx("read", path)?;
        torn.truncate(n);
        let dir = self.layout.quarantine_dir();
        if ensure_dir(self.io, &dir)? {
            let events = self.layout.events();
            self.io.sync_dir(&events).ctx("sync directory", &events)?;
        }
        let target = dir.join(format!(
            "milestone-{}.{}.torn",
            self.id,
            time::file_stamp(time::now())
        ));
        write_replace(self.io, &target, &torn)?;
        file.set_len(complete).ctx("truncate", path)?;
        file.sync().ctx("sync", path)?;
        Ok(target)
    }

    /// Seq and time of the last line of the log, whose live file has
    /// complete lines up to `complete`.
    fn last_seq_and_time(
        &self,
        live: &dyn File,
        complete: u64,
    ) -> Result<(u64, Option<Timestamp>)> {
        if let Some((_, l)) = scan::last_line(live, complete)? {
            if let Some(seq) = line::seq(&l) {
                return Ok((seq, line::timestamp(&l)));
            }
        }
        // The tail has no explicit seq (a seed line, or an empty live file
        // after sealing): count back through the whole log.
        let sources = scan::open_sources(self.io, self.layout, self.id, true)?;
        let last_ts = sources
            .iter()
            .rev()
            .find_map(|s| scan::last_line(&*s.file, s.complete).ok().flatten())
            .and_then(|(_, l)| line::timestamp(&l));
        let Some(last) = sources.len().checked_sub(1) else {
            return Ok((0, None));
        };
        let seq = scan::seq_before(&sources, last, sources[last].complete.min(complete))?;
        Ok((seq, last_ts))
    }

    /// Quarantine a torn tail of the live file now (doctor's repair).
    /// Returns where the torn bytes went, if there were any.
    pub fn repair(&self) -> Result<Option<String>> {
        let path = self.live();
        let mut file = match self.io.open_append(&path, false) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        file.lock(LockMode::Exclusive).ctx("lock", &path)?;
        let result = (|| {
            let len = file.len().ctx("inspect", &path)?;
            let complete = scan::complete_end(&*file, len).ctx("read", &path)?;
            if complete == len {
                return Ok(None);
            }
            let q = self.quarantine(&mut *file, &path, complete, len)?;
            Ok(Some(q.display().to_string()))
        })();
        let _ = file.unlock();
        result
    }

    /// Run `q`, handing each matching line to `sink` until it returns false.
    pub fn query(
        &self,
        q: &EventQuery,
        sink: &mut dyn FnMut(&LogLine) -> Result<bool>,
    ) -> Result<ReadReport> {
        let sources = scan::open_sources(self.io, self.layout, self.id, false)?;
        let mut warn = Warnings::default();
        if let Some(live) = sources.last() {
            warn.torn(live);
        }
        let filter = Filter::new(q);
        if q.tail.is_some() || q.reverse {
            self.query_backward(&sources, q, &filter, &mut warn, sink)?;
        } else {
            query_forward(&sources, q, &filter, &mut warn, sink)?;
        }
        Ok(warn.finish())
    }

    fn query_backward(
        &self,
        sources: &[Source],
        q: &EventQuery,
        filter: &Filter,
        warn: &mut Warnings,
        sink: &mut dyn FnMut(&LogLine) -> Result<bool>,
    ) -> Result<()> {
        let want = match (q.tail, q.limit) {
            (Some(t), _) => Some(t),
            (None, l) => l,
        };
        let streaming = q.tail.is_none() || q.reverse;
        let mut kept: Vec<(usize, u64, Vec<u8>, Timestamp)> = Vec::new();
        let mut count = 0usize;
        let mut stop = want == Some(0);
        'sources: for (idx, s) in sources.iter().enumerate().rev() {
            if stop {
                break;
            }
            let mut inner_err = None;
            scan::backward(&*s.file, 0, s.complete, &mut |off, raw| {
                let Some(ts) = line::timestamp(raw) else {
                    if !raw.is_empty() {
                        warn.corrupt(s, off);
                    }
                    return Ok(true);
                };
                if filter.since.is_some_and(|since| ts + ORDER_SLACK < since) {
                    stop = true;
                    return Ok(false);
                }
                match filter.matches(raw, ts) {
                    None => {
                        warn.corrupt(s, off);
                        Ok(true)
                    }
                    Some(false) => Ok(true),
                    Some(true) => {
                        if std::str::from_utf8(raw).is_err() {
                            warn.corrupt(s, off);
                            return Ok(true);
                        }
                        count += 1;
                        if streaming {
                            match emit(sources, idx, off, raw, ts, None, sink) {
                                Ok(true) => {}
                                Ok(false) => {
                                    stop = true;
                                    return Ok(false);
                                }
                                Err(e) => {
                                    inner_err = Some(e);
                                    return Ok(false);
                                }
                            }
                        } else {
                            kept.push((idx, off, raw.to_vec(), ts));
                        }
                        if want.is_some_and(|w| count >= w) {
                            stop = true;
                            return Ok(false);
                        }
                        Ok(true)
                    }
                }
            })?;
            if let Some(e) = inner_err {
                return Err(e);
            }
            if stop {
                break 'sources;
            }
        }
        // `--tail N` without `--reverse`: oldest of the N first.
        for (idx, off, raw, ts) in kept.iter().rev() {
            if !emit(sources, *idx, *off, raw, *ts, None, sink)? {
                break;
            }
        }
        Ok(())
    }

    /// Like `query`, then keep handing new matching lines as they are
    /// appended, until `stop()` is true or `sink` returns false.
    pub fn follow(
        &self,
        q: &EventQuery,
        stop: &dyn Fn() -> bool,
        sink: &mut dyn FnMut(&LogLine) -> Result<bool>,
    ) -> Result<ReadReport> {
        let mut more = true;
        let report = self.query(q, &mut |l| {
            more = sink(l)?;
            Ok(more)
        })?;
        if !more {
            return Ok(report);
        }
        // Follow the live file from the end of what the query saw.
        let path = self.live();
        let filter = Filter::new(&EventQuery {
            limit: None,
            tail: None,
            reverse: false,
            ..q.clone()
        });
        let mut watch = self
            .io
            .watch(&self.layout.events())
            .unwrap_or_else(|_| Box::new(PollWatch));
        let mut current: Option<(Box<dyn File>, u64, u64)> = None; // file, offset, last seq
        let mut emitted = 0usize;
        let limit = q.limit;
        let mut first = true;
        while !stop() {
            if current.is_none() {
                if let Ok(f) = self.io.open_read(&path) {
                    let len = f.len().ctx("inspect", &path)?;
                    let start = if first {
                        scan::complete_end(&*f, len).ctx("read", &path)?
                    } else {
                        0
                    };
                    let sources = scan::open_sources(self.io, self.layout, self.id, false)?;
                    let idx = sources.len().saturating_sub(1);
                    let seq = if first && !sources.is_empty() {
                        scan::seq_before(&sources, idx, start)?
                    } else {
                        scan::seq_before(&sources, idx, 0)?
                    };
                    current = Some((f, start, seq));
                    first = false;
                }
            }
            if let Some((file, offset, last_seq)) = current.as_mut() {
                let len = file.len().ctx("inspect", &path)?;
                let mut go_on = true;
                let mut err = None;
                let new_offset = scan::forward(&**file, *offset, len, &mut |_, raw| {
                    let seq = line::seq(raw).unwrap_or(*last_seq + 1);
                    *last_seq = seq;
                    let Some(ts) = line::timestamp(raw) else {
                        return Ok(true);
                    };
                    if filter.matches(raw, ts) != Some(true) {
                        return Ok(true);
                    }
                    let Ok(raw) = std::str::from_utf8(raw) else {
                        return Ok(true);
                    };
                    match sink(&LogLine {
                        raw,
                        timestamp: ts,
                        seq,
                    }) {
                        Ok(true) => {
                            emitted += 1;
                            if limit.is_some_and(|l| emitted >= l) {
                                go_on = false;
                            }
                            Ok(go_on)
                        }
                        Ok(false) => {
                            go_on = false;
                            Ok(false)
                        }
                        Err(e) => {
                            err = Some(e);
                            Ok(false)
                        }
                    }
                })?;
                if let Some(e) = err {
                    return Err(e);
                }
                if !go_on {
                    return Ok(report);
                }
                *offset = new_offset;
                // Sealed by a cleanup: once its end is read, move to the new file.
                let moved = match (file.id(), self.io.metadata(&path)) {
                    (Ok(a), Ok(b)) => a != b.id,
                    (_, Err(_)) => true,
                    _ => false,
                };
                if moved && new_offset >= file.len().ctx("inspect", &path)? {
                    current = None;
                    continue;
                }
            }
            let _ = watch.wait(Duration::from_millis(200));
        }
        Ok(report)
    }

    /// Remove events older than `cutoff` without ever rewriting what
    /// writers append to.
    pub fn cleanup(&self, cutoff: Timestamp, dry_run: bool) -> Result<LogCleanup> {
        let mut report = LogCleanup::default();
        let path = self.live();
        // Seal the live file if it holds events older than the cutoff.
        match self.io.open_append(&path, false) {
            Ok(mut file) => {
                file.lock(LockMode::Exclusive).ctx("lock", &path)?;
                let r = self.seal_if_old(&mut *file, &path, cutoff, dry_run, &mut report);
                let _ = file.unlock();
                r?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("open", &path, e)),
        }
        // Drop or rewrite sealed segments; no writer appends to them.
        for (_, seg) in scan::segment_paths(self.io, self.layout, self.id)? {
            self.trim_segment(&seg, cutoff, dry_run, &mut report)?;
        }
        Ok(report)
    }

    fn seal_if_old(
        &self,
        file: &mut dyn File,
        path: &Path,
        cutoff: Timestamp,
        dry_run: bool,
        report: &mut LogCleanup,
    ) -> Result<()> {
        let same = match (file.id(), self.io.metadata(path)) {
            (Ok(a), Ok(b)) => a == b.id,
            _ => false,
        };
        if !same {
            return Ok(()); // sealed by a concurrent cleanup
        }
        let len = file.len().ctx("inspect", path)?;
        let mut complete = scan::complete_end(file, len).ctx("read", path)?;
        let mut first_ts = None;
        scan::forward(file, 0, complete, &mut |_, raw| {
            first_ts = line::timestamp(raw);
            Ok(first_ts.is_none())
        })?;
        if !first_ts.is_some_and(|t| t < cutoff) {
            return Ok(());
        }
        if dry_run {
            // Count what would go from the live file.
            scan::forward(file, 0, complete, &mut |_, raw| {
                if line::timestamp(raw).is_some_and(|t| t < cutoff) {
                    report.events_removed += 1;
                }
                Ok(true)
            })?;
            return Ok(());
        }
        if complete < len {
            self.quarantine(file, path, complete, len)?;
            complete = file.len().ctx("inspect", path)?;
        }
        let _ = complete;
        let segdir = self.layout.segments_dir(self.id);
        let parent = self.layout.events().join("segments");
        let mut created = ensure_dir(self.io, &parent)?;
        created |= ensure_dir(self.io, &segdir)?;
        if created {
            let events = self.layout.events();
            self.io.sync_dir(&events).ctx("sync directory", &events)?;
            self.io.sync_dir(&parent).ctx("sync directory", &parent)?;
        }
        let next = scan::segment_paths(self.io, self.layout, self.id)?
            .last()
            .map_or(1, |(n, _)| n + 1);
        let sealed = segdir.join(format!("{next:020}.jsonl"));
        self.io.rename(path, &sealed).ctx("seal", path)?;
        // A fresh live file under the seed's name, for appenders and `tail -F`.
        match self.io.create_new(path) {
            Ok(f) => drop(f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create", path, e)),
        }
        self.io.sync_dir(&segdir).ctx("sync directory", &segdir)?;
        let events = self.layout.events();
        self.io.sync_dir(&events).ctx("sync directory", &events)?;
        Ok(())
    }

    fn trim_segment(
        &self,
        seg: &Path,
        cutoff: Timestamp,
        dry_run: bool,
        report: &mut LogCleanup,
    ) -> Result<()> {
        let file = self.io.open_read(seg).ctx("open", seg)?;
        let len = file.len().ctx("inspect", seg)?;
        let mut old = 0u64;
        let mut total = 0u64;
        scan::forward(&*file, 0, len, &mut |_, raw| {
            total += 1;
            if line::timestamp(raw).is_some_and(|t| t < cutoff) {
                old += 1;
            }
            Ok(true)
        })?;
        if old == 0 {
            return Ok(());
        }
        report.events_removed += old;
        report.files.push(seg.display().to_string());
        if dry_run {
            return Ok(());
        }
        if old == total {
            self.io.remove_file(seg).ctx("remove", seg)?;
            let dir = self.layout.segments_dir(self.id);
            return self.io.sync_dir(&dir).ctx("sync directory", &dir);
        }
        // Keep the lines at or after the cutoff, and lines whose time
        // cannot be read (never drop what cannot be judged).
        let mut kept = Vec::with_capacity(len as usize);
        scan::forward(&*file, 0, len, &mut |_, raw| {
            if !line::timestamp(raw).is_some_and(|t| t < cutoff) {
                kept.extend_from_slice(raw);
                kept.push(b'\n');
            }
            Ok(true)
        })?;
        write_replace(self.io, seg, &kept)
    }
}

/// Hand one line to the sink, resolving its seq.
fn emit(
    sources: &[Source],
    idx: usize,
    off: u64,
    raw: &[u8],
    ts: Timestamp,
    prev: Option<u64>,
    sink: &mut dyn FnMut(&LogLine) -> Result<bool>,
) -> Result<bool> {
    let seq = match line::seq(raw) {
        Some(s) => s,
        None => match prev {
            Some(p) => p + 1,
            None => scan::seq_before(sources, idx, off)? + 1,
        },
    };
    let Ok(raw) = std::str::from_utf8(raw) else {
        return Ok(true);
    };
    sink(&LogLine {
        raw,
        timestamp: ts,
        seq,
    })
}

/// Oldest-first scan, starting by bisection when `since` is set.
fn query_forward(
    sources: &[Source],
    q: &EventQuery,
    filter: &Filter,
    warn: &mut Warnings,
    sink: &mut dyn FnMut(&LogLine) -> Result<bool>,
) -> Result<()> {
    let mut emitted = 0usize;
    if q.limit == Some(0) {
        return Ok(());
    }
    // Where to start: skip files that end before `since`, bisect the first
    // one that does not.
    let mut start_idx = 0;
    let mut start_off = 0;
    if let Some(since) = q.since {
        start_idx = sources.len();
        for (i, s) in sources.iter().enumerate() {
            let last_ts =
                scan::last_line(&*s.file, s.complete)?.and_then(|(_, l)| line::timestamp(&l));
            if last_ts.is_some_and(|t| t + ORDER_SLACK < since) {
                continue;
            }
            start_idx = i;
            start_off = scan::bisect(&*s.file, s.complete, since)?;
            break;
        }
    }
    let mut prev_seq: Option<u64> = None;
    for (idx, s) in sources.iter().enumerate().skip(start_idx) {
        let from = if idx == start_idx { start_off } else { 0 };
        let mut done = false;
        let mut err = None;
        scan::forward(&*s.file, from, s.complete, &mut |off, raw| {
            let seq = match (line::seq(raw), prev_seq) {
                (Some(s), _) => s,
                (None, Some(p)) => p + 1,
                (None, None) => match scan::seq_before(sources, idx, off) {
                    Ok(b) => b + 1,
                    Err(e) => {
                        err = Some(e);
                        return Ok(false);
                    }
                },
            };
            prev_seq = Some(seq);
            let Some(ts) = line::timestamp(raw) else {
                if !raw.is_empty() {
                    warn.corrupt(s, off);
                }
                return Ok(true);
            };
            if filter.until.is_some_and(|u| ts > u + ORDER_SLACK) {
                done = true;
                return Ok(false);
            }
            match filter.matches(raw, ts) {
                None => {
                    warn.corrupt(s, off);
                    Ok(true)
                }
                Some(false) => Ok(true),
                Some(true) => {
                    let Ok(text) = std::str::from_utf8(raw) else {
                        warn.corrupt(s, off);
                        return Ok(true);
                    };
                    match sink(&LogLine {
                        raw: text,
                        timestamp: ts,
                        seq,
                    }) {
                        Ok(true) => {
                            emitted += 1;
                            if q.limit.is_some_and(|l| emitted >= l) {
                                done = true;
                                return Ok(false);
                            }
                            Ok(true)
                        }
                        Ok(false) => {
                            done = true;
                            Ok(false)
                        }
                        Err(e) => {
                            err = Some(e);
                            Ok(false)
                        }
                    }
                }
            }
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        if done {
            break;
        }
    }
    let _ = CHUNK;
    Ok(())
}
