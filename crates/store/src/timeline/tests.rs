use super::*;
use crate::fs::log::line;
use proptest::prelude::*;
use serde_json::{json, Value};

/// A stored line of event `seq` at `secs` (seconds after 2026-01-01).
fn line_text(secs: i64, seq: u64, ty: &str, session: &str) -> String {
    let ts = Timestamp::from_second(1_767_225_600 + secs).unwrap();
    json!({
        "timestamp": crate::time::format_micros(ts),
        "milestone_id": "m",
        "session_id": session,
        "event_type": ty,
        "data": {"n": seq},
        "seq": seq,
    })
    .to_string()
}

/// Feed `lines` (in log order) through a timeline with `window`; the
/// `seq`s shown, with their out-of-order marks, and the summary.
fn fold(lines: &[String], window: Window) -> (Vec<(u64, bool)>, Summary) {
    let mut t = Timeline::new(Options {
        window,
        no_sessions: false,
    });
    let mut shown = Vec::new();
    let mut out = |e: &Entry| {
        shown.push((e.seq(), e.out_of_order()));
        Ok(true)
    };
    for text in lines {
        let (raw, fields) = line::fields(text.as_bytes()).unwrap();
        let ts = line::parse_ts(fields.timestamp.as_deref().unwrap().as_bytes()).unwrap();
        let seq = line::explicit_seq(raw.as_bytes()).unwrap();
        let l = LogLine::from_line(raw, ts, seq, fields);
        assert!(t.push(&l, &mut out).unwrap());
    }
    let summary = t.finish(&mut out).unwrap();
    (shown, summary)
}

#[test]
fn an_event_out_of_order_within_the_window_is_put_in_place() {
    // seq 4 is stamped before seq 2 and 3: three events back.
    let lines = [
        line_text(10, 1, "a", "s"),
        line_text(20, 2, "a", "s"),
        line_text(30, 3, "a", "s"),
        line_text(15, 4, "a", "s"),
        line_text(40, 5, "a", "s"),
    ];
    let window = Window {
        events: 3,
        bytes: 1 << 20,
    };
    let (shown, summary) = fold(&lines, window);
    assert_eq!(
        shown,
        [(1, false), (4, false), (2, false), (3, false), (5, false)]
    );
    assert_eq!(summary.out_of_order, 0);
    assert_eq!(summary.events, 5);
}

#[test]
fn an_event_beyond_the_window_is_shown_where_read_and_marked() {
    let lines = [
        line_text(10, 1, "a", "s"),
        line_text(20, 2, "a", "s"),
        line_text(30, 3, "a", "s"),
        line_text(40, 4, "a", "s"),
        line_text(15, 5, "a", "s"),
        line_text(50, 6, "a", "s"),
    ];
    // Two events held: seq 1 and 2 are shown before seq 5 arrives.
    let window = Window {
        events: 2,
        bytes: 1 << 20,
    };
    let (shown, summary) = fold(&lines, window);
    assert_eq!(
        shown,
        [
            (1, false),
            (2, false),
            (5, true),
            (3, false),
            (4, false),
            (6, false)
        ]
    );
    assert_eq!(summary.out_of_order, 1);
    assert_eq!(summary.out_of_order_seqs, [5]);
    // The span still covers the late event's time.
    assert_eq!(summary.spans.len(), 1);
    assert_eq!(summary.spans[0].events, 6);
    assert_eq!(
        summary.spans[0].start,
        Timestamp::from_second(1_767_225_610).unwrap()
    );
}

#[test]
fn the_byte_bound_limits_the_window_too() {
    let lines = [
        line_text(10, 1, "a", "s"),
        line_text(20, 2, "a", "s"),
        line_text(30, 3, "a", "s"),
        line_text(15, 4, "a", "s"),
    ];
    // Room for one line only: each line leaves when the next comes, so
    // seq 2 is shown before seq 4 is read.
    let one = lines[0].len() + 1;
    let (shown, summary) = fold(
        &lines,
        Window {
            events: 100,
            bytes: one,
        },
    );
    assert_eq!(shown, [(1, false), (2, false), (4, true), (3, false)]);
    assert_eq!(summary.out_of_order, 1);
    let (shown, _) = fold(
        &lines,
        Window {
            events: 100,
            bytes: 10 * one,
        },
    );
    assert_eq!(shown, [(1, false), (4, false), (2, false), (3, false)]);
}

proptest! {
    /// Any displacement within the documented bound gives the full sort's
    /// order; none is ever lost or repeated.
    #[test]
    fn within_the_bound_the_order_is_a_full_sort(
        times in proptest::collection::vec(0i64..50, 1..60),
        w in 1usize..8,
    ) {
        let lines: Vec<String> = times
            .iter()
            .enumerate()
            .map(|(i, &t)| line_text(t, i as u64 + 1, "a", "s"))
            .collect();
        let (shown, summary) = fold(&lines, Window { events: w, bytes: 1 << 30 });
        let mut seqs: Vec<u64> = shown.iter().map(|s| s.0).collect();
        seqs.sort();
        prop_assert_eq!(seqs, (1..=times.len() as u64).collect::<Vec<_>>());
        // The bound: every event's later-stamped predecessors are at most
        // `w` events back.
        let within = (0..times.len()).all(|p| {
            (0..p).all(|q| times[q] <= times[p] || p - q <= w)
        });
        if within {
            let mut sorted: Vec<(i64, u64)> =
                times.iter().enumerate().map(|(i, &t)| (t, i as u64 + 1)).collect();
            sorted.sort();
            let want: Vec<(u64, bool)> = sorted.iter().map(|s| (s.1, false)).collect();
            prop_assert_eq!(shown, want);
            prop_assert_eq!(summary.out_of_order, 0);
        }
    }
}

