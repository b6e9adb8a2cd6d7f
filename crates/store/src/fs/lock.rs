//! Milestone locks: the seed's lock directories, made safe.
//!
//! A lock is the directory `.locks/<id>.lock/` holding `pid` and `acquired`
//! exactly as the seed writes them, plus `info.json` (who, what, since when,
//! the owner's start time, boot id and pid namespace, the process group
//! that holds it with the owner, and the boot-clock time it was taken). The
//! seed takes it with `mkdir`, so the directory's existence is the lock, and
//! both tools exclude each other.
//!
//! Guarantees:
//! - Taking the lock is atomic and complete: the directory is filled under a
//!   temporary name and renamed into place with `RENAME_NOREPLACE`, so no
//!   one ever sees a lock without its owner.
//! - A lock is never broken while a process that may write under it lives:
//!   the holder counts as alive while its pid lives (with the start time it
//!   had) or, when the lock records a process group (`lock run`'s command,
//!   the jobs of a shell leading its group), while any member of that group
//!   lives, or while the lock is pinned (below). A holder that is gone (pid
//!   gone or reused, group gone, pin closed, or from before a reboot) is
//!   recognised at once and its lock broken; a live
//!   holder is never broken by age, only past the TTL it asked for or by an
//!   explicit forced release.
//! - A pin keeps the lock for the processes a shell started, also when the
//!   shell does not lead its process group (a script started by a harness,
//!   cron or CI), whose group is therefore not recorded: the shell
//!   layer's `acquire_state_lock` opens the lock's `info.json` and has
//!   [`Locks::pin`] take an exclusive `flock` on that open file, which the
//!   shell's background jobs and their commands inherit. The `flock` lasts
//!   while any of them holds the descriptor, so after the holder's pid is
//!   gone the lock is held while a shared non-blocking `flock` of
//!   `info.json` fails (checkers never conflict with each other), and
//!   broken at once when it succeeds. A lock's reentrant writers take
//!   their `flock` on the directory, never on `info.json`.
//! - The TTL is measured on `CLOCK_BOOTTIME` when the lock was taken on
//!   this boot, so steps of the wall clock (NTP, a restored VM) neither
//!   break a live lock early nor keep an expired one; locks of another
//!   machine fall back to the wall clock.
//! - A process whose ancestor owns the lock (the shell that ran
//!   `lock acquire`, or `lock run`), that belongs to the lock's process
//!   group, or that inherited a descriptor pinning it (a job whose shell
//!   died), uses the held lock instead of waiting for itself; each such
//!   reentrant write or read-modify-write also takes an exclusive `flock`
//!   of the lock directory for its duration, so writers inside one holder
//!   never interleave. Releasing and breaking take the same `flock`, so an
//!   in-flight reentrant write finishes before its lock goes.
//! - Waiters sleep on inotify (only a release of this lock wakes them) and
//!   on the holder's pidfd (its exit wakes them), so a hand-off or a dead
//!   holder is noticed within milliseconds; every 100 ms they re-check the
//!   holder's liveness anyway.
//! - A lock a user takes (`lock acquire`, `lock run`) carries a fencing
//!   token above every token of its milestone before it (see
//!   [`crate::fs::token`]), durable before the lock is reported taken. A
//!   write carrying a token ([`Locks::fence`]) passes only while it is the
//!   newest token and its lock is in place and within its TTL, and then
//!   runs inside the lock's exclusion without waiting for the lock; a
//!   renewal ([`Locks::renew`]) is judged the same way and extends the TTL
//!   by the lease it was taken with, from now, in the lock's `lease` file
//!   (never in `info.json`, whose open file a pin holds).
//!
//! Limits, by decision:
//! - A lock of another machine (another host name and boot id) is held: its
//!   holder cannot be checked from here. One with another host name but this
//!   machine's boot id is of this kernel (a container, perhaps restarted
//!   under a new hostname, or a renamed host): its pid is checked when it
//!   was taken in this pid namespace; otherwise the lock is
//!   [`Liveness::Unverified`]: held, and reported by `doctor`, until
//!   released with `--force`.
//! - A seed lock (no `info.json`) records no start time: it is held while
//!   its pid lives. Its `acquired` time is not compared with the process's
//!   start time, since a step of the wall clock makes that comparison break
//!   live locks; a pid reused by another process therefore keeps a seed lock
//!   until that process exits (or `lock release --force`).
//! - A pin is inherited by every process the shell starts, so a daemon it
//!   leaves running keeps the lock until it exits or closes the descriptor
//!   (that is the point: it may write); processes started before the lock
//!   was taken hold no pin.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result, TokenRefusal};
use crate::fs::atomic::{discard, nonce, read_opt};
use crate::fs::layout::Layout;
use crate::fs::token;
use crate::id::MilestoneId;
use crate::io::{File, FileId, FileKind, Io, LockMode, PollWatch, Watch};
use crate::model::{Actor, Liveness, LockInfo, LockRequest, LockStatus};
use crate::process::{self, Alive};
use crate::time;

/// How often a waiter re-checks the holder even without a wake-up.
const RECHECK: Duration = Duration::from_millis(100);

/// A lock directory without a `pid` file older than this is a crashed
/// acquisition (the seed writes the pid right after `mkdir`).
const INCOMPLETE_GRACE: Duration = Duration::from_secs(10);

/// How a lock came to be ours.
#[derive(Debug, Clone)]
pub enum Acquired {
    /// We created it; we must release it.
    Fresh(LockInfo),
    /// This process or an ancestor already held it; leave it alone.
    Reentrant(LockInfo),
}

