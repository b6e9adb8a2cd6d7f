//! The filesystem backend: the seed's `.milestones/state/` directory.
//!
//! [`FsStore`] implements [`Store`] over a [`Layout`], with every effect
//! going through an [`Io`]. Guarantees:
//! - a state write is visible entirely or not at all, and durable once it
//!   returns (temp file, fsync, rename, fsync of the directory), with the
//!   backup of the state it replaced durable before it;
//! - a write that returns an error changed nothing; one that got past its
//!   commit point returns success, with what failed after it as a warning
//!   ([`Store::take_warnings`]);
//! - writers of one milestone exclude each other, and the seed's functions,
//!   through the lock directory (see [`lock`]);
//! - nothing is written outside the store: names are validated, and on the
//!   real filesystem every path beneath the root is resolved from handles
//!   of the root without following any link (see [`crate::io::RealIo`]):
//!   a layout directory replaced by a link is refused, one swapped for a
//!   link while the store is open keeps resolving to the real directory;
//! - special files (FIFOs, sockets, devices) where a file belongs are
//!   refused with an error, never waited on.

pub mod atomic;
pub mod backup;
mod doctor;
pub mod layout;
pub mod lock;
pub mod log;
pub mod revision;
mod session;
mod state;
pub mod token;
mod transfer;

use self::state::NewState;
use crate::prelude::*;

use std::borrow::Cow;
use std::io as stdio;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::error::{Error, IoContext, Result};
use crate::id::{CheckpointName, EventType, MilestoneId, SessionId};
use crate::io::{FileKind, Io, RealIo};
use crate::model::{
    BackupInfo, CheckpointInfo, DoctorReport, Event, EventQuery, Loaded, LoadedRaw, LockInfo,
    LockRequest, LockStatus, MilestoneSummary, NewEvent, ReadReport, Recovery, Saved,
    SessionFilter, SessionRecord, SessionStart, SessionView, StateEdit, Status,
};
use crate::store::{CleanupOptions, CleanupReport, HeldLock, Initialized, Restored, WriteOptions};

use self::atomic::{ensure_dir, read_opt};
use self::layout::{Layout, SUBDIRS};
use self::lock::{Acquired, Locks, WatchPool};
use self::log::{EventLog, LogLine};

/// The store directory's path below a project directory.
pub const STORE_DIR: &str = ".milestones/state";

/// Session id recorded when there is no current session (the seed's).
pub const NO_SESSION: &str = "no-session";

/// How to open a filesystem store: the options of every backend.
pub type FsOptions = crate::store::StoreOptions;

/// A store in a `.milestones/state` directory.
#[derive(Debug)]
pub struct FsStore {
    io: Arc<dyn Io>,
    layout: Layout,
    opts: FsOptions,
    /// Lock waiters' change watches, reused for the store's lifetime.
    watches: WatchPool,
    /// Set once every layout directory was seen to exist, so writes do not
    /// re-check them each time. (A directory removed behind a live store's
    /// back makes its next write fail with "not found"; it is not
    /// recreated silently.)
    layout_ready: AtomicBool,
    /// Failures after a commit point, for [`Store::take_warnings`].
    warnings: std::sync::Mutex<Vec<String>>,
    /// Set when this store's first write created the store itself (see
    /// [`FsStore::take_created`]).
    created: AtomicBool,
}

/// Find the store for a process started in `cwd`: `env_dir` (the
/// `MSTATE_DIR` variable) if given, else the nearest ancestor of `cwd`
/// holding `.milestones/state`, else `cwd/.milestones/state`.
pub fn discover(cwd: &Path, env_dir: Option<&Path>) -> PathBuf {
    if let Some(dir) = env_dir {
        return cwd.join(dir);
    }
    for dir in cwd.ancestors() {
        let candidate = dir.join(STORE_DIR);
        if candidate.is_dir() {
            return candidate;
        }
    }
    cwd.join(STORE_DIR)
}

impl FsStore {
    /// Open the store rooted at `root` on the real filesystem.
    pub fn open(root: impl Into<PathBuf>, opts: FsOptions) -> Result<Self> {
        let root = root.into();
        Self::with_io(Arc::new(RealIo::beneath(root.clone())), root, opts)
    }

