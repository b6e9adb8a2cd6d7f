//! The milestone API: what a front end (the CLI, a future MCP server) can
//! ask of a store, whatever keeps the data.
//!
//! [`Store`] is implemented by the filesystem backend
//! ([`crate::fs::FsStore`]); a PostgreSQL backend would implement the same
//! trait. Nothing here names a path.

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::id::{CheckpointName, MilestoneId, SessionId};
use crate::model::EventRecord;
use crate::model::{
    BackupInfo, CheckpointInfo, DoctorReport, Event, EventQuery, Loaded, LoadedRaw, LockInfo,
    LockRequest, LockStatus, MilestoneSummary, NewEvent, ReadReport, Recovery, Saved,
    SessionFilter, SessionRecord, SessionStart, SessionView, StateEdit,
};
use crate::transfer::Record;

/// Default wait for a lock, in seconds (the seed's).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Backups (superseded revisions) kept per milestone by default.
pub const DEFAULT_MAX_BACKUPS: usize = 50;

/// How to open a store, whatever its backend ([`crate::open`]).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Backups kept per milestone, oldest removed first.
    pub max_backups: usize,
    /// Session recorded in events instead of the store's current one.
    pub session: Option<String>,
    /// Identity written into events and locks.
    pub actor: crate::model::Actor,
    /// How long operations that take no [`WriteOptions`] (init, session
    /// end) wait for a milestone's lock.
    pub lock_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_backups: DEFAULT_MAX_BACKUPS,
            session: None,
            actor: crate::model::Actor::current(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

/// Options of every operation that writes state.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Fail with a conflict unless the stored revision is this one.
    pub expect_revision: Option<u64>,
    /// How long to wait for the milestone's lock.
    pub lock_timeout: Duration,
    /// The fencing token of the lock the caller holds (`lock acquire`
    /// prints it, `lock run` exports it as `MSTATE_LOCK_TOKEN`): the write
    /// is refused with [`crate::Error::TokenRefused`] once a newer token
    /// of the milestone was issued, so a holder that stalled past its
    /// lease cannot overwrite its successor's work.
    pub lock_token: Option<u64>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            expect_revision: None,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            lock_token: None,
        }
    }
}

/// What `checkpoint restore` did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub saved: Saved,
    /// The checkpoint taken of the state before the restore, if there was one.
    pub pre_restore: Option<String>,
}

/// What `init` did.
#[derive(Debug, Clone, Serialize)]
pub struct Initialized {
    pub milestone_id: String,
    /// False when the milestone was already initialised.
    pub created: bool,
}

/// Options of `cleanup`.
#[derive(Debug, Clone)]
pub struct CleanupOptions {
    /// Remove what is older than this.
    pub cutoff: Timestamp,
    /// The retention the cutoff was computed from, in days, as the caller
    /// gave it: `state_cleaned` records it (`None`: the age of the cutoff
    /// when the event is written).
    pub retention_days: Option<f64>,
    /// Clean a milestone the store does not know, and log its
    /// `state_cleaned` (which creates its log), as the seed's
    /// `cleanup_milestone_state` does. Otherwise an unknown milestone is
    /// [`crate::Error::UnknownMilestone`] and nothing is written.
    pub create: bool,
    /// Remove named checkpoints too.
    pub include_checkpoints: bool,
    /// Report only.
    pub dry_run: bool,
}

/// What a cleanup removed (or would remove).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanupReport {
    pub milestone_id: String,
    pub events_removed: u64,
    pub backups_removed: Vec<String>,
    pub checkpoints_removed: Vec<String>,
    pub sessions_removed: Vec<String>,
    pub dry_run: bool,
}

/// A lock held for the duration of a scope (`lock run`).
pub trait HeldLock {
    /// The lock as recorded.
    fn info(&self) -> &LockInfo;
    /// Release it now (dropping releases too, ignoring errors).
    fn release(self: Box<Self>) -> Result<()>;
}

