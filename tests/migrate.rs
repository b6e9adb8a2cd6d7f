//! `mstate migrate`: a store moved to PostgreSQL and back to files is the
//! store it was (states, revisions, backups, checkpoints, events byte for
//! byte with their seqs, sessions, the current session); a target that is
//! not empty, or a source that is not a store, is refused with nothing
//! changed.
//!
//! The PostgreSQL server is `MSTATE_TEST_PG_URL` (default
//! `postgresql://postgres@127.0.0.1:5432/test`); each test uses a schema
//! of its own, dropped after. Without a server the PostgreSQL tests say
//! they skipped and pass, unless `MSTATE_TEST_REQUIRE_TOOLS=1`.

mod common;

mod support;

use std::path::{Path, PathBuf};

use common::{code, ok, run};
use serde_json::Value;

const INVALID: i32 = 6;

/// A schema of the test's own, dropped on drop.
struct Schema {
    name: String,
    admin: postgres::Client,
}

impl Schema {
    /// A new schema name, or `None` (after saying so) without a server.
    fn new() -> Option<Schema> {
        let admin = match postgres::Client::connect(&support::pg::base_url(), postgres::NoTls) {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var("MSTATE_TEST_REQUIRE_TOOLS").as_deref() != Ok("1"),
                    "no PostgreSQL server at {}: {e}",
                    support::pg::base_url()
                );
                eprintln!(
                    "skipped: no PostgreSQL server at {} ({e})",
                    support::pg::base_url()
                );
                return None;
            }
        };
        let name = format!("mstate_t_{:016x}", random());
        Some(Schema { name, admin })
    }

    /// The store's location, as `--store` and `migrate` take it.
    fn url(&self) -> String {
        let base = support::pg::base_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}schema={}", self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
    }
}

fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// `mstate --store STORE ARGS` in `dir`, which must succeed.
fn at(dir: &Path, store: &str, args: &[&str]) -> String {
    let mut all = vec!["--store", store];
    all.extend_from_slice(args);
    ok(dir, &all)
}

