//! The PostgreSQL backend across a server restart, seen through the real
//! binary: a server stopped (`-m fast`) or crashed (`-m immediate`) makes
//! the commands of the moment fail cleanly, loses no acknowledged write,
//! leaves nothing half-written or stale, and the next commands succeed;
//! `events --follow` rides it out.
//!
//! Each test runs a server of its own (`support::cluster`), never the
//! shared one; without the PostgreSQL binaries it passes after printing
//! `skipped: ...`, unless `MSTATE_TEST_REQUIRE_TOOLS=1`.

mod support;

use std::collections::BTreeSet;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cluster::{Cluster, Stop};
use support::ledger::{check_round, Outcomes, MAYBE_COMMITTED};
use support::pg::{output_within, server_words_of, size, Bin};

/// A hang guard for one command (the connect timeout is 10 s): past it
/// the command is killed and the test fails. Not a timing assertion.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// How long a condition the test waits for may take to come true before
/// the test fails.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// Poll `cond` until it holds; fail naming `what` after [`WAIT_LIMIT`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT_LIMIT, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// How the binary names a server: `host:port` and `database '...'`.
struct Words {
    host_port: String,
    db: String,
}

impl Words {
    fn of(c: &Cluster) -> Words {
        let (host_port, db) = server_words_of(&c.url());
        Words { host_port, db }
    }
}

/// The message of a failed command, checked to be clean: exit `code`,
/// no panic, nothing on stdout; under `--json` one JSON error line with
/// that code and `kind`; the message names the server when `code` is 1.
fn failure_message(out: &Output, json: bool, code: i32, words: &Words, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(out.stdout.is_empty(), "{what}: stdout {:?}", out.stdout);
    let message = if json {
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: one JSON line: {err}");
        let v: Value =
            serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{what}: {e}: {err}"));
        assert_eq!(
            v["error"]["code"].as_i64(),
            Some(code.into()),
            "{what}: {v}"
        );
        let kind = match code {
            1 => "failure",
            4 => "conflict",
            _ => "locked",
        };
        assert_eq!(v["error"]["kind"], kind, "{what}: {v}");
        v["error"]["message"].as_str().expect("message").to_string()
    } else {
        assert!(err.starts_with("mstate: error: "), "{what}: {err}");
        err
    };
    if code == 1 {
        assert!(
            message.contains(&words.host_port) && message.contains(&words.db),
            "{what}: the message names the server: {message}"
        );
    }
    message
}