impl Acquired {
    pub fn info(&self) -> &LockInfo {
        match self {
            Acquired::Fresh(i) | Acquired::Reentrant(i) => i,
        }
    }
}

/// A stale lock that was broken on the way, for the event log.
#[derive(Debug, Clone)]
pub struct Broken {
    pub info: LockInfo,
    pub reason: String,
}

/// Change watches on the locks directory kept by a store for its
/// lifetime. Closing an inotify instance waits for the kernel to tear its
/// watch down (milliseconds); a waiter that just took the lock must not pay
/// that while holding it, so watches are reused, never closed mid-operation.
#[derive(Default)]
pub struct WatchPool(Mutex<Vec<Box<dyn Watch>>>);

impl WatchPool {
    fn take(&self) -> Option<Box<dyn Watch>> {
        self.0.lock().ok()?.pop()
    }

    fn put(&self, watch: Box<dyn Watch>) {
        if let Ok(mut pool) = self.0.lock() {
            pool.push(watch);
        }
    }
}

impl fmt::Debug for WatchPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.lock().map(|p| p.len()).unwrap_or(0);
        write!(f, "WatchPool({n})")
    }
}

/// A filled temporary lock directory waiting to be renamed into place.
struct Pending {
    tmp: PathBuf,
    info: LockInfo,
    filled: Instant,
}

/// A waiter's filled temporary lock directory older than this is filled
/// again, so the lock's `acquired` time stays close to the truth.
const REFILL: Duration = Duration::from_millis(500);

/// The names the lock directory holds, as written by [`Locks::fill`].
const LOCK_FILES: [&str; 3] = ["pid", "acquired", "info.json"];

/// The file of a lock whose lease was renewed ([`Locks::renew`]): how long
/// after it was taken the lock now lasts. `info.json` is never rewritten,
/// since a pin holds its open file.
const LEASE_FILE: &str = "lease";

/// The contents of [`LEASE_FILE`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Lease {
    /// The lock renewed (its `LockInfo::id`): a lease left by another
    /// lock is not this one's.
    lock: String,
    /// The lock's TTL now, in seconds after it was taken.
    ttl_secs: f64,
    /// The length of a lease, the TTL it was taken with: a renewal makes
    /// it last that long from then.
    lease_secs: f64,
}

/// The file of a lock that a holder's descriptor pins (see [`Locks::pin`]).
pub(crate) const PIN_FILE: &str = "info.json";

/// How long [`Locks::pin`] waits for liveness probes in its way.
const PIN_PATIENCE: Duration = Duration::from_secs(5);

pub use crate::store::Pinned;

/// The lock operations of one filesystem store.
pub struct Locks<'a> {
    pub io: &'a dyn Io,
    pub layout: &'a Layout,
    pub actor: &'a Actor,
    pub watches: &'a WatchPool,
}

