//! The values the store hands to and takes from its callers.
//!
//! These types are backend-neutral: they say nothing of paths or files, so a
//! future backend (PostgreSQL, say) returns the same values.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Envelope format version written into every state file (the seed's).
pub const ENVELOPE_VERSION: &str = "1.0";

/// The seed's state envelope, plus `revision`.
///
/// Field order is the on-disk order: the seed's fields first, `revision`
/// before `state` so a large state stays at the end of the file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    pub timestamp: String,
    pub milestone_id: String,
    pub version: String,
    /// Increases with every write and never goes back; files written by
    /// the seed have none and load as revision 0 (a write over one takes
    /// the revisions above the highest issued).
    #[serde(default)]
    pub revision: u64,
    pub state: Value,
}

/// Where a milestone's state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Completed,
}

impl Status {
    /// `active` or `completed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Completed => "completed",
        }
    }
}

/// A loaded state, with where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub envelope: Envelope,
    pub status: Status,
    /// Set when the state file was corrupt and this state was recovered.
    pub recovered: Option<Recovery>,
}

/// A loaded state as JSON text: what [`Loaded`] holds, without building a
/// `Value` (about ten times the size of its text) for callers that only
/// pass the state on, such as a command printing it.
#[derive(Debug, Clone)]
pub struct LoadedRaw {
    pub timestamp: String,
    pub milestone_id: String,
    pub version: String,
    pub revision: u64,
    /// The state as pretty JSON text (serde_json's layout, two-space
    /// indent, no trailing newline).
    pub state: String,
    pub status: Status,
    /// Set when the state file was corrupt and this state was recovered.
    pub recovered: Option<Recovery>,
}

/// What a recovery did.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// The backup the state was restored from; `None` when the state was
    /// valid and was left alone.
    pub backup: Option<String>,
    /// Where the corrupt file was moved, if there was one.
    pub corrupt_moved_to: Option<String>,
    /// Revision of the state now: the restored one, or the valid one left
    /// alone.
    pub revision: u64,
}

/// The result of a write of state.
#[derive(Debug, Clone, Serialize)]
pub struct Saved {
    pub milestone_id: String,
    pub revision: u64,
    pub timestamp: String,
    /// The backup made of the previous state, if there was one.
    pub backup: Option<String>,
}

/// One line of `mstate list`.
#[derive(Debug, Clone, Serialize)]
pub struct MilestoneSummary {
    pub milestone_id: String,
    pub status: Status,
    /// `None` when the state file could not be read.
    pub revision: Option<u64>,
    pub updated: Option<String>,
    pub lock: Option<LockInfo>,
    /// Why the state could not be read, if it could not.
    pub error: Option<String>,
}

/// A backup of a milestone's state.
#[derive(Debug, Clone, Serialize)]
pub struct BackupInfo {
    /// The backup's name, as `recover --from` takes it.
    pub name: String,
    pub size: u64,
    /// When the backed-up state was written (file modification time).
    pub modified: String,
    /// Revision inside, when the file parses.
    pub revision: Option<u64>,
    pub valid: bool,
}

/// A named checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointInfo {
    pub name: String,
    pub size: u64,
    pub modified: String,
    pub revision: Option<u64>,
    pub valid: bool,
}

/// Who holds a lock, as recorded when it was taken (like Terraform's lock
/// info). Locks written by the seed carry only `pid` and `created`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockInfo {
    /// Unique token of this acquisition.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub milestone_id: String,
    /// What the holder is doing (`save`, `lock acquire`, ...).
    #[serde(default)]
    pub operation: String,
    /// `user@host`.
    #[serde(default)]
    pub who: String,
    /// The process that owns the lock.
    pub pid: u32,
    /// When the lock was taken (RFC 3339).
    pub created: String,
    /// The owner's start time in clock ticks since boot, to tell a reused pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// Boot id of the owner's machine, to tell a lock from before a reboot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Past this many seconds after `created` the lock may be broken even
    /// if its holder is alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<f64>,
    /// Written by the seed's functions (no info file).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seed: bool,
    /// A process group whose members also hold the lock: while any lives,
    /// the lock is not stale, and each may use it as its own (the command
    /// of `lock run`, the jobs of a shell leading its group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgid: Option<u32>,
    /// Start time (clock ticks since boot) of the group's leader, to tell
    /// a group number reused after the group died out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgid_start: Option<u64>,
    /// `CLOCK_BOOTTIME` seconds when a lock with a TTL was taken: the TTL
    /// is measured on this clock (wall-clock steps do not move it) when the
    /// boot id is this boot's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_clock: Option<f64>,
    /// Pid namespace of the process that took the lock: its pid can be
    /// checked only from the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<u64>,
    /// The fencing token of this acquisition: increasing per milestone,
    /// never reused. Writes made under the lock may carry it
    /// ([`crate::WriteOptions::lock_token`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<u64>,
}

