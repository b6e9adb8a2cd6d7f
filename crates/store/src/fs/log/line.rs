//! One line of the event log: how mstate writes it and how any line (the
//! seed's too) is read back.
//!
//! mstate writes compact JSON with the seed's fields first, so the seed's
//! `grep '"event_type":"X"'` finds them, then `seq` and `host`:
//!
//! ```text
//! {"timestamp":…,"milestone_id":…,"session_id":…,"event_type":…,"data":…,"pid":…,"user":…,"seq":N,"host":…}
//! ```
//!
//! Readers are fast on that shape (and on the seed's, which shares its
//! prefix): the fields queries filter on are taken from the line's leading
//! string members and `seq` from its end, without parsing the JSON in
//! between. Anything else falls back to a full parse. Every function here
//! is total: any bytes from disk give an answer, never a panic.

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use jiff::Timestamp;
use memchr::memmem;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

/// Prefix of the header line a rewritten segment starts with.
pub const HEADER_PREFIX: &[u8] = b"{\"mstate_segment\":";

/// The seed's and mstate's line prefix; also the marker used to recover an
/// event glued to the torn bytes before it.
pub const TS_PREFIX: &[u8] = b"{\"timestamp\":\"";

static SEQ_FINDER: LazyLock<memmem::FinderRev<'static>> =
    LazyLock::new(|| memmem::FinderRev::new(b",\"seq\":"));
static SEQ_KEY: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"seq\""));

/// The fields of a line, in the order they are written (used to encode
/// the parts of a line, and by tests to check the whole).
#[derive(serde::Serialize)]
pub struct LineFields<'a> {
    pub timestamp: &'a str,
    pub milestone_id: &'a str,
    pub session_id: &'a str,
    pub event_type: &'a str,
    pub data: &'a Value,
    pub pid: u32,
    pub user: &'a str,
    pub seq: u64,
    pub host: &'a str,
}

/// Encodes the lines of one append: everything but the timestamp and
/// `seq` is encoded once, before the log's lock is taken.
pub struct Encoder {
    /// `,"milestone_id":…,"user":…` (after the timestamp, before `seq`).
    middle: Vec<u8>,
    /// `,"host":…}` plus the newline.
    end: Vec<u8>,
}

impl Encoder {
    /// Encode the parts of `fields` that do not depend on the log's tail.
    pub fn new(fields: &LineFields<'_>) -> serde_json::Result<Self> {
        let mut middle = Vec::with_capacity(256);
        middle.extend_from_slice(b",\"milestone_id\":");
        serde_json::to_writer(&mut middle, fields.milestone_id)?;
        middle.extend_from_slice(b",\"session_id\":");
        serde_json::to_writer(&mut middle, fields.session_id)?;
        middle.extend_from_slice(b",\"event_type\":");
        serde_json::to_writer(&mut middle, fields.event_type)?;
        middle.extend_from_slice(b",\"data\":");
        serde_json::to_writer(&mut middle, fields.data)?;
        middle.extend_from_slice(b",\"pid\":");
        middle.extend_from_slice(fields.pid.to_string().as_bytes());
        middle.extend_from_slice(b",\"user\":");
        serde_json::to_writer(&mut middle, fields.user)?;
        let mut end = Vec::with_capacity(64);
        end.extend_from_slice(b",\"host\":");
        serde_json::to_writer(&mut end, fields.host)?;
        end.extend_from_slice(b"}\n");
        Ok(Encoder { middle, end })
    }

    /// The whole line, newline included.
    pub fn line(&self, timestamp: &str, seq: u64) -> Vec<u8> {
        let seq = seq.to_string();
        let mut out = Vec::with_capacity(
            TS_PREFIX.len() + timestamp.len() + self.middle.len() + seq.len() + self.end.len() + 8,
        );
        out.extend_from_slice(TS_PREFIX);
        out.extend_from_slice(timestamp.as_bytes());
        out.push(b'"');
        out.extend_from_slice(&self.middle);
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(seq.as_bytes());
        out.extend_from_slice(&self.end);
        out
    }
}

