//! Tests of the event log on the real filesystem: numbering (with the
//! seed's lines), concurrency, torn and corrupt lines, every query filter
//! against a naive full scan (including a property test), retention with
//! appends racing it, and follow.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::id::EventType;
use crate::io::RealIo;
use crate::model::{Actor, EventQuery};

static REAL: RealIo = RealIo::new();

struct Fx {
    _dir: tempfile::TempDir,
    layout: Layout,
    id: MilestoneId,
}

impl Fx {
    fn new() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join(".milestones/state"));
        fs::create_dir_all(layout.events()).unwrap();
        Fx {
            _dir: dir,
            layout,
            id: MilestoneId::new("m1").unwrap(),
        }
    }

    fn log(&self) -> EventLog<'_> {
        EventLog {
            io: &REAL,
            layout: &self.layout,
            id: &self.id,
        }
    }

    fn live(&self) -> PathBuf {
        self.layout.event_log(&self.id)
    }

    fn append(&self, ty: &str) -> crate::model::Event {
        self.append_data(ty, json!({}))
    }

    fn append_data(&self, ty: &str, data: Value) -> crate::model::Event {
        self.log()
            .append(&actor(), "s1", &EventType::new(ty).unwrap(), &data)
            .unwrap()
    }

    /// Append raw bytes to the live file, as the seed (or a crash) would.
    fn raw(&self, bytes: impl AsRef<[u8]>) {
        let bytes = bytes.as_ref();
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.live())
            .unwrap();
        f.write_all(bytes).unwrap();
    }

    fn query(&self, q: &EventQuery) -> (Vec<(u64, String)>, Vec<String>) {
        let mut out = Vec::new();
        let report = self
            .log()
            .query(q, &mut |l| {
                out.push((l.seq, l.raw().expect("a stored line").to_string()));
                Ok(true)
            })
            .unwrap();
        (out, report.warnings)
    }

    fn seqs(&self, q: &EventQuery) -> Vec<u64> {
        self.query(q).0.into_iter().map(|(s, _)| s).collect()
    }

    fn all_seqs(&self) -> Vec<u64> {
        self.seqs(&EventQuery::default())
    }

    fn quarantined(&self) -> Vec<Vec<u8>> {
        let dir = self.layout.quarantine_dir();
        let mut names: Vec<PathBuf> = match fs::read_dir(&dir) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => return Vec::new(),
        };
        names.sort();
        names.iter().map(|p| fs::read(p).unwrap()).collect()
    }

    fn segments(&self) -> Vec<PathBuf> {
        let dir = self.layout.segments_dir(&self.id);
        let mut v: Vec<PathBuf> = match fs::read_dir(&dir) {
            Ok(rd) => rd
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
                .collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    }
}

fn actor() -> Actor {
    Actor::new(4242, "tester", "box")
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn value(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap()
}

fn seed_line(t: &str, ty: &str, session: &str) -> String {
    format!(
        "{{\"timestamp\":\"{t}\",\"milestone_id\":\"m1\",\"session_id\":\"{session}\",\"event_type\":\"{ty}\",\"data\":{{\"state_file\": \"x\"}},\"pid\":7,\"user\":\"seed\"}}\n"
    )
}

fn seed_init(t: &str) -> String {
    format!("{{\"timestamp\":\"{t}\",\"event\":\"state_initialized\",\"milestone_id\":\"m1\"}}\n")
}

/// A line shaped like mstate's, with an explicit `seq`.
fn our_line(t: Timestamp, ty: &str, session: &str, seq: u64, pad: usize) -> String {
    let fields = line::LineFields {
        timestamp: &crate::time::format_micros(t),
        milestone_id: "m1",
        session_id: session,
        event_type: ty,
        data: &json!({"pad": "x".repeat(pad)}),
        pid: 1,
        user: "u",
        seq,
        host: "h",
    };
    let mut s = serde_json::to_string(&fields).unwrap();
    s.push('\n');
    s
}

#[test]
fn seq_starts_at_one_and_lines_have_the_documented_shape() {
    let fx = Fx::new();
    for (i, ty) in ["a", "b", "c"].iter().enumerate() {
        let e = fx.append(ty);
        assert_eq!(e.seq, Some(i as u64 + 1));
    }
    let text = fs::read_to_string(fx.live()).unwrap();
    let mut last = None;
    for (i, l) in text.lines().enumerate() {
        let v = value(l);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "timestamp",
                "milestone_id",
                "session_id",
                "event_type",
                "data",
                "pid",
                "user",
                "seq",
                "host"
            ]
        );
        assert!(l.starts_with("{\"timestamp\":\""));
        assert!(l.contains(&format!("\"event_type\":\"{}\"", ["a", "b", "c"][i])));
        let t = v["timestamp"].as_str().unwrap();
        assert_eq!(t.len(), "2026-11-24T12:00:00.000000Z".len());
        let t = ts(t);
        assert!(last.is_none_or(|p| p <= t));
        last = Some(t);
    }
    assert_eq!(fx.all_seqs(), [1, 2, 3]);
    assert_eq!(fx.log().last_seq().unwrap(), 3);
}

