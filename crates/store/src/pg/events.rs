//! The event log in PostgreSQL: gapless appends and streamed queries.

use std::time::SystemTime;

use postgres::types::ToSql;
use postgres::GenericClient;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::id::MilestoneId;
use crate::model::EventRecord;
use crate::model::{Actor, Event, EventQuery, NewEvent, ReadReport};

use super::fail::Effect;
use super::{Fail, PgStore};

/// Rows fetched from the server per round trip of a query: a query holds
/// at most this many events in memory, whatever it matches.
pub const QUERY_BATCH: i32 = 256;

/// The session recorded when an event names none (the filesystem
/// backend's `current_session` without a current session).
pub const NO_SESSION: &str = "no-session";

/// One statement: the upsert of the milestone row increments `next_seq`
/// (queueing concurrent appenders on the row's lock) and returns the seq
/// taken and the server's clock read once under that lock, kept as the
/// row's `last_ts`; a time earlier than the one before (the clock stepped
/// back) sets `ts_disordered` (schema version 3). The insert builds
/// the stored line around them. `$8` is the line from `milestone_id` to
/// `user`, `$9` from `host` to the closing brace, encoded by the client.
const APPEND: &str = r#"
WITH s AS (
    INSERT INTO mstate_milestones AS m (id, next_seq, last_ts) VALUES ($1, 2, clock_timestamp())
    ON CONFLICT (id) DO UPDATE SET next_seq = m.next_seq + 1,
        (last_ts, ts_disordered) = (
            SELECT now.c, m.ts_disordered OR coalesce(now.c < m.last_ts, false)
            FROM (SELECT clock_timestamp() AS c) now
        )
    RETURNING m.next_seq - 1 AS seq, m.last_ts AS ts
), t AS (
    SELECT seq, ts, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS stamp
    FROM s
)
INSERT INTO mstate_events
    (milestone_id, seq, ts, session_id, event_type, data, pid, "user", host, line)
SELECT $1, t.seq, t.ts, $2, $3, $4::text::jsonb, $5, $6, $7,
       '{"timestamp":"' || t.stamp || '"' || $8::text || ',"seq":' || t.seq || $9::text
FROM t
RETURNING seq, substr(line, 15, 27)
"#;

/// Append an event to `id`'s log through `client` (a transaction, or a
/// connection for an append on its own). The seq is the milestone's next.
pub(super) fn append(
    client: &mut impl GenericClient,
    actor: &Actor,
    id: &MilestoneId,
    session: &str,
    event_type: &str,
    data: &Value,
) -> Result<Event, Fail> {
    let bad = |e: serde_json::Error| Error::invalid("event data", e.to_string());
    let data_text = serde_json::to_string(data).map_err(bad)?;
    super::state::check_no_nul(&data_text, "event data")?;
    let mut middle = String::with_capacity(128 + data_text.len());
    for (key, value) in [
        ("milestone_id", id.as_str()),
        ("session_id", session),
        ("event_type", event_type),
    ] {
        middle.push_str(&format!(",\"{key}\":"));
        middle.push_str(&serde_json::to_string(value).map_err(bad)?);
    }
    middle.push_str(",\"data\":");
    middle.push_str(&data_text);
    middle.push_str(&format!(",\"pid\":{}", actor.pid));
    middle.push_str(",\"user\":");
    middle.push_str(&serde_json::to_string(actor.user()).map_err(bad)?);
    let end = format!(
        ",\"host\":{}}}",
        serde_json::to_string(&actor.host).map_err(bad)?
    );
    let pid = i64::from(actor.pid);
    let row = client.query_one(
        APPEND,
        &[
            &id.as_str(),
            &session,
            &event_type,
            &data_text,
            &pid,
            &actor.user(),
            &actor.host,
            &middle,
            &end,
        ],
    )?;
    let seq: i64 = row.try_get(0)?;
    let timestamp: String = row.try_get(1)?;
    Ok(Event {
        timestamp,
        milestone_id: id.to_string(),
        session_id: Some(session.to_string()),
        event_type: event_type.to_string(),
        data: data.clone(),
        pid: Some(pid),
        user: Some(actor.user().to_string()),
        seq: Some(u64::try_from(seq).unwrap_or(0)),
        host: Some(actor.host.clone()),
    })
}

/// Bounds on the seqs a query reads (both open when `None`).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SeqRange {
    /// Only events after this seq.
    pub after: Option<u64>,
    /// Only events up to this seq.
    pub upto: Option<u64>,
}

