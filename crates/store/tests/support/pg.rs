//! A PostgreSQL schema of a test's own.
//!
//! The server is `MSTATE_TEST_PG_URL`, by default
//! `postgresql://postgres@127.0.0.1:5432/test` (a URL: the CLI's
//! `--store` takes only URLs). Without a server
//! a test fails when `MSTATE_TEST_REQUIRE_TOOLS=1` (as in CI), and
//! otherwise passes after saying it skipped.

#![allow(dead_code)]

use mstate_store::model::Actor;
use mstate_store::pg::PgStore;

pub const DEFAULT_URL: &str = "postgresql://postgres@127.0.0.1:5432/test";

pub fn url() -> String {
    std::env::var("MSTATE_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// A schema of this test's own, dropped on drop.
pub struct TestSchema {
    pub name: String,
    pub admin: postgres::Client,
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
    }
}

impl TestSchema {
    /// A new store on this schema (its own connection).
    pub fn store(&self) -> PgStore {
        PgStore::connect(&url(), &self.name).expect("connect")
    }

    /// A store acting as process `pid` of a host of its own (so the
    /// others judge its locks by their leases, not by its pid).
    pub fn store_as(&self, pid: u32) -> PgStore {
        let host = format!("host-{pid}");
        PgStore::connect_as(&url(), &self.name, Actor::new(pid, "tester", host)).expect("connect")
    }

    /// Run SQL in the schema from the admin connection.
    pub fn sql(&mut self, sql: &str) {
        self.admin
            .batch_execute(&format!("SET search_path TO \"{}\"; {sql}", self.name))
            .expect(sql);
    }

    pub fn count(&mut self, sql: &str) -> i64 {
        self.admin
            .batch_execute(&format!("SET search_path TO \"{}\"", self.name))
            .expect("search_path");
        self.admin.query_one(sql, &[]).expect(sql).get(0)
    }
}

/// A fresh schema name and an admin connection, or `None` (after a note)
/// when there is no server and the tools are not required.
pub fn schema() -> Option<TestSchema> {
    let admin = match postgres::Client::connect(&url(), postgres::NoTls) {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("MSTATE_TEST_REQUIRE_TOOLS").as_deref() == Ok("1") {
                panic!("no PostgreSQL server at {:?}: {e}", url());
            }
            eprintln!(
                "skipped: no PostgreSQL server at {:?} ({e}); set MSTATE_TEST_PG_URL",
                url()
            );
            return None;
        }
    };
    let name = format!("mstate_test_{:016x}", random());
    Some(TestSchema { name, admin })
}

fn random() -> u64 {
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
