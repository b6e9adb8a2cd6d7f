//! Property-based fuzzing of every parser of bytes from disk or the command
//! line: JSON input, state envelopes, lock info, session files, event lines
//! (through a real log), TIME and duration arguments, ids, JSON pointers.
//!
//! cargo-fuzz needs a nightly toolchain, which this project's machines do
//! not have, so these run under proptest: `PROPTEST_CASES` sets the number
//! of cases (the default run is short; `scripts/reliability.sh` runs long).
//! Every property includes "never panics".

use mstate_store::prelude::*;
use std::sync::Arc;

use mstate_store::fs::backup::parse_envelope;
use mstate_store::io::sim::SimIo;
use mstate_store::io::Io;
use mstate_store::json::{parse_strict, pointer_tokens, set_pointer};
use mstate_store::model::{Actor, EventQuery, LockInfo, NewEvent, SessionRecord};
use mstate_store::time::{parse_duration, parse_time_arg};
use mstate_store::{CheckpointName, EventType, FsOptions, FsStore, MilestoneId, SessionId};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Bytes biased towards JSON-looking input.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        "[\\[\\]{}\":,0-9a-z .\\-\\\\ntrufalse]{0,200}".prop_map(String::into_bytes),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
    ]
}

/// Arbitrary JSON values, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

prop_compose! {
    fn any_json_value()(s in "[a-z]{0,8}", n in any::<i64>(), b in any::<bool>()) -> Value {
        json!({"s": s, "n": n, "b": b, "a": [n, s.clone()], "o": {"k": s}})
    }
}

proptest! {
    #[test]
    fn strict_json_never_panics_and_agrees_with_serde(bytes in jsonish()) {
        match parse_strict(&bytes, "input") {
            Ok(v) => {
                // Anything accepted is JSON serde accepts, and re-encodes to the same value.
                let again: Value = serde_json::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
                prop_assert_eq!(again, v);
            }
            Err(e) => prop_assert_eq!(e.kind(), mstate_store::ErrorKind::Invalid),
        }
    }

    #[test]
    fn envelopes_and_records_never_panic(bytes in jsonish()) {
        let _ = parse_envelope(&bytes);
        let _ = serde_json::from_slice::<LockInfo>(&bytes);
        let _ = serde_json::from_slice::<SessionRecord>(&bytes);
    }

    #[test]
    fn envelope_round_trips(state in any_json_value(), rev in any::<u64>()) {
        let env = mstate_store::model::Envelope {
            timestamp: "2026-11-24T12:00:00.000001Z".into(),
            milestone_id: "m".into(),
            version: "1.0".into(),
            revision: rev,
            state,
        };
        let bytes = serde_json::to_vec_pretty(&env).unwrap();
        prop_assert_eq!(parse_envelope(&bytes).unwrap(), env);
    }

    #[test]
    fn time_and_duration_arguments_never_panic(s in "\\PC{0,40}") {
        let now = jiff::Timestamp::now();
        let _ = parse_duration(&s);
        if let Ok(t) = parse_time_arg(&s, now) {
            // An age is never in the future.
            if parse_duration(&s).is_ok() && s.parse::<jiff::Timestamp>().is_err() {
                prop_assert!(t <= now);
            }
        }
    }

    #[test]
    fn names_never_panic(s in "\\PC{0,200}") {
        let _ = MilestoneId::new(s.clone());
        let _ = CheckpointName::new(s.clone());
        let _ = SessionId::new(s.clone());
        let _ = EventType::new(s);
    }

    #[test]
    fn pointers_never_panic(p in "(/[a-z0-9~\\-]{0,4}){0,5}", v in any_json_value()) {
        let mut doc = v;
        let appends = p.split('/').any(|t| t == "-");
        if pointer_tokens(&p).is_ok() && set_pointer(&mut doc, &p, json!(42)).is_ok() && !appends {
            // What was set reads back through serde_json's own pointer.
            prop_assert_eq!(doc.pointer(&p).cloned(), Some(json!(42)));
        }
    }

    /// Arbitrary bytes appended to an event log (a torn or hand-edited
    /// tail) never make readers panic, never surface as events that do not
    /// parse, and never stop the next append.
    #[test]
    fn event_lines_from_disk(garbage in jsonish(), newline in any::<bool>()) {
        let io = SimIo::default();
        let mut actor = Actor::current();
        actor.pid = 4_194_399;
        let store = FsStore::with_io(Arc::new(io.clone()), "/s/.milestones/state", FsOptions { actor, ..FsOptions::default() }).unwrap();
        let id = MilestoneId::new("m").unwrap();
        store.init(&id).unwrap();
        let log = std::path::Path::new("/s/.milestones/state/events/milestone-m.jsonl");
        let mut f = io.open_append(log, false).unwrap();
        f.write_all(&garbage).unwrap();
        if newline { f.write_all(b"\n").unwrap(); }
        let check = || {
            let mut seqs = Vec::new();
            store.events(&id, &EventQuery::default(), &mut |line| {
                let v: Value = serde_json::from_str(line.raw().expect("a stored line")).expect("visible lines parse");
                assert!(v.is_object());
                seqs.push(line.seq);
                Ok(true)
            }).unwrap();
            seqs
        };
        let before = check();
        let ev = NewEvent { event_type: EventType::new("after").unwrap(), data: json!({}), session_id: None };
        let appended = store.log(&id, &ev).unwrap();
        let after = check();
        prop_assert_eq!(after.len(), before.len() + 1);
        prop_assert_eq!(after.last().copied(), appended.seq);
    }
}