impl PgStore {
    /// Append an event; its seq is the milestone's next, without gaps.
    /// A milestone never named before gets its row (and seq 1).
    pub fn log(&self, id: &MilestoneId, event: &NewEvent) -> Result<Event> {
        let session = event.session_id.as_deref().unwrap_or(NO_SESSION);
        self.write("append an event to", id, std::time::Duration::ZERO, |tx| {
            append(tx, &self.actor, id, session, &event.event_type, &event.data)
        })
    }

    /// Run a query over the milestone's events, handing each match to
    /// `sink` until it returns false: the filesystem backend's semantics
    /// of `types`, `since`, `until`, `session`, `limit`, `tail` and
    /// `reverse`. Rows come from a portal in batches of [`QUERY_BATCH`],
    /// all from one snapshot. A lost connection is retried once on a new
    /// one if no event was handed over yet.
    pub fn events(
        &self,
        id: &MilestoneId,
        q: &EventQuery,
        sink: &mut dyn FnMut(&EventRecord) -> Result<bool>,
    ) -> Result<ReadReport> {
        self.query_events(id, q, SeqRange::default(), sink)
    }

    /// [`PgStore::events`] over the events whose seq is in `range`.
    pub(super) fn query_events(
        &self,
        id: &MilestoneId,
        q: &EventQuery,
        range: SeqRange,
        sink: &mut dyn FnMut(&EventRecord) -> Result<bool>,
    ) -> Result<ReadReport> {
        self.query_events_lost(id, q, range, sink)
            .map_err(|(e, _)| e)
    }

    /// [`PgStore::query_events`], also saying whether the failure was a
    /// lost connection (or one that could not be made): the events up to
    /// the last one handed over were all handed over, the rest may follow
    /// on a new connection.
    pub(super) fn query_events_lost(
        &self,
        id: &MilestoneId,
        q: &EventQuery,
        range: SeqRange,
        sink: &mut dyn FnMut(&EventRecord) -> Result<bool>,
    ) -> std::result::Result<ReadReport, (Error, bool)> {
        let want = match (q.tail, q.limit) {
            (Some(t), Some(l)) if q.reverse => Some(t.min(l)),
            (Some(t), _) => Some(t),
            (None, l) => l,
        };
        if q.limit == Some(0) || want == Some(0) {
            return Ok(ReadReport::default());
        }
        let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let since = q.since.map(SystemTime::from);
        let until = q.until.map(SystemTime::from);
        let id_str = id.as_str();
        let after = range.after.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let upto = range.upto.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let (tail, limit) = if q.reverse {
            (None, want.map(to_i64))
        } else {
            (q.tail.map(to_i64), q.limit.map(to_i64))
        };
        let handed = std::cell::Cell::new(false);
        let mut run = |c: &mut postgres::Client| -> Result<(), Fail> {
            let mut tx = c
                .build_transaction()
                .read_only(true)
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .start()?;
            // A time bound becomes seq bounds where it can (same snapshot).
            let (first, last) = match time_seqs(&mut tx, id_str, since.as_ref(), until.as_ref())? {
                TimeSeqs::Unbounded => (None, None),
                TimeSeqs::Between(first, last) => (first, last),
                TimeSeqs::Empty => return Ok(tx.commit()?),
            };
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id_str];
            let mut filter = String::from("milestone_id = $1");
            let types = (!q.types.is_empty()).then_some(&q.types);
            let conds: [(Option<&(dyn ToSql + Sync)>, &str); 8] = [
                (types.map(|v| v as _), "event_type = ANY($"),
                (since.as_ref().map(|v| v as _), "ts >= $"),
                (until.as_ref().map(|v| v as _), "ts <= $"),
                (q.session.as_ref().map(|v| v as _), "session_id = $"),
                (first.as_ref().map(|v| v as _), "seq >= $"),
                (last.as_ref().map(|v| v as _), "seq <= $"),
                (after.as_ref().map(|v| v as _), "seq > $"),
                (upto.as_ref().map(|v| v as _), "seq <= $"),
            ];
            for (value, cond) in conds {
                if let Some(v) = value {
                    params.push(v);
                    let close = if cond.ends_with("ANY($") { ")" } else { "" };
                    filter.push_str(&format!(" AND {cond}{}{close}", params.len()));
                }
            }
            let base = "SELECT seq, ts, line FROM mstate_events WHERE ";
            let sql = if q.reverse {
                params.push(&limit);
                format!("{base}{filter} ORDER BY seq DESC LIMIT ${}", params.len())
            } else if let Some(tail) = &tail {
                params.push(tail);
                params.push(&limit);
                format!(
                    "SELECT * FROM ({base}{filter} ORDER BY seq DESC LIMIT ${}) last ORDER BY seq LIMIT ${}",
                    params.len() - 1,
                    params.len()
                )
            } else {
                params.push(&limit);
                format!("{base}{filter} ORDER BY seq LIMIT ${}", params.len())
            };
            let stmt = tx.prepare(&sql)?;
            let portal = tx.bind(&stmt, &params)?;
            loop {
                let rows = tx.query_portal(&portal, QUERY_BATCH)?;
                for row in &rows {
                    let seq: i64 = row.try_get(0)?;
                    let ts: SystemTime = row.try_get(1)?;
                    let raw: &str = row.try_get(2)?;
                    let timestamp = jiff::Timestamp::try_from(ts).map_err(|e| {
                        Error::invalid("stored event time", format!("event {seq}: {e}"))
                    })?;
                    handed.set(true);
                    // The members readers show, read from the stored line
                    // (written by `log`, so one JSON object).
                    let fields = crate::fs::log::line::fields(raw.as_bytes())
                        .map(|(_, f)| f)
                        .unwrap_or_default();
                    let line = EventRecord::from_line(
                        raw,
                        timestamp,
                        u64::try_from(seq).unwrap_or(0),
                        fields,
                    );
                    if !sink(&line)? {
                        return Ok(());
                    }
                }
                if rows.len() < QUERY_BATCH as usize {
                    break;
                }
            }
            tx.commit()?;
            Ok(())
        };
        let op = "query the events of";
        match self.with_client_lost(op, Effect::Read, &mut run) {
            Ok(()) => {}
            Err((_, true)) if !handed.get() => self.with_client_lost(op, Effect::Read, run)?,
            Err(e) => return Err(e),
        }
        Ok(ReadReport::default())
    }
}

