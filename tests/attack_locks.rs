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
/// (It gives up after a minute, so a failing test leaves nothing behind.)
const SLOW_WRITER: &str = r#"v=$("$M" load c) || exit 1; : > loaded; i=0; while [ ! -e go ]; do i=$((i + 1)); [ $i -lt 6000 ] || exit 1; sleep 0.01; done; printf '%s' "$v" | "$M" save c - >/dev/null && : > saved"#;

/// Kill `holder` while its command is between its load and its save, then
/// check that a writer coming meanwhile does not get in, and that nothing
/// acknowledged is lost once the command has finished.
fn killed_holder_keeps_its_command_protected(dir: &Path, mut holder: Child) {
    wait_until("the command to load", Duration::from_secs(20), || {
        dir.join("loaded").exists()
    });
    holder.kill().unwrap();
    holder.wait().unwrap();
    // A writer that waits as long as it takes: it must get in only after
    // the command saved, or the command's save overwrites its update.
    let waiting = cmd(dir)
        .args(["update", "c", "--merge", r#"{"acked": 1}"#])
        .args(["--lock-timeout", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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
    let waited = waiting.wait_with_output().unwrap();
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
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
        state["acked"], 1,
        "an acknowledged update was lost: {state}"
    );
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

#[test]
fn sigkill_of_a_shell_not_leading_its_group_keeps_its_jobs_protected() {
    // A script started by a harness, cron or CI: in its parent's group.
    // Its jobs inherit the descriptor pinning the lock.
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "c", r#"{"v": 0}"#]);
    let script = format!(
        r#"eval "$("$M" shell-init bash)"
acquire_state_lock c >/dev/null || exit 1
( {SLOW_WRITER} ) &
wait"#
    );
    let shell = bash(d, &script).stdin(Stdio::null()).spawn().unwrap();
    killed_holder_keeps_its_command_protected(d, shell);
}

#[test]
fn a_released_or_abandoned_pin_leaves_the_lock_free_at_once() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "c", r#"{"v": 0}"#]);
    // Released while a job that inherited the pin still runs: free at once.
    let script = r#"eval "$("$M" shell-init bash)"
acquire_state_lock c >/dev/null || exit 1
( : > started; while [ ! -e go ]; do sleep 0.01; done ) &
while [ ! -e started ]; do sleep 0.01; done
release_state_lock c >/dev/null || exit 1
: > released
wait"#;
    let shell = bash(d, script).stdin(Stdio::null()).spawn().unwrap();
    wait_until("the release", Duration::from_secs(20), || {
        d.join("released").exists()
    });
    ok(
        d,
        &[
            "update",
            "c",
            "--merge",
            r#"{"a": 1}"#,
            "--lock-timeout",
            "0",
        ],
    );
    std::fs::write(d.join("go"), b"").unwrap();
    out_ok(&shell.wait_with_output().unwrap(), "shell");
    // Left behind by a shell that exited after its job: nothing holds the
    // pin any more, so the dead holder's lock is broken at once.
    let script = r#"eval "$("$M" shell-init bash)"
acquire_state_lock c >/dev/null || exit 1
( "$M" update c --merge '{"b": 1}' >/dev/null ) &
wait"#;
    out_ok(&bash(d, script).output().unwrap(), "shell");
    assert!(lock_dir(d, "c").exists());
    ok(
        d,
        &[
            "update",
            "c",
            "--merge",
            r#"{"c": 1}"#,
            "--lock-timeout",
            "0",
        ],
    );
    let state = load(d, "c");
    assert_eq!(
        (&state["a"], &state["b"], &state["c"]),
        (&1.into(), &1.into(), &1.into()),
        "{state}"
    );
    assert_eq!(events_of(d, "c", "lock_broken").len(), 1);
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

fn events_of(dir: &Path, id: &str, event_type: &str) -> Vec<Value> {
    let mut args = vec!["events", id, "--limit", "100000"];
    if !event_type.is_empty() {
        args.extend(["--type", event_type]);
    }
    ok(dir, &args)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `mstate ARGS` under `faketime OFFSET` (the wall clock stepped).
fn faked(dir: &Path, offset: &str, args: &[&str]) -> Output {
    // A step of the wall clock (NTP, a restored VM) leaves the boot
    // clock alone: faketime must fake the wall clock only.
    let mut c = Command::new("faketime");
    c.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    c.arg(offset)
        .arg(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("MSTATE_DIR")
        .env_remove("MSTATE_SESSION")
        .env_remove("MSTATE_LOCK_TIMEOUT");
    c.output().unwrap()
}

fn status_line(dir: &Path, id: &str) -> String {
    ok(dir, &["lock", "status", id])
}

// ---------------------------------------------------------------------
// Finding 16: clock steps neither break a live lock nor keep an expired one.

#[test]
fn a_forward_clock_step_does_not_expire_a_ttl() {
    if !have_tool("faketime") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", r#"{"v": 1}"#]);
    let holder = Sleeper::new();
    ok(
        d,
        &[
            "lock",
            "acquire",
            "m",
            "--ttl",
            "10m",
            "--owner-pid",
            &holder.pid().to_string(),
        ],
    );
    let status = faked(d, "+1 hour", &["lock", "status", "m"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("[held"), "{text}");
    let save = faked(
        d,
        "+1 hour",
        &["save", "m", r#"{"v": 2}"#, "--lock-timeout", "0.5"],
    );
    assert_eq!(
        save.status.code(),
        Some(5),
        "a live lock was broken after a clock step: {}",
        String::from_utf8_lossy(&save.stderr)
    );
    assert_eq!(load(d, "m")["v"], 1);
}

#[test]
fn a_backward_clock_step_does_not_keep_an_expired_ttl() {
    if !have_tool("faketime") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let holder = Sleeper::new();
    // Taken while the clock was an hour ahead; the clock then steps back.
    let out = faked(
        d,
        "+1 hour",
        &[
            "lock",
            "acquire",
            "m",
            "--ttl",
            "300ms",
            "--owner-pid",
            &holder.pid().to_string(),
        ],
    );
    out_ok(&out, "acquire");
    wait_until("the TTL to pass", Duration::from_secs(10), || {
        status_line(d, "m").contains("TTL")
    });
    ok(d, &["save", "m", r#"{"v": 2}"#, "--lock-timeout", "5"]);
    assert_eq!(events_of(d, "m", "lock_broken").len(), 1);
}

#[test]
fn a_live_seed_lock_older_than_its_holder_by_the_wall_clock_is_kept() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", r#"{"v": 1}"#]);
    // The seed's lock of a live shell, its `acquired` an hour before the
    // shell's start as the clock now says (the clock stepped forward).
    let holder = Sleeper::new();
    let lock = lock_dir(d, "m");
    std::fs::create_dir(&lock).unwrap();
    std::fs::write(lock.join("pid"), format!("{}\n", holder.pid())).unwrap();
    let hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    std::fs::write(
        lock.join("acquired"),
        format!("{}\n", hour_ago.strftime("%Y-%m-%dT%H:%M:%SZ")),
    )
    .unwrap();
    let save = run(d, &["save", "m", r#"{"v": 2}"#, "--lock-timeout", "0.5"]);
    assert_eq!(
        save.status.code(),
        Some(5),
        "a live seed lock was broken: {}",
        String::from_utf8_lossy(&save.stderr)
    );
    assert!(lock.join("pid").exists());
    assert_eq!(load(d, "m")["v"], 1);
}

// ---------------------------------------------------------------------
// Finding 14: a lock naming another host but carrying this boot's id.

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string()
}

/// Plant a lock of `id` held by a dead pid, taken "on" `host` during this
/// boot, in pid namespace `ns` (none: not recorded).
fn plant_foreign_lock(dir: &Path, id: &str, host: &str, ns: Option<u64>) {
    ok(
        dir,
        &[
            "lock",
            "acquire",
            id,
            "--owner-pid",
            &dead_pid().to_string(),
        ],
    );
    let info_path = lock_dir(dir, id).join("info.json");
    let mut info: Value = serde_json::from_slice(&std::fs::read(&info_path).unwrap()).unwrap();
    info["host"] = Value::from(host);
    info["who"] = Value::from(format!("ci@{host}"));
    info["boot_id"] = Value::from(boot_id());
    match ns {
        Some(ns) => info["pid_ns"] = Value::from(ns),
        None => {
            info.as_object_mut().unwrap().remove("pid_ns");
        }
    }
    std::fs::write(&info_path, serde_json::to_vec(&info).unwrap()).unwrap();
}

#[test]
fn a_lock_of_this_boot_under_another_hostname_in_another_namespace_is_reported() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", r#"{"v": 1}"#]);
    ok(d, &["save", "n", r#"{"v": 1}"#]);
    plant_foreign_lock(d, "m", "old-container", Some(1));
    plant_foreign_lock(d, "n", "old-container", None);
    for id in ["m", "n"] {
        // Held: its holder may live in another container.
        let save = run(d, &["save", id, r#"{"v": 2}"#, "--lock-timeout", "0.3"]);
        assert_eq!(save.status.code(), Some(5));
        let status = status_line(d, id);
        assert!(status.contains("unverified"), "{status}");
    }
    // ... but doctor does not call the store clean.
    let doctor = run(d, &["doctor"]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert_eq!(doctor.status.code(), Some(1), "{text}");
    assert!(text.contains("m.lock") && text.contains("n.lock"), "{text}");
    assert!(text.contains("--force"), "{text}");
    // Repair leaves them: only the user can tell.
    run(d, &["doctor", "--repair"]);
    assert!(lock_dir(d, "m").exists() && lock_dir(d, "n").exists());
}

#[test]
fn a_lock_of_this_boot_and_namespace_under_another_hostname_is_checked() {
    use std::os::unix::fs::MetadataExt;
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", r#"{"v": 1}"#]);
    let ns = std::fs::metadata("/proc/self/ns/pid").unwrap().ino();
    // The host was renamed: same kernel, same pids.
    plant_foreign_lock(d, "m", "old-name", Some(ns));
    ok(d, &["save", "m", r#"{"v": 2}"#, "--lock-timeout", "5"]);
    assert_eq!(events_of(d, "m", "lock_broken").len(), 1);
}

// ---------------------------------------------------------------------
// Finding 15: failures while taking a lock; sessions ended twice at once.

#[test]
fn a_lock_acquire_whose_break_cannot_be_logged_tells_the_truth() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    // A stale lock to break, and an event log that cannot be appended to.
    ok(
        d,
        &[
            "lock",
            "acquire",
            "m",
            "--owner-pid",
            &dead_pid().to_string(),
        ],
    );
    let log = d.join(".milestones/state/events/milestone-m.jsonl");
    std::fs::remove_file(&log).unwrap();
    std::fs::create_dir(&log).unwrap();
    let holder = Sleeper::new();
    let out = run(
        d,
        &[
            "lock",
            "acquire",
            "m",
            "--owner-pid",
            &holder.pid().to_string(),
        ],
    );
    // The exit status tells the truth: the lock was taken (the break is
    // committed, so the acquire goes on and warns that its event is
    // missing), or it was not taken at all.
    let pid = std::fs::read_to_string(lock_dir(d, "m").join("pid")).unwrap_or_default();
    let held = pid.trim() == holder.pid().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        assert!(held, "lock acquire succeeded but the lock is not held");
        assert!(stderr.contains("lock_broken"), "no warning: {stderr}");
    } else {
        assert!(!held, "lock acquire failed but left the lock held");
    }
}

#[test]
fn lock_run_that_cannot_handle_signals_does_not_start_its_command() {
    if !have_tool("strace") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    // The signal handling's self-pipe is a socketpair; nothing else makes one.
    let out = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=socketpair"])
        .args(["-e", "inject=socketpair:error=EMFILE"])
        .arg(bin())
        .args(["lock", "run", "m", "--", "sh", "-c", ": > ran"])
        .current_dir(d)
        .env_remove("MSTATE_DIR")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        !d.join("ran").exists(),
        "the command ran although its lock could not be kept"
    );
    assert!(!lock_dir(d, "m").exists());
    ok(d, &["save", "m", "{}", "--lock-timeout", "1"]);
}

#[test]
fn concurrent_session_ends_log_one_session_ended() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    for round in 0..3 {
        let sid = ok(d, &["session", "start", "m"]).trim().to_string();
        let enders: Vec<Child> = (0..8)
            .map(|_| {
                cmd(d)
                    .args(["session", "end", &sid])
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for e in enders {
            let out = e.wait_with_output().unwrap();
            assert!(out.status.success());
        }
        let ended: Vec<Value> = events_of(d, "m", "session_ended")
            .into_iter()
            .filter(|e| e["data"]["session_id"] == sid.as_str())
            .collect();
        assert_eq!(ended.len(), 1, "round {round}: {ended:?}");
    }
}

/// Log events of session `sid` from several processes while it ends:
/// none may be recorded after its `session_ended`.
fn events_racing_a_session_end(explicit: bool) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    let sid = ok(d, &["session", "start", "m"]).trim().to_string();
    let log = if explicit {
        format!(r#""$M" log m tick '{{}}' --session {sid}"#)
    } else {
        r#""$M" log m tick '{}'"#.to_string()
    };
    // Each logger logs until the session has ended, and a few times more.
    let script = format!(
        r#"n=0; i=0; while [ $n -lt 5 ] && [ $i -lt 2000 ]; do i=$((i + 1)); {log} >/dev/null 2>&1; if [ -e ended ]; then n=$((n + 1)); fi; done"#
    );
    let loggers: Vec<Child> = (0..4).map(|_| bash(d, &script).spawn().unwrap()).collect();
    wait_until("events to be logged", Duration::from_secs(20), || {
        events_of(d, "m", "tick").len() >= 8
    });
    ok(d, &["session", "end", &sid]);
    std::fs::write(d.join("ended"), b"").unwrap();
    for l in loggers {
        assert!(l.wait_with_output().unwrap().status.success());
    }
    let all = events_of(d, "m", "");
    let end = all
        .iter()
        .position(|e| e["event_type"] == "session_ended")
        .expect("session_ended");
    let after: Vec<&Value> = all[end + 1..]
        .iter()
        .filter(|e| e["session_id"] == sid.as_str())
        .collect();
    assert!(
        after.is_empty(),
        "{} events of {sid} after it ended, the first: {:?}",
        after.len(),
        after.first()
    );
    assert!(all[end + 1..].iter().any(|e| e["event_type"] == "tick") || explicit);
}

#[test]
fn events_of_the_current_session_are_never_recorded_after_it_ended() {
    events_racing_a_session_end(false);
}

#[test]
fn events_naming_a_session_are_never_recorded_after_it_ended() {
    events_racing_a_session_end(true);
}

#[test]
fn sigkill_of_lock_run_leading_its_group_keeps_its_command_protected() {
    // As typed at an interactive shell: the runner leads its own group,
    // and its command stays in it (keeping the terminal's foreground).
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "c", r#"{"v": 0}"#]);
    let runner = bash(
        d,
        &format!(r#"exec "$M" lock run c -- bash -c '{SLOW_WRITER}'"#),
    )
    .process_group(0)
    .stdin(Stdio::null())
    .spawn()
    .unwrap();
    killed_holder_keeps_its_command_protected(d, runner);
}

#[test]
fn lock_run_keeps_the_lock_until_its_commands_background_jobs_end() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "c", r#"{"v": 0}"#]);
    // The command exits at once, leaving a job that still writes.
    let runner = bash(
        d,
        &format!(r#"exec "$M" lock run c -- bash -c '( {SLOW_WRITER} ) & exit 0'"#),
    )
    .stdin(Stdio::null())
    .spawn()
    .unwrap();
    wait_until("the job to load", Duration::from_secs(20), || {
        d.join("loaded").exists()
    });
    let early = run(
        d,
        &[
            "update",
            "c",
            "--merge",
            r#"{"early": 1}"#,
            "--lock-timeout",
            "0.5",
        ],
    );
    assert_eq!(
        early.status.code(),
        Some(5),
        "a writer got in before the job ended"
    );
    std::fs::write(d.join("go"), b"").unwrap();
    let out = runner.wait_with_output().unwrap();
    assert!(out.status.success());
    // The runner ends only after the job saved, and releases the lock.
    assert!(d.join("saved").exists());
    assert!(!lock_dir(d, "c").exists());
    ok(
        d,
        &[
            "update",
            "c",
            "--merge",
            r#"{"late": 1}"#,
            "--lock-timeout",
            "1",
        ],
    );
    assert_eq!(load(d, "c")["late"], 1);
}

#[test]
fn sigterm_to_lock_run_reaches_its_command_and_releases_after_it() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    let mut runner = cmd(d)
        .args([
            "lock",
            "run",
            "m",
            "--",
            "sh",
            "-c",
            ": > started; exec sleep 600",
        ])
        .spawn()
        .unwrap();
    wait_until("the command to start", Duration::from_secs(20), || {
        d.join("started").exists()
    });
    let pid = rustix::process::Pid::from_raw(runner.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = runner.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    assert!(!lock_dir(d, "m").exists());
}

#[test]
fn a_live_seed_session_older_than_its_process_by_the_wall_clock_is_not_abandoned() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    // The seed's session file of a live shell, created an hour before the
    // shell's start as the clock now says (the clock stepped forward).
    let holder = Sleeper::new();
    let hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let sid = format!(
        "session-{}-{}",
        hour_ago.strftime("%Y%m%d-%H%M%S"),
        holder.pid()
    );
    let record = serde_json::json!({
        "session_id": sid,
        "milestone_id": "m",
        "created_at": hour_ago.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "pid": holder.pid(),
        "user": "ci",
        "working_directory": d.display().to_string(),
        "git_branch": "none",
        "status": "active",
    });
    std::fs::write(
        d.join(format!(".milestones/state/sessions/{sid}.json")),
        serde_json::to_vec_pretty(&record).unwrap(),
    )
    .unwrap();
    let listed = ok(d, &["session", "list", "--status", "abandoned"]);
    assert!(
        !listed.contains(&sid),
        "a live seed session is called abandoned: {listed}"
    );
    assert!(ok(d, &["session", "list", "--status", "active"]).contains(&sid));
}

/// `init` and `session end` take the milestone's lock too: they wait for
/// a live holder only as long as `--lock-timeout` says, then exit 5.
#[test]
fn init_and_session_end_honour_the_lock_timeout() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    ok(d, &["session", "start", "m"]);
    let holder = Sleeper::new();
    ok(
        d,
        &[
            "lock",
            "acquire",
            "m",
            "--owner-pid",
            &holder.pid().to_string(),
        ],
    );
    for args in [&["session", "end"][..], &["init", "m"]] {
        let mut child = cmd(d)
            .arg("--lock-timeout")
            .arg("0.3")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut status = None;
        wait_until(
            &format!("mstate {args:?} to give up on the lock"),
            Duration::from_secs(10),
            || {
                status = child.try_wait().unwrap();
                status.is_some()
            },
        );
        assert_eq!(status.and_then(|s| s.code()), Some(5), "{args:?}");
    }
}