/// The milestone API.
///
/// Only [`Store::init`] and [`Store::save`] create a milestone (and
/// [`Store::log_creating`], cleanup and session start when asked to, for
/// the seed's functions). Every other operation on a milestone the store
/// knows nothing of fails with [`crate::Error::UnknownMilestone`] and
/// changes nothing, so a typo never creates one. Locks are the exception:
/// a lock is taken before a milestone's first save, so the lock
/// operations take any valid id (and a lock alone does not make a
/// milestone known).
///
/// The API is in parts, each a trait a backend implements
/// ([`StoreBase`], [`StateStore`], [`HistoryStore`], [`EventStore`],
/// [`LockStore`], [`SessionStore`], [`MaintenanceStore`],
/// [`TransferStore`]); a type with all
/// of them is a [`Store`]. Front ends hold a `Box<dyn Store>` and bring
/// the parts into scope with `use mstate_store::prelude::*`.
pub trait Store:
    StateStore + HistoryStore + EventStore + LockStore + SessionStore + MaintenanceStore + TransferStore
{
}

impl<T> Store for T where
    T: StateStore
        + HistoryStore
        + EventStore
        + LockStore
        + SessionStore
        + MaintenanceStore
        + TransferStore
        + ?Sized
{
}

/// What every part of the API stands on: where the store is, what it
/// knows, and what operations left to report.
pub trait StoreBase: Send + Sync {
    /// Where the store is, for messages (a directory, a database).
    fn location(&self) -> String;

    /// Whether the store exists at its location. Read-only operations on
    /// a store that does not exist create nothing.
    fn exists(&self) -> Result<bool>;

    /// Whether an operation since the last call created the store itself
    /// (its first write), taken: front ends say where it was created.
    fn take_created(&self) -> bool {
        false
    }

    /// Warnings of the operations since the last call, taken: failures
    /// that came after an operation's commit point (its event could not be
    /// logged, its lock not released) and so did not make it fail. The
    /// operation's change is in place; front ends show these with its
    /// result.
    fn take_warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// Every milestone id listed by the store (state files and live event
    /// logs).
    fn milestone_ids(&self) -> Result<Vec<MilestoneId>>;

    /// Fail with [`crate::Error::UnknownMilestone`] when the store knows
    /// nothing of `id` (no state, no events, no history).
    fn require_known(&self, id: &MilestoneId) -> Result<()> {
        if self.milestone_ids()?.contains(id) {
            return Ok(());
        }
        Err(crate::Error::UnknownMilestone {
            name: id.to_string(),
            nearest: Vec::new(),
            no_store: None,
        })
    }
}

/// A milestone's current state: create, save, load, edit, list, complete.
pub trait StateStore: StoreBase {
    /// Create the store layout and the milestone's `state_initialized` event.
    fn init(&self, id: &MilestoneId) -> Result<Initialized>;

    /// Replace the state, durably, under the lock; back up the previous one.
    fn save(&self, id: &MilestoneId, state: &Value, opts: &WriteOptions) -> Result<Saved>;

    /// [`Store::save`] of a state given as JSON text, checked as
    /// [`crate::json::parse_strict`] checks it. Backends that can store the
    /// text without building a `Value` (about ten times its size) do.
    fn save_text(&self, id: &MilestoneId, state: &[u8], opts: &WriteOptions) -> Result<Saved> {
        let value = crate::json::parse_strict(state, "state")?;
        self.save(id, &value, opts)
    }

    /// Load the state; a corrupt state is recovered from the newest valid backup.
    fn load(&self, id: &MilestoneId, opts: &WriteOptions) -> Result<Loaded>;

    /// [`Store::load`], with the state as JSON text.
    fn load_raw(&self, id: &MilestoneId, opts: &WriteOptions) -> Result<LoadedRaw> {
        let loaded = self.load(id, opts)?;
        let env = loaded.envelope;
        Ok(LoadedRaw {
            state: serde_json::to_string_pretty(&env.state)
                .map_err(|e| crate::error::Error::invalid("state", e.to_string()))?,
            timestamp: env.timestamp,
            milestone_id: env.milestone_id,
            version: env.version,
            revision: env.revision,
            status: loaded.status,
            recovered: loaded.recovered,
        })
    }

    /// Read, edit and write the state as one step under the lock.
    fn update(&self, id: &MilestoneId, edit: &StateEdit, opts: &WriteOptions) -> Result<Saved>;

