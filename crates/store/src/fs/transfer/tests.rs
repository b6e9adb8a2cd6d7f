//! Round trips of the filesystem store's export and import.

use super::*;
use crate::model::{NewEvent, SessionStart};
use crate::prelude::*;
use crate::store::{StoreOptions, WriteOptions};

fn export_all(store: &dyn Store) -> Vec<Record> {
    let mut out = Vec::new();
    let report = store
        .export(&mut |r| {
            out.push(r);
            Ok(true)
        })
        .unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    out
}

fn filled(dir: &Path) -> FsStore {
    let store = FsStore::open(dir.join("a"), StoreOptions::default()).unwrap();
    let id = MilestoneId::new("m").unwrap();
    let w = WriteOptions::default();
    store.init(&id).unwrap();
    store.save_text(&id, br#"{"step": 1}"#, &w).unwrap();
    store
        .save_text(&id, br#"{"step": 2, "n": 1.50}"#, &w)
        .unwrap();
    let cp = CheckpointName::new("cp").unwrap();
    store.checkpoint_create(&id, Some(&cp), false, &w).unwrap();
    store.save_text(&id, br#"{"step": 3}"#, &w).unwrap();
    let start = SessionStart {
        owner_pid: std::process::id(),
        working_directory: "/w".into(),
        git_branch: "main".into(),
        make_current: true,
        create: false,
    };
    store.session_start(&id, &start).unwrap();
    let note = NewEvent {
        event_type: crate::id::EventType::new("note").unwrap(),
        data: serde_json::json!({"text": "é\u{2028}"}),
        session_id: None,
    };
    store.log(&id, &note).unwrap();
    let other = MilestoneId::new("done").unwrap();
    store.save_text(&other, b"[]", &w).unwrap();
    store.complete(&other, &w).unwrap();
    store
}

/// What one store exports, another imports, and then exports the
/// same, record for record (times and backup names included).
#[test]
fn a_store_imported_exports_what_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let a = filled(dir.path());
    let records = export_all(&a);
    assert!(records
        .iter()
        .any(|r| matches!(r, Record::Revision { revision: 2, .. })));
    assert!(records
        .iter()
        .any(|r| matches!(r, Record::CurrentSession(_))));
    let b = FsStore::open(dir.path().join("b"), StoreOptions::default()).unwrap();
    b.import(&mut records.clone().into_iter().map(Ok)).unwrap();
    assert_eq!(export_all(&b), records);
    let names = |s: &FsStore| {
        let mut n: Vec<String> = s
            .backups(&MilestoneId::new("m").unwrap())
            .unwrap()
            .into_iter()
            .map(|b| format!("{} {}", b.name, b.modified))
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&a), names(&b));
}

/// A milestone the target holds already is refused, and its files are
/// left as they were.
#[test]
fn an_import_over_a_known_milestone_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = filled(dir.path());
    let records = export_all(&a);
    let b = FsStore::open(dir.path().join("b"), StoreOptions::default()).unwrap();
    let id = MilestoneId::new("m").unwrap();
    b.save_text(&id, br#"{"theirs": true}"#, &WriteOptions::default())
        .unwrap();
    let err = b.import(&mut records.into_iter().map(Ok)).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    let loaded = b.load(&id, &WriteOptions::default()).unwrap();
    assert_eq!(loaded.envelope.state, serde_json::json!({"theirs": true}));
}

/// Records out of export order, and event lines that cannot be kept
/// as they are, are refused.
#[test]
fn bad_records_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsStore::open(dir.path().join("b"), StoreOptions::default()).unwrap();
    let id = MilestoneId::new("m").unwrap();
    let head = Record::Milestone {
        id: id.clone(),
        status: Status::Active,
        state: None,
    };
    let ev = |seq: u64, line: &str| Record::Event {
        milestone: id.clone(),
        seq,
        line: line.to_string(),
    };
    let line = r#"{"timestamp":"2026-01-01T00:00:00.000000Z","milestone_id":"m","event_type":"x"}"#;
    for bad in [
        vec![ev(1, line)],
        vec![head.clone(), ev(2, line), ev(2, line)],
        vec![head.clone(), ev(1, "{}\n{}")],
    ] {
        assert!(b.import(&mut bad.into_iter().map(Ok)).is_err());
    }
}

/// Lines without `seq` keep theirs across a gap (the source skipped a
/// damaged line): the log is written as segments whose headers carry
/// them, and appends go on after the last.
#[test]
fn lines_without_seq_keep_theirs_across_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsStore::open(dir.path().join("b"), StoreOptions::default()).unwrap();
    let id = MilestoneId::new("m").unwrap();
    let line = |i: u32| {
        format!(
            r#"{{"timestamp":"2026-01-01T00:00:0{i}.000000Z","milestone_id":"m","event":"seeded","n":{i}}}"#
        )
    };
    let records = vec![
        Record::Milestone {
            id: id.clone(),
            status: Status::Active,
            state: None,
        },
        Record::Event {
            milestone: id.clone(),
            seq: 1,
            line: line(1),
        },
        Record::Event {
            milestone: id.clone(),
            seq: 3,
            line: line(3),
        },
        Record::Event {
            milestone: id.clone(),
            seq: 4,
            line: line(4),
        },
    ];
    b.import(&mut records.clone().into_iter().map(Ok)).unwrap();
    assert_eq!(export_all(&b), records);
    let note = NewEvent {
        event_type: crate::id::EventType::new("note").unwrap(),
        data: serde_json::json!({}),
        session_id: None,
    };
    assert_eq!(b.log(&id, &note).unwrap().seq, Some(5));
}
