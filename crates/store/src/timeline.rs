//! A milestone's timeline: its events in time order, folded into session
//! spans, as one streaming pass over the log.
//!
//! Front ends (the CLI's text, markdown and JSON, and any later HTML view
//! or server) render what [`scan`] hands them; they hold nothing.
//!
//! ## Memory and order
//!
//! The log is read once, oldest line first. Lines are in time order except
//! where a clock stepped back or a seed appender stamped a whole second:
//! to put those in place, the fold holds back a window of the latest
//! events read, at most [`Window::events`] of them and [`Window::bytes`]
//! of their lines, and shows the earliest held event whenever the window
//! overflows. Events come out ordered by (timestamp, `seq`, log order),
//! as a full sort would order them, provided every event logged before
//! an event with a later timestamp lies within the window: the events
//! from the first such one up to it (that one included, it excluded)
//! number at most [`Window::events`] and hold at most [`Window::bytes`]
//! of line text. An event logged further out of order than that is shown
//! where it is read, after the events already shown, marked
//! [`Entry::out_of_order`], and counted in [`Summary::out_of_order`].
//!
//! Memory is the window plus one [`Span`] per session: it does not grow
//! with the number of events.
//!
//! ## Spans
//!
//! A span is one session's first and last event times (the earliest and
//! latest timestamps, whatever the order they were read in), its number
//! of events, and whether it logged `session_ended`. Events without a
//! session or of `no-session` belong to no span.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

use jiff::Timestamp;

use crate::error::Result;
use crate::fs::log::LogLine;
use crate::id::MilestoneId;
use crate::model::{EventQuery, Progress, ReadReport};
use crate::store::Store;

/// How many events the fold may hold back to sort them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Most events held.
    pub events: usize,
    /// Most bytes of their lines held.
    pub bytes: usize,
}

impl Default for Window {
    /// 10,000 events or 8 MiB of lines: some seconds of the busiest logs,
    /// a few MB of memory.
    fn default() -> Self {
        Window {
            events: 10_000,
            bytes: 8 << 20,
        }
    }
}

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The reorder window.
    pub window: Window,
    /// Leave out the session spans.
    pub no_sessions: bool,
}

/// Where a member of an [`Entry`] is: a range of its line, or its own
/// text (a string with escapes, decoded).
#[derive(Debug, Clone)]
enum Member {
    Absent,
    At(usize, usize),
    Own(Box<str>),
}

impl Member {
    fn of(raw: &str, value: Option<&Cow<'_, str>>) -> Self {
        let Some(v) = value else {
            return Member::Absent;
        };
        if let Cow::Borrowed(s) = v {
            let base = raw.as_ptr() as usize;
            let at = (s.as_ptr() as usize).wrapping_sub(base);
            if at <= raw.len() && raw.len() - at >= s.len() {
                return Member::At(at, at + s.len());
            }
        }
        Member::Own(v.as_ref().into())
    }

    fn get<'a>(&'a self, raw: &'a str) -> Option<&'a str> {
        match self {
            Member::Absent => None,
            Member::At(a, b) => raw.get(*a..*b),
            Member::Own(s) => Some(s),
        }
    }
}

/// One event of a timeline.
#[derive(Debug, Clone)]
pub struct Entry {
    raw: String,
    timestamp: Timestamp,
    seq: u64,
    time: Member,
    event_type: Member,
    session_id: Member,
    data: Member,
    out_of_order: bool,
}

impl Entry {
    /// The entry of `line`, its text (the stored line, or the event
    /// encoded as one) copied into `buf`.
    fn new(line: &LogLine<'_>, out_of_order: bool, mut buf: String) -> Result<Self> {
        let text = line.line()?;
        let raw: &str = &text;
        buf.clear();
        buf.push_str(raw);
        Ok(Entry {
            raw: buf,
            timestamp: line.timestamp,
            seq: line.seq,
            time: Member::of(raw, line.fields.timestamp.as_ref()),
            event_type: Member::of(raw, line.fields.event_type.as_ref()),
            session_id: Member::of(raw, line.fields.session_id.as_ref()),
            data: Member::of(raw, line.fields.data.as_ref()),
            out_of_order,
        })
    }

    /// The stored line (one JSON object), or for an event stored without
    /// text, the event encoded as the file store writes its lines.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Its time.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// Its `seq` (explicit, or implicit for a seed line).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// `timestamp` as stored.
    pub fn time_text(&self) -> Option<&str> {
        self.time.get(&self.raw)
    }

    /// `event_type` (or the seed's `event`).
    pub fn event_type(&self) -> Option<&str> {
        self.event_type.get(&self.raw)
    }

    /// `session_id`.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.get(&self.raw)
    }

    /// The JSON text of `data`, as stored.
    pub fn data(&self) -> Option<&str> {
        self.data.get(&self.raw)
    }

    /// Logged further out of time order than the window sorts: shown
    /// where it was read.
    pub fn out_of_order(&self) -> bool {
        self.out_of_order
    }
}

