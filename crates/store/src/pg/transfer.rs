//! Export and import of a whole PostgreSQL store ([`crate::transfer`]).
//!
//! Export reads milestone by milestone (one revision or checkpoint row at
//! a time, events through the query's portal), so memory stays bounded.
//! Import is one transaction: it commits whole or, failing anywhere,
//! leaves the schema as it was. Events are inserted with their seq and
//! their stored line, in batches; each milestone's `next_seq` is set past
//! its last event, so appends go on from there.

use std::time::SystemTime;

use postgres::Transaction;

use crate::error::{Error, ObjectKind, Result};
use crate::id::{CheckpointName, MilestoneId};
use crate::model::{Event, EventQuery, ReadReport, SessionFilter, SessionRecord, Status};
use crate::transfer::{format_time, parse_time, Record, StateRecord};

use super::events::NO_SESSION;
use super::{Fail, PgStore};

/// Events inserted per statement.
const EVENT_BATCH: usize = 256;

/// Bytes of event lines gathered before a batch is sent anyway.
const EVENT_BATCH_BYTES: usize = 4 << 20;

const INSERT_EVENTS: &str = r#"
INSERT INTO mstate_events
    (milestone_id, seq, ts, session_id, event_type, data, pid, "user", host, line)
SELECT $1, u.seq, u.ts, u.sid, u.et, u.data::jsonb, u.pid, u.usr, u.host, u.line
FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
            $7::bigint[], $8::text[], $9::text[], $10::text[])
     AS u(seq, ts, sid, et, data, pid, usr, host, line)
"#;

fn to_i64(n: u64, what: &str) -> Result<i64> {
    i64::try_from(n)
        .map_err(|_| Error::invalid("imported record", format!("{what}: {n} is too large")))
}

fn taken(kind: ObjectKind, name: impl Into<String>) -> Fail {
    Fail::Store(Error::AlreadyExists {
        kind,
        name: name.into(),
        hint: Some(crate::error::Hint::Advice(
            "import into a store that does not hold it".into(),
        )),
    })
}

fn out_of_order(what: String) -> Fail {
    Fail::Store(Error::invalid(
        "imported records",
        format!("{what}: the records are not in export order"),
    ))
}

/// Events of one milestone waiting to be inserted.
#[derive(Default)]
struct Batch {
    seq: Vec<i64>,
    ts: Vec<SystemTime>,
    session: Vec<Option<String>>,
    event_type: Vec<String>,
    data: Vec<String>,
    pid: Vec<Option<i64>>,
    user: Vec<Option<String>>,
    host: Vec<Option<String>>,
    line: Vec<String>,
    bytes: usize,
}

impl Batch {
    /// Add an event; returns its time.
    fn push(&mut self, id: &MilestoneId, seq: u64, line: String) -> Result<SystemTime> {
        let bad =
            |why: String| Error::invalid("imported event", format!("event {seq} of '{id}': {why}"));
        let event: Event = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        let ts = crate::time::parse_timestamp(&event.timestamp)
            .map(SystemTime::from)
            .ok_or_else(|| {
                bad(format!(
                    "its timestamp {:?} is not RFC 3339",
                    event.timestamp
                ))
            })?;
        let data = serde_json::to_string(&event.data).map_err(|e| bad(e.to_string()))?;
        self.seq.push(to_i64(seq, "event seq")?);
        self.ts.push(ts);
        self.session.push(event.session_id);
        self.event_type.push(event.event_type);
        self.bytes += line.len() + data.len();
        self.data.push(data);
        self.pid.push(event.pid);
        self.user.push(event.user);
        self.host.push(event.host);
        self.line.push(line);
        Ok(ts)
    }

    fn full(&self) -> bool {
        self.seq.len() >= EVENT_BATCH || self.bytes >= EVENT_BATCH_BYTES
    }

    fn flush(&mut self, tx: &mut Transaction<'_>, id: &MilestoneId) -> Result<(), Fail> {
        if self.seq.is_empty() {
            return Ok(());
        }
        tx.execute(
            INSERT_EVENTS,
            &[
                &id.as_str(),
                &self.seq,
                &self.ts,
                &self.session,
                &self.event_type,
                &self.data,
                &self.pid,
                &self.user,
                &self.host,
                &self.line,
            ],
        )?;
        *self = Batch::default();
        Ok(())
    }
}

