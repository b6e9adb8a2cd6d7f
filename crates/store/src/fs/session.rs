//! Sessions: `sessions/<id>.json` files in the seed's format, and the
//! seed's `.current_session` pointer.
//!
//! A session id has the seed's form `session-YYYYmmdd-HHMMSS-<pid>`; a
//! suffix `-2`, `-3`, ... is added only when that name is taken (the file is
//! created exclusively, so two starts never share an id). A session whose
//! owner process is gone without ending it is reported as `abandoned`.
//!
//! Ending a session happens under its milestone's lock, so concurrent ends
//! of one session log `session_ended` once. A session written by the seed
//! (no start time of its process) is abandoned only when its pid is gone:
//! its creation time is not compared with the process's start time, which
//! a step of the wall clock makes wrong.

use std::io as stdio;

use serde_json::json;

use crate::error::{Error, IoContext, ObjectKind, Result};
use crate::fs::atomic::{create_exclusive, read_opt, write_replace};
use crate::fs::FsStore;
use crate::id::{MilestoneId, SessionId};
use crate::io::{FileKind, LockMode};
use crate::model::{SessionFilter, SessionRecord, SessionStart, SessionView};
use crate::process;
use crate::time;

/// Stored status of a live session.
pub const ACTIVE: &str = "active";
/// Stored status of an ended session.
pub const COMPLETED: &str = "completed";

fn encode(record: &SessionRecord) -> Result<Vec<u8>> {
    let mut b =
        serde_json::to_vec_pretty(record).map_err(|e| Error::io("encode", "session", e.into()))?;
    b.push(b'\n');
    Ok(b)
}

