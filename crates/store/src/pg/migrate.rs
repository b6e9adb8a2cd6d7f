//! Bringing a schema to the newest version.
//!
//! `mstate_schema_version` holds one row per migration applied. Each
//! migration runs in its own transaction, which first takes a transaction
//! advisory lock on the schema's name (`pg_advisory_xact_lock`), then
//! reads the version and applies the migration only if it is still
//! missing, and records it: processes migrating one schema at once queue
//! on the lock and each migration is applied exactly once; one that fails
//! leaves the schema at the version before it. Running it again on a
//! migrated schema changes nothing.

use postgres::Client;

use crate::error::{Error, Result};

use super::schema::{latest_version, MIGRATIONS};
use super::Fail;

/// Longest schema name accepted, in bytes: the `NOTIFY` channel
/// `mstate_events:<schema>` must fit the 63 bytes of an identifier.
pub const MAX_SCHEMA_LEN: usize = 40;

/// First key of the advisory locks mstate takes (`msta`); the second is
/// the hash of the schema's name.
const LOCK_CLASS: i32 = 0x6d73_7461;

/// Accept a schema name: 1 to [`MAX_SCHEMA_LEN`] bytes of lower-case
/// ASCII letters, digits and `_`, not starting with a digit, and not
/// `pg_...` (reserved for the system). Such a name means the same quoted
/// or not, so it can be shown and typed as it is.
pub fn check_schema_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::invalid(
            "schema name",
            format!("{name:?} {why}; use 1 to {MAX_SCHEMA_LEN} lower-case ASCII letters, digits and '_', starting with a letter or '_'"),
        )
    };
    if name.is_empty() {
        return Err(bad("is empty"));
    }
    if name.len() > MAX_SCHEMA_LEN {
        return Err(bad("is too long"));
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad("starts with a digit"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(bad(&format!("contains {c:?}")));
    }
    if name.starts_with("pg_") {
        return Err(bad("starts with 'pg_', which PostgreSQL reserves"));
    }
    Ok(())
}

/// `name` as a quoted identifier (`"name"`, inner quotes doubled).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The version the schema of the connection's `search_path` is at (0
/// before any migration).
pub fn current_version(client: &mut Client) -> Result<i32, Fail> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('mstate_schema_version') IS NOT NULL",
            &[],
        )?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM mstate_schema_version",
            &[],
        )?
        .try_get(0)?)
}

/// Create `schema` if it is missing and apply every migration it lacks.
/// The connection's `search_path` must be `schema`. Returns the version
/// reached.
pub fn migrate(client: &mut Client, schema: &str) -> Result<i32, Fail> {
    check_schema_name(schema)?;
    let quoted = quote_ident(schema);
    {
        let mut tx = client.transaction()?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&LOCK_CLASS, &schema],
        )?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {quoted};
             CREATE TABLE IF NOT EXISTS {quoted}.mstate_schema_version (
                 version     integer PRIMARY KEY CHECK (version > 0),
                 description text NOT NULL,
                 applied_at  timestamptz NOT NULL DEFAULT clock_timestamp()
             );"
        ))?;
        tx.commit()?;
    }
    let latest = latest_version();
    let mut version = 0;
    for m in MIGRATIONS {
        let mut tx = client.transaction()?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&LOCK_CLASS, &schema],
        )?;
        version = tx
            .query_one(
                &format!("SELECT coalesce(max(version), 0) FROM {quoted}.mstate_schema_version"),
                &[],
            )?
            .try_get(0)?;
        if version > latest {
            return Err(Fail::Store(Error::invalid(
                "database schema",
                format!("schema '{schema}' is at version {version}, newer than this mstate knows ({latest}); use a newer mstate"),
            )));
        }
        if version >= m.version {
            tx.commit()?;
            continue;
        }
        tx.batch_execute(&format!("SET LOCAL search_path TO {quoted}"))?;
        tx.batch_execute(m.sql)?;
        tx.execute(
            &format!(
                "INSERT INTO {quoted}.mstate_schema_version (version, description) VALUES ($1, $2)"
            ),
            &[&m.version, &m.description],
        )?;
        tx.commit()?;
        version = m.version;
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        for ok in ["mstate", "mstate_test_0a1b", "_x", "a1"] {
            check_schema_name(ok).unwrap();
        }
        let long = "a".repeat(MAX_SCHEMA_LEN + 1);
        for bad in [
            "",
            "1abc",
            "Mstate",
            "a-b",
            "a\"b",
            "a;drop",
            "pg_temp",
            "é",
            long.as_str(),
        ] {
            assert!(check_schema_name(bad).is_err(), "accepted {bad:?}");
        }
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
