//! Edits, recovery, checkpoints and cleanup in PostgreSQL: the writes of
//! a state beyond a plain save, each one transaction under the
//! milestone row's lock, ending in [`PgStore::commit_state`] where they
//! write a state.

use std::time::SystemTime;

use postgres::Transaction;
use serde_json::{json, Map, Value};

use crate::error::{Error, ObjectKind, Result};
use crate::id::{CheckpointName, MilestoneId};
use crate::model::{CheckpointInfo, Recovery, Saved, StateEdit};
use crate::store::{CleanupOptions, CleanupReport, Restored, WriteOptions};
use crate::time;

use super::events::{append, NO_SESSION};
use super::lock::check_write;
use super::state::{check_state_write, lock_row, not_found, revision_name, MilestoneRow};
use super::{format_time, Fail, PgStore};

/// The row of a milestone that has a state, locked; not found otherwise.
fn lock_with_state(tx: &mut Transaction<'_>, id: &MilestoneId) -> Result<MilestoneRow, Fail> {
    match lock_row(tx, id, false)? {
        Some(row) if row.revision > 0 => Ok(row),
        _ => Err(Fail::Store(not_found(id))),
    }
}

/// The current state's text (the row must have one).
fn current_text(tx: &mut Transaction<'_>, id: &MilestoneId) -> Result<String, Fail> {
    let row = tx.query_one(
        "SELECT state_text FROM mstate_milestones WHERE id = $1",
        &[&id.as_str()],
    )?;
    Ok(row.try_get(0)?)
}

/// The revision a backup name (`r12`, or `12`) names.
fn parse_backup_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix('r').unwrap_or(name);
    digits
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0 && !digits.starts_with('0'))
}

fn checkpoint_not_found(id: &MilestoneId, name: &CheckpointName) -> Error {
    Error::NotFound {
        kind: ObjectKind::Checkpoint,
        name: name.to_string(),
        hint: Some(crate::error::Hint::ListCheckpoints {
            milestone: id.to_string(),
        }),
    }
}

/// Store a checkpoint of the current state under `name` (replacing one of
/// that name when `force`) and log `checkpoint_created`.
fn put_checkpoint(
    store: &PgStore,
    tx: &mut Transaction<'_>,
    id: &MilestoneId,
    name: &CheckpointName,
    force: bool,
) -> Result<CheckpointInfo, Fail> {
    let conflict = if force {
        "DO UPDATE SET revision = EXCLUDED.revision, state = EXCLUDED.state, \
         state_text = EXCLUDED.state_text, created_at = EXCLUDED.created_at"
    } else {
        "DO NOTHING"
    };
    let row = tx.query_opt(
        &format!(
            "INSERT INTO mstate_checkpoints (milestone_id, name, revision, state, state_text) \
             SELECT id, $2, revision, state, state_text FROM mstate_milestones WHERE id = $1 \
             ON CONFLICT (milestone_id, name) {conflict} \
             RETURNING revision, octet_length(state_text)::bigint, created_at"
        ),
        &[&id.as_str(), &name.as_str()],
    )?;
    let Some(row) = row else {
        return Err(Fail::Store(Error::AlreadyExists {
            kind: ObjectKind::Checkpoint,
            name: name.to_string(),
            hint: Some(crate::error::Hint::OtherNameOrReplace),
        }));
    };
    let revision: i64 = row.try_get(0)?;
    let size: i64 = row.try_get(1)?;
    let at: SystemTime = row.try_get(2)?;
    let revision = u64::try_from(revision).unwrap_or(0);
    append(
        tx,
        &store.actor,
        id,
        NO_SESSION,
        "checkpoint_created",
        &json!({"checkpoint_name": name.as_str(), "revision": revision}),
    )?;
    Ok(CheckpointInfo {
        name: name.to_string(),
        size: u64::try_from(size).unwrap_or(0),
        modified: format_time(at),
        revision: Some(revision),
        valid: true,
    })
}

impl PgStore {
    /// Apply `edit` to the current state and write the result as the next
    /// revision (`state_updated`), all in one transaction; an edit that
    /// cannot apply writes nothing.
    pub(super) fn update_state(
        &self,
        id: &MilestoneId,
        edit: &StateEdit,
        opts: &WriteOptions,
    ) -> Result<Saved> {
        edit.check()?;
        self.write("update the state in", id, opts.lock_timeout, |tx| {
            let row = lock_with_state(tx, id)?;
            check_state_write(tx, &self.actor, id, &row, opts, opts.lock_token)?;
            let text = current_text(tx, id)?;
            let mut value = crate::json::parse_strict(text.as_bytes(), "stored state")?;
            edit.apply(&mut value)?;
            crate::json::check_depth(&value, "the updated state")?;
            crate::json::check_value_size(&value, "the updated state")?;
            let new = serde_json::to_string(&value)
                .map_err(|e| Error::invalid("the updated state", e.to_string()))?;
            super::state::check_no_nul(&new, "the updated state")?;
            self.commit_state(tx, id, &row, &new, "state_updated", Map::new())
        })
    }

