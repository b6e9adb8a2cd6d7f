//! Fault injection: every mutating operation, with its Nth I/O call failing
//! (ENOSPC, EIO, EACCES, EROFS, short write), for N = 1, 2, ... until the
//! operation completes without meeting the fault.
//!
//! An operation that succeeds despite the fault (met after its commit
//! point, and reported as a warning) has made its change.
//!
//! After each failure: the error is an I/O error (exit code 1 at the CLI),
//! no temporary file is left behind, and a store reopened on the same disk
//! holds the old or the new state, every visible event parses with `seq`
//! contiguous, works without manual repair, and `doctor --repair` leaves it
//! clean. `MSTATE_FAULT_REPORT=path` writes the figures as JSON lines.

mod common;

use mstate_store::prelude::*;
use std::collections::BTreeMap;

use common::*;
use mstate_store::io::fault::{Fault, FaultIo};
use mstate_store::io::sim::SimIo;
use mstate_store::model::NewEvent;
use mstate_store::{ErrorKind, EventType};
use serde_json::json;

fn leftovers(io: &SimIo) -> Vec<String> {
    io.image()
        .files()
        .into_keys()
        .filter(|p| p.contains(".tmp.") || p.contains("/.tmp-"))
        .collect()
}

#[test]
fn every_operation_fails_cleanly_at_every_io_call() {
    let mut figures: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for case in cases() {
        let clean = SimIo::default();
        let clean_store = open(&clean, PID_BEFORE);
        (case.setup)(&clean_store);
        (case.op)(&clean_store).unwrap();
        let state_after = state_of(&clean_store);
        for fault in Fault::ALL {
            let mut n = 1u64;
            loop {
                let sim = SimIo::default();
                let setup_store = open(&sim, PID_BEFORE);
                (case.setup)(&setup_store);
                let state_before = state_of(&setup_store);
                let events_before = events_of(&setup_store);
                let leftovers_before = leftovers(&sim);
                let faulty = FaultIo::new(sim.clone(), 0, fault);
                let store = open(&faulty, PID_BEFORE);
                faulty.arm(n);
                let ctx = format!("{} with {fault:?} at call {n}", case.name);
                let outcome = (case.op)(&store);
                let fired = faulty.fired();
                if let Err(e) = &outcome {
                    // Every failure comes from the fault, as an I/O error.
                    assert!(fired, "{ctx}: failed without a fault: {e}");
                    assert_eq!(e.kind(), ErrorKind::Io, "{ctx}: {e}");
                }
                let entry = figures.entry(case.name).or_default();
                if fired {
                    entry.0 += 1;
                }
                // Check the store on the disk as the fault left it.
                let after = open(&sim, PID_AFTER);
                let st = state_of(&after);
                assert!(
                    st == state_before || st == state_after,
                    "{ctx}: state {st:?} is neither {state_before:?} nor {state_after:?}"
                );
                // Success is reported only with the change in place; a
                // fault it got past after its commit point is a warning.
                let warnings = store.take_warnings();
                if outcome.is_ok() {
                    assert_eq!(st, state_after, "{ctx}: succeeded without its change");
                } else {
                    assert!(
                        warnings.is_empty(),
                        "{ctx}: failed with warnings {warnings:?}"
                    );
                }
                let evs = events_of(&after);
                assert_contiguous(&evs);
                for e in must_survive(&events_before) {
                    assert_eq!(
                        evs.iter().filter(|x| **x == e).count(),
                        1,
                        "{ctx}: lost {e:?}: {evs:?}"
                    );
                }
                let extra: Vec<String> = leftovers(&sim)
                    .into_iter()
                    .filter(|l| !leftovers_before.contains(l))
                    .collect();
                assert!(extra.is_empty(), "{ctx}: partial files left: {extra:?}");
                after
                    .save(&id(), &json!({"after": "fault"}), &wo())
                    .unwrap_or_else(|e| panic!("{ctx}: save: {e}"));
                let ev = NewEvent {
                    event_type: EventType::new("after_fault").unwrap(),
                    data: json!({}),
                    session_id: None,
                };
                after
                    .log(&id(), &ev)
                    .unwrap_or_else(|e| panic!("{ctx}: log: {e}"));
                assert_contiguous(&events_of(&after));
                after.doctor(true, &mut |_, _| {}).unwrap();
                let report = after.doctor(false, &mut |_, _| {}).unwrap();
                assert!(report.findings.is_empty(), "{ctx}: {:#?}", report.findings);
                entry.1 += 1;
                if !fired {
                    break;
                }
                n += 1;
                assert!(n < 10_000, "{ctx}: operation never completes");
            }
        }
    }
    let injected: u64 = figures.values().map(|f| f.0).sum();
    eprintln!("faults injected: {injected}");
    for (name, (faults, runs)) in &figures {
        eprintln!("  {name}: {faults} faults injected over {runs} runs");
    }
    if let Ok(path) = std::env::var("MSTATE_FAULT_REPORT") {
        let lines: String = figures
            .iter()
            .map(|(n, (f, r))| {
                format!(
                    "{}\n",
                    json!({"family": "faults", "operation": n, "faults": f, "runs": r})
                )
            })
            .collect();
        let _ = std::fs::write(path, lines);
    }
}