    /// Open the store rooted at `root` through `io`.
    pub fn with_io(io: Arc<dyn Io>, root: impl Into<PathBuf>, opts: FsOptions) -> Result<Self> {
        let store = FsStore {
            io,
            layout: Layout::new(root),
            opts,
            watches: WatchPool::default(),
            layout_ready: AtomicBool::new(false),
            warnings: std::sync::Mutex::new(Vec::new()),
            created: AtomicBool::new(false),
        };
        store.check_layout()?;
        Ok(store)
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// The layout (paths) of this store.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The I/O implementation in use.
    pub fn io(&self) -> &dyn Io {
        &*self.io
    }

    /// Refuse a store whose layout directories were replaced by links or files.
    fn check_layout(&self) -> Result<()> {
        let mut all = true;
        for sub in SUBDIRS {
            let p = self.layout.dir(sub);
            match self.io.metadata(&p) {
                Ok(m) if m.kind == FileKind::Dir => {}
                Ok(m) => {
                    return Err(Error::Corrupt {
                        what: "store layout".into(),
                        path: p,
                        detail: format!("expected a directory, found a {:?}", m.kind)
                            .to_lowercase(),
                        hint: Some(crate::error::Hint::Advice(
                            "move it away; mstate never follows links out of the store".into(),
                        )),
                    })
                }
                Err(e) if e.kind() == stdio::ErrorKind::NotFound => all = false,
                Err(e) => return Err(Error::io("inspect", &p, e)),
            }
        }
        if all {
            self.layout_ready.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Create the store directories that are missing, durably.
    pub(crate) fn ensure_layout(&self) -> Result<()> {
        if self.layout_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let root = self.layout.root();
        let root_is_dir = matches!(self.io.metadata(root), Ok(m) if m.kind == FileKind::Dir);
        let mut new_store = !root_is_dir;
        if root_is_dir && !self.exists()? {
            // A directory with none of the layout's directories: a new
            // store only if it is empty, never mixed into other files (an
            // `MSTATE_DIR` pointing at the wrong folder).
            let entries = self.io.read_dir(root).ctx("list", root)?;
            if let Some(other) = entries.first() {
                return Err(Error::invalid(
                    "store directory",
                    format!(
                        "{} is not a store: it holds other files ({}{}) and none of the store's directories ({}); point MSTATE_DIR or -C at the directory holding .milestones/state, or MSTATE_DIR at a new or empty directory",
                        root.display(),
                        other.name,
                        if entries.len() > 1 { ", ..." } else { "" },
                        SUBDIRS.map(|d| format!("{d}/")).join(", ")
                    ),
                ));
            }
            new_store = true;
        }
        if !root_is_dir {
            let mut missing = Vec::new();
            let mut cur = Some(root);
            while let Some(p) = cur {
                if atomic::exists(&*self.io, p)? {
                    break;
                }
                missing.push(p.to_path_buf());
                cur = p.parent();
            }
            for p in missing.iter().rev() {
                ensure_dir(&*self.io, p)?;
                if let Some(parent) = p.parent() {
                    let parent = if parent.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        parent
                    };
                    self.io.sync_dir(parent).ctx("sync directory", parent)?;
                }
            }
        }
        let mut created = false;
        for sub in SUBDIRS {
            created |= ensure_dir(&*self.io, &self.layout.dir(sub))?;
        }
        if created {
            self.io.sync_dir(root).ctx("sync directory", root)?;
        }
        if new_store {
            self.created.store(true, Ordering::Relaxed);
        }
        self.layout_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Whether a write of this store created the store itself (its
    /// directory was missing or empty) since the last call; front ends say
    /// where, so a store made in an unintended place is noticed.
    pub fn take_created(&self) -> bool {
        self.created.swap(false, Ordering::Relaxed)
    }

    /// Whether there is a store at the root: the directory exists and has
    /// at least one of the layout's directories. Read-only operations on a
    /// store that does not exist create nothing.
    pub fn exists(&self) -> Result<bool> {
        if self.layout_ready.load(Ordering::Relaxed) {
            return Ok(true);
        }
        for sub in SUBDIRS {
            let p = self.layout.dir(sub);
            match self.io.metadata(&p) {
                Ok(m) if m.kind == FileKind::Dir => return Ok(true),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        stdio::ErrorKind::NotFound | stdio::ErrorKind::NotADirectory
                    ) => {}
                Err(e) => return Err(Error::io("inspect", &p, e)),
            }
        }
        Ok(false)
    }

    /// Whether the store knows milestone `id`: it has a state file
    /// (`active/` or `completed/`), an event log (the live file or sealed
    /// segments), or a backup or checkpoint. What the seed's functions
    /// write counts: its `init_milestone_state` writes the live log, its
    /// `save_milestone_state` the state file. A lock alone does not: a
    /// lock is taken before a milestone's first save.
    pub fn is_known(&self, id: &MilestoneId) -> Result<bool> {
        Ok(atomic::exists(&*self.io, &self.layout.event_log(id))?
            || self.find_state(id)?.is_some()
            || atomic::exists(&*self.io, &self.layout.segments_dir(id))?
            || !backup::list(&*self.io, &self.layout, id)?.is_empty())
    }

    /// Fail with [`Error::UnknownMilestone`] unless the store knows `id`
    /// (see [`FsStore::is_known`]).
    pub fn require_known(&self, id: &MilestoneId) -> Result<()> {
        if self.is_known(id)? {
            return Ok(());
        }
        Err(self.unknown(id))
    }

    /// The error for a milestone the store does not know: the known ids
    /// close to it, or where the store was looked for if there is none.
    pub(crate) fn unknown(&self, id: &MilestoneId) -> Error {
        if !self.exists().unwrap_or(true) {
            return Error::UnknownMilestone {
                name: id.to_string(),
                nearest: Vec::new(),
                no_store: Some(self.layout.root().display().to_string()),
            };
        }
        let known = self.milestone_ids().unwrap_or_default();
        Error::UnknownMilestone {
            name: id.to_string(),
            nearest: crate::id::nearest(id.as_str(), known.iter().map(|k| k.as_str())),
            no_store: None,
        }
    }

    /// Pin the lock of `id`, held by the caller, with this process's
    /// inherited descriptor `fd` open on the lock's pin file, so the lock
    /// stays held while any process holding that descriptor lives (see
    /// [`Locks::pin`]). Specific to this backend: its locks are files.
    pub fn lock_pin(&self, id: &MilestoneId, fd: i32) -> Result<lock::Pinned> {
        self.locks().pin(id, fd)
    }

    /// The path of the file a holder of the lock of `id` pins.
    pub fn lock_pin_path(&self, id: &MilestoneId) -> std::path::PathBuf {
        self.layout.lock_dir(id).join(lock::PIN_FILE)
    }

    pub(crate) fn locks(&self) -> Locks<'_> {
        Locks {
            io: &*self.io,
            layout: &self.layout,
            actor: &self.opts.actor,
            watches: &self.watches,
        }
    }

    pub(crate) fn log_of<'a>(&'a self, id: &'a MilestoneId) -> EventLog<'a> {
        EventLog {
            io: &*self.io,
            layout: &self.layout,
            id,
        }
    }

    /// Append an event written by the store itself.
    pub(crate) fn emit(&self, id: &MilestoneId, event_type: &str, data: Value) -> Result<Event> {
        let session = self.current_session()?;
        self.in_session(&session, false, |session| {
            self.append_as(id, session, event_type, data)
        })
    }

    /// Note a failure that came after an operation's commit point: the
    /// operation succeeded, and says so, with this warning.
    pub(crate) fn warn(&self, message: String) {
        match self.warnings.lock() {
            Ok(mut w) => w.push(message),
            Err(poisoned) => poisoned.into_inner().push(message),
        }
    }

    /// Append the event of a change that is already committed: a failure
    /// is a warning, not an error (the change is not undone, and a retry
    /// would conflict with it). `done` says what was committed. `doctor`
    /// finds a state revision left without its event.
    pub(crate) fn emit_committed(
        &self,
        id: &MilestoneId,
        event_type: &str,
        data: Value,
        done: &str,
    ) {
        if let Err(e) = self.emit(id, event_type, data) {
            self.warn(format!(
                "{done}, but its {event_type} event could not be logged: {e}; doctor reports it"
            ));
        }
    }

    /// Append an event written by the store itself, for a given session.
    pub(crate) fn append_as(
        &self,
        id: &MilestoneId,
        session: &str,
        event_type: &str,
        data: Value,
    ) -> Result<Event> {
        let event_type = EventType::new(event_type)?;
        self.log_of(id)
            .append(&self.opts.actor, session, &event_type, &data)
    }

    /// Run `f` holding the lock of `id`, or under the lock an ancestor or
    /// the caller's process group holds: then `f` runs inside the lock's
    /// short exclusion ([`Locks::enter`]), so the writes of several
    /// processes under one holder never interleave, nor the operations of
    /// threads of one process. A call nested in one of the same thread
    /// runs inside it.
    pub(crate) fn locked<T>(
        &self,
        id: &MilestoneId,
        operation: &str,
        timeout: std::time::Duration,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        // An operation nested in one this thread runs under the lock (a
        // doctor repair recovering a state) is inside it already: taking
        // the exclusion again would wait for itself.
        let key = self.layout.lock_dir(id);
        if InLock::held(&key) {
            return f();
        }
        self.ensure_layout()?;
        let req = LockRequest {
            operation: operation.to_string(),
            timeout,
            owner_pid: self.opts.actor.pid,
            ttl: None,
            group: None,
        };
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let req = LockRequest {
                timeout: left,
                ..req.clone()
            };
            match self.take_lock(id, &req, false)? {
                Acquired::Fresh(info) => {
                    // Other threads of this process see its lock as their
                    // own and enter it (`Locks::enter`): keep them out for
                    // the whole operation, its release included.
                    let guard = match self.locks().exclude_writers(id) {
                        Ok(guard) => guard,
                        Err(e) => {
                            let _ = self.locks().release_token(id, &info.id);
                            return Err(e);
                        }
                    };
                    let result = InLock::run(&key, f);
                    let released = self.locks().release_token(id, &info.id);
                    // Closing the directory ends the exclusion.
                    drop(guard);
                    if let Err(e) = released {
                        if result.is_ok() {
                            // The operation is done; its lock is broken as
                            // stale once this process is gone.
                            self.warn(format!("the lock of '{id}' could not be released: {e}"));
                        }
                    }
                    return result;
                }
                Acquired::Reentrant(info) => {
                    // Released or broken between the look and the exclusion:
                    // take it again.
                    if let Some(guard) = self.locks().enter(id, &info)? {
                        let result = InLock::run(&key, f);
                        let _ = guard.unlock();
                        return result;
                    }
                    if std::time::Instant::now() >= deadline {
                        return Err(Error::LockTimeout {
                            milestone: id.to_string(),
                            waited: timeout,
                            holder: Some(Box::new(info)),
                        });
                    }
                }
            }
        }
    }

    /// [`FsStore::locked`] for a write with options `opts`: with a fencing
    /// token, the write runs under the lock that token belongs to, without
    /// waiting for it (as a write of its holder does), or is refused with
    /// [`Error::TokenRefused`] when that lock is gone, expired or
    /// superseded (see [`Locks::fence`]); without one, as
    /// [`FsStore::locked`].
    pub(crate) fn locked_for<T>(
        &self,
        id: &MilestoneId,
        operation: &str,
        opts: &WriteOptions,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let Some(token) = opts.lock_token else {
            return self.locked(id, operation, opts.lock_timeout, f);
        };
        let key = self.layout.lock_dir(id);
        if InLock::held(&key) {
            return f();
        }
        // Judged first: a refused write creates nothing, not even a store.
        let (guard, _info) = self.locks().fence(id, token)?;
        let result = self.ensure_layout().and_then(|()| InLock::run(&key, f));
        let _ = guard.unlock();
        result
    }

    /// Take the lock, logging any stale lock broken on the way. A break that
    /// cannot be logged is a warning: the lock is taken and the operation
    /// goes on, so a failure never leaves the caller holding a lock it was
    /// told it did not get. A `fenced` lock draws a fencing token.
    fn take_lock(&self, id: &MilestoneId, req: &LockRequest, fenced: bool) -> Result<Acquired> {
        let (acquired, broken) = self.locks().acquire(id, req, fenced)?;
        // The lock is ours now: a failure to log the break must not leave
        // it held with the operation refused.
        for b in broken {
            self.emit_committed(
                id,
                "lock_broken",
                json!({"reason": b.reason, "holder": b.info, "by": req.operation}),
                &format!("a stale lock of '{id}' was broken"),
            );
        }
        Ok(acquired)
    }

    /// Where the state of `id` lives, if anywhere.
    pub(crate) fn find_state(&self, id: &MilestoneId) -> Result<Option<(Status, PathBuf)>> {
        for status in [Status::Active, Status::Completed] {
            let p = self.layout.state_file(id, status);
            if atomic::exists(&*self.io, &p)? {
                return Ok(Some((status, p)));
            }
        }
        Ok(None)
    }

    fn ids_in(&self, dir: &Path, prefix: &str, suffix: &str) -> Result<Vec<MilestoneId>> {
        let entries = match self.io.read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == stdio::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", dir, e)),
        };
        Ok(entries
            .into_iter()
            .filter(|e| e.kind == FileKind::File)
            .filter_map(|e| {
                let name = e.name.strip_prefix(prefix)?.strip_suffix(suffix)?;
                MilestoneId::new(name).ok()
            })
            .collect())
    }