/// The milestone being imported.
struct Open {
    id: MilestoneId,
    last_seq: u64,
    /// The latest event time so far, and whether an event came earlier
    /// than one before it (what `log` keeps on the milestone row).
    last_ts: Option<SystemTime>,
    disordered: bool,
    batch: Batch,
}

impl Open {
    /// Insert what is left, move `next_seq` past the last event and
    /// record whether the events' times follow seq (`put_milestone` set
    /// them "disordered" meanwhile, so that the batches' inserts did not
    /// update the row once each).
    fn finish(mut self, tx: &mut Transaction<'_>) -> Result<(), Fail> {
        self.batch.flush(tx, &self.id)?;
        let next = to_i64(self.last_seq.saturating_add(1), "event seq")?;
        tx.execute(
            "UPDATE mstate_milestones SET next_seq = $2, last_ts = $3, ts_disordered = $4 WHERE id = $1",
            &[&self.id.as_str(), &next, &self.last_ts, &self.disordered],
        )?;
        Ok(())
    }
}

fn current<'a>(open: &'a mut Option<Open>, milestone: &MilestoneId) -> Result<&'a mut Open, Fail> {
    match open {
        Some(o) if o.id == *milestone => Ok(o),
        _ => Err(out_of_order(format!("a record of '{milestone}'"))),
    }
}

fn put_milestone(
    tx: &mut Transaction<'_>,
    id: &MilestoneId,
    status: Status,
    state: Option<&StateRecord>,
) -> Result<(), Fail> {
    if let Some(s) = state {
        if s.revision == 0 {
            return Err(Fail::Store(Error::invalid_with(
                "imported state",
                format!("the state of '{id}' has no revision (written by the seed's functions)"),
                crate::error::Hint::SaveThroughStore {
                    milestone: id.to_string(),
                },
            )));
        }
        crate::json::check_strict(s.text.as_bytes(), "imported state")?;
    }
    let revision = to_i64(state.map_or(0, |s| s.revision), "revision")?;
    let text = state.map(|s| s.text.as_str());
    let at = match state {
        Some(s) => Some(parse_time(&s.written_at, &format!("state of '{id}'"))?),
        None => None,
    };
    // A row made by a lock alone holds nothing: it may be filled.
    let row = tx.query_opt(
        "INSERT INTO mstate_milestones AS m (id, status, revision, state, state_text, state_written_at, ts_disordered) \
         VALUES ($1, $2, $3, $4::text::jsonb, $4, $5, true) \
         ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, revision = EXCLUDED.revision, \
         state = EXCLUDED.state, state_text = EXCLUDED.state_text, \
         state_written_at = EXCLUDED.state_written_at, ts_disordered = true \
         WHERE m.revision = 0 AND m.next_seq = 1 \
         RETURNING id",
        &[&id.as_str(), &status.as_str(), &revision, &text, &at],
    )?;
    if row.is_none() {
        return Err(taken(ObjectKind::Milestone, id.as_str()));
    }
    Ok(())
}

fn put_session(tx: &mut Transaction<'_>, s: &SessionRecord) -> Result<(), Fail> {
    let what = format!("session '{}'", s.session_id);
    crate::id::SessionId::new(&s.session_id)?;
    let created = parse_time(&s.created_at, &what)?;
    let ended = match &s.ended_at {
        Some(t) => Some(parse_time(t, &what)?),
        None => None,
    };
    let pid_start = s.pid_start.map(|p| to_i64(p, "pid start")).transpose()?;
    tx.execute(
        "INSERT INTO mstate_milestones (id) VALUES ($1) ON CONFLICT (id) DO NOTHING",
        &[&s.milestone_id],
    )?;
    let row = tx.query_opt(
        "INSERT INTO mstate_sessions (session_id, milestone_id, created_at, pid, \"user\", \
         working_directory, git_branch, status, ended_at, host, pid_start, boot_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (session_id) DO NOTHING RETURNING session_id",
        &[
            &s.session_id,
            &s.milestone_id,
            &created,
            &s.pid,
            &s.user,
            &s.working_directory,
            &s.git_branch,
            &s.status,
            &ended,
            &s.host,
            &pid_start,
            &s.boot_id,
        ],
    )?;
    if row.is_none() {
        return Err(taken(ObjectKind::Session, s.session_id.as_str()));
    }
    Ok(())
}

