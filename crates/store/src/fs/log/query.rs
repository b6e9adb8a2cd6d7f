//! Queries: which lines match, in which order, and where reading starts.
//!
//! A query reads only the window its time bounds allow: `since` and
//! `until` bisect the log by byte offset (it is time-ordered, within
//! [`ORDER_SLACK`]), and `tail`/`reverse` read backwards from the end. In
//! the window each line is filtered exactly, on the raw bytes first (type,
//! session and time from the line's head), and only a line that would be
//! shown is parsed fully, once: that parse checks it is valid JSON and
//! reads the [`Fields`] its readers show.
//!
//! A type or session filter first looks for the value as it must appear
//! in the line (`"rare"`, with its quotes) with `memmem`: a line without
//! it, and without a backslash (an escape could spell it otherwise), cannot
//! match and is not read further. Such a line still takes its `seq`, but
//! damage in it is not reported (doctor reports it).

use jiff::Timestamp;
use memchr::memmem;

use crate::error::Result;
use crate::model::{EventQuery, Progress};

use super::line::{self, Fields, Head, Record};
use super::scan::{self, Part, Pos, CHUNK, SMALL_CHUNK};
use super::{LogLine, Warnings, ORDER_SLACK};

/// The filters of a query.
pub(super) struct Filter {
    types: Vec<String>,
    session: Option<String>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    /// `"T"` for each wanted type: a matching line holds one of them
    /// unless it holds an escape. Empty when there is no type filter or a
    /// type cannot be looked for so.
    type_needles: Vec<memmem::Finder<'static>>,
    /// `"S"` for the wanted session, likewise.
    session_needle: Option<memmem::Finder<'static>>,
}

/// `"value"` as a JSON string without escapes spells it, if it can: not
/// for text that JSON must escape.
fn needle(value: &str) -> Option<memmem::Finder<'static>> {
    if value.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        return None;
    }
    Some(memmem::Finder::new(format!("\"{value}\"").as_bytes()).into_owned())
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
        fields: Fields<'a>,
    },
    Corrupt(&'static str),
}

impl Filter {
    pub fn new(q: &EventQuery) -> Self {
        let type_needles: Option<Vec<_>> = q.types.iter().map(|t| needle(t)).collect();
        Filter {
            types: q.types.clone(),
            session: q.session.clone(),
            since: q.since,
            until: q.until,
            type_needles: type_needles.unwrap_or_default(),
            session_needle: q.session.as_deref().and_then(needle),
        }
    }

    /// False only for a line that cannot match the type and session
    /// filters: it holds neither the value looked for nor an escape.
    pub fn may_match(&self, p: &[u8]) -> bool {
        if self.type_needles.is_empty() && self.session_needle.is_none() {
            return true;
        }
        if memchr::memchr(b'\\', p).is_some() {
            return true;
        }
        (self.type_needles.is_empty() || self.type_needles.iter().any(|f| f.find(p).is_some()))
            && self
                .session_needle
                .as_ref()
                .is_none_or(|f| f.find(p).is_some())
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
        if !self.may_match(payload) {
            return Judged::Skip;
        }
        self.judge_inner(payload, true)
    }

