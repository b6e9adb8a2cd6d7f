//! The event log of one milestone (STUB: being written; signatures are the contract).

use jiff::Timestamp;
use serde_json::Value;

use crate::error::Result;
use crate::fs::layout::Layout;
use crate::id::{EventType, MilestoneId};
use crate::io::Io;
use crate::model::{Actor, Event, EventQuery, ReadReport};

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

/// The event log of one milestone in a filesystem store.
pub struct EventLog<'a> {
    pub io: &'a dyn Io,
    pub layout: &'a Layout,
    pub id: &'a MilestoneId,
}

impl EventLog<'_> {
    /// Append one event durably and return it as stored.
    pub fn append(
        &self,
        actor: &Actor,
        session_id: &str,
        event_type: &EventType,
        data: &Value,
    ) -> Result<Event> {
        let _ = (actor, session_id, event_type, data);
        todo!()
    }

    /// Run `q`, handing each matching line to `sink` until it returns false.
    pub fn query(
        &self,
        q: &EventQuery,
        sink: &mut dyn FnMut(&LogLine) -> Result<bool>,
    ) -> Result<ReadReport> {
        let _ = (q, sink);
        todo!()
    }

    /// Like `query`, then keep handing new matching lines as they are
    /// appended, until `stop()` is true or `sink` returns false.
    pub fn follow(
        &self,
        q: &EventQuery,
        stop: &dyn Fn() -> bool,
        sink: &mut dyn FnMut(&LogLine) -> Result<bool>,
    ) -> Result<ReadReport> {
        let _ = (q, stop, sink);
        todo!()
    }

    /// Remove events older than `cutoff` without ever rewriting what
    /// writers append to.
    pub fn cleanup(&self, cutoff: Timestamp, dry_run: bool) -> Result<LogCleanup> {
        let _ = (cutoff, dry_run);
        todo!()
    }
}
