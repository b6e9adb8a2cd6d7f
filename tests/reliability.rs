//! Process crashes and concurrency, on the real binary.
//!
//! - writers killed with SIGKILL at random moments: after each kill the
//!   state loads without recovery, every acknowledged write is there, the
//!   log parses with contiguous `seq`; at the end `doctor --repair` leaves a
//!   clean store;
//! - many processes doing read-modify-write increments through `lock run`
//!   and through `--expect-revision` retries: the count is exact;
//! - many processes appending: exactly N events, `seq` 1..N;
//! - a lock holder killed with SIGKILL: the next waiter gets the lock.
//!
//! Sizes are small by default so the suite stays fast; `MSTATE_STRESS=full`
//! runs the sizes RELIABILITY.md reports (16 x 500 increments, 16 x 2,000
//! appends, 500 kills). `MSTATE_RELIABILITY_REPORT=path` appends figures.

mod common;

use common::*;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Every event of `m`, parsed; asserts `seq` is 1, 2, 3, ...
fn events(dir: &Path, m: &str) -> Vec<Value> {
    let out = ok(dir, &["events", m]);
    let evs: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("event line parses"))
        .collect();
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(
            e["seq"].as_u64(),
            Some(i as u64 + 1),
            "seq not contiguous at {i}"
        );
    }
    evs
}