#[test]
fn seed_lines_take_the_previous_seq_plus_one() {
    let fx = Fx::new();
    fx.raw(seed_init("2026-11-24T21:03:37Z"));
    fx.raw(seed_line(
        "2026-11-24T21:03:38Z",
        "state_saved",
        "no-session",
    ));
    fx.raw(b"\n");
    fx.raw(seed_line(
        "2026-11-24T21:03:38Z",
        "state_loaded",
        "no-session",
    ));
    assert_eq!(fx.log().last_seq().unwrap(), 3);
    assert_eq!(fx.append("ours").seq, Some(4));
    fx.raw(seed_line("2030-01-01T00:00:00Z", "seed_after", "s"));
    fx.raw(seed_line("2030-01-01T00:00:01Z", "seed_after", "s"));
    let e = fx.append("ours");
    assert_eq!(e.seq, Some(7));
    // A last line far in the future is not followed: the new line has
    // the real time, and the log is marked as out of time order.
    assert!(ts(&e.timestamp) < ts("2030-01-01T00:00:00Z"));
    assert!(fx.log().is_unordered().unwrap());
    let (lines, warnings) = fx.query(&EventQuery::default());
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        lines.iter().map(|l| l.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert!(lines[0].1.contains("\"event\":\"state_initialized\""));
    // The seed's `event` key counts as the type.
    let q = EventQuery {
        types: vec!["state_initialized".into()],
        ..Default::default()
    };
    assert_eq!(fx.seqs(&q), [1]);
    // Backwards, implicit numbers come out the same.
    let q = EventQuery {
        reverse: true,
        ..Default::default()
    };
    assert_eq!(fx.seqs(&q), [7, 6, 5, 4, 3, 2, 1]);
    let q = EventQuery {
        tail: Some(3),
        ..Default::default()
    };
    assert_eq!(fx.seqs(&q), [5, 6, 7]);
}

#[test]
fn timestamps_round_up_to_the_last_line_within_the_slack_only() {
    let last = ts("2026-01-01T00:00:03.0000005Z");
    let now = ts("2026-01-01T00:00:00Z");
    let t = append::next_timestamp(Some(last), now);
    assert!(t >= last);
    assert_eq!(t, ts("2026-01-01T00:00:03.000001Z"));
    // A last line further ahead than the slack is not followed.
    let far = ts("2030-01-01T00:00:00Z");
    assert_eq!(append::next_timestamp(Some(far), now), now);
    let t = append::next_timestamp(None, ts("2026-01-01T00:00:00.123456789Z"));
    assert_eq!(t, ts("2026-01-01T00:00:00.123456Z"));
}

#[test]
fn concurrent_appends_number_every_event_once() {
    let fx = Fx::new();
    let threads = 8;
    let per = 200;
    std::thread::scope(|s| {
        for t in 0..threads {
            let fx = &fx;
            s.spawn(move || {
                let log = fx.log();
                for n in 0..per {
                    log.append(
                        &actor(),
                        "s1",
                        &EventType::new("tick").unwrap(),
                        &json!({"t": t, "n": n}),
                    )
                    .unwrap();
                }
            });
        }
    });
    let text = fs::read_to_string(fx.live()).unwrap();
    let lines: Vec<Value> = text.lines().map(value).collect();
    assert_eq!(lines.len(), threads * per);
    // In file order: seq 1, 2, 3, ... and time never going back.
    let mut prev = Timestamp::MIN;
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["seq"].as_u64(), Some(i as u64 + 1));
        let t = ts(v["timestamp"].as_str().unwrap());
        assert!(t >= prev);
        prev = t;
    }
    let pairs: BTreeSet<(u64, u64)> = lines
        .iter()
        .map(|v| {
            (
                v["data"]["t"].as_u64().unwrap(),
                v["data"]["n"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(pairs.len(), threads * per);
    assert_eq!(
        fx.all_seqs(),
        (1..=(threads * per) as u64).collect::<Vec<_>>()
    );
}

#[test]
fn a_torn_line_is_skipped_then_quarantined_by_the_next_append() {
    let fx = Fx::new();
    fx.append("a");
    fx.append("b");
    let torn = b"{\"timestamp\":\"2026-11-24T21:0";
    fx.raw(torn);
    let (lines, warnings) = fx.query(&EventQuery::default());
    assert_eq!(lines.len(), 2);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("torn") && warnings[0].contains(&format!("{} bytes", torn.len())));
    assert_eq!(fx.append("c").seq, Some(3));
    assert_eq!(fx.quarantined(), vec![torn.to_vec()]);
    let text = fs::read_to_string(fx.live()).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(text.ends_with('\n'));
    let (lines, warnings) = fx.query(&EventQuery::default());
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(lines.iter().map(|l| l.0).collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn a_run_of_nul_bytes_is_a_torn_tail_too() {
    let fx = Fx::new();
    fx.append("a");
    fx.raw([0u8; 4096]);
    let (lines, warnings) = fx.query(&EventQuery::default());
    assert_eq!(lines.len(), 1);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("torn") && w.contains("4096 bytes")),
        "{warnings:?}"
    );
    assert_eq!(fx.append("b").seq, Some(2));
    assert_eq!(fx.quarantined(), vec![vec![0u8; 4096]]);
    assert_eq!(fx.query(&EventQuery::default()).1, Vec::<String>::new());
}

#[test]
fn repair_moves_a_torn_tail_without_appending() {
    let fx = Fx::new();
    fx.append("a");
    fx.raw(b"{\"timestamp\":");
    let moved = fx.log().repair().unwrap();
    assert!(moved.is_some_and(|m| m.contains("quarantine")));
    assert_eq!(fx.quarantined(), vec![b"{\"timestamp\":".to_vec()]);
    assert_eq!(fx.log().repair().unwrap(), None);
    assert_eq!(fx.all_seqs(), [1]);
}

#[test]
fn corrupt_lines_are_skipped_with_a_warning_and_keep_their_seq() {
    let fx = Fx::new();
    fx.append("a");
    fx.raw(b"hand-edited garbage\n");
    // The seed interpolates strings into its JSON.
    fx.raw(b"{\"timestamp\":\"2026-11-24T21:03:39Z\",\"milestone_id\":\"m1\",\"session_id\":\"s\",\"event_type\":\"a\",\"data\":{\"k\": \"x\"y\"},\"pid\":1,\"user\":\"u\"}\n");
    fx.raw(b"{\"no\":\"timestamp\"}\n");
    fx.append("a");
    let (lines, warnings) = fx.query(&EventQuery::default());
    assert_eq!(lines.iter().map(|l| l.0).collect::<Vec<_>>(), [1, 5]);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings
        .iter()
        .all(|w| w.contains("corrupt") && !w.contains("torn")));
    // Filtered on the type, lines that cannot match are passed over
    // unjudged: the garbage and the line without type or timestamp hold
    // no `"a"`; the seed's broken line does and is reported.
    let q = EventQuery {
        types: vec!["a".into()],
        ..Default::default()
    };
    let (lines, warnings) = fx.query(&q);
    assert_eq!(lines.len(), 2);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("corrupt"), "{warnings:?}");
}

