//! A PostgreSQL server of a test's own, to stop, crash and start again.
//!
//! The shared test server (`support::pg`) must stay up for everyone; a
//! test that restarts a server starts one of its own: `initdb` in a
//! temporary directory, then `pg_ctl start` on a free port of 127.0.0.1,
//! with its socket in that directory, trust authentication and the
//! server's defaults otherwise (fsync on). The binaries are those of
//! `MSTATE_TEST_PG_BINDIR`, else the `initdb` and `pg_ctl` found on PATH,
//! else `pg_config --bindir`'s. PostgreSQL refuses to run as root: as
//! root, they run as the `postgres` user (through `runuser`, or
//! `setpriv`), which owns the temporary directory. Without the binaries
//! or that user a test passes after printing `skipped: ...`, unless
//! `MSTATE_TEST_REQUIRE_TOOLS=1`. Dropping the [`Cluster`] stops the
//! server (`-m immediate`) and removes its directory, on a panic too.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::pg::Bin;

/// How long starting or stopping the server may take before the test
/// fails (a hang guard, not a timing assertion).
const SERVER_LIMIT: Duration = Duration::from_secs(60);

/// How a server is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `pg_ctl stop -m fast`: sessions are terminated, the server shuts
    /// down cleanly.
    Fast,
    /// `pg_ctl stop -m immediate`: every server process is killed at
    /// once, as in a crash; the next start recovers from the WAL.
    Immediate,
}

impl Stop {
    fn mode(self) -> &'static str {
        match self {
            Stop::Fast => "fast",
            Stop::Immediate => "immediate",
        }
    }
}

/// A server of the test's own (see the module's doc).
pub struct Cluster {
    bindir: PathBuf,
    /// Runs a PostgreSQL binary as the user that may (`None`: as we are).
    runner: Option<Vec<String>>,
    /// Holds the data directory, the socket and the server's log; owned
    /// by the user the server runs as.
    root: tempfile::TempDir,
    pub port: u16,
    /// A directory to run the binary in, which must stay empty.
    pub work: tempfile::TempDir,
}

/// `None` after a note when the tools are missing and not required.
fn skip<T>(why: String) -> Option<T> {
    assert!(
        std::env::var("MSTATE_TEST_REQUIRE_TOOLS").as_deref() != Ok("1"),
        "{why} (MSTATE_TEST_REQUIRE_TOOLS=1)"
    );
    eprintln!("skipped: {why}");
    None
}

/// The first directory of PATH holding `name`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Where `initdb` and `pg_ctl` are (see the module's doc).
fn bindir() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("MSTATE_TEST_PG_BINDIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return has_both(&dir).then_some(dir);
    }
    if let Some(dir) = on_path("initdb").and_then(|p| p.parent().map(Path::to_path_buf)) {
        if has_both(&dir) {
            return Some(dir);
        }
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && has_both(&dir)).then_some(dir)
}

