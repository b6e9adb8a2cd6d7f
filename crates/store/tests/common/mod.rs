//! Shared by the crash and fault tests: a store on a simulated disk and
//! the list of mutating operations, each with its setup.
#![allow(dead_code)]

use mstate_store::prelude::*;
use std::path::Path;
use std::sync::Arc;

use mstate_store::io::Io;
use mstate_store::model::{Actor, EventQuery, LockRequest, NewEvent, SessionStart};
use mstate_store::store::{CleanupOptions, WriteOptions};
use mstate_store::{CheckpointName, EventType, FsOptions, FsStore, MilestoneId};
use serde_json::{json, Value};

pub const ROOT: &str = "/p/.milestones/state";
/// Pids above the kernel's maximum: never alive, so a crashed holder is
/// recognised as gone.
pub const PID_BEFORE: u32 = 4_194_304 + 11;
pub const PID_AFTER: u32 = 4_194_304 + 12;

pub fn open(io: &(impl Io + Clone + 'static), pid: u32) -> FsStore {
    let mut actor = Actor::current();
    actor.pid = pid;
    let opts = FsOptions {
        max_backups: 3,
        session: None,
        actor,
        ..FsOptions::default()
    };
    FsStore::with_io(Arc::new(io.clone()), ROOT, opts).expect("open store")
}

pub fn id() -> MilestoneId {
    MilestoneId::new("m").unwrap()
}

pub fn wo() -> WriteOptions {
    WriteOptions {
        expect_revision: None,
        lock_timeout: std::time::Duration::from_secs(2),
        lock_token: None,
    }
}

pub fn state_of(store: &FsStore) -> Option<Value> {
    match store.load(&id(), &wo()) {
        Ok(l) => {
            assert!(l.recovered.is_none(), "state needed recovery after a crash");
            Some(l.envelope.state)
        }
        Err(e) if e.kind() == mstate_store::ErrorKind::NotFound => None,
        Err(e) => panic!("load failed after crash: {e}"),
    }
}

/// (seq, event_type) of every visible event; asserts each line parses.
pub fn events_of(store: &FsStore) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let queried = store.events(&id(), &EventQuery::default(), &mut |line| {
        let raw = line.raw().expect("the file store hands its line");
        let v: Value = serde_json::from_str(raw).expect("visible event line parses");
        let ty = v
            .get("event_type")
            .or_else(|| v.get("event"))
            .and_then(Value::as_str)
            .expect("event type")
            .to_string();
        if let Some(seq) = v.get("seq").and_then(Value::as_u64) {
            assert_eq!(seq, line.seq, "explicit seq differs from reported seq");
        }
        out.push((line.seq, ty));
        Ok(true)
    });
    match queried {
        Ok(_) => out,
        // A crash before anything of the milestone was written.
        Err(e) if e.kind() == mstate_store::ErrorKind::NotFound => out,
        Err(e) => panic!("query after crash: {e:?}"),
    }
}

/// `seq` increases by one from the first visible event (retention may have
/// removed the oldest).
pub fn assert_contiguous(events: &[(u64, String)]) {
    let first = events.first().map_or(1, |e| e.0);
    for (i, (seq, _)) in events.iter().enumerate() {
        assert_eq!(*seq, first + i as u64, "seq not contiguous: {events:?}");
    }
}

/// Events written before the operation that must still be there after it:
/// all of them, except the old ones retention is asked to remove.
pub fn must_survive(events: &[(u64, String)]) -> Vec<(u64, String)> {
    events
        .iter()
        .filter(|e| e.1 != OLD_EVENT)
        .cloned()
        .collect()
}

/// Event type of the old lines `old_setup` writes.
pub const OLD_EVENT: &str = "old_event";

/// Old lines in the seed's format (no seq, one-second timestamps), then
/// the usual setup: retention has something to remove and something to keep.
pub fn old_setup(s: &FsStore) {
    let dir = Path::new(ROOT).join("events");
    for p in [
        Path::new("/p"),
        Path::new("/p/.milestones"),
        Path::new(ROOT),
        dir.as_path(),
    ] {
        let _ = s.io().create_dir(p);
    }
    let mut f = s
        .io()
        .open_append(&dir.join("milestone-m.jsonl"), true)
        .unwrap();
    for day in 1..=3 {
        let line = format!(
            "{{\"timestamp\":\"2020-01-0{day}T00:00:00Z\",\"milestone_id\":\"m\",\"session_id\":\"no-session\",\"event_type\":\"{OLD_EVENT}\",\"data\":{{}},\"pid\":1,\"user\":\"u\"}}\n"
        );
        f.write_all(line.as_bytes()).unwrap();
    }
    f.sync().unwrap();
    base_setup(s);
}

/// A mutating operation under test.
pub struct Case {
    pub name: &'static str,
    pub setup: fn(&FsStore),
    pub op: fn(&FsStore) -> mstate_store::Result<()>,
}

pub fn base_setup(s: &FsStore) {
    s.init(&id()).unwrap();
    s.save(&id(), &json!({"v": 1}), &wo()).unwrap();
    s.save(&id(), &json!({"v": 2}), &wo()).unwrap();
    s.checkpoint_create(
        &id(),
        Some(&CheckpointName::new("c1").unwrap()),
        false,
        &wo(),
    )
    .unwrap();
}

