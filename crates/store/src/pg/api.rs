//! [`Store`] for [`PgStore`]: the milestone API over PostgreSQL, what
//! [`crate::open`] gives for a `postgres://` location.
//!
//! Most methods forward to the backend's operations in the sibling
//! modules; what is here is the API's common ground: which milestones
//! the store knows, what reads of a store not created yet answer, and the
//! fencing token every write carries.

use crate::prelude::*;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::id::{CheckpointName, MilestoneId, SessionId};
use crate::model::EventRecord;
use crate::model::{
    BackupInfo, CheckpointInfo, DoctorReport, Event, EventQuery, Finding, Loaded, LockInfo,
    LockRequest, LockStatus, MilestoneSummary, NewEvent, ReadReport, Recovery, Saved,
    SessionFilter, SessionRecord, SessionStart, SessionView, StateEdit,
};
use crate::store::{CleanupOptions, CleanupReport, HeldLock, Initialized, Restored, WriteOptions};

use super::events::{append, NO_SESSION};
use super::lock::current;
use super::state::lock_row;
use super::{Fail, PgStore};

impl PgStore {
    /// Write options of operations that take none.
    fn default_write(&self) -> WriteOptions {
        WriteOptions {
            lock_timeout: self.opts.lock_timeout,
            ..WriteOptions::default()
        }
    }

    /// The milestones the store knows: those with a state or events. A
    /// row made only by taking a lock does not count.
    fn known_ids(&self) -> Result<Vec<MilestoneId>> {
        if !self.has_schema()? {
            return Ok(Vec::new());
        }
        let ids = self.read("list the milestones of", |c| {
            let rows = c.query(
                "SELECT id FROM mstate_milestones WHERE revision > 0 OR next_seq > 1 \
                 ORDER BY id COLLATE \"C\"",
                &[],
            )?;
            rows.iter()
                .map(|r| r.try_get::<_, String>(0).map_err(Fail::from))
                .collect::<Result<Vec<_>, Fail>>()
        })?;
        ids.into_iter().map(MilestoneId::new).collect()
    }

    fn is_known(&self, id: &MilestoneId) -> Result<bool> {
        if !self.has_schema()? {
            return Ok(false);
        }
        self.read("look up a milestone in", |c| {
            Ok(c.query_one(
                "SELECT EXISTS (SELECT 1 FROM mstate_milestones \
                 WHERE id = $1 AND (revision > 0 OR next_seq > 1))",
                &[&id.as_str()],
            )?
            .try_get(0)?)
        })
    }

    /// The error for a milestone the store does not know, with the known
    /// ids close to it.
    pub(super) fn unknown(&self, id: &MilestoneId) -> Error {
        let no_store = !self.has_schema().unwrap_or(true);
        let known = if no_store {
            Vec::new()
        } else {
            self.known_ids().unwrap_or_default()
        };
        Error::UnknownMilestone {
            name: id.to_string(),
            nearest: crate::id::nearest(id.as_str(), known.iter().map(|k| k.as_str())),
            no_store: no_store.then(|| self.place.clone()),
        }
    }

    /// Release the caller's own lock, or break one whose lease is stale
    /// (logged as `lock_broken`); a live holder's lock stays.
    fn release_if_stale(&self, id: &MilestoneId) -> Result<Option<LockInfo>> {
        if !self.has_schema()? {
            return Ok(None);
        }
        self.write("release the lock in", id, Duration::ZERO, |tx| {
            if lock_row(tx, id, false)?.is_none() {
                return Ok(None);
            }
            let Some(lock) = current(tx, id)? else {
                return Ok(None);
            };
            let stale = lock.stale(&self.actor);
            if !lock.held_by_tree_of(&self.actor) && stale.is_none() {
                return Err(Fail::Store(Error::LockNotOwned {
                    milestone: id.to_string(),
                    holder: Some(Box::new(lock.lease.info)),
                }));
            }
            tx.execute(
                "DELETE FROM mstate_locks WHERE milestone_id = $1",
                &[&id.as_str()],
            )?;
            super::wait::announce_release(tx, &self.schema, id)?;
            if let Some(reason) = stale {
                let data = json!({
                    "reason": reason,
                    "holder": lock.lease.info,
                    "token": lock.lease.token,
                    "by": "lock release --if-stale",
                });
                append(tx, &self.actor, id, NO_SESSION, "lock_broken", &data)?;
            }
            Ok(Some(lock.lease.info))
        })
    }

