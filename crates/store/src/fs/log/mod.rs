//! The event log of one milestone: `events/milestone-<id>.jsonl`, the
//! seed's file, appended in place, plus sealed segments of older events in
//! `events/segments/<id>/` once retention has run.
//!
//! This module owns every byte of those files and of `events/quarantine/`.
//! Guarantees:
//! - **Whole, durable lines.** Each event is one compact JSON line, written
//!   by one `write` under an exclusive `flock` of the live file and synced
//!   (after the unlock, so concurrent appenders share flushes) before
//!   [`EventLog::append`] returns: concurrent writers never interleave or
//!   lose a line, and an acknowledged append survives power loss. After a
//!   crash, lines never acknowledged may be missing or torn; as several
//!   appenders can have one in flight, a torn one may sit before a whole
//!   one at the end of the log. Readers skip what does not parse and
//!   doctor reports it. The seed's `grep '"event_type":"X"'` still finds
//!   mstate's lines. No append is acknowledged while the file's name may
//!   not be durable (an empty or seed-begun file gets its directory synced
//!   first), nor after a failed sync until its bytes were written again
//!   and synced (see `unsynced.rs`); a failed sync whose retry fails too
//!   fences the log: the next writer rewrites those bytes first.
//! - **`seq` without gaps or repeats.** Events are numbered 1, 2, 3, ...
//!   per milestone whatever the number of writer processes. A line without
//!   `seq` (the seed's) counts as the previous line's plus one. Finding the
//!   last `seq` reads the log backwards from its end, so appends cost the
//!   same on a 10 GB log as on an empty one.
//! - **Time order.** Timestamps are RFC 3339 UTC with microseconds. A new
//!   line is stamped no earlier than the line before it when that line is
//!   at most [`ORDER_SLACK`] ahead of the clock, which keeps the log in
//!   order through small steps and lets `since`/`until` bisect the file by
//!   offset. A line further ahead (a clock stepped back, a line stamped in
//!   the future) is not followed: the new line gets the real time, and the
//!   log is first marked as out of order
//!   (`events/quarantine/milestone-<id>.unordered`), after which its
//!   queries scan it whole, so answers stay exact. Order by `seq` is the
//!   order lines were written in.
//! - **Torn tails are contained.** A last line a crash cut short is skipped
//!   by readers (with a warning) and moved to `events/quarantine/` by the
//!   next append, so torn bytes never sit between whole lines. Corrupt
//!   lines (hand edits, the seed's interpolated JSON) are skipped with a
//!   warning, never a panic.
//! - **Bounded reads.** Queries stream in 1 MiB chunks, bisect by time and
//!   read `tail` backwards, so memory stays small and recent-end queries
//!   answer in milliseconds whatever the log's size.
//! - **Retention loses nothing it should keep.** [`EventLog::cleanup`]
//!   never rewrites the file writers append to: it seals the live file into
//!   a segment (a fresh live file takes its name, so `tail -F` goes on) and
//!   then drops or rewrites only sealed segments. Kept events keep their
//!   `seq`.
//!
//! ## Segments
//!
//! A segment is named after the `seq` of its first line when it was sealed
//! (`00000000000000000042.jsonl`, 20 digits so names sort like numbers).
//! Segments are read oldest first, then the live file, as one log. A line
//! without `seq` at the start of a segment takes the segment's first
//! `seq`; in the live file it continues from the last line of the newest
//! segment. When retention drops the first lines of a segment, the rewritten
//! file starts with a header line `{"mstate_segment":{"first_seq":N}}` that
//! carries the `seq` its first remaining line has, so nothing is renumbered;
//! when it drops all of the newest segment, a header-only file remains so
//! numbering goes on after it. Only retention and doctor's repair, under
//! `segments/<id>/.lock`, write segments.
//!
//! ## Limits
//!
//! - The seed's own appends (`echo >>`) take no lock, so `seq` is free of
//!   gaps and repeats only among mstate's lines and the seed lines that
//!   landed before an append looked. An append checks the file's length
//!   again just before its write and numbers its line afresh when a seed
//!   line arrived meanwhile, but a seed line landing between that check
//!   and the write shares the mstate line's `seq`. Doctor lists every
//!   repeat and gap. Nothing is lost or interleaved.
//! - A corrupt line takes a `seq` like any other, so the shown numbers skip
//!   where one was.
//! - Lines further out of time order than [`ORDER_SLACK`] may be missed by
//!   `since`/`until` and outlive retention. `since` looks back past its
//!   bisection point only until a line mstate wrote (with a `seq`) that is
//!   older than the bound: mstate never writes a timestamp earlier than
//!   the line before it, so on one clock nothing before that line is newer.
//! - A query holds one open file per segment; retention keeps them few.