pub fn session_setup(s: &FsStore) {
    base_setup(s);
    let start = SessionStart {
        owner_pid: PID_BEFORE,
        working_directory: "/p".into(),
        git_branch: "none".into(),
        make_current: true,
        create: false,
    };
    s.session_start(&id(), &start).unwrap();
}

pub fn corrupt_setup(s: &FsStore) {
    base_setup(s);
    s.save(&id(), &json!({"v": 3}), &wo()).unwrap();
}

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "init",
            setup: |_| {},
            op: |s| {
                s.init(&id())?;
                Ok(())
            },
        },
        Case {
            name: "save",
            setup: base_setup,
            op: |s| {
                s.save(&id(), &json!({"v": 9}), &wo())?;
                Ok(())
            },
        },
        Case {
            name: "update",
            setup: base_setup,
            op: |s| {
                s.update(
                    &id(),
                    &mstate_store::model::StateEdit::set("/v", json!(9)),
                    &wo(),
                )?;
                Ok(())
            },
        },
        Case {
            name: "complete",
            setup: base_setup,
            op: |s| s.complete(&id(), &wo()),
        },
        Case {
            name: "reopen",
            setup: |s| {
                base_setup(s);
                s.complete(&id(), &wo()).unwrap();
            },
            op: |s| s.reopen(&id(), &wo()),
        },
        Case {
            name: "recover",
            setup: corrupt_setup,
            op: |s| {
                s.recover(&id(), None, &wo())?;
                Ok(())
            },
        },
        Case {
            name: "checkpoint create",
            setup: base_setup,
            op: |s| {
                s.checkpoint_create(
                    &id(),
                    Some(&CheckpointName::new("c2").unwrap()),
                    false,
                    &wo(),
                )?;
                Ok(())
            },
        },
        Case {
            name: "checkpoint restore",
            setup: |s| {
                base_setup(s);
                s.save(&id(), &json!({"v": 5}), &wo()).unwrap();
            },
            op: |s| {
                s.checkpoint_restore(&id(), &CheckpointName::new("c1").unwrap(), &wo())?;
                Ok(())
            },
        },
        Case {
            name: "checkpoint delete",
            setup: base_setup,
            op: |s| s.checkpoint_delete(&id(), &CheckpointName::new("c1").unwrap()),
        },
        Case {
            name: "lock acquire",
            setup: base_setup,
            op: |s| {
                let req = LockRequest {
                    operation: "lock acquire".into(),
                    timeout: std::time::Duration::from_secs(1),
                    owner_pid: PID_BEFORE,
                    ttl: None,
                    group: None,
                };
                s.lock_acquire(&id(), &req)?;
                Ok(())
            },
        },
        Case {
            name: "lock release",
            setup: |s| {
                base_setup(s);
                let req = LockRequest {
                    operation: "lock acquire".into(),
                    timeout: std::time::Duration::from_secs(1),
                    owner_pid: PID_BEFORE,
                    ttl: None,
                    group: None,
                };
                s.lock_acquire(&id(), &req).unwrap();
            },
            op: |s| {
                s.lock_release(&id(), true)?;
                Ok(())
            },
        },
        Case {
            name: "lock release if stale",
            setup: |s| {
                base_setup(s);
                let req = LockRequest {
                    operation: "lock acquire".into(),
                    timeout: std::time::Duration::from_secs(1),
                    owner_pid: PID_BEFORE,
                    ttl: None,
                    group: None,
                };
                s.lock_acquire(&id(), &req).unwrap();
            },
            op: |s| {
                s.lock_release_if_stale(&id())?;
                Ok(())
            },
        },
        Case {
            name: "log",
            setup: base_setup,
            op: |s| {
                let ev = NewEvent {
                    event_type: EventType::new("progress").unwrap(),
                    data: json!({"p": 1}),
                    session_id: None,
                };
                s.log(&id(), &ev)?;
                Ok(())
            },
        },
        Case {
            name: "cleanup",
            setup: old_setup,
            op: |s| {
                let opts = CleanupOptions {
                    cutoff: jiff::Timestamp::now() - jiff::SignedDuration::from_secs(86_400),
                    retention_days: Some(1.0),
                    create: false,
                    include_checkpoints: false,
                    dry_run: false,
                };
                s.cleanup(&id(), &opts)?;
                Ok(())
            },
        },
        Case {
            name: "session start",
            setup: base_setup,
            op: |s| {
                let start = SessionStart {
                    owner_pid: PID_BEFORE,
                    working_directory: "/p".into(),
                    git_branch: "none".into(),
                    make_current: true,
                    create: false,
                };
                s.session_start(&id(), &start)?;
                Ok(())
            },
        },
        Case {
            name: "session end",
            setup: session_setup,
            op: |s| {
                s.session_end(None)?;
                Ok(())
            },
        },
        Case {
            name: "doctor --repair",
            setup: |s| {
                base_setup(s);
                // Leave a torn tail and an orphan temp file for doctor to repair.
                let log = Path::new(ROOT).join("events/milestone-m.jsonl");
                let mut f = s.io().open_append(&log, false).unwrap();
                f.write_all(b"{\"timestamp\":\"2026-").unwrap();
                f.sync().unwrap();
                let tmp = Path::new(ROOT).join("active/m.json.tmp.4194399");
                let mut t = s.io().create_new(&tmp).unwrap();
                t.write_all(b"{").unwrap();
            },
            op: |s| {
                s.doctor(true, &mut |_, _| {})?;
                Ok(())
            },
        },
    ]
}
