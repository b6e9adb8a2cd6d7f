//! What writers were told, and checks that the store agrees with it.
//!
//! Writers running while connections die record each write by a key of
//! its own: acknowledged (exit 0), failed saying it may have committed
//! (a connection lost while it ran), or failed saying nothing was done.
//! After the run, [`check_round`] compares a milestone written by
//! `update --set /KEY=1` and `log ID tick {"key": KEY}` with that record.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::process::Output;

use super::pg::Bin;

/// The words of a failed write that may have committed all the same
/// (its connection was lost while it ran; `Fail::into_error`).
pub const MAYBE_COMMITTED: &str = "unless the loss came while it committed";

/// A command's outcome by key: acknowledged (exit 0); failed, when it
/// may or may not have been committed; failed, saying nothing was done.
#[derive(Debug, Default, Clone)]
pub struct Outcomes {
    pub acked: BTreeSet<String>,
    pub failed: BTreeSet<String>,
    pub not_done: BTreeSet<String>,
}

impl Outcomes {
    /// Record the outcome of the write `key` from its output: exit 0 is
    /// acknowledged; a failure is `failed` if its message says it may
    /// have committed, else `not_done`.
    pub fn record(&mut self, key: String, out: &Output) {
        if out.status.success() {
            self.acked.insert(key);
        } else if String::from_utf8_lossy(&out.stderr).contains(MAYBE_COMMITTED) {
            self.failed.insert(key);
        } else {
            self.not_done.insert(key);
        }
    }

    /// Add another record's keys to this one.
    pub fn extend(&mut self, other: Outcomes) {
        self.acked.extend(other.acked);
        self.failed.extend(other.failed);
        self.not_done.extend(other.not_done);
    }

    /// `present` holds every acknowledged write, none that said it was
    /// not done, and nothing that was not attempted (a write that failed
    /// saying it may have committed may be there or not).
    pub fn check(&self, present: &BTreeSet<String>, what: &str) {
        let lost: Vec<_> = self.acked.difference(present).collect();
        assert!(lost.is_empty(), "acknowledged {what} lost: {lost:?}");
        let done_anyway: Vec<_> = self.not_done.intersection(present).collect();
        assert!(
            done_anyway.is_empty(),
            "{what} that failed saying nothing was done are there: {done_anyway:?}"
        );
        let foreign: Vec<_> = present
            .iter()
            .filter(|k| !self.acked.contains(*k) && !self.failed.contains(*k))
            .filter(|k| !self.not_done.contains(*k))
            .collect();
        assert!(foreign.is_empty(), "{what} never attempted: {foreign:?}");
    }
}

/// The invariants of milestone `m` after a run, with nobody failing:
/// its state is `{"base": true}` plus a key per landed update, its
/// revision counts them (one each), the state events are exactly
/// revisions 1..R, the `tick` events are the landed logs once each, the
/// seqs are 1..N without a gap, and both agree with what the writers
/// were told ([`Outcomes::check`]).
pub fn check_round(bin: &Bin, updates: &Outcomes, logs: &Outcomes) {
    let env = bin.envelope("m");
    let state = env["state"].as_object().expect("state is an object");
    let present: BTreeSet<String> = state.keys().filter(|k| *k != "base").cloned().collect();
    updates.check(&present, "updates");
    let revision = env["revision"].as_u64().expect("revision");
    assert_eq!(
        revision,
        1 + present.len() as u64,
        "every landed update is one revision"
    );

    let mut ticks = BTreeSet::new();
    let mut state_revisions = Vec::new();
    for (k, e) in bin.events("m").iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(k as u64 + 1), "seq gap at {e}");
        match e["event_type"].as_str() {
            Some("state_initialized") => assert_eq!(k, 0, "{e}"),
            Some("state_saved" | "state_updated") => {
                state_revisions.push(e["data"]["revision"].as_u64().expect("revision"))
            }
            Some("tick") => {
                let key = e["data"]["key"].as_str().expect("key").to_string();
                assert!(ticks.insert(key), "event appended twice: {e}");
            }
            _ => panic!("unexpected event {e}"),
        }
    }
    assert_eq!(
        state_revisions,
        (1..=revision).collect::<Vec<_>>(),
        "the state events and the state agree"
    );
    logs.check(&ticks, "events");
}