/// Write every record in `tx`.
fn import_all(
    tx: &mut Transaction<'_>,
    records: &mut dyn Iterator<Item = Result<Record>>,
) -> Result<(), Fail> {
    let mut open: Option<Open> = None;
    for record in records {
        match record? {
            Record::Milestone { id, status, state } => {
                if let Some(o) = open.take() {
                    o.finish(tx)?;
                }
                put_milestone(tx, &id, status, state.as_ref())?;
                open = Some(Open {
                    id,
                    last_seq: 0,
                    last_ts: None,
                    disordered: false,
                    batch: Batch::default(),
                });
            }
            Record::Revision {
                milestone,
                revision,
                text,
                written_at,
                superseded_at,
            } => {
                current(&mut open, &milestone)?;
                crate::json::check_strict(text.as_bytes(), "imported revision")?;
                let what = format!("revision {revision} of '{milestone}'");
                let written = parse_time(&written_at, &what)?;
                let superseded = parse_time(&superseded_at, &what)?;
                let rev = to_i64(revision, "revision")?;
                let row = tx.query_opt(
                    "INSERT INTO mstate_revisions (milestone_id, revision, state, state_text, written_at, superseded_at) \
                     VALUES ($1, $2, $3::text::jsonb, $3, $4, $5) \
                     ON CONFLICT (milestone_id, revision) DO NOTHING RETURNING revision",
                    &[&milestone.as_str(), &rev, &text, &written, &superseded],
                )?;
                if row.is_none() {
                    return Err(taken(ObjectKind::Backup, what));
                }
            }
            Record::Checkpoint {
                milestone,
                name,
                revision,
                text,
                created_at,
            } => {
                current(&mut open, &milestone)?;
                crate::json::check_strict(text.as_bytes(), "imported checkpoint")?;
                let created = parse_time(&created_at, &format!("checkpoint '{name}'"))?;
                let rev = to_i64(revision, "revision")?;
                let row = tx.query_opt(
                    "INSERT INTO mstate_checkpoints (milestone_id, name, revision, state, state_text, created_at) \
                     VALUES ($1, $2, $3, $4::text::jsonb, $4, $5) \
                     ON CONFLICT (milestone_id, name) DO NOTHING RETURNING name",
                    &[&milestone.as_str(), &name.as_str(), &rev, &text, &created],
                )?;
                if row.is_none() {
                    return Err(taken(ObjectKind::Checkpoint, name.as_str()));
                }
            }
            Record::Event {
                milestone,
                seq,
                line,
            } => {
                let o = current(&mut open, &milestone)?;
                if seq == 0 || seq <= o.last_seq {
                    return Err(out_of_order(format!("event {seq} of '{milestone}'")));
                }
                if line.contains('\n') {
                    return Err(Fail::Store(Error::invalid(
                        "imported event",
                        format!("event {seq} of '{milestone}': its line holds a line break"),
                    )));
                }
                o.last_seq = seq;
                let ts = o.batch.push(&milestone, seq, line)?;
                o.disordered |= o.last_ts.is_some_and(|last| ts < last);
                o.last_ts = o.last_ts.max(Some(ts));
                if o.batch.full() {
                    o.batch.flush(tx, &milestone)?;
                }
            }
            Record::Session(s) => {
                if let Some(o) = open.take() {
                    o.finish(tx)?;
                }
                put_session(tx, &s)?;
            }
            Record::CurrentSession(sid) => {
                if let Some(o) = open.take() {
                    o.finish(tx)?;
                }
                crate::id::SessionId::new(&sid)?;
                tx.execute(
                    "INSERT INTO mstate_current_session (one, session_id) VALUES (true, $1) \
                     ON CONFLICT (one) DO UPDATE SET session_id = EXCLUDED.session_id",
                    &[&sid],
                )?;
            }
        }
    }
    if let Some(o) = open.take() {
        o.finish(tx)?;
    }
    Ok(())
}