/// The uid and gid of `user`, from `id`.
fn ids_of(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").arg(flag).arg(user).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// A port of 127.0.0.1 nobody listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

impl Cluster {
    /// A new server, initialised and started, or `None` (after a note)
    /// when it cannot be had and the tools are not required.
    pub fn start() -> Option<Cluster> {
        let Some(bindir) = bindir() else {
            return skip(
                "no initdb and pg_ctl (on PATH, in pg_config --bindir or MSTATE_TEST_PG_BINDIR)"
                    .into(),
            );
        };
        let root = tempfile::tempdir().expect("tempdir");
        let runner = if rustix::process::geteuid().is_root() {
            let Some((uid, gid)) = ids_of("postgres") else {
                return skip("running as root and there is no postgres user to run initdb".into());
            };
            std::os::unix::fs::chown(root.path(), Some(uid), Some(gid))
                .expect("chown the cluster's directory to postgres");
            if on_path("runuser").is_some() {
                Some(vec![
                    "runuser".into(),
                    "-u".into(),
                    "postgres".into(),
                    "--".into(),
                ])
            } else if on_path("setpriv").is_some() {
                Some(
                    [
                        "setpriv",
                        "--reuid",
                        "postgres",
                        "--regid",
                        "postgres",
                        "--init-groups",
                    ]
                    .map(String::from)
                    .to_vec(),
                )
            } else {
                return skip("running as root and neither runuser nor setpriv is there".into());
            }
        } else {
            None
        };
        let mut cluster = Cluster {
            bindir,
            runner,
            root,
            port: 0,
            work: tempfile::tempdir().expect("tempdir"),
        };
        let data = cluster.data();
        let out = cluster.run_pg(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--locale=C".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
            ],
        );
        assert_ok(&out, "initdb");
        // A port that is free now may be taken before the server binds
        // it: try a few.
        for attempt in 0.. {
            cluster.port = free_port();
            let out = cluster.pg_ctl_start();
            if out.status.success() {
                break;
            }
            let log = cluster.log();
            assert!(
                attempt < 5 && log.contains("could not bind"),
                "pg_ctl start: {out:?}\nlog:\n{log}"
            );
        }
        cluster.wait_ready();
        Some(cluster)
    }

    /// The data directory.
    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("log")).unwrap_or_default()
    }

    /// Run the PostgreSQL binary `name` as the user that may.
    fn run_pg(&self, name: &str, args: &[&std::ffi::OsStr]) -> Output {
        let program = self.bindir.join(name);
        let mut c = match &self.runner {
            Some(runner) => {
                let mut c = Command::new(&runner[0]);
                c.args(&runner[1..]).arg(program);
                c
            }
            None => Command::new(program),
        };
        // In a directory that user can read (the binaries look at it).
        c.args(args)
            .current_dir(self.root.path())
            .stdin(std::process::Stdio::null());
        super::pg::output_within(c, SERVER_LIMIT, name)
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        let data = self.data();
        let mut all: Vec<&std::ffi::OsStr> = vec!["-D".as_ref(), data.as_os_str()];
        all.extend(args.iter().map(std::ffi::OsStr::new));
        self.run_pg("pg_ctl", &all)
    }

    fn pg_ctl_start(&self) -> Output {
        let log = self.root.path().join("log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=on",
            self.port,
            self.root.path().display()
        );
        let log = log.to_string_lossy().into_owned();
        // `-w`: pg_ctl returns once the server accepts connections.
        self.pg_ctl(&["-w", "-t", "60", "-l", &log, "-o", &options, "start"])
    }

    /// Stop the server as `how` says; returns when it is down.
    pub fn stop(&self, how: Stop) {
        let out = self.pg_ctl(&["-w", "-t", "60", "-m", how.mode(), "stop"]);
        assert_ok(&out, &format!("pg_ctl stop -m {}", how.mode()));
    }

    /// Start the stopped server again on its port; returns when it
    /// accepts connections.
    pub fn start_again(&self) {
        let out = self.pg_ctl_start();
        assert!(
            out.status.success(),
            "pg_ctl start: {out:?}\nlog:\n{}",
            self.log()
        );
        self.wait_ready();
    }

    /// Wait until a connection to the server works.
    fn wait_ready(&self) {
        let deadline = Instant::now() + SERVER_LIMIT;
        loop {
            match postgres::Client::connect(&self.url(), postgres::NoTls) {
                Ok(_) => return,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "the server on port {} never accepted a connection: {e}\nlog:\n{}",
                    self.port,
                    self.log()
                ),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's URL (database `postgres`, user `postgres`).
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A connection of the test's own.
    pub fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).expect("connect to the cluster")
    }

    /// The binary pointed at `schema` of this server, run in [`Cluster::work`].
    pub fn bin(&self, schema: &str) -> Bin {
        Bin {
            store: format!("{}?schema={schema}&application_name={schema}", self.url()),
            dir: self.work.path().to_path_buf(),
        }
    }

    /// What the working directory holds (it should hold nothing).
    pub fn work_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.work.path())
            .expect("read the working directory")
            .map(|e| {
                e.expect("directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.port != 0 {
            let data = self.data();
            let mut c = match &self.runner {
                Some(runner) => {
                    let mut c = Command::new(&runner[0]);
                    c.args(&runner[1..]).arg(self.bindir.join("pg_ctl"));
                    c
                }
                None => Command::new(self.bindir.join("pg_ctl")),
            };
            // A server already stopped makes this fail: nothing to do.
            let _ = c
                .arg("-D")
                .arg(&data)
                .args(["-w", "-t", "60", "-m", "immediate", "stop"])
                .current_dir(self.root.path())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