impl LockInfo {
    /// `pid 4121 (ci@runner-3, save, since 2026-11-24T12:01:07Z)`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.who.is_empty() {
            parts.push(self.who.clone());
        }
        if !self.operation.is_empty() {
            parts.push(self.operation.clone());
        }
        if self.seed {
            parts.push("seed script".to_string());
        }
        parts.push(format!("since {}", self.created));
        format!("pid {} ({})", self.pid, parts.join(", "))
    }
}

/// Whether a lock's holder is still there.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "state", content = "reason", rename_all = "lowercase")]
pub enum Liveness {
    /// The holder is alive (or cannot be checked from here).
    Held,
    /// The holder is gone, or the lock outlived its TTL; the reason says which.
    Stale(String),
    /// Treated as held, but the holder cannot be checked from here (a
    /// process of another pid namespace on this kernel: a container, maybe
    /// restarted under a new hostname); the reason says why. Only an
    /// explicit `lock release --force` breaks it.
    Unverified(String),
}

/// `lock status` output.
#[derive(Debug, Clone, Serialize)]
pub struct LockStatus {
    pub milestone_id: String,
    pub info: LockInfo,
    pub liveness: Liveness,
    /// The caller (this process or an ancestor) owns the lock.
    pub held_by_caller: bool,
}

/// How to take a lock.
#[derive(Debug, Clone)]
pub struct LockRequest {
    /// What the lock is for, shown to waiters.
    pub operation: String,
    /// How long to wait for a holder to let go.
    pub timeout: std::time::Duration,
    /// The process that will own the lock: this one, or the calling shell
    /// for `lock acquire`.
    pub owner_pid: u32,
    /// Break the lock after this long even if the holder lives.
    pub ttl: Option<std::time::Duration>,
    /// A process group whose members hold the lock with the owner (see
    /// [`LockInfo::pgid`]); `None` for the owner alone.
    pub group: Option<u32>,
}

/// Who is acting: the identity written into events, sessions and locks.
#[derive(Debug, Clone)]
pub struct Actor {
    pub pid: u32,
    /// Resolved on first use: looking a user up goes through NSS (files,
    /// nscd), which read-only commands have no need to pay for.
    user: std::sync::OnceLock<String>,
    pub host: String,
}

impl Actor {
    /// The current process.
    pub fn current() -> Self {
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        Actor {
            pid: std::process::id(),
            user: std::sync::OnceLock::new(),
            host,
        }
    }

    /// A given identity.
    pub fn new(pid: u32, user: impl Into<String>, host: impl Into<String>) -> Self {
        Actor {
            pid,
            user: std::sync::OnceLock::from(user.into()),
            host: host.into(),
        }
    }

    /// The user's name (`whoami`), looked up once.
    pub fn user(&self) -> &str {
        self.user
            .get_or_init(|| whoami::fallible::username().unwrap_or_else(|_| "unknown".to_string()))
    }
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: crate::id::EventType,
    pub data: Value,
    /// Session to record; `None` means the current session.
    pub session_id: Option<String>,
}

/// One event as stored. Decoding is lenient so the seed's lines read too:
/// its `state_initialized` line says `event` instead of `event_type` and
/// has no `data`, `pid`, `user`, `seq` or `host`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub timestamp: String,
    pub milestone_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(alias = "event")]
    pub event_type: String,
    #[serde(default)]
    pub data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// An event borrowed for a record's life: lets
/// [`EventRecord::from_event`] take `&Event`.
impl<'a> From<&'a Event> for std::borrow::Cow<'a, Event> {
    fn from(event: &'a Event) -> Self {
        std::borrow::Cow::Borrowed(event)
    }
}

/// An event the record owns: lets [`EventRecord::from_event`] take
/// `Event`.
impl From<Event> for std::borrow::Cow<'_, Event> {
    fn from(event: Event) -> Self {
        std::borrow::Cow::Owned(event)
    }
}

