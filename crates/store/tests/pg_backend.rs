//! The PostgreSQL backend against a real server.
//!
//! Each test works in a schema of its own (`mstate_test_<random>`),
//! dropped when the test ends. The server is `MSTATE_TEST_PG_URL`, by
//! default `host=127.0.0.1 port=5432 user=postgres dbname=test`. Without
//! a server a test fails when `MSTATE_TEST_REQUIRE_TOOLS=1` (as in CI),
//! and otherwise passes after saying it skipped.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use mstate_store::model::{EventQuery, LockRequest, NewEvent};
use mstate_store::pg::{schema, PgStore};
use mstate_store::{ErrorKind, EventType, MilestoneId, WriteOptions};
use serde_json::{json, Value};

mod support;

use support::pg::{schema, url, TestSchema};

fn mid(s: &str) -> MilestoneId {
    MilestoneId::new(s).unwrap()
}

fn opts() -> WriteOptions {
    WriteOptions::default()
}

fn no_wait() -> WriteOptions {
    WriteOptions {
        expect_revision: None,
        lock_timeout: Duration::ZERO,
        lock_token: None,
    }
}

fn event(t: &str, data: Value, session: Option<&str>) -> NewEvent {
    NewEvent {
        event_type: EventType::new(t).unwrap(),
        data,
        session_id: session.map(str::to_string),
    }
}

fn lock_req(ttl: Option<Duration>, timeout: Duration) -> LockRequest {
    LockRequest {
        operation: "test".into(),
        timeout,
        owner_pid: std::process::id(),
        ttl,
        group: None,
    }
}

/// Every event of `id`, as (seq, type).
fn all_events(store: &PgStore, id: &MilestoneId, q: &EventQuery) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    store
        .events(id, q, &mut |line| {
            let raw = line.raw().expect("PostgreSQL hands its stored line");
            let v: Value = serde_json::from_str(raw).expect("line is JSON");
            assert_eq!(v["seq"].as_u64(), Some(line.seq), "{raw}");
            out.push((line.seq, v["event_type"].as_str().unwrap_or("").to_string()));
            Ok(true)
        })
        .expect("events");
    out
}

#[test]
fn migrations_are_idempotent_and_concurrent_migrators_agree() {
    let Some(mut s) = schema() else { return };
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (u, name) = (url(), s.name.clone());
            std::thread::spawn(move || {
                PgStore::connect(&u, &name)
                    .and_then(|st| st.schema_version())
                    .expect("migrate")
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), schema::latest_version());
    }
    let store = s.store();
    assert_eq!(store.schema_version().unwrap(), schema::latest_version());
    // One row per migration, whoever applied it.
    assert_eq!(
        s.count("SELECT count(*) FROM mstate_schema_version"),
        schema::MIGRATIONS.len() as i64
    );
    // Migrating again leaves data alone.
    store
        .save(&mid("m"), &json!({"a": 1}), &opts(), None)
        .unwrap();
    let again = s.store();
    assert_eq!(again.load(&mid("m")).unwrap().envelope.revision, 1);
}

#[test]
fn schema_names_are_checked_before_connecting() {
    let err = PgStore::connect(&url(), "x; DROP TABLE y").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
}

#[test]
fn save_load_round_trip_and_history() {
    let Some(mut s) = schema() else { return };
    let store = s.store();
    let id = mid("m1");
    assert_eq!(store.load(&id).unwrap_err().kind(), ErrorKind::NotFound);
    let init = store.init(&id, &opts()).unwrap();
    assert!(init.created);
    assert!(!store.init(&id, &opts()).unwrap().created);
    let state = json!({"b": [1, 2.50, "x"], "a": {"nested": true}, "big": 123456789012345678901234567890u128});
    let saved = store.save(&id, &state, &opts(), None).unwrap();
    assert_eq!(saved.revision, 1);
    assert_eq!(saved.backup, None);
    let loaded = store.load(&id).unwrap();
    assert_eq!(loaded.envelope.state, state);
    assert_eq!(loaded.envelope.revision, 1);
    assert_eq!(loaded.envelope.timestamp, saved.timestamp);
    // Text is kept as given: key order and number spelling.
    let text = br#"{"z":1, "a":1.50}"#;
    let saved = store.save_text(&id, text, &opts(), None).unwrap();
    assert_eq!(saved.revision, 2);
    assert_eq!(saved.backup.as_deref(), Some("r1"));
    let loaded = store.load(&id).unwrap();
    assert_eq!(
        serde_json::to_string(&loaded.envelope.state).unwrap(),
        r#"{"z":1,"a":1.50}"#
    );
    s.admin
        .batch_execute(&format!("SET search_path TO \"{}\"", s.name))
        .unwrap();
    let row = s
        .admin
        .query_one(
            "SELECT state_text, state->>'a' FROM mstate_milestones WHERE id = 'm1'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0).as_bytes(), text);
    assert_eq!(row.get::<_, String>(1), "1.50");
    let history = store.history(&id).unwrap();
    assert_eq!(
        history.iter().map(|b| b.revision).collect::<Vec<_>>(),
        vec![Some(1)]
    );
    // Complete and reopen.
    store.complete(&id, &opts(), None).unwrap();
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status.as_str(), "completed");
    assert_eq!(listed[0].revision, Some(2));
    let again = store.complete(&id, &opts(), None).unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Invalid, "{again}");
    store.reopen(&id, &opts(), None).unwrap();
    assert_eq!(store.load(&id).unwrap().status.as_str(), "active");
    let types: Vec<String> = all_events(&store, &id, &EventQuery::default())
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(
        types,
        [
            "state_initialized",
            "state_saved",
            "state_saved",
            "milestone_completed",
            "milestone_reopened"
        ]
    );
    // A value jsonb cannot hold is refused as invalid input, and nothing
    // is written.
    let err = store
        .save_text(&id, br#"{"nul":"a\u0000b"}"#, &opts(), None)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert_eq!(store.load(&id).unwrap().envelope.revision, 2);
}

