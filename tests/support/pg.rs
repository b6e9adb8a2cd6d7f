//! A PostgreSQL schema of a test's own, and the real binary pointed at it.
//!
//! The server is `MSTATE_TEST_PG_URL` (a `postgresql://` URL without
//! query parameters), by default `postgresql://postgres@127.0.0.1:5432/test`.
//! Each test gets a schema `mstate_t_<random hex>`, dropped when its
//! [`PgSchema`] is dropped, and an `application_name` of the same name, so
//! that a test killing "mstate's connections" kills its own only. Without
//! a server a test fails when `MSTATE_TEST_REQUIRE_TOOLS=1` (as in CI) and
//! otherwise passes after printing `skipped: ...`.

#![allow(dead_code)]

use std::process::{Command, Output};

use serde_json::Value;

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mstate")
}

/// The server tests use when `MSTATE_TEST_PG_URL` is not set.
pub const DEFAULT_URL: &str = "postgresql://postgres@127.0.0.1:5432/test";

/// The server's URL (no `schema`).
pub fn base_url() -> String {
    std::env::var("MSTATE_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_string())
}

/// Whether the full sizes were asked for (`MSTATE_TEST_FULL=1`, or
/// `MSTATE_STRESS=full` as `scripts/reliability.sh` sets).
pub fn full() -> bool {
    std::env::var("MSTATE_TEST_FULL").as_deref() == Ok("1")
        || std::env::var("MSTATE_STRESS").as_deref() == Ok("full")
}

/// `full_size` in a full run ([`full`]), else `small`. Not tied to the
/// build profile: what these tests spend is process starts and round
/// trips to the server, which a release build hardly shortens.
pub fn size(full_size: usize, small: usize) -> usize {
    if full() {
        full_size
    } else {
        small
    }
}

/// A schema of this test's own on the test server, with a directory to
/// run the binary in (so a command that wrongly fell back to a directory
/// store writes there, not in the repository). It derefs to its [`Bin`].
pub struct PgSchema {
    /// The schema's name, also the `application_name` of the binary's
    /// connections.
    pub name: String,
    /// A connection of the test's own (not `mstate`'s: a test that kills
    /// mstate's connections spares it).
    pub admin: postgres::Client,
    pub bin: Bin,
    pub dir: tempfile::TempDir,
}

/// The binary pointed at a schema: what threads of a test share.
#[derive(Debug, Clone)]
pub struct Bin {
    /// The `--store` / `MSTATE_STORE` location of the schema.
    pub store: String,
    pub dir: std::path::PathBuf,
}

impl std::ops::Deref for PgSchema {
    type Target = Bin;
    fn deref(&self) -> &Bin {
        &self.bin
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
    }
}

/// A fresh schema and an admin connection, or `None` (after a note) when
/// there is no server and the tools are not required.
pub fn schema() -> Option<PgSchema> {
    let url = base_url();
    let admin = match postgres::Client::connect(&url, postgres::NoTls) {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("MSTATE_TEST_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "no PostgreSQL server at {url:?} (MSTATE_TEST_REQUIRE_TOOLS=1): {e}"
            );
            eprintln!("skipped: no PostgreSQL server at {url:?} ({e}); set MSTATE_TEST_PG_URL");
            return None;
        }
    };
    let name = format!("mstate_t_{:016x}", random());
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = Bin {
        store: format!("{}?schema={name}&application_name={name}", base_url()),
        dir: dir.path().to_path_buf(),
    };
    Some(PgSchema {
        name,
        admin,
        bin,
        dir,
    })
}

impl Bin {
    /// `mstate ARGS` with `MSTATE_STORE` set to this schema (inherited by
    /// the commands a `lock run` starts), in the test's directory, with
    /// the other variables that change the binary's behaviour removed.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args);
        self.prepare(&mut c);
        c
    }

    /// `sh -c SCRIPT` with the environment of [`PgSchema::cmd`] and the
    /// binary as `$MSTATE`; arguments added to it are `$1`, `$2`, ...
    pub fn sh(&self, script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script).arg("sh");
        self.prepare(&mut c);
        c
    }

    fn prepare(&self, c: &mut Command) {
        c.current_dir(&self.dir)
            .env("MSTATE_STORE", &self.store)
            .env("MSTATE", bin())
            .env_remove("MSTATE_DIR")
            .env_remove("MSTATE_SESSION")
            .env_remove("MSTATE_LOCK_TIMEOUT")
            .env_remove("MSTATE_LOCK_TOKEN")
            .env_remove("MSTATE_MAX_BACKUPS");
    }

    /// Run `mstate ARGS` on this schema.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run mstate")
    }

    /// Run `mstate ARGS`, assert success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_success(&out, &format!("mstate {args:?}"));
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    /// The milestone's envelope (`load --envelope`).
    pub fn envelope(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["load", id, "--envelope"])).expect("envelope is JSON")
    }

    /// Every event of the milestone, parsed, in the order printed.
    pub fn events(&self, id: &str) -> Vec<Value> {
        self.ok(&["events", id, "--format", "jsonl"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("event {l:?}: {e}")))
            .collect()
    }
}

impl PgSchema {
    /// One `bigint` (or `count(*)`) from SQL run in the schema.
    pub fn int(&mut self, sql: &str) -> i64 {
        self.admin
            .batch_execute(&format!("SET search_path TO \"{}\"", self.name))
            .expect("search_path");
        self.admin.query_one(sql, &[]).expect(sql).get(0)
    }

    /// Run SQL in the schema.
    pub fn sql(&mut self, sql: &str) {
        self.admin
            .batch_execute(&format!("SET search_path TO \"{}\"; {sql}", self.name))
            .expect(sql);
    }
}

/// Terminate every connection whose `application_name` is `app` (the
/// binary's, on one test's schema); returns how many were terminated.
pub fn terminate(client: &mut postgres::Client, app: &str) -> usize {
    match client.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
        &[&app],
    ) {
        Ok(rows) => rows.len(),
        Err(e) => panic!("pg_terminate_backend: {e}"),
    }
}

/// Assert that `out` is a success, showing its output if not.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new admin connection to the test server.
pub fn connect() -> postgres::Client {
    postgres::Client::connect(&base_url(), postgres::NoTls).expect("connect to the test server")
}

/// A random number, different per call, process and time.
pub fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Run `cmd` with a hang guard: kill it and fail after `limit` (a test
/// that would otherwise hang forever, not a timing assertion).
pub fn output_within(mut cmd: Command, limit: std::time::Duration, what: &str) -> Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mstate");
    let deadline = std::time::Instant::now() + limit;
    loop {
        match child.try_wait().expect("wait") {
            Some(_) => return child.wait_with_output().expect("output"),
            None if std::time::Instant::now() >= deadline => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "{what}: still running after {limit:?}; stderr so far:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// How the binary names the test server in messages: `host:port` and
/// the database (`PostgreSQL database 'test' on 127.0.0.1:5432`).
pub fn server_words() -> (String, String) {
    server_words_of(&base_url())
}

/// [`server_words`] of the server at `url`.
pub fn server_words_of(url: &str) -> (String, String) {
    let config: postgres::Config = url.parse().expect("a PostgreSQL URL");
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres")
        .to_string();
    (format!("{host}:{port}"), format!("database '{db}'"))
}
