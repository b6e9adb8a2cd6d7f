//! The real binary attacked one syscall at a time, from outside: for every
//! writing command, the syscalls it makes are recorded with `strace -f`,
//! then the command is run again on a fresh copy of the same store with one
//! invocation of one syscall failing (`inject=NAME:error=EIO:when=N`, also
//! ENOSPC once and from then on (`when=N+`, a disk filling up) for calls
//! that write, EINTR for calls that can be interrupted) or killing the
//! process (`inject=NAME:signal=KILL:when=N`).
//!
//! After every case: the command ended (no hang) without a panic; the
//! state is the old or the new one (it loads, possibly after the
//! documented recovery); a command that reported success did all it says
//! (a save's revision loads, a logged event is there once, a lock is
//! held, ...); every event acknowledged before is there exactly once and
//! `seq` has no gaps or repeats; nothing beside the store changed (a
//! sentinel directory and everything else in the working directory are
//! compared, contents included); the store is usable (a `save` and a
//! `log` succeed, `doctor --repair` then `doctor` exits 0).
//!
//! An injected error skips the call: strace cannot run a call and then
//! fail it. For `close` that leaves the descriptor open, which Linux never
//! does; those cases stay in, since what a program does with the error
//! (std's `ReadDir` panics on it) is real.
//!
//! Size: by default each syscall name is attacked at its first, middle and
//! last invocation (store calls) or first only (others); with
//! `MSTATE_STRESS=full` at every invocation. Error injection leaves out
//! the calls that cannot fail or that only the loader, the runtime and
//! the allocator make (see [`NO_ERROR`]); kills hit every syscall.
//! Counts are printed and, with `MSTATE_RELIABILITY_REPORT=path`, appended
//! there as JSON lines (family `attack_syscalls`).

mod common;

use common::*;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A command's deadline: far above its normal run time (milliseconds),
/// below anything a user would wait for.
const DEADLINE: Duration = Duration::from_secs(30);

/// Syscalls that are not failed with an error: they cannot fail
/// (`getpid`, `uname`), or only the dynamic loader, the Rust runtime and
/// the allocator make them (failing them tests libc and std, not the
/// store: std seeds `HashMap`s with `getrandom` and panics by design on an
/// error it does not expect). They are still crash points for the kill
/// cases.
const NO_ERROR: &[&str] = &[
    "execve",
    "brk",
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "arch_prctl",
    "set_tid_address",
    "set_robust_list",
    "rseq",
    "prlimit64",
    "sigaltstack",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sched_getaffinity",
    "sched_yield",
    "futex",
    "exit",
    "exit_group",
    "getpid",
    "gettid",
    "getppid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "uname",
    "getrandom",
    "clone",
    "clone3",
    "vfork",
    "wait4",
];

/// Calls that write or allocate space: also failed with ENOSPC.
const WRITE_LIKE: &[&str] = &[
    "write",
    "writev",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "fsync",
    "fdatasync",
    "sync_file_range",
    "fallocate",
    "ftruncate",
    "openat",
    "open",
    "creat",
    "mkdir",
    "mkdirat",
    "link",
    "linkat",
    "rename",
    "renameat",
    "renameat2",
    "symlink",
    "symlinkat",
    "copy_file_range",
];

/// Calls a signal can interrupt: also failed with EINTR.
const INTERRUPTIBLE: &[&str] = &[
    "read",
    "readv",
    "pread64",
    "write",
    "writev",
    "pwrite64",
    "openat",
    "open",
    "flock",
    "fcntl",
    "close",
    "fsync",
    "fdatasync",
    "poll",
    "ppoll",
    "epoll_wait",
    "epoll_pwait",
    "select",
    "pselect6",
    "nanosleep",
    "clock_nanosleep",
    "connect",
    "sendto",
    "recvfrom",
    "recvmsg",
    "sendmsg",
];

/// A finding not fixed yet that some cases run into.
struct Known {
    /// The commands concerned (empty: all).
    targets: &'static [Target],
    syscall: &'static str,
    /// As [`Fault::name`] gives it.
    fault: &'static str,
    /// Text of the failure that identifies it (`None`: any failure).
    signature: Option<&'static str>,
    finding: &'static str,
}

/// Findings not fixed yet (none now). A failing case that matches one is counted
/// and printed as `known` instead of failing its command's test; the
/// ignored test [`known_findings`] runs the matching cases strictly, so it
/// fails until they are fixed.
const KNOWN: &[Known] = &[];

