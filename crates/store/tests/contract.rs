//! The behaviour every backend of the [`Store`] trait owes its callers,
//! written once against `&dyn Store` and run against each backend that
//! [`mstate_store::open`] can give: the same test functions, instantiated
//! per backend by [`contract!`]: the filesystem store in a temporary
//! directory, and PostgreSQL in a schema of the test's own (see
//! `support/pg.rs` for the server and what happens without one). A
//! backend joins by adding a line to the macro's invocations.

mod support;

use std::sync::Arc;
use std::thread;

use mstate_store::model::{EventQuery, NewEvent, SessionStart, StateEdit};
use mstate_store::{
    CheckpointName, ErrorKind, EventType, Location, MilestoneId, SessionId, Store, StoreOptions,
    WriteOptions,
};
use serde_json::{json, Value};

/// A fresh, empty store of one backend, with whatever keeps it alive.
struct Fresh {
    store: Arc<dyn Store>,
    _keep: Box<dyn std::any::Any>,
}

/// A filesystem store in a new temporary directory.
fn files() -> Option<Fresh> {
    let dir = tempfile::tempdir().expect("temp dir");
    let location = Location::discover(dir.path(), None);
    let store = mstate_store::open(&location, StoreOptions::default()).expect("open");
    Some(Fresh {
        store: Arc::from(store),
        _keep: Box::new(dir),
    })
}

/// A PostgreSQL store in a new schema, opened from its URL as a front end
/// opens it; `None` when there is no server (and none is required).
fn postgres() -> Option<Fresh> {
    let schema = support::pg::schema()?;
    let url = support::pg::url();
    let sep = if url.contains('?') { '&' } else { '?' };
    let cwd = std::env::current_dir().expect("cwd");
    let location =
        Location::parse(&format!("{url}{sep}schema={}", schema.name), &cwd).expect("location");
    let store = mstate_store::open(&location, StoreOptions::default()).expect("open");
    Some(Fresh {
        store: Arc::from(store),
        _keep: Box::new(schema),
    })
}

fn id(s: &str) -> MilestoneId {
    MilestoneId::new(s).expect("id")
}

fn wo() -> WriteOptions {
    WriteOptions::default()
}

fn event(ty: &str, data: Value) -> NewEvent {
    NewEvent {
        event_type: EventType::new(ty).expect("type"),
        data,
        session_id: None,
    }
}

/// Every event of `m` matching `q`, as (seq, type, data).
fn events(s: &dyn Store, m: &MilestoneId, q: &EventQuery) -> Vec<(u64, String, Value)> {
    let mut out = Vec::new();
    s.events(m, q, &mut |record| {
        let event = record.event().expect("a stored event");
        assert_eq!(event.seq, Some(record.seq));
        assert_eq!(event.milestone_id, m.as_str());
        assert_eq!(
            record.fields.event_type.as_deref(),
            Some(&*event.event_type)
        );
        out.push((record.seq, event.event_type, event.data));
        Ok(true)
    })
    .expect("events");
    out
}

/// What a save stores is what a load returns, and each save is the next
/// revision.
fn save_load_round_trip(s: &dyn Store) {
    let m = id("m");
    s.init(&m).unwrap();
    let state = json!({"step": 1, "files": ["a.rs", "b.rs"], "nested": {"ok": true, "n": 1.5}});
    let first = s.save(&m, &state, &wo()).unwrap();
    let second = s.save_text(&m, br#"{"step": 2}"#, &wo()).unwrap();
    assert_eq!(second.revision, first.revision + 1);
    let loaded = s.load(&m, &wo()).unwrap();
    assert_eq!(loaded.envelope.state, json!({"step": 2}));
    assert_eq!(loaded.envelope.revision, second.revision);
    let raw = s.load_raw(&m, &wo()).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&raw.state).unwrap(),
        json!({"step": 2})
    );
}