    /// Every milestone with its status, revision and lock.
    fn list(&self) -> Result<Vec<MilestoneSummary>>;

    /// Mark the milestone completed.
    fn complete(&self, id: &MilestoneId, opts: &WriteOptions) -> Result<()>;

    /// Make a completed milestone active again.
    fn reopen(&self, id: &MilestoneId, opts: &WriteOptions) -> Result<()>;
}

/// Earlier states: backups (superseded revisions), recovery and named
/// checkpoints.
pub trait HistoryStore: StoreBase {
    /// The milestone's backups, newest first.
    fn backups(&self, id: &MilestoneId) -> Result<Vec<BackupInfo>>;

    /// Restore the newest valid backup when the state is corrupt or
    /// missing, or the backup named by `from` in any case. A valid state
    /// is left alone without `from`: the result has no `backup`.
    fn recover(
        &self,
        id: &MilestoneId,
        from: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Recovery>;

    /// Save a named copy of the current state (named `manual-<stamp>` if no
    /// name is given); `force` replaces an existing checkpoint of that name.
    fn checkpoint_create(
        &self,
        id: &MilestoneId,
        name: Option<&CheckpointName>,
        force: bool,
        opts: &WriteOptions,
    ) -> Result<CheckpointInfo>;

    /// The milestone's checkpoints, newest first.
    fn checkpoints(&self, id: &MilestoneId) -> Result<Vec<CheckpointInfo>>;

    /// Make the checkpoint the current state, checkpointing the current
    /// state first as `pre-restore-<stamp>`.
    fn checkpoint_restore(
        &self,
        id: &MilestoneId,
        name: &CheckpointName,
        opts: &WriteOptions,
    ) -> Result<Restored>;

    /// Delete a checkpoint.
    fn checkpoint_delete(&self, id: &MilestoneId, name: &CheckpointName) -> Result<()>;
}

/// The append-only event log of each milestone, its queries and
/// following it.
pub trait EventStore: StoreBase {
    /// Append an event to a milestone the store knows.
    fn log(&self, id: &MilestoneId, event: &NewEvent) -> Result<Event>;

    /// [`Store::log`], creating the milestone's log when the store knows
    /// nothing of it, as the seed's `log_milestone_event` does.
    fn log_creating(&self, id: &MilestoneId, event: &NewEvent) -> Result<Event>;

    /// Run a query over the milestone's events.
    fn events(
        &self,
        id: &MilestoneId,
        query: &EventQuery,
        sink: &mut dyn FnMut(&EventRecord) -> Result<bool>,
    ) -> Result<ReadReport>;

    /// Run a query, then stream new matching events until `stop()` or the
    /// sink says enough.
    fn follow(
        &self,
        id: &MilestoneId,
        query: &EventQuery,
        stop: &dyn Fn() -> bool,
        sink: &mut dyn FnMut(&EventRecord) -> Result<bool>,
    ) -> Result<ReadReport>;
}

/// Milestone locks held beyond one operation (`lock acquire`, `lock run`),
/// with fencing tokens. The pinning of a lock to inherited descriptors is
/// the file store's alone (the shell layer's): other stores refuse it.
pub trait LockStore: StoreBase {
    /// Take the lock for `req.owner_pid` and keep it after this call returns.
    fn lock_acquire(&self, id: &MilestoneId, req: &LockRequest) -> Result<LockInfo>;

    /// Take the lock for this process until the returned guard is released.
    fn lock_scoped(&self, id: &MilestoneId, req: &LockRequest) -> Result<Box<dyn HeldLock + '_>>;

    /// Release the lock held by this process or an ancestor, or with
    /// `force` whoever holds it. Returns the released lock, if there was one.
    fn lock_release(&self, id: &MilestoneId, force: bool) -> Result<Option<LockInfo>>;

    /// Release the caller's own lock, or break one whose holder is gone or
    /// past its TTL (logged as `lock_broken`); a live holder's lock stays
    /// (`LockNotOwned`). Returns the released lock, if there was one.
    fn lock_release_if_stale(&self, id: &MilestoneId) -> Result<Option<LockInfo>>;

