//! `events` and `timeline` stream: nothing on stdout before the milestone
//! is known, JSON laid out as serde_json lays it out, the timeline's
//! reorder window and what happens beyond it, and rendering straight from
//! the stored text that matches rendering through a parsed value.

mod common;

use common::*;

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

fn write_log(dir: &Path, text: &str) {
    let events = dir.join(".milestones/state/events");
    std::fs::create_dir_all(&events).unwrap();
    std::fs::write(events.join("milestone-m.jsonl"), text).unwrap();
}

/// A seed-shaped line at `secs` past 10:00:00 (no `seq`).
fn seed_line(secs: u32, ty: &str, session: &str, data: &str) -> String {
    format!(
        "{{\"timestamp\":\"2026-11-20T{:02}:{:02}:{:02}Z\",\"milestone_id\":\"m\",\"session_id\":\"{session}\",\"event_type\":\"{ty}\",\"data\":{data},\"pid\":42,\"user\":\"dev\"}}\n",
        10 + secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

#[test]
fn an_unknown_milestone_prints_nothing_on_stdout() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "other"]);
    for args in [
        &["--json", "events", "nosuch"][..],
        &["events", "nosuch", "--format", "json"],
        &["events", "nosuch", "--format", "text"],
        &["--json", "timeline", "nosuch"],
        &["timeline", "nosuch"],
        &["timeline", "nosuch", "--format", "markdown"],
    ] {
        let out = run(d, args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {:?}", out.stdout);
        if args[0] == "--json" {
            let err: Value = serde_json::from_slice(&out.stderr).unwrap();
            assert_eq!(err["error"]["code"], 3, "{args:?}");
        }
    }
    // A known milestone without matches is an empty array.
    assert_eq!(ok(d, &["--json", "events", "other", "--type", "x"]), "[]\n");
}

#[test]
fn json_arrays_are_laid_out_as_serde_json_lays_them_out() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    ok(d, &["log", "m", "a", r#"{"k": [1, {"x": null}], "e": {}}"#]);
    ok(d, &["log", "m", "b"]);
    let lines: Vec<Value> = ok(d, &["events", "m"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let want = serde_json::to_string_pretty(&lines).unwrap() + "\n";
    assert_eq!(ok(d, &["events", "m", "--format", "json"]), want);
    assert_eq!(ok(d, &["--json", "events", "m"]), want);
    assert_eq!(ok(d, &["timeline", "m", "--format", "json"]), want);
    assert!(want.contains("  },\n  {"), "{want}");
}

#[test]
fn rendering_from_the_stored_text_matches_a_parsed_value() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // Data that serde_json writes differently from how it is stored:
    // escapes, exponents, spacing, a repeated key.
    let datas = [
        r#"{"s": "\u0072are \/ \"q\""}"#,
        r#"{"n": 1E5, "m": 2.50e-3, "z": -0}"#,
        "{ \"a\" : [ 1 , 2 ] , \"b\" : { } }",
        r#"{"a": 1, "b": 2, "a": 3}"#,
        r#"{"é": "ü", "big": 123456789012345678901234567890}"#,
    ];
    let mut log = String::new();
    for (i, data) in datas.iter().enumerate() {
        log.push_str(&seed_line(i as u32, "t", "s", data));
    }
    write_log(d, &log);
    let values: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut text = String::new();
    for v in &values {
        writeln!(
            text,
            "{} [t] {}",
            v["timestamp"].as_str().unwrap(),
            v["data"]
        )
        .unwrap();
    }
    assert_eq!(ok(d, &["events", "m", "--format", "text"]), text);
    let pretty = serde_json::to_string_pretty(&values).unwrap() + "\n";
    assert_eq!(ok(d, &["events", "m", "--format", "json"]), pretty);
    assert_eq!(ok(d, &["timeline", "m", "--format", "json"]), pretty);
    let tl = ok(d, &["timeline", "m"]);
    assert!(
        tl.starts_with(&format!("=== Milestone Event Timeline: m ===\n{text}")),
        "{tl}"
    );
}

#[test]
fn the_timeline_sorts_within_its_window() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // The seed stamps whole seconds and does not lock: its line for 10:00:05
    // lands after mstate's for 10:00:06 and 10:00:07.
    let log = [
        seed_line(1, "a", "s1", "{}"),
        seed_line(6, "b", "s1", "{}"),
        seed_line(7, "c", "s1", "{}"),
        seed_line(5, "late", "s1", "{}"),
        seed_line(9, "session_ended", "s1", "{}"),
    ]
    .concat();
    write_log(d, &log);
    let out = run(d, &["timeline", "m"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let types: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split(" [").nth(1)?.split(']').next())
        .collect();
    assert_eq!(types, ["a", "late", "b", "c", "session_ended"], "{text}");
    assert!(!text.contains("out of order"));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(
            "s1  2026-11-20T10:00:01.000000Z .. 2026-11-20T10:00:09.000000Z  8s  5 events\n"
        ),
        "{text}"
    );
    // `seq` breaks ties of equal times, as a full sort does.
    let md = ok(d, &["timeline", "m", "--format", "markdown"]);
    let seqs: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with("| 2026"))
        .map(|l| l.split(" | ").nth(1).unwrap())
        .collect();
    assert_eq!(seqs, ["1", "4", "2", "3", "5"], "{md}");
}

