//! Names at their length limits: every name mstate builds from a valid
//! milestone id and checkpoint name fits the filesystem's 255-byte limit
//! on a file name, and a pair that would not fit is refused up front as
//! invalid input (exit 6), naming the limit, with nothing changed.

mod common;

use common::*;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// Longest milestone id plus checkpoint name, together (README).
const MAX_TOGETHER: usize = 185;

fn repeat(c: &str, n: usize) -> String {
    c.repeat(n)
}

/// Every file under `dir` with its contents.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let key = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.insert(format!("{key}/"), Vec::new());
                stack.push(p);
            } else {
                out.insert(key, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn store_with(id: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    ok(t.path(), &["init", id]);
    ok(t.path(), &["save", id, r#"{"n": 1}"#]);
    ok(t.path(), &["save", id, r#"{"n": 2}"#]);
    t
}

#[test]
fn an_id_and_a_checkpoint_name_too_long_together_are_invalid_input() {
    for (id_len, name_len) in [(128, 128), (128, 58), (100, 86), (58, 128)] {
        let id = repeat("a", id_len);
        let name = repeat("b", name_len);
        assert!(id_len + name_len > MAX_TOGETHER);
        let t = store_with(&id);
        let d = t.path();
        ok(d, &["checkpoint", "create", &id, "keep"]);
        let before = snapshot(d);
        for args in [
            vec!["checkpoint", "create", &id, &name],
            vec!["checkpoint", "create", &id, &name, "--force"],
            vec!["checkpoint", "restore", &id, &name],
            vec!["checkpoint", "delete", &id, &name],
        ] {
            let out = run(d, &args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(6),
                "{id_len}+{name_len} {:?}: {err}",
                &args[..2]
            );
            assert!(
                err.contains(&MAX_TOGETHER.to_string()) && err.contains("255"),
                "the error does not name the limit: {err}"
            );
            assert!(!err.contains("os error"), "{err}");
            assert_eq!(snapshot(d), before, "{args:?} changed the store");
        }
    }
}

#[test]
fn the_json_error_of_a_too_long_pair_is_invalid() {
    let id = repeat("a", 128);
    let name = repeat("b", 128);
    let t = store_with(&id);
    let out = run(t.path(), &["checkpoint", "create", &id, &name, "--json"]);
    assert_eq!(out.status.code(), Some(6));
    let e: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(e["error"]["kind"], "invalid");
}

#[test]
fn an_id_and_a_checkpoint_name_at_the_limit_together_work() {
    // Multi-byte letters count in bytes: 'é' is two.
    for (id, name) in [
        (repeat("a", 128), repeat("b", MAX_TOGETHER - 128)),
        (repeat("a", MAX_TOGETHER - 128), repeat("b", 128)),
        (repeat("é", 64), repeat("ü", (MAX_TOGETHER - 128) / 2)),
    ] {
        assert!(id.len() + name.len() <= MAX_TOGETHER);
        let t = store_with(&id);
        let d = t.path();
        ok(d, &["checkpoint", "create", &id, &name]);
        ok(d, &["checkpoint", "create", &id, &name, "--force"]);
        assert!(ok(d, &["checkpoint", "list", &id]).contains(&name));
        ok(d, &["save", &id, r#"{"n": 3}"#]);
        ok(d, &["checkpoint", "restore", &id, &name]);
        let state: Value = serde_json::from_str(&ok(d, &["load", &id])).unwrap();
        assert_eq!(state["n"], 2);
        ok(d, &["checkpoint", "delete", &id, &name]);
        assert!(!ok(d, &["checkpoint", "list", &id]).contains(&name));
    }
}

#[test]
fn the_longest_id_works_everywhere_mstate_builds_a_name_from_it() {
    let id = repeat("a", 128);
    let t = store_with(&id);
    let d = t.path();
    let pid = std::process::id().to_string();
    // Default and pre-restore checkpoint names.
    ok(d, &["checkpoint", "create", &id]);
    let name = repeat("c", MAX_TOGETHER - 128);
    ok(d, &["checkpoint", "create", &id, &name]);
    ok(d, &["checkpoint", "restore", &id, &name]);
    assert!(ok(d, &["checkpoint", "list", &id]).contains("pre-restore-"));
    // Backups, recovery, a corrupt state file moved aside.
    let backup = ok(d, &["backups", &id])
        .lines()
        .nth(1) // below the header
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    ok(d, &["recover", &id, "--from", &backup]);
    std::fs::write(d.join(format!(".milestones/state/active/{id}.json")), b"{").unwrap();
    ok(d, &["load", &id]);
    // Events, sessions, locks, cleanup, doctor.
    ok(
        d,
        &["log", &id, "note", "{}", "--session", &repeat("s", 128)],
    );
    ok(d, &["session", "start", &id, "--owner-pid", &pid]);
    ok(d, &["session", "end"]);
    ok(d, &["lock", "acquire", &id, "--owner-pid", &pid]);
    ok(d, &["lock", "release", &id, "--force"]);
    ok(d, &["cleanup", &id, "--retention-days", "0"]);
    ok(d, &["doctor", "--repair"]);
    ok(d, &["doctor"]);
}