/// While the server is down, after a clean stop and after a crash:
/// `save`, `load`, `log`, `events` and `lock acquire` fail promptly (a
/// guard kills a hung one) with exit 1, a message naming the server and
/// the refused connection (one JSON error line under `--json`), no panic
/// and nothing written to the working directory. Once it is back, the
/// next commands succeed at once and what was acknowledged before the
/// stop is there.
#[test]
fn commands_fail_cleanly_while_the_server_is_down() {
    let Some(c) = Cluster::start() else { return };
    let bin = c.bin("restart");
    let words = Words::of(&c);
    bin.ok(&["init", "m"]);
    bin.ok(&["save", "m", r#"{"step": 1}"#]);
    let commands: [&[&str]; 5] = [
        &["save", "m", r#"{"step": 0}"#],
        &["load", "m"],
        &["log", "m", "note", r#"{"n": 0}"#],
        &["events", "m"],
        &["lock", "acquire", "m", "--timeout", "0"],
    ];
    for (round, how) in [Stop::Fast, Stop::Immediate].into_iter().enumerate() {
        c.stop(how);
        let mut slowest = Duration::ZERO;
        for args in commands {
            for json in [false, true] {
                let mut cmd = bin.cmd(args);
                if json {
                    cmd.arg("--json");
                }
                let what = format!("{how:?} stop: mstate {args:?} (json: {json})");
                let started = Instant::now();
                let out = output_within(cmd, COMMAND_LIMIT, &what);
                slowest = slowest.max(started.elapsed());
                let message = failure_message(&out, json, 1, &words, &what);
                assert!(
                    message.contains("connect") && message.contains("refused"),
                    "{what}: the message names the cause: {message}"
                );
                assert!(
                    !message.contains(MAYBE_COMMITTED),
                    "{what}: a command that never reached the server says so: {message}"
                );
            }
        }
        assert_eq!(
            c.work_entries(),
            Vec::<String>::new(),
            "nothing written here"
        );
        eprintln!("server stopped ({how:?}): the slowest failing command took {slowest:?}");

        c.start_again();
        let step = round as u64 + 1;
        assert_eq!(
            bin.envelope("m")["state"]["step"],
            step,
            "the state acknowledged before the stop"
        );
        bin.ok(&["save", "m", &format!(r#"{{"step": {}}}"#, step + 1)]);
        bin.ok(&["log", "m", "note", &format!(r#"{{"n": {step}}}"#)]);
        bin.ok(&["lock", "acquire", "m", "--timeout", "0"]);
        bin.ok(&["lock", "release", "m"]);
        let events = bin.events("m");
        for (k, e) in events.iter().enumerate() {
            assert_eq!(e["seq"].as_u64(), Some(k as u64 + 1), "seq gap at {e}");
        }
        let notes: Vec<u64> = events
            .iter()
            .filter(|e| e["event_type"] == "note")
            .map(|e| e["data"]["n"].as_u64().expect("n"))
            .collect();
        assert_eq!(notes, (1..=step).collect::<Vec<_>>(), "the notes logged");
    }
    assert_eq!(
        c.work_entries(),
        Vec::<String>::new(),
        "nothing written here"
    );
}

/// What a writer of the restart test does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    /// `log m tick {"key": KEY}`.
    Log,
    /// `update m --set /KEY=1`.
    Update,
    /// `load c --envelope`, then `save c` of the count plus one, with
    /// the key added to its list, `--expect-revision` of what was read.
    Increment,
    /// A shell taking the lock of `l`, logging under it and releasing
    /// it: a shell whose release failed leaves a lock row behind and
    /// exits.
    Lock,
}

/// One command a writer ran: when, and how it ended.
#[derive(Debug)]
struct Run {
    what: String,
    started: Instant,
    ended: Instant,
    code: Option<i32>,
    /// Whether the command is a write of milestone `c` that may meet a
    /// conflict (exit 4).
    may_conflict: bool,
    stderr: String,
}

/// Counts a writer shares with the thread that restarts the server.
#[derive(Debug, Default)]
struct Progress {
    acked: AtomicUsize,
    failed: AtomicUsize,
    /// Failed commands that started once the server was down.
    failed_down: AtomicUsize,
    /// When the server went down, while it is down.
    down: Mutex<Option<Instant>>,
}

/// What a writer was told.
#[derive(Debug, Default)]
struct Told {
    outcomes: Outcomes,
    runs: Vec<Run>,
}

/// Writer `w` of round `round`: commands of kind `work` until `stop`.
fn writer(
    bin: &Bin,
    work: Work,
    w: usize,
    round: usize,
    words: &Words,
    stop: &AtomicBool,
    progress: &Progress,
) -> Told {
    let mut told = Told::default();
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let key = format!("w{w}_r{round}_i{i}");
        let json = (w + i) % 2 == 1;
        let mut run = |args: Vec<String>, may_conflict: bool| -> Output {
            let mut cmd = if work == Work::Lock {
                bin.sh(&args[0])
            } else {
                bin.cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
            };
            if json && work != Work::Lock {
                cmd.arg("--json");
            }
            let what = format!("writer {w}: {args:?} (json: {json})");
            let started = Instant::now();
            let out = output_within(cmd, COMMAND_LIMIT, &what);
            if out.status.success() {
                progress.acked.fetch_add(1, Ordering::Relaxed);
            } else {
                progress.failed.fetch_add(1, Ordering::Relaxed);
                if progress
                    .down
                    .lock()
                    .expect("down")
                    .is_some_and(|d| started >= d)
                {
                    progress.failed_down.fetch_add(1, Ordering::Relaxed);
                }
                let code = out.status.code().unwrap_or(-1);
                if work == Work::Lock {
                    let err = String::from_utf8_lossy(&out.stderr);
                    assert!(!err.contains("panicked"), "{what}: {err}");
                } else if !(may_conflict && code == 4) {
                    failure_message(&out, json, 1, words, &what);
                }
            }
            told.runs.push(Run {
                what,
                started,
                ended: Instant::now(),
                code: out.status.code(),
                may_conflict,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
            out
        };
        match work {
            Work::Log => {
                let args = ["log", "m", "tick", &format!(r#"{{"key": "{key}"}}"#)];
                let out = run(args.map(String::from).to_vec(), false);
                told.outcomes.record(key, &out);
            }
            Work::Update => {
                let args = ["update", "m", "--set", &format!("/{key}=1")];
                let out = run(args.map(String::from).to_vec(), false);
                told.outcomes.record(key, &out);
            }
            Work::Increment => {
                let out = run(
                    ["load", "c", "--envelope"].map(String::from).to_vec(),
                    false,
                );
                if !out.status.success() {
                    continue;
                }
                let env: Value = serde_json::from_slice(&out.stdout).expect("envelope");
                let revision = env["revision"].as_u64().expect("revision");
                let count = env["state"]["count"].as_u64().expect("count");
                let mut keys = env["state"]["keys"].as_array().expect("keys").clone();
                keys.push(Value::from(key.clone()));
                let state = serde_json::json!({"count": count + 1, "keys": keys});
                let args = [
                    "save".to_string(),
                    "c".into(),
                    state.to_string(),
                    "--expect-revision".into(),
                    revision.to_string(),
                ];
                let out = run(args.to_vec(), true);
                told.outcomes.record(key, &out);
            }
            Work::Lock => {
                let script = format!(
                    r#""$MSTATE" lock acquire l --timeout 10 >/dev/null && "$MSTATE" log l held '{{"key": "{key}"}}'; "$MSTATE" lock release l"#
                );
                run(vec![script], false);
            }
        }
    }
    told
}

/// The increments of `c` agree with what their writers were told: the
/// count is the number of keys listed, each once, one revision each; the
/// acknowledged ones are all there, with none that said it was not
/// done; the state events are revisions 1..R, seqs without a gap.
fn check_increments(bin: &Bin, outcomes: &Outcomes) -> u64 {
    let env = bin.envelope("c");
    let count = env["state"]["count"].as_u64().expect("count");
    let keys: Vec<String> = env["state"]["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k.as_str().expect("a key").to_string())
        .collect();
    let present: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(
        present.len(),
        keys.len(),
        "an increment counted twice: {keys:?}"
    );
    assert_eq!(
        count,
        keys.len() as u64,
        "the count is the increments listed"
    );
    let revision = env["revision"].as_u64().expect("revision");
    assert_eq!(revision, 1 + count, "one revision per increment");
    outcomes.check(&present, "increments");
    let mut saved = Vec::new();
    for (k, e) in bin.events("c").iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(k as u64 + 1), "seq gap at {e}");
        if e["event_type"] == "state_saved" {
            saved.push(e["data"]["revision"].as_u64().expect("revision"));
        }
    }
    assert_eq!(
        saved,
        (1..=revision).collect::<Vec<_>>(),
        "a state_saved per revision"
    );
    count
}

/// Writers of every kind run while the server is restarted, once after a
/// clean stop and once after a crash. While it is down every command
/// fails cleanly saying nothing was done; every command started once it
/// is back succeeds; after each round every acknowledged write is there
/// (events with their data, updates, increments counted exactly), none
/// that failed saying nothing was done, nothing half-written (a state
/// event per revision and no other), seqs without a gap; a fresh process
/// takes the lock at once and `doctor` finds the store clean (or repairs
/// it).
#[test]
fn writes_across_a_restart_lose_nothing_acknowledged() {
    let Some(c) = Cluster::start() else { return };
    let bin = c.bin("restart");
    let words = Words::of(&c);
    bin.ok(&["init", "m"]);
    bin.ok(&["save", "m", r#"{"base": true}"#]);
    bin.ok(&["init", "c"]);
    bin.ok(&["save", "c", r#"{"count": 0, "keys": []}"#]);
    bin.ok(&["init", "l"]);
    let kinds = [
        Work::Log,
        Work::Log,
        Work::Update,
        Work::Increment,
        Work::Increment,
        Work::Lock,
    ];
    let after = size(20, 3);
    let (mut logs, mut updates, mut increments) = (
        Outcomes::default(),
        Outcomes::default(),
        Outcomes::default(),
    );
    for (round, how) in [Stop::Fast, Stop::Immediate].into_iter().enumerate() {
        let stop = Arc::new(AtomicBool::new(false));
        let progress: Arc<Vec<Progress>> =
            Arc::new(kinds.iter().map(|_| Progress::default()).collect());
        let words = Arc::new(Words {
            host_port: words.host_port.clone(),
            db: words.db.clone(),
        });
        let writers: Vec<_> = kinds
            .iter()
            .enumerate()
            .map(|(w, &work)| {
                let (bin, stop, progress, words) =
                    (bin.clone(), stop.clone(), progress.clone(), words.clone());
                std::thread::spawn(move || {
                    writer(&bin, work, w, round, &words, &stop, &progress[w])
                })
            })
            .collect();
        let acked = |w: usize| progress[w].acked.load(Ordering::Relaxed);
        let all = |f: &dyn Fn(usize) -> bool| (0..kinds.len()).all(f);
        wait_until("every writer has written", || all(&|w| acked(w) >= after));
        let stopping = Instant::now();
        c.stop(how);
        let down = Instant::now();
        for p in progress.iter() {
            *p.down.lock().expect("down") = Some(down);
        }
        wait_until("every writer failed while the server was down", || {
            all(&|w| progress[w].failed_down.load(Ordering::Relaxed) > 0)
        });
        for p in progress.iter() {
            *p.down.lock().expect("down") = None;
        }
        let starting = Instant::now();
        c.start_again();
        let up = Instant::now();
        let acked_at_up: Vec<usize> = (0..kinds.len()).map(acked).collect();
        let back = wait_until("every writer wrote again", || {
            all(&|w| acked(w) >= acked_at_up[w] + after)
        });
        stop.store(true, Ordering::Relaxed);
        let mut told: Vec<Told> = writers
            .into_iter()
            .map(|h| h.join().expect("a writer failed"))
            .collect();

        // The commands of the moment failed or not; those that ran while
        // the server was down failed saying nothing was done; those
        // started once it was back succeeded (or met a conflict).
        let (mut runs, mut down_runs, mut maybe) = (0, 0, 0);
        for run in told.iter().flat_map(|t| &t.runs) {
            runs += 1;
            let what = format!("{} (exit {:?}): {}", run.what, run.code, run.stderr);
            if run.started >= down && run.ended <= starting {
                down_runs += 1;
                assert_ne!(
                    run.code,
                    Some(0),
                    "succeeded while the server was down: {what}"
                );
                assert!(
                    !run.stderr.contains(MAYBE_COMMITTED),
                    "a command that could not connect says it may have committed: {what}"
                );
            }
            if run.started >= up {
                let ok = run.code == Some(0) || run.may_conflict && run.code == Some(4);
                assert!(ok, "failed once the server was back: {what}");
            }
            if run.started < stopping && run.stderr.contains(MAYBE_COMMITTED) {
                maybe += 1;
            }
        }
        for (t, work) in told.iter_mut().zip(kinds) {
            let outcomes = std::mem::take(&mut t.outcomes);
            match work {
                Work::Log => logs.extend(outcomes),
                Work::Update => updates.extend(outcomes),
                Work::Increment => increments.extend(outcomes),
                Work::Lock => {}
            }
        }
        check_round(&bin, &updates, &logs);
        let count = check_increments(&bin, &increments);

        // No stale state: a fresh process takes the lock at once, and
        // doctor finds the store clean, or repairs it.
        let out = bin
            .sh(r#""$MSTATE" lock acquire l --timeout 0 && "$MSTATE" lock release l"#)
            .output()
            .expect("sh");
        support::pg::assert_success(&out, "a fresh process takes the lock");
        let doctor = bin.run(&["doctor"]);
        if !doctor.status.success() {
            eprintln!(
                "doctor after the {how:?} restart: {}{}",
                String::from_utf8_lossy(&doctor.stdout),
                String::from_utf8_lossy(&doctor.stderr)
            );
            bin.ok(&["doctor", "--repair"]);
            bin.ok(&["doctor"]);
        }
        assert_eq!(
            c.work_entries(),
            Vec::<String>::new(),
            "nothing written here"
        );
        eprintln!(
            "{how:?} restart: {runs} commands ({down_runs} while down, {maybe} said they may \
             have committed); stop took {:?}, start {:?}, writers all back {back:?} later; \
             events {}/{}/{} (acked/maybe/not done), updates {}/{}/{}, increments {}/{}/{} \
             (count {count})",
            down - stopping,
            up - starting,
            logs.acked.len(),
            logs.failed.len(),
            logs.not_done.len(),
            updates.acked.len(),
            updates.failed.len(),
            updates.not_done.len(),
            increments.acked.len(),
            increments.failed.len(),
            increments.not_done.len(),
        );
    }
}

/// `mstate events ID --follow --format jsonl`, its lines collected as
/// they come.
struct Follower {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// While set, the follower's output is not read (after the read
    /// under way), so its writes block once the pipe is full.
    hold: Arc<AtomicBool>,
    /// The read end of its stdout, to see how much is waiting there.
    pipe: std::os::fd::OwnedFd,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Follower {
    /// Start following `id`, its output read unless `held` (see
    /// [`Follower::hold`]).
    fn start(bin: &Bin, id: &str, held: bool) -> Follower {
        let mut child = bin
            .cmd(&["events", id, "--follow", "--format", "jsonl"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the follower");
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let hold = Arc::new(AtomicBool::new(held));
        let mut stdout = child.stdout.take().expect("stdout");
        let pipe = std::os::fd::AsFd::as_fd(&stdout)
            .try_clone_to_owned()
            .expect("dup the pipe");
        let reader = {
            let (lines, hold) = (lines.clone(), hold.clone());
            std::thread::spawn(move || {
                let (mut pending, mut buf) = (Vec::new(), vec![0u8; 8192]);
                loop {
                    while hold.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    let n = std::io::Read::read(&mut stdout, &mut buf).expect("read the output");
                    if n == 0 {
                        break;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=end).collect();
                        let line = String::from_utf8(line[..end].to_vec()).expect("UTF-8");
                        lines.lock().expect("lines").push(line);
                    }
                }
                assert!(pending.is_empty(), "a line without its end: {pending:?}");
            })
        };
        let stderr = {
            let mut err = child.stderr.take().expect("stderr");
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = std::io::Read::read_to_string(&mut err, &mut s);
                s
            })
        };
        Follower {
            child,
            lines,
            hold,
            pipe,
            reader: Some(reader),
            stderr: Some(stderr),
        }
    }

    /// Bytes of its output waiting in the pipe.
    fn unread(&self) -> u64 {
        rustix::io::ioctl_fionread(&self.pipe).expect("FIONREAD")
    }

    /// How many lines it printed; fails if it ended.
    fn printed(&mut self) -> usize {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            let err = self.stderr.take().map(|h| h.join().expect("stderr"));
            panic!("the follower ended: {status:?}: {err:?}");
        }
        self.lines.lock().expect("lines").len()
    }

    /// End it with SIGTERM, check that it exits 0 without a panic, and
    /// return what it printed.
    fn stop(mut self) -> Vec<String> {
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        )
        .expect("SIGTERM the follower");
        let status = self.child.wait().expect("wait for the follower");
        if let Some(r) = self.reader.take() {
            r.join().expect("the reader");
        }
        let err = self.stderr.take().map(|h| h.join().expect("stderr"));
        let err = err.unwrap_or_default();
        assert!(status.success(), "the follower's exit: {status:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        std::mem::take(&mut *self.lines.lock().expect("lines"))
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `events --follow` across a clean stop and a crash of the server,
/// with a writer logging all the while: the follower keeps running and
/// prints exactly the events the store holds afterwards, each once, in
/// seq order, the acknowledged ones and those logged after the restart
/// included; SIGTERM ends it with exit 0.
#[test]
fn follow_rides_out_a_restart() {
    let Some(c) = Cluster::start() else { return };
    let bin = c.bin("restart");
    bin.ok(&["init", "m"]);
    let mut follower = Follower::start(&bin, "m", false);
    let printed = |f: &mut Follower| f.printed();
    wait_until("the follower printed the init event", || {
        printed(&mut follower) >= 1
    });

    // A writer logs notes until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Progress::default());
    let logger = {
        let (bin, stop, progress) = (bin.clone(), stop.clone(), progress.clone());
        std::thread::spawn(move || {
            let mut outcomes = Outcomes::default();
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let data = format!(r#"{{"n": {n}}}"#);
                let cmd = bin.cmd(&["log", "m", "note", &data]);
                let out = output_within(cmd, COMMAND_LIMIT, "log m note");
                let counter = if out.status.success() {
                    &progress.acked
                } else {
                    &progress.failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
                outcomes.record(n.to_string(), &out);
            }
            outcomes
        })
    };
    let acked = || progress.acked.load(Ordering::Relaxed);
    let failed = || progress.failed.load(Ordering::Relaxed);
    let per_phase = size(50, 5);
    wait_until("the writer logged", || acked() >= per_phase);
    for how in [Stop::Fast, Stop::Immediate] {
        let (acked_before, failed_before) = (acked(), failed());
        wait_until("the writer logged before the stop", || {
            acked() >= acked_before + per_phase
        });
        let shown = printed(&mut follower);
        wait_until("the follower printed some of it", || {
            printed(&mut follower) > shown
        });
        c.stop(how);
        wait_until("the writer failed while the server was down", || {
            failed() > failed_before
        });
        c.start_again();
        let acked_at_up = acked();
        let shown = printed(&mut follower);
        let first = wait_until(
            "the follower printed an event logged after the restart",
            || printed(&mut follower) > shown && acked() > acked_at_up,
        );
        eprintln!("{how:?} restart: the follower printed again {first:?} after the server was up");
    }
    let acked_end = acked();
    wait_until("the writer logged after the last restart", || {
        acked() >= acked_end + per_phase
    });
    stop.store(true, Ordering::Relaxed);
    let outcomes = logger.join().expect("the writer failed");
    let stored = bin.events("m");
    wait_until("the follower printed every event the store holds", || {
        printed(&mut follower) >= stored.len()
    });
    let lines = follower.stop();
    let followed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    for (k, e) in stored.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(k as u64 + 1), "seq gap at {e}");
    }
    assert_eq!(
        followed, stored,
        "the follower printed every event of the store exactly once, in order"
    );
    let notes: BTreeSet<String> = stored[1..]
        .iter()
        .map(|e| e["data"]["n"].to_string())
        .collect();
    outcomes.check(&notes, "notes");
    eprintln!(
        "{} events followed; notes {} acknowledged, {} maybe, {} not done",
        stored.len(),
        outcomes.acked.len(),
        outcomes.failed.len(),
        outcomes.not_done.len()
    );
    assert_eq!(
        c.work_entries(),
        Vec::<String>::new(),
        "nothing written here"
    );
}

/// A follower whose output is not being read while the server restarts,
/// stalled in printing an event (its pipe full) in the middle of reading
/// the events there were when it started, and later in the middle of a
/// catch-up, as a follower piped to a slow reader is: once the reader
/// goes on, it prints the rest, rides out the restart and prints the
/// events logged after it, each once, in order.
#[test]
fn follow_stalled_in_its_output_rides_out_a_restart() {
    let Some(c) = Cluster::start() else { return };
    let bin = c.bin("restart");
    bin.ok(&["init", "m"]);
    // Larger than the pipe (64 KiB on Linux) and a read under way (and
    // under the 128 KiB an argument may have): printing it blocks until
    // the test reads again.
    let big = format!(r#"{{"pad": "{}"}}"#, "x".repeat(120_000));
    bin.ok(&["log", "m", "big", &big]);
    let mut follower = Follower::start(&bin, "m", true);
    let mut expected = vec!["state_initialized"];
    for (round, how) in [Stop::Fast, Stop::Immediate, Stop::Fast]
        .into_iter()
        .enumerate()
    {
        if round > 0 {
            follower.hold.store(true, Ordering::Relaxed);
            bin.ok(&["log", "m", "big", &big]);
        }
        wait_until("the follower's pipe is full", || {
            follower.unread() >= 60_000
        });
        c.stop(how);
        c.start_again();
        bin.ok(&["log", "m", "after", &format!(r#"{{"restart": "{how:?}"}}"#)]);
        expected.extend(["big", "after"]);
        follower.hold.store(false, Ordering::Relaxed);
        wait_until(
            "the follower printed the events logged around the restart",
            || follower.printed() >= expected.len(),
        );
    }
    let stored = bin.events("m");
    let lines = follower.stop();
    let followed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let types: Vec<&str> = followed
        .iter()
        .map(|e| e["event_type"].as_str().expect("type"))
        .collect();
    assert_eq!(types, expected);
    assert_eq!(followed, stored, "every event once, in order");
}