    /// Check what a database can hold wrong: a state whose text and
    /// `jsonb` disagree, stale leases (removed with `repair`), sessions
    /// whose process is gone.
    fn check(&self, repair: bool, progress: &mut dyn FnMut(u64, u64)) -> Result<DoctorReport> {
        let mut report = DoctorReport::default();
        let ids = self.known_ids()?;
        let total = ids.len() as u64;
        for (done, id) in ids.iter().enumerate() {
            progress(done as u64, total);
            report.checked += 1;
            let mismatch: bool = self.read("check a state in", |c| {
                Ok(c.query_one(
                    "SELECT coalesce(state IS DISTINCT FROM state_text::jsonb, false) \
                     FROM mstate_milestones WHERE id = $1",
                    &[&id.as_str()],
                )?
                .try_get(0)?)
            })?;
            if mismatch {
                report.findings.push(Finding {
                    kind: "state".into(),
                    path: format!("{}: milestone '{id}'", self.place),
                    problem: "the stored state's text and its jsonb copy differ".into(),
                    repair: "leave it".into(),
                    repairable: false,
                    repaired: false,
                    hint: Some(crate::error::Hint::SaveAgain {
                        milestone: id.to_string(),
                    }),
                });
            }
            if let Some(status) = PgStore::lock_status(self, id)? {
                if let crate::model::Liveness::Stale(why) = &status.liveness {
                    let repaired = repair && self.release_if_stale(id).is_ok();
                    report.findings.push(Finding {
                        kind: "stale_lock".into(),
                        path: format!("{}: lock of '{id}'", self.place),
                        problem: format!("stale lock ({why})"),
                        repair: "remove it (logs lock_broken)".into(),
                        repairable: true,
                        repaired,
                        hint: None,
                    });
                }
            }
        }
        for view in self.list_sessions(&SessionFilter::default())? {
            if let Some(why) = &view.abandoned_because {
                report.findings.push(Finding {
                    kind: "abandoned_session".into(),
                    path: format!("{}: session '{}'", self.place, view.record.session_id),
                    problem: format!("session is active but abandoned: {why}"),
                    repair: "mark it completed (logs session_abandoned)".into(),
                    repairable: true,
                    repaired: repair && {
                        self.end_abandoned(&view.record.session_id, why)?;
                        true
                    },
                    hint: None,
                });
            }
        }
        progress(total, total);
        Ok(report)
    }
}

/// A lock held until released or dropped (`lock run`).
struct PgHeld<'a> {
    store: &'a PgStore,
    id: MilestoneId,
    info: LockInfo,
    token: u64,
    released: bool,
}

impl PgHeld<'_> {
    fn release_now(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.released, true) {
            return Ok(());
        }
        self.store
            .lock_release(&self.id, Some(self.token), false)
            .map(|_| ())
    }
}

impl HeldLock for PgHeld<'_> {
    fn info(&self) -> &LockInfo {
        &self.info
    }

    fn release(mut self: Box<Self>) -> Result<()> {
        self.release_now()
    }
}

impl Drop for PgHeld<'_> {
    fn drop(&mut self) {
        let _ = self.release_now();
    }
}

impl StoreBase for PgStore {
    fn location(&self) -> String {
        self.place.clone()
    }

    fn exists(&self) -> Result<bool> {
        self.has_schema()
    }