/// A store with something of everything: states over several revisions,
/// a completed milestone, backups, a checkpoint, events of unusual bytes
/// and more than one insert batch, sessions (one ended, one current).
fn fill(dir: &Path) {
    ok(dir, &["init", "build"]);
    ok(dir, &["save", "build", r#"{"step": 1}"#]);
    ok(dir, &["save", "build", r#"{"step": 2, "files": ["a.rs"]}"#]);
    ok(dir, &["checkpoint", "create", "build", "before-3"]);
    ok(
        dir,
        &[
            "save",
            "build",
            r#"{"step": 3, "ratio": 1.50, "big": 12345678901234567890}"#,
        ],
    );
    ok(dir, &["session", "start", "build"]);
    ok(dir, &["session", "end"]);
    ok(dir, &["session", "start", "build"]);
    ok(
        dir,
        &[
            "log",
            "build",
            "note",
            r#"{"text": "é \u00e9 \u2028 \"q\"", "n": 1.0e3}"#,
        ],
    );
    for i in 0..300 {
        ok(dir, &["log", "build", "tick", &format!(r#"{{"i": {i}}}"#)]);
    }
    ok(dir, &["save", "other", r#"{"done": true}"#]);
    ok(dir, &["complete", "other"]);
}

/// What the commands show of a store, per command.
fn views(dir: &Path, store: &str) -> Vec<(String, String)> {
    let commands: &[&[&str]] = &[
        &["list", "--json"],
        &["load", "build"],
        &["load", "other", "--json"],
        &["events", "build", "--json"],
        &["events", "other", "--json"],
        &["backups", "build", "--json"],
        &["checkpoint", "list", "build", "--json"],
        &["session", "list", "--json"],
        &["session", "current"],
    ];
    commands
        .iter()
        .map(|c| (c.join(" "), at(dir, store, c)))
        .collect()
}

fn summary(out: &str) -> Value {
    serde_json::from_str(out).expect("migrate --json prints JSON")
}

#[test]
fn files_to_postgres_to_files_keeps_everything() {
    let Some(schema) = Schema::new() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fill(dir);
    let src = ".milestones/state";
    let pg = schema.url();
    let dst = "copy/.milestones/state";

    let there = summary(&ok(dir, &["migrate", "--from", src, "--to", &pg, "--json"]));
    assert_eq!(there["verified"], true, "{there}");
    let lines = std::fs::read_to_string(dir.join(src).join("events/milestone-build.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert!(lines > 300, "{lines}");
    assert_eq!(there["milestones"]["build"]["events"], lines, "{there}");
    assert_eq!(there["milestones"]["build"]["revisions"], 2, "{there}");
    assert_eq!(there["milestones"]["other"]["status"], "completed");
    assert_eq!(there["sessions"], 2);
    let back = summary(&ok(dir, &["migrate", "--from", &pg, "--to", dst, "--json"]));
    assert_eq!(back["verified"], true, "{back}");
    assert_eq!(back["milestones"], there["milestones"]);

    // The file store made from PostgreSQL shows what the first one did,
    // command for command.
    for ((cmd, want), (_, got)) in views(dir, src).iter().zip(views(dir, dst).iter()) {
        assert_eq!(want, got, "`mstate {cmd}` differs after the round trip");
    }
    // The event log is the same bytes.
    let log =
        |root: &str| std::fs::read(dir.join(root).join("events/milestone-build.jsonl")).unwrap();
    assert_eq!(log(src), log(dst));
    // What does not depend on the backend reads the same from PostgreSQL.
    for cmd in [
        &["load", "build"][..],
        &["events", "build", "--json"],
        &["session", "list", "--json"],
        &["session", "current"],
        &["list", "--json"],
    ] {
        assert_eq!(at(dir, src, cmd), at(dir, &pg, cmd), "`mstate {cmd:?}`");
    }
    // Appends go on from the last seq, on both targets.
    for store in [pg.as_str(), dst] {
        at(dir, store, &["log", "build", "after"]);
        let last: Value = serde_json::from_str(&at(
            dir,
            store,
            &["events", "build", "--tail", "1", "--json"],
        ))
        .unwrap();
        let last = if last.is_array() {
            last[0].clone()
        } else {
            last
        };
        assert_eq!(last["seq"], lines + 1, "{store}: {last}");
    }
}

/// Every file below `root`, with its content.
fn tree(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_nonempty_target_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(dir, &["save", "build", r#"{"step": 1}"#]);
    let other = tempfile::tempdir().unwrap();
    ok(other.path(), &["save", "mine", r#"{"x": 1}"#]);
    let target = other.path().join(".milestones/state");
    let target_s = target.to_str().unwrap();
    let before = tree(&target);

    let out = run(
        dir,
        &["migrate", "--from", ".milestones/state", "--to", target_s],
    );
    assert_eq!(out.status.code(), Some(INVALID));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not empty") && err.contains("--into-nonempty"),
        "{err}"
    );
    assert_eq!(
        tree(&target),
        before,
        "a refused migrate changed the target"
    );

    // Into a store holding a milestone of the source: refused even so.
    ok(other.path(), &["save", "build", r#"{"theirs": true}"#]);
    let before = tree(&target);
    assert_cmd::Command::new(common::bin())
        .current_dir(dir)
        .args([
            "migrate",
            "--from",
            ".milestones/state",
            "--to",
            target_s,
            "--into-nonempty",
        ])
        .assert()
        .code(INVALID);
    assert_eq!(tree(&target), before);

    // Asked to, it adds to a store holding other milestones.
    let third = tempfile::tempdir().unwrap();
    ok(third.path(), &["save", "mine", r#"{"x": 1}"#]);
    let third_store = third.path().join(".milestones/state");
    let third_s = third_store.to_str().unwrap();
    ok(
        dir,
        &[
            "migrate",
            "--from",
            ".milestones/state",
            "--to",
            third_s,
            "--into-nonempty",
        ],
    );
    let list = at(dir, third_s, &["list"]);
    assert!(list.contains("build") && list.contains("mine"), "{list}");
}

#[test]
fn a_nonempty_postgres_target_is_refused_and_left_alone() {
    let Some(schema) = Schema::new() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(dir, &["save", "build", r#"{"step": 1}"#]);
    let pg = schema.url();
    at(dir, &pg, &["save", "theirs", r#"{"x": 1}"#]);
    let before = at(dir, &pg, &["events", "theirs", "--json"]);
    assert_eq!(
        code(
            dir,
            &["migrate", "--from", ".milestones/state", "--to", &pg]
        ),
        INVALID
    );
    assert_eq!(
        at(dir, &pg, &["list", "--json"])
            .matches("milestone_id")
            .count(),
        1
    );
    assert_eq!(at(dir, &pg, &["events", "theirs", "--json"]), before);
}

#[test]
fn a_bad_from_is_refused_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let to = "copy/.milestones/state";
    // No store there.
    let out = run(
        dir,
        &["migrate", "--from", "nowhere/.milestones/state", "--to", to],
    );
    assert_eq!(out.status.code(), Some(INVALID));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no store"));
    // Not a location.
    assert_eq!(
        code(
            dir,
            &["migrate", "--from", "postgres://h/db?schema=", "--to", to]
        ),
        INVALID
    );
    // The same store twice.
    ok(dir, &["save", "build", "{}"]);
    assert_eq!(
        code(
            dir,
            &[
                "migrate",
                "--from",
                ".milestones/state",
                "--to",
                ".milestones/state"
            ]
        ),
        INVALID
    );
    assert!(
        !dir.join("copy").exists(),
        "a refused migrate created its target"
    );
}

#[test]
fn files_to_files_keeps_seqs_after_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(dir, &["init", "build"]);
    for i in 0..5 {
        ok(dir, &["log", "build", "tick", &format!(r#"{{"i": {i}}}"#)]);
    }
    // Drop every event but the state_cleaned one: the log now starts
    // past seq 1.
    ok(dir, &["cleanup", "build", "--retention-days", "0"]);
    ok(dir, &["log", "build", "after"]);
    let src = ".milestones/state";
    let dst = "copy/.milestones/state";
    let want = at(dir, src, &["events", "build", "--json"]);
    ok(dir, &["migrate", "--from", src, "--to", dst]);
    assert_eq!(at(dir, dst, &["events", "build", "--json"]), want);
    at(dir, dst, &["log", "build", "later"]);
    let (a, b) = (
        at(dir, src, &["log", "build", "later", "--json"]),
        at(dir, dst, &["events", "build", "--tail", "1", "--json"]),
    );
    let seq = |s: &str| {
        let v: Value = serde_json::from_str(s).unwrap();
        let v = if v.is_array() { v[0].clone() } else { v };
        v["seq"].clone()
    };
    assert_eq!(seq(&a), seq(&b));
}

#[test]
fn a_move_that_fails_leaves_postgres_as_it_was() {
    let Some(schema) = Schema::new() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(dir, &["save", "a-first", r#"{"step": 1}"#]);
    // A session of a status PostgreSQL does not hold: sessions come after
    // every milestone, so the import has begun when it fails.
    std::fs::write(
        dir.join(".milestones/state/sessions/s-odd.json"),
        r#"{"session_id": "s-odd", "milestone_id": "a-first", "created_at": "2026-01-01T00:00:00Z", "pid": 1, "status": "paused"}"#,
    )
    .unwrap();
    let pg = schema.url();
    let out = run(
        dir,
        &["migrate", "--from", ".milestones/state", "--to", &pg],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did not finish"), "{err}");
    let list = at(dir, &pg, &["list", "--json"]);
    assert!(!list.contains("a-first"), "a failed move left {list}");
}

/// A state the seed's functions wrote has no revision: it moves as the
/// revision a write would give it, the one after the highest issued.
#[test]
fn a_seed_state_moves_with_the_revision_it_counts_as() {
    let Some(schema) = Schema::new() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(dir, &["save", "m", r#"{"step": 1}"#]);
    ok(dir, &["save", "m", r#"{"step": 2}"#]);
    std::fs::write(
        dir.join(".milestones/state/active/m.json"),
        r#"{"timestamp": "2026-01-01T00:00:00Z", "milestone_id": "m", "version": "1.0", "state": {"step": "seed"}}"#,
    )
    .unwrap();
    let pg = schema.url();
    ok(
        dir,
        &["migrate", "--from", ".milestones/state", "--to", &pg],
    );
    let loaded: Value = serde_json::from_str(&at(dir, &pg, &["load", "m", "--json"])).unwrap();
    assert_eq!(loaded["revision"], 3, "{loaded}");
    assert_eq!(loaded["state"]["step"], "seed", "{loaded}");
}

/// A store written in PostgreSQL moves to another schema as it is, and to
/// files with what does not depend on the backend unchanged.
#[test]
fn a_postgres_store_moves_to_postgres_and_to_files() {
    let (Some(a), Some(b)) = (Schema::new(), Schema::new()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (pa, pb) = (a.url(), b.url());
    let fs = "copy/.milestones/state";
    at(dir, &pa, &["init", "build"]);
    at(dir, &pa, &["save", "build", r#"{"step": 1}"#]);
    at(dir, &pa, &["save", "build", r#"{"step": 2}"#]);
    at(dir, &pa, &["checkpoint", "create", "build", "cp"]);
    at(dir, &pa, &["save", "build", r#"{"step": 3, "n": 1.50}"#]);
    at(dir, &pa, &["session", "start", "build"]);
    at(dir, &pa, &["log", "build", "note", r#"{"text": "é"}"#]);
    at(dir, &pa, &["save", "other", "[]"]);
    at(dir, &pa, &["complete", "other"]);
    ok(dir, &["migrate", "--from", &pa, "--to", &pb]);
    ok(dir, &["migrate", "--from", &pa, "--to", fs]);
    for ((cmd, want), (_, got)) in views(dir, &pa).iter().zip(views(dir, &pb).iter()) {
        assert_eq!(want, got, "`mstate {cmd}` differs between the schemas");
    }
    for cmd in [
        &["load", "build"][..],
        &["load", "other", "--json"],
        &["events", "build", "--json"],
        &["events", "other", "--json"],
        &["session", "list", "--json"],
        &["session", "current"],
        &["list", "--json"],
    ] {
        assert_eq!(at(dir, &pa, cmd), at(dir, fs, cmd), "`mstate {cmd:?}`");
    }
}
