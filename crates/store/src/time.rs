//! Timestamps and the time arguments users type.
//!
//! mstate writes RFC 3339 UTC timestamps with microseconds
//! (`2026-11-24T21:03:37.123456Z`); it reads any RFC 3339 timestamp,
//! including the seed's one-second form (`2026-11-24T21:03:37Z`).

use std::time::Duration;

use jiff::{civil::Date, tz::TimeZone, Timestamp};

use crate::error::{Error, Result};

/// The current time.
pub fn now() -> Timestamp {
    Timestamp::now()
}

/// Microseconds since this machine booted, counting suspend
/// (`CLOCK_BOOTTIME`): a clock that does not step when the wall clock is
/// set, and that restarts at every boot.
pub fn boot_micros() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable `timespec` that outlives the call,
    // and CLOCK_BOOTTIME is a clock id every Linux since 2.6.39 knows; on
    // failure `t` is left as zero, read below as "boot time unknown".
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut t) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000).saturating_add(nanos / 1000)
}

/// The wall-clock time this machine booted at, as the wall clock tells it
/// now: `now - boot_micros()`, in microseconds since the epoch. It stays
/// the same while the clock runs (slewing keeps it within milliseconds);
/// a step of the wall clock moves it by that step, so comparing it with a
/// value recorded earlier in the same boot measures the steps in between.
pub fn apparent_boot_micros(now: Timestamp) -> i64 {
    let boot = i64::try_from(boot_micros()).unwrap_or(i64::MAX);
    now.as_microsecond().saturating_sub(boot)
}

/// `2026-11-24T21:03:37.123456Z`: the format of every timestamp mstate writes.
pub fn format_micros(ts: Timestamp) -> String {
    let micros = ts.subsec_microsecond().max(0);
    format!("{}.{micros:06}Z", ts.strftime("%Y-%m-%dT%H:%M:%S"))
}

/// `2026-11-24T21:03:37Z`: the seed's format, used where the seed reads the
/// value back (the lock's `acquired` file).
pub fn format_seconds(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `20261124-210337-123456`: a stamp for file names, unique to the
/// microsecond and ordered like the time it names.
pub fn file_stamp(ts: Timestamp) -> String {
    let micros = ts.subsec_microsecond().max(0);
    format!("{}-{micros:06}", ts.strftime("%Y%m%d-%H%M%S"))
}

/// `20261124-210337`: the seed's stamp for file names.
pub fn seed_file_stamp(ts: Timestamp) -> String {
    ts.strftime("%Y%m%d-%H%M%S").to_string()
}

/// Parse a stored RFC 3339 timestamp.
pub fn parse_timestamp(s: &str) -> Option<Timestamp> {
    s.parse::<Timestamp>().ok()
}

/// Parse a duration: `500ms`, `90s`, `15m`, `2h`, `7d`, `1w`, or a plain
/// number of seconds (fractions allowed).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || {
        Error::invalid(
            "duration",
            format!("{s:?} is not a duration; use a number of seconds (30, 1.5) or a duration with a unit (500ms, 2m; also s, h, d, w)"),
        )
    };
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let unit_secs = match unit.trim() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "ms" => 0.001,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86_400.0,
        "w" | "week" | "weeks" => 604_800.0,
        _ => return Err(bad()),
    };
    let secs = value * unit_secs;
    if !secs.is_finite() || secs > 1e12 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parse a TIME argument relative to `now`: an RFC 3339 timestamp, a date
/// (`2026-11-24`, midnight UTC), or an age (`90s`, `2h`, `7d`) before now.
pub fn parse_time_arg(s: &str, now: Timestamp) -> Result<Timestamp> {
    let t = s.trim();
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts);
    }
    if let Ok(date) = t.parse::<Date>() {
        if let Ok(zoned) = date.to_zoned(TimeZone::UTC) {
            return Ok(zoned.timestamp());
        }
    }
    if let Ok(age) = parse_duration(t) {
        let span = jiff::SignedDuration::try_from(age).ok();
        if let Some(ts) = span.and_then(|d| now.checked_sub(d).ok()) {
            return Ok(ts);
        }
    }
    Err(Error::invalid(
        "time",
        format!("{s:?} is not a time; use RFC 3339 (2026-11-24T12:00:00Z), a date (2026-11-24) or an age (90s, 2h, 7d)"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip() {
        let ts: Timestamp = "2026-11-24T21:03:37.123456Z".parse().unwrap();
        assert_eq!(format_micros(ts), "2026-11-24T21:03:37.123456Z");
        assert_eq!(format_seconds(ts), "2026-11-24T21:03:37Z");
        assert_eq!(file_stamp(ts), "20261124-210337-123456");
        assert_eq!(parse_timestamp(&format_micros(ts)), Some(ts));
        assert!(parse_timestamp("2026-11-24T21:03:37Z").is_some());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0.5m").unwrap(), Duration::from_secs(30));
        // The message names both forms that are accepted.
        let msg = parse_duration("abc").unwrap_err().to_string();
        assert!(msg.contains("a number of seconds (30, 1.5)"), "{msg}");
        assert!(msg.contains("a duration with a unit (500ms, 2m"), "{msg}");
        for bad in [
            "", "h", "5x", "-5s", "1e400s", "five", ".", "1.2.3", "nan", "inf",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_args() {
        let now: Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
        assert_eq!(
            parse_time_arg("2h", now).unwrap(),
            "2026-11-24T10:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(
            parse_time_arg("2026-11-20", now).unwrap(),
            "2026-11-20T00:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(
            parse_time_arg("2026-11-20T01:02:03+01:00", now).unwrap(),
            "2026-11-20T00:02:03Z".parse::<Timestamp>().unwrap()
        );
        assert!(parse_time_arg("yesterday", now).is_err());
    }
}
