//! The seed's functions as a drop-in shell layer: one script written
//! against them runs first on the seed's own functions
//! (`tests/fixtures/seed_functions.sh`: verbatim, with the minimal fixes its
//! header lists), then on `eval "$(mstate shell-init bash)"` (and zsh when
//! installed). Their stdout and the files they leave must agree, ignoring
//! timestamps, pids, ids and status messages (`tests/shell_parity.rs`
//! compares those, call by call, with the unmodified seed).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

struct Run {
    stdout: String,
    stderr: String,
    dir: tempfile::TempDir,
}

fn run(shell: &str, prelude: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let script = format!("{prelude}\n{}", fixture("seed_script.sh"));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_mstate"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(shell)
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("TZ", "UTC")
        .env_remove("MSTATE_DIR")
        .env_remove("MSTATE_SESSION")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        out.status.success(),
        "{shell} {prelude:.40}: exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    Run {
        stdout,
        stderr,
        dir,
    }
}

/// Status messages whose wording may differ from the seed's.
const STATUS: &[&str] = &[
    "State lock",
    "Milestone state saved",
    "Checkpoint created",
    "State restored",
    "Attempting to recover",
    "Using backup",
    "State recovered",
    "Cleaning up",
    "State cleanup completed",
    "Removed old session",
    "Session ended",
    "State management initialized",
    "ERROR:",
    "WARNING:",
    "Corrupted state",
    "shell-demo:",
];

/// Stdout with status lines dropped, ids and times replaced, and JSON
/// reduced to what both sides promise.
fn normalise(stdout: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut json_buf = String::new();
    for line in stdout.lines() {
        if STATUS.iter().any(|p| line.starts_with(p)) {
            continue;
        }
        if !json_buf.is_empty() || line.starts_with('[') || line.starts_with('{') {
            json_buf.push_str(line);
            json_buf.push('\n');
            if let Ok(v) = serde_json::from_str::<Value>(&json_buf) {
                out.push(reduce(&v).to_string());
                json_buf.clear();
            }
            continue;
        }
        let line = line
            .split_whitespace()
            .map(|w| {
                if w.starts_with("session-") {
                    "<session>"
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        out.push(line);
    }
    assert!(json_buf.is_empty(), "unterminated JSON: {json_buf}");
    out
}

/// Events become (type, data without mstate's extra keys); other JSON stays.
fn reduce(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(reduce).collect()),
        Value::Object(o)
            if o.contains_key("timestamp")
                && (o.contains_key("event_type") || o.contains_key("event")) =>
        {
            let ty = o
                .get("event_type")
                .or_else(|| o.get("event"))
                .cloned()
                .unwrap_or_default();
            let mut data = o
                .get("data")
                .cloned()
                .unwrap_or(Value::Object(Default::default()));
            if let Value::Object(d) = &mut data {
                if d.get("checkpoint_name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.starts_with("pre-restore-"))
                {
                    d.insert("checkpoint_name".into(), Value::from("pre-restore-<time>"));
                }
                for k in [
                    "revision",
                    "corrupt_moved_to",
                    "state_file",
                    "backup_file",
                    "checkpoint_file",
                    "events_removed",
                    "backups_removed",
                    "checkpoints_removed",
                    "sessions_removed",
                    "clock",
                    "session_id",
                ] {
                    d.remove(k);
                }
            }
            serde_json::json!({"type": ty, "data": data})
        }
        other => other.clone(),
    }
}

fn state_root(r: &Run) -> std::path::PathBuf {
    r.dir.path().join(".milestones/state")
}

/// What the run left on disk, in comparable form.
fn files(r: &Run) -> BTreeMap<&'static str, Value> {
    let root = state_root(r);
    let read =
        |p: &Path| -> Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let mut out = BTreeMap::new();
    out.insert(
        "state",
        read(&root.join("active/shell-demo.json"))["state"].clone(),
    );
    let mut checkpoints: Vec<String> = std::fs::read_dir(root.join("backups"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter_map(|n| {
            n.strip_prefix("shell-demo-checkpoint-")
                .map(|c| c.strip_suffix(".json").unwrap_or(c).to_string())
        })
        .map(|c| {
            if c.starts_with("pre-restore-") {
                "pre-restore-<time>".to_string()
            } else {
                c
            }
        })
        .collect();
    checkpoints.sort();
    out.insert("checkpoints", serde_json::json!(checkpoints));
    let corrupted = std::fs::read_dir(root.join("active"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".json.corrupted."))
        .count();
    out.insert("corrupted files", serde_json::json!(corrupted));
    let types: Vec<Value> = std::fs::read_to_string(root.join("events/milestone-shell-demo.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("every stored line parses");
            reduce(&v)
        })
        .collect();
    out.insert("events", Value::Array(types));
    let sessions: Vec<Value> = std::fs::read_dir(root.join("sessions"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| {
            let s = read(&e.path());
            serde_json::json!({"milestone_id": s["milestone_id"], "status": s["status"], "git_branch": s["git_branch"],
                "working_directory_set": s["working_directory"].as_str().is_some_and(|w| !w.is_empty()),
                "ended": s.get("ended_at").is_some()})
        })
        .collect();
    out.insert("sessions", Value::Array(sessions));
    // Lock directories only: mstate keeps each milestone's fencing-token
    // counter beside them.
    let locks = std::fs::read_dir(root.join(".locks"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .count();
    out.insert("locks left", serde_json::json!(locks));
    out.insert(
        "current session file",
        serde_json::json!(root.join(".current_session").exists()),
    );
    out
}

fn compare(reference: &Run, ours: &Run) {
    let (a, b) = (normalise(&reference.stdout), normalise(&ours.stdout));
    assert_eq!(
        a, b,
        "stdout differs\nseed:\n{}\nmstate:\n{}",
        reference.stdout, ours.stdout
    );
    let (fa, fb) = (files(reference), files(ours));
    for (k, v) in &fa {
        assert_eq!(Some(v), fb.get(k), "{k} differs");
    }
    // mstate keeps the invalid event data as its raw text, and says so.
    assert!(
        ours.stderr.contains("keeping the data as a JSON string"),
        "{}",
        ours.stderr
    );
}

#[test]
fn a_seed_script_runs_unchanged_through_shell_init_bash() {
    let reference = run("bash", &fixture("seed_functions.sh"));
    let ours = run("bash", "eval \"$(mstate shell-init bash)\"");
    compare(&reference, &ours);
    // Sanity: the comparison covers what it should.
    let f = files(&ours);
    assert_eq!(f["locks left"], 0);
    assert_eq!(f["corrupted files"], 1);
    assert!(normalise(&ours.stdout)
        .iter()
        .any(|l| l.contains("\"percentage\":90")));
}

#[test]
fn and_through_shell_init_zsh_when_zsh_is_installed() {
    if !common::have_tool("zsh") {
        return;
    }
    let reference = run("bash", &fixture("seed_functions.sh"));
    let ours = run("zsh", "eval \"$(mstate shell-init zsh)\"");
    compare(&reference, &ours);
}
