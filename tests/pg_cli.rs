//! The PostgreSQL backend attacked from outside, through the real binary:
//! many processes counting under `lock run`, counting with
//! `--expect-revision` retries, appending events, lease holders killed or
//! outlived, and `init` racing on a fresh schema.
//!
//! Every test works in a schema of its own (see `support::pg`); without a
//! server it passes after printing `skipped: ...`, unless
//! `MSTATE_TEST_REQUIRE_TOOLS=1`.
//!
//! Sizes: the counters run their full sizes (16 × 500 increments under
//! `lock run`, 16 × 500 saves with `--expect-revision`, 8 × 1000 events)
//! only with `MSTATE_TEST_FULL=1` (or `MSTATE_STRESS=full`), and
//! scaled-down counts otherwise, always with the full number of
//! processes: contention is what they test, not volume. Each increment
//! under `lock run` takes about five process starts (the runner, its
//! gate, `sh`, `load`, `update`), serialised by the lock: some 0.3 s on
//! a loaded 2-core machine, so the full 8000 would take about 40 minutes
//! there, against a CI budget of 90 for everything; the default sizes
//! keep this file to a few minutes.

mod support;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::pg::{assert_success, schema, size, PgSchema};

fn revision(envelope: &Value) -> u64 {
    envelope["revision"].as_u64().expect("revision")
}

fn counter(envelope: &Value) -> u64 {
    envelope["state"]["n"].as_u64().expect("state.n")
}

/// Run `work(worker)` on `workers` threads started together; join them
/// (a panic in one fails the test with its message).
fn together<T: Send + 'static>(
    workers: usize,
    work: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let start = Arc::new(Barrier::new(workers));
    let work = Arc::new(work);
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let (start, work) = (start.clone(), work.clone());
            std::thread::spawn(move || {
                start.wait();
                work(w)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().unwrap_or_else(|_| panic!("a worker failed")))
        .collect()
}

/// The revisions the state events (`state_saved`, `state_updated`) of
/// `events` name, in seq order, checking that seqs are 1, 2, ... without
/// gaps.
fn state_revisions(events: &[Value]) -> Vec<u64> {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1), "seq gap at {e}");
    }
    events
        .iter()
        .filter(|e| {
            matches!(
                e["event_type"].as_str(),
                Some("state_saved" | "state_updated")
            )
        })
        .map(|e| e["data"]["revision"].as_u64().expect("revision"))
        .collect()
}