#[test]
fn an_event_further_out_of_order_than_the_window_is_shown_where_read() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // 10,001 events, then one stamped before all of them: more than the
    // window (10,000 events) back.
    let mut log = String::with_capacity(3 << 20);
    for i in 0..10_001 {
        log.push_str(&seed_line(10 + i, "tick", "s1", "{}"));
    }
    log.push_str(&seed_line(0, "late", "s1", "{}"));
    write_log(d, &log);
    let out = run(d, &["timeline", "m"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let events: Vec<&str> = text.lines().skip(1).take(10_002).collect();
    // Shown as soon as it is read: after the one event already shown,
    // before the 10,000 the window holds; marked.
    assert_eq!(events[0], "2026-11-20T10:00:10Z [tick] {}");
    assert_eq!(events[1], "2026-11-20T10:00:00Z [late] {}  (out of order)");
    assert_eq!(events[2], "2026-11-20T10:00:11Z [tick] {}");
    assert_eq!(events[10_001], "2026-11-20T12:46:50Z [tick] {}");
    assert_eq!(text.matches("out of order").count(), 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1 events were logged further out of time order than the timeline sorts")
            && err.contains("seq 10002"),
        "{err}"
    );
    // The span still starts at the late event.
    assert!(
        text.contains("s1  2026-11-20T10:00:00.000000Z .. "),
        "{text}"
    );
    // JSON keeps every event, still one document.
    let json: Value = serde_json::from_str(&ok(d, &["timeline", "m", "--format", "json"])).unwrap();
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), 10_002);
    assert_eq!(list[1]["event_type"], "late");
}

#[test]
fn a_type_scan_finds_escaped_and_spaced_types() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let log = [
        seed_line(1, "rare", "s", "{}"),
        seed_line(2, "common", "s", r#"{"t": "rare"}"#),
        "{\"timestamp\": \"2026-11-20T10:00:03Z\", \"event_type\": \"rare\", \"data\": {}}\n"
            .into(),
        "{\"timestamp\":\"2026-11-20T10:00:04Z\",\"event_type\":\"\\u0072are\",\"data\":{}}\n"
            .into(),
        "{\"timestamp\":\"2026-11-20T10:00:05Z\",\"event\":\"rare\"}\n".into(),
        seed_line(6, "rarely", "s", "{}"),
    ]
    .concat();
    write_log(d, &log);
    let seqs: Vec<u64> = ok(d, &["events", "m", "--type", "rare", "--format", "json"])
        .parse::<Value>()
        .map(|v| v.as_array().unwrap().len() as u64)
        .into_iter()
        .collect();
    assert_eq!(seqs, [4]);
    let md = ok(d, &["events", "m", "--type", "rare", "--format", "text"]);
    let times: Vec<&str> = md.lines().map(|l| &l[17..19]).collect();
    assert_eq!(times, ["01", "03", "04", "05"], "{md}");
}

/// `--json` with `--follow` streams the JSON lines (an array would never
/// close); an explicit `--format json` with `--follow` is refused.
#[test]
fn json_follow_streams_json_lines() {
    use std::io::{BufRead, BufReader};
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    common::ok(d, &["init", "m"]);
    let mut child = common::cmd(d)
        .args(["--json", "events", "m", "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The first event (state_initialized) is there before following.
    let first = lines.next().expect("a line").unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(&first).expect("one JSON object a line");
    assert_eq!(v["event_type"], "state_initialized", "{first}");
    let out = common::run(d, &["events", "m", "--follow", "--format", "json"]);
    assert_eq!(out.status.code(), Some(6));
}