/// A filter over a milestone's events.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Keep events of any of these types (all when empty).
    pub types: Vec<String>,
    /// Keep events at or after this time.
    pub since: Option<jiff::Timestamp>,
    /// Keep events at or before this time.
    pub until: Option<jiff::Timestamp>,
    /// Keep events of this session.
    pub session: Option<String>,
    /// The first N matching events.
    pub limit: Option<usize>,
    /// The last N matching events.
    pub tail: Option<usize>,
    /// Newest first.
    pub reverse: bool,
    /// Where the query reports how far it has read (for a progress bar).
    pub progress: Option<Progress>,
}

impl EventQuery {
    /// What `tail`, `limit` and `reverse` keep of the matching events,
    /// given in seq order: the definition every backend streams (without
    /// holding the matches), written out whole as the reference a test
    /// compares a backend with. Reverse takes the newest first, as many
    /// as the smaller of `tail` and `limit`; otherwise the last `tail` of
    /// the matches, then the first `limit` of those.
    pub fn window<T>(&self, mut matches: Vec<T>) -> Vec<T> {
        if self.reverse {
            matches.reverse();
            let n = match (self.tail, self.limit) {
                (Some(t), Some(l)) => t.min(l),
                (Some(t), None) => t,
                (None, l) => l.unwrap_or(usize::MAX),
            };
            matches.truncate(n);
        } else {
            if let Some(t) = self.tail {
                matches.drain(..matches.len().saturating_sub(t));
            }
            if let Some(l) = self.limit {
                matches.truncate(l);
            }
        }
        matches
    }
}

/// How far a running query has read: bytes read of the bytes it may read.
/// Shared (clones see the same counters) so another thread can draw a
/// progress bar while the query runs; the store never prints.
#[derive(Debug, Clone, Default)]
pub struct Progress(std::sync::Arc<[std::sync::atomic::AtomicU64; 2]>);

impl Progress {
    /// Bytes the query may read (known once it has opened the log).
    pub fn total(&self) -> u64 {
        self.0[0].load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes read so far.
    pub fn done(&self) -> u64 {
        self.0[1].load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Set the bytes the query may read.
    pub fn set_total(&self, bytes: u64) {
        self.0[0].store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Set the bytes read so far.
    pub fn set_done(&self, bytes: u64) {
        self.0[1].store(bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What a reader met besides events: torn tails and lines it skipped.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReadReport {
    /// Human-readable notes ("skipped torn last line of 37 bytes in ...").
    pub warnings: Vec<String>,
}

/// A session as stored in `sessions/<id>.json`: the seed's fields, plus
/// `host`, the owner's start time and boot id (to tell an abandoned session
/// from a live one), and `ended_at` once ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionRecord {
    pub session_id: String,
    pub milestone_id: String,
    pub created_at: String,
    pub pid: i64,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub working_directory: String,
    #[serde(default)]
    pub git_branch: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

/// What is needed to start a session besides the milestone.
#[derive(Debug, Clone)]
pub struct SessionStart {
    /// The process the session belongs to (the calling shell).
    pub owner_pid: u32,
    pub working_directory: String,
    /// Current git branch, or `none`.
    pub git_branch: String,
    /// Make it the current session (`.current_session`).
    pub make_current: bool,
    /// Start it for a milestone the store does not know (its
    /// `session_created` creates the milestone's log), as the seed's
    /// `create_milestone_session` does; otherwise that is
    /// [`crate::Error::UnknownMilestone`].
    pub create: bool,
}

/// What a session is, as readers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// Started and not ended, its process alive (or on another host).
    Active,
    /// Ended (`session end`).
    Completed,
    /// Not ended, but its process on this host is gone.
    Abandoned,
}

impl SessionStatus {
    /// The name used on disk and in output.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Active => "active",
            SessionStatus::Completed => "completed",
            SessionStatus::Abandoned => "abandoned",
        }
    }
}

impl std::fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for SessionStatus {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> crate::error::Result<Self> {
        match s {
            "active" => Ok(SessionStatus::Active),
            "completed" => Ok(SessionStatus::Completed),
            "abandoned" => Ok(SessionStatus::Abandoned),
            other => Err(crate::error::Error::invalid(
                "session status",
                format!("{other:?}; use active, completed or abandoned"),
            )),
        }
    }
}

/// A session with its effective status: `active`, `completed`, or
/// `abandoned` (active, but its process is gone).
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    #[serde(flatten)]
    pub record: SessionRecord,
    /// Effective status (may differ from the stored `status`; a stored
    /// status other than `completed` counts as active).
    pub effective_status: SessionStatus,
    /// Why it is abandoned, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abandoned_because: Option<String>,
}

impl SessionView {
    /// `record` as seen from host `host`: a session whose stored status is
    /// not `completed` is active, except that an `active` one started on
    /// this host (or naming no host, as the seed's do) by a process that
    /// is gone is abandoned. Every backend judges sessions this way.
    pub fn judge(record: SessionRecord, host: &str) -> SessionView {
        let completed = record.status == "completed";
        let here = record.host.as_deref().is_none_or(|h| h == host);
        let abandoned = (record.status == "active" && here)
            .then(|| {
                let pid = u32::try_from(record.pid).ok().filter(|p| *p > 0)?;
                crate::process::gone(pid, record.pid_start, record.boot_id.as_deref())
            })
            .flatten();
        SessionView {
            effective_status: match (&abandoned, completed) {
                (Some(_), _) => SessionStatus::Abandoned,
                (None, true) => SessionStatus::Completed,
                (None, false) => SessionStatus::Active,
            },
            abandoned_because: abandoned,
            record,
        }
    }
}

/// A filter over sessions.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub milestone: Option<String>,
    pub status: Option<SessionStatus>,
}

/// One problem found by `doctor`.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Short machine-readable kind (`stale_lock`, `torn_tail`, ...).
    pub kind: String,
    /// The file or directory concerned, relative to the store.
    pub path: String,
    /// What is wrong.
    pub problem: String,
    /// What `--repair` does about it (or why it leaves it).
    pub repair: String,
    /// Whether `--repair` can fix it safely.
    pub repairable: bool,
    /// Whether it was repaired in this run.
    pub repaired: bool,
    /// A way out beyond `repair` (front ends word it after `repair`).
    #[serde(skip)]
    pub hint: Option<crate::error::Hint>,
}

