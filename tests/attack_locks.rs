//! Locks attacked from outside: process trees writing under a held lock,
//! holders killed while their commands still write, the seed's callers'
//! `trap 'release_state_lock ID force' EXIT`, clock steps, locks planted
//! with another host's name, failures while a lock is taken, and sessions
//! ended by several processes at once.
//!
//! Every case runs the real binary; after each, every write that was
//! acknowledged (exit 0) must be in the final state.

mod common;

use common::*;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A bash command in `dir` with `mstate` on PATH (and as `$M`).
fn bash(dir: &Path, script: &str) -> Command {
    let bin_dir = Path::new(bin()).parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("PATH", path)
        .env("M", bin())
        .env("TZ", "UTC")
        .env_remove("MSTATE_DIR")
        .env_remove("MSTATE_SESSION")
        .env_remove("MSTATE_LOCK_TIMEOUT");
    c
}

fn out_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn load(dir: &Path, id: &str) -> Value {
    serde_json::from_str(&ok(dir, &["load", id])).unwrap()
}

/// Wait (bounded) until `cond` holds.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn lock_dir(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!(".milestones/state/.locks/{id}.lock"))
}

/// A process that lives until killed, to own planted locks.
struct Sleeper(Child);

impl Sleeper {
    fn new() -> Self {
        Sleeper(Command::new("sleep").arg("600").spawn().unwrap())
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A pid that no process has now.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

// ---------------------------------------------------------------------
// Finding 1: writers inside one holder never interleave.

fn parallel_merges(n: usize) -> String {
    format!(
        r#"for i in $(seq {n}); do "$M" update m --merge "{{\"k$i\": 1}}" >/dev/null || echo "update $i failed: $?" >&2 & done; wait"#
    )
}

fn assert_keys(dir: &Path, n: usize) {
    let state = load(dir, "m");
    let keys = state.as_object().unwrap().len();
    assert_eq!(keys, n, "lost updates: {state}");
}

#[test]
fn parallel_children_of_lock_run_do_not_lose_updates() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", "{}"]);
    let n = 40;
    let out = bash(
        d,
        &format!(r#""$M" lock run m -- bash -c '{}'"#, parallel_merges(n)),
    )
    .output()
    .unwrap();
    out_ok(&out, "lock run");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_keys(d, n);
    assert!(!lock_dir(d, "m").exists());
}

#[test]
fn background_jobs_of_a_shell_holding_the_lock_do_not_lose_updates() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", "{}"]);
    let n = 40;
    let script = format!(
        r#"eval "$("$M" shell-init bash)"
acquire_state_lock m >/dev/null || exit 1
{}
release_state_lock m >/dev/null"#,
        parallel_merges(n)
    );
    let out = bash(d, &script).output().unwrap();
    out_ok(&out, "shell");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_keys(d, n);
    assert!(!lock_dir(d, "m").exists());
}

// ---------------------------------------------------------------------
// Finding 2: a lock is never broken while its command may still write.

/// The command of a holder: load, wait for `go`, save what it loaded.
const SLOW_WRITER: &str = r#"v=$("$M" load c) || exit 1; : > loaded; while [ ! -e go ]; do sleep 0.01; done; printf '%s' "$v" | "$M" save c - >/dev/null && : > saved"#;

/// Kill `holder` while its command is between its load and its save, then
/// check that a writer coming meanwhile does not get in, and that nothing
/// acknowledged is lost once the command has finished.
fn killed_holder_keeps_its_command_protected(dir: &Path, mut holder: Child) {
    wait_until("the command to load", Duration::from_secs(20), || {
        dir.join("loaded").exists()
    });
    holder.kill().unwrap();
    holder.wait().unwrap();
    let early = run(
        dir,
        &[
            "update",
            "c",
            "--merge",
            r#"{"early": 1}"#,
            "--lock-timeout",
            "1",
        ],
    );
    std::fs::write(dir.join("go"), b"").unwrap();
    wait_until("the command to save", Duration::from_secs(20), || {
        dir.join("saved").exists()
    });
    let late = run(dir, &["update", "c", "--merge", r#"{"late": 1}"#]);
    assert!(
        late.status.success(),
        "{}",
        String::from_utf8_lossy(&late.stderr)
    );
    let state = load(dir, "c");
    if early.status.success() {
        assert_eq!(
            state["early"], 1,
            "an acknowledged update was lost: {state}"
        );
    }
    assert_eq!(state["late"], 1, "{state}");
    assert_eq!(
        early.status.code(),
        Some(5),
        "a writer got in while the command of the killed holder ran: {}",
        String::from_utf8_lossy(&early.stderr)
    );
}

#[test]
fn sigkill_of_lock_run_keeps_its_command_protected() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "c", r#"{"v": 0}"#]);
    let runner = bash(
        d,
        &format!(r#"exec "$M" lock run c -- bash -c '{SLOW_WRITER}'"#),
    )
    .stdin(Stdio::null())
    .spawn()
    .unwrap();
    killed_holder_keeps_its_command_protected(d, runner);
}

#[test]
fn sigkill_of_a_shell_holding_the_lock_keeps_its_jobs_protected() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "c", r#"{"v": 0}"#]);
    let script = format!(
        r#"eval "$("$M" shell-init bash)"
acquire_state_lock c >/dev/null || exit 1
( {SLOW_WRITER} ) &
wait"#
    );
    // A script started from a terminal or by `setsid` leads its own
    // process group; its background jobs are members.
    let shell = bash(d, &script)
        .process_group(0)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    killed_holder_keeps_its_command_protected(d, shell);
}

// ---------------------------------------------------------------------
// Finding 5: the seed's callers' `trap 'release_state_lock ID force' EXIT`.

#[test]
fn trap_force_release_of_finishing_workers_loses_no_increment() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", r#"{"n": 0}"#]);
    let full = std::env::var("MSTATE_STRESS").as_deref() == Ok("full");
    let (workers, rounds) = if full { (8, 50) } else { (8, 12) };
    let worker = format!(
        r#"eval "$("$M" shell-init bash)"
trap 'release_state_lock m force >/dev/null' EXIT
for i in $(seq {rounds}); do
  acquire_state_lock m 120 >/dev/null || exit 1
  v=$(load_milestone_state m | sed -n 's/.*"n": *\([0-9]*\).*/\1/p')
  save_milestone_state m "{{\"n\": $((v + 1))}}" >/dev/null || exit 1
  release_state_lock m >/dev/null || exit 1
done"#
    );
    let children: Vec<Child> = (0..workers)
        .map(|_| {
            bash(d, &worker)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "worker failed: {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(load(d, "m")["n"], workers * rounds);
}

#[test]
fn release_force_in_the_shell_layer_leaves_a_live_holders_lock() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let holder = Sleeper::new();
    let pid = holder.pid().to_string();
    ok(d, &["lock", "acquire", "m", "--owner-pid", &pid]);
    let out = bash(
        d,
        r#"eval "$("$M" shell-init bash)"; release_state_lock m force; echo "rc=$?""#,
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("rc=0"), "{stdout}");
    assert!(!stdout.contains("released"), "{stdout}");
    assert!(stderr.contains("WARNING"), "{stderr}");
    assert!(lock_dir(d, "m").exists(), "a live holder's lock was broken");
    // Its own lock, a dead holder's, and none at all: released, as the seed does.
    let out = bash(
        d,
        r#"eval "$("$M" shell-init bash)"; acquire_state_lock n >/dev/null; release_state_lock n force"#,
    )
    .output()
    .unwrap();
    out_ok(&out, "own lock");
    assert!(String::from_utf8_lossy(&out.stdout).contains("State lock released for milestone: n"));
    assert!(!lock_dir(d, "n").exists());
    ok(
        d,
        &[
            "lock",
            "acquire",
            "p",
            "--owner-pid",
            &dead_pid().to_string(),
        ],
    );
    let out = bash(
        d,
        r#"eval "$("$M" shell-init bash)"; release_state_lock p force"#,
    )
    .output()
    .unwrap();
    out_ok(&out, "dead holder");
    assert!(!lock_dir(d, "p").exists());
    let out = bash(
        d,
        r#"eval "$("$M" shell-init bash)"; release_state_lock none force"#,
    )
    .output()
    .unwrap();
    out_ok(&out, "no lock");
    // Breaking a live lock stays possible, explicitly.
    ok(d, &["lock", "release", "m", "--force"]);
    assert!(!lock_dir(d, "m").exists());
}
