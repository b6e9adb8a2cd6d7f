//! The PostgreSQL backend failing, seen through the real binary:
//! connections terminated by the server while commands run, servers,
//! databases and users that are not there, bad URLs and schema names,
//! and a schema newer than the binary.
//!
//! Every test works in a schema of its own (see `support::pg`); without a
//! server it passes after printing `skipped: ...`, unless
//! `MSTATE_TEST_REQUIRE_TOOLS=1`.

mod support;

use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::Value;
use support::ledger::{check_round, Outcomes};
use support::pg::{
    assert_success, base_url, bin, connect, output_within, random, schema, server_words, size,
    terminate, Bin,
};

/// Check a failure of a command whose connection was terminated: the
/// documented code of an I/O failure, a message naming the server and
/// the cause; under `--json`, one JSON error object saying the same.
fn check_failure(out: &Output, json: bool, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    let message = if json {
        let v: Value =
            serde_json::from_str(err.trim()).unwrap_or_else(|e| panic!("{what}: {e}: {err}"));
        assert_eq!(v["error"]["code"], 1, "{what}: {v}");
        assert_eq!(v["error"]["kind"], "failure", "{what}: {v}");
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    } else {
        err.into_owned()
    };
    let (host_port, db) = server_words();
    assert!(
        message.contains(&host_port) && message.contains(&db),
        "{what}: the message names the server: {message}"
    );
    assert!(
        message.contains("connection"),
        "{what}: the message names the cause: {message}"
    );
}