/// One session's span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub session_id: String,
    /// Its earliest event time.
    pub start: Timestamp,
    /// Its latest event time.
    pub end: Timestamp,
    /// Its events.
    pub events: u64,
    /// It logged `session_ended`.
    pub ended: bool,
}

impl Span {
    /// From start to end.
    pub fn duration(&self) -> jiff::SignedDuration {
        self.end.duration_since(self.start)
    }
}

/// What a timeline found besides its events.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Events shown.
    pub events: u64,
    /// Of which shown where read, out of order.
    pub out_of_order: u64,
    /// The `seq` of the first few of those.
    pub out_of_order_seqs: Vec<u64>,
    /// Session spans by start time (then session id); empty with
    /// `no_sessions`.
    pub spans: Vec<Span>,
}

/// How many out-of-order `seq`s a summary lists.
const LISTED_LATE: usize = 5;

type Key = (Timestamp, u64, u64);

struct Held {
    key: Key,
    entry: Entry,
}

/// A sink of timeline entries; returns false to stop.
pub type EntryFn<'a> = dyn FnMut(&Entry) -> Result<bool> + 'a;

/// The streaming fold: feed it events in log order with [`Timeline::push`],
/// then [`Timeline::finish`].
pub struct Timeline {
    opts: Options,
    /// The window, sorted by key: events mostly come in order, so most
    /// are pushed at the back, and a late one goes in near it.
    held: VecDeque<Held>,
    held_bytes: usize,
    read: u64,
    last_shown: Option<Key>,
    spans: HashMap<String, Span>,
    summary: Summary,
    /// Buffers of entries shown, for the next ones (saves an allocation
    /// per event).
    pool: Vec<String>,
}

/// Most spare buffers kept.
const POOL: usize = 64;

impl Timeline {
    pub fn new(opts: Options) -> Self {
        Timeline {
            opts,
            held: VecDeque::new(),
            held_bytes: 0,
            read: 0,
            last_shown: None,
            spans: HashMap::new(),
            summary: Summary::default(),
            pool: Vec::new(),
        }
    }