/// A save that expects another revision than the stored one changes
/// nothing and says so.
fn expect_revision_conflicts(s: &dyn Store) {
    let m = id("m");
    let saved = s.save(&m, &json!({"a": 1}), &wo()).unwrap();
    let stale = WriteOptions {
        expect_revision: Some(saved.revision + 5),
        ..wo()
    };
    let err = s.save(&m, &json!({"a": 2}), &stale).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(s.load(&m, &wo()).unwrap().envelope.state, json!({"a": 1}));
    let right = WriteOptions {
        expect_revision: Some(saved.revision),
        ..wo()
    };
    s.save(&m, &json!({"a": 3}), &right).unwrap();
}

/// Invalid state text is refused and changes nothing.
fn invalid_state_changes_nothing(s: &dyn Store) {
    let m = id("m");
    s.save(&m, &json!({"a": 1}), &wo()).unwrap();
    for bad in [&b"{"[..], b"{\"a\": 1, \"a\": 2}", b"[1,]", b"\xff"] {
        let err = s.save_text(&m, bad, &wo()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    }
    let loaded = s.load(&m, &wo()).unwrap();
    assert_eq!(loaded.envelope.state, json!({"a": 1}));
}

/// Concurrent read-modify-writes of one milestone lose no update.
fn concurrent_updates_lose_nothing(s: Arc<dyn Store>) {
    let m = id("m");
    s.save(&m, &json!({"n": 0}), &wo()).unwrap();
    let (threads, each) = (4, 10);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let s = Arc::clone(&s);
            let m = m.clone();
            thread::spawn(move || {
                for _ in 0..each {
                    s.update(&m, &StateEdit::add("/n", 1), &wo()).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let state = s.load(&m, &wo()).unwrap().envelope.state;
    assert_eq!(state["n"], json!(threads * each));
}

/// An async front end (the MCP server runs on tokio) serves requests
/// from tasks of a multi-threaded runtime, each calling the store through
/// `spawn_blocking`, as it would any blocking I/O: every call works (the
/// synchronous PostgreSQL client would panic if called on a runtime
/// thread itself) and concurrent requests lose nothing.
fn async_front_ends_call_through_spawn_blocking(s: Arc<dyn Store>) {
    let m = id("m");
    s.save(&m, &json!({"count": 0}), &wo()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a runtime");
    let requests = 16;
    let results = rt.block_on(async {
        let tasks: Vec<_> = (0..requests)
            .map(|i| {
                let s = Arc::clone(&s);
                let m = m.clone();
                tokio::spawn(async move {
                    tokio::task::spawn_blocking(move || {
                        s.update(&m, &StateEdit::add("/count", 1), &wo())?;
                        s.log(&m, &event("request", json!({"i": i})))?;
                        s.load(&m, &wo()).map(|l| l.envelope.revision)
                    })
                    .await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task").expect("blocking call"));
        }
        out
    });
    for r in results {
        assert!(r.expect("store call") >= 1);
    }
    let loaded = s.load(&m, &wo()).unwrap();
    assert_eq!(loaded.envelope.state["count"], json!(requests));
    let logged = events(&*s, &m, &EventQuery::default());
    let requests_seen = logged.iter().filter(|e| e.1 == "request").count();
    assert_eq!(requests_seen, requests as usize);
}

/// Ending a session that is the current one while another session is
/// started and made current: the end takes its own pointer away, never
/// the newer one (read-then-remove could remove a pointer written in
/// between). Whatever the interleaving, the new session ends up current.
fn ending_a_session_never_removes_a_newer_current_one(s: Arc<dyn Store>) {
    let (a, b) = (id("a"), id("b"));
    s.init(&a).unwrap();
    s.init(&b).unwrap();
    let start = SessionStart {
        owner_pid: std::process::id(),
        working_directory: String::new(),
        git_branch: "none".into(),
        make_current: true,
        create: false,
    };
    for round in 0..100 {
        let old = s.session_start(&a, &start).unwrap();
        let old = SessionId::new(old.session_id).unwrap();
        let go = Arc::new(std::sync::Barrier::new(2));
        let ender = {
            let (s, go, old) = (Arc::clone(&s), Arc::clone(&go), old.clone());
            thread::spawn(move || {
                go.wait();
                s.session_end(Some(&old)).map(|_| ())
            })
        };
        go.wait();
        let new = s.session_start(&b, &start).unwrap();
        ender.join().unwrap().unwrap();
        assert_eq!(
            s.current_session().unwrap(),
            new.session_id,
            "round {round}: the session started last is current"
        );
        s.session_end(Some(&SessionId::new(new.session_id).unwrap()))
            .unwrap();
    }
}

/// Concurrent appenders: every event once, `seq` 1..n without gaps.
fn concurrent_appends_get_every_seq_once(s: Arc<dyn Store>) {
    let m = id("m");
    s.init(&m).unwrap();
    let (threads, each) = (4, 25);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let s = Arc::clone(&s);
            let m = m.clone();
            thread::spawn(move || {
                for i in 0..each {
                    s.log(&m, &event("step", json!({"t": t, "i": i}))).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let all = events(&*s, &m, &EventQuery::default());
    let seqs: Vec<u64> = all.iter().map(|e| e.0).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected);
    let mut steps: Vec<(u64, u64)> = all
        .iter()
        .filter(|e| e.1 == "step")
        .map(|e| (e.2["t"].as_u64().unwrap(), e.2["i"].as_u64().unwrap()))
        .collect();
    steps.sort_unstable();
    let want: Vec<(u64, u64)> = (0..threads as u64)
        .flat_map(|t| (0..each as u64).map(move |i| (t, i)))
        .collect();
    assert_eq!(steps, want);
}

/// Queries: types, limit, tail, reverse.
fn event_queries(s: &dyn Store) {
    let m = id("m");
    s.init(&m).unwrap();
    for i in 0..10 {
        let ty = if i % 3 == 0 { "rare" } else { "common" };
        s.log(&m, &event(ty, json!({"i": i}))).unwrap();
    }
    let of = |q: EventQuery| -> Vec<Value> { events(s, &m, &q).into_iter().map(|e| e.2).collect() };
    let rare = of(EventQuery {
        types: vec!["rare".into()],
        ..EventQuery::default()
    });
    assert_eq!(
        rare,
        vec![
            json!({"i": 0}),
            json!({"i": 3}),
            json!({"i": 6}),
            json!({"i": 9})
        ]
    );
    let first = of(EventQuery {
        types: vec!["common".into()],
        limit: Some(2),
        ..EventQuery::default()
    });
    assert_eq!(first, vec![json!({"i": 1}), json!({"i": 2})]);
    let last = of(EventQuery {
        tail: Some(2),
        ..EventQuery::default()
    });
    assert_eq!(last, vec![json!({"i": 8}), json!({"i": 9})]);
    let newest = of(EventQuery {
        reverse: true,
        limit: Some(1),
        ..EventQuery::default()
    });
    assert_eq!(newest, vec![json!({"i": 9})]);
}

/// Only `init` and `save` create a milestone; other operations on an
/// unknown one fail as not found and create nothing.
fn unknown_milestones_are_not_created(s: &dyn Store) {
    let known = id("build-api");
    s.init(&known).unwrap();
    let typo = id("build-apx");
    let err = s.log(&typo, &event("note", json!({}))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = s.load(&typo, &wo()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = s.require_known(&typo).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(s.milestone_ids().unwrap(), vec![known]);
}

/// A checkpoint restores the state it was taken of, as a new revision.
fn checkpoints_restore_their_state(s: &dyn Store) {
    let m = id("m");
    s.save(&m, &json!({"phase": "plan"}), &wo()).unwrap();
    let name = CheckpointName::new("before").unwrap();
    s.checkpoint_create(&m, Some(&name), false, &wo()).unwrap();
    let after = s.save(&m, &json!({"phase": "broken"}), &wo()).unwrap();
    let listed: Vec<String> = s
        .checkpoints(&m)
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert!(listed.contains(&"before".to_string()), "{listed:?}");
    let restored = s.checkpoint_restore(&m, &name, &wo()).unwrap();
    assert!(restored.saved.revision > after.revision);
    assert_eq!(
        s.load(&m, &wo()).unwrap().envelope.state,
        json!({"phase": "plan"})
    );
    let missing = CheckpointName::new("nope").unwrap();
    let err = s.checkpoint_restore(&m, &missing, &wo()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

/// Complete moves a milestone out of the active ones; reopen brings it
/// back, state intact.
fn complete_and_reopen(s: &dyn Store) {
    let m = id("m");
    s.save(&m, &json!({"done": true}), &wo()).unwrap();
    s.complete(&m, &wo()).unwrap();
    let status = |s: &dyn Store| {
        s.list()
            .unwrap()
            .into_iter()
            .find(|x| x.milestone_id == "m")
            .map(|x| format!("{:?}", x.status))
    };
    assert_eq!(status(s).as_deref(), Some("Completed"));
    s.reopen(&m, &wo()).unwrap();
    assert_eq!(status(s).as_deref(), Some("Active"));
    assert_eq!(
        s.load(&m, &wo()).unwrap().envelope.state,
        json!({"done": true})
    );
}

/// An edit is data: its steps apply in order under the lock, and a step
/// that cannot apply (an `add` on a string) writes nothing.
fn edits_apply_in_order_or_not_at_all(s: &dyn Store) {
    use mstate_store::model::EditOp;
    let m = id("m");
    s.save(&m, &json!({"n": 1, "phase": "a", "keep": true}), &wo())
        .unwrap();
    let edit = StateEdit::merge(json!({"phase": "b", "keep": null}))
        .then(EditOp::Set {
            pointer: "/files/0".into(),
            value: json!("x.rs"),
        })
        .then(EditOp::Add {
            pointer: "/n".into(),
            by: 41,
        });
    let saved = s.update(&m, &edit, &wo()).unwrap();
    let loaded = s.load(&m, &wo()).unwrap();
    assert_eq!(loaded.envelope.revision, saved.revision);
    assert_eq!(
        loaded.envelope.state,
        json!({"n": 42, "phase": "b", "files": {"0": "x.rs"}})
    );
    // An edit sent as JSON is the same edit.
    let sent: StateEdit = serde_json::from_value(serde_json::to_value(&edit).unwrap()).unwrap();
    assert_eq!(sent, edit);
    for bad in [
        StateEdit::set("/n", json!(0)).then(EditOp::Add {
            pointer: "/phase".into(),
            by: 1,
        }),
        StateEdit::add("/n", i64::MAX),
        StateEdit::set("no-slash", json!(1)),
    ] {
        let err = s.update(&m, &bad, &wo()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
        let after = s.load(&m, &wo()).unwrap();
        assert_eq!(after.envelope.revision, saved.revision, "{bad:?}");
        assert_eq!(after.envelope.state, loaded.envelope.state);
    }
}

/// A session names the events logged in it while it is current; ending
/// it logs `session_ended` once, clears the current session, and later
/// events name no session.
fn sessions_name_their_events(s: &dyn Store) {
    use mstate_store::model::{SessionFilter, SessionStart, SessionStatus};
    let m = id("m");
    s.init(&m).unwrap();
    let start = SessionStart {
        owner_pid: std::process::id(),
        working_directory: "/w".into(),
        git_branch: "main".into(),
        make_current: true,
        create: false,
    };
    let record = s.session_start(&m, &start).unwrap();
    assert_eq!(s.current_session().unwrap(), record.session_id);
    s.log(&m, &event("inside", json!({}))).unwrap();
    let sid = mstate_store::SessionId::new(record.session_id.clone()).unwrap();
    let ended = s.session_end(Some(&sid)).unwrap();
    assert_eq!(ended.status, "completed");
    assert!(ended.ended_at.is_some());
    // Ending again changes nothing and logs nothing.
    s.session_end(Some(&sid)).unwrap();
    assert_ne!(s.current_session().unwrap(), record.session_id);
    s.log(&m, &event("after", json!({}))).unwrap();
    let mut by_type = std::collections::BTreeMap::new();
    s.events(&m, &EventQuery::default(), &mut |r| {
        let e = r.event().unwrap();
        by_type
            .entry(e.event_type.clone())
            .or_insert_with(Vec::new)
            .push(e.session_id.unwrap_or_default());
        Ok(true)
    })
    .unwrap();
    assert_eq!(by_type["inside"], vec![record.session_id.clone()]);
    assert_eq!(by_type["session_ended"], vec![record.session_id.clone()]);
    assert_ne!(by_type["after"], vec![record.session_id.clone()]);
    let done = s
        .sessions(&SessionFilter {
            milestone: Some("m".into()),
            status: Some(SessionStatus::Completed),
        })
        .unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(
        s.session_get(&sid).unwrap().effective_status,
        SessionStatus::Completed
    );
    let unknown = id("nope");
    let err = s.session_start(&unknown, &start).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

/// Every save keeps the state it replaced as a backup, newest first;
/// recovering from one makes it the next revision.
fn backups_recover_earlier_states(s: &dyn Store) {
    let m = id("m");
    for n in 1..=3 {
        s.save(&m, &json!({"n": n}), &wo()).unwrap();
    }
    let backups = s.backups(&m).unwrap();
    let revisions: Vec<Option<u64>> = backups.iter().map(|b| b.revision).collect();
    assert_eq!(revisions, vec![Some(2), Some(1)]);
    // A valid state needs no recovery.
    let nothing = s.recover(&m, None, &wo()).unwrap();
    assert!(nothing.backup.is_none());
    assert_eq!(nothing.revision, 3);
    let first = &backups[1];
    let done = s.recover(&m, Some(&first.name), &wo()).unwrap();
    assert_eq!(done.revision, 4);
    let loaded = s.load(&m, &wo()).unwrap();
    assert_eq!(loaded.envelope.state, json!({"n": 1}));
    assert_eq!(loaded.envelope.revision, 4);
    let err = s.recover(&m, Some("no-such-backup"), &wo()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(s.load(&m, &wo()).unwrap().envelope.revision, 4);
}

macro_rules! contract {
    ($backend:ident: $($name:ident),* ; shared: $($shared:ident),*) => {
        mod $backend {
            $(
                #[test]
                fn $name() {
                    let Some(fresh) = super::$backend() else { return };
                    super::$name(&*fresh.store);
                }
            )*
            $(
                #[test]
                fn $shared() {
                    let Some(fresh) = super::$backend() else { return };
                    super::$shared(std::sync::Arc::clone(&fresh.store));
                }
            )*
        }
    };
}

contract!(files:
    edits_apply_in_order_or_not_at_all,
    save_load_round_trip,
    expect_revision_conflicts,
    invalid_state_changes_nothing,
    event_queries,
    unknown_milestones_are_not_created,
    checkpoints_restore_their_state,
    complete_and_reopen,
    sessions_name_their_events,
    backups_recover_earlier_states;
    shared:
    concurrent_updates_lose_nothing,
    concurrent_appends_get_every_seq_once,
    async_front_ends_call_through_spawn_blocking,
    ending_a_session_never_removes_a_newer_current_one
);

contract!(postgres:
    edits_apply_in_order_or_not_at_all,
    save_load_round_trip,
    expect_revision_conflicts,
    invalid_state_changes_nothing,
    event_queries,
    unknown_milestones_are_not_created,
    checkpoints_restore_their_state,
    complete_and_reopen,
    sessions_name_their_events,
    backups_recover_earlier_states;
    shared:
    concurrent_updates_lose_nothing,
    concurrent_appends_get_every_seq_once,
    async_front_ends_call_through_spawn_blocking,
    ending_a_session_never_removes_a_newer_current_one
);
