//! Milestone state in PostgreSQL: init, save, load, list, complete and
//! reopen, history.

use std::time::SystemTime;

use postgres::Transaction;
use serde_json::{json, Map, Value};

use crate::error::{Error, ObjectKind, Result};
use crate::id::MilestoneId;
use crate::model::{
    Actor, BackupInfo, Envelope, Loaded, MilestoneSummary, Saved, Status, ENVELOPE_VERSION,
};
use crate::store::{Initialized, WriteOptions};

use super::events::{append, NO_SESSION};
use super::lock::{check_write, decode};
use super::{format_time, Fail, PgStore};

/// What a write reads of the milestone row it has locked.
pub(super) struct MilestoneRow {
    pub status: Status,
    pub revision: u64,
    pub next_seq: u64,
    pub lock_token: u64,
}

/// Lock the milestone's row for this transaction (creating it first when
/// `create`); `None` when it does not exist and is not to be created.
pub(super) fn lock_row(
    tx: &mut Transaction<'_>,
    id: &MilestoneId,
    create: bool,
) -> Result<Option<MilestoneRow>, Fail> {
    if create {
        tx.execute(
            "INSERT INTO mstate_milestones (id) VALUES ($1) ON CONFLICT (id) DO NOTHING",
            &[&id.as_str()],
        )?;
    }
    let Some(row) = tx.query_opt(
        "SELECT status, revision, next_seq, lock_token FROM mstate_milestones \
         WHERE id = $1 FOR NO KEY UPDATE",
        &[&id.as_str()],
    )?
    else {
        return Ok(None);
    };
    let status: String = row.try_get(0)?;
    let num = |i: usize| -> Result<u64, Fail> {
        let v: i64 = row.try_get(i)?;
        Ok(u64::try_from(v).unwrap_or(0))
    };
    Ok(Some(MilestoneRow {
        status: parse_status(&status),
        revision: num(1)?,
        next_seq: num(2)?,
        lock_token: num(3)?,
    }))
}

/// Refuse JSON text holding the character U+0000 (`\u0000`), which
/// PostgreSQL's `jsonb` cannot store, as invalid input naming it (rather
/// than as the server's error).
pub(crate) fn check_no_nul(text: &str, what: &str) -> Result<()> {
    let bytes = text.as_bytes();
    for at in memchr::memmem::find_iter(bytes, b"\\u0000") {
        // An escape only if the backslash is not itself escaped.
        let run = bytes[..at]
            .iter()
            .rev()
            .take_while(|b| **b == b'\\')
            .count();
        if run % 2 == 0 {
            return Err(Error::invalid(
                what,
                "it holds the character U+0000 (\\u0000), which a PostgreSQL store cannot keep; \
                 remove it, or keep this milestone in a file store",
            ));
        }
    }
    Ok(())
}

/// The checks of every write of a state: the fencing token (or no live
/// lease of someone else's) and the expected revision.
pub(super) fn check_state_write(
    tx: &mut Transaction<'_>,
    actor: &Actor,
    id: &MilestoneId,
    row: &MilestoneRow,
    opts: &WriteOptions,
    token: Option<u64>,
) -> Result<(), Fail> {
    check_write(tx, actor, id, row, token)?;
    if let Some(expected) = opts.expect_revision {
        if expected != row.revision {
            return Err(Fail::Store(Error::Conflict {
                milestone: id.to_string(),
                expected,
                actual: row.revision,
            }));
        }
    }
    Ok(())
}

fn parse_status(s: &str) -> Status {
    if s == "completed" {
        Status::Completed
    } else {
        Status::Active
    }
}

pub(super) fn not_found(id: &MilestoneId) -> Error {
    Error::NotFound {
        kind: ObjectKind::Milestone,
        name: id.to_string(),
        hint: Some(crate::error::Hint::SaveToCreate {
            milestone: id.to_string(),
        }),
    }
}

/// The name a superseded revision is listed (and will be recovered) by.
pub fn revision_name(revision: u64) -> String {
    format!("r{revision}")
}

impl PgStore {
    /// Create the milestone's row and log `state_initialized` unless its
    /// log already has events (`created` says which).
    pub fn init(&self, id: &MilestoneId, opts: &WriteOptions) -> Result<Initialized> {
        self.write("initialise a milestone in", id, opts.lock_timeout, |tx| {
            let row = lock_row(tx, id, true)?.ok_or_else(|| not_found(id))?;
            check_write(tx, &self.actor, id, &row, None)?;
            let fresh = row.next_seq == 1;
            if fresh {
                append(
                    tx,
                    &self.actor,
                    id,
                    NO_SESSION,
                    "state_initialized",
                    &json!({}),
                )?;
            }
            Ok(Initialized {
                milestone_id: id.to_string(),
                created: fresh,
            })
        })
    }

