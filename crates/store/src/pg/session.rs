//! Sessions in PostgreSQL: rows of `mstate_sessions`, the current one in
//! `mstate_current_session`. Starting and ending a session are writes of
//! its milestone (under the milestone row's lock), so `session_ended` is
//! logged once and no event of the session is appended after it.

use std::time::SystemTime;

use postgres::{GenericClient, Row};
use serde_json::json;

use crate::error::{Error, ObjectKind, Result};
use crate::id::{MilestoneId, SessionId};
use crate::model::{NewEvent, SessionFilter, SessionRecord, SessionStart, SessionView};
use crate::time;

use super::events::{append, NO_SESSION};
use super::state::{lock_row, not_found};
use super::{format_time, Fail, PgStore};

const COMPLETED: &str = "completed";

const SELECT_SESSION: &str = "SELECT session_id, milestone_id, created_at, pid, \"user\", \
     working_directory, git_branch, status, ended_at, host, pid_start, boot_id \
     FROM mstate_sessions";

fn decode(r: &Row) -> Result<SessionRecord, Fail> {
    let created: SystemTime = r.try_get("created_at")?;
    let ended: Option<SystemTime> = r.try_get("ended_at")?;
    let pid_start: Option<i64> = r.try_get("pid_start")?;
    Ok(SessionRecord {
        session_id: r.try_get("session_id")?,
        milestone_id: r.try_get("milestone_id")?,
        created_at: format_time(created),
        pid: r.try_get("pid")?,
        user: r.try_get("user")?,
        working_directory: r.try_get("working_directory")?,
        git_branch: r.try_get("git_branch")?,
        status: r.try_get("status")?,
        ended_at: ended.map(format_time),
        host: r.try_get("host")?,
        pid_start: pid_start.and_then(|p| u64::try_from(p).ok()),
        boot_id: r.try_get("boot_id")?,
    })
}

fn no_session(sid: &str) -> Error {
    Error::NotFound {
        kind: ObjectKind::Session,
        name: sid.to_string(),
        hint: Some(crate::error::Hint::ListSessions),
    }
}

/// The session an event is appended in: `session` unless it has ended,
/// when a session the caller named is refused and the store's current
/// one (left behind by an ended session) becomes no session.
pub(super) fn effective_session(
    client: &mut impl GenericClient,
    session: &str,
    named: bool,
) -> Result<String, Fail> {
    if session == NO_SESSION {
        return Ok(session.to_string());
    }
    let status: Option<String> = client
        .query_opt(
            "SELECT status FROM mstate_sessions WHERE session_id = $1",
            &[&session],
        )?
        .map(|r| r.try_get(0))
        .transpose()?;
    match (status.as_deref() == Some(COMPLETED), named) {
        (false, _) => Ok(session.to_string()),
        (true, false) => Ok(NO_SESSION.to_string()),
        (true, true) => Err(Fail::Store(Error::invalid_with(
            "session",
            format!("session '{session}' has ended"),
            crate::error::Hint::SessionEnded,
        ))),
    }
}

impl PgStore {
    /// The current session: the store option's, else the store's, else
    /// [`NO_SESSION`].
    pub(super) fn current_session_id(&self) -> Result<String> {
        if let Some(s) = &self.opts.session {
            return Ok(s.clone());
        }
        if !self.has_schema()? {
            return Ok(NO_SESSION.to_string());
        }
        let current = self.read("read the current session of", |c| {
            Ok(
                c.query_opt("SELECT session_id FROM mstate_current_session", &[])?
                    .map(|r| r.try_get::<_, String>(0))
                    .transpose()?,
            )
        })?;
        Ok(current.unwrap_or_else(|| NO_SESSION.to_string()))
    }

    /// Append `event` to `id`'s log in its session (see
    /// [`effective_session`]); with `create`, a milestone the store
    /// knows nothing of gets its log, otherwise it is not found.
    pub(super) fn append_event(
        &self,
        id: &MilestoneId,
        event: &NewEvent,
        create: bool,
    ) -> Result<crate::model::Event> {
        let named = event.session_id.is_some();
        let session = match &event.session_id {
            Some(s) => s.clone(),
            None => self.current_session_id()?,
        };
        if !create {
            // Before the transaction: the error names the known ids,
            // which takes queries of its own.
            crate::StoreBase::require_known(self, id)?;
        }
        self.write("append an event to", id, self.opts.lock_timeout, |tx| {
            lock_row(tx, id, create)?.ok_or_else(|| not_found(id))?;
            let session = effective_session(tx, &session, named)?;
            append(
                tx,
                &self.actor,
                id,
                &session,
                &event.event_type,
                &event.data,
            )
        })
    }

