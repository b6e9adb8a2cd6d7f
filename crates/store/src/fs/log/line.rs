//! One line of the event log: how mstate writes it and how any line (the
//! seed's too) is read back.
//!
//! mstate writes compact JSON with the seed's fields first, so the seed's
//! `grep '"event_type":"X"'` finds them, then `seq` and `host`:
//! `{"timestamp":…,"milestone_id":…,"session_id":…,"event_type":…,"data":…,"pid":…,"user":…,"seq":N,"host":…}`.
//! Readers take the timestamp from the line's prefix and `seq` from its
//! suffix without parsing the JSON in between when the line has mstate's
//! shape, and fall back to a full parse otherwise.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The fields of a line, in the order they are written.
#[derive(Debug, Serialize)]
pub struct LineOut<'a> {
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

/// The fields readers filter on, decoded leniently.
#[derive(Debug, Deserialize)]
struct Head {
    timestamp: Option<String>,
    #[serde(alias = "event")]
    event_type: Option<String>,
    session_id: Option<String>,
    seq: Option<u64>,
}

const TS_PREFIX: &[u8] = b"{\"timestamp\":\"";

/// The timestamp of a line, from its prefix when it has the usual shape.
pub fn timestamp(line: &[u8]) -> Option<Timestamp> {
    if let Some(rest) = line.strip_prefix(TS_PREFIX) {
        let end = memchr::memchr(b'"', rest)?;
        let s = std::str::from_utf8(&rest[..end]).ok()?;
        return s.parse().ok();
    }
    head(line)?.timestamp?.parse().ok()
}

/// The explicit `seq` of a line, if it has one.
pub fn seq(line: &[u8]) -> Option<u64> {
    // mstate's lines end with `,"seq":N,"host":"…"}`.
    if let Some(pos) = memchr::memmem::rfind(line, b",\"seq\":") {
        let rest = &line[pos + 7..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let after = &rest[digits..];
        if digits > 0 && after.starts_with(b",\"host\":\"") && after.ends_with(b"\"}") {
            let tail = &after[9..after.len() - 2];
            if memchr::memchr2(b'"', b'\\', tail).is_none() {
                return std::str::from_utf8(&rest[..digits]).ok()?.parse().ok();
            }
        }
    }
    if memchr::memmem::find(line, b"\"seq\"").is_none() {
        return None;
    }
    head(line)?.seq
}

fn head(line: &[u8]) -> Option<Head> {
    serde_json::from_slice(line).ok()
}

/// Whether a line is a whole JSON object.
pub fn is_valid(line: &[u8]) -> bool {
    line.first() == Some(&b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
}

/// The top-level event type and session of a line (full parse).
pub fn type_and_session(line: &[u8]) -> Option<(Option<String>, Option<String>)> {
    let h = head(line)?;
    Some((h.event_type, h.session_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_shapes() {
        let ours = br#"{"timestamp":"2026-11-24T12:00:00.000001Z","milestone_id":"m","session_id":"s","event_type":"t","data":{"seq":99},"pid":1,"user":"u","seq":7,"host":"h"}"#;
        assert_eq!(seq(ours), Some(7));
        assert!(timestamp(ours).is_some());
        let seed = br#"{"timestamp":"2026-11-24T12:00:00Z","event":"state_initialized","milestone_id":"m"}"#;
        assert_eq!(seq(seed), None);
        assert!(timestamp(seed).is_some());
        assert_eq!(
            type_and_session(seed).unwrap().0.as_deref(),
            Some("state_initialized")
        );
        let nested =
            br#"{"timestamp":"2026-11-24T12:00:00Z","event_type":"x","data":{"seq":3},"pid":1}"#;
        assert_eq!(seq(nested), None);
        let odd = br#"{"seq":5,"timestamp":"2026-11-24T12:00:00Z","event_type":"x"}"#;
        assert_eq!(seq(odd), Some(5));
        assert!(timestamp(odd).is_some());
        assert!(!is_valid(b"{\"timestamp\":\"2026"));
        assert!(!is_valid(b"\0\0\0"));
    }
}