    /// Take the next event of the log; hands `out` the events that leave
    /// the window. False once `out` asked to stop.
    pub fn push(&mut self, line: &LogLine<'_>, out: &mut EntryFn<'_>) -> Result<bool> {
        if !self.opts.no_sessions {
            self.fold_span(line);
        }
        let key = (line.timestamp, line.seq, self.read);
        self.read += 1;
        if self.last_shown.is_some_and(|last| key < last) {
            self.summary.out_of_order += 1;
            if self.summary.out_of_order_seqs.len() < LISTED_LATE {
                self.summary.out_of_order_seqs.push(line.seq);
            }
            self.summary.events += 1;
            let e = Entry::new(line, true, self.pool.pop().unwrap_or_default())?;
            let more = out(&e);
            self.recycle(e.raw);
            return more;
        }
        let h = Held {
            key,
            entry: Entry::new(line, false, self.pool.pop().unwrap_or_default())?,
        };
        self.held_bytes += h.entry.raw.len();
        match self.held.back() {
            Some(last) if key < last.key => {
                let at = self.held.partition_point(|x| x.key < key);
                self.held.insert(at, h);
            }
            _ => self.held.push_back(h),
        }
        while self.held.len() > self.opts.window.events.max(1)
            || (self.held_bytes > self.opts.window.bytes && !self.held.is_empty())
        {
            if !self.show_next(out)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn show_next(&mut self, out: &mut EntryFn<'_>) -> Result<bool> {
        let Some(h) = self.held.pop_front() else {
            return Ok(true);
        };
        self.held_bytes -= h.entry.raw.len();
        self.last_shown = Some(h.key);
        self.summary.events += 1;
        let more = out(&h.entry);
        self.recycle(h.entry.raw);
        more
    }

    fn recycle(&mut self, buf: String) {
        // Not a buffer a huge line grew: the pool stays small.
        if self.pool.len() < POOL && buf.capacity() <= 64 * 1024 {
            self.pool.push(buf);
        }
    }

    fn fold_span(&mut self, line: &LogLine<'_>) {
        let Some(session) = line.fields.session_id.as_deref() else {
            return;
        };
        if session == "no-session" {
            return;
        }
        let ts = line.timestamp;
        let ended = line.fields.event_type.as_deref() == Some("session_ended");
        match self.spans.get_mut(session) {
            Some(s) => {
                s.start = s.start.min(ts);
                s.end = s.end.max(ts);
                s.events += 1;
                s.ended |= ended;
            }
            None => {
                self.spans.insert(
                    session.to_string(),
                    Span {
                        session_id: session.to_string(),
                        start: ts,
                        end: ts,
                        events: 1,
                        ended,
                    },
                );
            }
        }
    }

    /// Show what the window still holds; the summary. Stops early (with
    /// the summary so far) when `out` asks to.
    pub fn finish(mut self, out: &mut EntryFn<'_>) -> Result<Summary> {
        while !self.held.is_empty() {
            if !self.show_next(out)? {
                break;
            }
        }
        let mut spans: Vec<Span> = self.spans.into_values().collect();
        spans.sort_by(|a, b| (a.start, &a.session_id).cmp(&(b.start, &b.session_id)));
        self.summary.spans = spans;
        Ok(self.summary)
    }
}

/// Build the timeline of `id` from `store`, handing each event to `out`
/// in timeline order. `progress` follows the read of the log. Returns the
/// summary and what the read met (torn or corrupt lines).
pub fn scan<S: Store + ?Sized>(
    store: &S,
    id: &MilestoneId,
    opts: &Options,
    progress: Option<Progress>,
    out: &mut EntryFn<'_>,
) -> Result<(Summary, ReadReport)> {
    let mut t = Timeline::new(opts.clone());
    let q = EventQuery {
        progress,
        ..Default::default()
    };
    let mut go_on = true;
    let report = store.events(id, &q, &mut |line| {
        go_on = t.push(line, out)?;
        Ok(go_on)
    })?;
    let summary = if go_on {
        t.finish(out)?
    } else {
        let mut s = t.summary.clone();
        s.spans.clear();
        s
    };
    Ok((summary, report))
}

/// Write JSON text `text` (valid JSON) as serde_json writes the `Value`
/// it parses to (this crate's serde_json keeps key order and number
/// text): compact, or pretty (two-space indent, `": "`) with every line
/// after the first indented `depth` more levels. Returns false, having
/// written nothing, where that takes a parse: a string holding an escape
/// or a number with an exponent (serde_json writes some differently), or
/// an object repeating a key (the `Value` keeps one). One pass, no allocation but the output.
pub fn write_json(text: &str, pretty: Option<usize>, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let ok = layout(text.as_bytes(), pretty, out);
    if !ok {
        out.truncate(start);
    }
    ok
}

/// Most keys an object may have for [`write_json`]'s check of repeats.
const MAX_KEYS: usize = 64;

fn layout(t: &[u8], pretty: Option<usize>, out: &mut Vec<u8>) -> bool {
    // Keys of the open objects, and where each object's keys start.
    let mut keys: Vec<&[u8]> = Vec::new();
    let mut frames: Vec<Option<usize>> = Vec::new();
    let mut depth = pretty.unwrap_or(0);
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.resize(out.len() + depth * 2, b' ');
    };
    let next_significant = |mut j: usize| {
        while t.get(j).is_some_and(u8::is_ascii_whitespace) {
            j += 1;
        }
        t.get(j).copied()
    };
    // Whether the next string is an object key.
    let mut want_key = false;
    let mut i = 0;
    while i < t.len() {
        let b = t[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' => {
                let Some(k) = memchr::memchr2(b'"', b'\\', &t[i + 1..]) else {
                    return false;
                };
                if t[i + 1 + k] == b'\\' {
                    return false;
                }
                let s = &t[i..i + k + 2];
                if want_key {
                    let from = frames.last().copied().flatten().unwrap_or(0);
                    if keys[from..].contains(&s) || keys.len() - from >= MAX_KEYS {
                        return false;
                    }
                    keys.push(s);
                    want_key = false;
                }
                out.extend_from_slice(s);
                i += k + 2;
            }
            b'{' | b'[' => {
                let close = if b == b'{' { b'}' } else { b']' };
                if next_significant(i + 1) == Some(close) {
                    out.push(b);
                    out.push(close);
                    i += 1;
                    while i < t.len() && t[i] != close {
                        i += 1;
                    }
                    i += 1;
                    continue;
                }
                out.push(b);
                frames.push((b == b'{').then_some(keys.len()));
                want_key = b == b'{';
                if pretty.is_some() {
                    depth += 1;
                    newline(out, depth);
                }
                i += 1;
            }
            b'}' | b']' => {
                if let Some(Some(from)) = frames.pop() {
                    keys.truncate(from);
                }
                if pretty.is_some() {
                    depth = depth.saturating_sub(1);
                    newline(out, depth);
                }
                out.push(b);
                i += 1;
            }
            b',' => {
                out.push(b',');
                want_key = matches!(frames.last(), Some(Some(_)));
                if pretty.is_some() {
                    newline(out, depth);
                }
                i += 1;
            }
            b':' => {
                out.extend_from_slice(if pretty.is_some() { b": " } else { b":" });
                i += 1;
            }
            _ => {
                let s = i;
                while i < t.len()
                    && !matches!(
                        t[i],
                        b',' | b'}' | b']' | b':' | b' ' | b'\t' | b'\n' | b'\r'
                    )
                {
                    i += 1;
                }
                // serde_json writes exponents its own way (`1E5` as `1e+5`).
                if memchr::memchr2(b'e', b'E', &t[s..i]).is_some() && t[s] != b't' && t[s] != b'f' {
                    return false;
                }
                out.extend_from_slice(&t[s..i]);
            }
        }
    }
    true
}

#[cfg(test)]
mod tests;