/// The known findings `case` of `target` may run into.
fn known_for(target: Target, case: &Case) -> Vec<&'static Known> {
    let fault = case.fault.name();
    KNOWN
        .iter()
        .filter(|k| {
            (k.targets.is_empty() || k.targets.contains(&target))
                && k.syscall == case.syscall
                && k.fault == fault
        })
        .collect()
}

/// Calls that make data durable: one failing while the command still
/// reports success would acknowledge a write that a power loss can undo.
const SYNC_CALLS: &[&str] = &["fsync", "fdatasync", "sync_file_range", "syncfs", "sync"];

/// Calls on files and directories of the store: attacked at more
/// invocations than the others in the fast size.
const STORE_CALLS: &[&str] = &[
    "openat",
    "read",
    "write",
    "pread64",
    "pwrite64",
    "writev",
    "close",
    "fsync",
    "fdatasync",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "unlink",
    "unlinkat",
    "mkdir",
    "mkdirat",
    "rmdir",
    "flock",
    "fcntl",
    "getdents64",
    "statx",
    "newfstatat",
    "fstat",
    "lseek",
    "ftruncate",
    "inotify_add_watch",
];

/// The writing commands under attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Save,
    Update,
    Log,
    CheckpointCreate,
    CheckpointRestore,
    Recover,
    Cleanup,
    LockAcquire,
    LockRelease,
    SessionStart,
    SessionEnd,
    DoctorRepair,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Save => "save",
            Target::Update => "update",
            Target::Log => "log",
            Target::CheckpointCreate => "checkpoint create",
            Target::CheckpointRestore => "checkpoint restore",
            Target::Recover => "recover",
            Target::Cleanup => "cleanup",
            Target::LockAcquire => "lock acquire",
            Target::LockRelease => "lock release",
            Target::SessionStart => "session start",
            Target::SessionEnd => "session end",
            Target::DoctorRepair => "doctor --repair",
        }
    }

    fn args(self) -> Vec<String> {
        let pid = std::process::id().to_string();
        let v: Vec<&str> = match self {
            Target::Save => vec!["save", "m", r#"{"phase": "attack", "n": 3}"#],
            Target::Update => vec!["update", "m", "--set", "/attack=1"],
            Target::Log => vec!["log", "m", "attack", r#"{"k": 1}"#],
            Target::CheckpointCreate => vec!["checkpoint", "create", "m", "cp2"],
            Target::CheckpointRestore => vec!["checkpoint", "restore", "m", "cp1"],
            Target::Recover => vec!["recover", "m"],
            Target::Cleanup => vec!["cleanup", "m"],
            Target::LockAcquire => vec!["lock", "acquire", "m", "--owner-pid", &pid],
            Target::LockRelease => vec!["lock", "release", "m"],
            Target::SessionStart => vec!["session", "start", "m", "--owner-pid", &pid],
            Target::SessionEnd => vec!["session", "end"],
            Target::DoctorRepair => vec!["doctor", "--repair"],
        };
        v.into_iter().map(String::from).collect()
    }

    /// Whether a success writes a new revision of the state.
    fn writes_state(self) -> bool {
        matches!(
            self,
            Target::Save | Target::Update | Target::CheckpointRestore | Target::Recover
        )
    }
}

/// How a run ended.
struct Ran {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    /// An injected failure of a sync was followed by a successful sync of
    /// the same descriptor (see [`resynced`]).
    resynced: bool,
}

impl Ran {
    fn success(&self) -> bool {
        self.code == Some(0)
    }
    fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "?".into(),
        }
    }
}

/// Run `c` in its own process group with a deadline; on expiry the whole
/// group is killed and the run is an error (a hang).
fn run_bounded(mut c: Command) -> Result<Ran, String> {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = c.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut o = String::new();
        let mut e = String::new();
        let _ = out.read_to_string(&mut o);
        let _ = err.read_to_string(&mut e);
        let _ = tx.send((child.wait(), o, e));
    });
    match rx.recv_timeout(DEADLINE) {
        Ok((status, stdout, stderr)) => {
            let status = status.map_err(|e| format!("cannot wait: {e}"))?;
            Ok(Ran {
                code: status.code(),
                signal: status.signal(),
                stdout,
                stderr,
                resynced: false,
            })
        }
        Err(_) => {
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
            }
            let _ = rx.recv_timeout(DEADLINE);
            Err(format!("no end within {DEADLINE:?} (killed)"))
        }
    }
}

