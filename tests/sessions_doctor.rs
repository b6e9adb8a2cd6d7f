//! Sessions and doctor through the real binary.

mod common;

use common::*;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn json(dir: &Path, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = run(dir, &a);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stderr)))
}

fn session_file(dir: &Path, sid: &str) -> Value {
    let p = dir.join(format!(".milestones/state/sessions/{sid}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn a_session_starts_becomes_current_tags_events_and_ends() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert_eq!(ok(d, &["session", "current"]).trim(), "no-session");
    // `--create`: the session's event begins the milestone's log.
    let sid = ok(d, &["session", "start", "m", "--create"])
        .trim()
        .to_string();
    // The seed's form: session-YYYYmmdd-HHMMSS-<pid>.
    let parts: Vec<&str> = sid.split('-').collect();
    assert_eq!(parts.len(), 4, "{sid}");
    assert_eq!(parts[0], "session");
    assert_eq!(parts[1].len(), 8);
    assert_eq!(parts[2].len(), 6);
    assert!(parts[3].parse::<u32>().is_ok());
    assert_eq!(ok(d, &["session", "current"]).trim(), sid);
    let file = session_file(d, &sid);
    for key in [
        "session_id",
        "milestone_id",
        "created_at",
        "pid",
        "user",
        "working_directory",
        "git_branch",
        "status",
        "host",
    ] {
        assert!(file.get(key).is_some(), "missing {key}");
    }
    assert_eq!(file["status"], "active");
    assert_eq!(file["git_branch"], "none");
    ok(d, &["log", "m", "work"]);
    let ev: Value = serde_json::from_str(ok(d, &["events", "m", "--type", "work"]).trim()).unwrap();
    assert_eq!(ev["session_id"], Value::String(sid.clone()));
    // MSTATE_SESSION wins over .current_session, so side-by-side agents keep their own.
    let out = run_env(
        d,
        &["log", "m", "mine"],
        &[("MSTATE_SESSION", "session-other")],
    );
    assert!(out.status.success());
    let ev: Value = serde_json::from_str(ok(d, &["events", "m", "--type", "mine"]).trim()).unwrap();
    assert_eq!(ev["session_id"], "session-other");
    assert_eq!(
        ok(d, &["session", "end"]).trim(),
        format!("Session ended: {sid}")
    );
    assert_eq!(ok(d, &["session", "current"]).trim(), "no-session");
    let file = session_file(d, &sid);
    assert_eq!(file["status"], "completed");
    assert!(file["ended_at"].is_string());
    let types: Vec<String> = ok(d, &["events", "m"])
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event_type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(types, ["session_created", "work", "mine", "session_ended"]);
    // Ending an unknown session: not found, unless the seed's quiet behaviour is asked.
    assert_eq!(
        run(d, &["session", "end", "session-nope"]).status.code(),
        Some(3)
    );
    assert!(run(d, &["session", "end", "session-nope", "--missing-ok"])
        .status
        .success());
}

#[test]
fn sessions_in_the_same_second_get_distinct_ids_and_list_filters() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    ok(d, &["init", "other"]);
    let a = ok(d, &["session", "start", "m", "--owner-pid", "1"])
        .trim()
        .to_string();
    let b = ok(d, &["session", "start", "m", "--owner-pid", "1"])
        .trim()
        .to_string();
    let c = ok(d, &["session", "start", "other", "--no-current"])
        .trim()
        .to_string();
    assert_ne!(a, b);
    assert_eq!(ok(d, &["session", "current"]).trim(), b);
    assert_eq!(json(d, &["session", "list"]).as_array().unwrap().len(), 3);
    assert_eq!(
        json(d, &["session", "list", "--milestone", "m"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    ok(d, &["session", "end", &a]);
    let done = json(d, &["session", "list", "--status", "completed"]);
    assert_eq!(done.as_array().unwrap().len(), 1);
    assert_eq!(done[0]["session_id"], Value::String(a));
    assert_eq!(json(d, &["session", "show", &c])["milestone_id"], "other");
}

#[test]
fn a_session_whose_process_is_gone_is_abandoned() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    let mut child = Command::new("sleep").arg("600").spawn().unwrap();
    let pid = child.id().to_string();
    let sid = ok(d, &["session", "start", "m", "--owner-pid", &pid])
        .trim()
        .to_string();
    assert_eq!(
        json(d, &["session", "list"])[0]["effective_status"],
        "active"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let list = json(d, &["session", "list", "--status", "abandoned"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["session_id"], Value::String(sid.clone()));
    // doctor reports it and --repair ends it, with an event.
    let out = run(d, &["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("abandoned_session"));
    ok(d, &["doctor", "--repair"]);
    ok(d, &["doctor"]);
    assert!(ok(d, &["events", "m", "--type", "session_abandoned"]).contains(&sid));
}

#[test]
fn doctor_finds_and_repairs_what_is_safe() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", r#"{"v": 1}"#]);
    ok(d, &["save", "m", r#"{"v": 2}"#]);
    let root = d.join(".milestones/state");
    ok(d, &["doctor"]);
    // A stale lock of a dead process, in the seed's format.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::create_dir(root.join(".locks/m.lock")).unwrap();
    std::fs::write(root.join(".locks/m.lock/pid"), format!("{dead}\n")).unwrap();
    std::fs::write(
        root.join(".locks/m.lock/acquired"),
        "2026-01-01T00:00:00Z\n",
    )
    .unwrap();
    // An orphan temp file of a dead writer (the seed's name form).
    std::fs::write(root.join(format!("active/m.json.tmp.{dead}")), b"{").unwrap();
    // A backup of no known milestone, and a planted link.
    std::fs::write(root.join("backups/ghost-20260101-000000.json"), b"{}").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("sessions/evil.json")).unwrap();
    // A corrupt state file with a valid backup.
    std::fs::write(root.join("active/m.json"), b"{\"broken").unwrap();
    // A .current_session naming no session.
    std::fs::write(root.join(".current_session"), b"session-gone\n").unwrap();

    let report = json(d, &["doctor"]);
    assert_eq!(report["clean"], false);
    let kinds: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    for k in [
        "stale_lock",
        "orphan_temp",
        "unknown_backup",
        "not_regular",
        "corrupt_state",
        "current_session",
    ] {
        assert!(kinds.contains(&k), "{k} not reported: {kinds:?}");
    }
    let text = String::from_utf8(run(d, &["doctor"]).stdout).unwrap();
    assert!(
        text.lines()
            .all(|l| l.contains("--repair would") || l.contains("not repaired")),
        "{text}"
    );
    // The unknown backup is left alone (it may be user data): not clean yet.
    assert_eq!(run(d, &["doctor", "--repair"]).status.code(), Some(1));
    let report = json(d, &["doctor"]);
    let left: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(left, ["unknown_backup"]);
    assert!(std::fs::read_to_string("/etc/passwd").is_ok());
    assert_eq!(
        serde_json::from_str::<Value>(&ok(d, &["load", "m"])).unwrap()["v"],
        1
    );
    let events = ok(d, &["events", "m"]);
    assert!(events.contains("lock_broken") && events.contains("state_recovered"));
    std::fs::remove_file(root.join("backups/ghost-20260101-000000.json")).unwrap();
    ok(d, &["doctor"]);
}