impl Locks<'_> {
    /// Take the lock of `id` for `req.owner_pid`, waiting at most
    /// `req.timeout`. Stale locks met on the way are broken and returned.
    /// A `fenced` lock (one a user takes) draws the milestone's next
    /// fencing token (see [`token`]), durable before this returns.
    pub fn acquire(
        &self,
        id: &MilestoneId,
        req: &LockRequest,
        fenced: bool,
    ) -> Result<(Acquired, Vec<Broken>)> {
        let mut watch = None;
        let mut pending = None;
        let result = self.acquire_with(id, req, fenced, &mut watch, &mut pending);
        if let Some(p) = pending {
            discard(self.io, &p.tmp);
        }
        if let Some(w) = watch {
            self.watches.put(w);
        }
        result
    }

    fn acquire_with(
        &self,
        id: &MilestoneId,
        req: &LockRequest,
        fenced: bool,
        watch: &mut Option<Box<dyn Watch>>,
        pending: &mut Option<Pending>,
    ) -> Result<(Acquired, Vec<Broken>)> {
        let start = Instant::now();
        let deadline = start + req.timeout;
        let mut broken = Vec::new();
        let mut caller: Option<Caller> = None;
        let locks_dir = self.layout.locks();
        let lock_name = format!("{id}.lock");
        // Create only when the lock looks free: a waiter that retried the
        // whole creation on every wake-up would churn the directory the
        // holder is syncing.
        let mut attempt = true;
        let mut woken = false;
        let mut seen: Option<(String, u32, String)> = None;
        loop {
            if attempt {
                if let Some(info) = self.try_create(id, req, fenced, pending)? {
                    return Ok((Acquired::Fresh(info), broken));
                }
            }
            let Some(current) = self.read(id)? else {
                attempt = true;
                continue; // released between our attempt and our look
            };
            let me = caller.get_or_insert_with(|| Caller::of(self.actor.pid));
            if self.owned(id, &current, me) {
                return Ok((Acquired::Reentrant(current), broken));
            }
            // Woken by a release and beaten to the lock: the winner took it
            // a moment ago and was alive then. The waiters of a busy lock
            // skip the process checks for it (they cost more than the rest
            // of a hand-off) and make them at the next recheck.
            // (A holder seen before the wait gets its checks: the wake-up
            // may be its exit.)
            let age = time::parse_timestamp(&current.created)
                .map(|t| time::now().duration_since(t).as_secs_f64());
            let holder = (current.id.clone(), current.pid, current.created.clone());
            let new_holder = seen.as_ref() != Some(&holder);
            let young = woken
                && new_holder
                && current.ttl_secs.is_none()
                && age.is_some_and(|a| (0.0..RECHECK.as_secs_f64()).contains(&a));
            woken = false;
            seen = Some(holder);
            if young {
                // Wait below.
            } else if let Liveness::Stale(reason) = self.liveness(id, &current)? {
                if self.break_stale(id, &current)? {
                    broken.push(Broken {
                        info: current,
                        reason,
                    });
                }
                attempt = true;
                continue;
            }
            attempt = false;
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::LockTimeout {
                    milestone: id.to_string(),
                    waited: now - start,
                    holder: Some(Box::new(current)),
                });
            }
            match watch.as_mut() {
                None => {
                    // Set the watch up, then look again at once so a release
                    // between our look and the watch is not missed.
                    *watch = Some(self.watches.take().unwrap_or_else(|| {
                        self.io
                            .watch(&locks_dir)
                            .unwrap_or_else(|_| Box::new(PollWatch))
                    }));
                }
                Some(w) => {
                    let wait = (deadline - now).min(RECHECK);
                    // A holder on this host is watched for its exit; once it
                    // is gone, the leader of its group, if that still runs.
                    // When neither runs (a member of its group or a pin
                    // keeps the lock), the watch and the recheck do.
                    let holder = (current.pid != 0
                        && current.host.as_ref().is_none_or(|h| h == &self.actor.host))
                    .then(|| {
                        [Some(current.pid), current.pgid]
                            .into_iter()
                            .flatten()
                            .find(|p| process::alive(*p) != Alive::No)
                    })
                    .flatten();
                    if w.wait_released(wait, &lock_name, holder).is_err() {
                        *watch = Some(Box::new(PollWatch));
                    }
                    woken = now.elapsed() < wait;
                }
            }
        }
    }

    /// Release a lock we took, identified by its token. A lock that is no
    /// longer ours (broken and taken by another) is left alone.
    pub fn release_token(&self, id: &MilestoneId, token: &str) -> Result<bool> {
        match self.read(id)? {
            Some(cur) if cur.id == token => {
                self.remove(id)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// [`Self::release_token`] once the writes in flight under the lock
    /// (its holder's, or ones carrying its fencing token) are done, as
    /// [`Self::release`] does: the next holder never writes alongside them.
    /// Not for a caller inside the lock's exclusion (it would wait for
    /// itself).
    pub fn release_held(&self, id: &MilestoneId, token: &str) -> Result<bool> {
        let _inner = self.exclude_writers(id)?;
        self.release_token(id, token)
    }

    /// Release the lock held by this process, an ancestor or its group;
    /// with `force`, whoever holds it. Returns the released lock's info and
    /// whether it was the caller's own. An in-flight reentrant write under
    /// the lock finishes first.
    pub fn release(&self, id: &MilestoneId, force: bool) -> Result<Option<(LockInfo, bool)>> {
        let _inner = self.exclude_writers(id)?;
        let Some(cur) = self.read(id)? else {
            return Ok(None);
        };
        let own = self.owned(id, &cur, &Caller::of(self.actor.pid));
        if !force && !own {
            return Err(Error::LockNotOwned {
                milestone: id.to_string(),
                holder: Some(Box::new(cur)),
            });
        }
        self.remove(id)?;
        Ok(Some((cur, own)))
    }

    /// Release the caller's own lock, or break one whose holder is gone or
    /// past its TTL; a live holder's lock stays (`LockNotOwned`). Returns
    /// the released lock, whether it was the caller's, and why it was
    /// stale when it was not.
    pub fn release_if_stale(&self, id: &MilestoneId) -> Result<Option<(LockInfo, Option<String>)>> {
        let Some(cur) = self.read(id)? else {
            return Ok(None);
        };
        if self.owned(id, &cur, &Caller::of(self.actor.pid)) {
            return Ok(self.release(id, false)?.map(|(info, _)| (info, None)));
        }
        match self.liveness(id, &cur)? {
            Liveness::Stale(reason) => {
                if self.break_stale(id, &cur)? {
                    Ok(Some((cur, Some(reason))))
                } else {
                    // Changed meanwhile: judge the new lock afresh.
                    self.release_if_stale(id)
                }
            }
            Liveness::Held | Liveness::Unverified(_) => Err(Error::LockNotOwned {
                milestone: id.to_string(),
                holder: Some(Box::new(cur)),
            }),
        }
    }

    /// Enter the lock `seen`, which this process holds reentrantly (an
    /// ancestor or its process group owns it), for one write: an exclusive
    /// `flock` of the lock directory, held until the returned file is
    /// dropped. `None` when the lock changed meanwhile (released or broken):
    /// the caller takes it afresh.
    pub fn enter(&self, id: &MilestoneId, seen: &LockInfo) -> Result<Option<Box<dyn File>>> {
        let dir = self.layout.lock_dir(id);
        let guard = match self.io.open_read(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open lock", &dir, e)),
        };
        guard.lock(LockMode::Exclusive).ctx("lock", &dir)?;
        let same_dir = match (guard.id(), self.io.metadata(&dir)) {
            (Ok(a), Ok(m)) => a == m.id,
            _ => false,
        };
        if same_dir && self.read(id)?.as_ref() == Some(seen) {
            Ok(Some(guard))
        } else {
            let _ = guard.unlock();
            Ok(None)
        }
    }

    /// Wait for in-flight reentrant writes under the lock of `id` and keep
    /// new ones out until the returned file is dropped (see [`Self::enter`]).
    /// `None` when there is no lock directory to exclude on.
    pub(crate) fn exclude_writers(&self, id: &MilestoneId) -> Result<Option<Box<dyn File>>> {
        let dir = self.layout.lock_dir(id);
        match self.io.metadata(&dir) {
            Ok(m) if m.kind == FileKind::Dir => {}
            // Nothing a writer could have entered: a file, a link, nothing.
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("inspect lock", &dir, e)),
        }
        let guard = match self.io.open_read(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open lock", &dir, e)),
        };
        guard.lock(LockMode::Exclusive).ctx("lock", &dir)?;
        Ok(Some(guard))
    }

    /// The lock of `id`, if any, with whether its holder is alive.
    pub fn status(&self, id: &MilestoneId) -> Result<Option<LockStatus>> {
        let Some(info) = self.read(id)? else {
            return Ok(None);
        };
        let liveness = self.liveness(id, &info)?;
        let held_by_caller = self.owned(id, &info, &Caller::of(self.actor.pid));
        Ok(Some(LockStatus {
            milestone_id: id.to_string(),
            info,
            liveness,
            held_by_caller,
        }))
    }

    /// Enter the lock of `id` held with fencing token `token`, for one
    /// write or a renewal: the exclusive `flock` of its directory (as
    /// [`Self::enter`] takes it), held until the returned file is dropped,
    /// with the lock checked under it. Refused ([`Error::TokenRefused`])
    /// unless `token` is the milestone's newest and its lock is in place
    /// and within its TTL. Releases, breaks and renewals take the same
    /// `flock`, so the lock stays while the caller writes under it.
    pub fn fence(&self, id: &MilestoneId, token: u64) -> Result<(Box<dyn File>, LockInfo)> {
        let dir = self.layout.lock_dir(id);
        loop {
            let guard = match self.io.open_read(&dir) {
                Ok(f) => Some(f),
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
                {
                    None
                }
                Err(e) => return Err(Error::io("open lock", &dir, e)),
            };
            if let Some(g) = &guard {
                g.lock(LockMode::Exclusive).ctx("lock", &dir)?;
                let same_dir = match (g.id(), self.io.metadata(&dir)) {
                    (Ok(a), Ok(m)) => a == m.id,
                    _ => false,
                };
                if !same_dir {
                    // Released (and maybe taken again) meanwhile: look again.
                    let _ = g.unlock();
                    continue;
                }
            }
            let current = self.read(id)?;
            match (guard, self.check_token(id, token, current.as_ref())) {
                (Some(g), Ok(info)) => return Ok((g, info)),
                (guard, Err(e)) => {
                    if let Some(g) = guard {
                        let _ = g.unlock();
                    }
                    return Err(e);
                }
                // Taken between the open and the read: look again.
                (None, Ok(_)) => continue,
            }
        }
    }

    /// Judge fencing token `token` of `id` against the counter and
    /// `current`, the lock in place: the lock it belongs to, or why not.
    fn check_token(
        &self,
        id: &MilestoneId,
        token: u64,
        current: Option<&LockInfo>,
    ) -> Result<LockInfo> {
        // A lock whose token is above the counter (a counter removed by
        // hand) still counts: the newest is never below a live token.
        let newest = token::read(self.io, self.layout, id)?
            .high
            .max(current.and_then(|c| c.token).unwrap_or(0));
        let refuse = |reason: TokenRefusal| {
            Err(Error::TokenRefused {
                milestone: id.to_string(),
                token,
                reason,
            })
        };
        if token < newest {
            return refuse(TokenRefusal::Superseded {
                newest,
                holder: current.cloned().map(Box::new),
            });
        }
        if token > newest {
            return refuse(TokenRefusal::NeverIssued { newest });
        }
        match current {
            Some(c) if c.token == Some(token) => match expired_at(c) {
                Some(at) => refuse(TokenRefusal::Expired { at }),
                None => Ok(c.clone()),
            },
            _ => refuse(TokenRefusal::Released),
        }
    }

    /// Extend the lease of the lock of `id` held with `token` by the TTL it
    /// was taken with, from now; refused as a write with that token is
    /// ([`Self::fence`]). A lock without TTL has no lease to extend, and is
    /// returned as it is.
    pub fn renew(&self, id: &MilestoneId, token: u64) -> Result<LockInfo> {
        let (guard, info) = self.fence(id, token)?;
        let result = self.extend(id, &info);
        let _ = guard.unlock();
        result
    }

    /// Write the renewed lease of `info`, the lock of `id` (under its
    /// `flock`). The lease file is replaced by a rename, so readers see
    /// the old lease or the new one; like the rest of a lock, it is not
    /// synced (a lock means nothing after a reboot).
    fn extend(&self, id: &MilestoneId, info: &LockInfo) -> Result<LockInfo> {
        let Some(ttl) = info.ttl_secs else {
            return Ok(info.clone());
        };
        let dir = self.layout.lock_dir(id);
        let lease_secs = self.lease(&dir, info)?.map_or(ttl, |l| l.lease_secs);
        let age = ttl_age(info).unwrap_or(0.0).max(0.0);
        let lease = Lease {
            lock: info.id.clone(),
            // Milliseconds are enough, and read better in messages.
            ttl_secs: (((age + lease_secs) * 1000.0).round() / 1000.0).max(ttl),
            lease_secs,
        };
        let bytes = serde_json::to_vec(&lease).map_err(|e| Error::io("encode", &dir, e.into()))?;
        let tmp = dir.join(format!(".{LEASE_FILE}.tmp-{}", nonce()));
        let target = dir.join(LEASE_FILE);
        let written = self
            .io
            .create_new(&tmp)
            .and_then(|mut f| f.write_all(&bytes))
            .ctx("create", &tmp)
            .and_then(|()| self.io.rename(&tmp, &target).ctx("rename", &tmp));
        if let Err(e) = written {
            discard(self.io, &tmp);
            return Err(e);
        }
        Ok(LockInfo {
            ttl_secs: Some(lease.ttl_secs),
            ..info.clone()
        })
    }

    fn new_info(&self, id: &MilestoneId, req: &LockRequest) -> LockInfo {
        let own = req.owner_pid == self.actor.pid;
        let group = req.group.filter(|g| *g != 0);
        LockInfo {
            id: nonce(),
            milestone_id: id.to_string(),
            operation: req.operation.clone(),
            who: format!("{}@{}", self.actor.user(), self.actor.host),
            pid: req.owner_pid,
            created: time::format_micros(time::now()),
            pid_start: if own && self.actor.pid == std::process::id() {
                process::own_start_ticks()
            } else if own {
                process::start_ticks(self.actor.pid)
            } else {
                process::start_ticks(req.owner_pid)
            },
            boot_id: process::boot_id(),
            host: Some(self.actor.host.clone()),
            ttl_secs: req.ttl.map(|d| d.as_secs_f64()),
            seed: false,
            pgid: group,
            pgid_start: group.and_then(process::start_ticks),
            // Only a TTL is measured on it.
            boot_clock: req.ttl.and_then(|_| process::boot_clock()),
            pid_ns: process::pid_namespace(),
            token: None,
        }
    }

    /// Try once to put a complete lock directory in place. The filled
    /// temporary directory is kept in `pending` across failed attempts, so
    /// a waiter retrying after each release costs one `renameat2`, not a
    /// directory of files created and removed (metadata the holder's syncs
    /// would have to commit); it is refilled when older than [`REFILL`] so
    /// the lock says when it was really taken.
    ///
    /// A `fenced` attempt draws its token under the `flock` of `.locks/`:
    /// the lock goes into place with the next token, and the counter moves
    /// to it (synced) before the lock counts as taken.
    fn try_create(
        &self,
        id: &MilestoneId,
        req: &LockRequest,
        fenced: bool,
        pending: &mut Option<Pending>,
    ) -> Result<Option<LockInfo>> {
        let io = self.io;
        if let Some(p) = pending.take_if(|p| p.filled.elapsed() > REFILL) {
            discard(io, &p.tmp);
        }
        let p = match pending.take() {
            Some(p) => p,
            None => {
                // The token expected; checked again under the flock.
                let token = match fenced {
                    true => Some(next_token(&token::read(io, self.layout, id)?)),
                    false => None,
                };
                self.prepare(id, req, token)?
            }
        };
        if !fenced {
            return self.put_in_place(id, p, pending);
        }
        let serial = match self.serialise() {
            Ok(g) => g,
            Err(e) => {
                discard(io, &p.tmp);
                return Err(e);
            }
        };
        let result = self.put_fenced(id, req, p, pending);
        let _ = serial.unlock();
        result
    }

    /// [`Self::try_create`] of a fenced lock, under the `flock` of
    /// `.locks/`: draw the token, put the lock in place, record the token.
    fn put_fenced(
        &self,
        id: &MilestoneId,
        req: &LockRequest,
        p: Pending,
        pending: &mut Option<Pending>,
    ) -> Result<Option<LockInfo>> {
        let record = match token::read(self.io, self.layout, id) {
            Ok(r) => r,
            Err(e) => {
                discard(self.io, &p.tmp);
                return Err(e);
            }
        };
        let next = next_token(&record);
        let p = if p.info.token == Some(next) {
            p
        } else {
            // Another lock drew a token since this one was filled.
            discard(self.io, &p.tmp);
            self.prepare(id, req, Some(next))?
        };
        let Some(info) = self.put_in_place(id, p, pending)? else {
            return Ok(None);
        };
        let locks = self.layout.locks();
        let recorded = token::advance(self.io, self.layout, id, &record, next)
            .and_then(|()| self.io.sync_dir(&locks).ctx("sync directory", &locks));
        if let Err(e) = recorded {
            // Not reported taken: a token that is not durable is not handed out.
            let _ = self.remove(id);
            return Err(e);
        }
        Ok(Some(info))
    }

    /// A filled temporary lock directory for `req`, with fencing token `token`.
    fn prepare(&self, id: &MilestoneId, req: &LockRequest, token: Option<u64>) -> Result<Pending> {
        let io = self.io;
        let info = LockInfo {
            token,
            ..self.new_info(id, req)
        };
        let tmp = self.layout.locks().join(format!(".tmp-{}", info.id));
        io.create_dir(&tmp).ctx("create lock", &tmp)?;
        if let Err(e) = self.fill(&tmp, &info) {
            discard(io, &tmp);
            return Err(e);
        }
        Ok(Pending {
            tmp,
            info,
            filled: Instant::now(),
        })
    }

    /// Rename the filled directory `p` into place; `None` (and `p` kept in
    /// `pending`) when the lock is held.
    fn put_in_place(
        &self,
        id: &MilestoneId,
        p: Pending,
        pending: &mut Option<Pending>,
    ) -> Result<Option<LockInfo>> {
        let io = self.io;
        let target = self.layout.lock_dir(id);
        match io.rename_noreplace(&p.tmp, &target) {
            Ok(()) => Ok(Some(p.info)),
            Err(e) if is_exists(&e) => {
                *pending = Some(p);
                Ok(None)
            }
            Err(e) if is_unsupported(&e) => {
                // No RENAME_NOREPLACE here: fall back to the seed's mkdir.
                discard(io, &p.tmp);
                match io.create_dir(&target) {
                    Ok(()) => {
                        self.fill(&target, &p.info)?;
                        Ok(Some(p.info))
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
                    Err(e) => Err(Error::io("create lock", &target, e)),
                }
            }
            Err(e) => {
                discard(io, &p.tmp);
                Err(Error::io("take lock", &target, e))
            }
        }
    }

    /// The exclusive `flock` of `.locks/`, which breakers of stale locks
    /// and acquisitions drawing a token take; unlock the file returned.
    fn serialise(&self) -> Result<Box<dyn File>> {
        let locks = self.layout.locks();
        let guard = self.io.open_read(&locks).ctx("open", &locks)?;
        guard.lock(LockMode::Exclusive).ctx("lock", &locks)?;
        Ok(guard)
    }

    fn fill(&self, dir: &Path, info: &LockInfo) -> Result<()> {
        let acquired = info
            .created
            .parse::<jiff::Timestamp>()
            .map(time::format_seconds)
            .unwrap_or_else(|_| info.created.clone());
        let json =
            serde_json::to_vec_pretty(info).map_err(|e| Error::io("encode", dir, e.into()))?;
        let contents = [
            format!("{}\n", info.pid).into_bytes(),
            format!("{acquired}\n").into_bytes(),
            json,
        ];
        for (name, bytes) in LOCK_FILES.into_iter().zip(contents) {
            let p = dir.join(name);
            let mut f = self.io.create_new(&p).ctx("create", &p)?;
            f.write_all(&bytes).ctx("write", &p)?;
        }
        Ok(())
    }

    /// Read the current lock of `id`, whoever wrote it.
    pub fn read(&self, id: &MilestoneId) -> Result<Option<LockInfo>> {
        let dir = self.layout.lock_dir(id);
        let meta = match self.io.metadata(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("inspect lock", &dir, e)),
        };
        let created_fallback = || {
            jiff::Timestamp::try_from(meta.modified)
                .map(time::format_micros)
                .unwrap_or_default()
        };
        if meta.kind != FileKind::Dir {
            // Not something either tool creates: report it as a lock with
            // no owner so it is seen as stale and removed.
            return Ok(Some(LockInfo {
                id: String::new(),
                milestone_id: id.to_string(),
                operation: format!("not a lock directory ({:?})", meta.kind).to_lowercase(),
                who: String::new(),
                pid: 0,
                created: created_fallback(),
                pid_start: None,
                boot_id: None,
                host: None,
                ttl_secs: None,
                seed: false,
                pgid: None,
                pgid_start: None,
                boot_clock: None,
                pid_ns: None,
                token: None,
            }));
        }
        let read = |name: &str| self.read_file(&dir, name);
        if let Some(bytes) = read("info.json")? {
            if let Ok(mut info) = serde_json::from_slice::<LockInfo>(&bytes) {
                if let Some(lease) = self.lease(&dir, &info)? {
                    info.ttl_secs = Some(lease.ttl_secs);
                }
                return Ok(Some(info));
            }
        }
        let pid = read("pid")?
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(0);
        let created = read("acquired")?
            .and_then(|b| String::from_utf8(b).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(created_fallback);
        if !self.io.metadata(&dir).is_ok_and(|m| m.id == meta.id) {
            return Ok(None); // released while we read it
        }
        Ok(Some(LockInfo {
            id: String::new(),
            milestone_id: id.to_string(),
            operation: String::new(),
            who: String::new(),
            pid,
            created,
            pid_start: None,
            boot_id: None,
            host: None,
            ttl_secs: None,
            seed: true,
            pgid: None,
            pgid_start: None,
            boot_clock: None,
            pid_ns: None,
            token: None,
        }))
    }

    /// One file of the lock directory `dir`, `None` when it is missing.
    fn read_file(&self, dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
        match read_opt(self.io, &dir.join(name)) {
            // The lock vanished while we read it: treat as missing file.
            // A FIFO or socket planted there is garbage, read as missing
            // too, so the lock is judged by what is left (and broken if
            // stale) instead of blocking every command.
            Err(Error::Io { source, .. })
                if source.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
                    || crate::io::is_not_a_file(&source) =>
            {
                Ok(None)
            }
            other => other,
        }
    }

    /// The renewed lease of the lock `info` in `dir`, if it was renewed.
    fn lease(&self, dir: &Path, info: &LockInfo) -> Result<Option<Lease>> {
        if info.ttl_secs.is_none() || info.id.is_empty() {
            return Ok(None);
        }
        Ok(self
            .read_file(dir, LEASE_FILE)?
            .and_then(|b| serde_json::from_slice::<Lease>(&b).ok())
            .filter(|l| l.lock == info.id && l.ttl_secs.is_finite()))
    }

    /// Is the holder of `info` still there?
    pub fn liveness(&self, id: &MilestoneId, info: &LockInfo) -> Result<Liveness> {
        let ours = process::boot_id();
        let same_boot = info.boot_id.is_some() && info.boot_id == ours;
        if let Some(ttl) = info.ttl_secs {
            if ttl_age(info).is_some_and(|a| a > ttl) {
                return Ok(Liveness::Stale(format!("its TTL of {ttl}s has passed")));
            }
        }
        if info.pid == 0 {
            if !info.operation.is_empty() && info.who.is_empty() {
                return Ok(Liveness::Stale(info.operation.clone()));
            }
            // A directory without pid: the seed between mkdir and echo, or
            // a crashed acquisition once it is old enough.
            // After a power loss its files may be gone (they are not synced:
            // a lock means nothing across a reboot), so one from before this
            // boot is stale at once.
            let dir = self.layout.lock_dir(id);
            let modified = match self.io.metadata(&dir) {
                Ok(m) => m.modified,
                Err(_) => return Ok(Liveness::Held),
            };
            let booted =
                process::boot_time_secs().map(|s| std::time::UNIX_EPOCH + Duration::from_secs(s));
            if booted.is_some_and(|b| modified < b) {
                return Ok(Liveness::Stale(
                    "it was taken before the last reboot".into(),
                ));
            }
            let age = modified.elapsed().unwrap_or_default();
            return Ok(if age > INCOMPLETE_GRACE {
                Liveness::Stale("the lock directory has no pid file".into())
            } else {
                Liveness::Held
            });
        }
        let other_host = info.host.as_ref().filter(|h| **h != self.actor.host);
        if same_boot {
            // This kernel. Its pids mean something here only if the lock
            // was taken in this pid namespace.
            let this_ns = info.pid_ns.is_some() && info.pid_ns == process::pid_namespace();
            let unknown_ns = info.pid_ns.is_none() && other_host.is_some();
            if (info.pid_ns.is_some() && !this_ns) || unknown_ns {
                let place = match other_host {
                    Some(h) => format!("on host {h:?}, "),
                    None => String::new(),
                };
                return Ok(Liveness::Unverified(format!(
                    "it was taken {place}on this machine's boot but in another pid \
                     namespace (another container, or one restarted under a new \
                     hostname), so pid {} cannot be checked from here",
                    info.pid
                )));
            }
        } else if other_host.is_some() {
            return Ok(Liveness::Held); // cannot check another machine
        } else if info.boot_id.is_some() && ours.is_some() {
            return Ok(Liveness::Stale(
                "it was taken before the last reboot".into(),
            ));
        }
        let gone = if process::alive(info.pid) == Alive::No {
            Some(format!("its holder, pid {}, is gone", info.pid))
        } else if info
            .pid_start
            .is_some_and(|start| process::start_ticks(info.pid).is_some_and(|now| now != start))
        {
            Some(format!("pid {} now belongs to another process", info.pid))
        } else {
            None
        };
        let Some(reason) = gone else {
            return Ok(Liveness::Held);
        };
        if let Some(g) = info.pgid {
            if process::group_alive(g, info.pgid_start) != Alive::No {
                return Ok(Liveness::Held); // its command or jobs still run
            }
        }
        if !info.seed && self.pinned(id)? {
            return Ok(Liveness::Held); // processes it started hold the pin
        }
        Ok(Liveness::Stale(match info.pgid {
            Some(g) => format!("{reason}, and so is every process of its group {g}"),
            None => reason,
        }))
    }

    /// Whether a descriptor pins the lock of `id` (see [`Self::pin`]): a
    /// shared `flock` of its `info.json`, tried without waiting, fails.
    /// The probe's own `flock` is shared, so probes never make each other
    /// see a pin.
    fn pinned(&self, id: &MilestoneId) -> Result<bool> {
        let path = self.layout.lock_dir(id).join(PIN_FILE);
        let file = match self.io.open_read(&path) {
            Ok(f) => f,
            // Gone (released), or not a file: nothing can pin it.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || crate::io::is_not_a_file(&e)
                    || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(Error::io("open lock", &path, e)),
        };
        match file.try_lock(LockMode::Shared) {
            Ok(true) => {
                let _ = file.unlock();
                Ok(false)
            }
            Ok(false) => Ok(true),
            // No flock here: no pin could have been taken either.
            Err(e)
                if is_unsupported(&e)
                    || e.raw_os_error() == Some(rustix::io::Errno::NOLCK.raw_os_error()) =>
            {
                Ok(false)
            }
            Err(e) => Err(Error::io("lock", &path, e)),
        }
    }

    /// Pin the lock of `id`, which the caller holds, with this process's
    /// descriptor `fd`, open on the lock's `info.json`: an exclusive
    /// `flock` on its open file description, which outlives this process
    /// while the caller (a shell) or any process it starts keeps the
    /// descriptor. [`Self::liveness`] then counts the lock as held after
    /// the holder's pid is gone, while the pin lasts; the processes holding
    /// it use the lock reentrantly.
    pub fn pin(&self, id: &MilestoneId, fd: i32) -> Result<Pinned> {
        let path = self.layout.lock_dir(id).join(PIN_FILE);
        let not_owned = |holder: Option<LockInfo>| Error::LockNotOwned {
            milestone: id.to_string(),
            holder: holder.map(Box::new),
        };
        let Some(cur) = self.read(id)? else {
            return Err(not_owned(None));
        };
        if !self.owned(id, &cur, &Caller::of(self.actor.pid)) {
            return Err(not_owned(Some(cur)));
        }
        let wrong =
            |why: String| Error::invalid("lock descriptor", format!("descriptor {fd} {why}"));
        let open =
            crate::inherited::identity(fd).map_err(|e| wrong(format!("is not open: {e}")))?;
        if self.pin_file(id)? != Some(open) {
            return Err(wrong(format!("is not open on {}", path.display())));
        }
        // An exclusive `flock` that cannot be had now is held by another
        // pin (a shared probe of it fails too: done), or in its place by a
        // liveness probe, which lets go within microseconds: try again.
        let deadline = Instant::now() + PIN_PATIENCE;
        let pinned = loop {
            if crate::inherited::pin(fd).map_err(|e| Error::io("lock", &path, e))? {
                break true;
            }
            if self.pinned(id)? {
                break false;
            }
            if Instant::now() >= deadline {
                return Err(Error::io(
                    "lock",
                    &path,
                    io::Error::new(io::ErrorKind::WouldBlock, "the pin file stays locked"),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        // Released and taken again meanwhile: the pin is on a lock that is
        // gone, and protects nothing.
        if self.read(id)?.as_ref() != Some(&cur) || self.pin_file(id)? != Some(open) {
            return Err(not_owned(self.read(id)?));
        }
        Ok(if pinned { Pinned::Now } else { Pinned::Already })
    }

    /// The identity of the pin file of the lock of `id`, if it is a file.
    fn pin_file(&self, id: &MilestoneId) -> Result<Option<FileId>> {
        let path = self.layout.lock_dir(id).join(PIN_FILE);
        match self.io.metadata(&path) {
            Ok(m) if m.kind == FileKind::File => Ok(Some(m.id)),
            Ok(_) => Ok(None),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::io("inspect lock", &path, e)),
        }
    }

    /// Whether `info`, the lock of `id`, is the caller's: see [`owned_by`];
    /// or the caller holds, by inheritance, a descriptor pinning it.
    fn owned(&self, id: &MilestoneId, info: &LockInfo, caller: &Caller) -> bool {
        if owned_by(info, caller) {
            return true;
        }
        if info.pid == 0 || info.seed {
            return false;
        }
        let pins = caller.pins.get_or_init(crate::inherited::pinned);
        !pins.is_empty()
            && self
                .pin_file(id)
                .ok()
                .flatten()
                .is_some_and(|f| pins.contains(&f))
    }

    /// Break the stale lock `seen`, unless it changed meanwhile. Breakers
    /// serialise on a `flock` of the locks directory and re-read the lock
    /// under it, so one breaker never removes a lock another just took.
    ///
    /// A reentrant write in flight under the lock (see [`Self::enter`])
    /// finishes first: breakers take its `flock` before anything else.
    pub fn break_stale(&self, id: &MilestoneId, seen: &LockInfo) -> Result<bool> {
        let _inner = self.exclude_writers(id)?;
        let guard = self.serialise()?;
        let result = match self.read(id)? {
            Some(cur) if &cur == seen => {
                self.remove(id)?;
                Ok(true)
            }
            _ => Ok(false),
        };
        let _ = guard.unlock();
        result
    }

    /// Remove the lock directory in one step: rename it aside, then delete.
    fn remove(&self, id: &MilestoneId) -> Result<()> {
        let dir = self.layout.lock_dir(id);
        let trash: PathBuf = self.layout.locks().join(format!(".trash-{}", nonce()));
        match self.io.rename(&dir, &trash) {
            Ok(()) => {
                // Released. The trash is garbage from now on: remove the
                // names a lock holds, and anything else the slow way; if
                // that fails too, doctor sweeps it.
                for name in LOCK_FILES.into_iter().chain([LEASE_FILE]) {
                    let _ = self.io.remove_file(&trash.join(name));
                }
                if self.io.remove_dir(&trash).is_err() {
                    discard(self.io, &trash);
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("release lock", &dir, e)),
        }
    }
}

/// The token after the newest in `record`.
fn next_token(record: &crate::fs::revision::Record) -> u64 {
    record.high.saturating_add(1)
}

/// Seconds since the lock `info` was taken, measured as its TTL is: on
/// the boot clock when it was taken on this boot, else the wall clock.
fn ttl_age(info: &LockInfo) -> Option<f64> {
    let same_boot = info.boot_id.is_some() && info.boot_id == process::boot_id();
    match (same_boot, info.boot_clock, process::boot_clock()) {
        (true, Some(then), Some(now)) => Some(now - then),
        _ => time::parse_timestamp(&info.created)
            .map(|t| time::now().duration_since(t).as_secs_f64()),
    }
}

/// When the TTL of `info` ran out (RFC 3339), if it has.
fn expired_at(info: &LockInfo) -> Option<String> {
    let ttl = info.ttl_secs?;
    let over = ttl_age(info)? - ttl;
    if over <= 0.0 {
        return None;
    }
    let ago = jiff::SignedDuration::try_from_secs_f64(over).unwrap_or(jiff::SignedDuration::ZERO);
    let at = time::now().checked_sub(ago).unwrap_or_else(|_| time::now());
    Some(time::format_micros(at))
}

/// Who is asking about a lock: a process's ancestry (nearest first, each
/// with its start time), its process group, and (looked up when needed)
/// the files its inherited descriptors pin, when it is this process.
struct Caller {
    ancestry: Vec<(u32, Option<u64>)>,
    group: Option<u32>,
    pins: std::sync::OnceLock<Vec<FileId>>,
}

impl Caller {
    fn of(pid: u32) -> Self {
        let pins = std::sync::OnceLock::new();
        if pid != std::process::id() {
            // Another process's descriptors are not ours to judge by.
            let _ = pins.set(Vec::new());
        }
        Caller {
            ancestry: process::ancestry(pid),
            group: process::group_of(pid),
            pins,
        }
    }
}

/// Whether `info` is owned by the caller: by it or an ancestor, or by its
/// process group when the lock records that group.
fn owned_by(info: &LockInfo, caller: &Caller) -> bool {
    if info.pid == 0 {
        return false;
    }
    if let (Some(host), Ok(name)) = (&info.host, rustix::system::uname().nodename().to_str()) {
        if host != name {
            return false;
        }
    }
    if info.pid_ns.is_some() && info.pid_ns != process::pid_namespace() {
        return false;
    }
    let by_ancestor = caller.ancestry.iter().any(|(pid, start)| {
        *pid == info.pid
            && match (info.pid_start, start) {
                (Some(a), Some(b)) => a == *b,
                _ => true,
            }
    });
    by_ancestor
        || info.pgid.is_some_and(|g| {
            caller.group == Some(g) && process::group_alive(g, info.pgid_start) == Alive::Yes
        })
}

fn is_exists(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::AlreadyExists
        || e.raw_os_error() == Some(rustix::io::Errno::NOTEMPTY.raw_os_error())
}

fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(c) if c == rustix::io::Errno::INVAL.raw_os_error()
            || c == rustix::io::Errno::NOSYS.raw_os_error()
            || c == rustix::io::Errno::OPNOTSUPP.raw_os_error()
    )
}
