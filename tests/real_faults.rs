//! Real faults on the real binary: a full disk, a read-only filesystem and
//! a file size limit (`ulimit -f`). Each write fails with a clear message
//! and exit code 1, leaves no partial file, and leaves the store as it was.
//!
//! Full disk and read-only need a small tmpfs mounted for the test, which
//! takes root; without it those tests print a note and pass.

mod common;

use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

/// A tmpfs of `size` mounted on a temp dir, unmounted on drop.
struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    fn new(size: &str) -> Option<Mount> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("note: cannot mount a tmpfs here (needs root); skipping");
            return None;
        }
        Some(Mount { dir })
    }
    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
    fn remount_ro(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount read-only");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Paths of temp files (`*.tmp.*`) anywhere under `dir`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains(".tmp.") {
                out.push(p);
            }
        }
    }
    out
}

fn assert_intact(dir: &Path, expected: &Value) {
    let out = run(dir, &["load", "m"]);
    assert!(
        out.status.success(),
        "load: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "load needed recovery: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(&state, expected);
    assert!(
        temp_files(dir).is_empty(),
        "partial files left: {:?}",
        temp_files(dir)
    );
    let events = run(dir, &["events", "m"]);
    assert!(events.status.success());
    for line in String::from_utf8_lossy(&events.stdout).lines() {
        serde_json::from_str::<Value>(line).expect("event parses");
    }
}

#[test]
fn a_full_disk_fails_cleanly_and_changes_nothing() {
    let Some(mount) = Mount::new("256k") else {
        return;
    };
    let dir = mount.path();
    assert!(run(&dir, &["init", "m"]).status.success());
    let small = json!({"small": true});
    assert!(run(&dir, &["save", "m", &small.to_string()])
        .status
        .success());
    let big = json!({"blob": "x".repeat(400 * 1024)}).to_string();
    let out = run_stdin(&dir, &["save", "m", "-"], big.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert_intact(&dir, &small);
    // Once space is there again, writes work.
    assert!(run(&dir, &["save", "m", r#"{"after": 1}"#])
        .status
        .success());
}

#[test]
fn a_read_only_store_fails_cleanly_and_still_reads() {
    let Some(mount) = Mount::new("4m") else {
        return;
    };
    let dir = mount.path();
    assert!(run(&dir, &["init", "m"]).status.success());
    let state = json!({"v": 1});
    assert!(run(&dir, &["save", "m", &state.to_string()])
        .status
        .success());
    mount.remount_ro();
    for args in [
        vec!["save", "m", r#"{"v": 2}"#],
        vec!["log", "m", "x"],
        vec!["checkpoint", "create", "m", "c"],
    ] {
        let out = run(&dir, &args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
    }
    assert_intact(&dir, &state);
}

#[test]
fn a_file_size_limit_fails_cleanly_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(run(dir, &["init", "m"]).status.success());
    let state = json!({"v": 1});
    assert!(run(dir, &["save", "m", &state.to_string()])
        .status
        .success());
    let big = json!({"blob": "y".repeat(64 * 1024)}).to_string();
    // ulimit -f counts 512-byte blocks in sh: 16 blocks = 8 KiB.
    let out = Command::new("sh")
        .args(["-c", "ulimit -f 16 && exec \"$M\" save m \"$BIG\""])
        .env("M", bin())
        .env("BIG", &big)
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("File too large"));
    assert_intact(dir, &state);
}
