//! Fencing tokens of the file store, through the [`Store`] API: the
//! counter never goes back, even across a crash at any I/O call of an
//! acquisition; writes and renewals pass only with the newest token of a
//! live lock.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mstate_store::io::sim::SimIo;
use mstate_store::model::{Liveness, LockRequest};
use mstate_store::prelude::*;
use mstate_store::store::WriteOptions;
use mstate_store::{Error, FsOptions, FsStore, TokenRefusal};
use serde_json::json;

/// A lock for `owner`, with `ttl`.
fn request(owner: u32, ttl: Option<Duration>) -> LockRequest {
    LockRequest {
        operation: "lock acquire".into(),
        timeout: Duration::from_secs(1),
        owner_pid: owner,
        ttl,
        group: None,
    }
}

fn token_of(store: &FsStore, owner: u32) -> u64 {
    store
        .lock_acquire(&id(), &request(owner, None))
        .expect("acquire")
        .token
        .expect("a token")
}

fn with_token(token: u64) -> WriteOptions {
    WriteOptions {
        lock_token: Some(token),
        lock_timeout: Duration::ZERO,
        ..wo()
    }
}

/// The refusal of `result`, which must be a refused token.
fn refusal<T: std::fmt::Debug>(result: mstate_store::Result<T>) -> TokenRefusal {
    match result {
        Err(Error::TokenRefused { reason, .. }) => reason,
        other => panic!("not a refused token: {other:?}"),
    }
}

#[test]
fn a_token_handed_out_is_never_drawn_again_after_a_crash() {
    let io = SimIo::default();
    let before = open(&io, PID_BEFORE);
    base_setup(&before);
    let first = token_of(&before, PID_BEFORE);
    before.lock_release(&id(), true).unwrap();
    io.settle();
    let second = token_of(&before, PID_BEFORE);
    let calls = io.calls();
    assert!(second > first);
    let mut explored = 0;
    for call in 0..=calls {
        for image in io.crash_states(call, call * 17 + 3, 12) {
            explored += 1;
            let crashed = SimIo::from_image(image);
            let store = open(&crashed, PID_AFTER);
            // The holder (a pid that never lives) is gone: its lock, if
            // the crash left one, is broken on the way.
            let next = token_of(&store, PID_AFTER);
            let acknowledged = if call == calls { second } else { first };
            assert!(
                next > acknowledged,
                "crash after call {call}/{calls}: token {next} drawn after {acknowledged} was handed out"
            );
            store.doctor(true, &mut |_, _| {}).unwrap();
            let report = store.doctor(false, &mut |_, _| {}).unwrap();
            assert!(
                report.findings.is_empty(),
                "crash after call {call}/{calls}: {:#?}",
                report.findings
            );
        }
    }
    assert!(
        explored > calls,
        "{explored} crash states for {calls} calls"
    );
}

/// A store on the real filesystem in `dir`, acting as a process that is
/// not the lock's owner (nor its descendant).
fn real_store(dir: &std::path::Path) -> FsStore {
    let mut actor = mstate_store::model::Actor::current();
    actor.pid = PID_AFTER;
    let opts = FsOptions {
        actor,
        ..FsOptions::default()
    };
    FsStore::open(dir.join(".milestones/state"), opts).unwrap()
}

#[test]
fn writes_and_renewals_pass_with_the_newest_token_of_a_live_lock_only() {
    let t = tempfile::tempdir().unwrap();
    let store = real_store(t.path());
    // This test process owns the locks: alive, and no ancestor of the store's.
    let owner = std::process::id();
    store.save(&id(), &json!({"a": 1}), &wo()).unwrap();
    let old = token_of(&store, owner);
    store.lock_release(&id(), true).unwrap();
    let new = token_of(&store, owner);
    assert!(new > old);

    let superseded = refusal(store.save(&id(), &json!({"a": 2}), &with_token(old)));
    let TokenRefusal::Superseded { newest, holder } = superseded else {
        panic!("{superseded:?}");
    };
    assert_eq!(newest, new);
    assert_eq!(holder.and_then(|h| h.token), Some(new));
    assert_eq!(
        refusal(store.save(&id(), &json!({}), &with_token(new + 1))),
        TokenRefusal::NeverIssued { newest: new }
    );
    assert!(matches!(
        refusal(store.lock_renew(&id(), old)),
        TokenRefusal::Superseded { .. }
    ));
    assert_eq!(store.load(&id(), &wo()).unwrap().envelope.revision, 1);
    // Without a token the write waits for the holder; with its token it
    // goes through at once.
    let no_wait = WriteOptions {
        lock_timeout: Duration::ZERO,
        ..wo()
    };
    assert!(matches!(
        store.save(&id(), &json!({}), &no_wait),
        Err(Error::LockTimeout { .. })
    ));
    let saved = store
        .save(&id(), &json!({"a": 3}), &with_token(new))
        .unwrap();
    assert_eq!(saved.revision, 2);
    // A lock without TTL has no lease to extend.
    assert_eq!(store.lock_renew(&id(), new).unwrap().ttl_secs, None);
    store.lock_release(&id(), true).unwrap();
    assert_eq!(
        refusal(store.save(&id(), &json!({}), &with_token(new))),
        TokenRefusal::Released
    );

    // A lease: renewed, it outlives its first TTL; left alone, it ends.
    let ttl = Duration::from_millis(1200);
    let leased = store
        .lock_acquire(&id(), &request(owner, Some(ttl)))
        .unwrap();
    let token = leased.token.unwrap();
    let started = Instant::now();
    let age = || {
        let created = leased.created.parse::<jiff::Timestamp>();
        created.map_or(Duration::ZERO, |c| {
            Duration::try_from(jiff::Timestamp::now().duration_since(c)).unwrap_or_default()
        })
    };
    // Renewed at a sixth of the TTL until it is well past its first one.
    while age() < ttl * 5 / 3 {
        assert!(started.elapsed() < Duration::from_secs(20), "never renewed");
        let renewed = store.lock_renew(&id(), token).unwrap();
        assert!(renewed.ttl_secs.unwrap() >= ttl.as_secs_f64());
        std::thread::sleep(ttl / 6);
    }
    let status = store.lock_status(&id()).unwrap().unwrap();
    assert_eq!(status.liveness, Liveness::Held, "{status:?}");
    assert!(status.info.ttl_secs.unwrap() > ttl.as_secs_f64());
    store
        .save(&id(), &json!({"a": 4}), &with_token(token))
        .unwrap();
    while !matches!(
        store.lock_status(&id()).unwrap().map(|s| s.liveness),
        Some(Liveness::Stale(_))
    ) {
        assert!(started.elapsed() < Duration::from_secs(40), "never expired");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(matches!(
        refusal(store.save(&id(), &json!({}), &with_token(token))),
        TokenRefusal::Expired { .. }
    ));
    assert!(matches!(
        refusal(store.lock_renew(&id(), token)),
        TokenRefusal::Expired { .. }
    ));
    assert_eq!(store.load(&id(), &wo()).unwrap().envelope.revision, 3);
}