    /// Replace the state: checked against `opts.expect_revision`, written
    /// as revision + 1 with the previous state kept in the history, and
    /// logged as `state_saved`, in one transaction. `token` is the fencing
    /// token of the lease the caller holds, if it holds one.
    pub fn save(
        &self,
        id: &MilestoneId,
        state: &Value,
        opts: &WriteOptions,
        token: Option<u64>,
    ) -> Result<Saved> {
        crate::json::check_depth(state, "state")?;
        let text =
            serde_json::to_string(state).map_err(|e| Error::invalid("state", e.to_string()))?;
        self.write_state(id, &text, opts, token)
    }

    /// [`PgStore::save`] of a state given as JSON text, stored as given.
    pub fn save_text(
        &self,
        id: &MilestoneId,
        state: &[u8],
        opts: &WriteOptions,
        token: Option<u64>,
    ) -> Result<Saved> {
        crate::json::check_strict(state, "state")?;
        let text = std::str::from_utf8(state)
            .map_err(|e| Error::invalid("state", format!("not UTF-8: {e}")))?;
        self.write_state(id, text, opts, token)
    }

    fn write_state(
        &self,
        id: &MilestoneId,
        text: &str,
        opts: &WriteOptions,
        token: Option<u64>,
    ) -> Result<Saved> {
        check_no_nul(text, "state")?;
        self.write("save the state in", id, opts.lock_timeout, |tx| {
            let row = lock_row(tx, id, true)?.ok_or_else(|| not_found(id))?;
            check_state_write(tx, &self.actor, id, &row, opts, token)?;
            self.commit_state(tx, id, &row, text, "state_saved", Map::new())
        })
    }

    /// Write `text` as the milestone's next revision, with the current
    /// one moved to the history (the oldest beyond `max_backups` pruned),
    /// and log `event` with `data` and the revision, in the caller's
    /// transaction: the common end of save, update, recover and restore,
    /// run under the row's lock after their checks.
    pub(super) fn commit_state(
        &self,
        tx: &mut Transaction<'_>,
        id: &MilestoneId,
        row: &MilestoneRow,
        text: &str,
        event: &str,
        data: Map<String, Value>,
    ) -> Result<Saved, Fail> {
        let backup = if row.revision > 0 {
            tx.execute(
                "INSERT INTO mstate_revisions (milestone_id, revision, state, state_text, written_at) \
                 SELECT id, revision, state, state_text, state_written_at \
                 FROM mstate_milestones WHERE id = $1",
                &[&id.as_str()],
            )?;
            let keep = i64::try_from(self.opts.max_backups).unwrap_or(i64::MAX);
            let prev = i64::try_from(row.revision).unwrap_or(i64::MAX);
            tx.execute(
                "DELETE FROM mstate_revisions WHERE milestone_id = $1 AND revision <= $2::bigint - $3::bigint",
                &[&id.as_str(), &prev, &keep],
            )?;
            Some(revision_name(row.revision))
        } else {
            None
        };
        let written = tx.query_one(
            "UPDATE mstate_milestones SET revision = revision + 1, state = $2::text::jsonb, \
             state_text = $2::text, state_written_at = clock_timestamp(), \
             updated_at = clock_timestamp() \
             WHERE id = $1 RETURNING revision, state_written_at",
            &[&id.as_str(), &text],
        )?;
        let revision: i64 = written.try_get(0)?;
        let at: SystemTime = written.try_get(1)?;
        let revision = u64::try_from(revision).unwrap_or(0);
        let mut full = Map::new();
        full.insert("revision".into(), json!(revision));
        if let Some(b) = &backup {
            full.insert("backup".into(), json!(b));
        }
        full.extend(data);
        append(tx, &self.actor, id, NO_SESSION, event, &Value::Object(full))?;
        Ok(Saved {
            milestone_id: id.to_string(),
            revision,
            timestamp: format_time(at),
            backup,
        })
    }

