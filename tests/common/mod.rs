//! Shared by the integration tests: run the real `mstate` binary in a
//! directory, with the environment variables that would change its
//! behaviour removed.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mstate")
}

/// A command for the binary, started in `dir`, with a clean environment.
pub fn cmd(dir: &Path) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir)
        .env_remove("MSTATE_DIR")
        .env_remove("MSTATE_STORE")
        .env_remove("MSTATE_SESSION")
        .env_remove("MSTATE_LOCK_TIMEOUT")
        .env_remove("MSTATE_MAX_BACKUPS")
        .env_remove("MSTATE_LOCK_TOKEN")
        .env_remove("MSTATE_LOCK_MILESTONE");
    c
}

/// Run `mstate ARGS` in `dir`.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    cmd(dir).args(args).output().expect("run mstate")
}

/// Run `mstate ARGS` in `dir` with extra environment variables.
pub fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = cmd(dir);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run mstate")
}

/// Run `mstate ARGS` in `dir` with `input` on standard input (a write the
/// binary refuses to read in full is not an error).
pub fn run_stdin(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = cmd(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mstate");
    let mut stdin = child.stdin.take().expect("stdin");
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().expect("wait for mstate")
}

/// Run `mstate ARGS`, assert success, return stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "mstate {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// The exit code of `mstate ARGS`.
pub fn code(dir: &Path, args: &[&str]) -> i32 {
    run(dir, args).status.code().unwrap_or(-1)
}

/// Whether the external tool `name` (strace, faketime, ...) is on PATH.
/// A test that needs a missing tool calls this, prints that it was
/// skipped and returns; with `MSTATE_TEST_REQUIRE_TOOLS=1` (set by
/// `.ci/run`, which installs the tools) a missing tool fails the test
/// instead, so CI never passes by skipping.
pub fn have_tool(name: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(name).is_file()));
    if !found {
        assert!(
            std::env::var("MSTATE_TEST_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "{name} is required (MSTATE_TEST_REQUIRE_TOOLS=1) but not on PATH"
        );
        eprintln!("skipped: {name} not found on PATH");
    }
    found
}

/// Whether the full sizes were asked for (`MSTATE_STRESS=full`, as
/// `scripts/reliability.sh` runs them); the default sizes keep CI fast.
pub fn full() -> bool {
    std::env::var("MSTATE_STRESS").is_ok_and(|v| v == "full")
}

/// Print a figure of a test, and append it as a JSON line to
/// `$MSTATE_RELIABILITY_REPORT` when set (RELIABILITY.md quotes them).
pub fn report(figure: &serde_json::Value) {
    if let Ok(path) = std::env::var("MSTATE_RELIABILITY_REPORT") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{figure}");
        }
    }
    eprintln!("{figure}");
}

/// The unmodified seed library (`tests/fixtures/seed_original.sh`).
pub fn seed_functions() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed_original.sh"),
    )
    .expect("read the seed fixture")
}

/// Run bash in `dir` with the seed's functions loaded, then `script`.
pub fn seed(dir: &Path, script: &str) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!("{}\n{script}", seed_functions()))
        .current_dir(dir)
        .env("TZ", "UTC")
        .output()
        .expect("run bash")
}