    /// Extend the lease of the lock held with fencing token `token` by its
    /// TTL from now (`lock run` renews while its command runs). Fails with
    /// a lock error when that lock is no longer held with that token.
    fn lock_renew(&self, id: &MilestoneId, token: u64) -> Result<LockInfo> {
        let _ = token;
        Err(crate::Error::invalid(
            "lock renew",
            format!(
                "the store at {} cannot renew the lock of '{id}'",
                self.location()
            ),
        ))
    }

    /// The current lock, if any.
    fn lock_status(&self, id: &MilestoneId) -> Result<Option<LockStatus>>;

    /// Where a holder of the lock of `id` opens the file that pins it to
    /// its descendants ([`Store::lock_pin`]), if the store has such files.
    fn lock_pin_path(&self, _id: &MilestoneId) -> Option<std::path::PathBuf> {
        None
    }

    /// Pin the lock of `id`, held by this process tree, with inherited
    /// descriptor `fd` (open on [`Store::lock_pin_path`]): the lock then
    /// stays held while any process holding the descriptor lives. Only a
    /// store of lock files can; others refuse.
    fn lock_pin(&self, id: &MilestoneId, _fd: i32) -> Result<Pinned> {
        Err(crate::Error::invalid(
            "lock pin",
            format!(
                "the store at {} keeps no lock files to pin the lock of '{id}' with",
                self.location()
            ),
        ))
    }
}

/// Sessions of milestones and the store's current session.
pub trait SessionStore: StoreBase {
    /// Start a session of a milestone; it becomes the current session if asked.
    fn session_start(&self, id: &MilestoneId, start: &SessionStart) -> Result<SessionRecord>;

    /// End a session (the current one when `None`).
    fn session_end(&self, sid: Option<&SessionId>) -> Result<SessionRecord>;

    /// One session with its effective status.
    fn session_get(&self, sid: &SessionId) -> Result<SessionView>;

    /// Sessions matching a filter, oldest first.
    fn sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionView>>;

    /// The current session id (`no-session` when there is none).
    fn current_session(&self) -> Result<String>;
}

/// Keeping a store in shape: cleanup of old data, and checks.
pub trait MaintenanceStore: StoreBase {
    /// Remove old events, backups and completed sessions of a milestone.
    fn cleanup(&self, id: &MilestoneId, opts: &CleanupOptions) -> Result<CleanupReport>;

    /// Check the whole store; with `repair`, fix what is safe to fix.
    /// `progress` is called with (steps done, steps in all).
    fn doctor(&self, repair: bool, progress: &mut dyn FnMut(u64, u64)) -> Result<DoctorReport>;
}

/// What [`Store::lock_pin`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinned {
    /// The descriptor now pins the lock.
    Now,
    /// Another descriptor of a holder pins it already; this one does not.
    Already,
}

/// Moving a whole store to another (`mstate migrate`): every record out,
/// every record in. A backend that cannot refuses.
pub trait TransferStore: StoreBase {
    /// Hand every record of the store to `sink`, in the order
    /// [`crate::transfer`] describes, until it returns false: how a store
    /// is moved to another ([`TransferStore::import`] takes them). Reads
    /// only; the report lists what could not be moved (damaged lines,
    /// unreadable backups), which was skipped.
    fn export(&self, sink: &mut dyn FnMut(Record) -> Result<bool>) -> Result<ReadReport> {
        let _ = sink;
        Err(crate::Error::invalid(
            "export",
            format!("the store at {} cannot be exported", self.location()),
        ))
    }

    /// Write `records` (in [`TransferStore::export`]'s order) into this
    /// store, which must hold none of their milestones or sessions (an id
    /// taken is [`crate::Error::AlreadyExists`]); the current session
    /// named is made this store's. Durable once it returns. A failure
    /// partway leaves a database store unchanged (one transaction); a
    /// directory store keeps the files written before it.
    fn import(&self, records: &mut dyn Iterator<Item = Result<Record>>) -> Result<()> {
        let _ = records;
        Err(crate::Error::invalid(
            "import",
            format!("the store at {} cannot import", self.location()),
        ))
    }
}
