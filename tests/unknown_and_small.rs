//! Commands never create a milestone by a typo, and smaller fixes of
//! single commands: `recover` on a valid state, `state_cleaned`'s
//! retention, the text tables, hints that work, a missing store, and
//! watching the log across a cleanup.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{cmd, code, ok, run, run_env, seed};
use serde_json::Value;

/// Every path below `root` with its kind and, for files, its bytes: two
/// snapshots are equal when nothing was created, removed or written.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let e = e.expect("dir entry");
            let p = e.path();
            let rel = p.strip_prefix(root).expect("below root").to_path_buf();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                out.insert(rel, None);
                walk(root, &p, out);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A store with milestone `build-api` at revision 2 (one backup), a
/// checkpoint `c1` and a few events.
fn store_with_build_api() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    ok(d.path(), &["init", "build-api"]);
    ok(d.path(), &["save", "build-api", r#"{"a": 1}"#]);
    ok(d.path(), &["save", "build-api", r#"{"a": 2}"#]);
    ok(d.path(), &["checkpoint", "create", "build-api", "c1"]);
    ok(d.path(), &["log", "build-api", "progress", r#"{"p": 1}"#]);
    d
}

/// The commands that name a milestone and must not create one.
fn commands_on(id: &str) -> Vec<Vec<String>> {
    let lines: &[&[&str]] = &[
        &["log", id, "progress", "{}"],
        &["load", id],
        &["load", id, "--log-access"],
        &["update", id, "--set", "/a=1"],
        &["complete", id],
        &["reopen", id],
        &["backups", id],
        &["recover", id],
        &["checkpoint", "create", id, "x"],
        &["checkpoint", "create", id],
        &["checkpoint", "list", id],
        &["checkpoint", "restore", id, "c1"],
        &["checkpoint", "delete", id, "c1"],
        &["events", id],
        &["events", id, "--type", "progress"],
        &["timeline", id],
        &["cleanup", id],
        &["cleanup", id, "--dry-run"],
        &["session", "start", id],
        &["session", "list", "--milestone", id],
    ];
    lines
        .iter()
        .map(|l| l.iter().map(|s| s.to_string()).collect())
        .collect()
}

/// Run `mstate ARGS` with a deadline: a command that would follow or
/// wait forever fails the test instead of hanging it.
fn run_with_deadline(dir: &Path, args: &[&str], deadline: Duration) -> std::process::Output {
    let mut child = cmd(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mstate");
    let end = Instant::now() + deadline;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "mstate {args:?} still running after {deadline:?}; stderr: {}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn no_command_but_init_and_save_creates_a_milestone() {
    let d = store_with_build_api();
    let before = snapshot(d.path());
    for id in ["build-apx", "nope"] {
        let mut all = commands_on(id);
        all.push(
            ["events", id, "--follow"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        for args in all {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = run_with_deadline(d.path(), &args, Duration::from_secs(60));
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(3), "mstate {args:?}: {err}");
            assert!(
                err.contains(&format!("milestone '{id}' not found")),
                "mstate {args:?}: {err}"
            );
            assert!(
                err.contains(&format!("`mstate init {id}`")),
                "mstate {args:?} says how to create it: {err}"
            );
            if id == "build-apx" {
                assert!(
                    err.contains("did you mean 'build-api'?"),
                    "mstate {args:?} names the near id: {err}"
                );
            } else {
                assert!(
                    !err.contains("did you mean"),
                    "nothing is close to 'nope': {err}"
                );
            }
            assert_eq!(
                snapshot(d.path()),
                before,
                "mstate {args:?} changed the store"
            );
        }
    }
    let list = ok(d.path(), &["list"]);
    assert!(
        !list.contains("nope") && !list.contains("build-apx"),
        "{list}"
    );
    // `--json` carries the same words.
    let out = run(d.path(), &["--json", "log", "build-apx", "x"]);
    let e: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(e["error"]["code"], 3);
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("did you mean 'build-api'?"));
}

#[test]
fn only_init_and_save_create_one() {
    let d = store_with_build_api();
    ok(d.path(), &["save", "fresh", "{}"]);
    ok(d.path(), &["init", "other"]);
    ok(d.path(), &["log", "fresh", "progress", "{}"]);
    ok(d.path(), &["log", "other", "progress", "{}"]);
    let list = ok(d.path(), &["list"]);
    assert!(list.contains("fresh") && list.contains("other"), "{list}");
}

#[test]
fn milestones_the_seed_created_are_known() {
    let d = tempfile::tempdir().unwrap();
    let out = seed(
        d.path(),
        "init_milestone_state s1 >/dev/null && save_milestone_state s2 '{\"a\": 1}' >/dev/null",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // s1 has only the seed's log, s2 a state file (and the log its save wrote).
    ok(d.path(), &["log", "s1", "progress", "{}"]);
    ok(d.path(), &["events", "s1"]);
    ok(d.path(), &["checkpoint", "list", "s1"]);
    assert_eq!(
        code(d.path(), &["load", "s1"]),
        3,
        "s1 has no state: not found, as a known milestone"
    );
    let err = stderr(&run(d.path(), &["load", "s1"]));
    assert!(err.contains("mstate save s1"), "{err}");
    std::fs::remove_file(d.path().join(".milestones/state/events/milestone-s2.jsonl")).unwrap();
    ok(d.path(), &["log", "s2", "progress", "{}"]);
    ok(d.path(), &["update", "s2", "--set", "/a=2"]);
}

#[test]
fn the_hidden_create_flag_keeps_the_seeds_functions_creating() {
    let d = store_with_build_api();
    ok(d.path(), &["log", "nope", "progress", "{}", "--create"]);
    ok(d.path(), &["events", "nope"]);
    ok(
        d.path(),
        &["session", "start", "nope2", "--create", "--no-current"],
    );
    ok(d.path(), &["events", "nope2"]);
    ok(d.path(), &["cleanup", "nope3", "--create"]);
    let ev = ok(d.path(), &["events", "nope3"]);
    assert!(ev.contains("state_cleaned"), "{ev}");
    // Hidden: not in the help.
    for c in ["log", "cleanup"] {
        let help = ok(d.path(), &[c, "--help"]);
        assert!(!help.contains("--create"), "{help}");
    }
}

#[test]
fn locks_take_any_milestone_as_the_seeds_save_does() {
    // The seed's save_milestone_state takes the lock before the first save
    // of a milestone: a lock needs no milestone, and makes none.
    let d = store_with_build_api();
    let pid = std::process::id().to_string();
    ok(d.path(), &["lock", "acquire", "fresh", "--owner-pid", &pid]);
    assert!(!ok(d.path(), &["list"]).contains("fresh"));
    ok(d.path(), &["lock", "status", "fresh"]);
    ok(d.path(), &["lock", "release", "fresh", "--force"]);
    let d2 = tempfile::tempdir().unwrap();
    let out = seed(
        d2.path(),
        &format!(
            "eval \"$({} shell-init bash)\"\ninit_milestone_state other >/dev/null\nacquire_state_lock fresh >/dev/null && save_milestone_state fresh '{{\"a\": 1}}' && release_state_lock fresh",
            common::bin()
        ),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ok(d2.path(), &["load", "fresh"]).trim(), "{\n  \"a\": 1\n}");
}

fn state_of(d: &Path, id: &str) -> Value {
    serde_json::from_str(&ok(d, &["load", id, "--envelope"])).unwrap()
}

#[test]
fn recover_leaves_a_valid_state_alone() {
    let d = store_with_build_api();
    let before = snapshot(d.path());
    let out = run(d.path(), &["recover", "build-api"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("valid"), "{}", stdout(&out));
    assert!(stderr(&out).contains("--from"), "{}", stderr(&out));
    assert_eq!(snapshot(d.path()), before, "recover changed a valid state");
    let env = state_of(d.path(), "build-api");
    assert_eq!(env["revision"], 2);
    assert_eq!(env["state"]["a"], 2);
    let j: Value =
        serde_json::from_str(&ok(d.path(), &["--json", "recover", "build-api"])).unwrap();
    assert_eq!(j["backup"], Value::Null);
    assert_eq!(j["revision"], 2);
    // Asked for by name, it rolls back.
    let backups: Value =
        serde_json::from_str(&ok(d.path(), &["--json", "backups", "build-api"])).unwrap();
    let name = backups[0]["name"].as_str().unwrap().to_string();
    ok(d.path(), &["recover", "build-api", "--from", &name]);
    let env = state_of(d.path(), "build-api");
    assert_eq!(env["state"]["a"], 1);
    assert_eq!(env["revision"], 3);
    // A corrupt state is still recovered.
    std::fs::write(
        d.path().join(".milestones/state/active/build-api.json"),
        "garbage",
    )
    .unwrap();
    let out = run(d.path(), &["recover", "build-api"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("recovered successfully"));
    assert!(
        state_of(d.path(), "build-api")["revision"]
            .as_u64()
            .unwrap()
            > 3
    );
}

fn last_cleaned(d: &Path, id: &str) -> Value {
    let ev = ok(d, &["events", id, "--type", "state_cleaned", "--tail", "1"]);
    serde_json::from_str(ev.trim()).unwrap()
}

#[test]
fn state_cleaned_logs_the_retention_as_given() {
    let d = store_with_build_api();
    for (arg, want) in [
        (None, serde_json::json!(7)),
        (Some("0.5"), serde_json::json!(0.5)),
        (Some("1.25"), serde_json::json!(1.25)),
        (Some("30"), serde_json::json!(30)),
    ] {
        let mut args = vec!["cleanup", "build-api"];
        if let Some(a) = arg {
            args.extend(["--retention-days", a]);
        }
        ok(d.path(), &args);
        let e = last_cleaned(d.path(), "build-api");
        assert_eq!(e["data"]["retention_days"], want, "{arg:?}: {e}");
    }
}

/// Check that the columns of a text table line up: every cell of a row
/// starts where its header starts (left-aligned columns) or ends where
/// its header ends (right-aligned ones).
fn assert_aligned(text: &str, header: &[&str], right: &[&str]) {
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2, "a header and rows: {text}");
    let head = lines[0];
    for h in header {
        assert!(head.contains(h), "header {h} in {head:?}");
    }
    let spans = |line: &str| -> Vec<(usize, usize)> {
        // Cells are separated by two or more spaces.
        let mut out = Vec::new();
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b' ' {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !(b[i] == b' ' && b.get(i + 1) == Some(&b' ')) {
                i += 1;
            }
            let mut end = i;
            while end > start && b[end - 1] == b' ' {
                end -= 1;
            }
            out.push((start, end));
        }
        out
    };
    let head_spans = spans(head);
    assert_eq!(head_spans.len(), header.len(), "{head:?}");
    for line in &lines[1..] {
        let cells = spans(line);
        // A NOTE column is empty in the rows that have nothing to note.
        let least = header.len() - usize::from(header.last() == Some(&"NOTE"));
        assert!(
            (least..=header.len()).contains(&cells.len()),
            "cells of {line:?} in\n{text}"
        );
        for (k, (cell, h)) in cells.iter().zip(&head_spans).enumerate() {
            if right.contains(&header[k]) {
                assert_eq!(cell.1, h.1, "column {} of {line:?} in\n{text}", header[k]);
            } else {
                assert_eq!(cell.0, h.0, "column {} of {line:?} in\n{text}", header[k]);
            }
        }
    }
}

#[test]
fn backups_and_checkpoints_are_tables_with_a_header() {
    let d = store_with_build_api();
    let backups = d.path().join(".milestones/state/backups");
    // A seed-named backup (shorter name, no revision inside) and an invalid one.
    std::fs::write(
        backups.join("build-api-20260101-120000.json"),
        r#"{"timestamp": "2026-01-01T12:00:00Z", "milestone_id": "build-api", "version": "1.0", "state": {}}"#,
    )
    .unwrap();
    std::fs::write(backups.join("build-api-20260101-120001.json"), "garbage").unwrap();
    std::fs::write(backups.join("build-api-checkpoint-broken.json"), "garbage").unwrap();
    ok(
        d.path(),
        &[
            "save",
            "build-api",
            r#"{"a": 3, "more": "text to make it longer"}"#,
        ],
    );
    ok(
        d.path(),
        &["checkpoint", "create", "build-api", "a-much-longer-name"],
    );
    let cols = ["REVISION", "SIZE", "MODIFIED", "VALID"];
    let text = ok(d.path(), &["backups", "build-api"]);
    let mut header = vec!["BACKUP"];
    header.extend(cols);
    assert_aligned(&text, &header, &["REVISION", "SIZE"]);
    assert!(text.contains("INVALID"), "{text}");
    assert_eq!(text.lines().count(), 5, "{text}");
    let text = ok(d.path(), &["checkpoint", "list", "build-api"]);
    let mut header = vec!["CHECKPOINT"];
    header.extend(cols);
    assert_aligned(&text, &header, &["REVISION", "SIZE"]);
    assert_eq!(text.lines().count(), 4, "{text}");
    // JSON is the list itself, no header.
    let j: Value =
        serde_json::from_str(&ok(d.path(), &["--json", "backups", "build-api"])).unwrap();
    assert_eq!(j.as_array().unwrap().len(), 4);
    assert!(j[0].get("name").is_some() && j[0].get("valid").is_some());
}

#[test]
fn list_shows_a_corrupt_state_in_status_and_its_error_in_a_note() {
    let d = store_with_build_api();
    ok(d.path(), &["save", "a-much-longer-milestone", "{}"]);
    std::fs::write(
        d.path().join(".milestones/state/active/build-api.json"),
        "garbage",
    )
    .unwrap();
    let text = ok(d.path(), &["list"]);
    assert_aligned(
        &text,
        &["MILESTONE", "STATUS", "REVISION", "UPDATED", "LOCK", "NOTE"],
        &["REVISION"],
    );
    let row = text.lines().find(|l| l.starts_with("build-api")).unwrap();
    let cells: Vec<&str> = row
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells[1], "corrupt", "{row}");
    assert_eq!(cells[4], "-", "the LOCK column holds the lock only: {row}");
    assert!(cells[5].contains("corrupt state file"), "{row}");
    // Without a corrupt state there is no NOTE column.
    std::fs::remove_file(d.path().join(".milestones/state/active/build-api.json")).unwrap();
    let text = ok(d.path(), &["list"]);
    assert!(!text.contains("NOTE"), "{text}");
}

#[test]
fn hints_on_a_corrupt_state_suggest_only_what_works() {
    let d = tempfile::tempdir().unwrap();
    ok(d.path(), &["save", "b", r#"{"a": 1}"#]);
    let state = d.path().join(".milestones/state/active/b.json");
    std::fs::write(&state, "garbage").unwrap();
    // No backup, no checkpoint: recover would fail, so it is not suggested.
    let out = run(d.path(), &["update", "b", "--set", "/a=2"]);
    assert_eq!(out.status.code(), Some(7));
    let err = stderr(&out);
    assert!(!err.contains("mstate recover"), "{err}");
    assert!(err.contains("no valid backup"), "{err}");
    assert!(err.contains("`mstate save b"), "{err}");
    let out = run(d.path(), &["recover", "b"]);
    assert_eq!(out.status.code(), Some(7));
    let err = stderr(&out);
    assert!(err.contains("milestone 'b'"), "{err}");
    assert!(
        !err.contains("b-*") && !err.contains("mstate recover"),
        "{err}"
    );
    // What the hint says works, and keeps the corrupt file.
    ok(d.path(), &["save", "b", r#"{"a": 5}"#]);
    assert_eq!(state_of(d.path(), "b")["state"]["a"], 5);
    let kept = std::fs::read_dir(d.path().join(".milestones/state/active"))
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("b.json.corrupted.")
        });
    assert!(kept);

    // With a valid checkpoint (and still no backup): restore it.
    let d = tempfile::tempdir().unwrap();
    ok(d.path(), &["save", "c", r#"{"a": 1}"#]);
    ok(d.path(), &["checkpoint", "create", "c", "good"]);
    let state = d.path().join(".milestones/state/active/c.json");
    std::fs::write(&state, "garbage").unwrap();
    let err = stderr(&run(d.path(), &["update", "c", "--set", "/a=2"]));
    assert!(err.contains("`mstate checkpoint restore c good`"), "{err}");
    assert!(!err.contains("mstate recover"), "{err}");
    ok(d.path(), &["checkpoint", "restore", "c", "good"]);
    assert_eq!(state_of(d.path(), "c")["state"]["a"], 1);

    // With a valid backup: recover, which then works.
    ok(d.path(), &["save", "c", r#"{"a": 2}"#]);
    std::fs::write(&state, "garbage").unwrap();
    let err = stderr(&run(d.path(), &["update", "c", "--set", "/a=3"]));
    assert!(err.contains("`mstate recover c`"), "{err}");
    ok(d.path(), &["recover", "c"]);

    // No state file and only invalid backups: the error names the milestone.
    let d = tempfile::tempdir().unwrap();
    ok(d.path(), &["save", "e", r#"{"a": 1}"#]);
    ok(d.path(), &["save", "e", r#"{"a": 2}"#]);
    let backups = d.path().join(".milestones/state/backups");
    for f in std::fs::read_dir(&backups).unwrap() {
        std::fs::write(f.unwrap().path(), "garbage").unwrap();
    }
    std::fs::remove_file(d.path().join(".milestones/state/active/e.json")).unwrap();
    let out = run(d.path(), &["recover", "e"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(
        err.contains("milestone 'e'") && !err.contains("e-*"),
        "{err}"
    );
}

#[test]
fn without_a_store_read_only_commands_say_where_they_looked_and_create_nothing() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join(".milestones/state");
    let where_ = root.display().to_string();
    let out = run(d.path(), &["list"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains(&format!("no store at {where_}")),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("mstate init"), "{}", stderr(&out));
    let out = run(d.path(), &["doctor"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("store '{where_}' not found")),
        "{err}"
    );
    assert!(!err.contains("missing"), "{err}");
    let out = run(d.path(), &["load", "x"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains(&format!("no store at {where_}")),
        "{}",
        stderr(&out)
    );
    let read_only: &[&[&str]] = &[
        &["list"],
        &["--json", "list"],
        &["load", "x"],
        &["events", "x"],
        &["events", "x", "--follow"],
        &["timeline", "x"],
        &["backups", "x"],
        &["recover", "x"],
        &["checkpoint", "list", "x"],
        &["session", "list"],
        &["session", "list", "--milestone", "x"],
        &["session", "current"],
        &["lock", "status", "x"],
        &["doctor"],
        &["doctor", "--repair"],
        &["cleanup", "--all"],
        &["cleanup", "x"],
        &["log", "x", "progress"],
        &["update", "x", "--set", "/a=1"],
    ];
    for args in read_only {
        run_with_deadline(d.path(), args, Duration::from_secs(60));
        assert!(
            !d.path().join(".milestones").exists(),
            "mstate {args:?} created a store"
        );
    }
    // The first write says where it created the store.
    let out = run(d.path(), &["init", "x"]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains(&format!("created a new store at {where_}")),
        "{}",
        stderr(&out)
    );
    let out = run(d.path(), &["init", "y"]);
    assert!(
        !stderr(&out).contains("created a new store"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn mstate_dir_at_a_folder_that_is_not_a_store_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let folder = d.path().join("project");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("notes.txt"), "mine").unwrap();
    let before = snapshot(&folder);
    let dir = folder.to_str().unwrap();
    for args in [
        &["init", "x"][..],
        &["save", "x", "{}"],
        &["lock", "acquire", "x", "--timeout", "1"],
    ] {
        let out = run_env(d.path(), args, &[("MSTATE_DIR", dir)]);
        assert_eq!(
            out.status.code(),
            Some(6),
            "mstate {args:?}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("is not a store"), "{}", stderr(&out));
        assert_eq!(snapshot(&folder), before, "mstate {args:?} wrote into it");
    }
    // An empty folder becomes a store, and the first write says so.
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = run_env(
        d.path(),
        &["init", "x"],
        &[("MSTATE_DIR", empty.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("created a new store at"),
        "{}",
        stderr(&out)
    );
    assert!(empty.join("active").is_dir());
}

/// Lines of a child's stdout, read on a thread.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Wait until a line containing `needle` arrives, for at most `limit`.
fn wait_for(rx: &mpsc::Receiver<String>, needle: &str, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A milestone whose events are all older than a cleanup with retention
/// 0 cuts off, so the cleanup seals the live log and replaces it.
fn log_to_be_replaced() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    ok(d.path(), &["init", "w"]);
    ok(d.path(), &["log", "w", "before", r#"{"n": 0}"#]);
    let live = d.path().join(".milestones/state/events/milestone-w.jsonl");
    (d, live)
}

fn cleanup_replaces(d: &Path, live: &Path) {
    let inode = std::fs::metadata(live).unwrap().ino();
    ok(d, &["cleanup", "w", "--retention-days", "0"]);
    assert_ne!(
        std::fs::metadata(live).unwrap().ino(),
        inode,
        "the cleanup replaced the live log (what this test is about)"
    );
}

#[test]
fn events_follow_keeps_delivering_after_a_cleanup() {
    let (d, live) = log_to_be_replaced();
    let child = cmd(d.path())
        .args(["events", "w", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let rx = lines_of(&mut child.0);
    let limit = Duration::from_secs(30);
    assert!(wait_for(&rx, "\"before\"", limit), "the existing event");
    cleanup_replaces(d.path(), &live);
    assert!(wait_for(&rx, "state_cleaned", limit), "the cleanup's event");
    ok(d.path(), &["log", "w", "after", r#"{"n": 1}"#]);
    assert!(
        wait_for(&rx, "\"after\"", limit),
        "an event after the cleanup"
    );
}

#[test]
fn tail_capital_f_keeps_delivering_after_a_cleanup() {
    if !common::have_tool("tail") {
        return;
    }
    let (d, live) = log_to_be_replaced();
    let child = Command::new("tail")
        .args(["-F", "-n", "+1", "-s", "0.1"])
        .arg(&live)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let rx = lines_of(&mut child.0);
    let limit = Duration::from_secs(30);
    assert!(wait_for(&rx, "\"before\"", limit), "the existing event");
    cleanup_replaces(d.path(), &live);
    ok(d.path(), &["log", "w", "after", r#"{"n": 1}"#]);
    assert!(
        wait_for(&rx, "\"after\"", limit),
        "an event after the cleanup"
    );
}

#[test]
fn cleanup_help_says_the_log_is_replaced() {
    let d = tempfile::tempdir().unwrap();
    let help = ok(d.path(), &["cleanup", "--help"]);
    assert!(help.contains("tail -F"), "{help}");
    assert!(help.contains("--follow"), "{help}");
}
