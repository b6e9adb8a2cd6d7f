//! Resource limits on the real binary: few file descriptors (`ulimit -n`)
//! and little address space (`ulimit -v`), for every writing command.
//!
//! A command that runs out of descriptors or memory may fail (exit 1 with
//! the system's message) or, out of memory, be aborted by the allocator;
//! it must never panic, never leave the state anything but the old or the
//! new one, never lose an acknowledged event, and never leave the store
//! unusable: afterwards a save, a log and `doctor --repair` then `doctor`
//! succeed.

mod common;

use common::*;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// The writing commands, each run on a store prepared by [`prepare`].
const COMMANDS: &[&[&str]] = &[
    &["save", "m", r#"{"v": 9}"#],
    &["update", "m", "--set", "/v=9"],
    &["log", "m", "probe", r#"{"i": 1}"#],
    &["checkpoint", "create", "m", "two"],
    &["checkpoint", "restore", "m", "one"],
    &["recover", "m"],
    &["cleanup", "m"],
    &["complete", "m"],
    &["lock", "acquire", "m", "--owner-pid", "1"],
    &["lock", "release", "m", "--force"],
    &["session", "start", "m"],
    &["doctor", "--repair"],
    &["lock", "run", "m", "--", "true"],
];

fn prepare(d: &Path) {
    ok(d, &["init", "m"]);
    ok(d, &["save", "m", r#"{"v": 1}"#]);
    ok(d, &["checkpoint", "create", "m", "one"]);
    ok(d, &["save", "m", r#"{"v": 2}"#]);
    ok(d, &["log", "m", "before", "{}"]);
}

/// `mstate ARGS` under `sh -c 'ulimit LIMIT; exec mstate ARGS'`.
fn limited(d: &Path, limit: &str, args: &[&str]) -> Output {
    Command::new("sh")
        .current_dir(d)
        .arg("-c")
        .arg(format!("ulimit {limit} && exec \"$0\" \"$@\""))
        .arg(bin())
        .args(args)
        .env_remove("MSTATE_DIR")
        .env_remove("MSTATE_SESSION")
        .env("MSTATE_LOCK_TIMEOUT", "2")
        .output()
        .expect("run sh")
}

/// The events of `m`, asserting seq is 1, 2, 3, ...
fn events(d: &Path) -> Vec<Value> {
    let evs: Vec<Value> = ok(d, &["events", "m"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("event line parses"))
        .collect();
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1), "seq at {i}: {e}");
    }
    evs
}

fn check_limit(limit: &str) {
    let mut ran = 0;
    for args in COMMANDS {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        prepare(d);
        let before = events(d);
        let out = limited(d, limit, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let what = format!("ulimit {limit}; mstate {args:?}");
        assert_ne!(out.status.code(), Some(101), "{what} panicked: {stderr}");
        assert!(!stderr.contains("panicked"), "{what} panicked: {stderr}");
        ran += 1;
        // The state is the old or the new one.
        let v = serde_json::from_str::<Value>(&ok(d, &["load", "m"])).unwrap()["v"].clone();
        assert!(
            [1, 2, 9].contains(&v.as_i64().unwrap_or(-1)),
            "{what}: state {v}"
        );
        // Every earlier event is still there, once, in order.
        let after = events(d);
        assert!(after.len() >= before.len(), "{what}: events lost");
        for (a, b) in before.iter().zip(&after) {
            assert_eq!(a, b, "{what}: an earlier event changed");
        }
        // The store is usable.
        let _ = run(d, &["lock", "release", "m", "--force"]);
        let _ = run(d, &["reopen", "m"]);
        ok(d, &["save", "m", r#"{"v": 3}"#]);
        ok(d, &["log", "m", "after", "{}"]);
        let _ = run(d, &["doctor", "--repair"]);
        let out = run(d, &["doctor"]);
        assert!(
            out.status.success(),
            "{what}: doctor after repair: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert_eq!(ran, COMMANDS.len());
}

#[test]
fn few_file_descriptors_never_break_the_store() {
    // 3 is stdin, stdout and stderr only: nothing can be opened.
    for n in [3, 4, 5, 6, 8, 12] {
        check_limit(&format!("-n {n}"));
    }
}

#[test]
fn little_memory_never_breaks_the_store() {
    // Address space in KiB: too little to start, to read, to encode.
    for kib in [4_000, 8_000, 16_000, 32_000] {
        check_limit(&format!("-v {kib}"));
    }
}
