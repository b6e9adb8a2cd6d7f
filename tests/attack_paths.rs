//! Attacks on the store's paths from outside, on the real binary: links
//! planted where a lock directory should be, store directories swapped for
//! links while commands run, FIFOs and sockets where files should be, and
//! interrupted or failing system calls (strace). After each: nothing
//! outside the store changed, no hang, no panic, every acknowledged write
//! is in the store, no lock left behind.

mod common;

use common::*;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A project directory with a store, and a directory outside it.
struct Fixture {
    _tmp: tempfile::TempDir,
    project: PathBuf,
    outside: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join("project");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&project).unwrap();
        fs::create_dir_all(&outside).unwrap();
        ok(&project, &["init", "m"]);
        Fixture {
            _tmp: tmp,
            project,
            outside,
        }
    }
    fn store(&self) -> PathBuf {
        self.project.join(".milestones/state")
    }
}

/// Every file under `dir` with its content (links by their target).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.insert(p.clone(), b"<dir>".to_vec());
                stack.push(p);
            } else if ft.is_symlink() {
                let t = fs::read_link(&p).unwrap();
                out.insert(p, t.into_os_string().into_encoded_bytes());
            } else if ft.is_file() {
                out.insert(p.clone(), fs::read(&p).unwrap());
            } else {
                out.insert(p, b"<special>".to_vec());
            }
        }
    }
    out
}

/// Run `command` with a deadline: kill it and fail the test on expiry.
fn run_deadline(mut command: Command, what: &str, secs: u64) -> Output {
    let out_dir = tempfile::tempdir().unwrap();
    let (so, se) = (out_dir.path().join("out"), out_dir.path().join("err"));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(fs::File::create(&so).unwrap())
        .stderr(fs::File::create(&se).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} hung (killed after {secs}s)");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: fs::read(&so).unwrap(),
        stderr: fs::read(&se).unwrap(),
    }
}

/// `mstate ARGS` in `dir` with a deadline and a short lock timeout.
fn mstate(dir: &Path, args: &[&str]) -> Output {
    let mut c = cmd(dir);
    c.args(args).env("MSTATE_LOCK_TIMEOUT", "0.5");
    run_deadline(c, &format!("mstate {args:?}"), 20)
}

/// Fail if `out` is a panic or a death by signal; a failure must say why.
fn assert_no_panic(out: &Output, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some(),
        "{what} died by a signal: {:?}; stderr: {err}",
        out.status
    );
    assert_ne!(out.status.code(), Some(101), "{what} panicked: {err}");
    assert!(!err.contains("panicked"), "{what} panicked: {err}");
    if !out.status.success() {
        assert!(!err.trim().is_empty(), "{what} failed without a message");
    }
}

fn plant_fake_lock(outside: &Path) {
    fs::write(outside.join("pid"), "999999\n").unwrap();
    fs::write(outside.join("acquired"), "2026-01-01 00:00:00\n").unwrap();
    fs::write(outside.join("info.json"), "{\"not\": \"a lock\"}\n").unwrap();
    fs::write(outside.join("precious.txt"), "keep me\n").unwrap();
}

