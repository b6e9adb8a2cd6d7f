//! Event logs of any size in mstate's on-disk format, written directly and
//! streamed (10M events, about 2.5 GB, in seconds), once: a log is reused
//! when its completion marker matches.
//!
//! Event `i` (0-based) has `seq` `i + 1` and a timestamp `i` ms plus a few
//! µs after 2026-01-01T00:00:00Z (strictly increasing, µs precision). Its
//! type cycles through four common types, except every 1000th event,
//! which is `rare`: a `--type rare` query scans the whole log and matches
//! 0.1% of it.

use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use crate::data::target_dir;

/// 2026-01-01T00:00:00Z.
const BASE_SECS: i64 = 1_767_225_600;

const TYPES: [&str; 4] = ["task_started", "progress", "task_completed", "state_saved"];

/// Microseconds after the base of event `i`.
fn micros(i: u64) -> i64 {
    (i * 1000 + (i * 37) % 1000) as i64
}

/// The timestamp of event `i`, as written.
pub fn timestamp(i: u64) -> String {
    let us = micros(i);
    let ts = Timestamp::from_second(BASE_SECS + us / 1_000_000).expect("in range");
    format!(
        "{}.{:06}Z",
        ts.strftime("%Y-%m-%dT%H:%M:%S"),
        us % 1_000_000
    )
}

/// The type of event `i`.
pub fn event_type(i: u64) -> &'static str {
    if i % 1000 == 999 {
        "rare"
    } else {
        TYPES[(i % 4) as usize]
    }
}

/// A generated store: the directory holding `.milestones/`, and its log.
pub struct Generated {
    pub dir: PathBuf,
    pub log: PathBuf,
    pub bytes: u64,
}

/// The store of a log of `n` events under `target/bench-data/`,
/// generating it if it is not there yet.
pub fn ensure(n: u64) -> std::io::Result<Generated> {
    let dir = target_dir().join("bench-data").join(format!("loggen-{n}"));
    let root = dir.join(".milestones/state");
    let log = root.join("events/milestone-m.jsonl");
    let marker = dir.join("complete");
    if let (Ok(m), Ok(meta)) = (std::fs::read_to_string(&marker), std::fs::metadata(&log)) {
        if m.trim() == format!("{n} {}", meta.len()) {
            return Ok(Generated {
                dir,
                log,
                bytes: meta.len(),
            });
        }
    }
    for d in [
        "active",
        "completed",
        "sessions",
        "backups",
        "events",
        ".locks",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    let start = std::time::Instant::now();
    let bytes = write_log(&log, n)?;
    std::fs::write(&marker, format!("{n} {bytes}\n"))?;
    eprintln!(
        "loggen: {n} events, {} in {:.1} s",
        crate::stats::bytes(bytes),
        start.elapsed().as_secs_f64()
    );
    Ok(Generated { dir, log, bytes })
}

/// Write `n` events to `path` (through a temporary file); returns its size.
pub fn write_log(path: &Path, n: u64) -> std::io::Result<u64> {
    let tmp = path.with_extension("jsonl.tmp");
    let f = std::fs::File::create(&tmp)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut prefix = String::new();
    let mut prefix_secs = i64::MIN;
    let mut total = 0u64;
    let mut line = Vec::with_capacity(512);
    for i in 0..n {
        let us = micros(i);
        let secs = BASE_SECS + us / 1_000_000;
        if secs != prefix_secs {
            prefix = Timestamp::from_second(secs)
                .expect("in range")
                .strftime("%Y-%m-%dT%H:%M:%S")
                .to_string();
            prefix_secs = secs;
        }
        line.clear();
        writeln!(
            line,
            "{{\"timestamp\":\"{prefix}.{:06}Z\",\"milestone_id\":\"m\",\"session_id\":\"s\",\"event_type\":\"{}\",\"data\":{{\"task\":\"step-{i:07}\",\"percentage\":{},\"message\":\"compiled crate {} of 500 in 0.{:02}s\"}},\"pid\":1,\"user\":\"u\",\"seq\":{},\"host\":\"h\"}}",
            us % 1_000_000,
            event_type(i),
            i % 100,
            i % 500,
            i % 100,
            i + 1
        )?;
        w.write_all(&line)?;
        total += line.len() as u64;
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, path)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mstate_store::model::Event;

    #[test]
    fn lines_are_mstate_events_in_order() {
        let dir = std::env::temp_dir().join(format!("mstate-loggen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("l.jsonl");
        write_log(&p, 2000).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let events: Vec<Event> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 2000);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.seq, Some(i as u64 + 1));
            assert_eq!(e.timestamp, timestamp(i as u64));
            assert_eq!(e.event_type, event_type(i as u64));
        }
        assert!(events.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
        assert_eq!(events[999].event_type, "rare");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
