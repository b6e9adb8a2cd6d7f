//! Crash simulation: every mutating operation, crashed at every I/O call.
//!
//! Each operation runs on a [`SimIo`] disk after a setup. Then, for every
//! number of I/O calls the operation made, the disk is crashed there in the
//! ways `SimIo::crash_states` lists (durable changes plus subsets of the
//! volatile ones, the last write torn or zero-filled), and a store reopened
//! on each image must hold:
//! - the state parses without recovery and is the old or the new version;
//! - where the new state of a save, update, recovery or restore is there,
//!   so is the backup of the file it replaced;
//! - every event acknowledged before the crash is present exactly once,
//!   `seq` runs 1, 2, 3, ... without gaps, every visible line parses;
//! - the store works without manual repair: a save and a log succeed and
//!   `seq` stays contiguous, and the save's revision is above every
//!   revision acknowledged before the crash;
//! - `doctor --repair` leaves a clean store.
//!
//! `MSTATE_CRASH_LIMIT` (default 12) bounds the images per crash point;
//! `MSTATE_CRASH_REPORT=path` appends the figures as JSON lines.

mod common;

use mstate_store::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use mstate_store::io::sim::SimIo;
use mstate_store::model::NewEvent;
use mstate_store::EventType;
use serde_json::json;

fn limit() -> usize {
    std::env::var("MSTATE_CRASH_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

#[test]
fn every_operation_survives_a_crash_at_every_io_call() {
    let mut figures = BTreeMap::new();
    for case in cases() {
        let io = SimIo::default();
        let before_store = open(&io, PID_BEFORE);
        (case.setup)(&before_store);
        let state_before = state_of(&before_store);
        let events_before = events_of(&before_store);
        let file_before = io
            .image()
            .files()
            .get(&format!("{ROOT}/active/m.json"))
            .cloned();
        let replaces = matches!(
            case.name,
            "save" | "update" | "recover" | "checkpoint restore"
        );
        io.settle();
        let rev_before = revision_of(&before_store);
        (case.op)(&before_store).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let calls = io.calls();
        let rev_after = revision_of(&before_store);
        let state_after = state_of(&before_store);
        let events_after = events_of(&before_store);
        // The reads above count as calls too; crash only within the op.
        let mut explored = 0u64;
        for call in 0..=calls {
            for (n, image) in io
                .crash_states(call, call * 31 + 7, limit())
                .into_iter()
                .enumerate()
            {
                explored += 1;
                let ctx = format!("{} crashed after call {call}/{calls}, image {n}", case.name);
                let crashed = SimIo::from_image(image);
                let store = open(&crashed, PID_AFTER);
                let st =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state_of(&store)))
                        .unwrap_or_else(|_| panic!("{ctx}: state check failed"));
                assert!(
                    st == state_before || st == state_after,
                    "{ctx}: state {st:?} is neither {state_before:?} nor {state_after:?}"
                );
                if replaces && st == state_after && st != state_before {
                    let old = file_before.as_ref().expect("a state file before the op");
                    let backed_up = crashed.image().files().iter().any(|(path, bytes)| {
                        path.contains("/backups/m-")
                            && !path.contains("-checkpoint-")
                            && bytes == old
                    });
                    assert!(
                        backed_up,
                        "{ctx}: the new state is there, the backup of the old one is not"
                    );
                }
                let evs = events_of(&store);
                assert_contiguous(&evs);
                // Every event acknowledged before the op is there, once.
                for e in must_survive(&events_before) {
                    assert_eq!(
                        evs.iter().filter(|x| **x == e).count(),
                        1,
                        "{ctx}: lost {e:?}: {evs:?}"
                    );
                }
                if call == calls {
                    assert_eq!(evs, events_after, "{ctx}: acknowledged events missing");
                }
                // The store works without manual repair.
                let saved = store
                    .save(&id(), &json!({"after": "crash"}), &wo())
                    .unwrap_or_else(|e| panic!("{ctx}: save: {e}"));
                // Revisions never go back: the next one is above every
                // revision acknowledged before the crash.
                let acknowledged = if call == calls { rev_after } else { rev_before };
                assert!(
                    saved.revision > acknowledged,
                    "{ctx}: saved as revision {} after revision {acknowledged}",
                    saved.revision
                );
                let ev = NewEvent {
                    event_type: EventType::new("after_crash").unwrap(),
                    data: json!({}),
                    session_id: None,
                };
                store
                    .log(&id(), &ev)
                    .unwrap_or_else(|e| panic!("{ctx}: log: {e}"));
                let evs2 = events_of(&store);
                assert_contiguous(&evs2);
                assert_eq!(
                    evs2.last().map(|e| e.1.as_str()),
                    Some("after_crash"),
                    "{ctx}"
                );
                // Doctor repairs what the crash left, and is then clean.
                store
                    .doctor(true, &mut |_, _| {})
                    .unwrap_or_else(|e| panic!("{ctx}: doctor: {e}"));
                let report = store.doctor(false, &mut |_, _| {}).unwrap();
                assert!(
                    report.findings.is_empty(),
                    "{ctx}: doctor not clean after repair: {:#?}",
                    report.findings
                );
            }
        }
        figures.insert(case.name, (calls, explored));
    }
    let total: u64 = figures.values().map(|(_, e)| e).sum();
    eprintln!("crash states explored: {total}");
    for (name, (calls, explored)) in &figures {
        eprintln!("  {name}: {calls} I/O calls, {explored} crash states");
    }
    if let Ok(path) = std::env::var("MSTATE_CRASH_REPORT") {
        let lines: String = figures
            .iter()
            .map(|(n, (c, e))| {
                format!(
                    "{}\n",
                    json!({"family": "crash", "operation": n, "io_calls": c, "crash_states": e})
                )
            })
            .collect();
        let _ = std::fs::write(path, lines);
    }
}

/// The revision of the state file (0 when there is none).
fn revision_of(store: &mstate_store::FsStore) -> u64 {
    store
        .load(&id(), &wo())
        .map(|l| l.envelope.revision)
        .unwrap_or(0)
}

#[test]
fn simulated_disk_is_used_for_every_effect() {
    // Nothing reaches the real filesystem: the store root does not exist here.
    let io = SimIo::default();
    let s = open(&io, PID_BEFORE);
    base_setup(&s);
    assert!(!Path::new(ROOT).exists());
    assert!(io
        .image()
        .files()
        .keys()
        .any(|k| k.ends_with("active/m.json")));
}
