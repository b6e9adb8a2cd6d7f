//! Helpers shared by the tests that drive the binary against a
//! PostgreSQL server (`tests/pg_*.rs`).

pub mod cluster;
pub mod ledger;
pub mod pg;