/// What `doctor` found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DoctorReport {
    /// Files and directories looked at.
    pub checked: u64,
    pub findings: Vec<Finding>,
}

impl DoctorReport {
    /// True when nothing is left to fix.
    pub fn clean(&self) -> bool {
        self.findings.iter().all(|f| f.repaired)
    }
}

/// One step of a [`StateEdit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum EditOp {
    /// An RFC 7396 merge patch of the whole state.
    Merge { patch: Value },
    /// Set the value at an RFC 6901 pointer, creating missing objects.
    Set { pointer: String, value: Value },
    /// Add `by` to the number at `pointer` (a missing value counts as 0):
    /// a counter that concurrent writers never lose an increment of.
    Add { pointer: String, by: i64 },
}

/// An edit of a milestone's state, as data: what [`crate::Store::update`]
/// applies under the milestone's lock, so it can be sent to a server,
/// recorded, or replayed. The steps apply in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateEdit {
    pub ops: Vec<EditOp>,
}

impl StateEdit {
    /// An edit of one merge patch.
    pub fn merge(patch: Value) -> StateEdit {
        StateEdit {
            ops: vec![EditOp::Merge { patch }],
        }
    }

    /// An edit setting one pointer.
    pub fn set(pointer: impl Into<String>, value: Value) -> StateEdit {
        StateEdit {
            ops: vec![EditOp::Set {
                pointer: pointer.into(),
                value,
            }],
        }
    }

    /// An edit adding `by` to the integer at `pointer`.
    pub fn add(pointer: impl Into<String>, by: i64) -> StateEdit {
        StateEdit {
            ops: vec![EditOp::Add {
                pointer: pointer.into(),
                by,
            }],
        }
    }

    /// This edit, then `op`.
    pub fn then(mut self, op: EditOp) -> StateEdit {
        self.ops.push(op);
        self
    }

    /// Check every pointer, before any lock is taken.
    pub fn check(&self) -> crate::Result<()> {
        for op in &self.ops {
            match op {
                EditOp::Merge { .. } => {}
                EditOp::Set { pointer, .. } | EditOp::Add { pointer, .. } => {
                    crate::json::pointer_tokens(pointer)?;
                }
            }
        }
        Ok(())
    }