#[test]
fn an_event_glued_to_torn_bytes_is_recovered() {
    let fx = Fx::new();
    fx.append("a");
    // A crash left a torn line; the seed then appended without our lock.
    fx.raw(b"{\"timestamp\":\"2026-11-2");
    fx.raw(seed_line("2030-01-01T00:00:00Z", "glued", "s"));
    fx.raw(b"\0\0\0");
    fx.raw(seed_line("2030-01-01T00:00:01Z", "after_zeros", "s"));
    let (lines, warnings) = fx.query(&EventQuery::default());
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[1]
        .1
        .starts_with("{\"timestamp\":\"2030-01-01T00:00:00Z\""));
    assert!(lines[2].1.contains("after_zeros"));
    assert_eq!(lines.iter().map(|l| l.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(
        warnings.iter().any(|w| w.contains("recovered")),
        "{warnings:?}"
    );
    assert!(warnings.iter().any(|w| w.contains("NUL")), "{warnings:?}");
}

#[test]
fn long_lines_and_blank_lines_read_both_ways() {
    let fx = Fx::new();
    fx.append("a");
    fx.raw(b"\n\n  \n");
    let big = "y".repeat(3 * scan::CHUNK);
    fx.append_data("big", json!({ "big": big }));
    fx.raw(b"\n");
    fx.append("c");
    assert_eq!(fx.all_seqs(), [1, 2, 3]);
    let (lines, _) = fx.query(&EventQuery {
        reverse: true,
        ..Default::default()
    });
    assert_eq!(lines.iter().map(|l| l.0).collect::<Vec<_>>(), [3, 2, 1]);
    assert!(lines[1].1.len() > 3 * scan::CHUNK);
    assert_eq!(
        value(&lines[1].1)["data"]["big"].as_str().map(str::len),
        Some(big.len())
    );
}

#[test]
fn an_unfinished_last_line_is_not_read() {
    let fx = Fx::new();
    fx.raw(b"{\"a\":1}\n{\"b\"");
    let f = REAL.open_read(&fx.live()).unwrap();
    let path = fx.live();
    let mut lines = scan::Lines::new(&*f, &path, 0, 13, 4);
    assert_eq!(lines.next_line().unwrap(), Some((0, &b"{\"a\":1}"[..])));
    assert_eq!(lines.next_line().unwrap(), None);
    assert_eq!(lines.pos(), 8);
    let mut rev = scan::RevLines::new(&*f, &path, 0, 8, 3);
    assert_eq!(rev.prev_line().unwrap(), Some((0, &b"{\"a\":1}"[..])));
    assert_eq!(rev.prev_line().unwrap(), None);
}

#[test]
fn a_missing_log_is_empty() {
    let fx = Fx::new();
    let (lines, warnings) = fx.query(&EventQuery::default());
    assert!(lines.is_empty() && warnings.is_empty());
    assert_eq!(fx.log().last_seq().unwrap(), 0);
    assert_eq!(
        fx.log()
            .cleanup(Timestamp::now(), false)
            .unwrap()
            .events_removed,
        0
    );
    assert!(!fx.layout.segments_dir(&fx.id).exists());
}

/// A log line as the naive model sees it.
#[derive(Debug, Clone)]
struct Naive {
    seq: u64,
    raw: String,
    ts: Timestamp,
    ty: Option<String>,
    session: Option<String>,
}

/// Every visible line of `text`, numbered, by parsing each line fully.
fn naive(text: &str) -> Vec<Naive> {
    let mut seq = 0;
    let mut out = Vec::new();
    for l in text.split('\n') {
        let t = l.trim();
        if t.is_empty() {
            continue;
        }
        let v: Option<Value> = serde_json::from_str(t).ok();
        seq = v
            .as_ref()
            .and_then(|v| v.get("seq"))
            .and_then(Value::as_u64)
            .unwrap_or(seq + 1);
        let Some(v) = v.filter(Value::is_object) else {
            continue;
        };
        let Some(ts) = v
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
        else {
            continue;
        };
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        out.push(Naive {
            seq,
            raw: t.to_string(),
            ts,
            ty: s("event_type").or_else(|| s("event")),
            session: s("session_id"),
        });
    }
    out
}

/// What `q` should return, from the naive model.
fn expected(all: &[Naive], q: &EventQuery) -> Vec<(u64, String)> {
    let m: Vec<&Naive> = all
        .iter()
        .filter(|n| q.types.is_empty() || n.ty.as_ref().is_some_and(|t| q.types.contains(t)))
        .filter(|n| q.session.is_none() || n.session == q.session)
        .filter(|n| q.since.is_none_or(|s| n.ts >= s) && q.until.is_none_or(|u| n.ts <= u))
        .collect();
    q.window(m)
        .into_iter()
        .map(|n| (n.seq, n.raw.clone()))
        .collect()
}

/// Write a log of `n` lines, mostly mstate's with some of the seed's,
/// blank and corrupt lines. Timestamps follow a rising clock: the seed's
/// lie up to 2 s behind it (whole seconds, no lock), mstate's are the clock
/// but never earlier than the line before (as `append` writes them).
fn synthetic(n: usize, seed: u64, pad: usize) -> String {
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let base = ts("2026-01-01T00:00:00Z");
    let mut out = String::new();
    let mut seq = 0u64;
    let mut t = base;
    let mut last = base;
    for _ in 0..n {
        t += SignedDuration::from_millis((next() % 3000) as i64);
        let jitter = SignedDuration::from_millis((next() % 2000) as i64);
        let ty = ["a", "b", "c"][(next() % 3) as usize];
        let session = ["s1", "s2"][(next() % 2) as usize];
        match next() % 20 {
            0 => {
                seq += 1;
                let at = t - jitter;
                last = at;
                out.push_str(&seed_line(&crate::time::format_seconds(at), ty, session));
            }
            1 => {
                seq += 1;
                last = t;
                out.push_str(&seed_init(&crate::time::format_seconds(t)));
            }
            2 => out.push('\n'),
            3 => {
                seq += 1;
                out.push_str(
                    "{\"timestamp\":\"2026-01-01T00:00:00Z\",\"data\":{\"bad\": \"x\"y\"}}\n",
                );
            }
            _ => {
                seq += 1;
                let at = t.max(last);
                last = at;
                out.push_str(&our_line(at, ty, session, seq, pad));
            }
        }
    }
    out
}

fn check_queries(fx: &Fx, text: &str, queries: &[EventQuery]) {
    let all = naive(text);
    for q in queries {
        let got = fx.query(q).0;
        let want = expected(&all, q);
        assert_eq!(got.len(), want.len(), "{q:?}");
        assert!(got == want, "{q:?}: results differ");
    }
}

/// `since` bisects to its bound, then looks back over lines that went
/// back in time (a long run of the seed's lagging lines) to mstate lines
/// newer than the bound, stopping at the first mstate line older than it.
#[test]
fn since_finds_lines_before_a_run_of_lagging_seed_lines() {
    let fx = Fx::new();
    let base = ts("2026-01-01T00:00:00Z");
    let at = |s: i64| base + SignedDuration::from_secs(s);
    let mut text = String::new();
    let mut seq = 0;
    for s in 0..1_000 {
        seq += 1;
        text.push_str(&our_line(at(s), "a", "s1", seq, 40));
    }
    // More than a bisection span of seed lines, behind the clock.
    for _ in 0..1_000 {
        seq += 1;
        text.push_str(&seed_line(&crate::time::format_seconds(at(994)), "b", "s1"));
    }
    for s in 1_000..1_100 {
        seq += 1;
        text.push_str(&our_line(at(s), "a", "s1", seq, 40));
    }
    assert!(text.len() > 200_000);
    fx.raw(&text);
    let since = at(995) + SignedDuration::from_millis(500);
    let q = EventQuery {
        since: Some(since),
        ..Default::default()
    };
    let got = fx.query(&q).0;
    let want = expected(&naive(&text), &q);
    assert_eq!(want.len(), 4 + 100);
    assert!(got == want, "got {} lines, want {}", got.len(), want.len());
}

#[test]
fn bisection_agrees_with_a_full_scan_on_a_large_log() {
    let fx = Fx::new();
    let text = synthetic(50_000, 0x9e37_79b9_7f4a_7c15, 40);
    fx.raw(&text);
    let start = ts("2026-01-01T00:00:00Z");
    let mut queries = vec![EventQuery::default()];
    for k in 0..10i64 {
        let since = start + SignedDuration::from_secs(k * 7_900 + 7);
        let until = since + SignedDuration::from_secs(k * 500 + 1);
        // Both ends of each bound are checked without scanning the rest.
        queries.push(EventQuery {
            since: Some(since),
            limit: Some(20),
            ..Default::default()
        });
        queries.push(EventQuery {
            until: Some(until),
            tail: Some(20),
            ..Default::default()
        });
        queries.push(EventQuery {
            since: Some(since),
            until: Some(until),
            types: vec!["a".into(), "state_initialized".into()],
            ..Default::default()
        });
        queries.push(EventQuery {
            since: Some(since),
            session: Some("s2".into()),
            tail: Some(5),
            ..Default::default()
        });
        queries.push(EventQuery {
            until: Some(until),
            reverse: true,
            limit: Some(7),
            ..Default::default()
        });
    }
    queries.push(EventQuery {
        since: Some(ts("2030-01-01T00:00:00Z")),
        ..Default::default()
    });
    queries.push(EventQuery {
        until: Some(ts("2020-01-01T00:00:00Z")),
        ..Default::default()
    });
    check_queries(&fx, &text, &queries);
    // The same log split into segments reads the same.
    let (first, rest) = text.split_at(text.len() / 3);
    let cut = first.rfind('\n').unwrap() + 1;
    let fx2 = Fx::new();
    fx2.raw(&text[..cut]);
    fx2.log().rotate().unwrap();
    let (second, third) = text[cut..].split_at(rest.len() / 2);
    let cut2 = second.rfind('\n').unwrap() + 1;
    fx2.raw(&text[cut..cut + cut2]);
    fx2.log().rotate().unwrap();
    fx2.raw(&text[cut + cut2..]);
    let _ = third;
    assert_eq!(fx2.segments().len(), 2);
    check_queries(&fx2, &text, &queries);
}

#[test]
fn every_filter_alone() {
    let fx = Fx::new();
    let t0 = ts("2026-03-01T00:00:00Z");
    let mut text = String::new();
    for i in 0..40u64 {
        let t = t0 + SignedDuration::from_secs(i as i64 * 60);
        text.push_str(&our_line(
            t,
            ["x", "y"][(i % 2) as usize],
            ["p", "q", "r"][(i % 3) as usize],
            i + 1,
            5,
        ));
    }
    fx.raw(&text);
    let at = |min: i64| t0 + SignedDuration::from_secs(min * 60);
    let cases = [
        (
            EventQuery {
                types: vec!["x".into()],
                ..Default::default()
            },
            (1..=40).filter(|s| s % 2 == 1).collect::<Vec<u64>>(),
        ),
        (
            EventQuery {
                types: vec!["x".into(), "y".into()],
                ..Default::default()
            },
            (1..=40).collect(),
        ),
        (
            EventQuery {
                types: vec!["z".into()],
                ..Default::default()
            },
            vec![],
        ),
        (
            EventQuery {
                session: Some("q".into()),
                ..Default::default()
            },
            (1..=40).filter(|s| (s - 1) % 3 == 1).collect(),
        ),
        (
            EventQuery {
                since: Some(at(30)),
                ..Default::default()
            },
            (31..=40).collect(),
        ),
        (
            EventQuery {
                until: Some(at(2)),
                ..Default::default()
            },
            vec![1, 2, 3],
        ),
        (
            EventQuery {
                since: Some(at(5)),
                until: Some(at(5)),
                ..Default::default()
            },
            vec![6],
        ),
        (
            EventQuery {
                limit: Some(3),
                ..Default::default()
            },
            vec![1, 2, 3],
        ),
        (
            EventQuery {
                tail: Some(3),
                ..Default::default()
            },
            vec![38, 39, 40],
        ),
        (
            EventQuery {
                reverse: true,
                limit: Some(2),
                ..Default::default()
            },
            vec![40, 39],
        ),
        (
            EventQuery {
                reverse: true,
                tail: Some(2),
                ..Default::default()
            },
            vec![40, 39],
        ),
        (
            EventQuery {
                tail: Some(5),
                limit: Some(2),
                ..Default::default()
            },
            vec![36, 37],
        ),
        (
            EventQuery {
                limit: Some(0),
                ..Default::default()
            },
            vec![],
        ),
        (
            EventQuery {
                tail: Some(0),
                ..Default::default()
            },
            vec![],
        ),
        (
            EventQuery {
                types: vec!["y".into()],
                session: Some("p".into()),
                since: Some(at(10)),
                tail: Some(2),
                ..Default::default()
            },
            vec![34, 40],
        ),
    ];
    for (q, want) in cases {
        assert_eq!(fx.seqs(&q), want, "{q:?}");
    }
    check_queries(&fx, &text, &[EventQuery::default()]);
}

/// Cases of the property tests: `PROPTEST_CASES` if set.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn arb_query() -> impl Strategy<Value = EventQuery> {
    let start = ts("2026-01-01T00:00:00Z");
    (
        proptest::option::of(0i64..2_000),
        proptest::option::of(0i64..2_500),
        proptest::sample::subsequence(vec!["a", "b", "c", "state_initialized"], 0..3),
        proptest::option::of(prop_oneof![Just("s1"), Just("s2")]),
        proptest::option::of(0usize..30),
        proptest::option::of(0usize..30),
        any::<bool>(),
    )
        .prop_map(
            move |(since, until, types, session, limit, tail, reverse)| EventQuery {
                since: since.map(|s| start + SignedDuration::from_secs(s)),
                until: until.map(|u| start + SignedDuration::from_secs(u)),
                types: types.into_iter().map(String::from).collect(),
                session: session.map(String::from),
                limit,
                tail,
                reverse,
                progress: None,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    /// Queries on random time-ordered logs (seed lines, blank and corrupt
    /// lines, jitter within the slack, optionally split into segments)
    /// return exactly what a naive full scan does.
    #[test]
    fn queries_agree_with_a_naive_scan(
        n in 1usize..1_500,
        seed in 1u64..u64::MAX,
        pad in 0usize..200,
        splits in proptest::collection::vec(0.0f64..1.0, 0..3),
        queries in proptest::collection::vec(arb_query(), 1..12),
    ) {
        let fx = Fx::new();
        let text = synthetic(n, seed, pad);
        let mut cuts: Vec<usize> = splits
            .iter()
            .map(|f| text[..(text.len() as f64 * f) as usize].rfind('\n').map_or(0, |i| i + 1))
            .collect();
        cuts.sort();
        let mut at = 0;
        for c in cuts {
            fx.raw(&text[at..c]);
            fx.log().rotate().unwrap();
            at = c;
        }
        fx.raw(&text[at..]);
        let all = naive(&text);
        for q in &queries {
            let got = fx.query(q).0;
            let want = expected(&all, q);
            prop_assert_eq!(got, want, "{:?}", q);
        }
        prop_assert_eq!(fx.log().last_seq().unwrap(), text.lines().filter(|l| !l.trim().is_empty()).count() as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(32), ..ProptestConfig::default() })]

    /// Retention on random logs: the dry run predicts the real run; kept
    /// events keep their `seq` and bytes; nothing at or after the cutoff
    /// goes; numbering continues; a second run finds nothing more.
    #[test]
    fn cleanup_keeps_what_it_must(
        n in 1usize..600,
        seed in 1u64..u64::MAX,
        cut_at in 0.0f64..1.2,
        splits in proptest::collection::vec(0.0f64..1.0, 0..3),
    ) {
        let fx = Fx::new();
        let text = synthetic(n, seed, 10);
        let mut cuts: Vec<usize> = splits
            .iter()
            .map(|f| text[..(text.len() as f64 * f) as usize].rfind('\n').map_or(0, |i| i + 1))
            .collect();
        cuts.sort();
        let mut at = 0;
        for c in cuts {
            fx.raw(&text[at..c]);
            fx.log().rotate().unwrap();
            at = c;
        }
        fx.raw(&text[at..]);
        let all = naive(&text);
        let records = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
        let span = all.last().map_or(0, |l| ts("2026-01-01T00:00:00Z").duration_until(l.ts).as_secs());
        let cutoff = ts("2026-01-01T00:00:00Z") + SignedDuration::from_secs((span as f64 * cut_at) as i64);
        let dry = fx.log().cleanup(cutoff, true).unwrap();
        let done = fx.log().cleanup(cutoff, false).unwrap();
        prop_assert_eq!(dry.events_removed, done.events_removed);
        let after = fx.query(&EventQuery::default());
        prop_assert!(after.1.iter().all(|w| !w.contains("torn")), "{:?}", after.1);
        let before: Vec<(u64, String)> = all.iter().map(|l| (l.seq, l.raw.clone())).collect();
        // What is left is a subsequence of what was, unchanged.
        let mut it = before.iter();
        for l in &after.0 {
            prop_assert!(it.any(|b| b == l), "{:?} is new or moved", l);
        }
        let kept: BTreeSet<u64> = after.0.iter().map(|l| l.0).collect();
        for l in all.iter().filter(|l| l.ts >= cutoff) {
            prop_assert!(kept.contains(&l.seq), "seq {} at {} lost (cutoff {})", l.seq, l.ts, cutoff);
        }
        prop_assert!(done.events_removed <= records);
        prop_assert_eq!(fx.log().last_seq().unwrap(), records);
        prop_assert_eq!(fx.log().cleanup(cutoff, false).unwrap().events_removed, 0);
        prop_assert_eq!(fx.append("next").seq, Some(records + 1));
    }
}

/// Old events: mstate lines dated 2020 with seq 1..=n.
fn old_events(fx: &Fx, n: u64) {
    let t0 = ts("2020-01-01T00:00:00Z");
    let mut text = String::new();
    for i in 1..=n {
        text.push_str(&our_line(
            t0 + SignedDuration::from_secs(i as i64),
            "old",
            "s",
            i,
            10,
        ));
    }
    fx.raw(&text);
}

#[test]
fn cleanup_drops_old_events_keeps_new_ones_and_seq_goes_on() {
    let fx = Fx::new();
    old_events(&fx, 100);
    for _ in 0..10 {
        fx.append("new");
    }
    let cutoff = ts("2021-01-01T00:00:00Z");
    let before = fs::read(fx.live()).unwrap();
    let dry = fx.log().cleanup(cutoff, true).unwrap();
    assert_eq!(dry.events_removed, 100);
    assert_eq!(dry.files.len(), 1);
    assert_eq!(
        fs::read(fx.live()).unwrap(),
        before,
        "a dry run changes nothing"
    );
    assert!(!fx.layout.segments_dir(&fx.id).exists());

    let done = fx.log().cleanup(cutoff, false).unwrap();
    assert_eq!(done.events_removed, 100);
    assert_eq!(fx.all_seqs(), (101..=110).collect::<Vec<_>>());
    // The live file starts afresh under the seed's name; the sealed part
    // keeps the seq of its first remaining event.
    assert_eq!(fs::metadata(fx.live()).unwrap().len(), 0);
    let segs = fx.segments();
    assert_eq!(segs.len(), 1);
    assert!(fs::read_to_string(&segs[0])
        .unwrap()
        .starts_with("{\"mstate_segment\":{\"first_seq\":101}}\n"));
    assert_eq!(fx.append("after").seq, Some(111));
    assert_eq!(fx.log().cleanup(cutoff, false).unwrap().events_removed, 0);

    // Everything goes: numbering still continues.
    let later = Timestamp::now() + SignedDuration::from_secs(3600);
    assert_eq!(fx.log().cleanup(later, true).unwrap().events_removed, 11);
    assert_eq!(fx.log().cleanup(later, false).unwrap().events_removed, 11);
    assert_eq!(fx.all_seqs(), Vec::<u64>::new());
    assert_eq!(fx.log().last_seq().unwrap(), 111);
    assert_eq!(fx.append("again").seq, Some(112));
    assert_eq!(fx.all_seqs(), [112]);
    assert!(fx.segments().len() <= 2);
}

#[test]
fn cleanup_never_renumbers_the_seeds_lines() {
    let fx = Fx::new();
    for i in 0..10 {
        fx.raw(seed_line(&format!("2020-01-01T00:00:{i:02}Z"), "old", "s"));
    }
    for i in 0..10 {
        fx.raw(seed_line(&format!("2026-01-01T00:00:{i:02}Z"), "new", "s"));
    }
    let removed = fx.log().cleanup(ts("2021-01-01T00:00:00Z"), false).unwrap();
    assert_eq!(removed.events_removed, 10);
    assert_eq!(fx.all_seqs(), (11..=20).collect::<Vec<_>>());
    assert_eq!(fx.append("ours").seq, Some(21));
}

#[test]
fn cleanup_keeps_lines_it_cannot_date_and_what_numbering_needs() {
    let fx = Fx::new();
    let old = |i: u32| seed_line(&format!("2020-01-01T00:00:{i:02}Z"), "old", "s");
    fx.raw(old(1));
    fx.raw(old(2));
    fx.raw(b"undatable garbage\n");
    fx.raw(old(3));
    // Kept with an explicit seq: the old line before it can go.
    fx.raw(our_line(ts("2026-01-01T00:00:00Z"), "new", "s", 5, 1));
    fx.raw(old(4));
    // Kept without seq: the old line before it must stay.
    fx.raw(seed_line("2026-01-01T00:00:01Z", "new", "s"));
    fx.raw(our_line(ts("2026-01-01T00:00:02Z"), "new", "s", 8, 1));
    let before = fx.all_seqs();
    assert_eq!(before, [1, 2, 4, 5, 6, 7, 8]);
    let r = fx.log().cleanup(ts("2021-01-01T00:00:00Z"), false).unwrap();
    assert_eq!(r.events_removed, 3);
    let seg = fs::read_to_string(&fx.segments()[0]).unwrap();
    assert!(seg.contains("undatable garbage"));
    assert!(!seg.contains(
        "00:00:01Z\",\"milestone_id\":\"m1\",\"session_id\":\"s\",\"event_type\":\"old\""
    ));
    assert!(seg.contains("2020-01-01T00:00:04Z"));
    assert_eq!(fx.all_seqs(), [5, 6, 7, 8]);
    assert_eq!(fx.append("x").seq, Some(9));
}

#[test]
fn a_seal_interrupted_after_its_link_is_harmless() {
    let fx = Fx::new();
    for _ in 0..3 {
        fx.append("a");
    }
    // What a crash between the link and the rename leaves behind.
    let segdir = fx.layout.segments_dir(&fx.id);
    fs::create_dir_all(&segdir).unwrap();
    fs::hard_link(fx.live(), segdir.join(format!("{:020}.jsonl", 1))).unwrap();
    assert_eq!(fx.all_seqs(), [1, 2, 3]);
    assert_eq!(fx.append("b").seq, Some(4));
    assert_eq!(
        fx.log()
            .cleanup(ts("2000-01-01T00:00:00Z"), false)
            .unwrap()
            .events_removed,
        0
    );
    assert!(fx.segments().is_empty());
    assert_eq!(fx.all_seqs(), [1, 2, 3, 4]);
}

#[test]
fn a_linked_segment_directory_is_refused() {
    let fx = Fx::new();
    fx.append("a");
    let outside = tempfile::tempdir().unwrap();
    let planted = outside.path().join(format!("{:020}.jsonl", 1));
    fs::write(
        &planted,
        our_line(ts("2020-01-01T00:00:00Z"), "x", "s", 1, 1),
    )
    .unwrap();
    fs::create_dir_all(fx.layout.events().join("segments")).unwrap();
    std::os::unix::fs::symlink(outside.path(), fx.layout.segments_dir(&fx.id)).unwrap();
    let err = fx
        .log()
        .query(&EventQuery::default(), &mut |_| Ok(true))
        .unwrap_err();
    assert!(matches!(err, crate::error::Error::Corrupt { .. }), "{err}");
    assert!(fx.log().cleanup(ts("2021-01-01T00:00:00Z"), false).is_err());
    assert!(fx.log().cleanup(Timestamp::now(), false).is_err());
    let names: Vec<_> = fs::read_dir(outside.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "nothing written through the link");
}

#[test]
fn a_torn_segment_tail_is_reported_and_repaired() {
    let fx = Fx::new();
    fx.append("a");
    fx.append("b");
    let seg = fx.log().rotate().unwrap().unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(b"{\"times")
        .unwrap();
    fx.append("c");
    let (lines, warnings) = fx.query(&EventQuery::default());
    assert_eq!(lines.iter().map(|l| l.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("torn") && warnings[0].contains("segments"),
        "{warnings:?}"
    );
    assert!(fx.log().repair().unwrap().is_some());
    assert_eq!(fx.quarantined(), vec![b"{\"times".to_vec()]);
    assert!(fx.query(&EventQuery::default()).1.is_empty());
}

#[test]
fn appends_racing_retention_lose_nothing() {
    let fx = Fx::new();
    old_events(&fx, 50);
    let cutoff = ts("2021-01-01T00:00:00Z");
    let writers = 4;
    let per = 100;
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let fx = &fx;
                s.spawn(move || {
                    let log = fx.log();
                    (0..per)
                        .map(|n| {
                            log.append(
                                &actor(),
                                "s",
                                &EventType::new("new").unwrap(),
                                &json!({"w": w, "n": n}),
                            )
                            .unwrap()
                            .seq
                            .unwrap()
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let fx = &fx;
        let done = &done;
        let janitor = s.spawn(move || {
            let mut removed = 0;
            let mut rounds = 0;
            while !done.load(Ordering::SeqCst) || rounds < 3 {
                removed += fx.log().cleanup(cutoff, false).unwrap().events_removed;
                fx.log().rotate().unwrap();
                rounds += 1;
            }
            removed
        });
        let mut seqs: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        done.store(true, Ordering::SeqCst);
        let removed = janitor.join().unwrap();
        assert_eq!(removed, 50);
        seqs.sort();
        assert_eq!(seqs, (51..=50 + (writers * per) as u64).collect::<Vec<_>>());
    });
    let (lines, warnings) = fx.query(&EventQuery::default());
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        lines.iter().map(|l| l.0).collect::<Vec<_>>(),
        (51..=450).collect::<Vec<_>>()
    );
    let pairs: BTreeSet<(u64, u64)> = lines
        .iter()
        .map(|(_, raw)| {
            let v = value(raw);
            (
                v["data"]["w"].as_u64().unwrap(),
                v["data"]["n"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(pairs.len(), writers * per);
}

/// Follow in a thread, sending each line's seq; returns the handle.
fn follow_in_thread<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    fx: &'s Fx,
    q: EventQuery,
    stop: &'s AtomicBool,
    tx: mpsc::Sender<(u64, String)>,
) -> std::thread::ScopedJoinHandle<'s, ReadReport> {
    s.spawn(move || {
        fx.log()
            .follow(&q, &|| stop.load(Ordering::SeqCst), &mut |l| {
                Ok(tx
                    .send((l.seq, l.raw().expect("a stored line").to_string()))
                    .is_ok())
            })
            .unwrap()
    })
}

#[test]
fn follow_hands_on_lines_a_writer_appends() {
    let fx = Fx::new();
    for _ in 0..3 {
        fx.append("past");
    }
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let follower = follow_in_thread(s, &fx, EventQuery::default(), &stop, tx);
        let mut seen: Vec<u64> = (0..3).map(|_| rx.recv().unwrap().0).collect();
        assert_eq!(seen, [1, 2, 3]);
        let writer = s.spawn(|| {
            for i in 0..50 {
                fx.append(if i % 2 == 0 { "even" } else { "odd" });
            }
        });
        while seen.len() < 53 {
            seen.push(rx.recv().unwrap().0);
        }
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
        follower.join().unwrap();
        assert_eq!(seen, (1..=53).collect::<Vec<_>>());
    });
}

#[test]
fn follow_filters_and_survives_a_seal() {
    let fx = Fx::new();
    fx.append("odd");
    fx.append("start");
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    let q = EventQuery {
        types: vec!["even".into(), "start".into()],
        tail: Some(1),
        ..Default::default()
    };
    std::thread::scope(|s| {
        let follower = follow_in_thread(s, &fx, q, &stop, tx);
        // The follower has read the past: what comes now is new.
        assert_eq!(rx.recv().unwrap().0, 2);
        let writer = s.spawn(|| {
            for i in 1..=60u64 {
                fx.append(if i % 2 == 0 { "even" } else { "odd" });
                if i % 20 == 0 {
                    fx.log().rotate().unwrap();
                }
            }
        });
        let mut seen = Vec::new();
        while seen.len() < 30 {
            let (seq, raw) = rx.recv().unwrap();
            assert!(raw.contains("\"event_type\":\"even\""));
            seen.push(seq);
        }
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
        follower.join().unwrap();
        // Lines 3..=62 were appended; the even ones have even seqs.
        assert_eq!(seen, (1..=30).map(|k| 2 * k + 2).collect::<Vec<_>>());
    });
    assert_eq!(fx.segments().len(), 3);
}

#[test]
fn follow_waits_for_a_line_being_written() {
    let fx = Fx::new();
    fx.append("first");
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let follower = follow_in_thread(s, &fx, EventQuery::default(), &stop, tx);
        assert_eq!(rx.recv().unwrap().0, 1);
        let line = seed_line("2030-01-01T00:00:00Z", "slow", "s");
        let (head, rest) = line.split_at(20);
        fx.raw(head);
        // Appended by a second writer after the half line is in place.
        fx.raw(rest);
        let (seq, raw) = rx.recv().unwrap();
        assert_eq!(seq, 2);
        assert_eq!(raw, line.trim_end());
        stop.store(true, Ordering::SeqCst);
        let report = follower.join().unwrap();
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    });
}

#[test]
fn follow_ends_when_the_sink_or_limit_says_so() {
    let fx = Fx::new();
    for _ in 0..5 {
        fx.append("a");
    }
    let mut n = 0;
    fx.log()
        .follow(&EventQuery::default(), &|| false, &mut |_| {
            n += 1;
            Ok(n < 2)
        })
        .unwrap();
    assert_eq!(n, 2);
    let mut got = Vec::new();
    let q = EventQuery {
        limit: Some(3),
        ..Default::default()
    };
    fx.log()
        .follow(&q, &|| false, &mut |l| {
            got.push(l.seq);
            Ok(true)
        })
        .unwrap();
    assert_eq!(got, [1, 2, 3]);
}

/// Throughput of a filtered full scan; run with
/// `cargo test --release -p mstate-store scan_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn scan_throughput() {
    let fx = Fx::new();
    let chunk = synthetic(200_000, 7, 150);
    let path: &Path = &fx.live();
    for _ in 0..10 {
        fx.raw(&chunk);
    }
    let size = fs::metadata(path).unwrap().len();
    for q in [
        EventQuery {
            types: vec!["zzz".into()],
            ..Default::default()
        },
        EventQuery {
            session: Some("s1".into()),
            types: vec!["a".into()],
            ..Default::default()
        },
        EventQuery::default(),
        EventQuery {
            tail: Some(10),
            ..Default::default()
        },
        EventQuery {
            since: Some(ts("2026-01-03T00:00:00Z")),
            limit: Some(10),
            ..Default::default()
        },
    ] {
        let start = std::time::Instant::now();
        let mut n = 0u64;
        fx.log()
            .query(&q, &mut |_| {
                n += 1;
                Ok(true)
            })
            .unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{q:?}: {n} lines of {} MB in {:.3}s = {:.0} MB/s",
            size / 1_000_000,
            secs,
            size as f64 / 1e6 / secs
        );
    }
}