/// A small deterministic generator for kill delays.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn writers_killed_at_random_moments_lose_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(dir, &["init", "m"]);
    ok(dir, &["save", "m", r#"{"i": -1}"#]);
    let kills = if full() { 500 } else { 60 };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut acked_state = json!({"i": -1});
    let mut acked_events: Vec<i64> = Vec::new();
    let mut killed = 0;
    let start = Instant::now();
    for i in 0..kills {
        let save = i % 2 == 0;
        let data = json!({"i": i}).to_string();
        let args: Vec<&str> = if save {
            vec!["save", "m", &data]
        } else {
            vec!["log", "m", "tick", &data]
        };
        let mut child = Command::new(bin())
            .args(&args)
            .current_dir(dir)
            .env_remove("MSTATE_SESSION")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The delay picks the moment of the kill; it is not synchronisation.
        std::thread::sleep(Duration::from_micros(rng.next() % 4000));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let acknowledged = status.success();
        if !acknowledged {
            killed += 1;
        }
        // The state loads without recovery, and is the acknowledged one or
        // the one in flight.
        let out = run(dir, &["load", "m"]);
        assert!(out.status.success(), "load failed after kill {i}");
        assert!(
            out.stderr.is_empty(),
            "load needed recovery after kill {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let state: Value = serde_json::from_slice(&out.stdout).unwrap();
        if save {
            let in_flight = json!({"i": i});
            assert!(
                state == acked_state || state == in_flight,
                "kill {i}: state {state}"
            );
            if acknowledged {
                assert_eq!(state, in_flight);
            }
            acked_state = state;
        } else {
            assert_eq!(state, acked_state, "kill {i}: a log changed the state");
            if acknowledged {
                acked_events.push(i);
            }
        }
        let evs = events(dir, "m");
        let ticks: Vec<i64> = evs
            .iter()
            .filter(|e| e["event_type"] == "tick")
            .filter_map(|e| e["data"]["i"].as_i64())
            .collect();
        for a in &acked_events {
            assert_eq!(
                ticks.iter().filter(|t| *t == a).count(),
                1,
                "acknowledged event {a} missing or doubled"
            );
        }
    }
    let out = run(dir, &["doctor", "--repair"]);
    let doctor = String::from_utf8_lossy(&out.stdout).into_owned();
    ok(dir, &["doctor"]);
    report(
        &json!({"family": "kill9", "kills": kills, "killed_mid_operation": killed,
        "secs": start.elapsed().as_secs_f64(), "repaired_findings": doctor.lines().count()}),
    );
}

fn increments() -> (usize, usize) {
    if full() {
        (16, 500)
    } else {
        (8, 50)
    }
}

#[test]
fn read_modify_write_through_lock_run_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(dir, &["save", "m", r#"{"count": 0}"#]);
    let (procs, each) = increments();
    // Each step loads, adds one and saves while `lock run` holds the lock;
    // the nested commands use the held lock.
    let script = format!(
        r#"for i in $(seq {each}); do "$M" lock run m --timeout 300 -- sh -c 'n=$("$M" load m | tr -dc 0-9); "$M" save m "{{\"count\": $((n+1))}}" >/dev/null' || exit 1; done"#
    );
    let start = Instant::now();
    let children: Vec<_> = (0..procs)
        .map(|_| {
            Command::new("sh")
                .args(["-c", &script])
                .env("M", bin())
                .current_dir(dir)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let state: Value = serde_json::from_str(&ok(dir, &["load", "m"])).unwrap();
    assert_eq!(state["count"], json!(procs * each));
    report(
        &json!({"family": "lock_run_increments", "processes": procs, "each": each,
        "count": state["count"], "secs": start.elapsed().as_secs_f64()}),
    );
}

#[test]
fn read_modify_write_with_expect_revision_retries_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    ok(&dir, &["save", "m", r#"{"count": 0}"#]);
    let (procs, each) = increments();
    let start = Instant::now();
    let conflicts: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..procs)
            .map(|_| {
                let dir = dir.clone();
                s.spawn(move || {
                    let mut conflicts = 0;
                    for _ in 0..each {
                        loop {
                            let env: Value =
                                serde_json::from_str(&ok(&dir, &["load", "m", "--envelope"]))
                                    .unwrap();
                            let rev = env["revision"].as_u64().unwrap().to_string();
                            let next =
                                json!({"count": env["state"]["count"].as_u64().unwrap() + 1})
                                    .to_string();
                            let out = run(&dir, &["save", "m", &next, "--expect-revision", &rev]);
                            match out.status.code() {
                                Some(0) => break,
                                Some(4) => conflicts += 1,
                                other => panic!(
                                    "save exited {other:?}: {}",
                                    String::from_utf8_lossy(&out.stderr)
                                ),
                            }
                        }
                    }
                    conflicts
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let state: Value = serde_json::from_str(&ok(&dir, &["load", "m"])).unwrap();
    assert_eq!(state["count"], json!(procs * each));
    report(
        &json!({"family": "expect_revision_increments", "processes": procs, "each": each,
        "count": state["count"], "conflicts_retried": conflicts, "secs": start.elapsed().as_secs_f64()}),
    );
}

#[test]
fn concurrent_appends_get_every_seq_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (procs, each) = if full() { (16, 2000) } else { (8, 100) };
    // `--create`: the first appends race to create the log.
    let script = format!(
        r#"for i in $(seq {each}); do "$M" log m tick "{{\"w\": $W, \"i\": $i}}" --create || exit 1; done"#
    );
    let start = Instant::now();
    let children: Vec<_> = (0..procs)
        .map(|w| {
            Command::new("sh")
                .args(["-c", &script])
                .env("M", bin())
                .env("W", w.to_string())
                .current_dir(dir)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let evs = events(dir, "m");
    assert_eq!(evs.len(), procs * each);
    let mut seen = std::collections::BTreeSet::new();
    for e in &evs {
        assert!(
            seen.insert((e["data"]["w"].as_u64(), e["data"]["i"].as_u64())),
            "duplicate event {e}"
        );
    }
    report(
        &json!({"family": "concurrent_appends", "processes": procs, "each": each,
        "events": evs.len(), "secs": start.elapsed().as_secs_f64()}),
    );
}

#[test]
fn a_killed_lock_holder_is_replaced_promptly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(dir, &["save", "m", r#"{"v": 1}"#]);
    let rounds = if full() { 20 } else { 3 };
    let mut handoffs = Vec::new();
    for _ in 0..rounds {
        let mut holder = Command::new(bin())
            .args([
                "lock",
                "run",
                "m",
                "--",
                "sh",
                "-c",
                "echo $$; exec sleep 600",
            ])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // The holder prints once it holds the lock.
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let sleeper: i32 = line.trim().parse().unwrap();
        let waiter = Command::new(bin())
            .args(["save", "m", r#"{"v": 2}"#, "--lock-timeout", "20"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Make sure the waiter is waiting: the lock is still held by the holder.
        assert!(ok(dir, &["lock", "status", "m"]).contains("locked by"));
        // The runner's command keeps the lock after the runner died; the
        // lock is free once the command is gone too.
        holder.kill().unwrap();
        holder.wait().unwrap();
        assert!(ok(dir, &["lock", "status", "m"]).contains("[held"));
        let killed_at = Instant::now();
        let _ = Command::new("kill")
            .arg("-9")
            .arg(sleeper.to_string())
            .status();
        let out = waiter.wait_with_output().unwrap();
        handoffs.push(killed_at.elapsed().as_secs_f64() * 1000.0);
        assert!(
            out.status.success(),
            "waiter failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let evs = events(dir, "m");
        assert!(
            evs.iter().any(|e| e["event_type"] == "lock_broken"),
            "no lock_broken event"
        );
    }
    handoffs.sort_by(f64::total_cmp);
    report(&json!({"family": "killed_lock_holder", "rounds": rounds,
        "ms_from_kill_to_waiter_done_median": handoffs[handoffs.len() / 2],
        "ms_max": handoffs.last()}));
}