mod append;
mod clock;
mod follow;
pub(crate) mod line;
mod query;
mod scan;
mod segment;
#[cfg(test)]
mod tests;
mod unsynced;

use std::path::{Path, PathBuf};

use jiff::SignedDuration;

use crate::error::Result;
use crate::fs::layout::Layout;
use crate::id::MilestoneId;
use crate::io::Io;
use crate::model::{EventQuery, ReadReport};

pub use self::clock::{clock_check, ClockCheck};
pub use self::line::Fields;
use self::scan::Part;

/// One line handed to a query's sink: the store API's
/// [`crate::model::EventRecord`].
pub use crate::model::EventRecord as LogLine;

/// What a cleanup of the log did or would do.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LogCleanup {
    /// Events removed (or that would be).
    pub events_removed: u64,
    /// Files removed or rewritten, for the report.
    pub files: Vec<String>,
}

/// How far out of time order lines may be: the seed writes one-second
/// timestamps and does not lock, so its lines can trail mstate's a little.
/// Bisection and early stops allow this much slack; within it, results are
/// exactly those of a full scan.
pub const ORDER_SLACK: SignedDuration = SignedDuration::from_secs(5);

/// The event log of one milestone in a filesystem store.
pub struct EventLog<'a> {
    /// Every filesystem effect goes through this.
    pub io: &'a dyn Io,
    /// Where the store's files are.
    pub layout: &'a Layout,
    /// The milestone whose log this is.
    pub id: &'a MilestoneId,
}

impl EventLog<'_> {
    /// Run `q`, handing each matching line to `sink` until it returns false.
    ///
    /// Lines come oldest first, or newest first with `q.reverse`. A missing
    /// log is an empty one. Torn tails and corrupt lines are skipped and
    /// reported in the returned warnings.
    pub fn query(
        &self,
        q: &EventQuery,
        sink: &mut dyn FnMut(&LogLine) -> Result<bool>,
    ) -> Result<ReadReport> {
        let ordered = !self.is_unordered()?;
        let parts = scan::snapshot(self.io, self.layout, self.id)?;
        let mut warn = Warnings::default();
        query::run(&parts, q, ordered, &mut warn, sink)?;
        Ok(warn.into_report())
    }

    /// The `seq` of the last event of the log (0 for an empty log).
    pub fn last_seq(&self) -> Result<u64> {
        let parts = scan::snapshot(self.io, self.layout, self.id)?;
        scan::seq_before(&parts, parts.len(), 0)
    }

    fn live_path(&self) -> PathBuf {
        self.layout.event_log(self.id)
    }

    /// A path for messages and reports: relative to the store when inside it.
    fn display(&self, path: &Path) -> String {
        path.strip_prefix(self.layout.root())
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// Most line warnings reported one by one; the rest are counted.
const MAX_LINE_WARNINGS: usize = 20;

/// Warnings met while reading.
#[derive(Debug, Default)]
struct Warnings {
    list: Vec<String>,
    /// Line warnings met, and how many of them are in `list`.
    lines: u64,
    lines_listed: u64,
}

impl Warnings {
    /// A torn last line in `part` (readers skip it).
    fn torn(&mut self, part: &Part) {
        let bytes = part.torn();
        if bytes > 0 {
            self.list.push(format!(
                "skipped a torn last line of {bytes} bytes at offset {} of {} (cut short by a crash or a writer that did not finish; the next append moves it to events/quarantine/)",
                part.end,
                part.path.display()
            ));
        }
    }

    /// Something about one line (skipped or recovered).
    fn line(&mut self, path: &Path, offset: u64, what: &str) {
        self.lines += 1;
        if self.lines_listed < MAX_LINE_WARNINGS as u64 {
            self.lines_listed += 1;
            self.list
                .push(format!("{what} at offset {offset} of {}", path.display()));
        }
    }

    fn into_report(mut self) -> ReadReport {
        if self.lines > self.lines_listed {
            self.list.push(format!(
                "{} more damaged lines skipped",
                self.lines - self.lines_listed
            ));
        }
        ReadReport {
            warnings: self.list,
        }
    }
}
