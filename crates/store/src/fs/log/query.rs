//! Queries: which lines match, in which order, and where reading starts.
//!
//! A query reads only the window its time bounds allow: `since` and
//! `until` bisect the log by byte offset (it is time-ordered, within
//! [`ORDER_SLACK`]), and `tail`/`reverse` read backwards from the end. In
//! the window each line is filtered exactly, on the raw bytes first (type,
//! session and time from the line's head), and only a line that would be
//! shown is parsed fully to check it is valid JSON.

use jiff::Timestamp;

use crate::error::Result;
use crate::model::EventQuery;

use super::line::{self, Head, Record};
use super::scan::{self, Part, Pos, CHUNK, SMALL_CHUNK};
use super::{LogLine, Warnings, ORDER_SLACK};

/// The filters of a query.
pub(super) struct Filter {
    types: Vec<String>,
    session: Option<String>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
}

/// A verdict from the head alone.
enum Fast {
    Reject,
    Accept(Timestamp),
    Unknown,
}

/// What to do with a line.
pub(super) enum Judged<'a> {
    Skip,
    /// Show `text`; `glued` bytes of damage before it were cut off.
    Emit {
        text: &'a str,
        ts: Timestamp,
        glued: usize,
    },
    Corrupt(&'static str),
}

impl Filter {
    pub fn new(q: &EventQuery) -> Self {
        Filter {
            types: q.types.clone(),
            session: q.session.clone(),
            since: q.since,
            until: q.until,
        }
    }

    fn type_ok(&self, t: Option<&[u8]>) -> bool {
        self.types.is_empty() || t.is_some_and(|t| self.types.iter().any(|x| x.as_bytes() == t))
    }

    fn session_ok(&self, s: Option<&[u8]>) -> bool {
        self.session
            .as_ref()
            .is_none_or(|want| s == Some(want.as_bytes()))
    }

    fn time_ok(&self, ts: Timestamp) -> bool {
        self.since.is_none_or(|s| ts >= s) && self.until.is_none_or(|u| ts <= u)
    }

    fn fast(&self, h: &Head<'_>) -> Fast {
        if !self.types.is_empty() {
            match h.known_type() {
                None => return Fast::Unknown,
                Some(t) if !self.type_ok(t) => return Fast::Reject,
                Some(_) => {}
            }
        }
        if self.session.is_some() {
            match h.known_session() {
                None => return Fast::Unknown,
                Some(s) if !self.session_ok(s) => return Fast::Reject,
                Some(_) => {}
            }
        }
        match h.timestamp.and_then(line::parse_ts) {
            Some(ts) if self.time_ok(ts) => Fast::Accept(ts),
            Some(_) => Fast::Reject,
            None => Fast::Unknown,
        }
    }

    /// Judge one record's payload.
    pub fn judge<'a>(&self, payload: &'a [u8]) -> Judged<'a> {
        self.judge_inner(payload, true)
    }

    fn judge_inner<'a>(&self, p: &'a [u8], salvage: bool) -> Judged<'a> {
        if let Some(h) = line::fast_head(p) {
            match self.fast(&h) {
                Fast::Reject => return Judged::Skip,
                Fast::Accept(ts) => {
                    if let Some(text) = line::object_text(p) {
                        return Judged::Emit { text, ts, glued: 0 };
                    }
                }
                Fast::Unknown => {}
            }
        }
        let Some(h) = line::full_head(p) else {
            // A crash can leave a torn line that a writer without our lock
            // (the seed) then appended to: recover the event after it.
            if let Some(at) = line::glued_start(p).filter(|_| salvage) {
                match self.judge_inner(&p[at..], false) {
                    Judged::Emit { text, ts, .. } => {
                        return Judged::Emit {
                            text,
                            ts,
                            glued: at,
                        }
                    }
                    Judged::Skip => return Judged::Skip,
                    Judged::Corrupt(_) => {}
                }
            }
            return Judged::Corrupt("not a JSON object");
        };
        if !self.type_ok(h.event_type.as_deref().map(str::as_bytes))
            || !self.session_ok(h.session_id.as_deref().map(str::as_bytes))
        {
            return Judged::Skip;
        }
        let Some(ts) = h
            .timestamp
            .as_deref()
            .and_then(|t| line::parse_ts(t.as_bytes()))
        else {
            return Judged::Corrupt("no readable timestamp");
        };
        if !self.time_ok(ts) {
            return Judged::Skip;
        }
        match std::str::from_utf8(p) {
            Ok(text) => Judged::Emit { text, ts, glued: 0 },
            Err(_) => Judged::Corrupt("not UTF-8"),
        }
    }
}