    /// Apply the steps to `state`, in order. An `add` on a value that is
    /// not an integer fails and leaves the state as the caller had it
    /// (the store writes nothing).
    pub fn apply(&self, state: &mut Value) -> crate::Result<()> {
        for op in &self.ops {
            match op {
                EditOp::Merge { patch } => crate::json::merge_patch(state, patch),
                EditOp::Set { pointer, value } => {
                    crate::json::set_pointer(state, pointer, value.clone())?
                }
                EditOp::Add { pointer, by } => {
                    let current = if pointer.is_empty() {
                        Some(&*state)
                    } else {
                        state.pointer(pointer)
                    };
                    let n = match current {
                        None | Some(Value::Null) => 0,
                        Some(v) => v.as_i64().ok_or_else(|| {
                            crate::Error::invalid(
                                "edit",
                                format!(
                                    "add at {pointer:?}: the value there is {v}, not an integer"
                                ),
                            )
                        })?,
                    };
                    let sum = n.checked_add(*by).ok_or_else(|| {
                        crate::Error::invalid(
                            "edit",
                            format!("add at {pointer:?}: {n} + {by} overflows a 64-bit integer"),
                        )
                    })?;
                    crate::json::set_pointer(state, pointer, Value::from(sum))?;
                }
            }
        }
        Ok(())
    }
}

/// One stored event as a query hands it to its sink, on every backend:
/// its seq and time, the members readers show, and the event itself,
/// with the stored text only as an optional fast path.
///
/// A backend that stores lines (the file store, PostgreSQL's `line`
/// column) builds it with [`EventRecord::from_line`]: [`EventRecord::raw`]
/// then gives the line (one compact JSON object, the file store's format
/// byte for byte), which a reader that prints events writes as it is,
/// without building a value of it. A backend that keeps events as values
/// or columns builds it with [`EventRecord::from_event`] and stores no
/// text. Either way [`EventRecord::event`] gives the whole event as a
/// model value, [`EventRecord::line`] its text (the stored line, or the
/// event encoded as the file store would write it) and
/// [`EventRecord::fields`] the members readers show.
#[derive(Debug, Clone)]
pub struct EventRecord<'a> {
    /// What the event was built from.
    body: RecordBody<'a>,
    /// Its timestamp.
    pub timestamp: jiff::Timestamp,
    /// Its `seq`, or the implicit one for events stored without (seed
    /// lines).
    pub seq: u64,
    /// The members readers show, read once when the record was built
    /// (from the same parse that checked a line), so a reader need not
    /// parse or encode anything again.
    pub fields: EventFields<'a>,
}