/// `mstate ARGS` in `dir`, bounded.
fn mstate(dir: &Path, args: &[&str]) -> Result<Ran, String> {
    let mut c = cmd(dir);
    c.args(args).env("MSTATE_LOCK_TIMEOUT", "5");
    run_bounded(c).map_err(|e| format!("mstate {args:?}: {e}"))
}

/// `mstate ARGS` in `dir`, required to succeed; its stdout.
fn mstate_ok(dir: &Path, args: &[&str]) -> Result<String, String> {
    let r = mstate(dir, args)?;
    if !r.success() {
        return Err(format!(
            "mstate {}: {}: {}",
            args.join(" "),
            r.describe(),
            r.stderr.trim()
        ));
    }
    Ok(r.stdout)
}

/// The command under strace: `strace -f -qq -o OUT [EXTRA] -- mstate ARGS`.
fn straced(dir: &Path, out: &Path, extra: &[String], args: &[String]) -> Command {
    let mut c = Command::new("strace");
    c.current_dir(dir)
        .args(["-f", "-qq", "-o"])
        .arg(out)
        .args(extra)
        .arg("--")
        .arg(bin())
        .args(args)
        .env_remove("MSTATE_DIR")
        .env_remove("MSTATE_SESSION")
        .env_remove("MSTATE_MAX_BACKUPS")
        .env("MSTATE_LOCK_TIMEOUT", "5");
    c
}

/// Highest number of invocations of each syscall by any one tracee in an
/// `strace -f` log (injection counts per syscall and per tracee).
fn count_syscalls(log: &str) -> BTreeMap<String, u32> {
    let mut per: BTreeMap<(String, String), u32> = BTreeMap::new();
    for line in log.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(name_end) = rest.find('(') else {
            continue;
        };
        let name = &rest[..name_end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue; // "<... resumed>", "+++ exited", "--- SIGCHLD"
        }
        *per.entry((pid.to_string(), name.to_string())).or_default() += 1;
    }
    let mut max: BTreeMap<String, u32> = BTreeMap::new();
    for ((_, name), n) in per {
        let m = max.entry(name).or_default();
        *m = (*m).max(n);
    }
    max
}

#[derive(Clone, Debug)]
enum Fault {
    /// This one invocation fails with the error.
    Error(&'static str),
    /// This invocation and every later one fail with ENOSPC: the disk
    /// filled up.
    DiskFull,
    /// The process is killed at this invocation.
    Kill,
}

impl Fault {
    fn name(&self) -> &'static str {
        match self {
            Fault::Error(e) => e,
            Fault::DiskFull => "ENOSPC+",
            Fault::Kill => "KILL",
        }
    }
}

#[derive(Clone, Debug)]
struct Case {
    syscall: String,
    when: u32,
    fault: Fault,
}

impl Case {
    fn strace_args(&self) -> Vec<String> {
        let (what, from_on) = match self.fault {
            Fault::Error(e) => (format!("error={e}"), ""),
            Fault::DiskFull => ("error=ENOSPC".into(), "+"),
            Fault::Kill => ("signal=KILL".into(), ""),
        };
        // No --seccomp-bpf: with it, strace 6.1 misses `when=N` counts.
        vec![
            "-e".into(),
            format!("trace={}", self.syscall),
            "-e".into(),
            format!("inject={}:{what}:when={}{from_on}", self.syscall, self.when),
        ]
    }
    fn describe(&self) -> String {
        format!("{}#{} {}", self.syscall, self.when, self.fault.name())
    }
}

/// The cases for the recorded syscall counts.
fn plan(counts: &BTreeMap<String, u32>) -> Vec<Case> {
    let mut cases = Vec::new();
    for (name, &count) in counts {
        let whens: Vec<u32> = if full() {
            (1..=count.min(65534)).collect()
        } else if STORE_CALLS.contains(&name.as_str()) {
            let mut w = vec![1, count.div_ceil(2), count];
            w.dedup();
            w
        } else {
            vec![1]
        };
        for when in whens {
            let mut faults = vec![Fault::Kill];
            if !NO_ERROR.contains(&name.as_str()) {
                faults.push(Fault::Error("EIO"));
                if WRITE_LIKE.contains(&name.as_str()) {
                    faults.push(Fault::Error("ENOSPC"));
                    faults.push(Fault::DiskFull);
                }
                if INTERRUPTIBLE.contains(&name.as_str()) {
                    faults.push(Fault::Error("EINTR"));
                }
            }
            for fault in faults {
                cases.push(Case {
                    syscall: name.clone(),
                    when,
                    fault,
                });
            }
        }
    }
    cases
}