    fn summary(
        &self,
        id: &MilestoneId,
        status: Status,
        path: Option<&Path>,
    ) -> Result<MilestoneSummary> {
        let mut s = MilestoneSummary {
            milestone_id: id.to_string(),
            status,
            revision: None,
            updated: None,
            lock: self.locks().read(id)?,
            error: None,
        };
        if let Some(path) = path {
            match read_opt(&*self.io, path)? {
                Some(bytes) => match backup::parse_head(&bytes) {
                    Ok(env) => {
                        s.revision = Some(env.revision);
                        s.updated = Some(env.timestamp);
                    }
                    Err(e) => s.error = Some(format!("corrupt state file: {e}")),
                },
                None => s.error = Some("state file vanished".into()),
            }
        }
        Ok(s)
    }
}

thread_local! {
    /// The lock directories of the operations this thread runs under their
    /// milestone's lock ([`FsStore::locked`]), innermost last.
    static IN_LOCK: std::cell::RefCell<Vec<PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// This thread's record of the locks it is inside.
struct InLock;

impl InLock {
    /// Whether this thread runs an operation under the lock at `key`.
    fn held(key: &Path) -> bool {
        IN_LOCK.with(|held| held.borrow().iter().any(|k| k == key))
    }

    /// Run `f` recorded as inside the lock at `key` (the record is taken
    /// off however `f` ends, a panic included).
    fn run<T>(key: &Path, f: impl FnOnce() -> T) -> T {
        struct Pop;
        impl Drop for Pop {
            fn drop(&mut self) {
                IN_LOCK.with(|held| {
                    held.borrow_mut().pop();
                });
            }
        }
        IN_LOCK.with(|held| held.borrow_mut().push(key.to_path_buf()));
        let _pop = Pop;
        f()
    }
}

impl StoreBase for FsStore {
    fn location(&self) -> String {
        self.layout.root().display().to_string()
    }

    fn exists(&self) -> Result<bool> {
        FsStore::exists(self)
    }

    fn take_created(&self) -> bool {
        FsStore::take_created(self)
    }

    fn take_warnings(&self) -> Vec<String> {
        match self.warnings.lock() {
            Ok(mut w) => std::mem::take(&mut *w),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    fn milestone_ids(&self) -> Result<Vec<MilestoneId>> {
        let mut ids = std::collections::BTreeSet::new();
        ids.extend(self.ids_in(&self.layout.active(), "", ".json")?);
        ids.extend(self.ids_in(&self.layout.completed(), "", ".json")?);
        ids.extend(self.ids_in(&self.layout.events(), "milestone-", ".jsonl")?);
        Ok(ids.into_iter().collect())
    }

    fn require_known(&self, id: &MilestoneId) -> Result<()> {
        FsStore::require_known(self, id)
    }
}

impl StateStore for FsStore {
    fn init(&self, id: &MilestoneId) -> Result<Initialized> {
        self.ensure_layout()?;
        self.locked(id, "init", self.opts.lock_timeout, || {
            let log = self.layout.event_log(id);
            let live_empty = match self.io.metadata(&log) {
                Ok(m) => m.len == 0,
                Err(e) if e.kind() == stdio::ErrorKind::NotFound => true,
                Err(e) => return Err(Error::io("inspect", &log, e)),
            };
            let segments = self.layout.segments_dir(id);
            let fresh = live_empty
                && match self.io.read_dir(&segments) {
                    Ok(entries) => entries.is_empty(),
                    Err(e) if e.kind() == stdio::ErrorKind::NotFound => true,
                    Err(e) => return Err(Error::io("list", &segments, e)),
                };
            if fresh {
                self.emit(id, "state_initialized", json!({}))?;
            }
            Ok(Initialized {
                milestone_id: id.to_string(),
                created: fresh,
            })
        })
    }

    fn save(&self, id: &MilestoneId, state: &Value, opts: &WriteOptions) -> Result<Saved> {
        crate::json::check_depth(state, "state")?;
        self.write_state(id, state::WriteKind::Save, opts, &mut |_| {
            Ok(NewState::Value(Cow::Borrowed(state)))
        })
    }

    fn save_text(&self, id: &MilestoneId, state: &[u8], opts: &WriteOptions) -> Result<Saved> {
        crate::json::check_strict(state, "state")?;
        self.write_state(id, state::WriteKind::Save, opts, &mut |_| {
            Ok(NewState::Text(state))
        })
    }

    fn load(&self, id: &MilestoneId, opts: &WriteOptions) -> Result<Loaded> {
        self.load_state(id, opts)
    }

    fn load_raw(&self, id: &MilestoneId, opts: &WriteOptions) -> Result<LoadedRaw> {
        self.load_state_raw(id, opts)
    }

    fn update(&self, id: &MilestoneId, edit: &StateEdit, opts: &WriteOptions) -> Result<Saved> {
        edit.check()?;
        self.require_known(id)?;
        self.write_state(id, state::WriteKind::Update, opts, &mut |current| {
            let Some(current) = current else {
                return Err(Error::NotFound {
                    kind: crate::error::ObjectKind::Milestone,
                    name: id.to_string(),
                    hint: Some(crate::error::Hint::SaveToCreate {
                        milestone: id.to_string(),
                    }),
                });
            };
            let mut value = current.state;
            edit.apply(&mut value)?;
            // What the edit made must be a state a save would accept.
            crate::json::check_depth(&value, "the updated state")?;
            crate::json::check_value_size(&value, "the updated state")?;
            Ok(NewState::Value(Cow::Owned(value)))
        })
    }

    fn list(&self) -> Result<Vec<MilestoneSummary>> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for status in [Status::Active, Status::Completed] {
            let dir = self.layout.status_dir(status);
            for id in self.ids_in(&dir, "", ".json")? {
                if seen.insert(id.clone()) {
                    let path = self.layout.state_file(&id, status);
                    out.push(self.summary(&id, status, Some(&path))?);
                }
            }
        }
        for id in self.ids_in(&self.layout.events(), "milestone-", ".jsonl")? {
            if seen.insert(id.clone()) {
                out.push(self.summary(&id, Status::Active, None)?);
            }
        }
        out.sort_by(|a, b| a.milestone_id.cmp(&b.milestone_id));
        Ok(out)
    }

    fn complete(&self, id: &MilestoneId, opts: &WriteOptions) -> Result<()> {
        self.require_known(id)?;
        self.move_state(id, Status::Active, Status::Completed, opts)
    }

    fn reopen(&self, id: &MilestoneId, opts: &WriteOptions) -> Result<()> {
        self.require_known(id)?;
        self.move_state(id, Status::Completed, Status::Active, opts)
    }
}

impl HistoryStore for FsStore {
    fn backups(&self, id: &MilestoneId) -> Result<Vec<BackupInfo>> {
        let entries = backup::list(&*self.io, &self.layout, id)?;
        if entries.is_empty() {
            self.require_known(id)?;
        }
        let mut out = Vec::new();
        for e in entries
            .into_iter()
            .filter(|e| e.kind == backup::Kind::Backup)
        {
            let parsed = backup::read_head(&*self.io, &self.layout, &e.file)?;
            // A file the seed wrote has no revision inside: the one it
            // counted as is in the backup's name.
            let revision = parsed.as_ref().ok().map(|env| match env.revision {
                0 => backup::revision_in_name(id, &e.file).unwrap_or(0),
                r => r,
            });
            out.push(BackupInfo {
                size: e.meta.len,
                modified: backup::mtime_string(e.meta.modified),
                revision,
                valid: parsed.is_ok(),
                name: e.file,
            });
        }
        Ok(out)
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
        if let Some(name) = name {
            crate::id::check_checkpoint_file(id, name)?;
        }
        self.require_known(id)?;
        self.locked_for(id, "checkpoint create", opts, || {
            self.create_checkpoint(id, name, force)
        })
    }

    fn checkpoints(&self, id: &MilestoneId) -> Result<Vec<CheckpointInfo>> {
        let entries = backup::list(&*self.io, &self.layout, id)?;
        if entries.is_empty() {
            self.require_known(id)?;
        }
        let mut out = Vec::new();
        for e in entries {
            let backup::Kind::Checkpoint(name) = e.kind else {
                continue;
            };
            let parsed = backup::read_head(&*self.io, &self.layout, &e.file)?;
            out.push(CheckpointInfo {
                name,
                size: e.meta.len,
                modified: backup::mtime_string(e.meta.modified),
                revision: parsed.as_ref().ok().map(|env| env.revision),
                valid: parsed.is_ok(),
            });
        }
        Ok(out)
    }

    fn checkpoint_restore(
        &self,
        id: &MilestoneId,
        name: &CheckpointName,
        opts: &WriteOptions,
    ) -> Result<Restored> {
        crate::id::check_checkpoint_file(id, name)?;
        self.require_known(id)?;
        self.restore_checkpoint(id, name, opts)
    }

    fn checkpoint_delete(&self, id: &MilestoneId, name: &CheckpointName) -> Result<()> {
        crate::id::check_checkpoint_file(id, name)?;
        let path = self.layout.checkpoint_file(id, name);
        match self.io.remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == stdio::ErrorKind::NotFound => {
                self.require_known(id)?;
                return Err(Error::NotFound {
                    kind: crate::error::ObjectKind::Checkpoint,
                    name: name.to_string(),
                    hint: Some(crate::error::Hint::ListCheckpoints {
                        milestone: id.to_string(),
                    }),
                });
            }
            Err(e) => return Err(Error::io("remove", &path, e)),
        }
        let dir = self.layout.backups();
        self.io.sync_dir(&dir).ctx("sync directory", &dir)?;
        self.emit_committed(
            id,
            "checkpoint_deleted",
            json!({"checkpoint_name": name.as_str()}),
            &format!("checkpoint '{name}' of '{id}' was deleted"),
        );
        Ok(())
    }
}

impl EventStore for FsStore {
    fn log(&self, id: &MilestoneId, event: &NewEvent) -> Result<Event> {
        self.require_known(id)?;
        self.log_creating(id, event)
    }

    fn log_creating(&self, id: &MilestoneId, event: &NewEvent) -> Result<Event> {
        self.ensure_layout()?;
        let session = match &event.session_id {
            Some(s) => s.clone(),
            None => self.current_session()?,
        };
        self.in_session(&session, event.session_id.is_some(), |session| {
            self.log_of(id)
                .append(&self.opts.actor, session, &event.event_type, &event.data)
        })
    }

    fn events(
        &self,
        id: &MilestoneId,
        query: &EventQuery,
        sink: &mut dyn FnMut(&LogLine) -> Result<bool>,
    ) -> Result<ReadReport> {
        let mut any = false;
        let report = self.log_of(id).query(query, &mut |line| {
            any = true;
            sink(line)
        })?;
        if !any {
            self.require_known(id)?;
        }
        Ok(report)
    }

    fn follow(
        &self,
        id: &MilestoneId,
        query: &EventQuery,
        stop: &dyn Fn() -> bool,
        sink: &mut dyn FnMut(&LogLine) -> Result<bool>,
    ) -> Result<ReadReport> {
        self.require_known(id)?;
        self.ensure_layout()?;
        self.log_of(id).follow(query, stop, sink)
    }
}

impl LockStore for FsStore {
    fn lock_acquire(&self, id: &MilestoneId, req: &LockRequest) -> Result<LockInfo> {
        self.ensure_layout()?;
        let acquired = self.take_lock(id, req, true)?;
        Ok(acquired.info().clone())
    }

    fn lock_scoped(&self, id: &MilestoneId, req: &LockRequest) -> Result<Box<dyn HeldLock + '_>> {
        self.ensure_layout()?;
        let acquired = self.take_lock(id, req, true)?;
        Ok(Box::new(ScopedLock {
            store: self,
            id: id.clone(),
            acquired,
            released: false,
        }))
    }

    fn lock_release(&self, id: &MilestoneId, force: bool) -> Result<Option<LockInfo>> {
        let Some((info, own)) = self.locks().release(id, force)? else {
            return Ok(None);
        };
        if !own {
            self.emit(id, "lock_force_released", json!({"holder": info}))?;
        }
        Ok(Some(info))
    }

    fn lock_release_if_stale(&self, id: &MilestoneId) -> Result<Option<LockInfo>> {
        let Some((info, stale)) = self.locks().release_if_stale(id)? else {
            return Ok(None);
        };
        if let Some(reason) = stale {
            self.emit(
                id,
                "lock_broken",
                json!({"reason": reason, "holder": info, "by": "lock release --if-stale"}),
            )?;
        }
        Ok(Some(info))
    }

    fn lock_renew(&self, id: &MilestoneId, token: u64) -> Result<LockInfo> {
        self.locks().renew(id, token)
    }

    fn lock_status(&self, id: &MilestoneId) -> Result<Option<LockStatus>> {
        self.locks().status(id)
    }

    fn lock_pin_path(&self, id: &MilestoneId) -> Option<PathBuf> {
        Some(FsStore::lock_pin_path(self, id))
    }

    fn lock_pin(&self, id: &MilestoneId, fd: i32) -> Result<lock::Pinned> {
        FsStore::lock_pin(self, id, fd)
    }
}