/// A lock "directory" that is a link to a directory outside the store,
/// holding the names a lock holds: no command deletes anything there.
#[test]
fn a_planted_lock_symlink_never_deletes_outside() {
    for args in [
        &["save", "m", "{\"a\": 1}"][..],
        &["lock", "release", "m", "--force"],
        &["lock", "acquire", "m", "--owner-pid", "1"],
        &["doctor", "--repair"],
        &["doctor"],
        &["cleanup", "m", "--retention-days", "0"],
        &["log", "m", "ev", "{}"],
    ] {
        let fx = Fixture::new();
        plant_fake_lock(&fx.outside);
        let before = snapshot(&fx.outside);
        std::os::unix::fs::symlink(&fx.outside, fx.store().join(".locks/m.lock")).unwrap();
        let out = mstate(&fx.project, args);
        assert_no_panic(&out, &format!("{args:?}"));
        assert_eq!(
            snapshot(&fx.outside),
            before,
            "mstate {args:?} changed files outside the store: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The store stays usable: the planted link is gone or reported.
        let out = mstate(&fx.project, &["lock", "release", "m", "--force"]);
        assert_no_panic(&out, "lock release --force");
        let out = mstate(&fx.project, &["doctor", "--repair"]);
        assert_no_panic(&out, "doctor --repair");
        assert_eq!(
            snapshot(&fx.outside),
            before,
            "doctor --repair after {args:?}"
        );
        let out = mstate(&fx.project, &["save", "m", "{\"after\": true}"]);
        assert!(
            out.status.success(),
            "save after {args:?} and a repair: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(snapshot(&fx.outside), before);
    }
}

/// A real lock directory whose `pid`, `acquired` and `info.json` are links
/// to files outside: breaking or releasing it removes the links, never
/// their targets, and nothing writes through them.
#[test]
fn links_inside_a_lock_directory_are_removed_not_followed() {
    for args in [
        &["lock", "release", "m", "--force"][..],
        &["save", "m", "{\"a\": 1}"],
        &["lock", "status", "m"],
        &["doctor", "--repair"],
    ] {
        let fx = Fixture::new();
        plant_fake_lock(&fx.outside);
        let before = snapshot(&fx.outside);
        let lock = fx.store().join(".locks/m.lock");
        fs::create_dir(&lock).unwrap();
        for name in ["pid", "acquired", "info.json"] {
            std::os::unix::fs::symlink(fx.outside.join(name), lock.join(name)).unwrap();
        }
        let out = mstate(&fx.project, args);
        assert_no_panic(&out, &format!("{args:?}"));
        assert_eq!(snapshot(&fx.outside), before, "mstate {args:?}");
        let out = mstate(&fx.project, &["lock", "release", "m", "--force"]);
        assert!(
            out.status.success(),
            "release after {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!lock.exists(), "{args:?}: the lock is still there");
        ok(&fx.project, &["save", "m", "{\"after\": true}"]);
        assert_eq!(snapshot(&fx.outside), before, "save after {args:?}");
    }
}

/// Swap `dir` (beneath the store) with a link to `outside`, back and
/// forth, until `stop`: `renameat2(RENAME_EXCHANGE)` so the name always
/// exists. Returns with the real directory back in place.
fn swapper(dir: PathBuf, outside: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    let link = dir.with_extension("swap-link");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    std::thread::spawn(move || {
        let mut swaps = 0u64;
        while !stop.load(Ordering::Relaxed) {
            renameat_with(CWD, &link, CWD, &dir, RenameFlags::EXCHANGE).unwrap();
            // Let a command or two meet the link.
            std::thread::yield_now();
            renameat_with(CWD, &link, CWD, &dir, RenameFlags::EXCHANGE).unwrap();
            swaps += 1;
        }
        fs::remove_file(&link).unwrap();
        swaps
    })
}

/// The events of the live log of `m`, parsed.
fn live_events(store: &Path) -> Vec<Value> {
    let text = fs::read_to_string(store.join("events/milestone-m.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("whole line"))
        .collect()
}

/// Each store directory swapped for a link to an outside directory in a
/// tight loop beside save, log and lock loops: nothing ever appears
/// outside; every acknowledged event is in the real log exactly once with
/// contiguous seq; the state left is the last one acknowledged (or one
/// attempted after it).
#[test]
fn store_directories_swapped_for_links_never_leak_writes() {
    let rounds = if std::env::var("MSTATE_STRESS").as_deref() == Ok("full") {
        200
    } else {
        8
    };
    for sub in [
        "active",
        "completed",
        "backups",
        "events",
        "events/segments",
        ".locks",
        "sessions",
    ] {
        let fx = Fixture::new();
        let store = fx.store();
        fs::create_dir_all(store.join("events/segments")).unwrap();
        ok(&fx.project, &["save", "m", "{\"n\": 0}"]);
        let stop = Arc::new(AtomicBool::new(false));
        let racer = swapper(store.join(sub), fx.outside.clone(), stop.clone());

        let project = fx.project.clone();
        let saver = std::thread::spawn(move || {
            let mut acked = vec![0u64];
            for n in 1..=rounds {
                let out = mstate(&project, &["save", "m", &format!("{{\"n\": {n}}}")]);
                assert_no_panic(&out, "save");
                if out.status.success() {
                    acked.push(n);
                }
            }
            acked
        });
        let project = fx.project.clone();
        let logger = std::thread::spawn(move || {
            let mut acked = Vec::new();
            for i in 0..rounds {
                let out = mstate(&project, &["log", "m", "probe", &format!("{{\"i\": {i}}}")]);
                assert_no_panic(&out, "log");
                if out.status.success() {
                    acked.push(i);
                }
            }
            acked
        });
        let project = fx.project.clone();
        let locker = std::thread::spawn(move || {
            for _ in 0..rounds / 2 {
                let out = mstate(&project, &["lock", "acquire", "m", "--owner-pid", "1"]);
                assert_no_panic(&out, "lock acquire");
                let out = mstate(&project, &["lock", "release", "m", "--force"]);
                assert_no_panic(&out, "lock release");
                let out = mstate(&project, &["session", "start", "m"]);
                assert_no_panic(&out, "session start");
                let out = mstate(&project, &["session", "end"]);
                assert_no_panic(&out, "session end");
            }
        });
        let saved = saver.join().unwrap();
        let logged = logger.join().unwrap();
        locker.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        let swaps = racer.join().unwrap();
        assert!(swaps > 0, "{sub}: the racer never swapped");

        assert_eq!(
            snapshot(&fx.outside),
            BTreeMap::new(),
            "{sub}: files appeared outside the store"
        );
        let events = live_events(&store);
        for (k, e) in events.iter().enumerate() {
            assert_eq!(e["seq"], k as u64 + 1, "{sub}: seq not contiguous: {e}");
        }
        let probes: Vec<u64> = events
            .iter()
            .filter(|e| e["event_type"] == "probe")
            .map(|e| e["data"]["i"].as_u64().unwrap())
            .collect();
        for i in &logged {
            let n = probes.iter().filter(|p| *p == i).count();
            assert_eq!(
                n, 1,
                "{sub}: acknowledged event {i} is in the log {n} times"
            );
        }
        let state: Value = serde_json::from_str(&ok(&fx.project, &["load", "m"])).unwrap();
        let n = state["n"].as_u64().unwrap();
        let last = *saved.last().unwrap();
        assert!(
            n >= last && n <= rounds,
            "{sub}: state n={n}, last acknowledged {last}"
        );
        // A `lock release` that met the link failed (and said so), so the
        // explicit lock may be left; a save or log never leaves its own.
        if store.join(".locks/m.lock").exists() {
            let info = fs::read_to_string(store.join(".locks/m.lock/info.json")).unwrap();
            let info: Value = serde_json::from_str(&info).unwrap();
            assert_eq!(
                info["operation"], "lock acquire",
                "{sub}: a lock was left behind: {info}"
            );
        }
    }
}

/// A FIFO or a UNIX socket at `path`.
#[derive(Clone, Copy, Debug)]
enum Special {
    Fifo,
    Socket,
}

fn plant(path: &Path, kind: Special) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let _ = fs::remove_file(path);
    match kind {
        Special::Fifo => {
            let st = Command::new("mkfifo").arg(path).status().unwrap();
            assert!(st.success());
        }
        Special::Socket => {
            drop(std::os::unix::net::UnixListener::bind(path).unwrap());
        }
    }
    let ft = fs::symlink_metadata(path).unwrap().file_type();
    assert!(ft.is_fifo() || ft.is_socket());
}

/// FIFOs and sockets at every store path a command reads or writes: no
/// hang, no panic, a clear error or success, no lock left behind.
#[test]
fn fifos_and_sockets_at_store_paths_are_refused_never_waited_on() {
    let paths = [
        ".current_session",
        "active/m.json",
        ".locks/m.lock/pid",
        ".locks/m.lock/acquired",
        ".locks/m.lock/info.json",
        "sessions/session-20260101-000000-1.json",
        "events/milestone-m.jsonl",
        "backups/m-20260101-000000-000001-r1.json",
        "backups/m-checkpoint-c.json",
    ];
    let commands: [&[&str]; 18] = [
        &["save", "m", "{\"x\": 1}"],
        &["load", "m"],
        &["update", "m", "--merge", "{\"y\": 2}"],
        &["log", "m", "ev", "{}"],
        &["events", "m"],
        &["timeline", "m"],
        &["list"],
        &["lock", "status", "m"],
        &["backups", "m"],
        &["checkpoint", "list", "m"],
        &["checkpoint", "restore", "m", "c"],
        &["recover", "m"],
        &["session", "start", "m"],
        &["session", "list"],
        &["session", "end"],
        &["cleanup", "m"],
        &["doctor"],
        &["doctor", "--repair"],
    ];
    // One thread per planted file: the cases are independent, and those
    // that wait out a lock timeout overlap.
    let mut cases = Vec::new();
    for rel in paths {
        for kind in [Special::Fifo, Special::Socket] {
            cases.push(std::thread::spawn(move || {
                let fx = Fixture::new();
                let store = fx.store();
                ok(&fx.project, &["save", "m", "{\"x\": 0}"]);
                ok(&fx.project, &["checkpoint", "create", "m", "c"]);
                plant(&store.join(rel), kind);
                let planted_lock = rel.starts_with(".locks/");
                for args in commands {
                    let what = format!("{args:?} with a {kind:?} at {rel}");
                    let out = mstate(&fx.project, args);
                    assert_no_panic(&out, &what);
                    if !planted_lock {
                        assert!(
                            !store.join(".locks/m.lock").exists(),
                            "{what}: left a lock behind"
                        );
                    }
                }
            }));
        }
    }
    for case in cases {
        case.join().unwrap();
    }
}

/// `strace -f -o /dev/null -e INJECT mstate ARGS` in `dir`.
fn strace(dir: &Path, inject: &str, args: &[&str]) -> Output {
    strace_paths(dir, inject, args, false)
}

/// As [`strace`]; with `store_only`, the injection only hits calls on the
/// store directory and its layout directories (`strace -P`), not the
/// dynamic loader's or the C library's.
fn strace_paths(dir: &Path, inject: &str, args: &[&str], store_only: bool) -> Output {
    let mut c = Command::new("strace");
    c.current_dir(dir).args(["-f", "-o", "/dev/null"]);
    if store_only {
        let store = dir.join(".milestones/state");
        c.arg("-P").arg(&store);
        for sub in [
            "active",
            "completed",
            "backups",
            "events",
            "sessions",
            ".locks",
        ] {
            c.arg("-P").arg(store.join(sub));
        }
    }
    c.arg("-e")
        .arg(inject)
        .arg(bin())
        .args(args)
        .env_remove("MSTATE_DIR")
        .env_remove("MSTATE_SESSION")
        .env("MSTATE_LOCK_TIMEOUT", "5");
    run_deadline(c, &format!("{inject} mstate {args:?}"), 60)
}

/// Every writing command, in an order where each can succeed.
fn writing_commands(pid: &str) -> Vec<Vec<String>> {
    let list: [&[&str]; 15] = [
        &["save", "m", "{\"n\": 1}"],
        &["update", "m", "--merge", "{\"u\": 1}"],
        &["log", "m", "probe", "{\"i\": 7}"],
        &["checkpoint", "create", "m", "c"],
        &["checkpoint", "restore", "m", "c"],
        &["recover", "m"],
        &["lock", "acquire", "m", "--owner-pid", "PID"],
        &["lock", "release", "m", "--force"],
        &["session", "start", "m"],
        &["session", "end"],
        &["cleanup", "m", "--retention-days", "7"],
        &["complete", "m"],
        &["reopen", "m"],
        &["checkpoint", "delete", "m", "c"],
        &["doctor", "--repair"],
    ];
    list.iter()
        .map(|args| {
            args.iter()
                .map(|a| {
                    if *a == "PID" {
                        pid.to_string()
                    } else {
                        a.to_string()
                    }
                })
                .collect()
        })
        .collect()
}

/// Interrupted calls are retried: every writing command succeeds under
/// `EINTR` on the first, or every other, rename, mkdir, link, unlink, open
/// or sync on the store, and what it wrote is there.
#[test]
fn interrupted_calls_are_retried() {
    if !have_tool("strace") {
        return;
    }
    let cases = [
        "rename,renameat,renameat2",
        "mkdir,mkdirat",
        "link,linkat",
        "unlink,unlinkat,rmdir",
        "open,openat,openat2",
        "fsync,fdatasync,flock",
    ]
    .map(|set| {
        // The first call, and every other one after it, fails. One thread
        // per set of calls: the cases are independent.
        std::thread::spawn(move || {
            let fx = Fixture::new();
            ok(&fx.project, &["save", "m", "{\"n\": 0}"]);
            let inject = format!("inject={set}:error=EINTR:when=1+2");
            for args in writing_commands(&std::process::id().to_string()) {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = strace_paths(&fx.project, &inject, &args, true);
                assert!(
                    out.status.success(),
                    "{args:?} under {inject}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let state: Value = serde_json::from_str(&ok(&fx.project, &["load", "m"])).unwrap();
            assert_eq!(state["n"], 1, "{inject}");
            assert_eq!(state["u"], 1, "{inject}");
            let out = run(&fx.project, &["events", "m", "--type", "probe"]);
            let probes = String::from_utf8_lossy(&out.stdout).lines().count();
            assert_eq!(probes, 1, "{inject}");
            assert!(
                !fx.store().join(".locks/m.lock").exists(),
                "{inject}: lock left"
            );
        })
    });
    for case in cases {
        case.join().unwrap();
    }
}

/// A failing close or directory read never panics: every command that
/// lists a directory fails cleanly or succeeds.
#[test]
fn failing_close_and_getdents_never_panic() {
    if !have_tool("strace") {
        return;
    }
    let commands: [&[&str]; 9] = [
        &["save", "m", "{\"n\": 2}"],
        &["list"],
        &["backups", "m"],
        &["checkpoint", "create", "m", "c"],
        &["session", "list"],
        &["events", "m"],
        &["cleanup", "--all", "--retention-days", "0"],
        &["doctor"],
        &["doctor", "--repair"],
    ];
    // The dynamic loader's own closes come first (four on glibc: a failure
    // there stops the program before it starts, exit 127); the later ones
    // are mstate's. `true`: only the calls on the store (`strace -P`).
    for (inject, store_only) in [
        ("inject=close:error=EIO:when=5+", false),
        ("inject=close:error=EIO:when=8", false),
        ("inject=close:error=EIO", true),
        ("inject=close:error=EIO:when=2+2", true),
        ("inject=getdents64:error=EIO", false),
        ("inject=getdents64:error=EIO:when=2+", false),
    ] {
        let fx = Fixture::new();
        ok(&fx.project, &["save", "m", "{\"n\": 1}"]);
        ok(&fx.project, &["log", "m", "probe", "{}"]);
        for args in commands {
            let out = strace_paths(&fx.project, inject, args, store_only);
            assert_no_panic(&out, &format!("{args:?} under {inject}"));
        }
        let out = mstate(&fx.project, &["doctor", "--repair"]);
        assert_no_panic(&out, "doctor --repair after faults");
        assert!(
            !fx.store().join(".locks/m.lock").exists(),
            "{inject}: lock left"
        );
    }
}

/// Where the kernel lacks `openat2` or a sandbox forbids it (ENOSYS,
/// EPERM), paths are walked component by component: commands still work,
/// and a planted lock link still never reaches outside.
#[test]
fn without_openat2_the_component_walk_works_and_refuses_links() {
    if !have_tool("strace") {
        return;
    }
    for errno in ["ENOSYS", "EPERM"] {
        let inject = format!("inject=openat2:error={errno}");
        let fx = Fixture::new();
        for args in [
            &["save", "m", "{\"n\": 1}"][..],
            &["log", "m", "probe", "{\"i\": 1}"],
            &["lock", "acquire", "m", "--owner-pid", "1"],
            &["lock", "status", "m"],
            &["lock", "release", "m", "--force"],
            &["checkpoint", "create", "m", "c"],
            &["cleanup", "m", "--retention-days", "0"],
            &["session", "start", "m"],
            &["session", "end"],
            &["events", "m"],
            &["doctor"],
        ] {
            let out = strace(&fx.project, &inject, args);
            assert!(
                out.status.success(),
                "{args:?} under {inject}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        plant_fake_lock(&fx.outside);
        let before = snapshot(&fx.outside);
        std::os::unix::fs::symlink(&fx.outside, fx.store().join(".locks/m.lock")).unwrap();
        for args in [
            &["lock", "status", "m"][..],
            &["save", "m", "{\"n\": 2}"],
            &["doctor", "--repair"],
        ] {
            let out = strace(&fx.project, &inject, args);
            assert_no_panic(&out, &format!("{args:?} under {inject}"));
            assert_eq!(snapshot(&fx.outside), before, "{args:?} under {inject}");
        }
        let state: Value = serde_json::from_str(&ok(&fx.project, &["load", "m"])).unwrap();
        assert_eq!(state["n"], 2);
    }
}