/// What a query's time bounds come to in seqs.
enum TimeSeqs {
    /// No time bound, or a milestone whose times do not follow seq: the
    /// times are filtered as they are.
    Unbounded,
    /// The matching events lie between these seqs (inclusive; `None`:
    /// that side is open).
    Between(Option<i64>, Option<i64>),
    /// No event is within the time bounds.
    Empty,
}

/// The seqs `since` and `until` bound on `id`'s log, where its event
/// times never go down along seq (`ts_disordered`, schema version 3):
/// then the events at or after `since` are a suffix of the log, found
/// by one probe of `mstate_events_ts_seq`, and those up to `until` a
/// prefix. A plan by the time alone is chosen from the statistics of the
/// whole table, which a milestone beside many later events of others
/// misleads into reading the milestone's whole log.
fn time_seqs(
    tx: &mut impl GenericClient,
    id: &str,
    since: Option<&SystemTime>,
    until: Option<&SystemTime>,
) -> Result<TimeSeqs, Fail> {
    if since.is_none() && until.is_none() {
        return Ok(TimeSeqs::Unbounded);
    }
    // One round trip: the judgement and both probes.
    let mut sql = String::from("SELECT ts_disordered");
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id];
    for (at, probe) in [
        (since, "ts >= $N ORDER BY ts, seq"),
        (until, "ts <= $N ORDER BY ts DESC, seq DESC"),
    ] {
        if let Some(at) = at {
            params.push(at);
            let probe = probe.replace("$N", &format!("${}", params.len()));
            sql.push_str(&format!(
                ", (SELECT seq FROM mstate_events WHERE milestone_id = $1 AND {probe} LIMIT 1)"
            ));
        }
    }
    sql.push_str(" FROM mstate_milestones WHERE id = $1");
    let Some(row) = tx.query_opt(&sql, &params)? else {
        return Ok(TimeSeqs::Empty);
    };
    if row.try_get::<_, bool>(0)? {
        return Ok(TimeSeqs::Unbounded);
    }
    // A bound asked for and no event within it: nothing matches.
    let mut column = 0;
    let mut seq = |asked: bool| -> Result<Option<Option<i64>>, Fail> {
        if !asked {
            return Ok(Some(None));
        }
        column += 1;
        Ok(row.try_get::<_, Option<i64>>(column)?.map(Some))
    };
    let (Some(first), Some(last)) = (seq(since.is_some())?, seq(until.is_some())?) else {
        return Ok(TimeSeqs::Empty);
    };
    Ok(TimeSeqs::Between(first, last))
}