/// Judge a record of the file at `path`, noting damage in `warn`; the
/// text and time to show, if it is shown.
pub(super) fn accept<'a>(
    filter: &Filter,
    warn: &mut Warnings,
    path: &std::path::Path,
    off: u64,
    rec: Record<'a>,
) -> Option<(&'a str, Timestamp)> {
    match filter.judge(rec.payload) {
        Judged::Skip => None,
        Judged::Emit { text, ts, glued } => {
            if rec.nuls > 0 {
                warn.line(
                    path,
                    off,
                    &format!("ignored {} NUL bytes before a line", rec.nuls),
                );
            }
            if glued > 0 {
                warn.line(
                    path,
                    off,
                    &format!("recovered an event after {glued} bytes of damaged data"),
                );
            }
            Some((text, ts))
        }
        Judged::Corrupt(why) => {
            warn.line(path, off, &format!("skipped a corrupt line ({why})"));
            None
        }
    }
}

/// How a query ended.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Lines handed to the sink.
    pub emitted: usize,
    /// The sink asked to stop, or the limit was reached.
    pub stopped: bool,
}

/// Run `q` over a snapshot.
/// `ordered` is false for a log marked as out of time order: it is then
/// scanned whole rather than bisected by time.
pub(super) fn run(
    parts: &[Part],
    q: &EventQuery,
    ordered: bool,
    warn: &mut Warnings,
    sink: &mut dyn FnMut(&LogLine) -> Result<bool>,
) -> Result<Outcome> {
    for p in parts {
        warn.torn(p);
    }
    let filter = Filter::new(q);
    let want = match (q.tail, q.limit) {
        (Some(t), Some(l)) if q.reverse => Some(t.min(l)),
        (Some(t), _) => Some(t),
        (None, l) => l,
    };
    if q.limit == Some(0) {
        return Ok(Outcome {
            emitted: 0,
            stopped: true,
        });
    }
    if want == Some(0) {
        // `tail 0`: nothing from the past (a follow goes on from the end).
        return Ok(Outcome::default());
    }
    let (from, to) = if ordered {
        window(parts, q)?
    } else {
        (Pos::start(parts), Pos::end(parts))
    };
    if q.reverse {
        let mut out = Outcome::default();
        backward(parts, from, to, &filter, warn, &mut |text, ts, seq| {
            out.emitted += 1;
            let more = sink(&LogLine {
                raw: text,
                timestamp: ts,
                seq,
            })?;
            out.stopped = !more || want.is_some_and(|w| out.emitted >= w);
            Ok(!out.stopped)
        })?;
        return Ok(out);
    }
    if let Some(n) = q.tail {
        // The last `n` matches, then shown oldest first.
        let mut kept: Vec<(String, Timestamp, u64)> = Vec::new();
        backward(parts, from, to, &filter, warn, &mut |text, ts, seq| {
            kept.push((text.to_owned(), ts, seq));
            Ok(kept.len() < n)
        })?;
        let mut out = Outcome::default();
        for (text, ts, seq) in kept.iter().rev() {
            out.emitted += 1;
            let more = sink(&LogLine {
                raw: text,
                timestamp: *ts,
                seq: *seq,
            })?;
            if !more || q.limit.is_some_and(|l| out.emitted >= l) {
                out.stopped = true;
                break;
            }
        }
        return Ok(out);
    }
    let mut out = Outcome::default();
    forward(parts, from, to, &filter, warn, &mut |text, ts, seq| {
        out.emitted += 1;
        let more = sink(&LogLine {
            raw: text,
            timestamp: ts,
            seq,
        })?;
        out.stopped = !more || q.limit.is_some_and(|l| out.emitted >= l);
        Ok(!out.stopped)
    })?;
    Ok(out)
}

