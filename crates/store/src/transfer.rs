//! Moving a whole store to another, of either backend: the records a
//! store exports ([`crate::Store::export`]) and another imports
//! ([`crate::Store::import`]), and the tally that checks the copy.
//!
//! A store is exported as a stream of [`Record`]s: for each milestone (in
//! id order) its [`Record::Milestone`], then its superseded revisions
//! (oldest first), its checkpoints, and its events in seq order; then
//! every session, then the current session. An importer may rely on that
//! order: everything of a milestone comes after its `Milestone` record and
//! before the next one. Nothing holds a whole log: events travel one at a
//! time, each the stored line byte for byte.
//!
//! [`Tally`] summarises a stream per milestone (state, counts, and a
//! 64-bit FNV-1a checksum over what was stored), so a copy is checked by
//! exporting the target again and comparing the tallies.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::id::{CheckpointName, MilestoneId};
use crate::model::{SessionRecord, Status};

/// A milestone's current state.
#[derive(Debug, Clone, PartialEq)]
pub struct StateRecord {
    pub revision: u64,
    /// The state as JSON text (any layout; importers keep or re-lay it out).
    pub text: String,
    /// When it was written (RFC 3339, microseconds).
    pub written_at: String,
}

/// One thing a store holds, as it travels between stores.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A milestone, with its current state if it has one.
    Milestone {
        id: MilestoneId,
        status: Status,
        state: Option<StateRecord>,
    },
    /// A superseded revision (a backup) of the last milestone.
    Revision {
        milestone: MilestoneId,
        revision: u64,
        text: String,
        /// When that state was written.
        written_at: String,
        /// When a later write replaced it.
        superseded_at: String,
    },
    /// A named checkpoint of the last milestone.
    Checkpoint {
        milestone: MilestoneId,
        name: CheckpointName,
        revision: u64,
        text: String,
        /// When the checkpoint was made.
        created_at: String,
    },
    /// An event of the last milestone: its seq and its stored line (one
    /// compact JSON object, without the newline).
    Event {
        milestone: MilestoneId,
        seq: u64,
        line: String,
    },
    /// A session, as stored.
    Session(SessionRecord),
    /// The store's current session.
    CurrentSession(String),
}

/// 64-bit FNV-1a, fed piece by piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    /// Feed `bytes`, then a separator, so `("ab", "c")` and `("a", "bc")`
    /// differ.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().chain(&[0xff]) {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The checksum as 16 hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The JSON text `text` in one layout (compact), so states compare
/// whatever layout a backend keeps; text that does not parse compares as
/// it is.
fn canonical(text: &str) -> String {
    match crate::json::parse_strict(text.as_bytes(), "state") {
        Ok(v) => serde_json::to_string(&v).unwrap_or_else(|_| text.to_string()),
        Err(_) => text.to_string(),
    }
}

/// What one milestone holds, in numbers and checksums.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MilestoneTally {
    pub status: String,
    /// Revision of the current state (0: none).
    pub revision: u64,
    /// Checksum of the current state (its JSON value, in any layout).
    pub state_checksum: String,
    pub revisions: u64,
    pub revisions_checksum: String,
    pub checkpoints: u64,
    pub checkpoints_checksum: String,
    pub events: u64,
    /// Checksum over the event lines and their seqs, in seq order.
    pub events_checksum: String,
    /// Seq of the last event (0: none).
    pub last_seq: u64,
}

/// Running checksums of one milestone.
#[derive(Debug, Default)]
struct Running {
    tally: MilestoneTally,
    revisions: Fnv64,
    checkpoints: Fnv64,
    events: Fnv64,
}

/// What a stream of records held: per milestone, sessions, current session.
#[derive(Debug, Default)]
pub struct Tally {
    milestones: BTreeMap<String, Running>,
    sessions: BTreeMap<String, String>,
    current_session: Option<String>,
    /// Records counted, of every kind.
    pub records: u64,
    /// Events counted, of every milestone.
    pub events: u64,
}

impl Tally {
    /// Count one record.
    pub fn add(&mut self, record: &Record) {
        self.records += 1;
        match record {
            Record::Milestone { id, status, state } => {
                let run = self.milestones.entry(id.to_string()).or_default();
                run.tally.status = status.as_str().to_string();
                if let Some(s) = state {
                    run.tally.revision = s.revision;
                    let mut h = Fnv64::default();
                    h.feed(canonical(&s.text).as_bytes());
                    run.tally.state_checksum = h.hex();
                }
            }
            Record::Revision {
                milestone,
                revision,
                text,
                ..
            } => {
                let run = self.milestones.entry(milestone.to_string()).or_default();
                run.tally.revisions += 1;
                run.revisions.feed(revision.to_string().as_bytes());
                run.revisions.feed(canonical(text).as_bytes());
            }
            Record::Checkpoint {
                milestone,
                name,
                revision,
                text,
                ..
            } => {
                let run = self.milestones.entry(milestone.to_string()).or_default();
                run.tally.checkpoints += 1;
                run.checkpoints.feed(name.as_str().as_bytes());
                run.checkpoints.feed(revision.to_string().as_bytes());
                run.checkpoints.feed(canonical(text).as_bytes());
            }
            Record::Event {
                milestone,
                seq,
                line,
            } => {
                self.events += 1;
                let run = self.milestones.entry(milestone.to_string()).or_default();
                run.tally.events += 1;
                run.tally.last_seq = *seq;
                run.events.feed(seq.to_string().as_bytes());
                run.events.feed(line.as_bytes());
            }
            Record::Session(s) => {
                // Times as every backend gives them back (microseconds).
                let mut s = s.clone();
                for t in std::iter::once(&mut s.created_at).chain(s.ended_at.as_mut()) {
                    if let Some(ts) = crate::time::parse_timestamp(t) {
                        *t = crate::time::format_micros(ts);
                    }
                }
                let text = serde_json::to_string(&s).unwrap_or_default();
                let mut h = Fnv64::default();
                h.feed(text.as_bytes());
                self.sessions.insert(s.session_id.clone(), h.hex());
            }
            Record::CurrentSession(s) => self.current_session = Some(s.clone()),
        }
    }

