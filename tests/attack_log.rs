//! The event log, cleanup and doctor attacked from outside: the seed's own
//! unlocked appenders racing `mstate log`, counted against what the file
//! really holds; failed `fsync`/`fdatasync` injected with strace; `doctor
//! --repair` racing writers; the wall clock stepped with faketime.

mod common;

use common::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

/// Start bash running `script` with the seed's functions loaded and the
/// binary's directory first on PATH.
fn spawn_bash(dir: &Path, script: &str) -> Child {
    let bindir = Path::new(bin()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bindir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .arg("-c")
        .arg(format!("{}\n{script}", seed_functions()))
        .current_dir(dir)
        .env("TZ", "UTC")
        .env("PATH", path)
        .env_remove("MSTATE_DIR")
        .env_remove("MSTATE_SESSION")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_ok(child: Child, what: &str) -> Output {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn live_log(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!(".milestones/state/events/milestone-{id}.jsonl"))
}

/// The `seq` of every line of a log, by the documented rule: a line's own
/// `seq`, or the previous line's plus one for a line without (the seed's).
fn seqs(text: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let mut prev = 0u64;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        let seq = v["seq"].as_u64().unwrap_or(prev + 1);
        out.push(seq);
        prev = seq;
    }
    out
}

/// (repeats, gaps) in a list of seqs.
fn repeats_and_gaps(seqs: &[u64]) -> (usize, usize) {
    let mut repeats = 0;
    let mut gaps = 0;
    for w in seqs.windows(2) {
        if w[1] <= w[0] {
            repeats += 1;
        } else if w[1] > w[0] + 1 {
            gaps += 1;
        }
    }
    (repeats, gaps)
}

/// Doctor's findings as JSON values.
fn doctor(dir: &Path, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["--json", "doctor"];
    a.extend_from_slice(args);
    let out = run(dir, &a);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor output: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report["findings"].as_array().unwrap().clone()
}

/// How many seq repeats and gaps doctor reports, by its findings' totals.
fn doctor_seq_counts(findings: &[Value]) -> (usize, usize) {
    let mut repeats = 0;
    let mut gaps = 0;
    for f in findings.iter().filter(|f| f["kind"] == "log_seq") {
        let p = f["problem"].as_str().unwrap();
        if p.contains("repeat") || p.contains("goes back") {
            repeats += 1;
        } else if p.contains("jumps") {
            gaps += 1;
        }
    }
    (repeats, gaps)
}

fn mstate_line(seq: u64, ts: &str) -> String {
    format!(
        r#"{{"timestamp":"{ts}","milestone_id":"m","session_id":"no-session","event_type":"x","data":{{}},"pid":1,"user":"u","seq":{seq},"host":"h"}}"#
    )
}

fn seed_line(ts: &str) -> String {
    format!(
        r#"{{"timestamp":"{ts}","milestone_id":"m","session_id":"no-session","event_type":"seed","data":{{}},"pid":2,"user":"u"}}"#
    )
}

#[test]
fn doctor_reports_every_seq_repeat_and_gap_even_among_many_other_findings() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    // Seed lines with one-second stamps trailing mstate's, then many
    // repeats and a few gaps.
    let mut text = String::new();
    let mut seq = 1;
    for i in 0..30 {
        text += &mstate_line(seq, &format!("2026-11-24T12:00:{i:02}.900000Z"));
        text.push('\n');
        text += &seed_line(&format!("2026-11-24T12:00:{i:02}Z"));
        text.push('\n');
        seq += 2;
    }
    for i in 0..23 {
        // A seed line takes seq, then an mstate line repeats it.
        text += &seed_line(&format!("2026-11-24T12:01:{i:02}Z"));
        text.push('\n');
        text += &mstate_line(seq, &format!("2026-11-24T12:01:{i:02}.100000Z"));
        text.push('\n');
        seq += 1;
    }
    for i in 0..4 {
        seq += 3;
        text += &mstate_line(seq, &format!("2026-11-24T12:02:{i:02}.100000Z"));
        text.push('\n');
    }
    std::fs::write(live_log(d, "m"), &text).unwrap();
    let expected = repeats_and_gaps(&seqs(&text));
    assert_eq!(expected, (23, 4));
    let findings = doctor(d, &[]);
    assert_eq!(doctor_seq_counts(&findings), expected, "{findings:#?}");
}