/// 16 processes × 500 increments, each a read and a write by two
/// separate mstate commands inside `lock run`: only the lock keeps two
/// increments from reading the same n, so a lock that ever let two
/// holders in loses an increment. (`update` has no arithmetic, and
/// `update --set` alone is atomic anyway: it would not test the lock.)
#[test]
fn lock_run_serialises_sixteen_incrementing_processes() {
    let Some(s) = schema() else { return };
    let (workers, each) = (16, size(500, 16));
    s.ok(&["init", "m"]);
    s.ok(&["save", "m", r#"{"n": 0}"#]);
    // Read n from the pretty JSON `load` prints, write n + 1.
    let script = r#"set -e
n=$("$MSTATE" load m | sed -n 's/^ *"n": *\([0-9][0-9]*\).*/\1/p')
test -n "$n"
"$MSTATE" update m --set "/n=$((n + 1))" >/dev/null"#;
    let started = Instant::now();
    let worker_s = s.bin.clone();
    together(workers, move |w| {
        for i in 0..each {
            let out = worker_s.run(&[
                "lock",
                "run",
                "m",
                "--timeout",
                "600",
                "--",
                "sh",
                "-c",
                script,
            ]);
            assert_success(&out, &format!("worker {w}, increment {i}"));
        }
    });
    let total = (workers * each) as u64;
    let env = s.envelope("m");
    assert_eq!(counter(&env), total, "increments were lost");
    assert_eq!(revision(&env), total + 1);
    let revisions = state_revisions(&s.events("m"));
    assert_eq!(revisions, (1..=total + 1).collect::<Vec<_>>());
    let status: Value = serde_json::from_str(&s.ok(&["lock", "status", "m", "--json"])).unwrap();
    assert_eq!(status["locked"], false, "{status}");
    eprintln!(
        "{workers} × {each} increments under lock run in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// 16 processes count by optimistic concurrency: load the revision R and
/// n, save n + 1 with `--expect-revision R`, and on exit 4 (conflict)
/// start again. Every acknowledged save must count.
#[test]
fn expect_revision_retries_count_exactly() {
    let Some(s) = schema() else { return };
    let (workers, each) = (16, size(500, 8));
    s.ok(&["save", "m", r#"{"n": 0}"#]);
    let started = Instant::now();
    let worker_s = s.bin.clone();
    let conflicts: Vec<usize> = together(workers, move |w| {
        let mut conflicts = 0;
        for i in 0..each {
            loop {
                let env = worker_s.envelope("m");
                let (rev, n) = (revision(&env), counter(&env));
                let out = worker_s.run(&[
                    "save",
                    "m",
                    &format!(r#"{{"n": {}}}"#, n + 1),
                    "--expect-revision",
                    &rev.to_string(),
                ]);
                match out.status.code() {
                    Some(0) => break,
                    Some(4) => {
                        let err = String::from_utf8_lossy(&out.stderr);
                        assert!(err.contains("revision"), "conflict message: {err}");
                        conflicts += 1;
                    }
                    _ => assert_success(&out, &format!("worker {w}, save {i}")),
                }
            }
        }
        conflicts
    });
    let total = (workers * each) as u64;
    let env = s.envelope("m");
    assert_eq!(counter(&env), total, "a save was lost");
    assert_eq!(revision(&env), total + 1);
    assert_eq!(
        state_revisions(&s.events("m")),
        (1..=total + 1).collect::<Vec<_>>()
    );
    eprintln!(
        "{workers} × {each} saves with --expect-revision in {:.1}s, {} conflicts retried",
        started.elapsed().as_secs_f64(),
        conflicts.iter().sum::<usize>()
    );
}

/// 8 processes append 1000 events each (one `mstate log` per event):
/// seqs are 1..N without gaps or duplicates, each (appender, i) is there
/// exactly once, each appender's events are in its order, and timestamps
/// (the server's clock) follow seq order.
#[test]
fn concurrent_appenders_get_contiguous_seqs() {
    let Some(s) = schema() else { return };
    let (workers, each) = (8, size(1000, 50));
    s.ok(&["init", "m"]);
    let started = Instant::now();
    let worker_s = s.bin.clone();
    together(workers, move |w| {
        for i in 0..each {
            let data = format!(r#"{{"w": {w}, "i": {i}}}"#);
            let out = worker_s.run(&["log", "m", "tick", &data]);
            assert_success(&out, &format!("appender {w}, event {i}"));
        }
    });
    let events = s.events("m");
    assert_eq!(
        events.len(),
        1 + workers * each,
        "init's event and the ticks"
    );
    let mut seen = BTreeSet::new();
    let mut last_of = vec![None; workers];
    let mut last_ts = String::new();
    for (k, e) in events.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(k as u64 + 1), "seq gap at {e}");
        let ts = e["timestamp"].as_str().expect("timestamp").to_string();
        assert!(ts >= last_ts, "timestamp goes back at {e}");
        last_ts = ts;
        if k == 0 {
            assert_eq!(e["event_type"], "state_initialized");
            continue;
        }
        assert_eq!(e["event_type"], "tick", "{e}");
        let w = e["data"]["w"].as_u64().expect("w") as usize;
        let i = e["data"]["i"].as_u64().expect("i") as usize;
        assert!(seen.insert((w, i)), "({w}, {i}) appended twice");
        assert!(last_of[w] < Some(i), "appender {w}'s events out of order");
        last_of[w] = Some(i);
    }
    assert_eq!(seen.len(), workers * each);
    eprintln!(
        "{workers} × {each} appends in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// A shell that takes the lock of `m` with `ttl` (so it is the owner),
/// says so, then stays (as `sleep`, the same process) until killed.
fn holder(s: &PgSchema, ttl: &str) -> Child {
    use std::io::BufRead;
    let mut child = s
        .sh(r#""$MSTATE" lock acquire m --ttl "$1" >/dev/null && echo held && exec sleep 600"#)
        .arg(ttl)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the holder");
    // The holder's own word that it holds the lock.
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the holder's output");
    if line.trim() != "held" {
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait");
        panic!(
            "the holder did not take the lock: {line:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    child
}

/// The newest `lock_broken` event's reason.
fn broken_reason(s: &PgSchema) -> String {
    s.events("m")
        .iter()
        .rev()
        .find(|e| e["event_type"] == "lock_broken")
        .and_then(|e| e["data"]["reason"].as_str().map(str::to_string))
        .expect("a lock_broken event")
}

fn lock_status(s: &PgSchema) -> Value {
    serde_json::from_str(&s.ok(&["lock", "status", "m", "--json"])).expect("status is JSON")
}

fn acquire_now(s: &PgSchema) -> std::process::Output {
    s.run(&["lock", "acquire", "m", "--timeout", "0", "--json"])
}

/// A holder SIGKILLed with most of its lease left: on the same host its
/// death is proof, and the successor takes the lock at once. A holder
/// recorded on another host is not judged by a pid: its lease must
/// expire first, which the successor waits out.
#[test]
fn a_killed_holders_lock_goes_to_its_successor() {
    let Some(mut s) = schema() else { return };
    s.ok(&["init", "m"]);

    // This host: broken at once, long before the 10 minutes of its lease.
    let mut h = holder(&s, "10m");
    let held = lock_status(&s);
    assert_eq!(held["lock"]["liveness"]["state"], "held", "{held}");
    h.kill().expect("kill the holder");
    h.wait().expect("reap the holder");
    let out = acquire_now(&s);
    assert_success(&out, "acquire after the holder died");
    let info: Value = serde_json::from_slice(&out.stdout).expect("lock info");
    assert!(
        info["token"].as_u64() > held["lock"]["info"]["token"].as_u64(),
        "the successor's fencing token is newer: {info} after {held}"
    );
    let reason = broken_reason(&s);
    assert!(reason.contains("this host"), "{reason}");
    s.ok(&["lock", "release", "m", "--force"]);

    // "Another host": the same, with the lease's host rewritten as if it
    // had been taken elsewhere; its pid proves nothing here.
    let mut h = holder(&s, "2s");
    s.sql("UPDATE mstate_locks SET host = 'elsewhere.invalid'");
    h.kill().expect("kill the holder");
    h.wait().expect("reap the holder");
    let out = acquire_now(&s);
    if out.status.code() == Some(5) {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("elsewhere.invalid"), "names the holder: {err}");
        // The store waits out the lease itself.
        let out = s.run(&["lock", "acquire", "m", "--timeout", "60", "--json"]);
        assert_success(&out, "acquire after the lease expired");
    } else {
        // Taken at once only if the 2 s went by first (a loaded machine).
        assert_success(&out, "acquire while another host's lease lasts");
    }
    let reason = broken_reason(&s);
    assert!(reason.contains("lease expired"), "{reason}");
}

/// A live holder's TTL lease: the successor is refused while it lasts
/// and gets in once `lock status` says it expired; the holder lives on.
#[test]
fn a_live_holders_lease_ends_at_its_ttl() {
    let Some(s) = schema() else { return };
    s.ok(&["init", "m"]);
    let mut h = holder(&s, "2s");
    let out = acquire_now(&s);
    if out.status.code() == Some(5) {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is locked by"), "{err}");
        // Poll (bounded) until the status shows the lease ended.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = lock_status(&s);
            match status["lock"]["liveness"]["state"].as_str() {
                Some("stale") => break,
                Some("held") => {}
                _ => panic!("unexpected status {status}"),
            }
            assert!(
                Instant::now() < deadline,
                "the lease never expired: {status}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = acquire_now(&s);
        assert_success(&out, "acquire after the lease expired");
    } else {
        // Taken at once only if the 2 s went by first (a loaded machine).
        assert_success(&out, "acquire while the lease lasts");
    }
    let reason = broken_reason(&s);
    assert!(reason.contains("lease expired"), "{reason}");
    assert!(
        h.try_wait().expect("holder").is_none(),
        "the holder should still live: its lease ended, not its process"
    );
    let _ = h.kill();
    let _ = h.wait();
    let status = lock_status(&s);
    assert_eq!(status["lock"]["liveness"]["state"], "held", "{status}");
    assert_eq!(
        status["lock"]["info"]["pid"].as_u64(),
        Some(std::process::id() as u64),
        "{status}"
    );
}

/// 8 processes run `mstate init --store URL` at once on a fresh schema:
/// all succeed, each migration is recorded once, and the milestone gets
/// one `state_initialized`. Three fresh schemas, to give the race more
/// than one chance.
#[test]
fn concurrent_inits_migrate_once() {
    for _ in 0..3 {
        let Some(mut s) = schema() else { return };
        let store = s.store.clone();
        let children: Vec<Child> = {
            let start = Arc::new(Barrier::new(8));
            let spawners: Vec<_> = (0..8)
                .map(|_| {
                    let (start, store) = (start.clone(), store.clone());
                    let dir = s.dir.path().to_path_buf();
                    std::thread::spawn(move || {
                        let mut c = Command::new(support::pg::bin());
                        c.args(["init", "m", "--json", "--store", &store])
                            .current_dir(dir)
                            .env_remove("MSTATE_STORE")
                            .env_remove("MSTATE_DIR")
                            .stdout(Stdio::piped())
                            .stderr(Stdio::piped());
                        start.wait();
                        c.spawn().expect("spawn init")
                    })
                })
                .collect();
            spawners
                .into_iter()
                .map(|t| t.join().expect("spawner"))
                .collect()
        };
        let mut created = 0;
        for c in children {
            let out = c.wait_with_output().expect("wait for init");
            assert_success(&out, "a concurrent init");
            let v: Value = serde_json::from_slice(&out.stdout).expect("init --json");
            created += usize::from(v["created"] == true);
        }
        assert_eq!(created, 1, "exactly one init created the milestone");
        let (rows, distinct, min, max) = (
            s.int("SELECT count(*) FROM mstate_schema_version"),
            s.int("SELECT count(DISTINCT version) FROM mstate_schema_version"),
            s.int("SELECT min(version)::bigint FROM mstate_schema_version"),
            s.int("SELECT max(version)::bigint FROM mstate_schema_version"),
        );
        assert_eq!((rows, distinct, min), (max, max, 1), "one row per version");
        let events = s.events("m");
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["event_type"], "state_initialized");
    }
}
