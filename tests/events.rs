//! The event log through the real binary: appends, seq under concurrency,
//! torn tails, the seed's lines, every filter and format, follow, TIME
//! arguments, retention racing appends.

mod common;

use common::*;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

fn lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).expect("line parses"))
        .collect()
}

fn log_path(dir: &Path, m: &str) -> std::path::PathBuf {
    dir.join(format!(".milestones/state/events/milestone-{m}.jsonl"))
}

fn types(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| {
            e.get("event_type")
                .or_else(|| e.get("event"))
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

#[test]
fn log_appends_the_seed_fields_plus_seq_and_host() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // `--create`: the first line of a log (no `init` before it).
    ok(
        d,
        &["log", "m", "task.done", r#"{"percentage": 50}"#, "--create"],
    );
    let evs = lines(&std::fs::read_to_string(log_path(d, "m")).unwrap());
    assert_eq!(evs.len(), 1);
    let e = &evs[0];
    let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "timestamp",
            "milestone_id",
            "session_id",
            "event_type",
            "data",
            "pid",
            "user",
            "seq",
            "host"
        ]
    );
    assert_eq!(e["data"], json!({"percentage": 50}));
    assert_eq!(e["seq"], json!(1));
    assert_eq!(e["session_id"], json!("no-session"));
    // RFC 3339 UTC with microseconds.
    let ts = e["timestamp"].as_str().unwrap();
    assert_eq!(ts.len(), "2026-11-24T12:00:00.000000Z".len(), "{ts}");
    assert!(ts.ends_with('Z'));
    // The seed greps for this exact text.
    assert!(std::fs::read_to_string(log_path(d, "m"))
        .unwrap()
        .contains(r#""event_type":"task.done""#));
}

#[test]
fn invalid_data_and_hostile_types_are_refused_and_nothing_is_written() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    ok(d, &["log", "m", "a"]);
    let before = std::fs::read(log_path(d, "m")).unwrap();
    for args in [
        vec!["log", "m", "x", "{\"percentage\": }"],
        vec!["log", "m", "x", ""],
        vec!["log", "m", "x'; touch pwned; echo '", "{}"],
        vec!["log", "m", "a b", "{}"],
        vec!["log", "../m", "x", "{}"],
    ] {
        let out = run(d, &args);
        assert_eq!(out.status.code(), Some(6), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    assert_eq!(std::fs::read(log_path(d, "m")).unwrap(), before);
    assert!(!d.join("pwned").exists());
    let err = String::from_utf8(run(d, &["log", "m", "x", "{\"a\":\n }"]).stderr).unwrap();
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn raw_fallback_keeps_invalid_data_as_a_string() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let out = run(
        d,
        &[
            "log",
            "m",
            "progress",
            "{\"percentage\": }",
            "--raw-fallback",
            "--create",
        ],
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning"));
    let evs = lines(&ok(d, &["events", "m"]));
    assert_eq!(evs[0]["data"], json!("{\"percentage\": }"));
}

#[test]
fn eight_processes_append_a_thousand_each_with_unique_contiguous_seq() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    let script = r#"i=0; while [ $i -lt 1000 ]; do "$M" log m tick "{\"w\": $W, \"i\": $i}" || exit 1; i=$((i+1)); done"#;
    let children: Vec<_> = (0..8)
        .map(|w| {
            Command::new("sh")
                .args(["-c", script])
                .env("M", bin())
                .env("W", w.to_string())
                .current_dir(d)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let text = std::fs::read_to_string(log_path(d, "m")).unwrap();
    let evs = lines(&text);
    // The init's state_initialized, then the 8000.
    assert_eq!(evs.len(), 8001);
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=8001).collect::<Vec<_>>());
    let mut stamps: Vec<&str> = evs
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap())
        .collect();
    let sorted = {
        let mut s = stamps.clone();
        s.sort();
        s
    };
    assert_eq!(stamps, sorted, "timestamps went back");
    stamps.dedup();
}

#[test]
fn torn_tails_are_skipped_then_quarantined_and_counts_stay_exact() {
    for torn in [&b"{\"timestamp\":\"2026-11-24T12:00"[..], &[0u8; 64][..]] {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        for i in 0..3 {
            ok(
                d,
                &["log", "m", "e", &json!({"i": i}).to_string(), "--create"],
            );
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(log_path(d, "m"))
            .unwrap()
            .write_all(torn)
            .unwrap();
        let out = run(d, &["events", "m"]);
        assert!(out.status.success());
        assert_eq!(lines(&String::from_utf8(out.stdout).unwrap()).len(), 3);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("torn"),
            "no warning"
        );
        let doctor = run(d, &["doctor"]);
        assert_eq!(doctor.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&doctor.stdout).contains("torn_tail"));
        ok(d, &["log", "m", "e", r#"{"i": 3}"#]);
        let text = std::fs::read_to_string(log_path(d, "m")).unwrap();
        let evs = lines(&text);
        assert_eq!(evs.len(), 4);
        assert_eq!(
            evs.iter()
                .map(|e| e["seq"].as_u64().unwrap())
                .collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        let q: Vec<_> = std::fs::read_dir(d.join(".milestones/state/events/quarantine"))
            .unwrap()
            .collect();
        assert_eq!(q.len(), 1);
        let out = run(d, &["events", "m"]);
        assert!(out.stderr.is_empty());
        ok(d, &["doctor"]);
    }
}

const SEED_LOG: &str = r#"{"timestamp":"2026-11-20T10:00:00Z","event":"state_initialized","milestone_id":"m"}
{"timestamp":"2026-11-20T10:00:05Z","milestone_id":"m","session_id":"session-20261120-100001-42","event_type":"session_created","data":{"session_id": "session-20261120-100001-42"},"pid":42,"user":"dev"}
{"timestamp":"2026-11-20T10:01:00Z","milestone_id":"m","session_id":"session-20261120-100001-42","event_type":"progress","data":{"percentage": 50},"pid":42,"user":"dev"}
{"timestamp":"2026-11-20T11:00:00Z","milestone_id":"m","session_id":"session-20261120-100001-42","event_type":"session_ended","data":{"session_id": "session-20261120-100001-42"},"pid":42,"user":"dev"}
"#;

fn seed_store() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let events = t.path().join(".milestones/state/events");
    std::fs::create_dir_all(&events).unwrap();
    std::fs::write(events.join("milestone-m.jsonl"), SEED_LOG).unwrap();
    t
}

#[test]
fn the_seeds_lines_read_as_they_are_and_seq_continues_after_them() {
    let t = seed_store();
    let d = t.path();
    let evs = lines(&ok(d, &["events", "m", "--format", "jsonl"]));
    assert_eq!(
        types(&evs),
        [
            "state_initialized",
            "session_created",
            "progress",
            "session_ended"
        ]
    );
    let text = ok(d, &["events", "m", "--format", "text"]);
    assert!(
        text.starts_with("2026-11-20T10:00:00Z [state_initialized] {}"),
        "{text}"
    );
    let tl = ok(d, &["timeline", "m"]);
    assert!(tl.contains("[state_initialized]"));
    assert!(tl.contains("session-20261120-100001-42"));
    let evs = lines(&ok(d, &["log", "m", "next", "--json"]).replace('\n', " "));
    assert_eq!(evs[0]["seq"], json!(5));
    let json: Value = serde_json::from_str(&ok(d, &["timeline", "m", "--format", "json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 5);
}

#[test]
fn filters_and_formats() {
    let t = seed_store();
    let d = t.path();
    let all = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["events", "m"];
        a.extend_from_slice(args);
        types(&lines(&ok(d, &a)))
    };
    assert_eq!(all(&["--type", "progress"]), ["progress"]);
    assert_eq!(
        all(&["--type", "progress", "--type", "session_ended"]),
        ["progress", "session_ended"]
    );
    assert_eq!(all(&["--type", "state_initialized"]), ["state_initialized"]);
    assert_eq!(
        all(&["--since", "2026-11-20T10:00:30Z"]),
        ["progress", "session_ended"]
    );
    assert_eq!(
        all(&["--until", "2026-11-20T10:00:05Z"]),
        ["state_initialized", "session_created"]
    );
    assert_eq!(
        all(&[
            "--since",
            "2026-11-20T10:00:05Z",
            "--until",
            "2026-11-20T10:01:00Z"
        ]),
        ["session_created", "progress"]
    );
    assert_eq!(all(&["--since", "2026-11-21"]), Vec::<String>::new());
    assert_eq!(all(&["--since", "2026-11-20"]).len(), 4);
    assert_eq!(all(&["--since", "3650d"]).len(), 4);
    assert_eq!(all(&["--session", "session-20261120-100001-42"]).len(), 3);
    assert_eq!(
        all(&["--limit", "2"]),
        ["state_initialized", "session_created"]
    );
    assert_eq!(all(&["--tail", "2"]), ["progress", "session_ended"]);
    assert_eq!(
        all(&["--reverse"]),
        [
            "session_ended",
            "progress",
            "session_created",
            "state_initialized"
        ]
    );
    assert_eq!(all(&["--reverse", "--limit", "1"]), ["session_ended"]);
    assert_eq!(
        all(&["--tail", "2", "--reverse"]),
        ["session_ended", "progress"]
    );
    assert_eq!(
        all(&["--tail", "1", "--type", "session_created"]),
        ["session_created"]
    );
    let json: Value = serde_json::from_str(&ok(
        d,
        &["events", "m", "--format", "json", "--type", "progress"],
    ))
    .unwrap();
    assert_eq!(
        json,
        json!([{"timestamp":"2026-11-20T10:01:00Z","milestone_id":"m","session_id":"session-20261120-100001-42","event_type":"progress","data":{"percentage": 50},"pid":42,"user":"dev"}])
    );
    let json: Value = serde_json::from_str(&ok(d, &["--json", "events", "m"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 4);
    let md = ok(d, &["timeline", "m", "--format", "markdown"]);
    assert!(md.contains("| Time | Seq | Type | Session | Data |"));
    assert!(md.contains("## Sessions"));
    // A milestone with no events at all is not found.
    assert_eq!(run(d, &["events", "nope"]).status.code(), Some(3));
    assert_eq!(run(d, &["timeline", "nope"]).status.code(), Some(3));
}

#[test]
fn bad_time_arguments_are_invalid_input() {
    let t = seed_store();
    let d = t.path();
    for bad in ["yesterday", "2026-13-01", "5x", "-3d", ""] {
        let arg = format!("--since={bad}");
        let out = run(d, &["events", "m", &arg]);
        assert_eq!(out.status.code(), Some(6), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("RFC 3339"),
            "{bad:?}"
        );
    }
    assert_eq!(
        run(d, &["events", "m", "--limit", "x"]).status.code(),
        Some(2)
    );
}

#[test]
fn follow_streams_new_events_and_ends_cleanly() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    ok(d, &["log", "m", "before"]);
    let mut follower = Command::new(bin())
        .args(["events", "m", "--follow", "--type", "tick"])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(follower.stdout.take().unwrap());
    for i in 0..5 {
        ok(d, &["log", "m", "tick", &json!({"i": i}).to_string()]);
        ok(d, &["log", "m", "other"]);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let e: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(e["event_type"], "tick");
        assert_eq!(e["data"]["i"], json!(i));
    }
    // Ctrl-C ends it cleanly.
    let pid = rustix::process::Pid::from_raw(follower.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let status = follower.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn follow_ends_cleanly_when_the_reader_goes_away() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    for i in 0..3 {
        ok(d, &["log", "m", "tick", &json!({"i": i}).to_string()]);
    }
    let mut pipeline = Command::new("sh")
        .args(["-c", "\"$M\" events m --follow | head -n 2"])
        .env("M", bin())
        .current_dir(d)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(pipeline.stdout.take().unwrap());
    let mut got = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        got.push(line);
    }
    // `head` has exited; each new event makes the follower write to the
    // closed pipe, which must end it (bounded: it ends at the first one).
    let mut appended = 0;
    while pipeline.try_wait().unwrap().is_none() {
        ok(d, &["log", "m", "tick", "{}"]);
        appended += 1;
        assert!(appended < 1000, "follower never noticed the closed pipe");
        if appended > 2 {
            let status = pipeline.wait().unwrap();
            assert!(status.success());
            break;
        }
    }
    assert_eq!(got.len(), 2);
}

#[test]
fn cleanup_racing_appends_loses_no_recent_event() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // Old lines that retention must remove.
    let events = d.join(".milestones/state/events");
    std::fs::create_dir_all(&events).unwrap();
    std::fs::write(
        events.join("milestone-m.jsonl"),
        "{\"timestamp\":\"2020-01-01T00:00:00Z\",\"milestone_id\":\"m\",\"session_id\":\"s\",\"event_type\":\"old\",\"data\":{},\"pid\":1,\"user\":\"u\"}\n",
    )
    .unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            Command::new("sh")
                .args(["-c", r#"i=0; while [ $i -lt 150 ]; do "$M" log m tick "{\"w\": $W, \"i\": $i}" || exit 1; i=$((i+1)); done"#])
                .env("M", bin())
                .env("W", w.to_string())
                .current_dir(d)
                .spawn()
                .unwrap()
        })
        .collect();
    // Clean in a loop while they append; one day of retention keeps every
    // event written now.
    let mut cleanups = 0;
    let mut writers = writers;
    loop {
        ok(d, &["cleanup", "m", "--retention-days", "1"]);
        cleanups += 1;
        if writers.iter_mut().all(|w| w.try_wait().unwrap().is_some()) {
            break;
        }
    }
    for mut w in writers {
        assert!(w.wait().unwrap().success());
    }
    let evs = lines(&ok(d, &["events", "m"]));
    let ticks: std::collections::BTreeSet<(u64, u64)> = evs
        .iter()
        .filter(|e| e["event_type"] == "tick")
        .map(|e| {
            (
                e["data"]["w"].as_u64().unwrap(),
                e["data"]["i"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ticks.len(), 600, "events lost with {cleanups} cleanups");
    assert!(
        !evs.iter().any(|e| e["event_type"] == "old"),
        "the old event was kept"
    );
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let first = seqs[0];
    assert_eq!(seqs, (first..first + seqs.len() as u64).collect::<Vec<_>>());
    // The live log keeps the seed's name.
    assert!(log_path(d, "m").exists());
}

#[test]
fn cleanup_dry_run_changes_nothing_and_checkpoints_stay() {
    let t = seed_store();
    let d = t.path();
    ok(d, &["save", "m", "{}"]);
    ok(d, &["save", "m", "{\"a\": 1}"]);
    ok(d, &["checkpoint", "create", "m", "keep"]);
    let before = std::fs::read(log_path(d, "m")).unwrap();
    let out = ok(d, &["cleanup", "m", "--retention-days", "0", "--dry-run"]);
    assert!(
        out.contains("would remove 7 events, 1 backups, 0 checkpoints"),
        "{out}"
    );
    assert_eq!(std::fs::read(log_path(d, "m")).unwrap(), before);
    ok(d, &["cleanup", "m", "--retention-days", "0"]);
    assert!(ok(d, &["checkpoint", "list", "m"]).contains("keep"));
    assert!(ok(d, &["backups", "m"]).is_empty());
    ok(
        d,
        &[
            "cleanup",
            "--all",
            "--retention-days",
            "0",
            "--include-checkpoints",
        ],
    );
    assert!(!ok(d, &["checkpoint", "list", "m"]).contains("keep"));
}
