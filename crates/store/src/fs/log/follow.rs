//! Following the log: the query's answer, then new lines as they come.
//!
//! After the query, the live file is read on from where the query's
//! snapshot ended. A last line without newline is waited for (a writer is
//! finishing it), not skipped. When retention seals the live file, the old
//! file is read to its end before the new one is opened by path, so no
//! line is missed or shown twice. Waiting uses a watch on the events
//! directory with a short timeout, so `stop` is checked a few times a
//! second.

use std::io;
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;

use crate::error::{Error, IoContext, Result};
use crate::io::{File, FileId, PollWatch};
use crate::model::{EventQuery, ReadReport};

use super::line;
use super::query::{self, Filter};
use super::scan::{self, Lines, CHUNK};
use super::{EventLog, LogLine, Warnings, ORDER_SLACK};

/// Longest wait between checks of `stop`.
const POLL: Duration = Duration::from_millis(200);

/// The live file being followed.
struct Tail {
    file: Box<dyn File>,
    id: FileId,
    /// End of the last complete line handed on.
    pos: u64,
}

/// What new lines are for.
struct Follower<'q, 's> {
    filter: Filter,
    /// Lines still wanted (`limit`).
    left: Option<usize>,
    /// Past this time nothing more can match (`until` plus the slack).
    until: Option<Timestamp>,
    /// `seq` of the last line read.
    seq: u64,
    warn: Warnings,
    sink: &'s mut (dyn FnMut(&LogLine) -> Result<bool> + 'q),
}

impl EventLog<'_> {
    /// Like `query`, then keep handing new matching lines as they are
    /// appended, until `stop()` is true or `sink` returns false (or the
    /// query's `limit` or `until` is reached).
    pub fn follow(
        &self,
        q: &EventQuery,
        stop: &dyn Fn() -> bool,
        sink: &mut dyn FnMut(&LogLine) -> Result<bool>,
    ) -> Result<ReadReport> {
        let ordered = !self.is_unordered()?;
        let mut parts = scan::snapshot(self.io, self.layout, self.id)?;
        let mut warn = Warnings::default();
        let past = query::run(&parts, q, ordered, &mut warn, sink)?;
        if past.stopped {
            return Ok(warn.into_report());
        }
        let seq = scan::seq_before(&parts, parts.len(), 0)?;
        let mut tail = match parts.pop() {
            Some(p) if p.base.is_none() => Some(Tail {
                file: p.file,
                id: p.id,
                pos: p.end,
            }),
            _ => None,
        };
        drop(parts);
        let mut f = Follower {
            filter: Filter::new(q),
            left: q.limit.map(|l| l.saturating_sub(past.emitted)),
            until: q.until.map(|u| u.checked_add(ORDER_SLACK).unwrap_or(u)),
            seq,
            warn,
            sink,
        };
        let path = self.live_path();
        let mut watch = self
            .io
            .watch(&self.layout.events())
            .unwrap_or_else(|_| Box::new(PollWatch));
        while !stop() {
            if tail.is_none() {
                tail = self.open_tail(&path)?;
            }
            if let Some(t) = tail.as_mut() {
                if !f.drain(t, &path)? {
                    break;
                }
                if self.replaced(t, &path)? {
                    // Sealed: lines may have landed just before the seal.
                    if !f.drain(t, &path)? {
                        break;
                    }
                    let len = t.file.len().ctx("inspect", &path)?;
                    if len > t.pos {
                        f.warn.line(
                            &path,
                            t.pos,
                            &format!(
                                "skipped an unfinished last line of {} bytes in a sealed file",
                                len - t.pos
                            ),
                        );
                    }
                    tail = None;
                    continue;
                }
            }
            if watch.wait(POLL).is_err() {
                watch = Box::new(PollWatch);
            }
        }
        Ok(f.warn.into_report())
    }

    fn open_tail(&self, path: &Path) -> Result<Option<Tail>> {
        match self.io.open_read(path) {
            Ok(file) => {
                let id = file.id().ctx("inspect", path)?;
                Ok(Some(Tail { file, id, pos: 0 }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("open", path, e)),
        }
    }

    /// Whether the file at `path` is no longer the one followed.
    fn replaced(&self, t: &Tail, path: &Path) -> Result<bool> {
        match self.io.metadata(path) {
            Ok(m) => Ok(m.id != t.id),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(Error::io("inspect", path, e)),
        }
    }
}

impl Follower<'_, '_> {
    /// Hand on the complete lines appended since `t.pos`. False when the
    /// follow is over.
    fn drain(&mut self, t: &mut Tail, path: &Path) -> Result<bool> {
        let len = t.file.len().ctx("inspect", path)?;
        if len < t.pos {
            // Something other than mstate cut the file below what was read.
            self.warn.line(
                path,
                t.pos,
                "the followed file was cut short; going on from its new end",
            );
            t.pos = scan::complete_end(&*t.file, 0, len, path)?;
            return Ok(true);
        }
        let mut lines = Lines::new(&*t.file, path, t.pos, len, CHUNK);
        let mut go_on = true;
        while let Some((off, raw)) = lines.next_line()? {
            let Some(rec) = line::record(raw) else {
                continue;
            };
            self.seq = line::explicit_seq(rec.payload).unwrap_or(self.seq.saturating_add(1));
            if let Some(edge) = self.until {
                if line::timestamp_of(rec.payload).is_some_and(|ts| ts > edge) {
                    go_on = false;
                    break;
                }
            }
            let Some((text, ts, fields)) =
                query::accept(&self.filter, &mut self.warn, path, off, rec)
            else {
                continue;
            };
            let more = (self.sink)(&LogLine::from_line(text, ts, self.seq, fields))?;
            if let Some(left) = self.left.as_mut() {
                *left = left.saturating_sub(1);
            }
            if !more || self.left == Some(0) {
                go_on = false;
                break;
            }
        }
        t.pos = lines.pos();
        Ok(go_on)
    }
}