impl FsStore {
    /// Start a session of `id`.
    pub(crate) fn start_session(
        &self,
        id: &MilestoneId,
        start: &SessionStart,
    ) -> Result<SessionRecord> {
        self.ensure_layout()?;
        let now = time::now();
        let base = format!("session-{}-{}", time::seed_file_stamp(now), start.owner_pid);
        let own = start.owner_pid == self.opts.actor.pid;
        let mut record = SessionRecord {
            session_id: String::new(),
            milestone_id: id.to_string(),
            created_at: time::format_micros(now),
            pid: i64::from(start.owner_pid),
            user: self.opts.actor.user().to_string(),
            working_directory: start.working_directory.clone(),
            git_branch: start.git_branch.clone(),
            status: ACTIVE.to_string(),
            ended_at: None,
            host: Some(self.opts.actor.host.clone()),
            pid_start: process::start_ticks(if own {
                self.opts.actor.pid
            } else {
                start.owner_pid
            }),
            boot_id: process::boot_id(),
        };
        let mut created = None;
        for n in 1..1000u32 {
            let name = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let sid = SessionId::new(name)?;
            record.session_id = sid.to_string();
            let path = self.layout.session_file(&sid);
            match create_exclusive(&*self.io, &path, &encode(&record)?) {
                Ok(()) => {
                    created = Some(sid);
                    break;
                }
                Err(e) if e.kind() == stdio::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("create", &path, e)),
            }
        }
        let Some(sid) = created else {
            return Err(Error::invalid(
                "session id",
                format!("no free id starting with {base}"),
            ));
        };
        let dir = self.layout.sessions();
        self.io.sync_dir(&dir).ctx("sync directory", &dir)?;
        if start.make_current {
            let path = self.layout.current_session();
            write_replace(&*self.io, &path, format!("{sid}\n").as_bytes())?;
        }
        self.append_as(
            id,
            sid.as_str(),
            "session_created",
            json!({"session_id": sid.as_str()}),
        )?;
        Ok(record)
    }

    /// Read a session file.
    pub(crate) fn read_session(&self, sid: &SessionId) -> Result<SessionRecord> {
        let path = self.layout.session_file(sid);
        let Some(bytes) = read_opt(&*self.io, &path)? else {
            return Err(Error::NotFound {
                kind: ObjectKind::Session,
                name: sid.to_string(),
                hint: Some(crate::error::Hint::ListSessions),
            });
        };
        serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            what: format!("session '{sid}'"),
            path,
            detail: e.to_string(),
            hint: None,
        })
    }

    /// End a session (the current one when `sid` is `None`).
    pub(crate) fn end_session(&self, sid: Option<&SessionId>) -> Result<SessionRecord> {
        let sid = match sid {
            Some(s) => s.clone(),
            None => {
                let cur = crate::store::SessionStore::current_session(self)?;
                if cur == super::NO_SESSION {
                    return Err(Error::NotFound {
                        kind: ObjectKind::Session,
                        name: cur,
                        hint: Some(crate::error::Hint::NameSession),
                    });
                }
                SessionId::new(cur)?
            }
        };
        let id = MilestoneId::new(self.read_session(&sid)?.milestone_id)?;
        // Ending is a read-modify-write of the session file: under the
        // milestone's lock, so two ends at once log `session_ended` once.
        let record = self.locked(&id, "session end", self.opts.lock_timeout, || {
            // Loggers of this session check it under a shared `flock` of
            // the sessions directory ([`FsStore::in_session`]): with it held
            // exclusively from the check to `session_ended`, no event of
            // the session is recorded after that line.
            let dir = self.layout.sessions();
            let sessions = self.io.open_read(&dir).ctx("open", &dir)?;
            sessions.lock(LockMode::Exclusive).ctx("lock", &dir)?;
            let mut record = self.read_session(&sid)?;
            if record.status != COMPLETED {
                record.status = COMPLETED.to_string();
                record.ended_at = Some(time::format_micros(time::now()));
                let path = self.layout.session_file(&sid);
                write_replace(&*self.io, &path, &encode(&record)?)?;
                self.append_as(
                    &id,
                    sid.as_str(),
                    "session_ended",
                    json!({"session_id": sid.as_str()}),
                )?;
            }
            Ok(record)
        })?;
        self.remove_current_if(&mut |taken| Ok(taken == sid.as_str()))?;
        Ok(record)
    }

    /// Remove `.current_session` if `remove` says so of the id it names,
    /// never a pointer written meanwhile. `session start` (and the seed)
    /// write the pointer without any lock, so reading it and then removing
    /// it could remove one a start wrote in between. Instead the pointer
    /// is renamed aside (atomically taking the one that is there), judged,
    /// and put back unless it is to go or a newer one was written while it
    /// was aside (the newer one wins). Put back too when judging it fails.
    /// The pointer is judged first where it is, so one that stays is never
    /// moved (a logger reading it meanwhile would find none).
    pub(crate) fn remove_current_if(
        &self,
        remove: &mut dyn FnMut(&str) -> Result<bool>,
    ) -> Result<()> {
        let io = &*self.io;
        let cur = self.layout.current_session();
        let named = |bytes: Option<Vec<u8>>| {
            bytes
                .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                .unwrap_or_default()
        };
        match read_opt(io, &cur)? {
            None => return Ok(()),
            here => {
                if !remove(&named(here))? {
                    return Ok(());
                }
            }
        }
        let aside = crate::fs::atomic::temp_path(&cur);
        match io.rename(&cur, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == stdio::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("rename", &cur, e)),
        }
        let verdict = read_opt(io, &aside).and_then(|bytes| remove(&named(bytes)));
        if !matches!(verdict, Ok(true)) {
            match io.rename_noreplace(&aside, &cur) {
                Ok(()) => {}
                Err(e) if e.kind() == stdio::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    let _ = io.remove_file(&aside);
                    return Err(Error::io("rename", &aside, e));
                }
            }
        }
        verdict?;
        match io.remove_file(&aside) {
            Ok(()) => {}
            Err(e) if e.kind() == stdio::ErrorKind::NotFound => {}
            Err(e) => {
                // Fail as if nothing was done: the pointer back in place
                // (unless a newer one was written meanwhile).
                if io.rename_noreplace(&aside, &cur).is_err() {
                    let _ = io.remove_file(&aside);
                }
                return Err(Error::io("remove", &aside, e));
            }
        }
        let root = self.layout.root();
        io.sync_dir(root).ctx("sync directory", root)
    }

    /// Run `append` for an event of `session` while that session cannot
    /// end, telling it which session to record: `session` itself while it
    /// is active (or unknown to the store, like `no-session` or a session
    /// file the seed never wrote), and once it has ended, `no-session` when
    /// the session was implied (the current one) or an error when the
    /// caller named it. So no event of a session is ever recorded after
    /// its `session_ended`.
    pub(crate) fn in_session<T>(
        &self,
        session: &str,
        named: bool,
        append: impl FnOnce(&str) -> Result<T>,
    ) -> Result<T> {
        let Ok(sid) = SessionId::new(session) else {
            return append(session);
        };
        if session == super::NO_SESSION {
            return append(session);
        }
        let dir = self.layout.sessions();
        let guard = match self.io.open_read(&dir) {
            Ok(g) => g,
            Err(e) if e.kind() == stdio::ErrorKind::NotFound => return append(session),
            Err(e) => return Err(Error::io("open", &dir, e)),
        };
        guard.lock(LockMode::Shared).ctx("lock", &dir)?;
        let ended = read_opt(&*self.io, &self.layout.session_file(&sid))?
            .and_then(|b| serde_json::from_slice::<SessionRecord>(&b).ok())
            .is_some_and(|r| r.status == COMPLETED);
        let result = match (ended, named) {
            (false, _) => append(session),
            (true, false) => append(super::NO_SESSION),
            (true, true) => Err(Error::invalid_with(
                "session",
                format!("session '{session}' has ended"),
                crate::error::Hint::SessionEnded,
            )),
        };
        let _ = guard.unlock();
        result
    }

    /// Every session matching `filter`, oldest first.
    pub(crate) fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionView>> {
        let dir = self.layout.sessions();
        let entries = match self.io.read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == stdio::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &dir, e)),
        };
        let mut out = Vec::new();
        for e in entries {
            if e.kind != FileKind::File {
                continue;
            }
            let Some(name) = e.name.strip_suffix(".json") else {
                continue;
            };
            let Ok(sid) = SessionId::new(name) else {
                continue;
            };
            let Ok(record) = self.read_session(&sid) else {
                continue;
            };
            if filter
                .milestone
                .as_deref()
                .is_some_and(|m| m != record.milestone_id)
            {
                continue;
            }
            let view = self.view(record);
            if filter.status.is_some_and(|s| s != view.effective_status) {
                continue;
            }
            out.push(view);
        }
        out.sort_by(|a, b| {
            (&a.record.created_at, &a.record.session_id)
                .cmp(&(&b.record.created_at, &b.record.session_id))
        });
        Ok(out)
    }

    /// A session with its effective status ([`SessionView::judge`]).
    pub(crate) fn view(&self, record: SessionRecord) -> SessionView {
        SessionView::judge(record, &self.opts.actor.host)
    }
}