/// What an [`EventRecord`] holds: a stored line, or a model value.
#[derive(Debug, Clone)]
enum RecordBody<'a> {
    /// A stored line, without its newline.
    Line(&'a str),
    /// An event kept as a value (no stored text), borrowed...
    Event(&'a Event),
    /// ... or owned (boxed: an event is many times a line's reference).
    Owned(Box<Event>),
}

impl<'a> EventRecord<'a> {
    /// The record of a stored line (one JSON object, without its
    /// newline) with its time, its seq (the implicit one if the line has
    /// none) and its members, read by the caller from the same parse that
    /// checked the line.
    pub fn from_line(
        raw: &'a str,
        timestamp: jiff::Timestamp,
        seq: u64,
        fields: EventFields<'a>,
    ) -> Self {
        EventRecord {
            body: RecordBody::Line(raw),
            timestamp,
            seq,
            fields,
        }
    }

    /// The record of an event kept as a value (by reference or owned),
    /// with its time (its `timestamp` member as the backend reads it) and
    /// its seq (the implicit one if `event.seq` is `None`). Its
    /// [`fields`] are taken from the event, borrowed when the event is;
    /// `data` is encoded once here.
    ///
    /// [`fields`]: EventRecord::fields
    pub fn from_event(
        event: impl Into<std::borrow::Cow<'a, Event>>,
        timestamp: jiff::Timestamp,
        seq: u64,
    ) -> Self {
        let (body, fields) = match event.into() {
            std::borrow::Cow::Borrowed(e) => (RecordBody::Event(e), EventFields::of_event(e)),
            std::borrow::Cow::Owned(e) => {
                let fields = EventFields::of_event(&e).into_owned();
                (RecordBody::Owned(Box::new(e)), fields)
            }
        };
        EventRecord {
            body,
            timestamp,
            seq,
            fields,
        }
    }

    /// The stored line, without its newline, when the backend stores
    /// lines: the fast path for a reader that passes the text on. `None`
    /// for a record built from an event; [`EventRecord::line`] gives text
    /// for both.
    pub fn raw(&self) -> Option<&'a str> {
        match self.body {
            RecordBody::Line(raw) => Some(raw),
            RecordBody::Event(_) | RecordBody::Owned(_) => None,
        }
    }

    /// The event as one line of text, without a newline: the stored line
    /// as it is (borrowed), or the event encoded as the file store writes
    /// its lines (compact JSON, members in the order `timestamp`,
    /// `milestone_id`, `session_id`, `event_type`, `data`, `pid`, `user`,
    /// `seq`, `host`, those that are `None` left out), so the text of an
    /// event that came from a line is that line byte for byte when the
    /// line was written by mstate. Encoding fails only where serde_json
    /// cannot encode the value, which its own `Value`s never make it do.
    pub fn line(&self) -> crate::error::Result<std::borrow::Cow<'a, str>> {
        let event = match &self.body {
            RecordBody::Line(raw) => return Ok(std::borrow::Cow::Borrowed(raw)),
            RecordBody::Event(e) => *e,
            RecordBody::Owned(e) => e,
        };
        serde_json::to_string(event)
            .map(std::borrow::Cow::Owned)
            .map_err(|err| {
                crate::error::Error::invalid("stored event", format!("event {}: {err}", self.seq))
            })
    }

    /// The whole event (a seed line's missing members are `None`, its
    /// seq the implicit one), parsed from the stored line or copied from
    /// the value.
    pub fn event(&self) -> crate::error::Result<Event> {
        let raw = match &self.body {
            RecordBody::Line(raw) => *raw,
            RecordBody::Event(e) => return Ok(self.with_seq(Event::clone(e))),
            RecordBody::Owned(e) => return Ok(self.with_seq(Event::clone(e))),
        };
        let bad = |e: serde_json::Error| {
            crate::error::Error::invalid("stored event", format!("event {}: {e}", self.seq))
        };
        let mut value: Value = serde_json::from_str(raw).map_err(bad)?;
        if let Some(obj) = value.as_object_mut() {
            // The seed's first line names its type `event` and has no data.
            if !obj.contains_key("event_type") {
                if let Some(t) = obj.remove("event") {
                    obj.insert("event_type".into(), t);
                }
            }
            obj.entry("data")
                .or_insert_with(|| Value::Object(Default::default()));
        }
        let event: Event = serde_json::from_value(value).map_err(bad)?;
        Ok(self.with_seq(event))
    }

    /// `event` with the record's seq where it has none (a seed line's
    /// implicit one).
    fn with_seq(&self, mut event: Event) -> Event {
        event.seq.get_or_insert(self.seq);
        event
    }
}

