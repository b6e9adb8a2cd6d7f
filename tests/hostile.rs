//! Hostile input: each gets a clear error and its documented exit code,
//! changes nothing in the store, never panics, and never writes outside the
//! store.

mod common;

use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

/// Every file below `dir` with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_symlink() {
                out.insert(
                    p.clone(),
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                );
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn store_with_state() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let out = run(t.path(), &["save", "m", r#"{"v": 1}"#]);
    assert!(out.status.success());
    let out = run(t.path(), &["save", "m", r#"{"v": 2}"#]);
    assert!(out.status.success());
    t
}

fn assert_refused(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("mstate: error: "),
        "{what}: unclear error {err:?}"
    );
    assert!(!err.contains("panicked"), "{what}: panic");
}

#[test]
fn hostile_json_is_refused_and_changes_nothing() {
    let t = store_with_state();
    let d = t.path();
    let before = tree(d);
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    let big = {
        let mut v = b"{\"blob\": \"".to_vec();
        v.resize(100 * 1024 * 1024, b'x');
        v.extend_from_slice(b"\"}");
        v
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("malformed", b"{\"v\": 3,}".to_vec()),
        ("truncated", b"{\"v\": ".to_vec()),
        ("empty", Vec::new()),
        ("two documents", b"{} {}".to_vec()),
        ("duplicate keys", b"{\"v\": 1, \"v\": 2}".to_vec()),
        (
            "nested duplicate keys",
            b"{\"a\": {\"x\": 1, \"x\": 2}}".to_vec(),
        ),
        ("not UTF-8", b"{\"v\": \"\xff\xfe\"}".to_vec()),
        ("100,000 levels deep", deep.into_bytes()),
        ("100 MB", big),
    ];
    for (what, input) in &cases {
        for args in [
            vec!["save", "m", "-"],
            vec!["log", "m", "x", "-"],
            vec!["update", "m", "--merge", "-"],
        ] {
            // update takes its patch as an argument; feed the bad JSON there
            // when it fits in an argument.
            let out = if args[0] == "update" {
                if input.len() > 100_000 || std::str::from_utf8(input).is_err() {
                    continue;
                }
                run(
                    d,
                    &[
                        "update",
                        "m",
                        "--merge",
                        std::str::from_utf8(input).unwrap(),
                    ],
                )
            } else {
                run_stdin(d, &args, input)
            };
            assert_refused(&out, 6, &format!("{what} via {}", args[0]));
        }
    }
    assert_eq!(tree(d), before, "a refused input changed the store");
}

#[test]
fn hostile_names_are_refused_and_nothing_is_written_anywhere() {
    let t = store_with_state();
    let d = t.path();
    let before = tree(d);
    let long = "a".repeat(10 * 1024);
    let names = [
        "../escape",
        "a/b",
        "a\\b",
        "a\nb",
        "-rf",
        ".hidden",
        "..",
        "a..b",
        long.as_str(),
        "a\u{2215}b",
        "a\u{ff0f}b",
        "a\u{2024}b",
        "a\u{200b}b",
        "x'; touch pwned; echo '",
    ];
    for n in names {
        for args in [
            vec!["save", "NAME", "{}"],
            vec!["load", "NAME"],
            vec!["init", "NAME"],
            vec!["lock", "acquire", "NAME"],
            vec!["session", "end", "NAME"],
            vec!["checkpoint", "create", "m", "NAME"],
            vec!["checkpoint", "restore", "m", "NAME"],
            vec!["log", "m", "NAME", "{}"],
        ] {
            let args: Vec<String> = args
                .iter()
                .map(|a| {
                    if *a == "NAME" {
                        n.to_string()
                    } else {
                        a.to_string()
                    }
                })
                .collect();
            // A leading '-' must reach the command as a value, not a flag.
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = if n.starts_with('-') {
                let mut a: Vec<&str> = args[..args.len() - 1].to_vec();
                let last = args[args.len() - 1];
                if last == n {
                    a.push("--");
                    a.push(last);
                    run(d, &a)
                } else {
                    continue;
                }
            } else {
                run(d, &args)
            };
            let code = out.status.code();
            assert!(
                code == Some(6) || code == Some(2),
                "{n:?} {args:?}: {code:?} {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert_eq!(tree(d), before);
    assert!(!d.join("pwned").exists());
    assert!(!d.parent().unwrap().join("escape.json").exists());
}

#[test]
fn planted_symlinks_are_never_followed_to_write_outside() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim.json");
    std::fs::write(&victim, b"precious").unwrap();
    let victim_dir = outside.path().join("dir");
    std::fs::create_dir(&victim_dir).unwrap();

    // The state file itself.
    let t = store_with_state();
    let d = t.path();
    let state = d.join(".milestones/state/active/m.json");
    std::fs::remove_file(&state).unwrap();
    std::os::unix::fs::symlink(&victim, &state).unwrap();
    let _ = run(d, &["save", "m", r#"{"v": 3}"#]);
    let _ = run(d, &["recover", "m"]);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");

    // The event log.
    let t = store_with_state();
    let d = t.path();
    let log = d.join(".milestones/state/events/milestone-m.jsonl");
    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink(&victim, &log).unwrap();
    let out = run(d, &["log", "m", "x", "{}"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");

    // The lock directory.
    let t = store_with_state();
    let d = t.path();
    let lock = d.join(".milestones/state/.locks/m.lock");
    std::os::unix::fs::symlink(&victim_dir, &lock).unwrap();
    let out = run(d, &["save", "m", r#"{"v": 3}"#, "--lock-timeout", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(&victim_dir).unwrap().count(),
        0,
        "wrote into the link's target"
    );

    // A layout directory (backups/) replaced by a link.
    let t = store_with_state();
    let d = t.path();
    let backups = d.join(".milestones/state/backups");
    std::fs::rename(&backups, d.join("old-backups")).unwrap();
    std::os::unix::fs::symlink(&victim_dir, &backups).unwrap();
    let out = run(d, &["save", "m", r#"{"v": 3}"#]);
    assert_refused(&out, 7, "backups/ is a link");
    assert!(String::from_utf8_lossy(&out.stderr).contains("link"));
    assert_eq!(std::fs::read_dir(&victim_dir).unwrap().count(), 0);

    // A backup name planted as a link: recovery never reads through it.
    let t = store_with_state();
    let d = t.path();
    std::os::unix::fs::symlink(
        &victim,
        d.join(".milestones/state/backups/m-20991231-235959.json"),
    )
    .unwrap();
    std::fs::write(d.join(".milestones/state/active/m.json"), b"garbage").unwrap();
    let out = run(d, &["load", "m"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["v"], 1);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    let doctor = run(d, &["doctor"]);
    assert!(String::from_utf8_lossy(&doctor.stdout).contains("not_regular"));
}

#[test]
fn files_edited_into_garbage_give_clear_errors() {
    let t = store_with_state();
    let d = t.path();
    let root = d.join(".milestones/state");
    // Session file garbage.
    let out = run(d, &["session", "start", "m"]);
    let sid = String::from_utf8(out.stdout).unwrap().trim().to_string();
    std::fs::write(root.join(format!("sessions/{sid}.json")), b"\x00garbage").unwrap();
    assert_refused(&run(d, &["session", "end", &sid]), 7, "garbage session");
    assert!(run(d, &["session", "list"]).status.success());
    // Lock files garbage: a lock with no readable owner is stale after a grace period.
    std::fs::create_dir_all(root.join(".locks/g.lock")).unwrap();
    std::fs::write(root.join(".locks/g.lock/pid"), b"not a pid").unwrap();
    std::fs::write(root.join(".locks/g.lock/info.json"), b"{").unwrap();
    let out = run(d, &["lock", "status", "g"]);
    assert!(out.status.success());
    // Event log emptied, truncated mid-line, garbage in the middle.
    std::fs::write(root.join("events/milestone-m.jsonl"), b"").unwrap();
    assert!(run(d, &["events", "m"]).status.success());
    std::fs::write(root.join("events/milestone-m.jsonl"), b"{\"timestamp\":\"2026-01-01T00:00:00Z\",\"event\":\"a\"}\ngarbage\n\xff\xfe\n{\"timestamp\":\"2026-01-01T00:00:01Z\",\"event\":\"b\"}\n{\"timest").unwrap();
    let out = run(d, &["events", "m"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt line"));
    // State truncated to nothing, with no backups: corruption, exit 7.
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert!(run(d, &["save", "m", "{}"]).status.success());
    std::fs::write(d.join(".milestones/state/active/m.json"), b"").unwrap();
    assert_refused(&run(d, &["load", "m"]), 7, "empty state without backup");
}