    fn judge_inner<'a>(&self, p: &'a [u8], salvage: bool) -> Judged<'a> {
        if let Some(h) = line::fast_head(p) {
            match self.fast(&h) {
                Fast::Reject => return Judged::Skip,
                Fast::Accept(ts) => {
                    if let Some((text, fields)) = line::fields(p) {
                        return Judged::Emit {
                            text,
                            ts,
                            glued: 0,
                            fields,
                        };
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
                    Judged::Emit {
                        text, ts, fields, ..
                    } => {
                        return Judged::Emit {
                            text,
                            ts,
                            glued: at,
                            fields,
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
        match line::fields(p) {
            Some((text, fields)) => Judged::Emit {
                text,
                ts,
                glued: 0,
                fields,
            },
            None => Judged::Corrupt("not UTF-8"),
        }
    }
}

/// A line to show: its text, time and fields.
pub(super) type Accepted<'a> = (&'a str, Timestamp, Fields<'a>);

/// Judge a record of the file at `path`, noting damage in `warn`; the
/// text, time and fields to show, if it is shown.
pub(super) fn accept<'a>(
    filter: &Filter,
    warn: &mut Warnings,
    path: &std::path::Path,
    off: u64,
    rec: Record<'a>,
) -> Option<Accepted<'a>> {
    match filter.judge(rec.payload) {
        Judged::Skip => None,
        Judged::Emit {
            text,
            ts,
            glued,
            fields,
        } => {
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
            Some((text, ts, fields))
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
    let meter = Meter::new(parts, from, to, q.progress.as_ref());
    if q.reverse {
        let mut out = Outcome::default();
        backward(parts, from, to, &filter, warn, &meter, &mut |line| {
            out.emitted += 1;
            let more = sink(line)?;
            out.stopped = !more || want.is_some_and(|w| out.emitted >= w);
            Ok(!out.stopped)
        })?;
        return Ok(out);
    }
    if let Some(n) = q.tail {
        // The last `n` matches, then shown oldest first.
        let mut kept: Vec<(String, Timestamp, u64)> = Vec::new();
        backward(parts, from, to, &filter, warn, &meter, &mut |line| {
            kept.push((line.line()?.into_owned(), line.timestamp, line.seq));
            Ok(kept.len() < n)
        })?;
        let mut out = Outcome::default();
        for (text, ts, seq) in kept.iter().rev() {
            out.emitted += 1;
            // Read again from the copy: at most `n` lines.
            let fields = line::fields(text.as_bytes())
                .map(|f| f.1)
                .unwrap_or_default();
            let more = sink(&LogLine::from_line(text, *ts, *seq, fields))?;
            if !more || q.limit.is_some_and(|l| out.emitted >= l) {
                out.stopped = true;
                break;
            }
        }
        return Ok(out);
    }
    let mut out = Outcome::default();
    forward(parts, from, to, &filter, warn, &meter, &mut |line| {
        out.emitted += 1;
        let more = sink(line)?;
        out.stopped = !more || q.limit.is_some_and(|l| out.emitted >= l);
        Ok(!out.stopped)
    })?;
    meter.finish();
    Ok(out)
}

/// Reports a scan's position to a [`Progress`]: bytes between the
/// window's start (or end, reading backwards) and the line reached.
struct Meter<'p> {
    progress: Option<&'p Progress>,
    /// Virtual offset (see [`scan::virt`]) of each part's body start.
    starts: Vec<u64>,
    from: u64,
    to: u64,
}

impl<'p> Meter<'p> {
    fn new(parts: &[Part], from: Pos, to: Pos, progress: Option<&'p Progress>) -> Self {
        let starts = parts
            .iter()
            .scan(0u64, |v, p| {
                let at = *v;
                *v += p.end - p.body;
                Some(at)
            })
            .collect();
        let (from, to) = (scan::virt(parts, from), scan::virt(parts, to));
        if let Some(p) = progress {
            p.set_done(0);
            p.set_total(to.saturating_sub(from));
        }
        Meter {
            progress,
            starts,
            from,
            to,
        }
    }

    fn at(&self, parts: &[Part], i: usize, off: u64, backward: bool) {
        let Some(p) = self.progress else { return };
        let body = parts.get(i).map_or(0, |p| p.body);
        let v = self.starts.get(i).copied().unwrap_or(self.to) + off.saturating_sub(body);
        let done = if backward {
            self.to.saturating_sub(v)
        } else {
            v.saturating_sub(self.from)
        };
        p.set_done(done);
    }

    fn finish(&self) {
        if let Some(p) = self.progress {
            p.set_done(p.total());
        }
    }
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

type OnMatch<'s> = dyn FnMut(&LogLine) -> Result<bool> + 's;

/// Matching lines from `from` to `to`, oldest first, with their `seq`.
fn forward(
    parts: &[Part],
    from: Pos,
    to: Pos,
    filter: &Filter,
    warn: &mut Warnings,
    meter: &Meter<'_>,
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
        meter.at(parts, i, off, false);
        let Some(rec) = line::record(raw) else {
            return Ok(true);
        };
        let seq = line::explicit_seq(rec.payload).unwrap_or(cur.saturating_add(1));
        cur = seq;
        match accept(filter, warn, &parts[i].path, off, rec) {
            Some((raw, timestamp, fields)) => {
                on_match(&LogLine::from_line(raw, timestamp, seq, fields))
            }
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
    meter: &Meter<'_>,
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
        meter.at(parts, i, off, true);
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
            Some((raw, timestamp, fields)) => {
                on_match(&LogLine::from_line(raw, timestamp, seq, fields))
            }
            None => Ok(true),
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Whether `filter` shows `line`, without the prefilter.
    fn shown_unfiltered(filter: &Filter, line: &[u8]) -> bool {
        matches!(filter.judge_inner(line, true), Judged::Emit { .. })
    }

    fn filter(types: &[&str], session: Option<&str>) -> Filter {
        Filter::new(&EventQuery {
            types: types.iter().map(|t| t.to_string()).collect(),
            session: session.map(str::to_string),
            ..Default::default()
        })
    }

    #[test]
    fn the_prefilter_keeps_every_tricky_match() {
        let f = filter(&["rare"], None);
        let matching = [
            // mstate's shape.
            r#"{"timestamp":"2026-01-01T00:00:00Z","event_type":"rare","data":{}}"#,
            // Python's spacing (the seed's cleanup rewrote lines so).
            r#"{"timestamp": "2026-01-01T00:00:00Z", "event_type": "rare", "data": {}}"#,
            // An escape spells the type.
            r#"{"timestamp":"2026-01-01T00:00:00Z","event_type":"\u0072are","data":{}}"#,
            // An escape spells the key.
            r#"{"timestamp":"2026-01-01T00:00:00Z","event\u005ftype":"rare","data":{}}"#,
            // The seed's `event` key.
            r#"{"timestamp":"2026-01-01T00:00:00Z","event":"rare","milestone_id":"m"}"#,
            // The type after the data.
            r#"{"data":{"x":"y"},"timestamp":"2026-01-01T00:00:00Z","event_type":"rare"}"#,
        ];
        for l in matching {
            assert!(shown_unfiltered(&f, l.as_bytes()), "{l}");
            assert!(matches!(f.judge(l.as_bytes()), Judged::Emit { .. }), "{l}");
        }
        let not_matching = [
            // The type in the data only: read, then refused.
            r#"{"timestamp":"2026-01-01T00:00:00Z","event_type":"common","data":{"t":"rare"}}"#,
            // A longer type containing it.
            r#"{"timestamp":"2026-01-01T00:00:00Z","event_type":"rarely","data":{}}"#,
            r#"{"timestamp":"2026-01-01T00:00:00Z","event_type":"common","data":{"rare":1}}"#,
        ];
        for l in not_matching {
            assert!(matches!(f.judge(l.as_bytes()), Judged::Skip), "{l}");
        }
        assert!(!f.may_match(br#"{"event_type":"rarely","data":{}}"#));
        assert!(f.may_match(br#"{"event_type":"common","data":{"t":"rare"}}"#));
        // Sessions likewise; a session JSON must escape is not prefiltered.
        let s = filter(&[], Some("s-1"));
        assert!(!s.may_match(br#"{"session_id":"s-12"}"#));
        assert!(s.may_match(br#"{"session_id":"s\u002d1"}"#));
        let q = filter(&[], Some("a\"b"));
        assert!(q.may_match(br#"{"session_id":"x"}"#));
    }

    proptest! {
        /// The prefilter never changes a verdict: it only skips lines the
        /// full judgement would skip.
        #[test]
        fn the_prefilter_never_drops_a_match(
            ty in prop_oneof![Just("rare".to_string()), "[a-z\\\\u0-9]{1,6}"],
            key in prop_oneof![Just("event_type"), Just("event"), Just("event\\u005ftype"), Just("type")],
            session in prop_oneof![Just("s-1".to_string()), "[a-z\\\\0-9-]{1,5}"],
            data in prop_oneof![Just("{}".to_string()), Just(r#"{"t":"rare"}"#.to_string()), Just(r#"{"rare":"s-1"}"#.to_string())],
            spaced in any::<bool>(),
            want_types in prop_oneof![Just(vec![]), Just(vec!["rare"]), Just(vec!["rare", "x"])],
            want_session in proptest::option::of(Just("s-1")),
        ) {
            let sep = if spaced { ": " } else { ":" };
            let line = format!(
                r#"{{"timestamp"{sep}"2026-01-01T00:00:00Z","{key}"{sep}"{ty}","session_id"{sep}"{session}","data"{sep}{data}}}"#
            );
            let f = filter(&want_types, want_session);
            let full = shown_unfiltered(&f, line.as_bytes());
            let fast = matches!(f.judge(line.as_bytes()), Judged::Emit { .. });
            prop_assert_eq!(full, fast, "{}", line);
        }
    }
}