impl PgStore {
    /// Every record of the store, in export order.
    pub(super) fn export_records(
        &self,
        sink: &mut dyn FnMut(Record) -> Result<bool>,
    ) -> Result<ReadReport> {
        let report = ReadReport::default();
        if !self.has_schema()? {
            return Ok(report);
        }
        for id in crate::StoreBase::milestone_ids(self)? {
            if !self.export_milestone(&id, sink)? {
                return Ok(report);
            }
        }
        for view in self.list_sessions(&SessionFilter::default())? {
            if !sink(Record::Session(view.record))? {
                return Ok(report);
            }
        }
        let current = self.read("read the current session of", |c| {
            Ok(
                c.query_opt("SELECT session_id FROM mstate_current_session", &[])?
                    .map(|r| r.try_get::<_, String>(0))
                    .transpose()?,
            )
        })?;
        if let Some(sid) = current.filter(|s| s != NO_SESSION) {
            sink(Record::CurrentSession(sid))?;
        }
        Ok(report)
    }

    /// One milestone's records; false when the sink said enough.
    fn export_milestone(
        &self,
        id: &MilestoneId,
        sink: &mut dyn FnMut(Record) -> Result<bool>,
    ) -> Result<bool> {
        let head = self.read("export a milestone of", |c| {
            let r = c.query_one(
                "SELECT status, revision, state_text, state_written_at FROM mstate_milestones WHERE id = $1",
                &[&id.as_str()],
            )?;
            let status: String = r.try_get(0)?;
            let revision: i64 = r.try_get(1)?;
            let text: Option<String> = r.try_get(2)?;
            let at: Option<SystemTime> = r.try_get(3)?;
            let revs: Vec<i64> = c
                .query(
                    "SELECT revision FROM mstate_revisions WHERE milestone_id = $1 ORDER BY revision",
                    &[&id.as_str()],
                )?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            let cps: Vec<String> = c
                .query(
                    "SELECT name FROM mstate_checkpoints WHERE milestone_id = $1 \
                     ORDER BY created_at, name COLLATE \"C\"",
                    &[&id.as_str()],
                )?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            Ok((status, revision, text, at, revs, cps))
        })?;
        let (status, revision, text, at, revs, cps) = head;
        let state = text.map(|text| StateRecord {
            revision: u64::try_from(revision).unwrap_or(0),
            text,
            written_at: at.map(format_time).unwrap_or_default(),
        });
        let status = if status == "completed" {
            Status::Completed
        } else {
            Status::Active
        };
        if !sink(Record::Milestone {
            id: id.clone(),
            status,
            state,
        })? {
            return Ok(false);
        }
        for rev in revs {
            let row = self.read("export a milestone of", |c| {
                c.query_opt(
                    "SELECT state_text, written_at, superseded_at FROM mstate_revisions \
                     WHERE milestone_id = $1 AND revision = $2",
                    &[&id.as_str(), &rev],
                )?
                .map(|r| -> Result<(String, SystemTime, SystemTime), Fail> {
                    Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
                })
                .transpose()
            })?;
            let Some((text, written, superseded)) = row else {
                continue;
            };
            if !sink(Record::Revision {
                milestone: id.clone(),
                revision: u64::try_from(rev).unwrap_or(0),
                text,
                written_at: format_time(written),
                superseded_at: format_time(superseded),
            })? {
                return Ok(false);
            }
        }
        for name in cps {
            let row = self.read("export a milestone of", |c| {
                c.query_opt(
                    "SELECT revision, state_text, created_at FROM mstate_checkpoints \
                     WHERE milestone_id = $1 AND name = $2",
                    &[&id.as_str(), &name],
                )?
                .map(|r| -> Result<(i64, String, SystemTime), Fail> {
                    Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
                })
                .transpose()
            })?;
            let Some((rev, text, created)) = row else {
                continue;
            };
            if !sink(Record::Checkpoint {
                milestone: id.clone(),
                name: CheckpointName::new(name.as_str())?,
                revision: u64::try_from(rev).unwrap_or(0),
                text,
                created_at: format_time(created),
            })? {
                return Ok(false);
            }
        }
        let mut more = true;
        self.events(id, &EventQuery::default(), &mut |l| {
            more = sink(Record::Event {
                milestone: id.clone(),
                seq: l.seq,
                line: l.line()?.into_owned(),
            })?;
            Ok(more)
        })?;
        Ok(more)
    }

    /// Write `records` in one transaction.
    pub(super) fn import_records(
        &self,
        records: &mut dyn Iterator<Item = Result<Record>>,
    ) -> Result<()> {
        self.ensure_schema()?;
        self.with_client("import into", |c| {
            let mut tx = c.transaction()?;
            import_all(&mut tx, records)?;
            tx.commit()?;
            Ok(())
        })
    }
}