#[test]
fn expect_revision_conflicts() {
    let Some(s) = schema() else { return };
    let store = s.store();
    let id = mid("m");
    let expect = |r| WriteOptions {
        expect_revision: Some(r),
        ..opts()
    };
    store.save(&id, &json!(1), &expect(0), None).unwrap();
    let err = store.save(&id, &json!(2), &expect(0), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(
        err.to_string().contains("expected revision 0, found 1"),
        "{err}"
    );
    assert_eq!(store.load(&id).unwrap().envelope.state, json!(1));
    assert_eq!(
        store
            .save(&id, &json!(3), &expect(1), None)
            .unwrap()
            .revision,
        2
    );
}

#[test]
fn concurrent_savers_never_lose_an_update() {
    let Some(s) = schema() else { return };
    let (threads, saves) = (6, 15);
    let id = mid("shared");
    s.store().init(&id, &opts()).unwrap();
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = s.store();
            let (id, barrier) = (id.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (0..saves)
                    .map(|i| {
                        store
                            .save(&id, &json!({"thread": t, "i": i}), &opts(), None)
                            .expect("save")
                            .revision
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut revisions = BTreeSet::new();
    for h in handles {
        for r in h.join().unwrap() {
            assert!(revisions.insert(r), "revision {r} returned twice");
        }
    }
    let n = (threads * saves) as u64;
    assert_eq!(revisions, (1..=n).collect::<BTreeSet<u64>>());
    let store = s.store();
    assert_eq!(store.load(&id).unwrap().envelope.revision, n);
    // The newest superseded revisions are kept, as many as the store's
    // backups (default 50).
    let kept: Vec<u64> = store
        .history(&id)
        .unwrap()
        .iter()
        .filter_map(|b| b.revision)
        .collect();
    let want = mstate_store::store::DEFAULT_MAX_BACKUPS as u64;
    assert_eq!(kept, ((n - want)..n).rev().collect::<Vec<u64>>());
    let saved = all_events(
        &store,
        &id,
        &EventQuery {
            types: vec!["state_saved".into()],
            ..Default::default()
        },
    );
    assert_eq!(saved.len() as u64, n);
}

#[test]
fn concurrent_appenders_get_gapless_seqs() {
    let Some(s) = schema() else { return };
    let (threads, appends) = (8, 25);
    let id = mid("log");
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = s.store();
            let (id, barrier) = (id.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (0..appends)
                    .map(|i| {
                        let e = store
                            .log(&id, &event("tick", json!({"t": t, "i": i}), None))
                            .expect("log");
                        e.seq.unwrap()
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seqs.sort_unstable();
    let n = (threads * appends) as u64;
    assert_eq!(seqs, (1..=n).collect::<Vec<u64>>());
    let stored: Vec<u64> = all_events(&s.store(), &id, &EventQuery::default())
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(stored, (1..=n).collect::<Vec<u64>>());
}

#[test]
fn events_query_filters() {
    let Some(s) = schema() else { return };
    let store = s.store();
    let id = mid("q");
    let other = mid("other");
    let mut stamps = Vec::new();
    for i in 0..12u64 {
        let t = if i % 3 == 0 { "alpha" } else { "beta" };
        let session = if i < 6 { "s1" } else { "s2" };
        let e = store
            .log(&id, &event(t, json!({"i": i}), Some(session)))
            .unwrap();
        assert_eq!(e.seq, Some(i + 1));
        stamps.push(e.timestamp);
    }
    store.log(&other, &event("alpha", json!({}), None)).unwrap();
    let seqs = |q: EventQuery| -> Vec<u64> {
        all_events(&store, &id, &q)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    };
    assert_eq!(seqs(EventQuery::default()), (1..=12).collect::<Vec<_>>());
    assert_eq!(
        seqs(EventQuery {
            types: vec!["alpha".into()],
            ..Default::default()
        }),
        [1, 4, 7, 10]
    );
    assert_eq!(
        seqs(EventQuery {
            session: Some("s2".into()),
            types: vec!["alpha".into()],
            ..Default::default()
        }),
        [7, 10]
    );
    assert_eq!(
        seqs(EventQuery {
            limit: Some(3),
            ..Default::default()
        }),
        [1, 2, 3]
    );
    assert_eq!(
        seqs(EventQuery {
            tail: Some(3),
            ..Default::default()
        }),
        [10, 11, 12]
    );
    assert_eq!(
        seqs(EventQuery {
            tail: Some(3),
            limit: Some(2),
            ..Default::default()
        }),
        [10, 11]
    );
    assert_eq!(
        seqs(EventQuery {
            reverse: true,
            limit: Some(2),
            ..Default::default()
        }),
        [12, 11]
    );
    assert_eq!(
        seqs(EventQuery {
            reverse: true,
            tail: Some(3),
            ..Default::default()
        }),
        [12, 11, 10]
    );
    assert!(seqs(EventQuery {
        limit: Some(0),
        ..Default::default()
    })
    .is_empty());
    let ts = |i: usize| stamps[i].parse::<jiff::Timestamp>().unwrap();
    assert_eq!(
        seqs(EventQuery {
            since: Some(ts(4)),
            until: Some(ts(6)),
            ..Default::default()
        }),
        [5, 6, 7]
    );
    // More rows than one batch, and a sink that stops early.
    for i in 0..(mstate_store::pg::events::QUERY_BATCH as u64 + 10) {
        store
            .log(&id, &event("bulk", json!({"i": i}), None))
            .unwrap();
    }
    let bulk = seqs(EventQuery {
        types: vec!["bulk".into()],
        ..Default::default()
    });
    assert_eq!(
        bulk.len(),
        mstate_store::pg::events::QUERY_BATCH as usize + 10
    );
    assert!(bulk.windows(2).all(|w| w[1] == w[0] + 1));
    let mut seen = 0;
    store
        .events(&id, &EventQuery::default(), &mut |_| {
            seen += 1;
            Ok(seen < 5)
        })
        .unwrap();
    assert_eq!(seen, 5);
    // The line is the filesystem backend's format.
    let mut first = String::new();
    store
        .events(
            &id,
            &EventQuery {
                limit: Some(1),
                ..Default::default()
            },
            &mut |l| {
                first = l.raw().expect("a stored line").to_string();
                Ok(true)
            },
        )
        .unwrap();
    let v: Value = serde_json::from_str(&first).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "timestamp",
            "milestone_id",
            "session_id",
            "event_type",
            "data",
            "pid",
            "user",
            "seq",
            "host"
        ]
    );
    assert_eq!(v["timestamp"], json!(stamps[0]));
}

#[test]
fn locks_exclude_other_holders_and_release_only_for_the_holder() {
    let Some(s) = schema() else { return };
    let a = s.store_as(1001);
    let b = s.store_as(1002);
    let id = mid("locked");
    let lease = a
        .lock_acquire(
            &id,
            &LockRequest {
                owner_pid: 1001,
                ..lock_req(None, Duration::ZERO)
            },
        )
        .unwrap();
    let err = b
        .lock_acquire(
            &id,
            &LockRequest {
                owner_pid: 1002,
                ..lock_req(None, Duration::ZERO)
            },
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Lock, "{err}");
    // Writes without the token wait for the lock, then give up.
    let err = b.save(&id, &json!(1), &no_wait(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Lock, "{err}");
    // With the token they go ahead.
    assert_eq!(
        b.save(&id, &json!(1), &no_wait(), Some(lease.token))
            .unwrap()
            .revision,
        1
    );
    let status = b.lock_status(&id).unwrap().unwrap();
    assert_eq!(status.info.pid, 1001);
    assert!(!status.held_by_caller);
    assert!(a.lock_status(&id).unwrap().unwrap().held_by_caller);
    // Not b's to release, unless forced.
    let err = b.lock_release(&id, None, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Lock, "{err}");
    assert_eq!(
        a.lock_release(&id, Some(lease.token), false)
            .unwrap()
            .unwrap()
            .pid,
        1001
    );
    assert!(a.lock_status(&id).unwrap().is_none());
    assert!(a.lock_release(&id, None, false).unwrap().is_none());
    b.lock_acquire(
        &id,
        &LockRequest {
            owner_pid: 1002,
            ..lock_req(None, Duration::ZERO)
        },
    )
    .unwrap();
    assert!(a.lock_release(&id, None, true).unwrap().is_some());
    // Logged as the file backend logs a forced release.
    let broken = all_events(
        &a,
        &id,
        &EventQuery {
            types: vec!["lock_force_released".into()],
            ..Default::default()
        },
    );
    assert_eq!(broken.len(), 1);
}

#[test]
fn an_expired_lease_is_taken_over() {
    let Some(s) = schema() else { return };
    let a = s.store_as(2001);
    let b = s.store_as(2002);
    let id = mid("lease");
    let first = a
        .lock_acquire(
            &id,
            &lock_req(Some(Duration::from_millis(300)), Duration::ZERO),
        )
        .unwrap();
    // b waits (the store polls) until the lease runs out, then takes it.
    let second = b
        .lock_acquire(
            &id,
            &lock_req(Some(Duration::from_secs(600)), Duration::from_secs(120)),
        )
        .unwrap();
    assert!(second.token > first.token);
    let broken = all_events(
        &b,
        &id,
        &EventQuery {
            types: vec!["lock_broken".into()],
            ..Default::default()
        },
    );
    assert_eq!(broken.len(), 1);
    // The old holder's release is refused: the lock is not its any more.
    let err = a.lock_release(&id, Some(first.token), false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Lock, "{err}");
}

#[test]
fn fencing_tokens_increase_and_stale_tokens_are_refused() {
    let Some(mut s) = schema() else { return };
    let a = s.store_as(3001);
    let b = s.store_as(3002);
    let id = mid("fenced");
    let mut last = 0;
    for _ in 0..5 {
        let lease = a
            .lock_acquire(
                &id,
                &lock_req(Some(Duration::from_secs(600)), Duration::ZERO),
            )
            .unwrap();
        assert!(lease.token > last, "{} after {last}", lease.token);
        last = lease.token;
        a.lock_release(&id, Some(lease.token), false).unwrap();
    }
    let old = a
        .lock_acquire(
            &id,
            &lock_req(Some(Duration::from_secs(600)), Duration::ZERO),
        )
        .unwrap();
    a.save(&id, &json!("by a"), &no_wait(), Some(old.token))
        .unwrap();
    // a stalls past its lease (made to expire here rather than waited
    // for); b takes over.
    s.sql("UPDATE mstate_locks SET expires_at = clock_timestamp() - interval '1 second'");
    let err = a
        .save(&id, &json!("late"), &no_wait(), Some(old.token))
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    let new = b
        .lock_acquire(
            &id,
            &lock_req(Some(Duration::from_secs(600)), Duration::ZERO),
        )
        .unwrap();
    assert!(new.token > old.token);
    b.save(&id, &json!("by b"), &no_wait(), Some(new.token))
        .unwrap();
    // a wakes up and writes with its old token: refused, b's state stays.
    let err = a
        .save(&id, &json!("stale"), &no_wait(), Some(old.token))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Lock, "{err}");
    assert!(err.to_string().contains("taken again"), "{err}");
    let err = a.complete(&id, &no_wait(), Some(old.token)).unwrap_err();
    assert!(err.to_string().contains("taken again"), "{err}");
    let err = a
        .save(&id, &json!("bogus"), &no_wait(), Some(new.token + 100))
        .unwrap_err();
    assert!(err.to_string().contains("never issued"), "{err}");
    let loaded = a.load(&id).unwrap();
    assert_eq!(loaded.envelope.state, json!("by b"));
    assert_eq!(loaded.envelope.revision, 2);
    // Renewal works for the holder only.
    assert!(b.lock_renew(&id, new.token).is_ok());
    assert!(a.lock_renew(&id, old.token).is_err());
}

#[test]
fn a_connection_killed_mid_transaction_fails_and_writes_nothing() {
    let Some(mut s) = schema() else { return };
    let store = s.store();
    let id = mid("killed");
    store.save(&id, &json!("v1"), &opts(), None).unwrap();
    let events_before = all_events(&store, &id, &EventQuery::default()).len();
    let victim = store.backend_pid().unwrap();
    // Another transaction inserts the event the save will append, and
    // holds it uncommitted: the save writes its state, then waits on it.
    let mut blocker = postgres::Client::connect(&url(), postgres::NoTls).unwrap();
    let mut tx = blocker.transaction().unwrap();
    tx.batch_execute(&format!(
        "SET LOCAL search_path TO \"{}\";
         INSERT INTO mstate_events (milestone_id, seq, ts, event_type, data, line)
         SELECT id, next_seq, now(), 'blocker', '{{}}', '{{}}' FROM mstate_milestones WHERE id = 'killed'",
        s.name
    ))
    .unwrap();
    let saver = std::thread::spawn(move || {
        let r = store.save(&mid("killed"), &json!("v2"), &opts(), None);
        (r, store)
    });
    // Wait until the save is blocked inside its transaction, then kill it.
    let mut killed = false;
    for _ in 0..6000 {
        let waiting: bool = s
            .admin
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock' \
                 AND state = 'active')",
                &[&victim],
            )
            .unwrap()
            .get(0);
        if waiting {
            let done: bool = s
                .admin
                .query_one("SELECT pg_terminate_backend($1)", &[&victim])
                .unwrap()
                .get(0);
            killed = done;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(killed, "the save never blocked");
    let (result, store) = saver.join().unwrap();
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(
        err.to_string()
            .contains("rolled back unless the loss came while it committed"),
        "a lost write says it may have committed: {err}"
    );
    tx.rollback().unwrap();
    // Nothing of the save is left: state, history and events as before.
    let loaded = store.load(&id).unwrap();
    assert_eq!(loaded.envelope.state, json!("v1"));
    assert_eq!(loaded.envelope.revision, 1);
    assert_eq!(store.history(&id).unwrap().len(), 0);
    assert_eq!(
        all_events(&store, &id, &EventQuery::default()).len(),
        events_before
    );
    assert_eq!(s.count("SELECT count(*) FROM mstate_revisions"), 0);
    // The store connects again and works.
    assert_eq!(
        store
            .save(&id, &json!("v2"), &opts(), None)
            .unwrap()
            .revision,
        2
    );
}

/// A read whose connection dies after it handed events over fails (it
/// cannot start again without handing them twice), and says that a read
/// changed nothing, not what a lost write says.
#[test]
fn a_connection_lost_during_a_read_says_nothing_was_changed() {
    let Some(mut s) = schema() else { return };
    let store = s.store();
    let id = mid("read");
    let n = mstate_store::pg::events::QUERY_BATCH as u64 + 10;
    for i in 0..n {
        store.log(&id, &event("e", json!({"i": i}), None)).unwrap();
    }
    let victim = store.backend_pid().unwrap();
    let mut seen = 0;
    let err = store
        .events(&id, &EventQuery::default(), &mut |_| {
            seen += 1;
            if seen == 1 {
                let done: bool = s
                    .admin
                    .query_one("SELECT pg_terminate_backend($1, 30000)", &[&victim])
                    .unwrap()
                    .get(0);
                assert!(done);
            }
            Ok(true)
        })
        .unwrap_err();
    assert_eq!(
        seen,
        mstate_store::pg::events::QUERY_BATCH as u64,
        "one batch handed over"
    );
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    let text = err.to_string();
    assert!(text.contains("only read, so nothing was changed"), "{text}");
    assert!(!text.contains("rolled back"), "{text}");
    // The next read runs on a new connection.
    assert_eq!(
        all_events(&store, &id, &EventQuery::default()).len() as u64,
        n
    );
}

#[test]
fn an_unreachable_server_is_an_error() {
    let err = PgStore::connect(
        "host=127.0.0.1 port=1 user=postgres dbname=test connect_timeout=2",
        "mstate",
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.to_string().contains("connect"), "{err}");
}

#[test]
fn a_connection_lost_while_idle_is_replaced() {
    let Some(mut s) = schema() else { return };
    let store = s.store();
    let id = mid("idle");
    store.save(&id, &json!("v1"), &opts(), None).unwrap();
    let kill = |s: &mut TestSchema, pid: i32| {
        let done: bool = s
            .admin
            .query_one("SELECT pg_terminate_backend($1, 30000)", &[&pid])
            .unwrap()
            .get(0);
        assert!(done);
    };
    // A read is retried on a new connection.
    let first = store.backend_pid().unwrap();
    kill(&mut s, first);
    assert_eq!(store.load(&id).unwrap().envelope.state, json!("v1"));
    let second = store.backend_pid().unwrap();
    assert_ne!(first, second);
    // So is a write whose connection is found dead at BEGIN.
    kill(&mut s, second);
    assert_eq!(
        store
            .save(&id, &json!("v2"), &opts(), None)
            .unwrap()
            .revision,
        2
    );
    kill(&mut s, store.backend_pid().unwrap());
    let e = store.log(&id, &event("after", json!({}), None)).unwrap();
    assert_eq!(e.seq, Some(3));
    kill(&mut s, store.backend_pid().unwrap());
    assert_eq!(all_events(&store, &id, &EventQuery::default()).len(), 3);
}

#[test]
fn list_shows_every_milestone_with_its_lock() {
    let Some(s) = schema() else { return };
    let store = s.store_as(4001);
    store.save(&mid("b"), &json!(1), &opts(), None).unwrap();
    store
        .log(&mid("a-events-only"), &event("x", json!({}), None))
        .unwrap();
    let lease = store
        .lock_acquire(
            &mid("c"),
            &LockRequest {
                owner_pid: 4001,
                ..lock_req(None, Duration::ZERO)
            },
        )
        .unwrap();
    let listed = store.list().unwrap();
    let ids: Vec<&str> = listed.iter().map(|m| m.milestone_id.as_str()).collect();
    assert_eq!(ids, ["a-events-only", "b", "c"]);
    assert_eq!(listed[0].revision, None);
    assert_eq!(listed[1].revision, Some(1));
    assert!(listed[1].lock.is_none());
    let lock = listed[2].lock.as_ref().expect("c is locked");
    assert_eq!(lock.id, lease.token.to_string());
    assert_eq!(lock.pid, 4001);
}

#[test]
fn a_schema_newer_than_this_build_is_refused() {
    let Some(mut s) = schema() else { return };
    drop(s.store());
    let newer = schema::latest_version() + 1;
    s.sql(&format!(
        "INSERT INTO mstate_schema_version (version, description) VALUES ({newer}, 'from the future')"
    ));
    let err = PgStore::connect(&url(), &s.name).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn a_failed_append_leaves_no_gap() {
    let Some(s) = schema() else { return };
    let store = s.store();
    let id = mid("gaps");
    assert_eq!(
        store.log(&id, &event("ok", json!({}), None)).unwrap().seq,
        Some(1)
    );
    // jsonb cannot hold U+0000: the append fails inside the statement
    // that took the seq, and the seq goes back with it.
    let err = store
        .log(&id, &event("bad", json!({"s": "a\u{0}b"}), None))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert_eq!(
        store.log(&id, &event("ok", json!({}), None)).unwrap().seq,
        Some(2)
    );
    let seqs: Vec<u64> = all_events(&store, &id, &EventQuery::default())
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(seqs, [1, 2]);
}

/// `jsonb` cannot hold U+0000: such a state or event is refused as
/// invalid input and changes nothing, while an escaped backslash before
/// `u0000` (a literal text) is kept.
#[test]
fn u0000_is_refused_as_invalid_and_changes_nothing() {
    let Some(s) = schema() else { return };
    let store = s.store();
    let id = mid("nul");
    store.save(&id, &json!({"a": 1}), &opts(), None).unwrap();
    for bad in [
        &br#"{"a": "x\u0000y"}"#[..],
        br#"{"k\u0000": 1}"#,
        br#"{"a": "\\\u0000"}"#,
    ] {
        let err = store.save_text(&id, bad, &opts(), None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    }
    let err = store
        .log(&id, &event("note", json!({"t": "a\u{0}b"}), None))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    let loaded = store.load(&id).unwrap();
    assert_eq!(loaded.envelope.revision, 1);
    assert_eq!(loaded.envelope.state, json!({"a": 1}));
    let literal = br#"{"a": "\\u0000"}"#;
    store.save_text(&id, literal, &opts(), None).unwrap();
    assert_eq!(
        store.load(&id).unwrap().envelope.state,
        json!({"a": "\\u0000"})
    );
}

/// `since` is exact even where timestamps do not follow seq (a server
/// clock stepped back, a log moved in from files): every event at or
/// after the time, in seq order, whatever the plan used to find them.
#[test]
fn since_is_exact_when_times_do_not_follow_seq() {
    let Some(mut s) = schema() else { return };
    let store = s.store();
    let id = mid("clock");
    for i in 0..6 {
        store
            .log(&id, &event("tick", json!({"i": i}), None))
            .unwrap();
    }
    // seq 2 written "later" than every other, seq 5 "earlier".
    s.sql(
        "UPDATE mstate_events SET ts = ts + interval '1 hour' WHERE milestone_id = 'clock' AND seq = 2; \
         UPDATE mstate_events SET ts = ts - interval '1 hour' WHERE milestone_id = 'clock' AND seq = 5",
    );
    let since = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(600))
        .unwrap();
    let q = |limit| EventQuery {
        since: Some(since),
        limit,
        ..Default::default()
    };
    let seqs =
        |q: EventQuery| -> Vec<u64> { all_events(&store, &id, &q).iter().map(|e| e.0).collect() };
    assert_eq!(seqs(q(None)), vec![2]);
    assert_eq!(seqs(q(Some(1))), vec![2]);
    let earlier = EventQuery {
        since: Some(
            jiff::Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(600))
                .unwrap(),
        ),
        ..Default::default()
    };
    assert_eq!(seqs(earlier), vec![1, 2, 3, 4, 6]);
}

/// `follow` is woken by NOTIFY and reads by seq: every event once, in
/// order, also those appended while its listening connection was killed
/// (it reconnects and catches up by seq).
#[test]
fn follow_catches_up_by_seq_after_its_connection_is_killed() {
    use mstate_store::EventStore;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    let Some(mut s) = schema() else { return };
    let writer = s.store();
    let id = mid("followed");
    writer.init(&id, &opts()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<u64>();
    let follower = {
        let store = s.store();
        let id = id.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            EventStore::follow(
                &store,
                &id,
                &EventQuery::default(),
                &|| stop.load(Ordering::Relaxed),
                &mut |r| {
                    tx.send(r.seq).expect("receiver lives");
                    Ok(true)
                },
            )
        })
    };
    let wait_for = |rx: &mpsc::Receiver<u64>, n: usize| -> Vec<u64> {
        (0..n)
            .map(|_| {
                rx.recv_timeout(Duration::from_secs(60))
                    .expect("an event in time")
            })
            .collect()
    };
    assert_eq!(wait_for(&rx, 1), vec![1]);
    for i in 0..3 {
        writer
            .log(&id, &event("tick", json!({"i": i}), None))
            .unwrap();
    }
    assert_eq!(wait_for(&rx, 3), vec![2, 3, 4]);
    // Kill the follower's listening connection, then append while it is
    // gone: the notifications of these are lost to it.
    let killed = s.count(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE query LIKE 'LISTEN %{}%' AND pid <> pg_backend_pid()",
        s.name
    ));
    assert_eq!(killed, 1);
    for i in 3..6 {
        writer
            .log(&id, &event("tick", json!({"i": i}), None))
            .unwrap();
    }
    assert_eq!(wait_for(&rx, 3), vec![5, 6, 7]);
    writer
        .log(&id, &event("tick", json!({"i": 6}), None))
        .unwrap();
    assert_eq!(wait_for(&rx, 1), vec![8]);
    stop.store(true, Ordering::Relaxed);
    follower.join().unwrap().unwrap();
    assert!(rx.try_recv().is_err(), "an event handed twice");
}

/// Events of milestone `id` at `base + times[n - 1]` seconds for seq
/// `n`, types `t0`..`t2` and sessions `s0`, `s1` by seq, as rows made by
/// SQL (as a version 2 schema held them, or a hand-made insert).
fn insert_events_sql(s: &mut TestSchema, id: &str, times: &[i64]) {
    s.sql(&format!(
        "INSERT INTO mstate_milestones (id, next_seq) VALUES ('{id}', {next});
         INSERT INTO mstate_events (milestone_id, seq, ts, session_id, event_type, data, line)
         SELECT '{id}', n, timestamptz '2026-01-01 00:00:00+00' + make_interval(secs => t),
                's' || (n % 2), 't' || (n % 3), '{{}}',
                '{{\"seq\":' || n || ',\"event_type\":\"t' || (n % 3) || '\"}}'
           FROM unnest(ARRAY[{list}]::bigint[]) WITH ORDINALITY AS u(t, n)",
        next = times.len() + 1,
        list = times
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(","),
    ));
}

/// The same events brought in by `import` (what `mstate migrate` does),
/// so times can tie or go back.
fn import_events(store: &PgStore, id: &str, times: &[i64]) {
    use mstate_store::model::Status;
    use mstate_store::prelude::*;
    use mstate_store::transfer::Record;
    let mut records = vec![Record::Milestone {
        id: mid(id),
        status: Status::Active,
        state: None,
    }];
    for (i, t) in times.iter().enumerate() {
        let n = i as u64 + 1;
        let line = json!({
            "timestamp": at(*t).to_string(),
            "milestone_id": id,
            "session_id": format!("s{}", n % 2),
            "event_type": format!("t{}", n % 3),
            "data": {},
            "seq": n,
        });
        records.push(Record::Event {
            milestone: mid(id),
            seq: n,
            line: line.to_string(),
        });
    }
    store
        .import(&mut records.into_iter().map(Ok))
        .expect("import");
}

fn disordered(s: &mut TestSchema, id: &str) -> bool {
    s.count(&format!(
        "SELECT ts_disordered::int::bigint FROM mstate_milestones WHERE id = '{id}'"
    )) == 1
}

fn at(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_767_225_600 + secs).unwrap()
}

/// A time bound on a milestone whose times follow seq is read through seq
/// bounds; on one whose times do not, by filtering. Both give exactly the
/// events a filter over the whole log gives, for bounds between, on and
/// beyond the events' times (ties included), with every other option.
#[test]
fn since_and_until_by_seq_bounds_match_a_filter_of_the_log() {
    let Some(mut s) = schema() else { return };
    let store = s.store();
    // Times with ties and gaps, never going down along seq.
    let times: Vec<i64> = vec![0, 0, 1, 5, 5, 5, 6, 10, 10, 20, 21, 21];
    import_events(&store, "ord", &times);
    assert!(!disordered(&mut s, "ord"), "times follow seq");
    let id = mid("ord");
    let log: Vec<(u64, i64, String)> = times
        .iter()
        .enumerate()
        .map(|(i, t)| (i as u64 + 1, *t, format!("t{}", (i + 1) % 3)))
        .collect();
    let bounds = [
        None,
        Some(-1),
        Some(0),
        Some(3),
        Some(5),
        Some(10),
        Some(21),
        Some(22),
    ];
    let mut queries = Vec::new();
    for since in bounds {
        for until in bounds {
            for (tail, limit, reverse) in [
                (None, None, false),
                (None, Some(2), false),
                (Some(3), None, false),
                (Some(3), Some(2), false),
                (None, Some(2), true),
                (Some(4), None, true),
            ] {
                for types in [vec![], vec!["t1".to_string()]] {
                    queries.push(EventQuery {
                        since: since.map(at),
                        until: until.map(at),
                        tail,
                        limit,
                        reverse,
                        types,
                        ..Default::default()
                    });
                }
            }
        }
    }
    let expected = |q: &EventQuery| -> Vec<u64> {
        q.window(
            log.iter()
                .filter(|(_, t, ty)| {
                    q.since.is_none_or(|s| at(*t) >= s)
                        && q.until.is_none_or(|u| at(*t) <= u)
                        && (q.types.is_empty() || q.types.contains(ty))
                })
                .map(|e| e.0)
                .collect(),
        )
    };
    let seqs = |q: &EventQuery| -> Vec<u64> {
        all_events(&store, &id, q)
            .into_iter()
            .map(|e| e.0)
            .collect()
    };
    for q in &queries {
        assert_eq!(seqs(q), expected(q), "ordered log, {q:?}");
    }
    // The same log judged disordered is read by filtering: same answers.
    s.sql("UPDATE mstate_milestones SET ts_disordered = true WHERE id = 'ord'");
    for q in &queries {
        assert_eq!(seqs(q), expected(q), "filtered log, {q:?}");
    }
    // A milestone never named has no events, bounded or not.
    let none = EventQuery {
        since: Some(at(0)),
        ..Default::default()
    };
    assert!(all_events(&store, &mid("never"), &none).is_empty());
}

/// Every way an event can break the order of times marks its milestone:
/// an import with a time going back, an append whose clock reads earlier
/// than the event before, a row inserted by hand, a time changed in
/// place. Appends, equal times and changes of other members do not.
#[test]
fn events_out_of_time_order_mark_their_milestone() {
    let Some(mut s) = schema() else { return };
    let store = s.store();
    let id = mid("live");
    for i in 0..5 {
        store
            .log(&id, &event("tick", json!({"i": i}), None))
            .unwrap();
    }
    assert!(!disordered(&mut s, "live"), "appends follow the clock");
    // The server's clock "stepped back": the last event is in the future.
    s.sql("UPDATE mstate_milestones SET last_ts = clock_timestamp() + interval '1 hour' WHERE id = 'live'");
    assert!(!disordered(&mut s, "live"));
    store.log(&id, &event("tick", json!({}), None)).unwrap();
    assert!(
        disordered(&mut s, "live"),
        "an append earlier than the last"
    );

    import_events(&store, "earlier", &[0, 5, 3]);
    assert!(disordered(&mut s, "earlier"));
    import_events(&store, "ties", &[2, 2, 2]);
    assert!(!disordered(&mut s, "ties"));
    // Imported events go on with appends.
    store
        .log(&mid("ties"), &event("now", json!({}), None))
        .unwrap();
    assert!(!disordered(&mut s, "ties"));

    // A row inserted by hand, even at a later time and the next seq.
    s.sql(
        "INSERT INTO mstate_events (milestone_id, seq, ts, event_type, data, line)
         VALUES ('ties', 5, clock_timestamp() + interval '1 day', 't', '{}', '{\"seq\":5}')",
    );
    assert!(disordered(&mut s, "ties"), "a row not written by log");

    import_events(&store, "edited", &[0, 1, 2]);
    s.sql("UPDATE mstate_events SET ts = ts + interval '1 second' WHERE milestone_id = 'edited' AND seq = 3");
    assert!(disordered(&mut s, "edited"), "a time changed in place");
    // A change that leaves times and seqs alone does not count.
    import_events(&store, "data", &[0, 1]);
    s.sql("UPDATE mstate_events SET data = '{\"x\":1}' WHERE milestone_id = 'data'");
    assert!(!disordered(&mut s, "data"));
}

/// A schema at version 2 (events already there) upgrades to version 3
/// with each milestone judged by its events: ordered ones read through
/// seq bounds, the others by filtering, both exact.
#[test]
fn version_2_schemas_upgrade_with_their_event_order_judged() {
    let Some(mut s) = schema() else { return };
    let name = s.name.clone();
    s.admin
        .batch_execute(&format!(
            "CREATE SCHEMA \"{name}\";
             CREATE TABLE \"{name}\".mstate_schema_version (
                 version integer PRIMARY KEY CHECK (version > 0),
                 description text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        ))
        .unwrap();
    for m in &schema::MIGRATIONS[..2] {
        s.sql(m.sql);
        s.sql(&format!(
            "INSERT INTO mstate_schema_version (version, description) VALUES ({}, 'test')",
            m.version
        ));
    }
    insert_events_sql(&mut s, "ordered", &[0, 1, 1, 4]);
    insert_events_sql(&mut s, "stepped", &[0, 3, 1, 4]);
    let store = s.store();
    assert_eq!(store.schema_version().unwrap(), 3);
    assert!(!disordered(&mut s, "ordered"));
    assert!(disordered(&mut s, "stepped"));
    assert_eq!(
        s.count("SELECT count(*) FROM pg_indexes WHERE indexname = 'mstate_events_ts'"),
        0
    );
    let since = |id: &str, t: i64| -> Vec<u64> {
        let q = EventQuery {
            since: Some(at(t)),
            ..Default::default()
        };
        all_events(&store, &mid(id), &q)
            .into_iter()
            .map(|e| e.0)
            .collect()
    };
    assert_eq!(since("ordered", 1), vec![2, 3, 4]);
    assert_eq!(since("stepped", 2), vec![2, 4]);
    // New appends keep the judgement going.
    store
        .log(&mid("ordered"), &event("now", json!({}), None))
        .unwrap();
    assert!(!disordered(&mut s, "ordered"));
    assert_eq!(since("ordered", 4), vec![4, 5]);
}