    /// The current state.
    pub fn load(&self, id: &MilestoneId) -> Result<Loaded> {
        let row = self.read("load the state from", |c| {
            Ok(c.query_opt(
                "SELECT status, revision, state_text, state_written_at FROM mstate_milestones \
                 WHERE id = $1 AND state_text IS NOT NULL",
                &[&id.as_str()],
            )?)
        })?;
        let Some(row) = row else {
            return Err(not_found(id));
        };
        let get = || -> Result<(String, i64, String, SystemTime), Fail> {
            Ok((
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            ))
        };
        let (status, revision, text, at) = get()
            .map_err(|f| f.into_error(self, "load the state from", super::fail::Effect::Read))?;
        let state = crate::json::parse_strict(text.as_bytes(), "stored state").map_err(|e| {
            Error::Corrupt {
                what: format!("state of milestone '{id}'"),
                path: std::path::PathBuf::from(&self.place),
                detail: e.to_string(),
                hint: None,
            }
        })?;
        Ok(Loaded {
            envelope: Envelope {
                timestamp: format_time(at),
                milestone_id: id.to_string(),
                version: ENVELOPE_VERSION.to_string(),
                revision: u64::try_from(revision).unwrap_or(0),
                state,
            },
            status: parse_status(&status),
            recovered: None,
        })
    }

    /// Every milestone with its status, revision and lock, by id (byte
    /// order). A milestone with events but no state has no revision.
    pub fn list(&self) -> Result<Vec<MilestoneSummary>> {
        self.read("list the milestones of", |c| {
            let rows = c.query(
                "SELECT m.id, m.status, m.revision, m.state_written_at, l.token, l.operation, \
                 l.host, l.pid, l.pid_start, l.boot_id, l.\"user\", l.acquired_at, l.ttl_secs, \
                 l.expires_at, (l.expires_at IS NOT NULL AND l.expires_at <= clock_timestamp()) \
                 AS expired \
                 FROM mstate_milestones m LEFT JOIN mstate_locks l ON l.milestone_id = m.id \
                 ORDER BY m.id COLLATE \"C\"",
                &[],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let id: String = r.try_get("id")?;
                let status: String = r.try_get("status")?;
                let revision: i64 = r.try_get("revision")?;
                let at: Option<SystemTime> = r.try_get("state_written_at")?;
                let token: Option<i64> = r.try_get("token")?;
                let lock = match token {
                    Some(_) => Some(decode(&id, &r)?.lease.info),
                    None => None,
                };
                out.push(MilestoneSummary {
                    milestone_id: id,
                    status: parse_status(&status),
                    revision: (revision > 0).then(|| u64::try_from(revision).unwrap_or(0)),
                    updated: at.map(format_time),
                    lock,
                    error: None,
                });
            }
            Ok(out)
        })
    }

    /// Mark the milestone completed (`milestone_completed` logged).
    pub fn complete(
        &self,
        id: &MilestoneId,
        opts: &WriteOptions,
        token: Option<u64>,
    ) -> Result<()> {
        self.set_status(id, Status::Completed, opts, token)
    }

    /// Make a completed milestone active again (`milestone_reopened`).
    pub fn reopen(&self, id: &MilestoneId, opts: &WriteOptions, token: Option<u64>) -> Result<()> {
        self.set_status(id, Status::Active, opts, token)
    }

    fn set_status(
        &self,
        id: &MilestoneId,
        to: Status,
        opts: &WriteOptions,
        token: Option<u64>,
    ) -> Result<()> {
        self.write("change the status in", id, opts.lock_timeout, |tx| {
            let row = lock_row(tx, id, false)?.ok_or_else(|| not_found(id))?;
            if row.revision == 0 {
                return Err(Fail::Store(not_found(id)));
            }
            check_write(tx, &self.actor, id, &row, token)?;
            if row.status == to {
                return Err(Fail::Store(Error::invalid(
                    "milestone state",
                    format!("milestone '{id}' is already {}", to.as_str()),
                )));
            }
            tx.execute(
                "UPDATE mstate_milestones SET status = $2, updated_at = clock_timestamp() WHERE id = $1",
                &[&id.as_str(), &to.as_str()],
            )?;
            let event = match to {
                Status::Completed => "milestone_completed",
                Status::Active => "milestone_reopened",
            };
            append(tx, &self.actor, id, NO_SESSION, event, &json!({"status": to.as_str()}))?;
            Ok(())
        })
    }

    /// The milestone's superseded revisions, newest first.
    pub fn history(&self, id: &MilestoneId) -> Result<Vec<BackupInfo>> {
        self.read("list the revisions in", |c| {
            let rows = c.query(
                "SELECT revision, octet_length(state_text)::bigint, written_at FROM mstate_revisions \
                 WHERE milestone_id = $1 ORDER BY revision DESC",
                &[&id.as_str()],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let revision: i64 = r.try_get(0)?;
                let size: i64 = r.try_get(1)?;
                let at: SystemTime = r.try_get(2)?;
                let revision = u64::try_from(revision).unwrap_or(0);
                out.push(BackupInfo {
                    name: revision_name(revision),
                    size: u64::try_from(size).unwrap_or(0),
                    modified: format_time(at),
                    revision: Some(revision),
                    valid: true,
                });
            }
            Ok(out)
        })
    }
}
