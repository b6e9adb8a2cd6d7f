//! Differential tests of the shell layer, function by function: the same
//! calls run once on the seed's own functions (`tests/fixtures/seed_original.sh`,
//! unmodified) in one temporary directory and once on
//! `eval "$(mstate shell-init bash)"` (and zsh) in another, and each call's
//! return status and stdout must agree. Only what must differ is
//! normalised: times, pids, the time-stamped parts of names and ids, and
//! the fields mstate adds to events. Where the layer differs on purpose
//! (the list in `src/shell/functions.sh`), the test asserts both what the
//! seed does and what the layer does instead.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{have_tool, seed_functions};
use serde_json::Value;

/// Where a script runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    Seed,
    Bash,
    Zsh,
}

/// What one call printed on stdout and returned.
#[derive(Debug, Clone)]
struct Call {
    rc: i32,
    out: String,
}

/// What a step must show.
enum Expect {
    /// Status and normalised stdout equal on both sides.
    Same,
    /// A deliberate difference: the seed's and the layer's (status, stdout
    /// after normalisation), each asserted.
    Differs {
        seed: (i32, &'static str),
        ours: (i32, &'static str),
    },
    /// A deliberate difference checked by a function of (seed, ours).
    Check(fn(&Call, &Call)),
}

use Expect::{Check, Differs, Same};

/// Processes the tests stand for lock holders: alive until dropped.
struct Holder(Child);

impl Holder {
    fn live() -> Self {
        let child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start a live holder");
        Holder(child)
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pid of a process that has exited.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().expect("run true");
    let pid = c.id();
    c.wait().expect("wait for true");
    pid
}

const MARK: &str = "@@mstate-parity@@";

/// Run `setup` (output dropped), then each step, in one shell in a fresh
/// directory; return each step's status and stdout.
fn run(side: Side, env: &[(&str, String)], setup: &str, steps: &[&str]) -> Vec<Call> {
    let dir = tempfile::tempdir().expect("temp dir");
    let (shell, prelude) = match side {
        Side::Seed => ("bash", seed_functions()),
        Side::Bash => ("bash", "eval \"$(mstate shell-init bash)\"".to_string()),
        Side::Zsh => ("zsh", "eval \"$(mstate shell-init zsh)\"".to_string()),
    };
    let mut script = format!("{prelude}\n{{\n:\n{setup}\n}} >/dev/null 2>&1\n");
    for (i, step) in steps.iter().enumerate() {
        script.push_str(&format!(
            "printf '{MARK} {i}\\n'\n{step}\nprintf '\\n{MARK} rc %s\\n' \"$?\"\n"
        ));
    }
    let bin_dir = Path::new(common::bin())
        .parent()
        .expect("binary's directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new(shell);
    c.arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("TZ", "UTC")
        .env_remove("MSTATE_DIR")
        .env_remove("MSTATE_SESSION")
        .env_remove("MSTATE_LOCK_TIMEOUT")
        .env_remove("MSTATE_MAX_BACKUPS")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run the shell");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{side:?}: the script failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    parse(&stdout, steps.len(), side, &stderr)
}

/// Split a run's stdout into its steps.
fn parse(stdout: &str, n: usize, side: Side, stderr: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut rest = stdout;
    for i in 0..n {
        let start = format!("{MARK} {i}\n");
        let at = rest
            .find(&start)
            .unwrap_or_else(|| panic!("{side:?}: step {i} did not run\n{stdout}\n{stderr}"));
        rest = &rest[at + start.len()..];
        let end = format!("\n{MARK} rc ");
        let at = rest
            .find(&end)
            .unwrap_or_else(|| panic!("{side:?}: step {i} did not end\n{stdout}\n{stderr}"));
        let out = rest[..at].trim_end_matches('\n').to_string();
        rest = &rest[at + end.len()..];
        let nl = rest.find('\n').unwrap_or(rest.len());
        let rc = rest[..nl].parse().expect("a status");
        rest = &rest[nl..];
        calls.push(Call { rc, out });
    }
    calls
}

/// Whether `b[i..]` starts with `n` ASCII digits.
fn digits(b: &[u8], i: usize, n: usize) -> bool {
    b.len() >= i + n && b[i..i + n].iter().all(u8::is_ascii_digit)
}

/// Length of a time at `b[i..]`: `YYYY-MM-DDTHH:MM:SS[.frac]Z`.
fn iso_time(b: &[u8], i: usize) -> Option<usize> {
    let shape = digits(b, i, 4)
        && b.get(i + 4) == Some(&b'-')
        && digits(b, i + 5, 2)
        && b.get(i + 7) == Some(&b'-')
        && digits(b, i + 8, 2)
        && b.get(i + 10) == Some(&b'T')
        && digits(b, i + 11, 2)
        && b.get(i + 13) == Some(&b':')
        && digits(b, i + 14, 2)
        && b.get(i + 16) == Some(&b':')
        && digits(b, i + 17, 2);
    if !shape {
        return None;
    }
    let mut j = i + 19;
    if b.get(j) == Some(&b'.') {
        j += 1;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
    }
    (b.get(j) == Some(&b'Z')).then_some(j + 1 - i)
}

/// Length of a name's time stamp at `b[i..]`: `YYYYMMDD-HHMMSS`, with
/// mstate's `-` and microseconds (6 digits) when present.
fn name_stamp(b: &[u8], i: usize) -> Option<usize> {
    if !(digits(b, i, 8) && b.get(i + 8) == Some(&b'-') && digits(b, i + 9, 6)) {
        return None;
    }
    let mut n = 15;
    if b.get(i + n) == Some(&b'-') && digits(b, i + n + 1, 6) && !digits(b, i + n + 7, 1) {
        n += 7;
    }
    Some(n)
}

/// Replace what differs between any two runs: times (`<time>`), the time
/// stamps in names (`<stamp>`), and in names made of a stamp only what
/// follows it by rule: a session id's pid (and mstate's `-N` for a second
/// session in the same second), a backup's `-rN` revision.
fn norm(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if let Some(n) = iso_time(b, i) {
            out.push_str("<time>");
            i += n;
            continue;
        }
        let word_start = i == 0 || !b[i - 1].is_ascii_digit();
        if let (true, Some(n)) = (word_start, name_stamp(b, i)) {
            out.push_str("<stamp>");
            i += n;
            let session = out.ends_with("session-<stamp>");
            if session && b.get(i) == Some(&b'-') && digits(b, i + 1, 1) {
                // The creating shell's pid, then mstate's -N, if any.
                for _ in 0..2 {
                    if b.get(i) == Some(&b'-') && digits(b, i + 1, 1) {
                        i += 1;
                        while b.get(i).is_some_and(u8::is_ascii_digit) {
                            i += 1;
                        }
                    }
                }
                out.push_str("-<pid>");
            } else if b.get(i) == Some(&b'-') && b.get(i + 1) == Some(&b'r') {
                let mut j = i + 2;
                while b.get(j).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                }
                if j > i + 2 && s[j..].starts_with(".json") {
                    i = j;
                }
            }
            continue;
        }
        let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

/// Keys mstate adds to every event (README: the seed's fields plus `seq`
/// and `host`).
const ADDED_EVENT_KEYS: &[&str] = &["seq", "host"];

/// Whether `key` is one mstate adds to the data of events of type `ty`:
/// the revision a change made, the file a restore wrote, what a cleanup
/// removed and by which clock.
fn added_data_key(ty: Option<&str>, key: &str) -> bool {
    key == "revision"
        || (ty == Some("state_restored") && key == "state_file")
        || (ty == Some("state_cleaned")
            && [
                "events_removed",
                "backups_removed",
                "checkpoints_removed",
                "sessions_removed",
                "clock",
            ]
            .contains(&key))
}

/// One JSON value in comparable form: strings normalised; an event's pid
/// replaced, mstate's added keys dropped; the seed's first line (`event`
/// and no other field of an event) renamed to `event_type`, and mstate's
/// first line cut down to the fields the seed's has.
fn canon(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(norm(s)),
        Value::Array(a) => Value::Array(a.iter().map(canon).collect()),
        Value::Object(o) => {
            let is_event = o.contains_key("timestamp")
                && (o.contains_key("event_type") || o.contains_key("event"));
            let ty = o.get("event_type").and_then(Value::as_str);
            let mut m = serde_json::Map::new();
            for (k, v) in o {
                if is_event && ADDED_EVENT_KEYS.contains(&k.as_str()) {
                    continue;
                }
                let v = match (is_event, k.as_str()) {
                    (true, "pid") => Value::from("<pid>"),
                    (true, "data") => match v {
                        Value::Object(d) => Value::Object(
                            d.iter()
                                .filter(|(k, _)| !added_data_key(ty, k))
                                .map(|(k, v)| (k.clone(), canon(v)))
                                .collect(),
                        ),
                        other => canon(other),
                    },
                    _ => canon(v),
                };
                let k = if is_event && k == "event" {
                    "event_type".to_string()
                } else {
                    k.clone()
                };
                m.insert(k, v);
            }
            if is_event && m.get("event_type") == Some(&Value::from("state_initialized")) {
                m.retain(|k, _| ["timestamp", "event_type", "milestone_id"].contains(&k.as_str()));
            }
            // Key order is the writer's, not part of the data.
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        other => other.clone(),
    }
}

/// Stdout in comparable form: each line normalised, each JSON value (a
/// line, or pretty lines) as its canonical compact text.
fn normalise(out: &str) -> String {
    let mut lines = Vec::new();
    let mut json = String::new();
    for line in out.lines() {
        if !json.is_empty() || line.starts_with('{') || line.starts_with('[') {
            json.push_str(line);
            json.push('\n');
            if let Ok(v) = serde_json::from_str::<Value>(&json) {
                lines.push(canon(&v).to_string());
                json.clear();
            }
            continue;
        }
        lines.push(norm(line));
    }
    if !json.is_empty() {
        // Not JSON after all (the seed's broken lines): keep it as text.
        lines.extend(json.lines().map(norm));
    }
    lines.join("\n")
}

/// Run `steps` on the seed and on the layer (bash, then zsh when installed)
/// and check each against its expectation.
fn parity(setup: &str, steps: &[(&str, Expect)], env: &[(&str, String)]) {
    let calls: Vec<&str> = steps.iter().map(|(c, _)| *c).collect();
    let seed = run(Side::Seed, env, setup, &calls);
    let mut sides = vec![Side::Bash];
    if have_tool("zsh") {
        sides.push(Side::Zsh);
    }
    for side in sides {
        let ours = run(side, env, setup, &calls);
        for (i, ((call, expect), (s, o))) in steps.iter().zip(seed.iter().zip(&ours)).enumerate() {
            let what = format!(
                "{side:?}, step {i}: {call}\nseed: [{}] {}\nours: [{}] {}",
                s.rc, s.out, o.rc, o.out
            );
            match expect {
                Same => {
                    assert_eq!(s.rc, o.rc, "status differs: {what}");
                    assert_eq!(
                        normalise(&s.out),
                        normalise(&o.out),
                        "stdout differs: {what}"
                    );
                }
                Differs { seed: sd, ours: od } => {
                    assert_eq!(
                        (s.rc, normalise(&s.out).as_str()),
                        *sd,
                        "the seed changed: {what}"
                    );
                    assert_eq!(
                        (o.rc, normalise(&o.out).as_str()),
                        *od,
                        "not the documented behaviour: {what}"
                    );
                }
                Check(f) => f(s, o),
            }
        }
    }
}

const INIT: &str = "init_milestone_state m";

/// A seed-format lock of milestone `$1` held by pid `$2`, taken now.
const SEED_LOCK: &str = r#"seed_lock() {
    mkdir -p ".milestones/state/.locks/$1.lock"
    echo "$2" > ".milestones/state/.locks/$1.lock/pid"
    date -u +%Y-%m-%dT%H:%M:%SZ > ".milestones/state/.locks/$1.lock/acquired"
}"#;

#[test]
fn init_milestone_state_matches_the_seed() {
    parity(
        "",
        &[
            ("init_milestone_state m", Same),
            ("init_milestone_state m", Same),
            ("cat .milestones/state/events/milestone-m.jsonl", Same),
            (
                "ls -A .milestones/state | grep -v '^clock$' | sort",
                Check(same_dirs),
            ),
        ],
        &[],
    );
}

/// The layout directories of the seed are all there (mstate may add more).
fn same_dirs(seed: &Call, ours: &Call) {
    for d in seed.out.lines() {
        assert!(
            ours.out.lines().any(|o| o == d),
            "{d} missing: {}",
            ours.out
        );
    }
}

#[test]
fn acquire_and_release_state_lock_match_the_seed() {
    let live = Holder::live();
    let env = [
        ("LIVE", live.pid().to_string()),
        ("DEAD", dead_pid().to_string()),
    ];
    let setup = format!("{SEED_LOCK}\n{INIT}\nseed_lock other \"$LIVE\"\nseed_lock gone \"$DEAD\"\nseed_lock gone2 \"$DEAD\"");
    let warning = "WARNING: Cannot release lock not owned by this process";
    parity(
        &setup,
        &[
            // Nothing held.
            ("release_state_lock m", Same),
            (
                "release_state_lock m force",
                Differs {
                    seed: (1, warning),
                    ours: (0, "State lock released for milestone: m"),
                },
            ),
            // This shell's lock.
            ("acquire_state_lock m 1", Same),
            (
                "acquire_state_lock m 1",
                Differs {
                    seed: (1, "ERROR: Could not acquire state lock for milestone: m"),
                    ours: (0, "State lock acquired for milestone: m"),
                },
            ),
            ("release_state_lock m", Same),
            ("release_state_lock m", Same),
            ("acquire_state_lock m", Same),
            ("release_state_lock m force", Same),
            ("acquire_state_lock m 1", Same),
            ("(release_state_lock m)", Same),
            ("test -d .milestones/state/.locks/m.lock", Same),
            // A live process's lock.
            ("acquire_state_lock other 1", Same),
            ("release_state_lock other", Same),
            (
                "release_state_lock other force",
                Differs {
                    seed: (1, warning),
                    ours: (0, ""),
                },
            ),
            ("cat .milestones/state/.locks/other.lock/pid", Same),
            // A dead process's lock.
            ("release_state_lock gone", Same),
            (
                "release_state_lock gone force",
                Differs {
                    seed: (1, warning),
                    ours: (0, "State lock released for milestone: gone"),
                },
            ),
            (
                "test -d .milestones/state/.locks/gone.lock",
                Differs {
                    seed: (0, ""),
                    ours: (1, ""),
                },
            ),
            (
                "acquire_state_lock gone2 1",
                Differs {
                    seed: (
                        1,
                        "ERROR: Could not acquire state lock for milestone: gone2",
                    ),
                    ours: (0, "State lock acquired for milestone: gone2"),
                },
            ),
        ],
        &env,
    );
    drop(live);
}

#[test]
fn save_and_load_milestone_state_match_the_seed() {
    parity(
        INIT,
        &[
            ("load_milestone_state m", Same),
            ("save_milestone_state m '{\"phase\": '", Same),
            ("save_milestone_state m ''", Same),
            (
                "save_milestone_state m '{\"phase\": \"plan\", \"n\": 1, \"tags\": [\"a\", \"b\"]}'",
                Same,
            ),
            ("load_milestone_state m", Same),
            ("state=$(load_milestone_state m); echo \"$state\"", Same),
            ("save_milestone_state m '{\"phase\": \"build\", \"n\": 2}'", Same),
            ("save_milestone_state m '[1, 2.5, null, \"é\"]'", Same),
            ("load_milestone_state m", Same),
            ("save_milestone_state m '{\"phase\": \"ship\"}'", Same),
            ("grep -c '' .milestones/state/events/milestone-m.jsonl", Same),
            ("query_milestone_events m", Same),
            // A corrupt state file: the seed prints the recovery's messages
            // instead of the state; the layer recovers and prints it.
            ("echo '{\"phase\": \"bu' > .milestones/state/active/m.json", Same),
            ("load_milestone_state m", Check(corrupt_load)),
            ("load_milestone_state m", Same),
            ("ls .milestones/state/active | grep -c corrupted", Same),
            // Under a held lock the seed waits 30 s for itself and fails;
            // the layer's run is in save_in_a_held_lock_prints_no_lock_lines.
        ],
        &[],
    );
}

fn corrupt_load(seed: &Call, ours: &Call) {
    assert_eq!(seed.rc, 0);
    assert_eq!(
        normalise(&seed.out),
        "ERROR: Corrupted state file, attempting recovery...\n\
         Attempting to recover milestone state for: m\n\
         Using backup: .milestones/state/backups/m-<stamp>.json\n\
         State lock acquired for milestone: m\n\
         State lock released for milestone: m\n\
         State recovered successfully from: .milestones/state/backups/m-<stamp>.json"
    );
    assert_eq!(ours.rc, 0, "{}", ours.out);
    let v: Value = serde_json::from_str(&ours.out).expect("the recovered state");
    assert_eq!(v, serde_json::json!([1, 2.5, null, "é"]));
}

#[test]
fn save_in_a_held_lock_prints_no_lock_lines() {
    // The layer only: the seed waits for its own lock and fails.
    let calls = [
        "init_milestone_state m >/dev/null",
        "acquire_state_lock m 1",
        "save_milestone_state m '{\"a\": 1}'",
        "save_milestone_state m '{\"a\": '",
        "create_state_checkpoint m c1",
        "restore_from_checkpoint m c1",
        "recover_milestone_state m",
        "release_state_lock m",
    ];
    for side in [Side::Bash, Side::Zsh] {
        if side == Side::Zsh && !have_tool("zsh") {
            continue;
        }
        let r = run(side, &[], "", &calls);
        let got: Vec<(i32, String)> = r.iter().map(|c| (c.rc, normalise(&c.out))).collect();
        let want = [
            (0, ""),
            (0, "State lock acquired for milestone: m"),
            (0, "Milestone state saved: .milestones/state/active/m.json"),
            (1, "ERROR: Invalid JSON state data"),
            (0, "Checkpoint created: c1"),
            (
                0,
                "Checkpoint created: pre-restore-<stamp>\nState restored from checkpoint: c1",
            ),
            (
                0,
                "Attempting to recover milestone state for: m\n\
                 Using backup: .milestones/state/backups/m-<stamp>.json\n\
                 State recovered successfully from: .milestones/state/backups/m-<stamp>.json",
            ),
            (0, "State lock released for milestone: m"),
        ];
        let want: Vec<(i32, String)> = want.iter().map(|(c, s)| (*c, s.to_string())).collect();
        assert_eq!(got, want, "{side:?}");
    }
}

#[test]
fn log_milestone_event_matches_the_seed() {
    parity(
        INIT,
        &[
            (
                "log_milestone_event m progress '{\"percentage\": 10}'",
                Same,
            ),
            (
                "log_milestone_event m note '{\"text\": \"a b\"}' sess-x",
                Same,
            ),
            ("tail -n 2 .milestones/state/events/milestone-m.jsonl", Same),
            // A milestone never initialised: its log is created.
            ("log_milestone_event fresh started '{\"x\": 1}'", Same),
            ("cat .milestones/state/events/milestone-fresh.jsonl", Same),
            // Invalid data: the seed writes a line that is not JSON; the
            // layer keeps the data as a JSON string.
            ("log_milestone_event m progress '{bad'", Same),
            (
                "tail -n 1 .milestones/state/events/milestone-m.jsonl",
                Check(|s, o| raw_kept(s, o, "{bad")),
            ),
            ("log_milestone_event m progress ''", Same),
            (
                "tail -n 1 .milestones/state/events/milestone-m.jsonl",
                Check(|s, o| raw_kept(s, o, "")),
            ),
        ],
        &[],
    );
}

fn raw_kept(seed: &Call, ours: &Call, data: &str) {
    assert!(
        seed.out.contains(&format!("\"data\":{data},")),
        "{}",
        seed.out
    );
    assert!(serde_json::from_str::<Value>(&seed.out).is_err());
    let v: Value = serde_json::from_str(&ours.out).expect("a JSON line");
    assert_eq!(v["data"], Value::from(data));
    assert_eq!(v["event_type"], "progress");
}

/// The same events in both logs, written by the functions.
const EVENTS: &str = r#"init_milestone_state m
log_milestone_event m progress '{"percentage": 10}'
log_milestone_event m note '{}'
log_milestone_event m progress '{"percentage": 90}'
log_milestone_event fresh started '{"x": 1}'"#;

#[test]
fn query_milestone_events_matches_the_seed() {
    parity(
        EVENTS,
        &[
            ("query_milestone_events m", Same),
            ("query_milestone_events m '' '' 2", Same),
            ("query_milestone_events m '' '' 1", Same),
            ("query_milestone_events m '' 2000-01-01", Same),
            ("query_milestone_events nothing-here", Same),
            ("query_milestone_events nothing-here progress", Same),
            // The seed's filters never apply; the layer's do.
            ("query_milestone_events m progress", Check(type_filter)),
            (
                "query_milestone_events m '' 2999-01-01 | grep -c timestamp",
                Differs {
                    seed: (0, "4"),
                    ours: (1, "0"),
                },
            ),
        ],
        &[],
    );
}

fn type_filter(seed: &Call, ours: &Call) {
    assert_eq!((seed.rc, ours.rc), (0, 0));
    let types = |out: &str| -> Vec<String> {
        out.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("a JSON line");
                v.get("event_type")
                    .or_else(|| v.get("event"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(
        types(&seed.out),
        ["state_initialized", "progress", "note", "progress"]
    );
    assert_eq!(types(&ours.out), ["progress", "progress"]);
}

#[test]
fn generate_event_timeline_matches_the_seed() {
    parity(
        EVENTS,
        &[
            ("generate_event_timeline m json", Same),
            ("generate_event_timeline fresh json", Same),
            ("generate_event_timeline nothing-here", Same),
            ("generate_event_timeline nothing-here json", Same),
            ("generate_event_timeline m xml", Same),
            ("generate_event_timeline nothing-here xml", Same),
            // The seed prints data as Python's repr.
            (
                "generate_event_timeline fresh",
                Differs {
                    seed: (
                        0,
                        "=== Milestone Event Timeline: fresh ===\n<time> [started] {'x': 1}",
                    ),
                    ours: (
                        0,
                        "=== Milestone Event Timeline: fresh ===\n<time> [started] {\"x\":1}",
                    ),
                },
            ),
            // The seed's text timeline crashes on its own first line.
            (
                "generate_event_timeline m",
                Differs {
                    seed: (1, "=== Milestone Event Timeline: m ==="),
                    ours: (
                        0,
                        "=== Milestone Event Timeline: m ===\n\
                         <time> [state_initialized] {}\n\
                         <time> [progress] {\"percentage\":10}\n\
                         <time> [note] {}\n\
                         <time> [progress] {\"percentage\":90}",
                    ),
                },
            ),
            (
                "generate_event_timeline m markdown >/dev/null",
                Differs {
                    seed: (1, ""),
                    ours: (0, ""),
                },
            ),
        ],
        &[],
    );
}

#[test]
fn checkpoints_match_the_seed() {
    parity(
        INIT,
        &[
            ("create_state_checkpoint m c1", Same),
            ("restore_from_checkpoint m c1", Same),
            ("save_milestone_state m '{\"v\": 1}'", Same),
            ("create_state_checkpoint m c1", Same),
            ("create_state_checkpoint m c1", Same),
            ("create_state_checkpoint m", Same),
            (
                "ls .milestones/state/backups | grep -c checkpoint-manual-",
                Same,
            ),
            ("save_milestone_state m '{\"v\": 2}'", Same),
            ("restore_from_checkpoint m nope", Same),
            ("restore_from_checkpoint other c1", Same),
            ("restore_from_checkpoint m c1", Same),
            ("load_milestone_state m", Same),
            (
                "ls .milestones/state/backups | grep -c checkpoint-pre-restore-",
                Same,
            ),
            // No state file: the pre-restore checkpoint cannot be made.
            ("rm .milestones/state/active/m.json", Same),
            ("restore_from_checkpoint m c1", Same),
            ("load_milestone_state m", Same),
        ],
        &[],
    );
}

#[test]
fn recover_milestone_state_matches_the_seed() {
    parity(
        INIT,
        &[
            ("recover_milestone_state m", Same),
            ("recover_milestone_state nothing-here", Same),
            ("save_milestone_state m '{\"v\": 1}'", Same),
            ("recover_milestone_state m", Same),
            ("save_milestone_state m '{\"v\": 2}'", Same),
            ("echo '{' > .milestones/state/active/m.json", Same),
            ("recover_milestone_state m", Same),
            ("load_milestone_state m", Same),
            ("ls .milestones/state/active | grep -c corrupted", Same),
            // Every backup corrupt.
            (
                "for f in .milestones/state/backups/m-*.json; do echo '{' > \"$f\"; done",
                Same,
            ),
            ("recover_milestone_state m", Same),
            ("load_milestone_state m", Same),
            // The newest file is a checkpoint: the seed restores it.
            ("save_milestone_state m '{\"v\": 3}'", Same),
            ("save_milestone_state m '{\"v\": 4}'", Same),
            ("create_state_checkpoint m cp", Same),
            ("recover_milestone_state m", Check(no_checkpoint)),
        ],
        &[],
    );
}

fn no_checkpoint(seed: &Call, ours: &Call) {
    let lines = |c: &Call| normalise(&c.out);
    let with = |b: &str| {
        format!(
            "Attempting to recover milestone state for: m\n\
             Using backup: .milestones/state/backups/{b}\n\
             State lock acquired for milestone: m\n\
             State lock released for milestone: m\n\
             State recovered successfully from: .milestones/state/backups/{b}"
        )
    };
    assert_eq!((seed.rc, lines(seed)), (0, with("m-checkpoint-cp.json")));
    assert_eq!((ours.rc, lines(ours)), (0, with("m-<stamp>.json")));
}

#[test]
fn sessions_match_the_seed() {
    parity(
        INIT,
        &[
            ("get_current_session_id", Same),
            ("end_milestone_session", Same),
            ("end_milestone_session session-20000101-000000-1", Same),
            ("sid=$(create_milestone_session m); echo \"$sid\"", Same),
            ("get_current_session_id", Same),
            ("cat .milestones/state/.current_session", Same),
            ("log_milestone_event m work '{}'", Same),
            ("tail -n 1 .milestones/state/events/milestone-m.jsonl", Same),
            ("end_milestone_session", Same),
            ("get_current_session_id", Same),
            ("test -e .milestones/state/.current_session", Same),
            ("end_milestone_session \"$sid\"", Same),
            ("sid2=$(create_milestone_session m); echo \"$sid2\"", Same),
            ("end_milestone_session \"$sid2\"", Same),
            ("get_current_session_id", Same),
            // Ending a session that is not the current one: the seed
            // forgets the current one too.
            ("sid3=$(create_milestone_session m)", Same),
            ("sid4=$(create_milestone_session m)", Same),
            ("end_milestone_session \"$sid3\"", Same),
            (
                "get_current_session_id",
                Differs {
                    seed: (0, "no-session"),
                    ours: (0, "session-<stamp>-<pid>"),
                },
            ),
            ("end_milestone_session \"$sid4\" >/dev/null", Same),
            (
                "query_milestone_events m session_created | grep -c ''",
                Check(|s, o| {
                    // The seed's filter does not apply: all 11 lines (its
                    // second end of a session logged it again).
                    assert_eq!((s.rc, s.out.as_str()), (0, "11"));
                    assert_eq!((o.rc, o.out.as_str()), (0, "4"));
                }),
            ),
        ],
        &[],
    );
}

#[test]
fn cleanup_milestone_state_matches_the_seed() {
    let setup = format!(
        "{INIT}\n\
         sid=$(create_milestone_session m); end_milestone_session\n\
         touch -d '10 days ago' .milestones/state/sessions/*.json\n\
         L=.milestones/state/events/milestone-m.jsonl\n\
         {{ echo '{old}'; cat $L; }} > $L.new && mv $L.new $L",
        old = r#"{"timestamp":"2000-01-01T00:00:00Z","milestone_id":"m","session_id":"no-session","event_type":"old","data":{},"pid":1,"user":"u"}"#
    );
    parity(
        &setup,
        &[
            (
                "query_milestone_events m old",
                Check(|s, o| {
                    assert_eq!(s.rc, 0);
                    assert_eq!(
                        normalise(&o.out),
                        normalise(s.out.lines().next().unwrap_or_default())
                    );
                }),
            ),
            ("i=$(ls -i \"$L\")", Same),
            ("cleanup_milestone_state m 7", Same),
            // The live log was replaced (tail -F follows it, tail -f not).
            ("test \"$i\" != \"$(ls -i \"$L\")\"", Same),
            ("query_milestone_events m", Same),
            ("ls .milestones/state/sessions | grep -c ''", Same),
            ("cleanup_milestone_state m", Same),
            ("cleanup_milestone_state nothing-here 3", Same),
            ("query_milestone_events nothing-here", Same),
        ],
        &[],
    );
}