/// A line that holds something: its bytes without leading NULs or
/// whitespace and without trailing whitespace.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// NUL bytes that preceded the content (zeros a crash left behind).
    pub nuls: usize,
    pub payload: &'a [u8],
}

/// The record a line holds, or `None` for a blank line. Blank lines are
/// not events and take no `seq`; every other line (even a corrupt one)
/// takes one, so numbering never depends on whether a line parses.
pub fn record(raw: &[u8]) -> Option<Record<'_>> {
    let mut nuls = 0;
    let mut start = 0;
    for &b in raw {
        match b {
            0 => nuls += 1,
            b if b.is_ascii_whitespace() => {}
            _ => break,
        }
        start += 1;
    }
    let rest = raw.get(start..)?;
    let end = rest
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let payload = rest.get(..end)?;
    (!payload.is_empty()).then_some(Record { nuls, payload })
}

/// The leading string members of a line, read without a full parse.
#[derive(Debug, Default, Clone, Copy)]
pub struct Head<'a> {
    pub timestamp: Option<&'a [u8]>,
    /// `event_type`, or the seed's `event`.
    pub event_type: Option<&'a [u8]>,
    pub session_id: Option<&'a [u8]>,
    /// Every member of the object was read, so an absent field is absent
    /// (otherwise reading stopped at the first member that is not a
    /// plain string, usually `data`).
    pub whole: bool,
}

impl<'a> Head<'a> {
    /// The event type if the head alone tells it: `Some(None)` means the
    /// line has none.
    pub fn known_type(&self) -> Option<Option<&'a [u8]>> {
        match self.event_type {
            Some(t) => Some(Some(t)),
            None if self.whole => Some(None),
            None => None,
        }
    }

    /// The session if the head alone tells it.
    pub fn known_session(&self) -> Option<Option<&'a [u8]>> {
        match self.session_id {
            Some(s) => Some(Some(s)),
            None if self.whole => Some(None),
            None => None,
        }
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn ws(&mut self) {
        while self
            .s
            .get(self.i)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    /// A string without escapes; `None` if it has any (or is not a string).
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        if self.bump()? != b'"' {
            return None;
        }
        let rest = self.s.get(self.i..)?;
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        if rest.get(end) != Some(&b'"') {
            return None;
        }
        self.i += end + 1;
        rest.get(..end)
    }
}

/// Read the leading plain-string members of a JSON object line. `None`
/// when the line does not start like an object of plain strings; the
/// caller then parses it fully.
pub fn fast_head(line: &[u8]) -> Option<Head<'_>> {
    let mut c = Cursor { s: line, i: 0 };
    let mut h = Head::default();
    c.ws();
    if c.bump()? != b'{' {
        return None;
    }
    c.ws();
    if c.peek()? == b'}' {
        h.whole = true;
        return Some(h);
    }
    let mut event = None;
    let mut ignored = None;
    loop {
        c.ws();
        let key = c.plain_string()?;
        c.ws();
        if c.bump()? != b':' {
            return None;
        }
        c.ws();
        if c.peek()? != b'"' {
            break;
        }
        let value = c.plain_string()?;
        let slot = match key {
            b"timestamp" => &mut h.timestamp,
            b"event_type" => &mut h.event_type,
            b"event" => &mut event,
            b"session_id" => &mut h.session_id,
            _ => &mut ignored,
        };
        slot.get_or_insert(value);
        c.ws();
        match c.bump()? {
            b',' => {}
            b'}' => {
                h.whole = true;
                break;
            }
            _ => return None,
        }
    }
    if h.event_type.is_none() {
        // The seed's `event` stands for `event_type` only if no
        // `event_type` can follow.
        if h.whole {
            h.event_type = event;
        } else if event.is_some() {
            return None;
        }
    }
    Some(h)
}