    fn take_warnings(&self) -> Vec<String> {
        match self.warnings.lock() {
            Ok(mut w) => std::mem::take(&mut *w),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    fn milestone_ids(&self) -> Result<Vec<MilestoneId>> {
        self.known_ids()
    }

    fn require_known(&self, id: &MilestoneId) -> Result<()> {
        if self.is_known(id)? {
            Ok(())
        } else {
            Err(self.unknown(id))
        }
    }
}

impl StateStore for PgStore {
    fn init(&self, id: &MilestoneId) -> Result<Initialized> {
        PgStore::init(self, id, &self.default_write())
    }

    fn save(&self, id: &MilestoneId, state: &Value, opts: &WriteOptions) -> Result<Saved> {
        PgStore::save(self, id, state, opts, opts.lock_token)
    }

    fn save_text(&self, id: &MilestoneId, state: &[u8], opts: &WriteOptions) -> Result<Saved> {
        PgStore::save_text(self, id, state, opts, opts.lock_token)
    }

    fn load(&self, id: &MilestoneId, _opts: &WriteOptions) -> Result<Loaded> {
        if !self.is_known(id)? {
            return Err(self.unknown(id));
        }
        PgStore::load(self, id)
    }

    fn update(&self, id: &MilestoneId, edit: &StateEdit, opts: &WriteOptions) -> Result<Saved> {
        edit.check()?;
        self.require_known(id)?;
        self.update_state(id, edit, opts)
    }

    fn list(&self) -> Result<Vec<MilestoneSummary>> {
        if !self.has_schema()? {
            return Ok(Vec::new());
        }
        let known = self.known_ids()?;
        let mut all = PgStore::list(self)?;
        all.retain(|m| known.iter().any(|k| k.as_str() == m.milestone_id));
        Ok(all)
    }

    fn complete(&self, id: &MilestoneId, opts: &WriteOptions) -> Result<()> {
        self.require_known(id)?;
        PgStore::complete(self, id, opts, opts.lock_token)
    }

    fn reopen(&self, id: &MilestoneId, opts: &WriteOptions) -> Result<()> {
        self.require_known(id)?;
        PgStore::reopen(self, id, opts, opts.lock_token)
    }
}

impl HistoryStore for PgStore {
    fn backups(&self, id: &MilestoneId) -> Result<Vec<BackupInfo>> {
        self.require_known(id)?;
        self.history(id)
    }

    fn recover(
        &self,
        id: &MilestoneId,
        from: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Recovery> {
        self.require_known(id)?;
        self.recover_state(id, from, opts)
    }

    fn checkpoint_create(
        &self,
        id: &MilestoneId,
        name: Option<&CheckpointName>,
        force: bool,
        opts: &WriteOptions,
    ) -> Result<CheckpointInfo> {
        self.require_known(id)?;
        self.create_checkpoint(id, name, force, opts)
    }

    fn checkpoints(&self, id: &MilestoneId) -> Result<Vec<CheckpointInfo>> {
        self.require_known(id)?;
        self.list_checkpoints(id)
    }

    fn checkpoint_restore(
        &self,
        id: &MilestoneId,
        name: &CheckpointName,
        opts: &WriteOptions,
    ) -> Result<Restored> {
        self.require_known(id)?;
        self.restore_checkpoint(id, name, opts)
    }

    fn checkpoint_delete(&self, id: &MilestoneId, name: &CheckpointName) -> Result<()> {
        self.require_known(id)?;
        self.delete_checkpoint(id, name)
    }
}

impl EventStore for PgStore {
    fn log(&self, id: &MilestoneId, event: &NewEvent) -> Result<Event> {
        self.append_event(id, event, false)
    }

    fn log_creating(&self, id: &MilestoneId, event: &NewEvent) -> Result<Event> {
        self.append_event(id, event, true)
    }

    fn events(
        &self,
        id: &MilestoneId,
        query: &EventQuery,
        sink: &mut dyn FnMut(&EventRecord) -> Result<bool>,
    ) -> Result<ReadReport> {
        self.require_known(id)?;
        PgStore::events(self, id, query, sink)
    }

    fn follow(
        &self,
        id: &MilestoneId,
        query: &EventQuery,
        stop: &dyn Fn() -> bool,
        sink: &mut dyn FnMut(&EventRecord) -> Result<bool>,
    ) -> Result<ReadReport> {
        self.require_known(id)?;
        self.follow_events(id, query, stop, sink)
    }
}

impl LockStore for PgStore {
    fn lock_acquire(&self, id: &MilestoneId, req: &LockRequest) -> Result<LockInfo> {
        Ok(PgStore::lock_acquire(self, id, req)?.info)
    }

    fn lock_scoped(&self, id: &MilestoneId, req: &LockRequest) -> Result<Box<dyn HeldLock + '_>> {
        let req = LockRequest {
            owner_pid: self.actor.pid,
            ..req.clone()
        };
        let lease = PgStore::lock_acquire(self, id, &req)?;
        Ok(Box::new(PgHeld {
            store: self,
            id: id.clone(),
            info: lease.info,
            token: lease.token,
            released: false,
        }))
    }

    fn lock_release(&self, id: &MilestoneId, force: bool) -> Result<Option<LockInfo>> {
        if !self.has_schema()? {
            return Ok(None);
        }
        PgStore::lock_release(self, id, None, force)
    }

    fn lock_release_if_stale(&self, id: &MilestoneId) -> Result<Option<LockInfo>> {
        self.release_if_stale(id)
    }

    fn lock_renew(&self, id: &MilestoneId, token: u64) -> Result<LockInfo> {
        Ok(PgStore::lock_renew(self, id, token)?.info)
    }

    fn lock_status(&self, id: &MilestoneId) -> Result<Option<LockStatus>> {
        if !self.has_schema()? {
            return Ok(None);
        }
        PgStore::lock_status(self, id)
    }
}

impl SessionStore for PgStore {
    fn session_start(&self, id: &MilestoneId, start: &SessionStart) -> Result<SessionRecord> {
        if !start.create {
            self.require_known(id)?;
        }
        self.start_session(id, start)
    }

    fn session_end(&self, sid: Option<&SessionId>) -> Result<SessionRecord> {
        self.end_session(sid)
    }

    fn session_get(&self, sid: &SessionId) -> Result<SessionView> {
        Ok(self.view(self.read_session(sid.as_str())?))
    }

    fn sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionView>> {
        let list = self.list_sessions(filter)?;
        if list.is_empty() {
            if let Some(id) = filter.milestone.as_deref().map(MilestoneId::new) {
                self.require_known(&id?)?;
            }
        }
        Ok(list)
    }

    fn current_session(&self) -> Result<String> {
        self.current_session_id()
    }
}

impl MaintenanceStore for PgStore {
    fn cleanup(&self, id: &MilestoneId, opts: &CleanupOptions) -> Result<CleanupReport> {
        if !opts.create {
            self.require_known(id)?;
        }
        self.cleanup_milestone(id, opts)
    }

    fn doctor(&self, repair: bool, progress: &mut dyn FnMut(u64, u64)) -> Result<DoctorReport> {
        self.check(repair, progress)
    }
}

impl TransferStore for PgStore {
    fn export(
        &self,
        sink: &mut dyn FnMut(crate::transfer::Record) -> Result<bool>,
    ) -> Result<ReadReport> {
        self.export_records(sink)
    }

    fn import(
        &self,
        records: &mut dyn Iterator<Item = Result<crate::transfer::Record>>,
    ) -> Result<()> {
        self.import_records(records)
    }
}
