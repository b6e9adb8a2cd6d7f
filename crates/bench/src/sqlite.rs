//! The same operations on SQLite (bundled, WAL, `synchronous=FULL`): the
//! obvious alternative design, for comparison.
//!
//! Schema: `state(milestone_id PK, revision, timestamp, state)`,
//! `checkpoints(milestone_id, name, ...)`, and
//! `events(milestone_id, seq, timestamp, event_type, line)` keyed by
//! `(milestone_id, seq)` with an index on `(milestone_id, timestamp)`.
//! A save is one transaction that writes the state row and inserts the
//! `state_saved` event. SQLite keeps no backups of old states (mstate links
//! one per save).

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde_json::Value;

/// A connection to a benchmark database.
pub struct Sql {
    conn: Connection,
}

fn e(err: rusqlite::Error) -> String {
    err.to_string()
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS state(
  milestone_id TEXT PRIMARY KEY, revision INTEGER NOT NULL,
  timestamp TEXT NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints(
  milestone_id TEXT NOT NULL, name TEXT NOT NULL, revision INTEGER NOT NULL,
  timestamp TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY(milestone_id, name));
CREATE TABLE IF NOT EXISTS events(
  milestone_id TEXT NOT NULL, seq INTEGER NOT NULL, timestamp TEXT NOT NULL,
  event_type TEXT NOT NULL, line TEXT NOT NULL, PRIMARY KEY(milestone_id, seq));
CREATE INDEX IF NOT EXISTS events_time ON events(milestone_id, timestamp);
";

/// The timestamp written into rows (fixed: formatting time is not what is
/// compared here).
const TS: &str = "2026-11-24T21:03:37.123456Z";

impl Sql {
    /// Open (creating) the database at `path` in WAL mode, `synchronous=FULL`.
    pub fn open(path: &Path) -> Result<Sql, String> {
        let conn = Connection::open(path).map_err(e)?;
        conn.busy_timeout(Duration::from_secs(120)).map_err(e)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(e)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(e)?;
        conn.execute_batch(SCHEMA).map_err(e)?;
        Ok(Sql { conn })
    }

    /// A write transaction, taking the write lock at once (a deferred one
    /// could fail to upgrade under concurrent writers).
    fn begin(&self) -> Result<Transaction<'_>, String> {
        Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate).map_err(e)
    }

    /// Next `seq` of the milestone's events (inside a transaction).
    fn next_seq(&self, id: &str) -> Result<u64, String> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE milestone_id = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(e)
    }

    fn insert_event(
        &self,
        id: &str,
        seq: u64,
        event_type: &str,
        data: &Value,
    ) -> Result<(), String> {
        let line = crate::data::event_line(event_type, data, seq);
        let line = String::from_utf8(line).map_err(|x| x.to_string())?;
        self.conn
            .prepare_cached(
                "INSERT INTO events(milestone_id, seq, timestamp, event_type, line) VALUES(?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(e)?
            .execute(params![id, seq, TS, event_type, line.trim_end()])
            .map_err(e)?;
        Ok(())
    }

    /// Save: one transaction writing the state row and the event.
    pub fn save(&self, state: &Value) -> Result<u64, String> {
        let tx = self.begin()?;
        let rev: Option<u64> = self
            .conn
            .prepare_cached("SELECT revision FROM state WHERE milestone_id = 'm'")
            .map_err(e)?
            .query_row([], |r| r.get(0))
            .optional()
            .map_err(e)?;
        let rev = rev.unwrap_or(0) + 1;
        let text = serde_json::to_string(state).map_err(|x| x.to_string())?;
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO state VALUES('m', ?1, ?2, ?3)")
            .map_err(e)?
            .execute(params![rev, TS, text])
            .map_err(e)?;
        let seq = self.next_seq("m")?;
        self.insert_event("m", seq, "state_saved", &crate::data::saved_data(rev))?;
        tx.commit().map_err(e)?;
        Ok(rev)
    }

    /// Load: read the row and parse the state.
    pub fn load(&self) -> Result<u64, String> {
        let (rev, text): (u64, String) = self
            .conn
            .prepare_cached("SELECT revision, state FROM state WHERE milestone_id = 'm'")
            .map_err(e)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(e)?;
        let v: Value = serde_json::from_str(&text).map_err(|x| x.to_string())?;
        std::hint::black_box(v);
        Ok(rev)
    }

    /// Update: read, edit `/phase`, write back, log; one transaction.
    pub fn update(&self, serial: u64) -> Result<u64, String> {
        let tx = self.begin()?;
        let (rev, text): (u64, String) = self
            .conn
            .prepare_cached("SELECT revision, state FROM state WHERE milestone_id = 'm'")
            .map_err(e)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(e)?;
        let mut v: Value = serde_json::from_str(&text).map_err(|x| x.to_string())?;
        if let Some(o) = v.as_object_mut() {
            o.insert("phase".into(), Value::String(format!("phase-{serial}")));
        }
        let text = serde_json::to_string(&v).map_err(|x| x.to_string())?;
        self.conn
            .prepare_cached("UPDATE state SET revision = ?1, timestamp = ?2, state = ?3 WHERE milestone_id = 'm'")
            .map_err(e)?
            .execute(params![rev + 1, TS, text])
            .map_err(e)?;
        let seq = self.next_seq("m")?;
        self.insert_event("m", seq, "state_updated", &crate::data::saved_data(rev + 1))?;
        tx.commit().map_err(e)?;
        Ok(rev + 1)
    }

    /// Append one event (its own transaction); returns its `seq`.
    pub fn log(&self, data: &Value) -> Result<u64, String> {
        let tx = self.begin()?;
        let seq = self.next_seq("m")?;
        self.insert_event("m", seq, "progress", data)?;
        tx.commit().map_err(e)?;
        Ok(seq)
    }

    /// Copy the state row to checkpoint `c` and log it; one transaction.
    pub fn checkpoint(&self) -> Result<(), String> {
        let tx = self.begin()?;
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO checkpoints SELECT milestone_id, 'c', revision, timestamp, state FROM state WHERE milestone_id = 'm'",
            )
            .map_err(e)?
            .execute([])
            .map_err(e)?;
        let seq = self.next_seq("m")?;
        self.insert_event(
            "m",
            seq,
            "checkpoint_created",
            &serde_json::json!({"checkpoint_name": "c"}),
        )?;
        tx.commit().map_err(e)?;
        Ok(())
    }

    /// The write lock alone: `BEGIN IMMEDIATE; COMMIT` of nothing.
    pub fn lock(&self) -> Result<(), String> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE; COMMIT;")
            .map_err(e)
    }

    /// Bulk-load the lines of a JSONL log as milestone `m`'s events (fast,
    /// unsynced: this is set-up, not measurement).
    pub fn import_log(&self, log: &Path) -> Result<u64, String> {
        use std::io::BufRead;
        self.conn
            .execute_batch("PRAGMA synchronous=OFF; BEGIN;")
            .map_err(e)?;
        let f = std::fs::File::open(log).map_err(|x| x.to_string())?;
        let mut n = 0u64;
        {
            let mut ins = self
                .conn
                .prepare("INSERT INTO events(milestone_id, seq, timestamp, event_type, line) VALUES('m', ?1, ?2, ?3, ?4)")
                .map_err(e)?;
            for line in std::io::BufReader::with_capacity(1 << 20, f).lines() {
                let line = line.map_err(|x| x.to_string())?;
                let ts = field(&line, "\"timestamp\":\"");
                let ty = field(&line, "\"event_type\":\"");
                n += 1;
                ins.execute(params![n, ts, ty, line]).map_err(e)?;
            }
        }
        self.conn
            .execute_batch("COMMIT; PRAGMA synchronous=FULL;")
            .map_err(e)?;
        Ok(n)
    }

    /// `--tail N`: the last N events, oldest first. Returns bytes produced.
    pub fn tail(&self, n: usize) -> Result<usize, String> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT line FROM events WHERE milestone_id = 'm' ORDER BY seq DESC LIMIT ?1",
            )
            .map_err(e)?;
        let mut lines: Vec<String> = stmt
            .query_map([n as i64], |r| r.get(0))
            .map_err(e)?
            .collect::<Result<_, _>>()
            .map_err(e)?;
        lines.reverse();
        Ok(lines.iter().map(String::len).sum())
    }

    /// `--since T`: events at or after `T`, oldest first.
    pub fn since(&self, ts: &str) -> Result<usize, String> {
        self.sum_lines(
            "SELECT line FROM events WHERE milestone_id = 'm' AND timestamp >= ?1 ORDER BY timestamp, seq",
            ts,
        )
    }

    /// `--until T --tail N`.
    pub fn until_tail(&self, ts: &str, n: usize) -> Result<usize, String> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT line FROM events WHERE milestone_id = 'm' AND timestamp <= ?1 ORDER BY timestamp DESC, seq DESC LIMIT ?2")
            .map_err(e)?;
        let lines: Vec<String> = stmt
            .query_map(params![ts, n as i64], |r| r.get(0))
            .map_err(e)?
            .collect::<Result<_, _>>()
            .map_err(e)?;
        Ok(lines.iter().map(String::len).sum())
    }

    /// `--type T` over the whole log (no index on the type: a full scan).
    pub fn by_type(&self, ty: &str) -> Result<usize, String> {
        self.sum_lines(
            "SELECT line FROM events WHERE milestone_id = 'm' AND event_type = ?1 ORDER BY seq",
            ty,
        )
    }

    fn sum_lines(&self, sql: &str, arg: &str) -> Result<usize, String> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(e)?;
        let mut rows = stmt.query([arg]).map_err(e)?;
        let mut total = 0;
        while let Some(r) = rows.next().map_err(e)? {
            total += r
                .get_ref(0)
                .map_err(e)?
                .as_str()
                .map_err(|x| x.to_string())?
                .len();
        }
        Ok(total)
    }
}

/// The string value after `key` in a line (up to the next quote).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.find(key)
        .map(|i| &line[i + key.len()..])
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_run() {
        let dir = std::env::temp_dir().join(format!("mstate-sql-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = Sql::open(&dir.join("b.db")).unwrap();
        let st = crate::data::state(1_000);
        assert_eq!(db.save(&st).unwrap(), 1);
        assert_eq!(db.load().unwrap(), 1);
        assert_eq!(db.update(1).unwrap(), 2);
        assert_eq!(db.log(&serde_json::json!({})).unwrap(), 3);
        db.checkpoint().unwrap();
        db.lock().unwrap();
        assert!(db.tail(2).unwrap() > 0);
        assert!(db.by_type("progress").unwrap() > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fields_are_found() {
        let l = r#"{"timestamp":"2026-01-01T00:00:00Z","event_type":"x"}"#;
        assert_eq!(field(l, "\"event_type\":\""), "x");
        assert_eq!(field(l, "\"nope\":\""), "");
    }
}
