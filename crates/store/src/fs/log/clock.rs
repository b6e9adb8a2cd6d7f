//! Evidence of wall-clock steps, for retention.
//!
//! Retention compares stored wall-clock times (event timestamps, the time
//! in a backup's name, a session file's modification time) with the wall
//! clock, which steps: forward and back, by NTP, a suspended laptop, a VM
//! restored from a snapshot, a process run under `faketime`. What does
//! not step is the boot clock (`CLOCK_BOOTTIME`). `now - boot clock` is
//! the wall-clock time the machine booted at, as the wall clock tells it
//! now: constant while the clock runs, moved by exactly the size of each
//! step. Every append makes sure a marker file for the current value (in
//! 10-second buckets) exists in `events/clock/`, holding this boot's id:
//! one stat per append, one small file per boot and per step.
//!
//! A cleanup then knows, for this boot, every clock offset anything was
//! written under. If the clock now reads later than the smallest of them
//! by more than a bucket, it stepped forward since something was written,
//! and the cutoff moves back by that step: nothing written in this boot is
//! judged older than it really is. The correction only ever keeps more
//! (after a legitimate forward step, retention keeps this boot's files
//! that much longer, until the next boot). Files from earlier boots are
//! judged by the wall clock alone.

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fs::atomic::{ensure_dir, read_opt, temp_path};
use crate::fs::layout::Layout;
use crate::io::Io;
use crate::process;
use crate::time;

use super::EventLog;

/// Resolution of the markers: offsets closer than this are one.
const BUCKET_MICROS: i64 = 10_000_000;

/// One marker: a clock offset something was written under in one boot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    boot_id: String,
    /// `now - boot clock`, microseconds since the epoch.
    apparent_boot_us: i64,
    /// The boot clock when the marker was made, microseconds.
    boot_us: u64,
    /// The wall clock then.
    created_at: String,
}

/// What a retention decision rests on.
#[derive(Debug, Clone, Serialize)]
pub struct ClockCheck {
    /// How far the wall clock stepped forward since something was written
    /// in this boot (0 if it did not), in seconds.
    pub step_seconds: f64,
    /// Wording for the `state_cleaned` event.
    pub rests_on: String,
}

/// `events/clock/`.
fn clock_dir(layout: &Layout) -> PathBuf {
    layout.events().join("clock")
}

impl EventLog<'_> {
    /// Make sure the marker of the current clock offset exists (no sync:
    /// a marker only matters within the boot that wrote it).
    pub(super) fn note_clock(&self) -> Result<()> {
        let now = time::now();
        let apparent = time::apparent_boot_micros(now);
        let dir = clock_dir(self.layout);
        let path = dir.join(format!("{}.json", apparent.div_euclid(BUCKET_MICROS)));
        match self.io.metadata(&path) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("inspect", &path, e)),
        }
        let Some(boot_id) = process::boot_id() else {
            return Ok(());
        };
        self.ensure_events_dir()?;
        ensure_dir(self.io, &dir)?;
        let marker = Marker {
            boot_id,
            apparent_boot_us: apparent,
            boot_us: time::boot_micros(),
            created_at: time::format_micros(now),
        };
        let bytes =
            serde_json::to_vec(&marker).map_err(|e| Error::io("encode", &path, e.into()))?;
        // Written aside and renamed into place, so a marker is never seen
        // empty (a killed writer leaves a temp file doctor removes).
        let tmp = temp_path(&path);
        let written = (|| {
            let mut f = self.io.create_new(&tmp).ctx("create", &tmp)?;
            f.write_all(&bytes).ctx("write", &tmp)?;
            drop(f);
            match self.io.rename_noreplace(&tmp, &path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(Error::io("rename", &tmp, e)),
            }
        })();
        let _ = self.io.remove_file(&tmp);
        written
    }
}

/// How far the wall clock stepped forward since anything was written in
/// this boot, from the markers; with `remove_before` (and not `dry_run`),
/// markers of earlier boots made before that time are removed.
pub fn clock_check(
    io: &dyn Io,
    layout: &Layout,
    remove_before: Option<jiff::Timestamp>,
) -> Result<ClockCheck> {
    let dir = clock_dir(layout);
    let entries = match io.read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("list", &dir, e)),
    };
    let boot = process::boot_id();
    let apparent_now = time::apparent_boot_micros(time::now());
    let mut min_offset: Option<i64> = None;
    for e in entries {
        if !e.name.ends_with(".json") {
            continue;
        }
        let path = dir.join(&e.name);
        let Some(bytes) = read_opt(io, &path)? else {
            continue;
        };
        let Ok(m) = serde_json::from_slice::<Marker>(&bytes) else {
            continue;
        };
        if boot.as_deref() == Some(m.boot_id.as_str()) {
            min_offset = Some(min_offset.map_or(m.apparent_boot_us, |o| o.min(m.apparent_boot_us)));
        } else if let Some(before) = remove_before {
            let old = time::parse_timestamp(&m.created_at).is_some_and(|t| t < before);
            if old {
                match io.remove_file(&path) {
                    Ok(()) => {}
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(Error::io("remove", &path, err)),
                }
            }
        }
    }
    let step = min_offset
        .map(|o| apparent_now.saturating_sub(o))
        .filter(|&s| s > BUCKET_MICROS)
        .unwrap_or(0);
    let rests_on = if step > 0 {
        format!(
            "the wall clock, moved back by {:.0} s: the boot clock shows the wall clock stepped forward that much since something was written in this boot",
            step as f64 / 1e6
        )
    } else {
        "the wall clock (the boot clock shows no forward step since anything was written in this boot)".to_string()
    };
    Ok(ClockCheck {
        step_seconds: step as f64 / 1e6,
        rests_on,
    })
}
