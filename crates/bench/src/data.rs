//! Test data: states of a given size, their state files and event lines,
//! byte for byte as mstate writes them, and where benchmark files live.

use std::path::{Path, PathBuf};

use mstate_store::model::{Envelope, ENVELOPE_VERSION};
use serde_json::{json, Value};

/// A state of about `size` bytes of compact JSON, shaped like a real one:
/// a phase, counters and a list of task records.
pub fn state(size: usize) -> Value {
    let mut tasks = Vec::new();
    let mut total = 120;
    let mut i = 0u64;
    while total < size {
        let status = ["pending", "running", "done", "failed"][(i % 4) as usize];
        let task = json!({
            "id": format!("task-{i:06}"),
            "status": status,
            "attempts": i % 3,
            "progress": (i % 100) as f64 / 100.0,
            "notes": format!("step {i} compiled and tested in {}.{:02}s", i % 60, i % 100),
            "tags": ["build", "test"],
        });
        total += serde_json::to_string(&task).map_or(0, |s| s.len() + 1);
        tasks.push(task);
        i += 1;
    }
    json!({
        "phase": "build",
        "progress": {"done": i / 2, "total": i},
        "owner": "ci@runner-3",
        "tasks": tasks,
    })
}

/// Compact JSON size of a value.
pub fn compact_len(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(0, |b| b.len())
}

/// The bytes of a state file holding `state` at `revision`, as mstate
/// writes it (pretty envelope plus a newline).
pub fn state_file(id: &str, revision: u64, state: &Value) -> Vec<u8> {
    let env = Envelope {
        timestamp: "2026-11-24T21:03:37.123456Z".into(),
        milestone_id: id.into(),
        version: ENVELOPE_VERSION.into(),
        revision,
        state: state.clone(),
    };
    let mut b = serde_json::to_vec_pretty(&env).expect("an envelope encodes");
    b.push(b'\n');
    b
}

/// An event line the size of the one mstate logs for `event_type`, with
/// the same fields in the same order.
pub fn event_line(event_type: &str, data: &Value, seq: u64) -> Vec<u8> {
    let mut line = format!(
        "{{\"timestamp\":\"2026-11-24T21:03:37.123456Z\",\"milestone_id\":\"m\",\"session_id\":\"no-session\",\"event_type\":\"{event_type}\",\"data\":{data},\"pid\":{},\"user\":\"root\",\"seq\":{seq},\"host\":\"vm\"}}",
        std::process::id()
    );
    line.push('\n');
    line.into_bytes()
}

/// Data of the `state_saved` event mstate logs for milestone `m`.
pub fn saved_data(revision: u64) -> Value {
    json!({"state_file": ".milestones/state/active/m.json", "revision": revision})
}

/// Data of the events the benchmarks log themselves.
pub fn progress_data(i: u64) -> Value {
    json!({"task": format!("task-{i:06}"), "percentage": i % 100})
}

/// Parse a size such as `1KB`, `100KB`, `5MB`, `512` (decimal units).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim().to_ascii_uppercase();
    let (num, mult) = if let Some(n) = t.strip_suffix("GB") {
        (n, 1_000_000_000)
    } else if let Some(n) = t.strip_suffix("MB") {
        (n, 1_000_000)
    } else if let Some(n) = t.strip_suffix("KB") {
        (n, 1_000)
    } else if let Some(n) = t.strip_suffix('B') {
        (n, 1)
    } else {
        (t.as_str(), 1)
    };
    num.trim()
        .parse::<f64>()
        .map(|n| (n * mult as f64) as usize)
        .map_err(|_| format!("not a size: {s:?}"))
}

/// Parse a comma-separated list of sizes or counts.
pub fn parse_list(s: &str) -> Result<Vec<usize>, String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| parse_size(&p.replace('_', "")))
        .collect()
}

/// A size as named on the command line (`1KB`, `5MB`).
pub fn size_name(n: usize) -> String {
    if n >= 1_000_000 && n % 1_000_000 == 0 {
        format!("{} MB", n / 1_000_000)
    } else if n >= 1_000 && n % 1_000 == 0 {
        format!("{} KB", n / 1_000)
    } else {
        format!("{n} B")
    }
}

/// The repository's `target/` directory (benchmarks run on real disk
/// there: `/tmp` may be a tmpfs).
pub fn target_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t);
    }
    // The binary lives in target/<profile>/.
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// A fresh, empty working directory `target/bench-work/<name>`.
pub fn fresh_dir(name: &str) -> std::io::Result<PathBuf> {
    let dir = target_dir().join("bench-work").join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_have_about_the_size_asked() {
        for size in [1_000, 100_000] {
            let n = compact_len(&state(size));
            assert!(n >= size && n < size + size / 5 + 400, "{size}: {n}");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("5MB"), Ok(5_000_000));
        assert_eq!(parse_size("1kb"), Ok(1_000));
        assert_eq!(parse_list("1000,1_000_000"), Ok(vec![1_000, 1_000_000]));
        assert!(parse_size("x").is_err());
        assert_eq!(size_name(100_000), "100 KB");
    }

    #[test]
    fn state_files_parse_as_envelopes() {
        let b = state_file("m", 3, &state(1_000));
        let env: Envelope = serde_json::from_slice(&b).unwrap();
        assert_eq!(env.revision, 3);
    }
}