/// Peak resident memory of this process, in MB (Linux).
fn peak_rss_mb() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// Recent-end queries and appends on a big time-ordered log; run with
/// `MSTATE_BIG_LOG_MB=10240 cargo test --release -p mstate-store big_log -- --ignored --nocapture`.
#[test]
#[ignore]
fn big_log_recent_end() {
    let mb: u64 = std::env::var("MSTATE_BIG_LOG_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let fx = Fx::new();
    let t0 = ts("2024-01-01T00:00:00Z");
    let mut t = t0;
    let mut seq = 0u64;
    {
        let f = fs::File::create(fx.live()).unwrap();
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        let mut written = 0u64;
        while written < mb << 20 {
            seq += 1;
            t += SignedDuration::from_millis(10);
            let l = our_line(t, ["a", "b", "c"][(seq % 3) as usize], "s1", seq, 120);
            written += l.len() as u64;
            w.write_all(l.as_bytes()).unwrap();
        }
        w.into_inner().unwrap().sync_all().unwrap();
    }
    println!("log of {mb} MB, {seq} lines, peak RSS {} MB", peak_rss_mb());
    let recent = t - SignedDuration::from_secs(5);
    let middle = t0 + t0.duration_until(t) / 2;
    let time = |name: &str, q: EventQuery| {
        let start = std::time::Instant::now();
        let mut n = 0u64;
        fx.log()
            .query(&q, &mut |_| {
                n += 1;
                Ok(true)
            })
            .unwrap();
        println!(
            "{name}: {n} lines in {:.2} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
    };
    time(
        "since 5s ago",
        EventQuery {
            since: Some(recent),
            ..Default::default()
        },
    );
    time(
        "tail 100",
        EventQuery {
            tail: Some(100),
            ..Default::default()
        },
    );
    time(
        "reverse limit 100 type b",
        EventQuery {
            reverse: true,
            limit: Some(100),
            types: vec!["b".into()],
            ..Default::default()
        },
    );
    time(
        "until 5s after start",
        EventQuery {
            until: Some(t0 + SignedDuration::from_secs(5)),
            ..Default::default()
        },
    );
    time(
        "since+until in the middle",
        EventQuery {
            since: Some(middle),
            until: Some(middle + SignedDuration::from_secs(3)),
            ..Default::default()
        },
    );
    let start = std::time::Instant::now();
    let e = fx.append("new");
    println!(
        "append: seq {:?} in {:.2} ms",
        e.seq,
        start.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(e.seq, Some(seq + 1));
    time(
        "full scan, type c",
        EventQuery {
            types: vec!["c".into()],
            ..Default::default()
        },
    );
    time(
        "full reverse scan, type c",
        EventQuery {
            types: vec!["c".into()],
            reverse: true,
            ..Default::default()
        },
    );
    println!("peak RSS {} MB", peak_rss_mb());
}