/// The fields readers need, from a full parse.
#[derive(Debug, Default)]
pub struct FullHead {
    pub timestamp: Option<String>,
    pub event_type: Option<String>,
    pub session_id: Option<String>,
    pub seq: Option<u64>,
}

struct FullHeadVisitor;

impl<'de> Visitor<'de> for FullHeadVisitor {
    type Value = FullHead;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FullHead, A::Error> {
        let mut h = FullHead::default();
        let mut event = None;
        // The first of repeated keys wins, as in `fast_head`.
        let mut seen = [false; 5];
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let slot = match key.as_ref() {
                "timestamp" => 0,
                "event_type" => 1,
                "event" => 2,
                "session_id" => 3,
                "seq" => 4,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let value: Value = map.next_value()?;
            if std::mem::replace(&mut seen[slot], true) {
                continue;
            }
            let text = || value.as_str().map(str::to_owned);
            match slot {
                0 => h.timestamp = text(),
                1 => h.event_type = text(),
                2 => event = text(),
                3 => h.session_id = text(),
                _ => h.seq = value.as_u64(),
            }
        }
        if h.event_type.is_none() {
            h.event_type = event;
        }
        Ok(h)
    }
}

impl<'de> de::Deserialize<'de> for FullHead {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FullHeadVisitor)
    }
}

/// Parse a line fully; `None` unless it is one valid JSON object.
pub fn full_head(line: &[u8]) -> Option<FullHead> {
    serde_json::from_slice(line).ok()
}

pub use crate::model::EventFields as Fields;

struct FieldsVisitor;

/// An object key, borrowed from the line unless it holds escapes (serde's
/// own `Cow` always copies).
struct Key;

impl<'de> de::DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_string()))
    }
}

/// A member's value as a string: borrowed when it has no escapes.
fn raw_string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut out = Fields::default();
        let mut event = None;
        // The first of repeated keys wins, as in `fast_head` and `full_head`.
        let mut seen = [false; 5];
        while let Some(key) = map.next_key_seed(Key)? {
            let slot = match key.as_ref() {
                "timestamp" => 0,
                "event_type" => 1,
                "event" => 2,
                "session_id" => 3,
                "data" => 4,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let value: &'de RawValue = map.next_value()?;
            if std::mem::replace(&mut seen[slot], true) {
                continue;
            }
            match slot {
                0 => out.timestamp = raw_string(value),
                1 => out.event_type = raw_string(value),
                2 => event = raw_string(value),
                3 => out.session_id = raw_string(value),
                _ => out.data = Some(Cow::Borrowed(value.get())),
            }
        }
        if out.event_type.is_none() {
            out.event_type = event;
        }
        Ok(out)
    }
}

/// Check that `line` is valid UTF-8 holding exactly one JSON object and
/// read its [`Fields`], in one parse.
pub fn fields(line: &[u8]) -> Option<(&str, Fields<'_>)> {
    if line.first() != Some(&b'{') {
        return None;
    }
    let text = std::str::from_utf8(line).ok()?;
    let mut de = serde_json::Deserializer::from_str(text);
    let f = de::Deserializer::deserialize_map(&mut de, FieldsVisitor).ok()?;
    de.end().ok()?;
    Some((text, f))
}

/// The line as text if it is valid UTF-8 holding exactly one JSON object.
pub fn object_text(line: &[u8]) -> Option<&str> {
    if line.first() != Some(&b'{') {
        return None;
    }
    let text = std::str::from_utf8(line).ok()?;
    serde_json::from_str::<IgnoredAny>(text).ok()?;
    Some(text)
}

/// The `seq` a line carries, if it carries one. Lines mstate writes end
/// with `,"seq":N,"host":"…"}`: that shape is read from the end; any other
/// line mentioning `"seq"` is parsed fully. Every reader and writer uses
/// this one function, so a line's `seq` is the same whoever asks.
pub fn explicit_seq(payload: &[u8]) -> Option<u64> {
    if let Some(seq) = fast_seq(payload) {
        return Some(seq);
    }
    SEQ_KEY.find(payload)?;
    full_head(payload)?.seq
}