impl SessionStore for FsStore {
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
        Ok(self.view(self.read_session(sid)?))
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
        if let Some(s) = &self.opts.session {
            return Ok(s.clone());
        }
        let path = self.layout.current_session();
        Ok(read_opt(&*self.io, &path)?
            .and_then(|b| String::from_utf8(b).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| NO_SESSION.to_string()))
    }
}

impl MaintenanceStore for FsStore {
    fn cleanup(&self, id: &MilestoneId, opts: &CleanupOptions) -> Result<CleanupReport> {
        if !opts.create {
            self.require_known(id)?;
        }
        self.cleanup_milestone(id, opts)
    }

    fn doctor(&self, repair: bool, progress: &mut dyn FnMut(u64, u64)) -> Result<DoctorReport> {
        self.run_doctor(repair, progress)
    }
}

impl TransferStore for FsStore {
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

/// A lock held until released or dropped.
struct ScopedLock<'a> {
    store: &'a FsStore,
    id: MilestoneId,
    acquired: Acquired,
    released: bool,
}

impl ScopedLock<'_> {
    fn release_now(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.released, true) {
            return Ok(());
        }
        if let Acquired::Fresh(info) = &self.acquired {
            self.store.locks().release_held(&self.id, &info.id)?;
        }
        Ok(())
    }
}

impl HeldLock for ScopedLock<'_> {
    fn info(&self) -> &LockInfo {
        self.acquired.info()
    }

    fn release(mut self: Box<Self>) -> Result<()> {
        self.release_now()
    }
}

impl Drop for ScopedLock<'_> {
    fn drop(&mut self) {
        let _ = self.release_now();
    }
}