    /// Without `from`, the current state is valid (a database keeps no
    /// torn state): nothing to do. With `from`, that superseded revision
    /// becomes the next one (`state_recovered`).
    pub(super) fn recover_state(
        &self,
        id: &MilestoneId,
        from: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Recovery> {
        let Some(name) = from else {
            let loaded = self.load(id)?;
            return Ok(Recovery {
                backup: None,
                corrupt_moved_to: None,
                revision: loaded.envelope.revision,
            });
        };
        let no_backup = || Error::NotFound {
            kind: ObjectKind::Backup,
            name: name.to_string(),
            hint: Some(crate::error::Hint::ListBackups {
                milestone: id.to_string(),
            }),
        };
        let wanted = parse_backup_name(name).ok_or_else(no_backup)?;
        let wanted_i = i64::try_from(wanted).map_err(|_| no_backup())?;
        let saved = self.write("recover the state in", id, opts.lock_timeout, |tx| {
            let row = lock_row(tx, id, false)?.ok_or_else(|| not_found(id))?;
            check_state_write(tx, &self.actor, id, &row, opts, opts.lock_token)?;
            let text: String = tx
                .query_opt(
                    "SELECT state_text FROM mstate_revisions WHERE milestone_id = $1 AND revision = $2",
                    &[&id.as_str(), &wanted_i],
                )?
                .ok_or_else(no_backup)?
                .try_get(0)?;
            let mut data = Map::new();
            data.insert("recovered_from".into(), json!(revision_name(wanted)));
            self.commit_state(tx, id, &row, &text, "state_recovered", data)
        })?;
        Ok(Recovery {
            backup: Some(revision_name(wanted)),
            corrupt_moved_to: None,
            revision: saved.revision,
        })
    }

    pub(super) fn create_checkpoint(
        &self,
        id: &MilestoneId,
        name: Option<&CheckpointName>,
        force: bool,
        opts: &WriteOptions,
    ) -> Result<CheckpointInfo> {
        let name = match name {
            Some(n) => n.clone(),
            None => CheckpointName::new(format!("manual-{}", time::file_stamp(time::now())))?,
        };
        self.write("create a checkpoint in", id, opts.lock_timeout, |tx| {
            let row = lock_with_state(tx, id)?;
            check_write(tx, &self.actor, id, &row, opts.lock_token)?;
            put_checkpoint(self, tx, id, &name, force)
        })
    }

    /// The milestone's checkpoints, newest first.
    pub(super) fn list_checkpoints(&self, id: &MilestoneId) -> Result<Vec<CheckpointInfo>> {
        self.read("list the checkpoints in", |c| {
            let rows = c.query(
                "SELECT name, octet_length(state_text)::bigint, created_at, revision \
                 FROM mstate_checkpoints WHERE milestone_id = $1 \
                 ORDER BY created_at DESC, name COLLATE \"C\"",
                &[&id.as_str()],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let size: i64 = r.try_get(1)?;
                let at: SystemTime = r.try_get(2)?;
                let revision: i64 = r.try_get(3)?;
                out.push(CheckpointInfo {
                    name: r.try_get(0)?,
                    size: u64::try_from(size).unwrap_or(0),
                    modified: format_time(at),
                    revision: u64::try_from(revision).ok(),
                    valid: true,
                });
            }
            Ok(out)
        })
    }

    /// Make a checkpoint the next revision (`state_restored`), after
    /// checkpointing the current state as `pre-restore-<stamp>`.
    pub(super) fn restore_checkpoint(
        &self,
        id: &MilestoneId,
        name: &CheckpointName,
        opts: &WriteOptions,
    ) -> Result<Restored> {
        self.write("restore a checkpoint in", id, opts.lock_timeout, |tx| {
            let row = lock_row(tx, id, false)?.ok_or_else(|| not_found(id))?;
            check_state_write(tx, &self.actor, id, &row, opts, opts.lock_token)?;
            let text: String = tx
                .query_opt(
                    "SELECT state_text FROM mstate_checkpoints WHERE milestone_id = $1 AND name = $2",
                    &[&id.as_str(), &name.as_str()],
                )?
                .ok_or_else(|| checkpoint_not_found(id, name))?
                .try_get(0)?;
            let pre_restore = if row.revision > 0 {
                let pre = CheckpointName::new(format!(
                    "pre-restore-{}",
                    time::file_stamp(time::now())
                ))?;
                Some(put_checkpoint(self, tx, id, &pre, true)?.name)
            } else {
                None
            };
            let mut data = Map::new();
            data.insert("checkpoint_name".into(), json!(name.as_str()));
            let saved = self.commit_state(tx, id, &row, &text, "state_restored", data)?;
            Ok(Restored { saved, pre_restore })
        })
    }

    pub(super) fn delete_checkpoint(&self, id: &MilestoneId, name: &CheckpointName) -> Result<()> {
        self.write("delete a checkpoint in", id, self.opts.lock_timeout, |tx| {
            lock_row(tx, id, false)?.ok_or_else(|| not_found(id))?;
            let gone = tx.execute(
                "DELETE FROM mstate_checkpoints WHERE milestone_id = $1 AND name = $2",
                &[&id.as_str(), &name.as_str()],
            )?;
            if gone == 0 {
                return Err(Fail::Store(checkpoint_not_found(id, name)));
            }
            append(
                tx,
                &self.actor,
                id,
                NO_SESSION,
                "checkpoint_deleted",
                &json!({"checkpoint_name": name.as_str()}),
            )?;
            Ok(())
        })
    }

    /// Remove what is older than the cutoff: events (by their time),
    /// superseded revisions (by when they were superseded), checkpoints
    /// when asked (by when they were made), ended sessions (by when they
    /// ended); then log `state_cleaned`. A dry run reports only.
    pub(super) fn cleanup_milestone(
        &self,
        id: &MilestoneId,
        opts: &CleanupOptions,
    ) -> Result<CleanupReport> {
        let cutoff = SystemTime::from(opts.cutoff);
        self.write("clean up", id, self.opts.lock_timeout, |tx| {
            let mut report = CleanupReport {
                milestone_id: id.to_string(),
                dry_run: opts.dry_run,
                ..Default::default()
            };
            lock_row(tx, id, opts.create)?.ok_or_else(|| not_found(id))?;
            let names = |tx: &mut Transaction<'_>, sql: &str| -> Result<Vec<String>, Fail> {
                let rows = tx.query(sql, &[&id.as_str(), &cutoff])?;
                rows.iter()
                    .map(|r| r.try_get::<_, String>(0).map_err(Fail::from))
                    .collect()
            };
            let verb = if opts.dry_run { "SELECT" } else { "DELETE" };
            let events: i64 = if opts.dry_run {
                tx.query_one(
                    "SELECT count(*) FROM mstate_events WHERE milestone_id = $1 AND ts < $2",
                    &[&id.as_str(), &cutoff],
                )?
                .try_get(0)?
            } else {
                i64::try_from(tx.execute(
                    "DELETE FROM mstate_events WHERE milestone_id = $1 AND ts < $2",
                    &[&id.as_str(), &cutoff],
                )?)
                .unwrap_or(i64::MAX)
            };
            report.events_removed = u64::try_from(events).unwrap_or(0);
            let from = |what: &str, table: &str, cond: &str| {
                if verb == "SELECT" {
                    format!(
                        "SELECT {what} FROM {table} WHERE milestone_id = $1 AND {cond} ORDER BY 1"
                    )
                } else {
                    format!(
                        "DELETE FROM {table} WHERE milestone_id = $1 AND {cond} RETURNING {what}"
                    )
                }
            };
            let mut revisions = names(
                tx,
                &from("'r' || revision", "mstate_revisions", "superseded_at < $2"),
            )?;
            revisions.sort_by_key(|n| parse_backup_name(n));
            report.backups_removed = revisions;
            if opts.include_checkpoints {
                let mut cps = names(tx, &from("name", "mstate_checkpoints", "created_at < $2"))?;
                cps.sort();
                report.checkpoints_removed = cps;
            }
            let mut sessions = names(
                tx,
                &from(
                    "session_id",
                    "mstate_sessions",
                    "status = 'completed' AND ended_at < $2",
                ),
            )?;
            sessions.sort();
            report.sessions_removed = sessions;
            if !opts.dry_run {
                let days = opts.retention_days.unwrap_or_else(|| {
                    time::now().duration_since(opts.cutoff).as_secs_f64() / 86_400.0
                });
                let days = if days.fract() == 0.0 && days.abs() < 1e15 {
                    json!(days as i64)
                } else {
                    json!(days)
                };
                let data: Value = json!({
                    "retention_days": days,
                    "events_removed": report.events_removed,
                    "backups_removed": report.backups_removed.len(),
                    "checkpoints_removed": report.checkpoints_removed.len(),
                    "sessions_removed": report.sessions_removed.len(),
                    "cutoff": time::format_micros(opts.cutoff),
                });
                append(tx, &self.actor, id, NO_SESSION, "state_cleaned", &data)?;
            }
            Ok(report)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_backup_name;

    #[test]
    fn backup_names() {
        assert_eq!(parse_backup_name("r12"), Some(12));
        assert_eq!(parse_backup_name("7"), Some(7));
        for bad in ["r0", "r", "r01", "x1", "r-1", ""] {
            assert_eq!(parse_backup_name(bad), None, "{bad}");
        }
    }
}