/// The part of the log the time bounds of `q` allow, found by bisection.
fn window(parts: &[Part], q: &EventQuery) -> Result<(Pos, Pos)> {
    let mut from = Pos::start(parts);
    let mut to = Pos::end(parts);
    if let Some(since) = q.since {
        from = scan::bisect(parts, from, to, &|ts| ts >= since)?.0;
        // Lines before that point can still be newer than `since` where
        // time went back (the seed writes whole seconds). Walk back while
        // they can: not past a line mstate wrote (it has a `seq`) older
        // than `since`, since mstate never writes a timestamp earlier than
        // the line before it, and never further than the slack.
        let edge = since.checked_sub(ORDER_SLACK).unwrap_or(since);
        let start = Pos::start(parts);
        scan::backward(parts, start, from, SMALL_CHUNK, &mut |i, off, raw| {
            let Some(rec) = line::record(raw) else {
                return Ok(true);
            };
            let Some(ts) = line::timestamp_of(rec.payload) else {
                return Ok(true);
            };
            if ts >= since {
                from = Pos { part: i, off };
                return Ok(true);
            }
            Ok(ts >= edge && line::explicit_seq(rec.payload).is_none())
        })?;
    }
    if let Some(until) = q.until {
        // Every line after one newer than `until + slack` is newer than
        // `until`.
        let edge = until.checked_add(ORDER_SLACK).unwrap_or(until);
        to = scan::bisect(parts, from, to, &|ts| ts > edge)?.1;
    }
    Ok((from, to))
}

type OnMatch<'s> = dyn FnMut(&str, Timestamp, u64) -> Result<bool> + 's;

/// Matching lines from `from` to `to`, oldest first, with their `seq`.
fn forward(
    parts: &[Part],
    from: Pos,
    to: Pos,
    filter: &Filter,
    warn: &mut Warnings,
    on_match: &mut OnMatch<'_>,
) -> Result<()> {
    let mut cur = scan::seq_before(parts, from.part, from.off)?;
    let mut part_now = from.part;
    scan::forward(parts, from, to, CHUNK, &mut |i, off, raw| {
        if i != part_now {
            // Entering a segment resets numbering to its base; the live
            // file continues from what came before.
            for p in parts.get(part_now + 1..=i).unwrap_or_default() {
                if let Some(base) = p.base {
                    cur = base;
                }
            }
            part_now = i;
        }
        let Some(rec) = line::record(raw) else {
            return Ok(true);
        };
        let seq = line::explicit_seq(rec.payload).unwrap_or(cur.saturating_add(1));
        cur = seq;
        match accept(filter, warn, &parts[i].path, off, rec) {
            Some((text, ts)) => on_match(text, ts, seq),
            None => Ok(true),
        }
    })?;
    Ok(())
}

/// Matching lines from `to` back to `from`, newest first, with their
/// `seq`. A line without `seq` takes the `seq` one below the line after it
/// when that one has none either; otherwise the log is walked back once.
fn backward(
    parts: &[Part],
    from: Pos,
    to: Pos,
    filter: &Filter,
    warn: &mut Warnings,
    on_match: &mut OnMatch<'_>,
) -> Result<()> {
    // The `seq` of the next line to come (the one before the last seen),
    // when the last seen line determines it.
    let mut next: Option<u64> = None;
    let mut part_now = to.part.min(parts.len().saturating_sub(1));
    // Small reads first, growing: a tail needs a few KiB, a long
    // backward scan gets to 1 MiB reads after a few steps.
    scan::backward(parts, from, to, SMALL_CHUNK, &mut |i, off, raw| {
        if i != part_now {
            if parts
                .get(i + 1..=part_now)
                .unwrap_or_default()
                .iter()
                .any(|p| p.base.is_some())
            {
                next = None;
            }
            part_now = i;
        }
        let Some(rec) = line::record(raw) else {
            return Ok(true);
        };
        let explicit = line::explicit_seq(rec.payload);
        let seq = match (explicit, next) {
            (Some(s), _) => s,
            (None, Some(n)) => n,
            (None, None) => scan::seq_before(parts, i, off)?.saturating_add(1),
        };
        next = match explicit {
            Some(_) => None,
            None => Some(seq.saturating_sub(1)),
        };
        match accept(filter, warn, &parts[i].path, off, rec) {
            Some((text, ts)) => on_match(text, ts, seq),
            None => Ok(true),
        }
    })?;
    Ok(())
}