/// The members of an event its readers show: borrowed from its line
/// (owned only where a string holds escapes), or from its value (`data`
/// encoded, so owned).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFields<'a> {
    /// `timestamp` as written, if it is a string.
    pub timestamp: Option<std::borrow::Cow<'a, str>>,
    /// `event_type`, or the seed's `event`, if a string.
    pub event_type: Option<std::borrow::Cow<'a, str>>,
    /// `session_id`, if a string.
    pub session_id: Option<std::borrow::Cow<'a, str>>,
    /// The JSON text of `data`, as written (compact JSON for an event
    /// kept as a value).
    pub data: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> EventFields<'a> {
    /// The members of `event`, its strings borrowed.
    fn of_event(event: &'a Event) -> Self {
        use std::borrow::Cow;
        EventFields {
            timestamp: Some(Cow::Borrowed(&event.timestamp)),
            event_type: Some(Cow::Borrowed(&event.event_type)),
            session_id: event.session_id.as_deref().map(Cow::Borrowed),
            // `Value`'s text is its compact JSON (serde_json's own
            // encoding, the one lines are written with).
            data: Some(Cow::Owned(event.data.to_string())),
        }
    }

    /// The same members, owning their text.
    pub fn into_owned(self) -> EventFields<'static> {
        use std::borrow::Cow;
        let own = |c: Option<Cow<'_, str>>| c.map(|c| Cow::Owned(c.into_owned()));
        EventFields {
            timestamp: own(self.timestamp),
            event_type: own(self.event_type),
            session_id: own(self.session_id),
            data: own(self.data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::log::line;
    use std::borrow::Cow;

    /// The record of `text` as the file store builds it.
    fn of_line(text: &str, seq: u64) -> EventRecord<'_> {
        let (raw, fields) = line::fields(text.as_bytes()).expect("one JSON object");
        let ts = line::parse_ts(fields.timestamp.as_deref().unwrap_or("").as_bytes())
            .expect("a timestamp");
        EventRecord::from_line(raw, ts, seq, fields)
    }

    /// A record built from `event` and one built from `text`, its stored
    /// line, agree on everything but the stored text.
    fn agree(event: &Event, text: &str, seq: u64) {
        let from_line = of_line(text, seq);
        let borrowed = EventRecord::from_event(event, from_line.timestamp, seq);
        let owned = EventRecord::from_event(event.clone(), from_line.timestamp, seq);
        assert_eq!(from_line.raw(), Some(text));
        assert!(matches!(from_line.line().unwrap(), Cow::Borrowed(l) if l == text));
        for r in [&borrowed, &owned] {
            assert_eq!(r.raw(), None);
            assert_eq!(r.line().unwrap(), text);
            assert_eq!(r.event().unwrap(), from_line.event().unwrap());
            assert_eq!(r.fields, from_line.fields);
            assert_eq!((r.timestamp, r.seq), (from_line.timestamp, from_line.seq));
        }
        // Borrowed from the value, not copied.
        assert!(matches!(
            borrowed.fields.event_type,
            Some(Cow::Borrowed(t)) if std::ptr::eq(t, event.event_type.as_str())
        ));
    }

    #[test]
    fn a_full_event_is_the_same_record_as_its_stored_line() {
        // Escapes, non-ASCII text and a number kept as written.
        let data: Value = serde_json::from_str(
            r#"{"note":"a \"quoted\"\nline é","n":1.50,"list":[1,{"k":null}]}"#,
        )
        .unwrap();
        let event = Event {
            timestamp: "2026-11-24T12:00:00.000001Z".into(),
            milestone_id: "m1".into(),
            session_id: Some("s-1".into()),
            event_type: "state_saved".into(),
            data: data.clone(),
            pid: Some(42),
            user: Some("c\"i".into()),
            seq: Some(7),
            host: Some("runner-3".into()),
        };
        // The line as the file store writes it.
        let fields = line::LineFields {
            timestamp: &event.timestamp,
            milestone_id: "m1",
            session_id: "s-1",
            event_type: "state_saved",
            data: &data,
            pid: 42,
            user: "c\"i",
            seq: 7,
            host: "runner-3",
        };
        let written = line::Encoder::new(&fields)
            .unwrap()
            .line(&event.timestamp, 7);
        let text = std::str::from_utf8(&written)
            .unwrap()
            .trim_end_matches('\n');
        agree(&event, text, 7);
        let r = EventRecord::from_event(&event, of_line(text, 7).timestamp, 7);
        assert_eq!(r.event().unwrap(), event);
        assert_eq!(r.fields.data.as_deref(), Some(data.to_string().as_str()));
    }

    #[test]
    fn a_seed_event_without_seq_or_host_is_the_same_record_as_its_line() {
        let text = r#"{"timestamp":"2026-11-24T21:03:38Z","milestone_id":"m1","session_id":"no-session","event_type":"state_saved","data":{"state_file":"x"},"pid":12,"user":"u"}"#;
        let event = Event {
            timestamp: "2026-11-24T21:03:38Z".into(),
            milestone_id: "m1".into(),
            session_id: Some("no-session".into()),
            event_type: "state_saved".into(),
            data: serde_json::json!({"state_file": "x"}),
            pid: Some(12),
            user: Some("u".into()),
            seq: None,
            host: None,
        };
        agree(&event, text, 3);
        // The implicit seq fills the missing one; the text leaves it out.
        let r = EventRecord::from_event(&event, of_line(text, 3).timestamp, 3);
        assert_eq!(r.event().unwrap().seq, Some(3));
        assert_eq!(r.fields.data.as_deref(), Some(r#"{"state_file":"x"}"#));

        // No session, pid or user either.
        let bare = r#"{"timestamp":"2026-11-24T21:03:39Z","milestone_id":"m1","event_type":"x","data":{}}"#;
        let event = Event {
            timestamp: "2026-11-24T21:03:39Z".into(),
            milestone_id: "m1".into(),
            session_id: None,
            event_type: "x".into(),
            data: serde_json::json!({}),
            pid: None,
            user: None,
            seq: None,
            host: None,
        };
        agree(&event, bare, 4);
        assert_eq!(of_line(bare, 4).fields.session_id, None);
    }
}
