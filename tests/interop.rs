//! The seed's own functions (verbatim, `tests/fixtures/seed_original.sh`)
//! and mstate on one directory at the same time: each reads what the other
//! writes, and their locks exclude each other both ways.

mod common;

use common::*;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::Value;

fn seed_ok(dir: &Path, script: &str) -> String {
    let out = seed(dir, script);
    assert!(
        out.status.success(),
        "seed {script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn state_and_backups_both_ways() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    seed_ok(
        d,
        r#"init_milestone_state m; save_milestone_state m '{"by": "seed", "n": 1}'"#,
    );
    let env = json(&ok(d, &["load", "m", "--envelope"]));
    assert_eq!(env["revision"], 0);
    assert_eq!(env["state"]["by"], "seed");
    // The seed's file was the first revision (it has no number of its
    // own); mstate's save is the second.
    assert_eq!(
        ok(d, &["save", "m", r#"{"by": "mstate", "n": 2}"#]).trim(),
        "2"
    );
    // The seed loads what mstate saved (its python reads the envelope).
    let out = seed_ok(d, "load_milestone_state m");
    assert_eq!(json(&out)["by"], "mstate");
    // The seed saves over mstate's file; mstate sees it.
    seed_ok(
        d,
        r#"save_milestone_state m '{"by": "seed again", "n": 3}'"#,
    );
    assert_eq!(json(&ok(d, &["load", "m"]))["n"], 3);
    // Both kinds of backup are listed; mstate's recovery reads the seed's.
    let backups: Vec<Value> = serde_json::from_str(&ok(d, &["--json", "backups", "m"])).unwrap();
    assert!(backups.len() >= 2, "{backups:?}");
    std::fs::write(d.join(".milestones/state/active/m.json"), b"{broken").unwrap();
    assert_eq!(json(&ok(d, &["load", "m"]))["n"], 2);
    // The seed recovers from mstate's backups.
    std::fs::write(d.join(".milestones/state/active/m.json"), b"{broken").unwrap();
    let out = seed_ok(d, "recover_milestone_state m");
    assert!(out.contains("State recovered successfully"), "{out}");
    assert!(json(&ok(d, &["load", "m"])).get("n").is_some());
}

#[test]
fn checkpoints_both_ways() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    seed_ok(
        d,
        r#"init_milestone_state m; save_milestone_state m '{"v": 1}'; create_state_checkpoint m from-seed"#,
    );
    assert!(ok(d, &["checkpoint", "list", "m"]).contains("from-seed"));
    ok(d, &["save", "m", r#"{"v": 2}"#]);
    ok(d, &["checkpoint", "create", "m", "from-mstate"]);
    ok(d, &["save", "m", r#"{"v": 3}"#]);
    ok(d, &["checkpoint", "restore", "m", "from-seed"]);
    assert_eq!(json(&ok(d, &["load", "m"]))["v"], 1);
    seed_ok(d, "restore_from_checkpoint m from-mstate");
    assert_eq!(json(&ok(d, &["load", "m"]))["v"], 2);
    // mstate's checkpoint is a copy: the seed's in-place `cp` did not
    // change any other checkpoint.
    let list: Vec<Value> =
        serde_json::from_str(&ok(d, &["--json", "checkpoint", "list", "m"])).unwrap();
    let from_seed = list.iter().find(|c| c["name"] == "from-seed").unwrap();
    assert_eq!(from_seed["valid"], true);
    ok(d, &["checkpoint", "restore", "m", "from-seed"]);
    assert_eq!(json(&ok(d, &["load", "m"]))["v"], 1);
}

#[test]
fn events_both_ways() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    seed_ok(
        d,
        r#"init_milestone_state m; log_milestone_event m progress '{"percentage": 10}'"#,
    );
    ok(d, &["log", "m", "progress", r#"{"percentage": 20}"#]);
    seed_ok(d, r#"log_milestone_event m progress '{"percentage": 30}'"#);
    ok(d, &["log", "m", "progress", r#"{"percentage": 40}"#]);
    let evs: Vec<Value> = ok(d, &["events", "m"]).lines().map(json).collect();
    assert_eq!(evs.len(), 5);
    assert_eq!(evs[0]["event"], "state_initialized");
    // seq continues across the seed's lines: ours are 3 and 5.
    assert_eq!(evs[2]["seq"], 3);
    assert_eq!(evs[4]["seq"], 5);
    let pct: Vec<i64> = evs
        .iter()
        .filter_map(|e| e["data"]["percentage"].as_i64())
        .collect();
    assert_eq!(pct, [10, 20, 30, 40]);
    assert!(ok(d, &["timeline", "m"]).contains("[state_initialized]"));
    // The seed's query finds mstate's lines.
    let out = seed_ok(d, "query_milestone_events m progress");
    assert!(
        out.contains(r#""percentage":20"#) && out.contains(r#""percentage":40"#),
        "{out}"
    );
    // The seed's json timeline parses mstate's lines.
    let tl = json(&seed_ok(d, "generate_event_timeline m json"));
    assert_eq!(tl.as_array().unwrap().len(), 5);
}

#[test]
fn sessions_both_ways() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let sid = seed_ok(d, "create_milestone_session m").trim().to_string();
    assert_eq!(ok(d, &["session", "current"]).trim(), sid);
    let list: Vec<Value> = serde_json::from_str(&ok(d, &["--json", "session", "list"])).unwrap();
    assert_eq!(list[0]["session_id"], Value::String(sid.clone()));
    // Its shell has exited: the seed's session is abandoned.
    assert_eq!(list[0]["effective_status"], "abandoned");
    ok(d, &["session", "end"]);
    let ours = ok(d, &["session", "start", "m"]).trim().to_string();
    assert_eq!(seed_ok(d, "get_current_session_id").trim(), ours);
    let out = seed_ok(d, "end_milestone_session");
    assert!(out.contains(&format!("Session ended: {ours}")), "{out}");
    let s: Value = serde_json::from_str(
        &std::fs::read_to_string(d.join(format!(".milestones/state/sessions/{ours}.json")))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(s["status"], "completed");
}

/// A bash process that took the seed's lock and waits for a line on stdin.
struct SeedHolder {
    child: Child,
    stdin: ChildStdin,
    _stdout: BufReader<ChildStdout>,
}

impl SeedHolder {
    fn start(dir: &Path) -> SeedHolder {
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "{}\nacquire_state_lock m 5 && read _ && release_state_lock m",
                seed_functions()
            ))
            .current_dir(dir)
            .env("TZ", "UTC")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.contains("State lock acquired"), "{line}");
        SeedHolder {
            child,
            stdin,
            _stdout: stdout,
        }
    }

    fn release(mut self) {
        writeln!(self.stdin).unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

#[test]
fn locks_exclude_each_other_both_ways() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    seed_ok(d, "init_milestone_state m");
    // The seed holds it: mstate waits, then gives up with exit 5.
    let holder = SeedHolder::start(d);
    let out = run(d, &["save", "m", "{}", "--lock-timeout", "0.5"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("seed script"));
    holder.release();
    ok(d, &["save", "m", "{}", "--lock-timeout", "5"]);
    // mstate holds it for a live process: the seed cannot take it.
    let mut owner = Command::new("sleep").arg("600").spawn().unwrap();
    ok(
        d,
        &[
            "lock",
            "acquire",
            "m",
            "--owner-pid",
            &owner.id().to_string(),
        ],
    );
    let out = seed(d, "acquire_state_lock m 1");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ERROR: Could not acquire state lock"));
    ok(d, &["lock", "release", "m", "--force"]);
    let out = seed(d, "acquire_state_lock m 1 && release_state_lock m");
    assert!(out.status.success());
    owner.kill().unwrap();
    owner.wait().unwrap();
}