#[test]
fn spans_fold_sessions() {
    let lines = [
        line_text(10, 1, "session_created", "s1"),
        line_text(11, 2, "x", "no-session"),
        line_text(12, 3, "x", "s2"),
        line_text(70, 4, "session_ended", "s1"),
    ];
    let (_, summary) = fold(&lines, Window::default());
    let spans = &summary.spans;
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0].session_id, "s1");
    assert_eq!(spans[0].events, 2);
    assert!(spans[0].ended);
    assert_eq!(spans[0].duration(), jiff::SignedDuration::from_secs(60));
    assert_eq!(spans[1].session_id, "s2");
    assert!(!spans[1].ended);
}

#[test]
fn entries_keep_their_members() {
    let text = r#"{"timestamp":"2026-01-01T00:00:00Z","event":"st\u0061rt","session_id":"s","data":{"k": [1, 2]}}"#;
    let (raw, fields) = line::fields(text.as_bytes()).unwrap();
    let l = LogLine::from_line(
        raw,
        line::parse_ts(b"2026-01-01T00:00:00Z").unwrap(),
        1,
        fields,
    );
    let e = Entry::new(&l, false, String::new()).unwrap();
    assert_eq!(e.time_text(), Some("2026-01-01T00:00:00Z"));
    assert_eq!(e.event_type(), Some("start"));
    assert_eq!(e.session_id(), Some("s"));
    assert_eq!(e.data(), Some(r#"{"k": [1, 2]}"#));
    assert_eq!(e.raw(), text);
}

/// What serde_json writes for `text` through a `Value`.
fn via_value(text: &str, pretty: bool) -> String {
    let v: Value = serde_json::from_str(text).unwrap();
    if pretty {
        serde_json::to_string_pretty(&v).unwrap()
    } else {
        v.to_string()
    }
}

#[test]
fn write_json_declines_what_needs_a_parse() {
    let mut out = Vec::new();
    assert!(!write_json(r#"{"a":"\u0072"}"#, None, &mut out));
    assert!(!write_json(r#"{"a":1,"b":{"a":2},"a":3}"#, None, &mut out));
    assert!(!write_json(r#"{"e":1E5}"#, None, &mut out));
    assert!(out.is_empty());
    // The same key in different objects is no repeat.
    assert!(write_json(
        r#"{"a":{"a":1},"b":[{"a":2},{"a":3}]}"#,
        None,
        &mut out
    ));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"{"a":{"a":1},"b":[{"a":2},{"a":3}]}"#
    );
    for text in [
        r#"{"n": 1.50, "z": -0, "big": 123456789012345678901234567890, "t": true}"#,
        "{ \"a\" : [ ] , \"b\" : { } ,\n\"c\":\t[1 ,2] }",
        r#"[{"x": "é ü"}, null, true]"#,
    ] {
        for pretty in [false, true] {
            let mut out = Vec::new();
            assert!(write_json(text, pretty.then_some(0), &mut out), "{text}");
            assert_eq!(String::from_utf8(out).unwrap(), via_value(text, pretty));
        }
    }
}

proptest! {
    /// Whenever `write_json` writes, it writes what serde_json writes.
    #[test]
    fn write_json_agrees_with_serde_json(v in crate::json::arb_value(), spaced in any::<bool>()) {
        let text = if spaced {
            serde_json::to_string_pretty(&v).unwrap().replace('\n', " \n\t")
        } else {
            v.to_string()
        };
        for pretty in [false, true] {
            let mut out = Vec::new();
            if write_json(&text, pretty.then_some(0), &mut out) {
                prop_assert_eq!(String::from_utf8(out).unwrap(), via_value(&text, pretty));
            }
        }
        // Nested one level, as an array element.
        let mut out = Vec::new();
        if write_json(&text, Some(1), &mut out) {
            let mut want = Vec::new();
            crate::json::write_nested(via_value(&text, true).as_bytes(), 1, &mut want).unwrap();
            prop_assert_eq!(out, want);
        }
    }
}

#[test]
fn an_entry_of_an_event_matches_the_entry_of_its_line() {
    let text = line_text(5, 9, "state_saved", "s");
    let (raw, fields) = line::fields(text.as_bytes()).unwrap();
    let ts = line::parse_ts(fields.timestamp.as_deref().unwrap().as_bytes()).unwrap();
    let event: crate::model::Event = serde_json::from_str(raw).unwrap();
    let a = Entry::new(
        &LogLine::from_line(raw, ts, 9, fields),
        false,
        String::new(),
    )
    .unwrap();
    let b = Entry::new(&LogLine::from_event(&event, ts, 9), false, String::new()).unwrap();
    assert_eq!(b.raw(), a.raw());
    assert_eq!(b.time_text(), a.time_text());
    assert_eq!(b.event_type(), Some("state_saved"));
    assert_eq!(b.event_type(), a.event_type());
    assert_eq!(b.session_id(), a.session_id());
    assert_eq!(b.data(), a.data());
    assert_eq!((b.timestamp(), b.seq()), (a.timestamp(), a.seq()));
}
