//! Fencing tokens on the file store, through the binary: every lock a user
//! takes draws a higher token than any before it, a write carrying a token
//! passes only under that token's live lock, and `lock run` hands its
//! token to its command and keeps its lease alive.

mod common;

use common::*;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A process that lives until dropped, to own locks taken for it.
struct Sleeper(Child);

impl Sleeper {
    fn new() -> Self {
        Sleeper(Command::new("sleep").arg("600").spawn().unwrap())
    }
    fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// `lock acquire m` for `owner`, with `extra` options: the token printed.
fn acquire(d: &Path, owner: &Sleeper, extra: &[&str]) -> u64 {
    let mut args = vec!["lock", "acquire", "m", "--json", "--owner-pid"];
    let pid = owner.pid();
    args.push(&pid);
    args.extend_from_slice(extra);
    let info = json(&ok(d, &args));
    info["token"]
        .as_u64()
        .unwrap_or_else(|| panic!("no token: {info}"))
}

/// `lock status m --json`.
fn status(d: &Path) -> Value {
    json(&ok(d, &["lock", "status", "m", "--json"]))
}

/// Every file of the store but its locks, with its contents.
fn snapshot(d: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel == ".locks" {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let root = d.join(".milestones/state");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// Poll (bounded) until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The first number a `lock run` command printed.
fn printed_token(out: &Output) -> u64 {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no token printed: {}", text(&out.stdout)))
}

fn assert_refused(out: &Output, token: u64, why: &str, what: &str) {
    assert_eq!(out.status.code(), Some(5), "{what}: {}", text(&out.stderr));
    let err = json(text(&out.stderr).trim());
    assert_eq!(err["error"]["kind"], "locked", "{what}: {err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("lock token {token} refused")) && message.contains(why),
        "{what}: {message}"
    );
}

#[test]
fn tokens_increase_across_acquisitions_releases_and_wiped_lock_files() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    let owner = Sleeper::new();
    let first = acquire(d, &owner, &[]);
    ok(d, &["lock", "release", "m", "--force"]);
    let second = acquire(d, &owner, &["--ttl", "10m"]);
    assert!(second > first, "{second} after {first}");
    assert_eq!(status(d)["lock"]["info"]["token"], second);
    let line = ok(d, &["lock", "status", "m"]);
    assert!(line.contains(&format!("with token {second}")), "{line}");
    ok(d, &["lock", "release", "m", "--force"]);
    // `lock run` draws one too.
    let out = cmd(d)
        .args([
            "lock",
            "run",
            "m",
            "--",
            "sh",
            "-c",
            "echo $MSTATE_LOCK_TOKEN",
        ])
        .output()
        .unwrap();
    let third = printed_token(&out);
    assert!(third > second, "{third} after {second}");
    // Lock directories removed behind the store's back (`rm -rf .locks/*`,
    // the seed's forced release) do not take the counter with them.
    let held = acquire(d, &owner, &[]);
    assert!(held > third, "{held} after {third}");
    let wiped = Command::new("sh")
        .args(["-c", "rm -rf .milestones/state/.locks/*"])
        .current_dir(d)
        .status()
        .unwrap();
    assert!(wiped.success());
    assert_eq!(status(d)["locked"], false);
    let after_wipe = acquire(d, &owner, &[]);
    assert!(after_wipe > held, "{after_wipe} after {held}");
    // A stale lock broken on the way: the holder is gone.
    drop(owner);
    let next = Sleeper::new();
    let after_break = acquire(d, &next, &[]);
    assert!(after_break > after_wipe, "{after_break} after {after_wipe}");
    // The counter is part of the store: doctor finds nothing to say.
    ok(d, &["lock", "release", "m", "--force"]);
    let report = json(&ok(d, &["doctor", "--json"]));
    assert_eq!(report["findings"], Value::Array(vec![]), "{report}");
}

#[test]
fn a_write_with_a_superseded_token_is_refused_and_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", r#"{"a": 1}"#]);
    ok(d, &["save", "m", r#"{"a": 2}"#]);
    ok(d, &["checkpoint", "create", "m", "c1"]);
    let backups = json(&ok(d, &["backups", "m", "--json"]));
    let backup = backups[0]["name"].as_str().unwrap().to_string();
    let owner = Sleeper::new();
    let old = acquire(d, &owner, &[]);
    ok(d, &["lock", "release", "m", "--force"]);
    let new = acquire(d, &owner, &[]);
    let before = snapshot(d);
    let old_s = old.to_string();
    let writes: [&[&str]; 6] = [
        &["save", "m", r#"{"a": 3}"#],
        &["update", "m", "--set", "/a=4"],
        &["complete", "m"],
        &["checkpoint", "create", "m", "c2"],
        &["checkpoint", "restore", "m", "c1"],
        &["recover", "m", "--from", &backup],
    ];
    for args in writes {
        let mut all = args.to_vec();
        all.extend(["--lock-token", &old_s, "--json"]);
        assert_refused(&run(d, &all), old, "taken again", &args.join(" "));
        let from_env = run_env(d, &all[..all.len() - 3], &[("MSTATE_LOCK_TOKEN", &old_s)]);
        assert_eq!(
            from_env.status.code(),
            Some(5),
            "{}",
            text(&from_env.stderr)
        );
    }
    let never = (new + 10).to_string();
    let out = run(d, &["save", "m", "{}", "--lock-token", &never, "--json"]);
    assert_refused(&out, new + 10, "never issued", "a token never issued");
    assert_eq!(snapshot(d), before, "a refused write changed the store");

    // The current token writes under the lock another process holds,
    // without waiting for it; a write without one waits, and gives up.
    let plain = run(d, &["save", "m", r#"{"a": 5}"#, "--lock-timeout", "0"]);
    assert_eq!(plain.status.code(), Some(5), "{}", text(&plain.stderr));
    let new_s = new.to_string();
    let fenced = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--lock-token", &new_s, "--lock-timeout", "0", "--json"]);
        ok(d, &all)
    };
    let saved = json(&fenced(&["save", "m", r#"{"a": 6}"#]));
    assert_eq!(saved["revision"], 3, "{saved}");
    fenced(&["update", "m", "--set", "/b=1"]);
    assert_eq!(json(&ok(d, &["load", "m"])), json(r#"{"a": 6, "b": 1}"#));
    fenced(&["complete", "m"]);
    let out = run(d, &["reopen", "m", "--lock-token", &old_s, "--json"]);
    assert_refused(&out, old, "taken again", "reopen");
    fenced(&["reopen", "m"]);
    let lock = status(d);
    assert_eq!(lock["lock"]["info"]["token"], new, "{lock}");
    assert_eq!(lock["lock"]["liveness"]["state"], "held", "{lock}");
    // Released: the token goes with its lock.
    ok(d, &["lock", "release", "m", "--force"]);
    let out = run(d, &["save", "m", "{}", "--lock-token", &new_s, "--json"]);
    assert_refused(&out, new, "released", "after the release");
}

#[test]
fn a_lock_token_that_is_not_a_number_is_a_usage_error() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    let out = run(d, &["save", "m", "{}", "--lock-token", "seven"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(r#"--lock-token "seven": not a lock token"#),
        "{}",
        text(&out.stderr)
    );
    let out = run_env(d, &["save", "m", "{}"], &[("MSTATE_LOCK_TOKEN", "-1")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(r#"MSTATE_LOCK_TOKEN="-1""#),
        "{}",
        text(&out.stderr)
    );
    // A variable is judged by the commands that use it; the flag wins.
    let out = run_env(d, &["lock", "status", "m"], &[("MSTATE_LOCK_TOKEN", "x")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let owner = Sleeper::new();
    let token = acquire(d, &owner, &[]).to_string();
    let out = run_env(
        d,
        &["save", "m", "{}", "--lock-token", &token],
        &[("MSTATE_LOCK_TOKEN", "x")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn lock_run_gives_its_command_the_token_and_its_writes_pass() {
    // The runner in a new process group (a script's), and leading its own.
    for own_group in [false, true] {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        ok(d, &["init", "m"]);
        ok(d, &["init", "other"]);
        let script = r#"
            echo "$MSTATE_LOCK_TOKEN $MSTATE_LOCK_MILESTONE"
            "$M" lock status m --json | tr -d ' \n'; echo
            "$M" save m '{"by": "run"}' --lock-timeout 0 >/dev/null || echo "save failed: $?"
            # The token is the lock of m: writes of another milestone go without it.
            "$M" save other '{"too": 1}' --lock-timeout 0 >/dev/null || echo "other failed: $?"
            # An older token is refused even inside the holder.
            MSTATE_LOCK_TOKEN=$((MSTATE_LOCK_TOKEN - 1)) "$M" save m '{"by": "old"}' 2>/dev/null
            echo "old token: $?"
        "#;
        let mut c = cmd(d);
        c.args(["lock", "run", "m", "--", "sh", "-c", script])
            .env("M", bin())
            .env("MSTATE_LOCK_TOKEN", "999")
            .env("MSTATE_LOCK_MILESTONE", "m");
        if own_group {
            c.process_group(0);
        }
        let out = c.output().unwrap();
        let token = printed_token(&out);
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines[0],
            format!("{token} m"),
            "own group {own_group}: {stdout}"
        );
        let lock = json(lines[1]);
        assert_eq!(lock["lock"]["info"]["token"], token, "{lock}");
        assert_eq!(
            &lines[2..],
            ["old token: 5"],
            "own group {own_group}: {stdout}"
        );
        assert_eq!(json(&ok(d, &["load", "m"])), json(r#"{"by": "run"}"#));
        assert_eq!(json(&ok(d, &["load", "other"])), json(r#"{"too": 1}"#));
        assert_eq!(status(d)["locked"], false);
    }
}

#[test]
fn the_token_of_a_lock_past_its_ttl_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["save", "m", r#"{"a": 1}"#]);
    let owner = Sleeper::new();
    let token = acquire(d, &owner, &["--ttl", "300ms"]);
    wait_until("the TTL to pass", || {
        status(d)["lock"]["liveness"]["state"] == "stale"
    });
    let before = snapshot(d);
    let out = run(
        d,
        &[
            "save",
            "m",
            "{}",
            "--lock-token",
            &token.to_string(),
            "--json",
        ],
    );
    assert_refused(&out, token, "expired", "past its TTL");
    assert!(
        text(&out.stderr).contains("lock run --ttl"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(snapshot(d), before, "a refused write changed the store");
}

#[test]
fn lock_run_renews_its_lease_while_its_command_runs() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["init", "m"]);
    // The command writes when told to, long after its first TTL.
    let mut runner = cmd(d)
        .args(["lock", "run", "m", "--ttl", "1500ms", "--", "sh", "-c"])
        .arg(r#"read go; "$M" save m '{"late": true}' --json; echo "rc=$?""#)
        .env("M", bin())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Renewed at a third of the TTL: its TTL, counted from when it was
    // taken, grows past twice the first one while it stays held.
    wait_until("the lease to be renewed past its first TTL", || {
        let s = status(d);
        let info = &s["lock"]["info"];
        info["ttl_secs"].as_f64().is_some_and(|ttl| ttl >= 3.0)
    });
    let s = status(d);
    assert_eq!(s["lock"]["liveness"]["state"], "held", "{s}");
    let mut stdin = runner.stdin.take().unwrap();
    writeln!(stdin, "go").unwrap();
    drop(stdin);
    let out = runner.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).ends_with("rc=0\n"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(json(&ok(d, &["load", "m"])), json(r#"{"late": true}"#));
}

#[test]
fn concurrent_acquisitions_never_draw_the_same_token() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().to_path_buf();
    ok(&d, &["init", "m"]);
    let (workers, rounds) = (4, 5);
    let tokens: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let d = &d;
                s.spawn(move || {
                    (0..rounds)
                        .map(|_| {
                            let out = cmd(d)
                                .args(["lock", "run", "m", "--", "sh", "-c"])
                                .arg("echo $MSTATE_LOCK_TOKEN")
                                .output()
                                .unwrap();
                            printed_token(&out)
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let distinct: std::collections::BTreeSet<u64> = tokens.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        tokens.len(),
        "a token drawn twice: {tokens:?}"
    );
    // Each worker saw its own tokens increase.
    for w in tokens.chunks(rounds) {
        assert!(w.windows(2).all(|p| p[0] < p[1]), "{w:?}");
    }
}