/// What the store holds, as the commands report it.
#[derive(Clone, Debug)]
struct Observed {
    revision: u64,
    state: Value,
    recovered: bool,
    /// The event log's lines, as stored.
    lines: Vec<String>,
    /// Checkpoint name and validity.
    checkpoints: Vec<(String, bool)>,
    locked: bool,
    /// Session id and effective status.
    sessions: Vec<(String, String)>,
    backups: usize,
}

fn parse(s: &str, what: &str) -> Result<Value, String> {
    serde_json::from_str(s).map_err(|e| format!("{what}: not JSON ({e}): {s}"))
}

/// What `target`'s checks need of the store (each query is a process).
fn observe(dir: &Path, target: Target) -> Result<Observed, String> {
    let load = mstate(dir, &["load", "m", "--json"])?;
    if !load.success() {
        return Err(format!(
            "load after the case: {}: {}",
            load.describe(),
            load.stderr.trim()
        ));
    }
    let env = parse(&load.stdout, "load --json")?;
    let events = mstate(dir, &["events", "m"])?;
    if !events.success() {
        return Err(format!(
            "events after the case: {}: {}",
            events.describe(),
            events.stderr.trim()
        ));
    }
    let query = |needed: bool, args: &[&str]| -> Result<Value, String> {
        if !needed {
            return Ok(Value::Null);
        }
        parse(&mstate_ok(dir, args)?, &args.join(" "))
    };
    use Target::*;
    let cps = query(
        matches!(target, CheckpointCreate | CheckpointRestore | Cleanup),
        &["checkpoint", "list", "m", "--json"],
    )?;
    let lock = query(
        matches!(target, LockAcquire | LockRelease),
        &["lock", "status", "m", "--json"],
    )?;
    let sessions = query(
        matches!(target, SessionStart | SessionEnd | Cleanup),
        &["session", "list", "--json"],
    )?;
    let backups = query(target == Cleanup, &["backups", "m", "--json"])?;
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    Ok(Observed {
        revision: env["revision"].as_u64().unwrap_or(u64::MAX),
        state: env["state"].clone(),
        recovered: !env["recovered"].is_null(),
        lines: events.stdout.lines().map(String::from).collect(),
        checkpoints: list(&cps)
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or("").to_string(),
                    c["valid"].as_bool().unwrap_or(false),
                )
            })
            .collect(),
        locked: lock["locked"].as_bool().unwrap_or(false),
        sessions: list(&sessions)
            .iter()
            .map(|s| {
                let r = if s["record"].is_object() {
                    &s["record"]
                } else {
                    s
                };
                (
                    r["session_id"].as_str().unwrap_or("").to_string(),
                    s["effective_status"]
                        .as_str()
                        .or_else(|| r["status"].as_str())
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect(),
        backups: list(&backups).len(),
    })
}

/// Every file and directory under `dir` except the store, with contents.
fn outside_snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let store = dir.join(".milestones/state");
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p == store {
                continue;
            }
            let key = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                out.insert(format!("{key}/"), Vec::new());
                stack.push(p);
            } else if meta.file_type().is_symlink() {
                let to = std::fs::read_link(&p).unwrap();
                out.insert(
                    format!("{key} ->"),
                    to.to_string_lossy().as_bytes().to_vec(),
                );
            } else {
                out.insert(key, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

/// A temp dir for a store: on tmpfs (`/dev/shm`) when there is one, since
/// the cases are bound by fsync latency otherwise and the injected faults
/// do not depend on the filesystem; `MSTATE_ATTACK_TMP` picks another.
fn scratch() -> tempfile::TempDir {
    let base = std::env::var_os("MSTATE_ATTACK_TMP")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()));
    let mut b = tempfile::Builder::new();
    b.prefix("mstate-attack-");
    match base {
        Some(dir) => b.tempdir_in(dir).or_else(|_| b.tempdir()),
        None => b.tempdir(),
    }
    .unwrap()
}

/// An old seed-format line (no `seq`), for cleanup to remove.
fn old_line(n: u32) -> String {
    json!({"timestamp": format!("2020-01-01T00:00:0{n}Z"), "milestone_id": "m",
           "session_id": "no-session", "event_type": "old", "data": {"n": n},
           "pid": 1, "user": "seed"})
    .to_string()
}