    pub(super) fn start_session(
        &self,
        id: &MilestoneId,
        start: &SessionStart,
    ) -> Result<SessionRecord> {
        let base = format!(
            "session-{}-{}",
            time::seed_file_stamp(time::now()),
            start.owner_pid
        );
        let own = start.owner_pid == self.actor.pid;
        let pid_start =
            crate::process::start_ticks(if own { self.actor.pid } else { start.owner_pid })
                .and_then(|t| i64::try_from(t).ok());
        let boot_id = crate::process::boot_id();
        let pid = i64::from(start.owner_pid);
        self.write("start a session in", id, self.opts.lock_timeout, |tx| {
            lock_row(tx, id, start.create)?.ok_or_else(|| not_found(id))?;
            let mut made = None;
            for n in 1..1000u32 {
                let name = if n == 1 {
                    base.clone()
                } else {
                    format!("{base}-{n}")
                };
                let sid = SessionId::new(name)?;
                let row = tx.query_opt(
                    "INSERT INTO mstate_sessions (session_id, milestone_id, pid, \"user\", \
                     working_directory, git_branch, host, pid_start, boot_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (session_id) DO NOTHING \
                     RETURNING session_id, milestone_id, created_at, pid, \"user\", \
                     working_directory, git_branch, status, ended_at, host, pid_start, boot_id",
                    &[
                        &sid.as_str(),
                        &id.as_str(),
                        &pid,
                        &self.actor.user(),
                        &start.working_directory,
                        &start.git_branch,
                        &self.actor.host,
                        &pid_start,
                        &boot_id,
                    ],
                )?;
                if let Some(row) = row {
                    made = Some(decode(&row)?);
                    break;
                }
            }
            let Some(record) = made else {
                return Err(Fail::Store(Error::invalid(
                    "session id",
                    format!("no free id starting with {base}"),
                )));
            };
            if start.make_current {
                tx.execute(
                    "INSERT INTO mstate_current_session (one, session_id) VALUES (true, $1) \
                     ON CONFLICT (one) DO UPDATE SET session_id = EXCLUDED.session_id",
                    &[&record.session_id],
                )?;
            }
            append(
                tx,
                &self.actor,
                id,
                &record.session_id,
                "session_created",
                &json!({"session_id": record.session_id}),
            )?;
            Ok(record)
        })
    }

    pub(super) fn read_session(&self, sid: &str) -> Result<SessionRecord> {
        if !self.has_schema()? {
            return Err(no_session(sid));
        }
        let row = self.read("read a session of", |c| {
            c.query_opt(&format!("{SELECT_SESSION} WHERE session_id = $1"), &[&sid])?
                .map(|r| decode(&r))
                .transpose()
        })?;
        row.ok_or_else(|| no_session(sid))
    }

    pub(super) fn end_session(&self, sid: Option<&SessionId>) -> Result<SessionRecord> {
        let sid = match sid {
            Some(s) => s.to_string(),
            None => {
                let cur = self.current_session_id()?;
                if cur == NO_SESSION {
                    return Err(Error::NotFound {
                        kind: ObjectKind::Session,
                        name: cur,
                        hint: Some(crate::error::Hint::NameSession),
                    });
                }
                cur
            }
        };
        let record = self.finish_session(&sid, true, |_| {
            Some(("session_ended", json!({"session_id": sid})))
        })?;
        Ok(record)
    }

    /// `doctor --repair` of an abandoned session: mark it completed and
    /// log `session_abandoned` with `reason` (as the file backend does),
    /// if it is still active and still judged abandoned under the
    /// milestone's lock.
    pub(super) fn end_abandoned(&self, sid: &str, reason: &str) -> Result<()> {
        // As on files, it stays the current session if it is.
        self.finish_session(sid, false, |record| {
            self.view(record.clone()).abandoned_because.map(|_| {
                (
                    "session_abandoned",
                    json!({"session_id": sid, "reason": reason}),
                )
            })
        })?;
        Ok(())
    }

    /// In one write under the milestone's row lock: session `sid` as it
    /// is then, marked completed (now) with the event `ending` gives for
    /// it logged, unless it is completed already or `ending` gives none.
    /// With `not_current`, it stops being the store's current session
    /// either way. Returns the record as it ends up.
    fn finish_session(
        &self,
        sid: &str,
        not_current: bool,
        ending: impl Fn(&SessionRecord) -> Option<(&'static str, serde_json::Value)>,
    ) -> Result<SessionRecord> {
        let id = MilestoneId::new(self.read_session(sid)?.milestone_id)?;
        self.write("end a session in", &id, self.opts.lock_timeout, |tx| {
            lock_row(tx, &id, false)?.ok_or_else(|| not_found(&id))?;
            let row = tx
                .query_opt(
                    &format!("{SELECT_SESSION} WHERE session_id = $1 FOR UPDATE"),
                    &[&sid],
                )?
                .ok_or_else(|| no_session(sid))?;
            let mut record = decode(&row)?;
            if record.status != COMPLETED {
                if let Some((event_type, data)) = ending(&record) {
                    let ended: SystemTime = tx
                        .query_one(
                            "UPDATE mstate_sessions SET status = 'completed', ended_at = clock_timestamp() \
                             WHERE session_id = $1 RETURNING ended_at",
                            &[&sid],
                        )?
                        .try_get(0)?;
                    record.status = COMPLETED.to_string();
                    record.ended_at = Some(format_time(ended));
                    append(tx, &self.actor, &id, sid, event_type, &data)?;
                }
            }
            if not_current {
                tx.execute(
                    "DELETE FROM mstate_current_session WHERE session_id = $1",
                    &[&sid],
                )?;
            }
            Ok(record)
        })
    }

    /// A session with its effective status ([`SessionView::judge`]).
    pub(super) fn view(&self, record: SessionRecord) -> SessionView {
        SessionView::judge(record, &self.actor.host)
    }

    pub(super) fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionView>> {
        if !self.has_schema()? {
            return Ok(Vec::new());
        }
        let records = self.read("list the sessions of", |c| {
            let rows = c.query(
                &format!(
                    "{SELECT_SESSION} WHERE ($1::text IS NULL OR milestone_id = $1) \
                     ORDER BY created_at, session_id COLLATE \"C\""
                ),
                &[&filter.milestone],
            )?;
            rows.iter().map(decode).collect::<Result<Vec<_>, Fail>>()
        })?;
        Ok(records
            .into_iter()
            .map(|r| self.view(r))
            .filter(|v| filter.status.is_none_or(|s| s == v.effective_status))
            .collect())
    }
}