/// Writers (`update --set`, `log`) and a reader run while a killer
/// terminates the binary's server connections at random moments. After
/// each round: every acknowledged write is there and nothing else; the
/// revision counts the updates that landed; the state events are exactly
/// revisions 1..R; seqs have no gap; failures exited 1 naming the server.
#[test]
fn connections_killed_at_random_lose_no_acknowledged_write() {
    let Some(s) = schema() else { return };
    s.ok(&["init", "m"]);
    s.ok(&["save", "m", r#"{"base": true}"#]);
    let (rounds, per_worker) = (size(20, 4), size(60, 20));
    let mut updates = Outcomes::default();
    let mut logs = Outcomes::default();
    let (mut kills, mut failures) = (0, 0);
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let killer = {
            let (stop, app) = (stop.clone(), s.name.clone());
            let mut client = connect();
            std::thread::spawn(move || {
                let mut kills = 0;
                let mut seed = random() | 1;
                while !stop.load(Ordering::Relaxed) {
                    kills += terminate(&mut client, &app);
                    // A random pause paces the kills (it synchronises
                    // nothing): the commands meet them at random points,
                    // and most commands (tens of ms each) run untouched.
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    std::thread::sleep(Duration::from_millis(50 + seed % 500));
                }
                kills
            })
        };
        let start = Arc::new(Barrier::new(5));
        let workers: Vec<_> = (0..5)
            .map(|w| {
                let (bin, start) = (s.bin.clone(), start.clone());
                std::thread::spawn(move || worker(&bin, &start, w, round, per_worker))
            })
            .collect();
        for w in workers {
            let (kind, outcomes, failed) = w.join().expect("a worker failed");
            failures += failed;
            let into = match kind {
                Work::Update => &mut updates,
                Work::Log => &mut logs,
                Work::Read => continue,
            };
            into.acked.extend(outcomes.acked);
            into.failed.extend(outcomes.failed);
        }
        stop.store(true, Ordering::Relaxed);
        kills += killer.join().expect("the killer failed");
        check_round(&s, &updates, &logs);
    }
    eprintln!(
        "{rounds} rounds: {kills} connections terminated, {failures} commands failed; \
         updates {} acknowledged, {} failed; events {} acknowledged, {} failed",
        updates.acked.len(),
        updates.failed.len(),
        logs.acked.len(),
        logs.failed.len()
    );
    assert!(
        kills > 0,
        "the killer never met a connection: the test tested nothing"
    );
}

/// What a worker of the kill test does.
#[derive(Debug, Clone, Copy)]
enum Work {
    /// `update m --set /KEY=1`.
    Update,
    /// `log m tick {"key": KEY}`.
    Log,
    /// `load m --envelope`, checking revisions never go back.
    Read,
}

/// Worker `w` of round `round`: `n` commands, recorded by key.
fn worker(bin: &Bin, start: &Barrier, w: usize, round: usize, n: usize) -> (Work, Outcomes, usize) {
    let kind = match w {
        0 | 1 => Work::Update,
        2 | 3 => Work::Log,
        _ => Work::Read,
    };
    let mut outcomes = Outcomes::default();
    let (mut failures, mut last_revision) = (0, 0);
    start.wait();
    for i in 0..n {
        let key = format!("w{w}_r{round}_i{i}");
        let args: Vec<String> = match kind {
            Work::Update => vec![
                "update".into(),
                "m".into(),
                "--set".into(),
                format!("/{key}=1"),
            ],
            Work::Log => vec![
                "log".into(),
                "m".into(),
                "tick".into(),
                format!(r#"{{"key": "{key}"}}"#),
            ],
            Work::Read => vec!["load".into(), "m".into(), "--envelope".into()],
        };
        // Every other command reports in JSON (`load --envelope --json`
        // has the revision at the top too).
        let json = (w + i) % 2 == 1;
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        if json {
            args.push("--json");
        }
        let out = bin.run(&args);
        if !out.status.success() {
            failures += 1;
            check_failure(&out, json, &format!("mstate {args:?}"));
            outcomes.failed.insert(key);
            continue;
        }
        outcomes.acked.insert(key);
        if let Work::Read = kind {
            let env: Value = serde_json::from_slice(&out.stdout).expect("envelope");
            let rev = env["revision"].as_u64().expect("revision");
            assert!(
                rev >= last_revision,
                "a read went back from {last_revision} to {rev}"
            );
            last_revision = rev;
        }
    }
    (kind, outcomes, failures)
}

/// One store location that cannot work, and what its failure must say.
struct Case {
    what: &'static str,
    store: String,
    code: i32,
    /// Every one of these is in the message.
    words: Vec<String>,
}

/// The test server's URL with its user replaced.
fn with_user(user: &str) -> String {
    let url = base_url();
    let (scheme, rest) = url.split_once("://").expect("a postgresql:// URL");
    let rest = rest.split_once('@').map_or(rest, |(_, r)| r);
    format!("{scheme}://{user}@{rest}")
}

/// The test server's URL with its database replaced.
fn with_database(db: &str) -> String {
    let url = base_url();
    let (server, _) = url.rsplit_once('/').expect("a URL naming a database");
    format!("{server}/{db}")
}

/// Bad URLs, a closed port, an unknown database, an unknown user, a bad
/// schema name: each read and write exits with its documented code
/// (promptly: a guard kills a hung command), the message names the
/// server or the part of the location at fault and the cause, `--json`
/// gives one JSON error object, and nothing panics.
#[test]
fn unusable_locations_fail_with_documented_codes_and_clear_messages() {
    // The server is needed for the database and user cases only, but the
    // skip rule is the same for all.
    let Some(_s) = schema() else { return };
    let (host_port, _) = server_words();
    let no_db = format!("mstate_no_db_{:08x}", random() as u32);
    let cases = [
        Case {
            what: "a URL without a host",
            store: "postgres://".into(),
            code: 6,
            words: vec!["connection string".into(), "no server host".into()],
        },
        Case {
            what: "a URL with a bad port",
            store: "postgres://postgres@127.0.0.1:notaport/test".into(),
            code: 6,
            words: vec!["connection string".into(), "port".into()],
        },
        Case {
            what: "a URL with an unknown option",
            store: format!("{}?bogus_option=1", base_url()),
            code: 6,
            words: vec!["connection string".into(), "bogus_option".into()],
        },
        Case {
            what: "a closed port",
            store: "postgresql://postgres@127.0.0.1:1/test".into(),
            code: 1,
            words: vec![
                "127.0.0.1:1".into(),
                "database 'test'".into(),
                "refused".into(),
            ],
        },
        Case {
            what: "an unknown database",
            store: with_database(&no_db),
            code: 1,
            words: vec![
                host_port.clone(),
                format!("database '{no_db}'"),
                "does not exist".into(),
            ],
        },
        Case {
            what: "an unknown user",
            store: with_user("mstate_no_such_user"),
            code: 1,
            words: vec![
                host_port.clone(),
                "mstate_no_such_user".into(),
                "refused this user".into(),
            ],
        },
        Case {
            what: "a bad schema name",
            store: format!("{}?schema=Bad-Name", base_url()),
            code: 6,
            words: vec!["schema name".into(), "Bad-Name".into()],
        },
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    for case in &cases {
        for args in [&["load", "m"][..], &["save", "m", "{}"], &["init", "m"]] {
            for json in [false, true] {
                let mut c = std::process::Command::new(bin());
                c.current_dir(dir.path())
                    .env_remove("MSTATE_DIR")
                    .env("MSTATE_STORE", &case.store)
                    .args(args);
                if json {
                    c.arg("--json");
                }
                let what = format!("{} ({args:?}, json: {json})", case.what);
                let out = output_within(c, Duration::from_secs(60), &what);
                let err = String::from_utf8_lossy(&out.stderr).into_owned();
                assert_eq!(out.status.code(), Some(case.code), "{what}: {err}");
                assert!(out.stdout.is_empty(), "{what}: stdout {:?}", out.stdout);
                assert!(!err.contains("panicked"), "{what}: {err}");
                let message = if json {
                    let lines: Vec<&str> = err.lines().collect();
                    assert_eq!(lines.len(), 1, "{what}: one JSON line: {err}");
                    let v: Value = serde_json::from_str(lines[0])
                        .unwrap_or_else(|e| panic!("{what}: {e}: {err}"));
                    assert_eq!(
                        v["error"]["code"].as_i64(),
                        Some(case.code.into()),
                        "{what}: {v}"
                    );
                    let kind = if case.code == 1 { "failure" } else { "invalid" };
                    assert_eq!(v["error"]["kind"], kind, "{what}: {v}");
                    v["error"]["message"].as_str().expect("message").to_string()
                } else {
                    assert!(err.starts_with("mstate: error: "), "{what}: {err}");
                    err
                };
                for word in &case.words {
                    assert!(
                        message.contains(word.as_str()),
                        "{what}: no {word:?} in {message}"
                    );
                }
            }
        }
    }
    // Nothing was created for the fresh schema of this test by failures
    // elsewhere (a sanity check of the cases' isolation).
    let mut admin = connect();
    let created: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&no_db],
        )
        .expect("pg_database")
        .get(0);
    assert_eq!(created, 0);
}

/// A schema whose version is newer than the binary's: every command is
/// refused with exit 6, naming the server, the schema and the versions,
/// and touches nothing; once the row is gone all works again.
#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let Some(mut s) = schema() else { return };
    s.ok(&["init", "m"]);
    s.ok(&["save", "m", r#"{"step": 1}"#]);
    let versions = s.int("SELECT count(*) FROM mstate_schema_version");
    s.sql(
        "INSERT INTO mstate_schema_version (version, description) VALUES (999, 'from the future')",
    );
    let (host_port, db) = server_words();
    let commands: [&[&str]; 8] = [
        &["load", "m"],
        &["save", "m", r#"{"step": 2}"#],
        &["update", "m", "--set", "/step=3"],
        &["init", "n"],
        &["log", "m", "note"],
        &["list"],
        &["events", "m"],
        &["lock", "acquire", "m", "--timeout", "0"],
    ];
    for args in commands {
        for json in [false, true] {
            let mut c = s.cmd(args);
            if json {
                c.arg("--json");
            }
            let what = format!("mstate {args:?} (json: {json})");
            let out = output_within(c, Duration::from_secs(60), &what);
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert_eq!(out.status.code(), Some(6), "{what}: {err}");
            for word in [
                host_port.as_str(),
                db.as_str(),
                &s.name,
                "version 999",
                "newer mstate",
            ] {
                assert!(err.contains(word), "{what}: no {word:?} in {err}");
            }
            if json {
                let v: Value = serde_json::from_str(err.trim()).expect("a JSON error");
                assert_eq!(v["error"]["kind"], "invalid", "{v}");
            }
        }
    }
    // Untouched: no migration recorded, no write made.
    assert_eq!(
        s.int("SELECT count(*) FROM mstate_schema_version"),
        versions + 1
    );
    assert_eq!(
        s.int("SELECT revision FROM mstate_milestones WHERE id = 'm'"),
        1
    );
    assert_eq!(s.int("SELECT count(*) FROM mstate_milestones"), 1);
    assert_eq!(s.int("SELECT count(*) FROM mstate_events"), 2);
    assert_eq!(s.int("SELECT count(*) FROM mstate_locks"), 0);
    s.sql("DELETE FROM mstate_schema_version WHERE version = 999");
    let env = s.envelope("m");
    assert_eq!(env["state"]["step"], 1);
    assert_success(
        &s.run(&["save", "m", r#"{"step": 2}"#]),
        "save once the schema is known",
    );
}

/// A role of a test's own, dropped (with its privileges) on drop.
struct Role {
    name: String,
}

impl Drop for Role {
    fn drop(&mut self) {
        let mut admin = connect();
        let _ = admin.batch_execute(&format!(
            "DROP OWNED BY \"{0}\"; DROP ROLE IF EXISTS \"{0}\"",
            self.name
        ));
    }
}

/// A user with the rights to use a migrated schema's tables but not to
/// create anything (no CREATE on the database or the schema) works with
/// it: a current schema is not migrated again, so no DDL is run.
#[test]
fn a_user_without_ddl_rights_uses_a_migrated_schema() {
    let Some(mut s) = schema() else { return };
    s.ok(&["init", "m"]);
    s.ok(&["save", "m", r#"{"step": 1}"#]);
    let role = Role {
        name: format!("{}_dml", s.name),
    };
    s.sql(&format!(
        "CREATE ROLE \"{r}\" LOGIN;
         GRANT USAGE ON SCHEMA \"{n}\" TO \"{r}\";
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{n}\" TO \"{r}\";
         GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA \"{n}\" TO \"{r}\";",
        r = role.name,
        n = s.name
    ));
    let store = with_user(&role.name);
    let user = Bin {
        store: format!("{store}?schema={0}&application_name={0}", s.name),
        dir: s.bin.dir.clone(),
    };
    let env =
        serde_json::from_str::<Value>(&user.ok(&["load", "m", "--envelope"])).expect("envelope");
    assert_eq!(env["state"]["step"], 1);
    user.ok(&["update", "m", "--set", "/step=2"]);
    user.ok(&["log", "m", "note", r#"{"by": "dml user"}"#]);
    user.ok(&["init", "n"]);
    user.ok(&["lock", "acquire", "m", "--timeout", "0"]);
    user.ok(&["lock", "release", "m"]);
    user.ok(&["list"]);
    assert_eq!(s.envelope("m")["state"]["step"], 2);
    assert_eq!(s.events("m").len(), 4, "init, save, update, note");
}