/// The store every case of `target` starts from: old events, state at
/// revision 3 with backups (one of them old), events, a checkpoint `cp1`,
/// a current session owned by this process, a sentinel directory beside
/// it; plus what `target` needs (a held lock, things to repair).
fn template(target: Target) -> tempfile::TempDir {
    let t = scratch();
    let d = t.path();
    let events = d.join(".milestones/state/events");
    std::fs::create_dir_all(&events).unwrap();
    std::fs::write(
        events.join("milestone-m.jsonl"),
        format!("{}\n{}\n", old_line(1), old_line(2)),
    )
    .unwrap();
    let pid = std::process::id().to_string();
    for args in [
        vec!["init", "m"],
        vec!["save", "m", r#"{"phase": "one", "n": 1}"#],
        vec!["checkpoint", "create", "m", "cp1"],
        vec!["save", "m", r#"{"phase": "two", "n": 2}"#],
        vec!["log", "m", "note", r#"{"i": 1}"#],
        vec!["save", "m", r#"{"phase": "three", "n": 3}"#],
        vec!["session", "start", "m", "--owner-pid", &pid],
        vec!["log", "m", "note", r#"{"i": 2}"#],
        vec!["init", "other"],
    ] {
        ok(d, &args);
    }
    // One backup old enough for cleanup to remove.
    let backups = d.join(".milestones/state/backups");
    let oldest = std::fs::read_dir(&backups)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.to_string_lossy().contains("-checkpoint-"))
        .min()
        .unwrap();
    let month_ago = std::time::SystemTime::now() - Duration::from_secs(30 * 86400);
    std::fs::File::options()
        .write(true)
        .open(&oldest)
        .unwrap()
        .set_modified(month_ago)
        .unwrap();
    // The sentinel beside the store.
    let outside = d.join("outside");
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    std::fs::write(outside.join("a.txt"), b"keep me\n").unwrap();
    std::fs::write(outside.join("sub/m.json"), br#"{"not": "state"}"#).unwrap();
    std::fs::write(outside.join("milestone-m.jsonl"), b"{}\n").unwrap();
    match target {
        Target::LockRelease => {
            ok(d, &["lock", "acquire", "m", "--owner-pid", &pid]);
        }
        Target::DoctorRepair => {
            // An orphan temp file of a dead writer, a stale lock of a dead
            // holder, a torn last line.
            let root = d.join(".milestones/state");
            std::fs::write(root.join("active/m.json.tmp.4194303-1-0"), b"{\"part").unwrap();
            ok(d, &["lock", "acquire", "other", "--owner-pid", &pid]);
            let info = root.join(".locks/other.lock/pid");
            std::fs::write(&info, b"4194303\n").unwrap();
            let mut log = std::fs::OpenOptions::new()
                .append(true)
                .open(root.join("events/milestone-other.jsonl"))
                .unwrap();
            use std::io::Write;
            log.write_all(br#"{"timestamp":"2026-"#).unwrap();
        }
        _ => {}
    }
    t
}

/// A fresh copy of the template, modification times kept (cleanup goes
/// by them).
fn copy_of(template: &Path) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        for e in std::fs::read_dir(from).unwrap().flatten() {
            let (src, dst) = (e.path(), to.join(e.file_name()));
            let meta = std::fs::symlink_metadata(&src).unwrap();
            if meta.is_dir() {
                std::fs::create_dir(&dst).unwrap();
                copy(&src, &dst);
            } else {
                std::fs::copy(&src, &dst).unwrap();
                let f = std::fs::File::options().write(true).open(&dst).unwrap();
                f.set_modified(meta.modified().unwrap()).unwrap();
            }
        }
    }
    let t = scratch();
    copy(template, t.path());
    t
}

/// `seq` of each line (a line without one counts as the previous plus one).
fn seqs(lines: &[String]) -> Vec<u64> {
    let mut prev = 0;
    lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
            prev = v["seq"].as_u64().unwrap_or(prev + 1);
            prev
        })
        .collect()
}

fn event_type(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    v.get("event_type")
        .or_else(|| v.get("event"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Whether the injected failure of a sync in an `strace` log was followed
/// by a successful sync of the same descriptor by the same process.
fn resynced(log: &str) -> bool {
    let mut lines = log.lines();
    let Some(failed) = lines.by_ref().find(|l| l.contains("(INJECTED)")) else {
        return false;
    };
    let call = |l: &str| -> Option<(String, String)> {
        let (pid, rest) = l.split_once(' ')?;
        let rest = rest.trim_start();
        Some((pid.to_string(), rest[..rest.find(')')? + 1].to_string()))
    };
    let Some(target) = call(failed) else {
        return false;
    };
    lines.any(|l| l.trim_end().ends_with("= 0") && call(l).as_ref() == Some(&target))
}

/// What the runs of a target have to be compared with.
struct Baseline {
    before: Observed,
    after: Observed,
}

/// Check one case's store against the invariants; `Err` names the first
/// broken one.
fn check_case(
    target: Target,
    dir: &Path,
    case: &Case,
    fired: bool,
    ran: &Ran,
    base: &Baseline,
    outside: &BTreeMap<String, Vec<u8>>,
) -> Result<bool, String> {
    if ran.code == Some(101) || ran.stderr.contains("panicked") {
        return Err(format!("panicked: {}", ran.stderr.trim()));
    }
    // (EINTR is retried, which is right.) A failed sync is made good by a
    // later successful sync of the same file (the log writes its bytes
    // again and syncs once more), or reported: a change already committed
    // succeeds with a warning naming what is missing.
    let lost_sync = !matches!(case.fault, Fault::Error("EINTR") | Fault::Kill)
        && SYNC_CALLS.contains(&case.syscall.as_str())
        && !ran.resynced
        && !ran.stderr.contains("warning:");
    if ran.success() && fired && lost_sync {
        return Err("reported success although a sync of its writes failed".into());
    }
    let now = observe(dir, target)?;
    // Old or new state.
    let old = (base.before.revision, &base.before.state);
    let new = (base.after.revision, &base.after.state);
    let got = (now.revision, &now.state);
    if now.recovered {
        if now.state != base.before.state && now.state != base.after.state {
            return Err(format!(
                "recovered a state that is neither the old nor the new one: {got:?}"
            ));
        }
    } else if got != old && got != new {
        return Err(format!(
            "state is neither old {old:?} nor new {new:?}: {got:?}"
        ));
    }
    if !target.writes_state() && got != old && !now.recovered {
        return Err(format!("state changed: {got:?}, was {old:?}"));
    }
    // Acknowledged events exactly once; seq without gaps or repeats.
    for line in &base.before.lines {
        let n = now.lines.iter().filter(|l| *l == line).count();
        let removable = target == Target::Cleanup && event_type(line) == "old";
        if n > 1 || (n == 0 && !removable) {
            return Err(format!("acknowledged event present {n} times: {line}"));
        }
    }
    let s = seqs(&now.lines);
    if s.windows(2).any(|w| w[1] != w[0] + 1) {
        return Err(format!("seq not contiguous: {s:?}"));
    }
    let attacks = now
        .lines
        .iter()
        .filter(|l| event_type(l) == "attack")
        .count();
    if attacks > 1 {
        return Err(format!("the logged event is there {attacks} times"));
    }
    // A reported success is complete.
    if ran.success() {
        let complete = match target {
            Target::Save | Target::Update | Target::Recover => got == new,
            Target::CheckpointRestore => {
                got == new
                    && now
                        .checkpoints
                        .iter()
                        .any(|(n, valid)| n.starts_with("pre-restore-") && *valid)
            }
            Target::Log => attacks == 1,
            Target::CheckpointCreate => now.checkpoints.contains(&("cp2".to_string(), true)),
            Target::Cleanup => {
                now.backups == base.after.backups
                    && !now.lines.iter().any(|l| event_type(l) == "old")
            }
            Target::LockAcquire => now.locked,
            Target::LockRelease => !now.locked,
            Target::SessionStart => {
                let sid = ran.stdout.trim();
                now.sessions
                    .iter()
                    .any(|(id, st)| id == sid && st == "active")
            }
            Target::SessionEnd => {
                let ended: Vec<_> = base
                    .after
                    .sessions
                    .iter()
                    .filter(|(_, st)| st == "completed")
                    .collect();
                ended.iter().all(|e| now.sessions.contains(e))
            }
            Target::DoctorRepair => mstate(dir, &["doctor"])?.success(),
        };
        if !complete {
            return Err(format!(
                "reported success but the effect is missing: {now:?}"
            ));
        }
    }
    if &outside_snapshot(dir) != outside {
        return Err("something outside the store changed".into());
    }
    // Usable.
    mstate_ok(dir, &["save", "m", r#"{"after": 1}"#])?;
    mstate_ok(dir, &["log", "m", "after", "{}"])?;
    mstate(dir, &["doctor", "--repair"])?;
    let doctor = mstate(dir, &["doctor"])?;
    if !doctor.success() {
        return Err(format!(
            "doctor after --repair: {}: {}{}",
            doctor.describe(),
            doctor.stdout.trim(),
            doctor.stderr.trim()
        ));
    }
    let state = parse(&mstate_ok(dir, &["load", "m"])?, "load")?;
    if state != json!({"after": 1}) {
        return Err(format!("the save after the case did not stick: {state}"));
    }
    Ok(now.recovered)
}

/// Which cases of a target to run, and how strictly.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Select {
    /// All; failures of [`KNOWN`] findings are counted apart.
    Sound,
    /// Only those that may run into a [`KNOWN`] finding, strictly.
    Known,
}

/// Record `target`'s syscalls, attack each, check each case.
fn attack(target: Target) {
    attack_cases(target, Select::Sound);
}

fn attack_cases(target: Target, select: Select) {
    if !have_tool("strace") {
        return;
    }
    let started = Instant::now();
    let tpl = template(target);
    let args = target.args();
    let trace_dir = tempfile::tempdir().unwrap();
    // The baseline: an uninjected run under strace, recording its syscalls.
    let base_dir = copy_of(tpl.path());
    let before = observe(base_dir.path(), target).unwrap();
    let log = trace_dir.path().join("trace");
    let ran = run_bounded(straced(base_dir.path(), &log, &[], &args)).unwrap();
    assert!(
        ran.success(),
        "{} without faults: {}: {}",
        target.name(),
        ran.describe(),
        ran.stderr
    );
    let counts = count_syscalls(&std::fs::read_to_string(&log).unwrap());
    let after = observe(base_dir.path(), target).unwrap();
    let base = Baseline { before, after };
    let cases: Vec<Case> = plan(&counts)
        .into_iter()
        .filter(|c| select == Select::Sound || !known_for(target, c).is_empty())
        .collect();
    let mut failures: Vec<String> = Vec::new();
    let mut known_failures: Vec<String> = Vec::new();
    let (mut succeeded, mut failed, mut killed, mut recovered) = (0u64, 0u64, 0u64, 0u64);
    let mut fired_count = 0u64;
    let case_log = trace_dir.path().join("case");
    for case in &cases {
        let dir = copy_of(tpl.path());
        let outside = outside_snapshot(dir.path());
        let ran = match run_bounded(straced(dir.path(), &case_log, &case.strace_args(), &args)) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: {e}", case.describe()));
                continue;
            }
        };
        // Whether the fault happened at all (the run may make fewer calls).
        let fired = match case.fault {
            Fault::Error(_) | Fault::DiskFull => std::fs::read_to_string(&case_log)
                .unwrap_or_default()
                .contains("(INJECTED)"),
            Fault::Kill => ran.signal.is_some() || ran.code == Some(137),
        };
        fired_count += u64::from(fired);
        let ran = Ran {
            resynced: resynced(&std::fs::read_to_string(&case_log).unwrap_or_default()),
            ..ran
        };
        if ran.success() {
            succeeded += 1;
        } else if ran.signal.is_some() || ran.code == Some(137) {
            killed += 1;
        } else {
            failed += 1;
        }
        match check_case(target, dir.path(), case, fired, &ran, &base, &outside) {
            Ok(true) => recovered += 1,
            Ok(false) => {}
            Err(e) => {
                let text = format!(
                    "{}: {} ({}; stderr: {})",
                    case.describe(),
                    e,
                    ran.describe(),
                    ran.stderr.trim()
                );
                let finding = known_for(target, case)
                    .into_iter()
                    .find(|k| k.signature.is_none_or(|sig| text.contains(sig)));
                match finding {
                    Some(k) if select == Select::Sound => {
                        known_failures.push(format!("{} [known: {}]", case.describe(), k.finding));
                    }
                    _ => failures.push(text),
                }
            }
        }
    }
    for k in &known_failures {
        eprintln!("mstate {}: {k}", args.join(" "));
    }
    let count = |f: fn(&Fault) -> bool| cases.iter().filter(|c| f(&c.fault)).count();
    report(&json!({
        "family": if select == Select::Sound { "attack_syscalls" } else { "attack_syscalls_known" },
        "command": target.name(),
        "size": if full() { "full" } else { "fast" },
        "syscall_names": counts.len(),
        "syscall_invocations": counts.values().sum::<u32>(),
        "cases": cases.len(),
        "eio": count(|f| matches!(f, Fault::Error("EIO"))),
        "enospc": count(|f| matches!(f, Fault::Error("ENOSPC"))),
        "disk_full_from_n": count(|f| matches!(f, Fault::DiskFull)),
        "eintr": count(|f| matches!(f, Fault::Error("EINTR"))),
        "kill": count(|f| matches!(f, Fault::Kill)),
        "fired": fired_count,
        "known_failures": known_failures.len(),
        "reported_success": succeeded,
        "reported_failure": failed,
        "killed": killed,
        "recovered_on_load": recovered,
        "failures": failures.len(),
        "secs": started.elapsed().as_secs_f64(),
    }));
    assert!(
        failures.is_empty(),
        "{} of {} cases of `mstate {}` broke an invariant:\n{}",
        failures.len(),
        cases.len(),
        args.join(" "),
        failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The cases of [`KNOWN`]: they fail until those findings are fixed.
#[test]
fn known_findings() {
    let all = [
        Target::Save,
        Target::Update,
        Target::Log,
        Target::CheckpointCreate,
        Target::CheckpointRestore,
        Target::Recover,
        Target::Cleanup,
        Target::LockAcquire,
        Target::LockRelease,
        Target::SessionStart,
        Target::SessionEnd,
        Target::DoctorRepair,
    ];
    let mut failed = Vec::new();
    for t in all {
        let concerned = KNOWN
            .iter()
            .any(|k| k.targets.is_empty() || k.targets.contains(&t));
        if concerned && std::panic::catch_unwind(|| attack_cases(t, Select::Known)).is_err() {
            failed.push(t.name());
        }
    }
    assert!(
        failed.is_empty(),
        "known findings still fail in: {failed:?}"
    );
}

#[test]
fn save_survives_every_syscall_fault() {
    attack(Target::Save);
}

#[test]
fn update_survives_every_syscall_fault() {
    attack(Target::Update);
}

#[test]
fn log_survives_every_syscall_fault() {
    attack(Target::Log);
}

#[test]
fn checkpoint_create_survives_every_syscall_fault() {
    attack(Target::CheckpointCreate);
}

#[test]
fn checkpoint_restore_survives_every_syscall_fault() {
    attack(Target::CheckpointRestore);
}

#[test]
fn recover_survives_every_syscall_fault() {
    attack(Target::Recover);
}

#[test]
fn cleanup_survives_every_syscall_fault() {
    attack(Target::Cleanup);
}

#[test]
fn lock_acquire_survives_every_syscall_fault() {
    attack(Target::LockAcquire);
}

#[test]
fn lock_release_survives_every_syscall_fault() {
    attack(Target::LockRelease);
}

#[test]
fn session_start_survives_every_syscall_fault() {
    attack(Target::SessionStart);
}

#[test]
fn session_end_survives_every_syscall_fault() {
    attack(Target::SessionEnd);
}

#[test]
fn doctor_repair_survives_every_syscall_fault() {
    attack(Target::DoctorRepair);
}

/// `session start` records the git branch: a `git` that never ends (a
/// stale network mount, a prompt) must not hang it.
#[test]
fn session_start_does_not_wait_for_a_git_that_hangs() {
    let t = scratch();
    let d = t.path();
    ok(d, &["init", "m"]);
    let bin_dir = d.join("fake-bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let git = bin_dir.join("git");
    std::fs::write(&git, "#!/bin/sh\nexec tail -f /dev/null\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&git, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let pid = std::process::id().to_string();
    let mut c = cmd(d);
    c.args(["session", "start", "m", "--owner-pid", &pid, "--json"])
        .env("PATH", path);
    let ran = run_bounded(c).unwrap();
    assert!(ran.success(), "{}: {}", ran.describe(), ran.stderr);
    let record: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(record["git_branch"], "none");
}

/// Every read of `session start` failing in turn, the reads of its `git`
/// child included: an error or a success, never a panic or a hang.
#[test]
fn session_start_survives_a_failed_read_at_every_read() {
    if !have_tool("strace") {
        return;
    }
    let tpl = template(Target::SessionStart);
    let args = Target::SessionStart.args();
    let trace = scratch();
    let log = trace.path().join("trace");
    let base = copy_of(tpl.path());
    let ran = run_bounded(straced(base.path(), &log, &[], &args)).unwrap();
    assert!(ran.success(), "{}", ran.stderr);
    let reads = count_syscalls(&std::fs::read_to_string(&log).unwrap())["read"];
    let mut failures = Vec::new();
    for when in 1..=reads {
        let case = Case {
            syscall: "read".into(),
            when,
            fault: Fault::Error("EIO"),
        };
        let dir = copy_of(tpl.path());
        match run_bounded(straced(dir.path(), &log, &case.strace_args(), &args)) {
            Ok(r) if r.code == Some(101) || r.stderr.contains("panicked") => {
                failures.push(format!(
                    "{}: panicked: {}",
                    case.describe(),
                    r.stderr.trim()
                ));
            }
            Ok(_) => {}
            Err(e) => failures.push(format!("{}: {e}", case.describe())),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
