//! Revisions, recovery and commit points, attacked from outside: the
//! seed's own functions (`tests/fixtures/seed_original.sh`, verbatim)
//! writing the same state files as mstate, corrupt files, the nesting
//! limit, and the real binary killed (`strace -e inject=SYSCALL:signal=KILL`)
//! or failed (`inject=SYSCALL:error=ERRNO`) at chosen system calls.
//!
//! What must hold:
//! - every change of a state file, whoever made it, is a new revision and
//!   revisions never go back;
//! - `--expect-revision` never succeeds over a change the caller did not
//!   see, and a reload and retry converges;
//! - recovery and restore write a revision above every revision issued;
//! - a corrupt state is replaced without a moment with no state file;
//! - a command whose state change was committed exits 0 (with a warning)
//!   when only its event could not be logged, and doctor reports it;
//! - the state may nest exactly 128 levels in every path, never more.

mod common;

use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn seed_ok(dir: &Path, script: &str) {
    let out = seed(dir, script);
    assert!(
        out.status.success(),
        "seed {script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

fn state_file(d: &Path) -> PathBuf {
    d.join(".milestones/state/active/m.json")
}

/// The revision `save`/`update` printed.
fn rev(out: &str) -> u64 {
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a revision: {out:?}"))
}

fn envelope(d: &Path) -> Value {
    json(&ok(d, &["load", "m", "--envelope"]))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---- 3: seed writers and revisions ----

#[test]
fn a_seed_save_between_two_mstate_saves_moves_the_revision_on() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert_eq!(rev(&ok(d, &["save", "m", r#"{"n": 1}"#])), 1);
    seed_ok(d, r#"save_milestone_state m '{"n": 2, "by": "seed"}'"#);
    let r = rev(&ok(d, &["save", "m", r#"{"n": 3}"#]));
    // The seed's write was a change: it has a revision of its own (2).
    assert!(r > 2, "mstate save after a seed save printed revision {r}");
    assert_eq!(envelope(d)["revision"], r);
    // The seed's state is kept as a backup of its own revision.
    let backups: Vec<Value> = serde_json::from_str(&ok(d, &["--json", "backups", "m"])).unwrap();
    assert!(
        backups.iter().any(|b| {
            b["name"]
                .as_str()
                .unwrap()
                .ends_with(&format!("-r{}.json", r - 1))
                && b["revision"] == r - 1
        }),
        "{backups:?}"
    );
}

#[test]
fn a_stale_expect_revision_never_passes_over_seed_saves() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", r#"{"n": 0}"#]);
    assert_eq!(rev(&ok(d, &["save", "m", r#"{"n": 1}"#])), 2);
    let out = run(
        d,
        &["save", "m", r#"{"lost": 0}"#, "--expect-revision", "1"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    // A reader sees the seed's first save, then the seed saves again.
    seed_ok(d, r#"save_milestone_state m '{"seed": 0}'"#);
    let seen = envelope(d)["revision"].as_u64().unwrap();
    seed_ok(d, r#"save_milestone_state m '{"seed": 1}'"#);
    let out = run(
        d,
        &[
            "save",
            "m",
            r#"{"lost": 1}"#,
            "--expect-revision",
            &seen.to_string(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "a CAS passed over a seed save: {}",
        stderr(&out)
    );
    for stale in [0, 1, 2] {
        let out = run(
            d,
            &[
                "save",
                "m",
                r#"{"lost": 2}"#,
                "--expect-revision",
                &stale.to_string(),
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(4),
            "expect {stale}: {}",
            stderr(&out)
        );
    }
    let env = envelope(d);
    assert_eq!(env["state"]["seed"], 1, "the seed's write was lost");
    // Reload and retry converges: the conflict numbered the seed's file.
    let seen = env["revision"].as_u64().unwrap();
    assert!(seen > 2, "{env}");
    let r = rev(&ok(
        d,
        &[
            "save",
            "m",
            r#"{"n": 9}"#,
            "--expect-revision",
            &seen.to_string(),
        ],
    ));
    assert_eq!(r, seen + 1);
    // `--expect-revision 0` means "no state yet": never true of a seed file.
    seed_ok(d, r#"save_milestone_state m '{"seed": "again"}'"#);
    assert_eq!(code(d, &["save", "m", "{}", "--expect-revision", "0"]), 4);
    assert_eq!(envelope(d)["state"]["seed"], "again");
}

#[test]
fn seed_restores_of_old_files_are_new_revisions() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", r#"{"v": 1}"#]);
    ok(d, &["save", "m", r#"{"v": 2}"#]);
    ok(d, &["checkpoint", "create", "m", "two"]);
    for v in 3..=5 {
        ok(d, &["save", "m", &format!(r#"{{"v": {v}}}"#)]);
    }
    // The seed copies the old file (revision 2) into place.
    seed_ok(d, "restore_from_checkpoint m two");
    assert_eq!(envelope(d)["state"]["v"], 2);
    for stale in ["2", "5"] {
        let out = run(
            d,
            &["save", "m", r#"{"v": "x"}"#, "--expect-revision", stale],
        );
        assert_eq!(
            out.status.code(),
            Some(4),
            "expect {stale}: {}",
            stderr(&out)
        );
    }
    let seen = envelope(d)["revision"].as_u64().unwrap();
    assert!(seen > 5, "the seed's restore is revision {seen}");
    assert_eq!(envelope(d)["state"]["v"], 2);
    let r = rev(&ok(
        d,
        &[
            "save",
            "m",
            r#"{"v": 6}"#,
            "--expect-revision",
            &seen.to_string(),
        ],
    ));
    assert!(r > seen);

    // The seed's recovery copies the newest backup into place.
    std::fs::write(state_file(d), b"{broken").unwrap();
    seed_ok(d, "recover_milestone_state m");
    let restored = envelope(d);
    let out = run(
        d,
        &[
            "save",
            "m",
            "{}",
            "--expect-revision",
            &restored["revision"].to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    // A plain save after it goes above everything issued.
    let r2 = rev(&ok(d, &["save", "m", r#"{"v": 7}"#]));
    assert!(
        r2 > r + 1,
        "save after the seed's recovery printed {r2} (last issued {r})"
    );
}

// ---- 4: recovery never reuses a revision ----

#[test]
fn recovery_writes_above_the_revision_that_was_lost() {
    for how in ["load", "recover", "update", "doctor"] {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        for v in 1..=3 {
            ok(d, &["save", "m", &format!(r#"{{"v": {v}}}"#)]);
        }
        std::fs::write(state_file(d), b"{\"timestamp\": tru").unwrap();
        match how {
            "load" => {
                ok(d, &["load", "m"]);
            }
            "recover" => {
                ok(d, &["recover", "m"]);
            }
            "update" => {
                // An update refuses a corrupt state; recover first.
                assert_eq!(code(d, &["update", "m", "--merge", "{}"]), 7);
                ok(d, &["recover", "m"]);
            }
            _ => {
                run(d, &["doctor", "--repair"]);
            }
        }
        let env = envelope(d);
        assert_eq!(env["state"]["v"], 2, "{how}");
        let r = env["revision"].as_u64().unwrap();
        assert!(
            r > 3,
            "{how}: recovered as revision {r}, revision 3 was issued"
        );
        assert_eq!(
            code(d, &["save", "m", "{}", "--expect-revision", "3"]),
            4,
            "{how}: a CAS at the lost revision passed"
        );
    }
}

#[test]
fn a_save_over_a_corrupt_state_with_no_backup_is_a_new_revision() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert_eq!(rev(&ok(d, &["save", "m", r#"{"v": 1}"#])), 1);
    std::fs::write(state_file(d), b"garbage").unwrap();
    assert_eq!(code(d, &["load", "m"]), 7);
    assert_eq!(rev(&ok(d, &["save", "m", r#"{"v": 2}"#])), 2);
    // Still with no backup of a valid revision above it: the counter holds.
    std::fs::write(state_file(d), b"garbage").unwrap();
    let _ = std::fs::remove_dir_all(d.join(".milestones/state/backups"));
    std::fs::create_dir(d.join(".milestones/state/backups")).unwrap();
    assert_eq!(rev(&ok(d, &["save", "m", r#"{"v": 3}"#])), 3);
}

#[test]
fn a_checkpoint_restore_is_above_every_revision() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", r#"{"v": 1}"#]);
    ok(d, &["checkpoint", "create", "m", "one"]);
    ok(d, &["save", "m", r#"{"v": 2}"#]);
    ok(d, &["save", "m", r#"{"v": 3}"#]);
    std::fs::write(state_file(d), b"{").unwrap();
    ok(d, &["checkpoint", "restore", "m", "one"]);
    let env = envelope(d);
    assert_eq!(env["state"]["v"], 1);
    assert!(env["revision"].as_u64().unwrap() > 3, "{env}");
}

// ---- 15: conflicts and failed recoveries change nothing ----

#[test]
fn a_conflicting_checkpoint_restore_creates_nothing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", r#"{"v": 1}"#]);
    ok(d, &["checkpoint", "create", "m", "one"]);
    ok(d, &["save", "m", r#"{"v": 2}"#]);
    let before = ok(d, &["checkpoint", "list", "m"]);
    let out = run(
        d,
        &[
            "checkpoint",
            "restore",
            "m",
            "one",
            "--expect-revision",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(
        ok(d, &["checkpoint", "list", "m"]),
        before,
        "a conflict left a checkpoint"
    );
    assert_eq!(envelope(d)["state"]["v"], 2);
}

// ---- 12/15: one nesting limit, 128 levels of state ----

/// JSON text without its layout (for values too deep for the test's parser).
fn compact(s: &str) -> String {
    s.split_whitespace().collect()
}

fn nested(levels: usize) -> String {
    "[".repeat(levels) + &"]".repeat(levels)
}

#[test]
fn a_state_of_exactly_128_levels_works_everywhere_and_129_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let out = run(d, &["save", "m", &nested(129)]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(!state_file(d).exists());
    for levels in [127, 128] {
        ok(d, &["save", "m", &nested(levels)]);
        assert_eq!(compact(&ok(d, &["load", "m"])), nested(levels));
        ok(
            d,
            &["update", "m", "--set", &format!("={}", nested(levels))],
        );
        ok(d, &["checkpoint", "create", "m", "deep", "--force"]);
        ok(d, &["recover", "m"]);
        ok(d, &["checkpoint", "restore", "m", "deep"]);
        let doc = run(d, &["doctor"]);
        assert!(
            doc.status.success(),
            "{levels}: {}",
            String::from_utf8_lossy(&doc.stdout)
        );
        assert_eq!(compact(&ok(d, &["load", "m"])), nested(levels));
    }
    // Through stdin too, and an update may not make it deeper.
    let out = run_stdin(d, &["save", "m", "-"], nested(129).as_bytes());
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let before = std::fs::read(state_file(d)).unwrap();
    let out = run(d, &["update", "m", "--set", &format!("/0={}", nested(1))]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before2 = std::fs::read(state_file(d)).unwrap();
    assert_ne!(before, before2);
    let out = run(
        d,
        &["update", "m", "--merge", &format!("[{}]", nested(128))],
    );
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert_eq!(std::fs::read(state_file(d)).unwrap(), before2);
}

#[test]
fn a_deep_set_pointer_is_refused_and_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", r#"{"a": 1}"#]);
    let before = std::fs::read(state_file(d)).unwrap();
    for levels in [129, 3_000, 60_000] {
        let pointer = "/x".repeat(levels);
        let started = std::time::Instant::now();
        let out = run(d, &["update", "m", "--set", &format!("{pointer}=1")]);
        assert_eq!(out.status.code(), Some(6), "{levels}: {}", stderr(&out));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(std::fs::read(state_file(d)).unwrap(), before);
    }
    // 127 steps and a value: 128 levels of state, accepted.
    let pointer = "/x".repeat(127);
    ok(d, &["update", "m", "--set", &format!("{pointer}=[]")]);
    ok(d, &["update", "m", "--set", "/a=2"]);
    assert!(run(d, &["doctor"]).status.success());
}

// ---- 9: replacing a corrupt state, killed at every system call ----

/// The syscalls a command changes the store with. `openat` and `write`
/// (most of the calls, the loader's and `/proc` reads among them) are
/// killed at too with `MSTATE_STRESS=full`.
fn writing() -> &'static str {
    if std::env::var("MSTATE_STRESS").is_ok_and(|v| v == "full") {
        "openat,write,linkat,rename,renameat2,unlink,unlinkat,mkdir,rmdir,fdatasync,fsync,flock"
    } else {
        "linkat,rename,renameat2,unlink,unlinkat,mkdir,rmdir,fdatasync,fsync,flock"
    }
}

/// The syscalls fault injection needs counted (the event append's).
const COUNTED: &str = "fdatasync,flock";

fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// (syscall, how many times) a command made of the syscalls in `set`,
/// traced on a copy of `template`.
fn syscall_counts(template: &Path, args: &[&str], set: &str) -> Vec<(String, usize)> {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("w");
    copy_tree(template, &d);
    let trace = t.path().join("trace");
    Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .args(["-e", &format!("trace={set}")])
        .arg(bin())
        .args(args)
        .current_dir(&d)
        .env_remove("MSTATE_DIR")
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&trace).unwrap();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for name in set.split(',') {
        let n = text
            .lines()
            .filter(|l| l.contains(&format!("{name}(")) && !l.contains("resumed"))
            .count();
        if n > 0 {
            counts.push((name.to_string(), n));
        }
    }
    counts
}

/// Run `mstate ARGS` in `dir` under strace with `inject`.
fn injected(dir: &Path, inject: &str, args: &[&str]) -> Output {
    Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            &format!("inject={inject}"),
        ])
        .arg(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("MSTATE_DIR")
        .env_remove("MSTATE_SESSION")
        .env_remove("MSTATE_LOCK_TIMEOUT")
        .env_remove("MSTATE_MAX_BACKUPS")
        .output()
        .unwrap()
}

/// A store with revisions 1..=3 saved and the state file corrupt.
fn corrupt_template(root: &Path) -> PathBuf {
    let d = root.join("template");
    std::fs::create_dir(&d).unwrap();
    for v in 1..=3 {
        ok(&d, &["save", "m", &format!(r#"{{"v": {v}}}"#)]);
    }
    ok(&d, &["checkpoint", "create", "m", "three"]);
    std::fs::write(state_file(&d), b"{\"v\": 3, trunc").unwrap();
    d
}

#[test]
fn replacing_a_corrupt_state_killed_at_any_call_leaves_a_state_file() {
    if !have_tool("strace") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let template = corrupt_template(root.path());
    let ops: [&[&str]; 5] = [
        &["load", "m"],
        &["save", "m", r#"{"v": 9}"#],
        &["recover", "m"],
        &["checkpoint", "restore", "m", "three"],
        &["doctor", "--repair"],
    ];
    // Every (command, syscall, n) is a case of its own, run on a fresh
    // copy; cases run on a few threads.
    let mut points = Vec::new();
    for op in ops {
        let counts = syscall_counts(&template, op, writing());
        assert!(!counts.is_empty(), "{op:?}: strace saw nothing");
        for (name, n) in counts {
            points.extend((1..=n).map(|when| (op, name.clone(), when)));
        }
    }
    let cases = points.len();
    // Failures are gathered, the missing state files first.
    let missing = std::sync::Mutex::new(Vec::new());
    let reused = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for (k, chunk) in points.chunks(cases.div_ceil(4)).enumerate() {
            let (root, template, missing, reused) = (root.path(), &template, &missing, &reused);
            scope.spawn(move || {
                for (i, (op, name, when)) in chunk.iter().enumerate() {
                    let d = root.join(format!("case-{k}-{i}"));
                    copy_tree(template, &d);
                    injected(&d, &format!("{name}:signal=KILL:when={when}"), op);
                    let ctx = format!("{op:?} killed at {name} #{when}");
                    if !state_file(&d).exists() {
                        missing
                            .lock()
                            .unwrap()
                            .push(format!("{ctx}: no state file"));
                    }
                    let load = run(&d, &["load", "m", "--envelope"]);
                    if !load.status.success() {
                        missing
                            .lock()
                            .unwrap()
                            .push(format!("{ctx}: load: {}", stderr(&load)));
                    } else {
                        let env = json(&String::from_utf8_lossy(&load.stdout));
                        if env["revision"].as_u64().is_none_or(|r| r <= 3) {
                            reused.lock().unwrap().push(format!("{ctx}: {env}"));
                        }
                    }
                    let _ = std::fs::remove_dir_all(&d);
                }
            });
        }
    });
    let (missing, reused) = (missing.into_inner().unwrap(), reused.into_inner().unwrap());
    assert!(
        missing.is_empty(),
        "{} of {cases} kills:\n{}",
        missing.len(),
        missing.join("\n")
    );
    assert!(reused.is_empty(), "revision reused:\n{}", reused.join("\n"));
    eprintln!("kill cases: {cases}");
}

#[test]
fn a_failed_recover_leaves_the_state_file_in_place() {
    if !have_tool("strace") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let template = corrupt_template(root.path());
    let corrupt = std::fs::read(state_file(&template)).unwrap();
    // Fail the creation of the new state's temp file (the second openat
    // under active/ is it; inject into every openat with O_EXCL's errno).
    let d = root.path().join("w");
    copy_tree(&template, &d);
    let out = injected(&d, "fdatasync:error=EIO:when=1", &["recover", "m"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(state_file(&d)).ok(),
        Some(corrupt),
        "a failed recover moved the state file away"
    );
    let kept: Vec<_> = std::fs::read_dir(d.join(".milestones/state/active"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupted."))
        .collect();
    assert!(kept.is_empty(), "a failed recover left {kept:?}");
    let r = rev(&ok(&d, &["save", "m", r#"{"v": 4}"#]));
    assert!(r > 3, "the save after a failed recover printed {r}");
}

// ---- 11/15: a committed change whose event failed is a success ----

/// Count of `syscall` calls `mstate ARGS` makes on a copy of `template`.
fn count_of(template: &Path, args: &[&str], syscall: &str) -> usize {
    syscall_counts(template, args, COUNTED)
        .into_iter()
        .find(|(n, _)| n == syscall)
        .map_or(0, |(_, n)| n)
}

#[test]
fn a_committed_change_whose_event_failed_exits_zero_with_a_warning() {
    if !have_tool("strace") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let template = root.path().join("template");
    std::fs::create_dir(&template).unwrap();
    ok(&template, &["save", "m", r#"{"v": 1}"#]);
    ok(&template, &["checkpoint", "create", "m", "one"]);
    ok(&template, &["save", "m", r#"{"v": 2}"#]);
    // `recover` leaves a valid state alone: roll back by naming the backup.
    let backups = json(&ok(&template, &["--json", "backups", "m"]));
    let backup = backups[0]["name"].as_str().expect("a backup").to_string();
    type Check = fn(&Path);
    let cases: [(&[&str], Check); 8] = [
        (&["save", "m", r#"{"v": 3}"#], |d| {
            assert_eq!(envelope(d)["state"]["v"], 3)
        }),
        (&["update", "m", "--merge", r#"{"v": 3}"#], |d| {
            assert_eq!(envelope(d)["state"]["v"], 3)
        }),
        (&["complete", "m"], |d| {
            assert!(d.join(".milestones/state/completed/m.json").exists())
        }),
        (&["checkpoint", "create", "m", "two"], |d| {
            assert!(ok(d, &["checkpoint", "list", "m"]).contains("two"))
        }),
        (&["checkpoint", "restore", "m", "one"], |d| {
            assert_eq!(envelope(d)["state"]["v"], 1)
        }),
        (&["checkpoint", "delete", "m", "one"], |d| {
            assert!(!ok(d, &["checkpoint", "list", "m"]).contains("one"))
        }),
        (&["recover", "m", "--from", &backup], |d| {
            assert_eq!(envelope(d)["state"]["v"], 1)
        }),
        (&["--json", "save", "m", r#"{"v": 3}"#], |d| {
            assert_eq!(envelope(d)["state"]["v"], 3)
        }),
    ];
    for (args, check) in cases {
        // The event append is the last flock-ed write: fail its fdatasync
        // (the last one the command makes) and, separately, its flock.
        let syncs = count_of(&template, args, "fdatasync");
        let flocks = count_of(&template, args, "flock");
        assert!(syncs > 0 && flocks > 0, "{args:?}");
        for inject in [
            // From the last one on: the log retries a failed sync once.
            format!("fdatasync:error=EIO:when={syncs}+"),
            format!("flock:error=EIO:when={}", flocks - 1),
        ] {
            let t = tempfile::tempdir().unwrap();
            let d = t.path().join("w");
            copy_tree(&template, &d);
            let out = injected(&d, &inject, args);
            let ctx = format!("{args:?} with {inject}");
            assert_eq!(out.status.code(), Some(0), "{ctx}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(err.contains("warning"), "{ctx}: no warning: {err}");
            if args[0] == "--json" {
                let v = json(&String::from_utf8_lossy(&out.stdout));
                assert!(
                    v["warnings"].as_array().is_some_and(|w| !w.is_empty()),
                    "{ctx}: {v}"
                );
            }
            if args[0] != "complete" {
                check(&d);
            } else {
                check(&d);
                ok(&d, &["reopen", "m"]);
            }
            let state_change = ["save", "update", "restore", "recover"]
                .iter()
                .any(|a| args.contains(a));
            if state_change && inject.starts_with("flock") {
                // The state changed without its event: doctor says so,
                // and its repair logs it. (A failed sync leaves the line
                // written, if not known durable: nothing to report.)
                let doc = run(&d, &["doctor"]);
                assert_eq!(doc.status.code(), Some(1), "{ctx}: doctor clean");
                assert!(
                    String::from_utf8_lossy(&doc.stdout).contains("event"),
                    "{ctx}: {}",
                    String::from_utf8_lossy(&doc.stdout)
                );
                run(&d, &["doctor", "--repair"]);
                let doc = run(&d, &["doctor"]);
                assert!(
                    doc.status.success(),
                    "{ctx}: {}",
                    String::from_utf8_lossy(&doc.stdout)
                );
            }
        }
    }
}

// ---- 3 under a race: seed saves while mstate compare-and-sets ----

#[test]
fn racing_seed_saves_never_slip_under_a_compare_and_set() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", r#"{"start": true}"#]);
    // The seed saves in a loop of its own, taking its lock each time.
    let mut seed = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{}\nfor i in 1 2 3 4; do save_milestone_state m \"{{\\\"seed\\\": $i}}\" >/dev/null || exit 1; done",
            seed_functions()
        ))
        .current_dir(d)
        .env("TZ", "UTC")
        .spawn()
        .unwrap();
    // mstate reads, then writes what it read under --expect-revision.
    let mut won = Vec::new();
    let mut j = 0;
    loop {
        let done = seed.try_wait().unwrap().is_some();
        j += 1;
        let env = envelope(d);
        let seen = env["state"].clone();
        // What it saw, named (not nested: the states must stay shallow
        // however many times in a row mstate wins).
        let saw = match (seen.get("mstate"), seen.get("seed")) {
            (Some(j), _) => format!("mstate {j}"),
            (None, Some(i)) => format!("seed {i}"),
            _ => seen.to_string(),
        };
        let data = serde_json::json!({"mstate": j, "saw": saw}).to_string();
        // Every backup kept: each win is checked against one below.
        let out = run_env(
            d,
            &[
                "save",
                "m",
                &data,
                "--expect-revision",
                &env["revision"].to_string(),
            ],
            &[("MSTATE_MAX_BACKUPS", "100000")],
        );
        match out.status.code() {
            Some(0) => won.push((rev(&String::from_utf8_lossy(&out.stdout)), seen)),
            Some(4) => {}
            other => panic!("save: {other:?} {}", stderr(&out)),
        }
        if done || j > 400 {
            break;
        }
    }
    assert!(seed.wait().unwrap().success());
    assert!(!won.is_empty());
    // Each successful compare-and-set replaced exactly the state it read:
    // the backup of the revision it replaced holds that state.
    let backups = d.join(".milestones/state/backups");
    for (r, seen) in won {
        let suffix = format!("-r{}.json", r - 1);
        let file = std::fs::read_dir(&backups)
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().ends_with(&suffix))
            .unwrap_or_else(|| panic!("no backup of revision {}", r - 1));
        let replaced = json(&std::fs::read_to_string(file.path()).unwrap());
        assert_eq!(
            replaced["state"], seen,
            "revision {r} replaced a state it did not see"
        );
    }
}
