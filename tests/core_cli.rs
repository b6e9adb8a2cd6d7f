//! The core commands through the real binary, on fresh stores and on
//! fixtures written by hand in the seed's exact formats
//! (`tests/fixtures/seed/`): state, backups, checkpoints, locks, discovery,
//! and every exit code.

mod common;

use common::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

fn stderr(dir: &Path, args: &[&str]) -> String {
    String::from_utf8(run(dir, args).stderr).unwrap()
}

fn root(dir: &Path) -> PathBuf {
    dir.join(".milestones/state")
}

fn event_types(dir: &Path, m: &str) -> Vec<String> {
    ok(dir, &["events", m])
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v.get("event_type")
                .or_else(|| v.get("event"))
                .and_then(Value::as_str)
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Copy the seed-format fixture store into `dir`, giving each backup the
/// modification time its name says (as the seed's `cp` would have).
fn seed_fixture(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed");
    let dst = root(dir);
    for sub in [
        "active",
        "completed",
        "backups",
        "events",
        "sessions",
        ".locks",
    ] {
        std::fs::create_dir_all(dst.join(sub)).unwrap();
    }
    for sub in ["active", "backups", "events", "sessions"] {
        for e in std::fs::read_dir(src.join(sub)).unwrap() {
            let e = e.unwrap();
            let to = dst.join(sub).join(e.file_name());
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
    std::fs::copy(src.join("current_session"), dst.join(".current_session")).unwrap();
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    for (i, name) in [
        "build-20261120-100000.json",
        "build-20261120-100200.json",
        "build-checkpoint-before-tests.json",
        "build-2-20261120-100300.json",
    ]
    .iter()
    .enumerate()
    {
        let f = std::fs::File::options()
            .write(true)
            .open(dst.join("backups").join(name))
            .unwrap();
        f.set_modified(base + Duration::from_secs(60 * i as u64))
            .unwrap();
    }
}

/// A process that stays alive until killed.
fn sleeper() -> Child {
    Command::new("sleep")
        .arg("600")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn init_creates_the_layout_once() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert_eq!(
        ok(d, &["init", "m"]).trim(),
        "State management initialized for milestone: m"
    );
    for sub in [
        "active",
        "completed",
        "sessions",
        "backups",
        "events",
        ".locks",
    ] {
        assert!(root(d).join(sub).is_dir(), "{sub}");
    }
    ok(d, &["init", "m"]);
    assert_eq!(event_types(d, "m"), ["state_initialized"]);
    let j: Value = serde_json::from_str(&ok(d, &["--json", "init", "m"])).unwrap();
    assert_eq!(j["created"], false);
}

#[test]
fn save_load_update_and_revisions() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert_eq!(
        ok(d, &["save", "m", r#"{"a": 1, "z": [1, 2]}"#]).trim(),
        "1"
    );
    let mut c = cmd(d);
    c.args(["save", "m", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), br#"{"a": 2}"#).unwrap();
    assert_eq!(
        String::from_utf8(child.wait_with_output().unwrap().stdout)
            .unwrap()
            .trim(),
        "2"
    );
    let mut c = cmd(d);
    c.args(["save", "m"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        br#"{"a": 3, "nested": {"k": "v"}}"#,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(child.wait_with_output().unwrap().stdout)
            .unwrap()
            .trim(),
        "3"
    );
    // Pretty JSON with the seed's indent of 2.
    assert_eq!(
        ok(d, &["load", "m"]),
        "{\n  \"a\": 3,\n  \"nested\": {\n    \"k\": \"v\"\n  }\n}\n"
    );
    let env: Value = serde_json::from_str(&ok(d, &["load", "m", "--envelope"])).unwrap();
    let keys: Vec<&str> = env
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["timestamp", "milestone_id", "version", "revision", "state"]
    );
    assert_eq!(env["revision"], 3);
    assert_eq!(env["version"], "1.0");
    assert_eq!(
        env["timestamp"].as_str().unwrap().len(),
        "2026-11-24T12:00:00.000000Z".len()
    );
    // The file on disk is the envelope.
    let disk: Value =
        serde_json::from_slice(&std::fs::read(root(d).join("active/m.json")).unwrap()).unwrap();
    assert_eq!(disk, env);
    // Optimistic concurrency.
    assert_eq!(code(d, &["save", "m", "{}", "--expect-revision", "2"]), 4);
    assert!(stderr(d, &["save", "m", "{}", "--expect-revision", "2"])
        .contains("expected revision 2, found 3"));
    assert_eq!(
        ok(
            d,
            &[
                "save",
                "m",
                r#"{"a": 4, "b": {"c": 1, "d": 2}}"#,
                "--expect-revision",
                "3"
            ]
        )
        .trim(),
        "4"
    );
    // update: merge patch and pointers, one revision.
    assert_eq!(
        ok(
            d,
            &[
                "update",
                "m",
                "--merge",
                r#"{"b": {"c": null, "e": 5}}"#,
                "--set",
                "/list/-=1",
                "--set",
                "/a=\"x\""
            ]
        )
        .trim(),
        "5"
    );
    let state: Value = serde_json::from_str(&ok(d, &["load", "m"])).unwrap();
    assert_eq!(state, json!({"a": "x", "b": {"d": 2, "e": 5}, "list": [1]}));
    assert_eq!(code(d, &["update", "nope", "--merge", "{}"]), 3);
    assert_eq!(code(d, &["update", "m", "--set", "nopointer"]), 6);
    assert_eq!(code(d, &["load", "nope"]), 3);
    assert!(stderr(d, &["load", "nope"]).contains("milestone 'nope' not found"));
    let saved: Vec<Value> = ok(d, &["events", "m", "--type", "state_saved"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(saved.len(), 4);
    assert_eq!(
        saved[0]["data"]["state_file"],
        ".milestones/state/active/m.json"
    );
}

#[test]
fn list_complete_and_reopen() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "a", "{}"]);
    ok(d, &["save", "b", "{}"]);
    ok(d, &["save", "b", "{}"]);
    ok(d, &["complete", "a"]);
    assert!(root(d).join("completed/a.json").exists());
    assert!(!root(d).join("active/a.json").exists());
    assert_eq!(code(d, &["complete", "a"]), 6);
    let list: Value = serde_json::from_str(&ok(d, &["--json", "list"])).unwrap();
    assert_eq!(list[0]["milestone_id"], "a");
    assert_eq!(list[0]["status"], "completed");
    assert_eq!(list[1]["revision"], 2);
    let text = ok(d, &["list"]);
    assert!(text.starts_with("MILESTONE"));
    assert!(text.contains("completed"));
    ok(d, &["reopen", "a"]);
    assert!(root(d).join("active/a.json").exists());
    assert_eq!(
        event_types(d, "a"),
        ["state_saved", "milestone_completed", "milestone_reopened"]
    );
    assert_eq!(code(d, &["reopen", "zzz"]), 3);
}

#[test]
fn quick_saves_keep_distinct_bounded_backups() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", r#"{"i": 0}"#]);
    ok(d, &["checkpoint", "create", "m", "keep"]);
    for i in 1..50 {
        ok(d, &["save", "m", &json!({"i": i}).to_string()]);
    }
    // 49 saves replaced a state: 49 distinct backups, none overwritten.
    let backups: Vec<Value> = serde_json::from_str(&ok(d, &["--json", "backups", "m"])).unwrap();
    assert_eq!(backups.len(), 49);
    let mut revs: Vec<u64> = backups
        .iter()
        .map(|b| b["revision"].as_u64().unwrap())
        .collect();
    revs.sort();
    assert_eq!(revs, (1..50).collect::<Vec<_>>());
    // A smaller bound prunes the oldest; checkpoints are never pruned.
    let out = cmd(d)
        .args(["save", "m", r#"{"i": 50}"#])
        .env("MSTATE_MAX_BACKUPS", "10")
        .output()
        .unwrap();
    assert!(out.status.success());
    let backups: Vec<Value> = serde_json::from_str(&ok(d, &["--json", "backups", "m"])).unwrap();
    assert_eq!(backups.len(), 10);
    assert_eq!(backups[0]["revision"], 50);
    assert_eq!(backups[9]["revision"], 41);
    ok(d, &["save", "m", "{}", "--max-backups", "3"]);
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&ok(d, &["--json", "backups", "m"]))
            .unwrap()
            .len(),
        3
    );
    assert!(ok(d, &["checkpoint", "list", "m"]).contains("keep"));
}

#[test]
fn the_seeds_files_load_and_recover_correctly() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    seed_fixture(d);
    // The seed's state file has no revision: revision 0.
    let env: Value = serde_json::from_str(&ok(d, &["load", "build", "--envelope"])).unwrap();
    assert_eq!(env["revision"], 0);
    assert_eq!(env["state"]["phase"], "test");
    // Backups of exactly this milestone, never a checkpoint, never build-2's.
    let names: Vec<String> =
        serde_json::from_str::<Vec<Value>>(&ok(d, &["--json", "backups", "build"]))
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(
        names,
        ["build-20261120-100200.json", "build-20261120-100000.json"]
    );
    // Corrupt the state: load recovers the newest valid backup (not the newer
    // checkpoint, not build-2's newer backup).
    std::fs::write(root(d).join("active/build.json"), b"{\"phase\": \"te").unwrap();
    let out = run(d, &["load", "build"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning"));
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["phase"], "build");
    assert_eq!(state["tasks"]["done"], 2);
    let corrupted: Vec<_> = std::fs::read_dir(root(d).join("active"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("build.json.corrupted.")
        })
        .collect();
    assert_eq!(corrupted.len(), 1);
    assert!(event_types(d, "build").contains(&"state_recovered".to_string()));
    // Revisions never go back: the recovered state is revision 1.
    let env: Value = serde_json::from_str(&ok(d, &["load", "build", "--envelope"])).unwrap();
    assert_eq!(env["revision"], 1);
    // --from a named backup; a checkpoint or another milestone's file is refused.
    assert!(ok(
        d,
        &["recover", "build", "--from", "build-20261120-100000.json"]
    )
    .contains("build-20261120-100000.json"));
    assert_eq!(
        serde_json::from_str::<Value>(&ok(d, &["load", "build"])).unwrap()["phase"],
        "plan"
    );
    assert_eq!(
        code(
            d,
            &[
                "recover",
                "build",
                "--from",
                "build-checkpoint-before-tests.json"
            ]
        ),
        6
    );
    assert_eq!(
        code(
            d,
            &["recover", "build", "--from", "build-2-20261120-100300.json"]
        ),
        3
    );
    assert_eq!(
        code(
            d,
            &["recover", "build", "--from", "build-20991231-000000.json"]
        ),
        3
    );
    // The seed's checkpoint restores.
    ok(d, &["checkpoint", "restore", "build", "before-tests"]);
    assert_eq!(
        serde_json::from_str::<Value>(&ok(d, &["load", "build"])).unwrap()["tasks"]["done"],
        3
    );
}

#[test]
fn corruption_without_a_valid_backup_is_exit_7() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", "{}"]);
    std::fs::write(root(d).join("active/m.json"), b"garbage").unwrap();
    assert_eq!(code(d, &["load", "m"]), 7);
    assert_eq!(code(d, &["recover", "m"]), 7);
    assert!(stderr(d, &["load", "m"]).contains("no backup"));
    // An invalid backup is skipped, not restored.
    std::fs::write(
        root(d).join("backups/m-20261120-100000.json"),
        b"{\"also\": broken",
    )
    .unwrap();
    assert_eq!(code(d, &["recover", "m"]), 7);
}

#[test]
fn checkpoints() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert_eq!(code(d, &["checkpoint", "create", "m", "c"]), 3);
    ok(d, &["save", "m", r#"{"v": 1}"#]);
    assert_eq!(
        ok(d, &["checkpoint", "create", "m", "c1"]).trim(),
        "Checkpoint created: c1"
    );
    let default = ok(d, &["checkpoint", "create", "m"]);
    assert!(
        default.starts_with("Checkpoint created: manual-"),
        "{default}"
    );
    assert_eq!(code(d, &["checkpoint", "create", "m", "c1"]), 6);
    ok(d, &["checkpoint", "create", "m", "c1", "--force"]);
    assert_eq!(code(d, &["checkpoint", "create", "m", "../x"]), 6);
    ok(d, &["save", "m", r#"{"v": 2}"#]);
    let out = ok(d, &["checkpoint", "restore", "m", "c1"]);
    assert!(out.contains("Checkpoint created: pre-restore-"), "{out}");
    assert!(out.contains("State restored from checkpoint: c1"));
    let env: Value = serde_json::from_str(&ok(d, &["load", "m", "--envelope"])).unwrap();
    assert_eq!(env["state"]["v"], 1);
    assert_eq!(env["revision"], 3);
    let list: Vec<Value> =
        serde_json::from_str(&ok(d, &["--json", "checkpoint", "list", "m"])).unwrap();
    assert_eq!(list.len(), 3);
    let pre = list
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("pre-restore-"))
        .unwrap();
    assert_eq!(pre["revision"], 2);
    ok(d, &["checkpoint", "delete", "m", "c1"]);
    assert_eq!(code(d, &["checkpoint", "delete", "m", "c1"]), 3);
    assert_eq!(code(d, &["checkpoint", "restore", "m", "c1"]), 3);
    let types = event_types(d, "m");
    for t in ["checkpoint_created", "state_restored", "checkpoint_deleted"] {
        assert!(types.contains(&t.to_string()), "{t}");
    }
}

#[test]
fn a_live_holder_blocks_and_a_dead_one_is_broken() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", "{}"]);
    let mut holder = sleeper();
    let pid = holder.id().to_string();
    ok(d, &["lock", "acquire", "m", "--owner-pid", &pid]);
    assert!(ok(d, &["lock", "status", "m"]).contains(&format!("locked by pid {pid}")));
    let out = run(d, &["save", "m", r#"{"x": 1}"#, "--lock-timeout", "0.3"]);
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("pid {pid}")) && err.contains("lock acquire"),
        "{err}"
    );
    assert!(err.contains("mstate lock release m --force"), "{err}");
    // Not ours to release without --force.
    assert_eq!(code(d, &["lock", "release", "m"]), 5);
    holder.kill().unwrap();
    holder.wait().unwrap();
    ok(d, &["save", "m", r#"{"x": 2}"#, "--lock-timeout", "5"]);
    assert!(event_types(d, "m").contains(&"lock_broken".to_string()));
    assert!(ok(d, &["lock", "status", "m"]).contains("unlocked"));
}

#[test]
fn the_seeds_lock_directories_are_respected() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", "{}"]);
    let lock = root(d).join(".locks/m.lock");
    // Held by a live process, as the seed writes it.
    let mut holder = sleeper();
    std::fs::create_dir(&lock).unwrap();
    std::fs::write(lock.join("pid"), format!("{}\n", holder.id())).unwrap();
    std::fs::write(
        lock.join("acquired"),
        format!(
            "{}\n",
            jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ")
        ),
    )
    .unwrap();
    assert_eq!(code(d, &["save", "m", "{}", "--lock-timeout", "0.3"]), 5);
    assert!(stderr(d, &["save", "m", "{}", "--lock-timeout", "0.2"]).contains("seed script"));
    holder.kill().unwrap();
    holder.wait().unwrap();
    // Its holder died: broken at once, even though it is recent.
    ok(d, &["save", "m", "{}", "--lock-timeout", "5"]);
    assert!(!lock.exists());
}

#[test]
fn ttl_and_forced_release() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", "{}"]);
    let mut holder = sleeper();
    let pid = holder.id().to_string();
    ok(
        d,
        &["lock", "acquire", "m", "--owner-pid", &pid, "--ttl", "1ms"],
    );
    // The holder lives, but its TTL has passed.
    ok(d, &["save", "m", r#"{"ttl": true}"#, "--lock-timeout", "5"]);
    ok(d, &["lock", "acquire", "m", "--owner-pid", &pid]);
    let j: Value = serde_json::from_str(&ok(d, &["--json", "lock", "status", "m"])).unwrap();
    assert_eq!(j["locked"], true);
    assert_eq!(j["lock"]["info"]["pid"].to_string(), pid);
    ok(d, &["lock", "release", "m", "--force"]);
    assert!(event_types(d, "m").contains(&"lock_force_released".to_string()));
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn lock_run_holds_the_lock_for_nested_commands_and_returns_their_status() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", r#"{"n": 1}"#]);
    let script = "\"$M\" save m '{\"n\": 2}' >/dev/null && \"$M\" lock status m";
    let out = cmd(d)
        .args(["lock", "run", "m", "--", "sh", "-c", script])
        .env("M", bin())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("by this shell"));
    assert_eq!(
        serde_json::from_str::<Value>(&ok(d, &["load", "m"])).unwrap()["n"],
        2
    );
    assert!(ok(d, &["lock", "status", "m"]).contains("unlocked"));
    assert_eq!(
        code(d, &["lock", "run", "m", "--", "sh", "-c", "exit 7"]),
        7
    );
    assert_eq!(
        code(d, &["lock", "run", "m", "--", "no-such-command-xyz"]),
        127
    );
}

#[test]
fn the_store_is_found_like_git_finds_a_repository() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", r#"{"here": true}"#]);
    let sub = d.join("a/b");
    std::fs::create_dir_all(&sub).unwrap();
    // Nearest ancestor holding .milestones/state.
    assert!(ok(&sub, &["load", "m"]).contains("here"));
    assert!(!sub.join(".milestones").exists());
    // -C DIR.
    let other = tempfile::tempdir().unwrap();
    assert!(ok(other.path(), &["-C", d.to_str().unwrap(), "load", "m"]).contains("here"));
    // MSTATE_DIR.
    let out = cmd(other.path())
        .args(["load", "m"])
        .env("MSTATE_DIR", root(d))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("here"));
    // -C DIR wins over MSTATE_DIR.
    let third = tempfile::tempdir().unwrap();
    ok(third.path(), &["save", "m", r#"{"third": true}"#]);
    let out = cmd(other.path())
        .args(["-C", third.path().to_str().unwrap(), "load", "m"])
        .env("MSTATE_DIR", root(d))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("third") && !text.contains("here"), "{text}");
    // Else ./.milestones/state, created on first write.
    ok(other.path(), &["save", "n", "{}"]);
    assert!(root(other.path()).join("active/n.json").exists());
    assert_eq!(code(other.path(), &["-C", "/nonexistent-dir", "list"]), 6);
}

#[test]
fn help_completions_and_usage_errors() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let help = ok(d, &["--help"]);
    for line in [
        "0  ok         success",
        "2  usage      usage error",
        "3  not_found  not found",
        "4  conflict   revision conflict",
        "5  locked     lock not acquired",
        "6  invalid    invalid input",
        "7  corrupt    corruption",
    ] {
        assert!(help.contains(line), "{line}");
    }
    assert!(ok(d, &["completions", "bash"]).contains("_mstate"));
    assert!(ok(d, &["completions", "zsh"]).contains("#compdef mstate"));
    assert_eq!(code(d, &["save", "m", "{}", "--no-such-flag"]), 2);
    assert_eq!(code(d, &["no-such-command"]), 2);
    let out = run(d, &["--json", "load", "nope"]);
    let err: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["error"]["code"], 3);
    assert_eq!(err["error"]["kind"], "not_found");
}
