//! A failed write of a command's output is an error: with stdout on
//! `/dev/full` (or on a descriptor that cannot be written) every command
//! that prints exits 1 and says on stderr that the output could not be
//! written; a write that was committed before its output failed says so.
//! A reader that went away (a closed pipe, `mstate events m | head -1`)
//! stays a normal, quiet end.

mod common;

use common::*;

use std::fs::File;
use std::path::Path;
use std::process::{Output, Stdio};

use serde_json::Value;

/// A store with state at revision 2 (so backups exist), an event, a
/// checkpoint `cp1`, a session and an orphan-free layout.
fn prepared() -> (tempfile::TempDir, String) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    ok(d, &["save", "m", r#"{"a": 1}"#]);
    ok(d, &["save", "m", r#"{"a": 2}"#]);
    ok(d, &["log", "m", "note", r#"{"n": 1}"#]);
    ok(d, &["checkpoint", "create", "m", "cp1"]);
    let pid = std::process::id().to_string();
    let sid = ok(d, &["session", "start", "m", "--owner-pid", &pid])
        .trim()
        .to_string();
    (t, sid)
}

/// Where the command's stdout goes.
enum Sink {
    /// `/dev/full`: every write fails with ENOSPC.
    Full,
    /// A file opened read-only: every write fails with EBADF.
    ReadOnly,
    /// A pipe whose reader is already gone: EPIPE.
    ClosedPipe,
}

fn run_to(dir: &Path, args: &[String], sink: &Sink) -> Output {
    let stdout: Stdio = match sink {
        Sink::Full => File::options()
            .write(true)
            .open("/dev/full")
            .unwrap()
            .into(),
        Sink::ReadOnly => {
            let p = dir.join("read-only-stdout");
            std::fs::write(&p, b"").unwrap();
            File::open(&p).unwrap().into()
        }
        Sink::ClosedPipe => {
            let (reader, writer) = rustix::pipe::pipe().unwrap();
            drop(reader);
            writer.into()
        }
    };
    cmd(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// Every command that prints something on stdout, with what it needs
/// from [`prepared`] (`$PID` is this test's pid, `$SID` the session).
const PRINTING: &[&str] = &[
    "init m2",
    "init m",
    r#"save m {"b":3}"#,
    "load m",
    "load m --envelope",
    "update m --set /a=5",
    r#"update m --merge {"c":1}"#,
    "list",
    "complete m",
    "backups m",
    "recover m",
    "checkpoint create m cp2",
    "checkpoint create m",
    "checkpoint list m",
    "checkpoint restore m cp1",
    "checkpoint delete m cp1",
    "lock acquire m --owner-pid $PID",
    "lock status m",
    "lock release m",
    "lock release m --force",
    "events m",
    "events m --format text",
    "events m --format json",
    "events m --tail 1 --reverse",
    "timeline m",
    "timeline m --format markdown",
    "timeline m --format json",
    "cleanup m",
    "cleanup m --dry-run --retention-days 0",
    "cleanup --all",
    "session start m --owner-pid $PID",
    "session end",
    "session end $SID",
    "session current",
    "session list",
    "session list --milestone m",
    "session show $SID",
    "completions bash",
    "completions zsh",
    "shell-init bash",
    "shell-init zsh",
    "--help",
    "--version",
    "save --help",
    "checkpoint --help",
];

/// Commands that print on stdout only with `--json`.
const JSON_ONLY: &[&str] = &[r#"log m note {"x":1}"#, "doctor", "doctor --repair"];

fn args(case: &str, sid: &str, json: bool) -> Vec<String> {
    let pid = std::process::id().to_string();
    let mut v: Vec<String> = case
        .split(' ')
        .map(|w| w.replace("$PID", &pid).replace("$SID", sid))
        .collect();
    let help = v.iter().any(|w| w == "--help" || w == "--version");
    if json && !help {
        v.push("--json".into());
    }
    v
}

/// Runs `case` on a fresh prepared store with stdout on `sink`.
fn attempt(case: &str, json: bool, sink: &Sink) -> (Vec<String>, Output, tempfile::TempDir) {
    let (t, sid) = prepared();
    if case.starts_with("lock release") {
        let pid = std::process::id().to_string();
        ok(t.path(), &["lock", "acquire", "m", "--owner-pid", &pid]);
    }
    if case.starts_with("recover") {
        // Something to recover: a valid state is left alone.
        std::fs::write(t.path().join(".milestones/state/active/m.json"), b"{").unwrap();
    }
    if case.starts_with("doctor --repair") {
        // Something to repair: a temp file of a writer that is gone.
        let tmp = t
            .path()
            .join(".milestones/state/active/m.json.tmp.4194303-1-0");
        std::fs::write(tmp, b"{").unwrap();
    }
    let a = args(case, &sid, json);
    let out = run_to(t.path(), &a, sink);
    (a, out, t)
}

/// Runs every case and collects the ones whose result `check` refuses.
fn check_all(
    cases: &[&str],
    json: bool,
    sink: Sink,
    check: impl Fn(&Output) -> Result<(), String>,
) {
    let mut failures = Vec::new();
    for case in cases {
        let (a, out, _t) = attempt(case, json, &sink);
        if let Err(why) = check(&out) {
            failures.push(format!(
                "mstate {}: {why}; exit {:?}, stderr: {}",
                a.join(" "),
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Exit 1, no panic, and stderr naming the failed output and its cause.
fn output_error(cause: &'static str) -> impl Fn(&Output) -> Result<(), String> {
    move |out: &Output| {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("panicked") {
            return Err("panicked".into());
        }
        if out.status.code() != Some(1) {
            return Err("expected exit 1".into());
        }
        if !err.contains("cannot write the output") || !err.contains(cause) {
            return Err(format!(
                "stderr does not say 'cannot write the output: {cause}'"
            ));
        }
        Ok(())
    }
}

/// Exit 0 and no error on stderr (status notes such as "m is now at
/// revision 3" are fine).
fn quiet_success(out: &Output) -> Result<(), String> {
    if out.status.code() != Some(0) {
        return Err("expected exit 0".into());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("error") || err.contains("panicked") {
        return Err("expected no error on stderr".into());
    }
    Ok(())
}

#[test]
fn every_printing_command_fails_when_stdout_is_full() {
    check_all(
        PRINTING,
        false,
        Sink::Full,
        output_error("No space left on device"),
    );
}

#[test]
fn every_json_output_fails_when_stdout_is_full() {
    let cases: Vec<&str> = PRINTING.iter().chain(JSON_ONLY).copied().collect();
    check_all(
        &cases,
        true,
        Sink::Full,
        output_error("No space left on device"),
    );
}

#[test]
fn a_stdout_that_cannot_be_written_is_an_error_too() {
    check_all(
        PRINTING,
        false,
        Sink::ReadOnly,
        output_error("Bad file descriptor"),
    );
}

#[test]
fn a_closed_pipe_is_a_quiet_normal_end() {
    check_all(PRINTING, false, Sink::ClosedPipe, quiet_success);
    check_all(JSON_ONLY, true, Sink::ClosedPipe, |out| {
        // doctor exits 1 on findings; a fresh store has none.
        quiet_success(out)
    });
}

#[test]
fn commands_that_print_nothing_still_succeed_on_a_full_stdout() {
    let cases = [r#"log m note {"x":1}"#, "doctor"];
    check_all(&cases, false, Sink::Full, |out| {
        if out.status.code() != Some(0) {
            return Err("expected exit 0".into());
        }
        Ok(())
    });
}

#[test]
fn a_committed_save_says_it_was_committed_when_its_output_fails() {
    for json in [false, true] {
        for (case, event) in [
            (r#"save m {"b":3}"#, "state_saved"),
            ("update m --set /a=5", "state_updated"),
        ] {
            let (a, out, t) = attempt(case, json, &Sink::Full);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{a:?}: {err}");
            assert!(err.contains("cannot write the output"), "{a:?}: {err}");
            // The state was committed as revision 3, and stderr says so.
            let env: Value =
                serde_json::from_str(&ok(t.path(), &["load", "m", "--envelope"])).unwrap();
            assert_eq!(env["revision"], 3, "{a:?}");
            assert!(
                err.contains("was committed") && err.contains("revision 3"),
                "{a:?}: stderr does not say the state was committed at revision 3: {err}"
            );
            let last = ok(t.path(), &["events", "m", "--tail", "1"]);
            assert!(last.contains(event), "{a:?}: {last}");
        }
    }
}

#[test]
fn a_committed_write_names_what_was_done_when_its_output_fails() {
    for (case, json, done) in [
        ("init m2", false, "initialized"),
        (
            "checkpoint create m cp2",
            false,
            "checkpoint 'cp2' of 'm' was created",
        ),
        ("checkpoint restore m cp1", false, "revision 3"),
        (
            "checkpoint delete m cp1",
            false,
            "checkpoint 'cp1' of 'm' was deleted",
        ),
        ("recover m", false, "revision 3"),
        ("complete m", false, "'m' is now completed"),
        ("session start m --owner-pid $PID", false, "session-"),
        ("session end", false, "was ended"),
        ("cleanup m", false, "cleanup of 'm' was done"),
        (
            r#"log m note {"x":1}"#,
            true,
            "appended to the log of 'm' as seq",
        ),
        ("doctor --repair", true, "1 of the findings were repaired"),
    ] {
        let (a, out, _t) = attempt(case, json, &Sink::Full);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{a:?}: {err}");
        assert!(
            err.contains("was committed") && err.contains(done),
            "{a:?}: stderr does not say that {done:?} was committed: {err}"
        );
    }
}
