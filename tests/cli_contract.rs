//! The command line's contract: with `--json` every error is one JSON
//! object on stderr whose `code` is the exit status and whose `kind` is
//! the exit-code table's; the table is one source (`mstate help
//! exit-codes`, `mstate --help`, README); every command's `--help` has
//! examples and lists only the options the command uses; duration and TTL
//! values are checked the same way everywhere; lock errors name the flag
//! the user set; a closed pipe is a normal end of every read command.

mod common;

use common::*;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Output, Stdio};

use serde_json::Value;

/// The exit-code table as the binary prints it with `--json`.
fn table() -> Vec<Value> {
    let t = tempfile::tempdir().unwrap();
    let out = ok(t.path(), &["help", "exit-codes", "--json"]);
    serde_json::from_str::<Value>(&out)
        .expect("help exit-codes --json is JSON")
        .as_array()
        .expect("an array")
        .clone()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Why `out` breaks the JSON error contract, if it does: stderr must be
/// exactly one line holding `{"error": {"kind", "code", "message"}}`
/// with `code` equal to the exit status and `kind` the table's for that
/// code; stdout must be empty or one whole JSON document.
fn json_error_problem(out: &Output, table: &[Value]) -> Option<String> {
    let status = out.status.code()?;
    if status == 0 {
        return Some("exit 0, expected an error".into());
    }
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != 1 {
        return Some(format!("stderr has {} lines, expected 1", lines.len()));
    }
    let Ok(v) = serde_json::from_str::<Value>(lines[0]) else {
        return Some("stderr is not JSON".into());
    };
    let e = &v["error"];
    if v.as_object().map(|o| o.len()) != Some(1) || !e.is_object() {
        return Some("stderr is not a {\"error\": {...}} object".into());
    }
    if e["code"].as_i64() != Some(i64::from(status)) {
        return Some(format!("error.code {} is not the exit status", e["code"]));
    }
    let kind = table
        .iter()
        .find(|k| k["code"].as_i64() == Some(i64::from(status)))
        .map(|k| k["kind"].clone());
    if kind.as_ref() != Some(&e["kind"]) {
        return Some(format!(
            "error.kind {} is not the table's {kind:?}",
            e["kind"]
        ));
    }
    if e["message"].as_str().is_none_or(|m| m.trim().is_empty()) {
        return Some("error.message is missing or empty".into());
    }
    let stdout = text(&out.stdout);
    if !stdout.trim().is_empty() && serde_json::from_str::<Value>(&stdout).is_err() {
        return Some(format!("stdout is not one whole JSON document: {stdout:?}"));
    }
    None
}

/// A live process that is not an ancestor of the commands run: a lock
/// taken for it is someone else's. Killed when dropped.
struct Holder(Child);

impl Holder {
    fn new() -> Holder {
        Holder(
            std::process::Command::new("cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("start cat"),
        )
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A store with `m` at revision 2, checkpoint `cp1`, milestone `held` (at
/// revision 2, one backup)
/// locked by a live process of someone else, and `bad` whose state file
/// is garbage with no backup.
fn prepared() -> (tempfile::TempDir, Holder) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    ok(d, &["save", "m", r#"{"a": 1}"#]);
    ok(d, &["save", "m", r#"{"a": 2}"#]);
    ok(d, &["checkpoint", "create", "m", "cp1"]);
    ok(d, &["save", "held", "{}"]);
    ok(d, &["save", "held", r#"{"a": 1}"#]);
    let holder = Holder::new();
    ok(
        d,
        &["lock", "acquire", "held", "--owner-pid", &holder.pid()],
    );
    ok(d, &["save", "bad", "{}"]);
    std::fs::write(d.join(".milestones/state/active/bad.json"), b"garbage").unwrap();
    (t, holder)
}

fn split(case: &str) -> Vec<String> {
    // Arguments are separated by spaces; `~` stands for a space inside one.
    case.split(' ').map(|w| w.replace('~', " ")).collect()
}

/// At least one error of every command and subcommand, with its exit code.
const ERRORS: &[(&str, i32)] = &[
    ("", 2),
    ("nosuch", 2),
    ("help nosuch", 2),
    ("init bad/id", 6),
    ("init held --lock-timeout 0", 5),
    ("save", 2),
    ("save m {", 6),
    ("save m {} --expect-revision 9", 4),
    ("save held {} --lock-timeout 0", 5),
    ("save m {} --bogus", 2),
    ("load nope", 3),
    ("load bad", 7),
    ("load m --lock-timeout abc", 6),
    ("update m", 2),
    ("update nope --set /a=1", 3),
    ("update m --set /a=1 --expect-revision 9", 4),
    ("list extra", 2),
    ("complete nope", 3),
    ("reopen m", 6),
    ("backups bad/id", 6),
    ("recover m --from nosuch", 3),
    ("recover held --from @HELD_BACKUP --lock-timeout 0", 5),
    ("checkpoint", 2),
    ("checkpoint create m cp1", 6),
    ("checkpoint list bad/id", 6),
    ("checkpoint restore m nope", 3),
    ("checkpoint restore m cp1 --expect-revision 9", 4),
    ("checkpoint delete m nope", 3),
    ("lock", 2),
    ("lock acquire held --timeout 0", 5),
    ("lock acquire m --ttl 0", 6),
    ("lock release held", 5),
    ("lock release m --force --if-stale", 2),
    ("lock status bad/id", 6),
    ("lock pin m --fd 9", 5),
    ("lock run held --timeout 0 -- true", 5),
    ("lock run m", 2),
    ("log m bad~type", 6),
    ("log m note {", 6),
    ("events m --since yesterday", 6),
    ("events m --format xml", 2),
    ("events m --limit 1 --tail 1", 2),
    ("timeline nope", 3),
    ("timeline m --format xml", 2),
    ("cleanup", 2),
    ("cleanup m --retention-days=-1", 6),
    ("session", 2),
    ("session start bad/id", 6),
    ("session end session-nope", 3),
    ("session current extra", 2),
    ("session list --status nosuch", 2),
    ("session show nope", 3),
    ("doctor --bogus", 2),
    ("shell-init nosh", 2),
    ("completions nosh", 2),
];

#[test]
fn every_error_under_json_is_one_json_object_with_the_exit_status() {
    let table = table();
    let (t, _holder) = prepared();
    // A valid state's recover reads only; a roll-back takes the lock.
    let backups: Value =
        serde_json::from_str(&ok(t.path(), &["--json", "backups", "held"])).unwrap();
    let held_backup = backups[0]["name"].as_str().unwrap().to_string();
    let mut failures = Vec::new();
    for (case, expected) in ERRORS {
        let case = &case.replace("@HELD_BACKUP", &held_backup);
        // `--json` first and last: both are the same request.
        for json_first in [true, false] {
            let mut args = split(case);
            if case.is_empty() {
                args.clear();
            }
            let at = match args.iter().position(|a| a == "--") {
                Some(i) if !json_first => i,
                _ if json_first => 0,
                _ => args.len(),
            };
            args.insert(at, "--json".into());
            let out = cmd(t.path()).args(&args).output().unwrap();
            let problem = if out.status.code() != Some(*expected) {
                Some(format!("exit {:?}, expected {expected}", out.status.code()))
            } else {
                json_error_problem(&out, &table)
            };
            if let Some(p) = problem {
                failures.push(format!(
                    "mstate {}: {p}; stderr: {}",
                    args.join(" "),
                    text(&out.stderr).trim()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn usage_errors_without_json_stay_text_with_exit_2() {
    let t = tempfile::tempdir().unwrap();
    for case in ["save", "nosuch", "events m --format xml", "list --bogus"] {
        let out = run(
            t.path(),
            &split(case).iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert_eq!(out.status.code(), Some(2), "{case}");
        let err = text(&out.stderr);
        assert!(err.starts_with("error: "), "{case}: {err}");
        assert!(out.stdout.is_empty(), "{case}");
    }
}

#[test]
fn a_json_after_the_end_of_options_is_not_a_request_for_json() {
    let t = tempfile::tempdir().unwrap();
    // `lock run m -- ...`: what follows `--` is the command's, not ours.
    let out = run(t.path(), &["lock", "run", "--", "echo", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn help_and_version_stay_text_on_stdout_under_json() {
    let t = tempfile::tempdir().unwrap();
    for case in [
        &["--json", "--help"][..],
        &["save", "--help", "--json"],
        &["--json", "help", "save"],
        &["--version", "--json"],
        &["help", "exit-codes"],
    ] {
        let out = run(t.path(), case);
        assert_eq!(out.status.code(), Some(0), "{case:?}");
        assert!(out.stderr.is_empty(), "{case:?}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(serde_json::from_str::<Value>(&stdout).is_err(), "{case:?}");
        assert!(
            stdout.contains("mstate") || stdout.contains("Exit codes"),
            "{case:?}"
        );
    }
}

/// Rows `(code, kind, meaning)` of README's exit-code table.
fn readme_rows() -> Vec<(i64, String, String)> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("\n## Exit codes\n")
        .nth(1)
        .expect("README has an Exit codes section");
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and |---|
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 3, "README row {l:?}");
            (
                cells[0].parse().expect("a code"),
                cells[1].trim_matches('`').to_string(),
                cells[2].to_string(),
            )
        })
        .collect()
}

#[test]
fn readme_exit_codes_are_the_binarys() {
    let binary: Vec<(i64, String, String)> = table()
        .iter()
        .map(|k| {
            (
                k["code"].as_i64().unwrap(),
                k["kind"].as_str().unwrap().to_string(),
                k["meaning"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(readme_rows(), binary);
    // And the text forms show every row of it.
    let t = tempfile::tempdir().unwrap();
    let topic = ok(t.path(), &["help", "exit-codes"]);
    let help = ok(t.path(), &["--help"]);
    for (code, kind, meaning) in &binary {
        for (what, s) in [("help exit-codes", &topic), ("--help", &help)] {
            assert!(
                s.lines().any(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    w.len() > 2
                        && w[0] == code.to_string()
                        && w[1] == kind
                        && l.trim_end().ends_with(meaning.as_str())
                }),
                "{what} lacks {code} {kind} {meaning}:\n{s}"
            );
        }
    }
}

/// Every command path (`save`, `lock acquire`), from the help texts.
fn command_paths(dir: &Path) -> Vec<String> {
    fn commands(help: &str) -> Vec<String> {
        help.split("\nCommands:\n")
            .nth(1)
            .map(|rest| {
                rest.lines()
                    .take_while(|l| l.starts_with("  "))
                    // A wrapped description is indented further.
                    .filter(|l| !l.starts_with("   "))
                    .filter_map(|l| l.split_whitespace().next())
                    .filter(|c| *c != "help")
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
    let mut paths = Vec::new();
    for c in commands(&ok(dir, &["--help"])) {
        let subs = commands(&ok(dir, &[&c, "--help"]));
        paths.push(c.clone());
        paths.extend(subs.iter().map(|s| format!("{c} {s}")));
    }
    paths
}

/// The commands that can wait for a milestone's lock.
const LOCKING: &[&str] = &[
    "init",
    "save",
    "load",
    "update",
    "complete",
    "reopen",
    "recover",
    "checkpoint create",
    "checkpoint restore",
    "lock acquire",
    "lock run",
    "session end",
];

/// The commands that can write (and so prune) backups.
const BACKING_UP: &[&str] = &[
    "save",
    "load",
    "update",
    "recover",
    "checkpoint restore",
    "doctor",
];

#[test]
fn every_help_has_examples_and_only_the_options_its_command_uses() {
    let t = tempfile::tempdir().unwrap();
    let paths = command_paths(t.path());
    assert!(paths.len() > 30, "{paths:?}");
    let mut failures = Vec::new();
    for path in &paths {
        let mut args: Vec<&str> = path.split(' ').collect();
        args.push("--help");
        let out = run(t.path(), &args);
        let help = text(&out.stdout);
        let mut fail = |why: String| failures.push(format!("mstate {path} --help: {why}"));
        if out.status.code() != Some(0) {
            fail(format!("exit {:?}", out.status.code()));
            continue;
        }
        let example = format!("mstate {path}");
        let is_example = |l: &str| {
            let l = l.trim();
            l == example || l.starts_with(&format!("{example} "))
        };
        if !help.lines().any(is_example) {
            fail(format!("no example line starting with {example:?}"));
        }
        for (flag, users) in [("--lock-timeout", LOCKING), ("--max-backups", BACKING_UP)] {
            let listed = help.lines().any(|l| l.trim_start().starts_with(flag));
            if listed != users.contains(&path.as_str()) {
                fail(format!("lists {flag}: {listed}, expected {}", !listed));
            }
        }
        if help.contains("=]") {
            fail("an empty [env: NAME=]".into());
        }
        // One layout: --help is -h (no long help with another layout).
        args.pop();
        args.push("-h");
        if text(&run(t.path(), &args).stdout) != help {
            fail("-h and --help differ (long help has another layout)".into());
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    let save = ok(t.path(), &["save", "--help"]);
    let flat = save.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("[env: MSTATE_LOCK_TIMEOUT] [default: 30]"),
        "{save}"
    );
    assert!(
        flat.contains("[env: MSTATE_MAX_BACKUPS] [default: 50]"),
        "{save}"
    );
}

/// After the name of a command that does not use them, `--lock-timeout`
/// and `--max-backups` are no options of it (exit 2). Before the name they
/// are the top level's, which a wrapper may pass to every command: checked
/// (a bad value is exit 6 even where unused) and otherwise without effect.
#[test]
fn options_a_command_does_not_use_are_usage_errors() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    for (case, expected) in [
        ("--lock-timeout abc list", 6),
        ("--lock-timeout abc completions bash", 6),
        ("--max-backups x shell-init bash", 6),
        ("--max-backups 3 lock status m", 0),
        ("--lock-timeout 5 list", 0),
        ("--lock-timeout 5 completions bash", 0),
    ] {
        let out = run(
            d,
            &split(case).iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{case}: {}",
            text(&out.stderr)
        );
        assert_eq!(out.stdout.is_empty(), expected != 0, "{case}");
    }
    for case in [
        "list --lock-timeout abc",
        "list --lock-timeout 5",
        "events m --lock-timeout 5",
        "completions bash --lock-timeout 5",
        "shell-init bash --max-backups 3",
        "lock status m --lock-timeout 5",
    ] {
        let out = run(
            d,
            &split(case).iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert_eq!(out.status.code(), Some(2), "{case}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "{case}");
    }
}

#[test]
fn the_options_work_where_they_are_used_before_or_after_the_command() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["--lock-timeout", "5", "save", "m", "{}"]);
    ok(d, &["save", "m", "{}", "--lock-timeout", "1.5"]);
    ok(d, &["--max-backups", "1", "save", "m", "{}"]);
    ok(d, &["save", "m", "{}", "--max-backups", "1"]);
    let backups: Value = serde_json::from_str(&ok(d, &["backups", "m", "--json"])).unwrap();
    assert_eq!(backups.as_array().map(Vec::len), Some(1), "{backups}");
    ok(
        d,
        &[
            "--lock-timeout",
            "500ms",
            "lock",
            "acquire",
            "m",
            "--owner-pid",
            &std::process::id().to_string(),
        ],
    );
    ok(d, &["lock", "release", "m", "--force"]);
    // From the environment too.
    let out = run_env(d, &["save", "m", "{}"], &[("MSTATE_MAX_BACKUPS", "2")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_bad_environment_value_fails_the_commands_that_use_it_only() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    for (var, using, other) in [
        (
            "MSTATE_LOCK_TIMEOUT",
            &["save", "m", "{}"][..],
            &["list", "--json"][..],
        ),
        (
            "MSTATE_MAX_BACKUPS",
            &["save", "m", "{}"],
            &["lock", "status", "m"],
        ),
    ] {
        let out = run_env(d, using, &[(var, "abc")]);
        assert_eq!(out.status.code(), Some(6), "{var}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(var), "{}", text(&out.stderr));
        let out = run_env(d, other, &[(var, "abc")]);
        assert_eq!(out.status.code(), Some(0), "{var}: {}", text(&out.stderr));
    }
    let out = run_env(
        d,
        &["load", "m", "--json"],
        &[("MSTATE_LOCK_TIMEOUT", "abc")],
    );
    assert_eq!(out.status.code(), Some(6));
    let v: Value = serde_json::from_str(text(&out.stderr).trim()).unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("MSTATE_LOCK_TIMEOUT"));
}

#[test]
fn durations_are_seconds_or_a_number_with_a_unit_and_the_message_says_so() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    let pid = std::process::id().to_string();
    for flags in [
        &["save", "m", "{}", "--lock-timeout"][..],
        &["lock", "acquire", "m", "--owner-pid", &pid, "--timeout"],
        &["lock", "acquire", "m", "--owner-pid", &pid, "--ttl"],
        &["lock", "run", "m", "--timeout"],
        &["lock", "run", "m", "--ttl"],
    ] {
        let with = |value: &str| {
            let mut a = flags.to_vec();
            a.push(value);
            if a[1] == "run" {
                a.extend(["--", "true"]);
            }
            let out = run(d, &a);
            if a[1] == "acquire" {
                ok(d, &["lock", "release", "m", "--force"]);
            }
            out
        };
        for good in ["1.5", "30", "500ms", "2m"] {
            let out = with(good);
            assert!(
                out.status.success(),
                "{flags:?} {good}: {}",
                text(&out.stderr)
            );
        }
        let out = with("abc");
        assert_eq!(out.status.code(), Some(6), "{flags:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("a number of seconds (30, 1.5) or a duration with a unit (500ms, 2m"),
            "{flags:?}: {err}"
        );
    }
}

#[test]
fn a_ttl_must_be_positive() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    let pid = std::process::id().to_string();
    for ttl in ["0", "0s", "0ms", "0.0"] {
        for args in [
            &["lock", "acquire", "m", "--owner-pid", &pid, "--ttl", ttl][..],
            &["lock", "run", "m", "--ttl", ttl, "--", "true"],
        ] {
            let out = run(d, args);
            assert_eq!(out.status.code(), Some(6), "{args:?}");
            assert!(
                text(&out.stderr).contains("must be positive"),
                "{}",
                text(&out.stderr)
            );
        }
    }
    // Nothing was taken.
    assert!(ok(d, &["lock", "status", "m"]).contains("unlocked"));
}

#[test]
fn lock_errors_read_well_and_name_the_flag_the_user_set() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    let holder = Holder::new();
    ok(d, &["lock", "acquire", "m", "--owner-pid", &holder.pid()]);

    let out = run(d, &["lock", "release", "m"]);
    assert_eq!(out.status.code(), Some(5));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("is held by pid {} (", holder.pid()))
            && err.contains("not by this process"),
        "{err}"
    );
    assert!(!err.contains("not held by this process by"), "{err}");

    for (args, env, named, not_named) in [
        (
            &["lock", "acquire", "m", "--timeout", "0"][..],
            None,
            "--timeout",
            "--lock-timeout",
        ),
        (
            &["lock", "run", "m", "--timeout", "0", "--", "true"],
            None,
            "--timeout",
            "--lock-timeout",
        ),
        (
            &["save", "m", "{}", "--lock-timeout", "0"],
            None,
            "--lock-timeout",
            "--timeout ",
        ),
        (
            &["lock", "acquire", "m"],
            Some("0"),
            "MSTATE_LOCK_TIMEOUT",
            "--timeout ",
        ),
        (
            &["update", "m", "--set", "/a=1"],
            Some("0"),
            "MSTATE_LOCK_TIMEOUT",
            "--timeout ",
        ),
    ] {
        let env: Vec<(&str, &str)> = env
            .map(|v| ("MSTATE_LOCK_TIMEOUT", v))
            .into_iter()
            .collect();
        let out = run_env(d, args, &env);
        assert_eq!(out.status.code(), Some(5), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("retry with a longer {named}")) || err.contains(named),
            "{args:?}: {err}"
        );
        assert!(err.contains("retry with a longer"), "{args:?}: {err}");
        assert!(
            !err.contains(not_named),
            "{args:?}: names {not_named}: {err}"
        );
    }
}

/// Read commands: each must end normally on a closed pipe.
const READS: &[&str] = &[
    "load m",
    "load m --envelope",
    "load m --json",
    "list",
    "list --json",
    "backups m",
    "backups m --json",
    "checkpoint list m",
    "checkpoint list m --json",
    "lock status m",
    "lock status m --json",
    "events m",
    "events m --format text",
    "events m --json",
    "timeline m",
    "timeline m --format markdown",
    "timeline m --json",
    "session current",
    "session list",
    "session list --json",
    "doctor --json",
    "completions bash",
    "completions zsh",
    "shell-init bash",
    "shell-init zsh",
    "--help",
    "save --help",
    "events --help",
    "help save",
    "help exit-codes",
    "help exit-codes --json",
    "--version",
];

#[test]
fn a_closed_pipe_ends_every_read_command_normally() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    for i in 0..50 {
        ok(
            d,
            &[
                "save",
                "m",
                &format!(r#"{{"i": {i}, "pad": "{}"}}"#, "x".repeat(2000)),
            ],
        );
    }
    ok(d, &["checkpoint", "create", "m", "cp1"]);
    let pid = std::process::id().to_string();
    ok(d, &["session", "start", "m", "--owner-pid", &pid]);
    let mut failures = Vec::new();
    for case in READS {
        // The reader is gone before the command starts: its first write
        // fails with EPIPE.
        let (reader, writer) = rustix::pipe::pipe().unwrap();
        drop(reader);
        let out = cmd(d)
            .args(split(case))
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        if out.status.code() != Some(0)
            || err.contains("panicked")
            || err.contains("BrokenPipe")
            || err.to_lowercase().contains("broken pipe")
        {
            failures.push(format!(
                "mstate {case}: exit {:?}, stderr: {err}",
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// `mstate save --help` as committed in `tests/fixtures/help/save.txt`
/// (at 100 columns); `MSTATE_BLESS=1` writes the fixture anew.
#[test]
fn save_help_is_as_committed() {
    let t = tempfile::tempdir().unwrap();
    let out = run_env(t.path(), &["save", "--help"], &[("COLUMNS", "100")]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/help/save.txt");
    if std::env::var("MSTATE_BLESS").as_deref() == Ok("1") {
        std::fs::create_dir_all(fixture.parent().unwrap()).unwrap();
        std::fs::write(&fixture, &help).unwrap();
    }
    let expected =
        std::fs::read_to_string(&fixture).expect("the fixture (MSTATE_BLESS=1 writes it)");
    assert_eq!(help, expected);
}

#[test]
fn every_kind_in_the_table_is_distinct_and_covers_the_documented_codes() {
    let table = table();
    let codes: BTreeSet<i64> = table.iter().filter_map(|k| k["code"].as_i64()).collect();
    let kinds: BTreeSet<&str> = table.iter().filter_map(|k| k["kind"].as_str()).collect();
    assert_eq!(codes, (0..=7).collect());
    assert_eq!(kinds.len(), table.len());
}

#[test]
fn a_command_lock_run_cannot_start_is_a_json_error_under_json() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    let out = run(
        d,
        &["lock", "run", "m", "--json", "--", "./no-such-program"],
    );
    assert_eq!(out.status.code(), Some(127));
    let err = text(&out.stderr);
    let v: Value = serde_json::from_str(err.trim()).expect("one JSON object on stderr");
    assert_eq!(v["error"]["code"], 127, "{err}");
    assert_eq!(v["error"]["kind"], "failure", "{err}");
    assert!(out.stdout.is_empty());
}

/// A command group named without its subcommand is a short error naming
/// the subcommands, not the group's whole help flattened into one line.
#[test]
fn a_group_without_its_subcommand_names_the_subcommands() {
    let t = tempfile::tempdir().unwrap();
    for (group, some) in [
        ("lock", "acquire"),
        ("checkpoint", "restore"),
        ("session", "start"),
    ] {
        let out = cmd(t.path()).args(["--json", group]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{group}");
        let v: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(some), "{group}: {message}");
        assert!(!message.contains("Options:"), "{group}: {message}");
        assert!(!message.contains("__gate"), "{group}: {message}");
    }
}

/// `doctor` with findings left exits 1 under `--json` like any failure:
/// its report is the one document on stdout, and stderr holds the error
/// object.
#[test]
fn doctor_findings_under_json_come_with_an_error_object() {
    let (t, _holder) = prepared();
    let out = cmd(t.path()).args(["--json", "doctor"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report is JSON");
    assert_eq!(report["clean"], Value::Bool(false), "{report}");
    assert_eq!(json_error_problem(&out, &table()), None);
}