    /// The tally of each milestone, by id.
    pub fn milestones(&self) -> BTreeMap<String, MilestoneTally> {
        self.milestones
            .iter()
            .map(|(id, run)| {
                let mut t = run.tally.clone();
                t.revisions_checksum = run.revisions.hex();
                t.checkpoints_checksum = run.checkpoints.hex();
                t.events_checksum = run.events.hex();
                (id.clone(), t)
            })
            .collect()
    }

    /// Checksum of each session, by id.
    pub fn sessions(&self) -> &BTreeMap<String, String> {
        &self.sessions
    }

    /// The current session, if the stream named one.
    pub fn current_session(&self) -> Option<&str> {
        self.current_session.as_deref()
    }

    /// Where `other` (a copy's tally) differs from this one, restricted
    /// to what this one holds (the copy may hold more when it was not
    /// empty): one message per difference.
    pub fn differences(&self, other: &Tally) -> Vec<String> {
        let mut out = Vec::new();
        let theirs = other.milestones();
        for (id, mine) in self.milestones() {
            match theirs.get(&id) {
                None => out.push(format!("milestone '{id}' is missing from the target")),
                Some(t) if *t != mine => {
                    let mut what = Vec::new();
                    if t.status != mine.status {
                        what.push(format!("status {} instead of {}", t.status, mine.status));
                    }
                    if t.revision != mine.revision || t.state_checksum != mine.state_checksum {
                        what.push(format!(
                            "state revision {} instead of {} (or other content)",
                            t.revision, mine.revision
                        ));
                    }
                    if t.revisions != mine.revisions
                        || t.revisions_checksum != mine.revisions_checksum
                    {
                        what.push(format!(
                            "{} superseded revisions instead of {} (or other content)",
                            t.revisions, mine.revisions
                        ));
                    }
                    if t.checkpoints != mine.checkpoints
                        || t.checkpoints_checksum != mine.checkpoints_checksum
                    {
                        what.push(format!(
                            "{} checkpoints instead of {} (or other content)",
                            t.checkpoints, mine.checkpoints
                        ));
                    }
                    if t.events != mine.events || t.events_checksum != mine.events_checksum {
                        what.push(format!(
                            "{} events instead of {} (or other lines)",
                            t.events, mine.events
                        ));
                    }
                    out.push(format!("milestone '{id}': {}", what.join(", ")));
                }
                Some(_) => {}
            }
        }
        for (sid, sum) in &self.sessions {
            match other.sessions.get(sid) {
                None => out.push(format!("session '{sid}' is missing from the target")),
                Some(s) if s != sum => out.push(format!("session '{sid}' differs in the target")),
                Some(_) => {}
            }
        }
        if let Some(cur) = &self.current_session {
            if other.current_session.as_deref() != Some(cur) {
                out.push(format!(
                    "the target's current session is {:?}, not '{cur}'",
                    other.current_session.as_deref().unwrap_or("none")
                ));
            }
        }
        out
    }
}

/// A stored time for a record: RFC 3339 with microseconds.
pub(crate) fn format_time(t: std::time::SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .map(crate::time::format_micros)
        .unwrap_or_default()
}

/// Parse a record's time, naming what it belongs to when it is bad.
pub(crate) fn parse_time(s: &str, what: &str) -> crate::Result<std::time::SystemTime> {
    crate::time::parse_timestamp(s)
        .map(std::time::SystemTime::from)
        .ok_or_else(|| {
            crate::Error::invalid(
                "imported record",
                format!("{what}: {s:?} is not an RFC 3339 time"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_separates_pieces_and_states_compare_in_any_layout() {
        let (mut a, mut b) = (Fnv64::default(), Fnv64::default());
        a.feed(b"ab");
        a.feed(b"c");
        b.feed(b"a");
        b.feed(b"bc");
        assert_ne!(a, b);
        assert_eq!(
            canonical("{\n  \"a\": [1, 2]\n}"),
            canonical("{\"a\":[1,2]}")
        );
        assert_ne!(canonical("{\"a\":1.0}"), canonical("{\"a\":1}"));
    }

    #[test]
    fn differences_name_what_differs() {
        let id = MilestoneId::new("m").unwrap();
        let ev = |seq: u64, line: &str| Record::Event {
            milestone: id.clone(),
            seq,
            line: line.to_string(),
        };
        let head = Record::Milestone {
            id: id.clone(),
            status: Status::Active,
            state: None,
        };
        let (mut a, mut b) = (Tally::default(), Tally::default());
        for r in [&head, &ev(1, "{}"), &ev(2, "{\"x\":1}")] {
            a.add(r);
        }
        for r in [&head, &ev(1, "{}"), &ev(2, "{\"x\":2}")] {
            b.add(r);
        }
        assert!(a.differences(&a).is_empty());
        let d = a.differences(&b);
        assert_eq!(d.len(), 1);
        assert!(d[0].contains("events"), "{d:?}");
    }
}