#[test]
fn seed_appenders_racing_mstate_appenders_every_repeat_is_found() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    let n = if std::env::var("MSTATE_STRESS").as_deref() == Ok("full") {
        400
    } else {
        60
    };
    let mut kids = Vec::new();
    for w in 0..2 {
        kids.push(spawn_bash(
            d,
            &format!(
                "for i in $(seq {n}); do log_milestone_event m seed_ev \"{{\\\"w\\\": {w}, \\\"i\\\": $i}}\"; done"
            ),
        ));
        kids.push(spawn_bash(
            d,
            &format!(
                "for i in $(seq {n}); do mstate log m mstate_ev \"{{\\\"w\\\": {w}, \\\"i\\\": $i}}\" || exit 1; done"
            ),
        ));
    }
    for k in kids {
        wait_ok(k, "appender loop");
    }
    let text = std::fs::read_to_string(live_log(d, "m")).unwrap();
    // Every event is there exactly once.
    let mut seen = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let ty = v["event_type"].as_str().unwrap().to_string();
        if ty == "state_initialized" {
            continue;
        }
        let key = (
            ty,
            v["data"]["w"].as_u64().unwrap(),
            v["data"]["i"].as_u64().unwrap(),
        );
        assert!(seen.insert(key.clone()), "{key:?} twice");
    }
    assert_eq!(seen.len() as u64, 4 * n);
    let expected = repeats_and_gaps(&seqs(&text));
    let findings = doctor(d, &[]);
    assert_eq!(doctor_seq_counts(&findings), expected, "{findings:#?}");
    eprintln!("seq repeats: {}, gaps: {}", expected.0, expected.1);
}