/// `seq` from the end of a line shaped like mstate's. In valid JSON the
/// member before the final `}` belongs to the top-level object, and
/// `,"seq":` cannot occur inside a string, so this never finds a nested
/// `seq`.
fn fast_seq(p: &[u8]) -> Option<u64> {
    let pos = SEQ_FINDER.rfind(p)?;
    let rest = p.get(pos + 7..)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 {
        return None;
    }
    let after = rest.get(digits..)?;
    let shaped = after == b"}"
        || after
            .strip_prefix(b",\"host\":\"")
            .and_then(|h| h.strip_suffix(b"\"}"))
            .is_some_and(|host| memchr::memchr2(b'"', b'\\', host).is_none());
    if !shaped {
        return None;
    }
    std::str::from_utf8(rest.get(..digits)?).ok()?.parse().ok()
}

/// The timestamp of a line, if it has a readable one (from the head when
/// possible, else from a full parse).
pub fn timestamp_of(payload: &[u8]) -> Option<Timestamp> {
    if let Some(h) = fast_head(payload) {
        if let Some(t) = h.timestamp.and_then(parse_ts) {
            return Some(t);
        }
        if h.whole && h.timestamp.is_none() {
            return None;
        }
    }
    full_head(payload)?
        .timestamp
        .and_then(|s| parse_ts(s.as_bytes()))
}

/// Parse an RFC 3339 timestamp. The forms mstate and the seed write
/// (`2026-11-24T21:03:37.123456Z`, `2026-11-24T21:03:37Z`) are decoded
/// directly; anything else goes through jiff.
pub fn parse_ts(s: &[u8]) -> Option<Timestamp> {
    fast_ts(s).or_else(|| std::str::from_utf8(s).ok()?.parse().ok())
}

fn fast_ts(s: &[u8]) -> Option<Timestamp> {
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = s.get(from..from + len)?;
        digits.iter().try_fold(0i64, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
        })
    };
    let sep = |at: usize, b: u8| s.get(at) == Some(&b);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    if s.last() != Some(&b'Z') {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let nanos = match s.get(19..s.len() - 1)? {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => {
            let mut n = 0i64;
            for &b in frac {
                if !b.is_ascii_digit() {
                    return None;
                }
                n = n * 10 + i64::from(b - b'0');
            }
            n * 10i64.pow(9 - frac.len() as u32)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second;
    Timestamp::new(secs, i32::try_from(nanos).ok()?).ok()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The header line of a rewritten segment: the `seq` of its first event.
pub fn segment_header(first_seq: u64) -> Vec<u8> {
    format!("{{\"mstate_segment\":{{\"first_seq\":{first_seq}}}}}\n").into_bytes()
}

/// The `first_seq` of a segment header line, if `line` is one.
pub fn parse_segment_header(line: &[u8]) -> Option<u64> {
    if !line.starts_with(HEADER_PREFIX) {
        return None;
    }
    let v: Value = serde_json::from_slice(line).ok()?;
    v.get("mstate_segment")?.get("first_seq")?.as_u64()
}

/// Where an event glued after torn bytes starts, if the line holds one.
pub fn glued_start(payload: &[u8]) -> Option<usize> {
    memmem::rfind(payload, TS_PREFIX).filter(|&i| i > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn encoder_writes_the_documented_shape() {
        let data = json!({"seq": 99, "note": "a \"quoted\"\nline", "n": 1.50});
        let fields = LineFields {
            timestamp: "2026-11-24T12:00:00.000001Z",
            milestone_id: "m1",
            session_id: "s-1",
            event_type: "state_saved",
            data: &data,
            pid: 42,
            user: "ci",
            seq: 7,
            host: "runner-3",
        };
        let line = Encoder::new(&fields).unwrap().line(fields.timestamp, 7);
        let mut expected = serde_json::to_vec(&fields).unwrap();
        expected.push(b'\n');
        assert_eq!(line, expected);
        let text = String::from_utf8(line).unwrap();
        assert!(text.contains("\"event_type\":\"state_saved\""));
        assert_eq!(text.matches('\n').count(), 1);
        let payload = text.trim_end().as_bytes();
        assert_eq!(explicit_seq(payload), Some(7));
        let h = fast_head(payload).unwrap();
        assert_eq!(h.event_type, Some(&b"state_saved"[..]));
        assert_eq!(h.session_id, Some(&b"s-1"[..]));
        assert!(!h.whole);
        assert_eq!(
            timestamp_of(payload),
            Some("2026-11-24T12:00:00.000001Z".parse().unwrap())
        );
    }

    #[test]
    fn reads_the_seeds_lines() {
        let init = br#"{"timestamp":"2026-11-24T21:03:37Z","event":"state_initialized","milestone_id":"m1"}"#;
        let h = fast_head(init).unwrap();
        assert!(h.whole);
        assert_eq!(h.event_type, Some(&b"state_initialized"[..]));
        assert_eq!(h.known_session(), Some(None));
        assert_eq!(explicit_seq(init), None);
        let ev = br#"{"timestamp":"2026-11-24T21:03:38Z","milestone_id":"m1","session_id":"no-session","event_type":"state_saved","data":{"state_file": "x"},"pid":12,"user":"u"}"#;
        let h = fast_head(ev).unwrap();
        assert_eq!(h.event_type, Some(&b"state_saved"[..]));
        assert_eq!(explicit_seq(ev), None);
        assert!(object_text(ev).is_some());
        // The seed interpolates strings into JSON: such a line is corrupt,
        // but its head still reads.
        let bad = br#"{"timestamp":"2026-11-24T21:03:39Z","milestone_id":"m1","session_id":"s","event_type":"x","data":{"k": "a"b"},"pid":1,"user":"u"}"#;
        assert!(object_text(bad).is_none());
        assert!(fast_head(bad).is_some());
        assert!(full_head(bad).is_none());
        // Python's json.dumps spacing (the seed's cleanup rewrote lines so).
        let spaced = br#"{"timestamp": "2026-11-24T21:03:40Z", "event_type": "y", "data": {}}"#;
        assert_eq!(fast_head(spaced).unwrap().event_type, Some(&b"y"[..]));
        assert!(timestamp_of(spaced).is_some());
    }

    #[test]
    fn seq_is_read_only_at_top_level() {
        let nested =
            br#"{"timestamp":"2026-11-24T12:00:00Z","event_type":"x","data":{"seq":3,"host":"h"}}"#;
        assert_eq!(explicit_seq(nested), None);
        let odd = br#"{"seq":5,"timestamp":"2026-11-24T12:00:00Z","event_type":"x"}"#;
        assert_eq!(explicit_seq(odd), Some(5));
        let spaced = br#"{"timestamp":"2026-11-24T12:00:00Z", "seq": 8}"#;
        assert_eq!(explicit_seq(spaced), Some(8));
        let not_number = br#"{"timestamp":"2026-11-24T12:00:00Z","seq":"8"}"#;
        assert_eq!(explicit_seq(not_number), None);
        assert_eq!(explicit_seq(b"\"seq\""), None);
        assert_eq!(explicit_seq(b",\"seq\":99999999999999999999999}"), None);
    }

    #[test]
    fn event_key_defers_to_event_type() {
        let both = br#"{"event":"a","event_type":"b","timestamp":"2026-11-24T12:00:00Z"}"#;
        assert_eq!(fast_head(both).unwrap().event_type, Some(&b"b"[..]));
        assert_eq!(full_head(both).unwrap().event_type.as_deref(), Some("b"));
        let partial = br#"{"event":"a","data":{},"event_type":"b"}"#;
        assert!(fast_head(partial).is_none());
        assert_eq!(full_head(partial).unwrap().event_type.as_deref(), Some("b"));
    }

    #[test]
    fn records_and_blank_lines() {
        assert!(record(b"").is_none());
        assert!(record(b"  \r").is_none());
        assert!(record(b"\0\0\0").is_none());
        let r = record(b"\0\0{\"a\":1}\r").unwrap();
        assert_eq!(r.nuls, 2);
        assert_eq!(r.payload, b"{\"a\":1}");
    }

    #[test]
    fn headers_round_trip() {
        let h = segment_header(1234);
        assert_eq!(parse_segment_header(h.trim_ascii_end()), Some(1234));
        assert_eq!(parse_segment_header(b"{\"timestamp\":\"x\"}"), None);
        assert_eq!(parse_segment_header(b"{\"mstate_segment\":{"), None);
    }

    #[test]
    fn garbage_never_panics() {
        for g in [
            &b""[..],
            b"{",
            b"{\"",
            b"{\"timestamp\"",
            b"{\"timestamp\":",
            b"{\"timestamp\":\"",
            b"{\"timestamp\":\"2026-11-24T12:00:00Z\"",
            b",\"seq\":",
            b",\"seq\":1,\"host\":\"",
            b"\xff\xfe",
            b"{\"timestamp\":\"9999-99-99T99:99:99Z\"}",
        ] {
            let _ = fast_head(g);
            let _ = explicit_seq(g);
            let _ = timestamp_of(g);
            let _ = record(g);
            let _ = glued_start(g);
            let _ = parse_segment_header(g);
        }
    }

    proptest! {
        #[test]
        fn fast_timestamps_agree_with_jiff(secs in -62_135_596_800i64..253_402_300_799i64, nanos in 0i32..1_000_000_000, digits in 0usize..10) {
            let ts = Timestamp::new(secs, nanos).unwrap();
            let base = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
            let frac = format!("{nanos:09}");
            let text = if digits == 0 { format!("{base}Z") } else { format!("{base}.{}Z", &frac[..digits]) };
            let jiff: Option<Timestamp> = text.parse().ok();
            prop_assert!(jiff.is_some());
            prop_assert_eq!(fast_ts(text.as_bytes()), jiff);
        }

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = fast_head(&bytes);
            let _ = explicit_seq(&bytes);
            let _ = timestamp_of(&bytes);
            let _ = parse_ts(&bytes);
            let _ = record(&bytes);
        }

        #[test]
        fn fast_head_agrees_with_full_parse(
            ts in "[0-9:TZ.-]{0,30}",
            ty in "[a-z_]{1,10}",
            sess in proptest::option::of("[a-z0-9-]{1,10}"),
            use_event in any::<bool>(),
            spaced in any::<bool>(),
        ) {
            let mut obj = serde_json::Map::new();
            obj.insert("timestamp".into(), json!(ts));
            obj.insert(if use_event { "event" } else { "event_type" }.into(), json!(ty));
            if let Some(s) = &sess {
                obj.insert("session_id".into(), json!(s));
            }
            obj.insert("data".into(), json!({"x": [1, 2]}));
            let v = Value::Object(obj);
            let line = if spaced { serde_json::to_string_pretty(&v).unwrap().replace('\n', " ") } else { v.to_string() };
            let full = full_head(line.as_bytes()).unwrap();
            if let Some(h) = fast_head(line.as_bytes()) {
                if let Some(t) = h.known_type() {
                    prop_assert_eq!(t.map(|b| String::from_utf8(b.to_vec()).unwrap()), full.event_type.clone());
                }
                if let Some(s) = h.known_session() {
                    prop_assert_eq!(s.map(|b| String::from_utf8(b.to_vec()).unwrap()), full.session_id.clone());
                }
            }
            prop_assert_eq!(timestamp_of(line.as_bytes()), full.timestamp.and_then(|t| t.parse().ok()));
        }
    }
}