/// Run `mstate ARGS` in `dir` under `strace -f` with `strace_args`,
/// writing the trace (with file descriptor paths) to `trace`.
fn strace_run(dir: &Path, strace_args: &[&str], trace: &Path, args: &[&str]) -> Output {
    Command::new("strace")
        .args(["-f", "-y", "-o"])
        .arg(trace)
        .args(strace_args)
        .arg(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("MSTATE_DIR")
        .env_remove("MSTATE_SESSION")
        .output()
        .unwrap()
}

/// Lines of a trace that name a syscall on a path ending in `suffix`.
fn trace_calls(trace: &Path, syscall: &str, suffix: &str) -> Vec<String> {
    let needle = format!("{suffix}>");
    std::fs::read_to_string(trace)
        .unwrap()
        .lines()
        .filter(|l| l.contains(&format!(" {syscall}(")) && l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// Events of `id` whose data has `"i": i`.
fn count_i(dir: &Path, id: &str, i: u64) -> usize {
    std::fs::read_to_string(live_log(dir, id))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["data"]["i"].as_u64() == Some(i))
        .count()
}

#[test]
fn after_a_failed_or_killed_directory_sync_the_next_append_syncs_it_again() {
    if !have_tool("strace") {
        return;
    }
    for fault in ["error=EIO", "signal=KILL"] {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let trace = d.join("trace");
        ok(d, &["init", "m"]);
        // The first append to a new log fails at its directory sync
        // (`--create`: a log of a milestone the store does not know yet).
        let out = strace_run(
            d,
            &["-e", &format!("inject=fsync:{fault}:when=1")],
            &trace,
            &["log", "n", "a", r#"{"i": 1}"#, "--create"],
        );
        assert!(
            !out.status.success(),
            "{fault}: the failed append was acknowledged"
        );
        // The next one must not be acknowledged before the directory
        // holding the log's name is synced.
        let out = strace_run(
            d,
            &["-e", "trace=fsync,fdatasync"],
            &trace,
            &["log", "n", "a", r#"{"i": 2}"#, "--create"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir_syncs = trace_calls(&trace, "fsync", "/.milestones/state/events");
        assert!(
            !dir_syncs.is_empty(),
            "{fault}: events/ was not synced by the next append"
        );
        assert_eq!(count_i(d, "n", 2), 1);
    }
}

#[test]
fn an_append_to_a_log_the_seed_began_syncs_the_directory() {
    if !have_tool("strace") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    let seed = spawn_bash(d, r#"log_milestone_event n seed_ev '{"i": 0}'"#);
    wait_ok(seed, "seed append");
    let trace = d.join("trace");
    let out = strace_run(
        d,
        &["-e", "trace=fsync,fdatasync"],
        &trace,
        &["log", "n", "a", r#"{"i": 1}"#],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The seed never synced the name of the file it created.
    assert!(!trace_calls(&trace, "fsync", "/.milestones/state/events").is_empty());
    // A log mstate began needs no directory sync per append.
    let out = strace_run(
        d,
        &["-e", "trace=fsync,fdatasync"],
        &trace,
        &["log", "m", "a", r#"{"i": 1}"#],
    );
    assert!(out.status.success());
    assert!(trace_calls(&trace, "fsync", "/.milestones/state/events").is_empty());
}

#[test]
fn a_failed_fdatasync_is_retried_after_rewriting_the_line_in_place() {
    if !have_tool("strace") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let trace = d.join("trace");
    ok(d, &["init", "m"]);
    ok(d, &["log", "m", "a", r#"{"i": 1}"#]);
    let before = std::fs::metadata(live_log(d, "m")).unwrap().len();
    // One failed fdatasync: the kernel may have dropped the dirty pages,
    // so the append writes its bytes again at their offset and syncs again.
    let out = strace_run(
        d,
        &[
            "-e",
            "inject=fdatasync:error=EIO:when=1",
            "-e",
            "trace=fdatasync,pwrite64",
        ],
        &trace,
        &["log", "m", "a", r#"{"i": 2}"#],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rewrites = trace_calls(&trace, "pwrite64", "milestone-m.jsonl");
    assert_eq!(rewrites.len(), 1, "{rewrites:?}");
    assert!(
        rewrites[0].ends_with(&format!(", {before}) = {}", {
            std::fs::metadata(live_log(d, "m")).unwrap().len() - before
        })),
        "{rewrites:?}"
    );
    let syncs = trace_calls(&trace, "fdatasync", "milestone-m.jsonl");
    assert_eq!(syncs.len(), 2, "{syncs:?}");
    assert!(syncs[1].ends_with("= 0"), "{syncs:?}");
    assert_eq!(count_i(d, "m", 2), 1);
    let findings = doctor(d, &[]);
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn when_the_retried_sync_fails_too_the_next_append_rewrites_those_bytes_before_its_own() {
    if !have_tool("strace") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let trace = d.join("trace");
    ok(d, &["init", "m"]);
    let before = std::fs::metadata(live_log(d, "m")).unwrap().len();
    let out = strace_run(
        d,
        &["-e", "inject=fdatasync:error=EIO:when=1+"],
        &trace,
        &["log", "m", "a", r#"{"i": 1}"#],
    );
    assert!(
        !out.status.success(),
        "an append whose bytes never synced was acknowledged"
    );
    let after = std::fs::metadata(live_log(d, "m")).unwrap().len();
    // Doctor reports the bytes that may not be on disk.
    let findings = doctor(d, &[]);
    assert!(
        findings.iter().any(|f| f["kind"] == "log_unsynced"),
        "{findings:#?}"
    );
    // The next append first rewrites and syncs them, then writes its own.
    let out = strace_run(
        d,
        &["-e", "trace=fdatasync,pwrite64,write"],
        &trace,
        &["log", "m", "a", r#"{"i": 2}"#],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rewrites = trace_calls(&trace, "pwrite64", "milestone-m.jsonl");
    assert_eq!(rewrites.len(), 1, "{rewrites:?}");
    assert!(
        rewrites[0].ends_with(&format!(", {before}) = {}", after - before)),
        "{rewrites:?}"
    );
    assert!(doctor(d, &[]).is_empty());
    assert_eq!(count_i(d, "m", 2), 1);
}

/// Events of type `ty` in the log of `id`.
fn events_of_type(dir: &Path, id: &str, ty: &str) -> Vec<Value> {
    std::fs::read_to_string(live_log(dir, id))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event_type"] == ty)
        .collect()
}

fn stress(fast: u64, full: u64) -> u64 {
    if std::env::var("MSTATE_STRESS").as_deref() == Ok("full") {
        full
    } else {
        fast
    }
}

#[test]
fn doctor_repair_racing_complete_and_reopen_never_rolls_state_back() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    ok(d, &["save", "m", r#"{"n": 0}"#]);
    let n = stress(50, 300);
    let mover = spawn_bash(
        d,
        &format!(
            "for i in $(seq {n}); do mstate save m \"{{\\\"n\\\": $i}}\" >/dev/null || exit 1; \
             mstate complete m >/dev/null || exit 1; mstate reopen m >/dev/null || exit 1; done"
        ),
    );
    let doctors = spawn_bash(
        d,
        &format!(
            "for i in $(seq {}); do mstate doctor --repair >/dev/null 2>&1; done; true",
            n * 2
        ),
    );
    wait_ok(mover, "save/complete/reopen loop");
    wait_ok(doctors, "doctor loop");
    let state: Value = serde_json::from_str(&ok(d, &["load", "m"])).unwrap();
    assert_eq!(state["n"], n, "the state went back");
    let recovered = events_of_type(d, "m", "state_recovered");
    assert!(
        recovered.is_empty(),
        "doctor recovered a state that was only moving: {recovered:?}"
    );
}

#[test]
fn doctor_repair_racing_session_start_never_removes_a_live_current_session() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    let n = stress(40, 400);
    // Each start must leave .current_session naming it until its end.
    let starter = spawn_bash(
        d,
        &format!(
            "for i in $(seq {n}); do s=$(mstate session start m) || exit 1; \
             c=$(cat .milestones/state/.current_session 2>/dev/null); \
             if [ \"$c\" != \"$s\" ]; then echo \"current is '$c', not $s\" >&2; exit 1; fi; \
             mstate session end \"$s\" >/dev/null || exit 1; done"
        ),
    );
    let doctors = spawn_bash(
        d,
        &format!(
            "for i in $(seq {}); do mstate doctor --repair >/dev/null 2>&1; done; true",
            n * 2
        ),
    );
    wait_ok(starter, "session start/end loop");
    wait_ok(doctors, "doctor loop");
}

#[test]
fn doctor_repair_racing_log_and_save_loses_nothing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    let n = stress(40, 400);
    let logger = spawn_bash(
        d,
        &format!("for i in $(seq {n}); do mstate log m ev \"{{\\\"i\\\": $i}}\" || exit 1; done"),
    );
    let saver = spawn_bash(
        d,
        &format!("for i in $(seq {n}); do mstate save m \"{{\\\"n\\\": $i}}\" >/dev/null || exit 1; done"),
    );
    let doctors = spawn_bash(
        d,
        &format!("for i in $(seq {n}); do mstate doctor --repair >/dev/null 2>&1; done; true"),
    );
    wait_ok(logger, "log loop");
    wait_ok(saver, "save loop");
    wait_ok(doctors, "doctor loop");
    for i in 1..=n {
        assert_eq!(count_i(d, "m", i), 1, "event {i}");
    }
    let state: Value = serde_json::from_str(&ok(d, &["load", "m"])).unwrap();
    assert_eq!(state["n"], n);
    let env: Value = serde_json::from_str(&ok(d, &["load", "m", "--envelope"])).unwrap();
    assert_eq!(env["revision"], n);
    assert!(doctor(d, &[]).is_empty());
}

/// The stored lines of the log of `id` whose timestamps lie in
/// `[since, until]`: what a full scan answers.
fn lines_between(
    dir: &Path,
    id: &str,
    since: jiff::Timestamp,
    until: jiff::Timestamp,
) -> Vec<String> {
    std::fs::read_to_string(live_log(dir, id))
        .unwrap()
        .lines()
        .filter(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let ts: jiff::Timestamp = v["timestamp"].as_str().unwrap().parse().unwrap();
            ts >= since && ts <= until
        })
        .map(str::to_string)
        .collect()
}

fn check_time_queries(d: &Path) {
    let now = jiff::Timestamp::now();
    let text = std::fs::read_to_string(live_log(d, "m")).unwrap();
    let mut stamps: Vec<jiff::Timestamp> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["timestamp"].as_str().unwrap().parse().unwrap()
        })
        .collect();
    stamps.push(now);
    stamps.sort();
    let far_past: jiff::Timestamp = "2000-01-01T00:00:00Z".parse().unwrap();
    let far_future: jiff::Timestamp = "2200-01-01T00:00:00Z".parse().unwrap();
    let mut bounds = vec![far_past, far_future];
    bounds.extend(stamps.iter().copied());
    for &since in &bounds {
        for &until in &bounds {
            if since > until {
                continue;
            }
            let s = since.to_string();
            let u = until.to_string();
            let got: Vec<String> = ok(d, &["events", "m", "--since", &s, "--until", &u])
                .lines()
                .map(str::to_string)
                .collect();
            assert_eq!(
                got,
                lines_between(d, "m", since, until),
                "--since {s} --until {u}"
            );
        }
    }
}

#[test]
fn a_line_stamped_in_the_future_does_not_hold_every_later_timestamp() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    ok(d, &["log", "m", "before", r#"{"i": 0}"#]);
    // A line an hour ahead: planted, as by a host whose clock ran ahead.
    let ahead = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(live_log(d, "m"))
        .unwrap();
    use std::io::Write;
    writeln!(f, "{}", mstate_line(3, &format!("{ahead}"))).unwrap();
    drop(f);
    for i in 1..=3 {
        ok(d, &["log", "m", "after", &format!(r#"{{"i": {i}}}"#)]);
    }
    let now = jiff::Timestamp::now();
    for v in events_of_type(d, "m", "after") {
        let ts: jiff::Timestamp = v["timestamp"].as_str().unwrap().parse().unwrap();
        assert!(
            ts <= now,
            "{ts} is after now ({now}): held at the future line"
        );
    }
    let until_now = ok(
        d,
        &[
            "events",
            "m",
            "--type",
            "after",
            "--until",
            &now.to_string(),
        ],
    );
    assert_eq!(until_now.lines().count(), 3, "{until_now}");
    check_time_queries(d);
}

#[test]
fn after_an_append_under_a_clock_an_hour_ahead_later_appends_are_stamped_by_the_real_clock() {
    if !have_tool("faketime") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    // A step of the wall clock (NTP, a restored VM) leaves the boot
    // clock alone: faketime must fake the wall clock only.
    let out = Command::new("faketime")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .args(["-f", "+1h"])
        .arg(bin())
        .args(["log", "m", "ahead", "{}"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 1..=3 {
        ok(d, &["log", "m", "after", &format!(r#"{{"i": {i}}}"#)]);
    }
    let now = jiff::Timestamp::now();
    let until_now = ok(
        d,
        &[
            "events",
            "m",
            "--type",
            "after",
            "--until",
            &now.to_string(),
        ],
    );
    assert_eq!(until_now.lines().count(), 3, "{until_now}");
    let since = ok(d, &["events", "m", "--type", "after", "--since", "1m"]);
    assert_eq!(since.lines().count(), 3, "{since}");
    check_time_queries(d);
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

/// Events in every part of the log of `id` (segments and live file).
fn all_event_lines(dir: &Path, id: &str) -> usize {
    let mut n = 0;
    let seg = dir.join(format!(".milestones/state/events/segments/{id}"));
    for e in std::fs::read_dir(seg).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().ends_with(".jsonl") {
            n += std::fs::read_to_string(e.path())
                .unwrap()
                .lines()
                .filter(|l| l.contains("\"event_type\""))
                .count();
        }
    }
    n + std::fs::read_to_string(live_log(dir, id))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"event_type\""))
        .count()
}

#[test]
fn a_backup_made_seconds_ago_of_a_state_written_days_ago_survives_cleanup() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    ok(d, &["save", "m", r#"{"n": 1}"#]);
    // The state was last written 8 days ago.
    let state = d.join(".milestones/state/active/m.json");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(8 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&state)
        .unwrap()
        .set_modified(old)
        .unwrap();
    // Now it is replaced: its backup is made now.
    ok(d, &["save", "m", r#"{"n": 2}"#]);
    let backups = d.join(".milestones/state/backups");
    let before = count_files(&backups);
    assert!(before >= 1);
    ok(d, &["cleanup", "m", "--retention-days", "7"]);
    assert_eq!(
        count_files(&backups),
        before,
        "a backup made seconds ago was removed"
    );
    let rec = events_of_type(d, "m", "state_cleaned");
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0]["data"]["backups_removed"], 0);
}

#[test]
fn cleanup_under_a_clock_thirty_days_ahead_keeps_what_was_written_seconds_before() {
    if !have_tool("faketime") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    for i in 1..=3 {
        ok(d, &["save", "m", &format!(r#"{{"n": {i}}}"#)]);
        ok(d, &["log", "m", "ev", &format!(r#"{{"i": {i}}}"#)]);
    }
    let sid = ok(d, &["session", "start", "m"]).trim().to_string();
    ok(d, &["session", "end", &sid]);
    let backups = d.join(".milestones/state/backups");
    let sessions = d.join(".milestones/state/sessions");
    let (b, s, e) = (
        count_files(&backups),
        count_files(&sessions),
        all_event_lines(d, "m"),
    );
    for args in [
        &["cleanup", "m", "--retention-days", "7"][..],
        &["cleanup", "--all", "--retention-days", "7"][..],
    ] {
        // A step of the wall clock (NTP, a restored VM) leaves the boot
        // clock alone: faketime must fake the wall clock only.
        let out = Command::new("faketime")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .args(["-f", "+30d"])
            .arg(bin())
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(count_files(&backups), b, "backups removed");
    assert_eq!(count_files(&sessions), s, "sessions removed");
    for i in 1..=3 {
        assert_eq!(count_i(d, "m", i), 1, "event {i} removed");
    }
    // Every event is kept, plus the two cleanups' own.
    assert_eq!(all_event_lines(d, "m"), e + 2);
    let rec = events_of_type(d, "m", "state_cleaned");
    assert_eq!(rec.len(), 2);
    // What the decision rested on is recorded.
    assert!(rec[0]["data"]["clock"].is_object(), "{:?}", rec[0]);
}
