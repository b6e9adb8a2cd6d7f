//! Backup and checkpoint files of the filesystem backend.
//!
//! Both live in `backups/`: backups as `<id>-<stamp>.json` and checkpoints
//! as `<id>-checkpoint-<name>.json`. The seed names backups to the second
//! (`<id>-YYYYmmdd-HHMMSS.json`), so two saves in one second overwrite each
//! other; mstate adds microseconds and the revision
//! (`<id>-YYYYmmdd-HHMMSS-uuuuuu-r<rev>.json`) and never overwrites. Both
//! forms are read. A file is attributed to a milestone only when the whole
//! rest of its name has one of these forms, so milestone `a` never takes
//! the backups of milestone `a-b`, and a backup is never a checkpoint.

use std::io;
use std::time::SystemTime;

use crate::error::{Error, IoContext, Result};
use crate::fs::layout::Layout;
use crate::id::{CheckpointName, MilestoneId};
use crate::io::{FileKind, Io, Meta};
use crate::model::Envelope;
use crate::time;

pub use crate::store::DEFAULT_MAX_BACKUPS;

/// What a file in `backups/` is to a given milestone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Backup,
    Checkpoint(String),
}

/// A backup or checkpoint file with its metadata.
#[derive(Debug, Clone)]
pub struct Entry {
    pub file: String,
    pub kind: Kind,
    pub meta: Meta,
}

fn all_digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYYmmdd-HHMMSS` (the seed's) or `YYYYmmdd-HHMMSS-uuuuuu-r<rev>` (ours),
/// optionally followed by `-<n>` for a name taken twice.
fn is_stamp(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    match parts.as_slice() {
        [d, t] => all_digits(d, 8) && all_digits(t, 6),
        [d, t, u, r, rest @ ..] if rest.len() <= 1 => {
            all_digits(d, 8)
                && all_digits(t, 6)
                && all_digits(u, 6)
                && r.strip_prefix('r')
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                && rest
                    .iter()
                    .all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
        }
        _ => false,
    }
}

/// What `file` (a name in `backups/`) is to milestone `id`, if anything.
pub fn classify(id: &str, file: &str) -> Option<Kind> {
    let rest = file
        .strip_prefix(id)?
        .strip_prefix('-')?
        .strip_suffix(".json")?;
    if let Some(name) = rest.strip_prefix("checkpoint-") {
        return CheckpointName::new(name)
            .ok()
            .map(|n| Kind::Checkpoint(n.to_string()));
    }
    is_stamp(rest).then_some(Kind::Backup)
}

/// The name of a new backup of revision `rev` of `id`.
pub fn backup_name(id: &MilestoneId, rev: u64, attempt: u32) -> String {
    let stamp = time::file_stamp(time::now());
    if attempt == 0 {
        format!("{id}-{stamp}-r{rev}.json")
    } else {
        format!("{id}-{stamp}-r{rev}-{attempt}.json")
    }
}

/// Every backup and checkpoint of `id`, newest first.
pub fn list(io: &dyn Io, layout: &Layout, id: &MilestoneId) -> Result<Vec<Entry>> {
    let dir = layout.backups();
    let names = match io.read_dir(&dir) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", &dir, e)),
    };
    let mut out = Vec::new();
    for entry in names {
        if entry.kind != FileKind::File {
            continue;
        }
        let Some(kind) = classify(id, &entry.name) else {
            continue;
        };
        let path = dir.join(&entry.name);
        let meta = match io.metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("inspect", &path, e)),
        };
        out.push(Entry {
            file: entry.name,
            kind,
            meta,
        });
    }
    out.sort_by(|a, b| (b.meta.modified, &b.file).cmp(&(a.meta.modified, &a.file)));
    Ok(out)
}

/// Parse a stored envelope.
///
/// The state inside may nest [`crate::json::MAX_DEPTH`] levels: the
/// envelope's own level does not count.
pub fn parse_envelope(bytes: &[u8]) -> std::result::Result<Envelope, String> {
    crate::json::from_slice_nested::<Envelope>(bytes, 1)
}

/// The fields of a stored envelope other than the state, whose JSON is
/// checked but not built: a save needs the revision of the file it
/// replaces, not its content (parsing a large state into a `Value` takes
/// several times longer than checking it, and about ten times its size).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Head {
    pub timestamp: String,
    pub milestone_id: String,
    pub version: String,
    #[serde(default)]
    pub revision: u64,
    #[allow(dead_code)] // required, so a file without a state is invalid
    state: serde::de::IgnoredAny,
}

/// Parse a stored envelope's [`Head`]; fails exactly when
/// [`parse_envelope`] would.
pub fn parse_head(bytes: &[u8]) -> std::result::Result<Head, String> {
    // One fast pass for the usual file; serde_json decides the rest.
    if let Some((timestamp, milestone_id, version, revision)) =
        crate::json::split_envelope(bytes).and_then(|p| p.head())
    {
        return Ok(Head {
            timestamp,
            milestone_id,
            version,
            revision,
            state: serde::de::IgnoredAny,
        });
    }
    // The rest (unusual or corrupt files) is parsed whole: a parse that
    // skips the state would take some states the full parse refuses
    // (lone surrogates in strings).
    parse_envelope(bytes).map(|e| Head {
        timestamp: e.timestamp,
        milestone_id: e.milestone_id,
        version: e.version,
        revision: e.revision,
        state: serde::de::IgnoredAny,
    })
}

/// The revision in the name of a backup mstate wrote
/// (`<id>-<stamp>-r<rev>[-n].json`), if `name` is one.
pub fn revision_in_name(id: &MilestoneId, name: &str) -> Option<u64> {
    let rest = name.strip_prefix(id.as_str())?.strip_prefix('-')?;
    let rest = rest.strip_suffix(".json")?;
    if !is_stamp(rest) {
        return None;
    }
    rest.split('-').nth(3)?.strip_prefix('r')?.parse().ok()
}

/// Read a file in `backups/` and parse its [`Head`].
pub fn read_head(
    io: &dyn Io,
    layout: &Layout,
    file: &str,
) -> Result<std::result::Result<Head, String>> {
    let path = layout.backups().join(file);
    let bytes = io.read(&path).ctx("read", &path)?;
    Ok(parse_head(&bytes))
}

/// Read and parse a file in `backups/`.
pub fn read_envelope(
    io: &dyn Io,
    layout: &Layout,
    file: &str,
) -> Result<std::result::Result<Envelope, String>> {
    let path = layout.backups().join(file);
    let bytes = io.read(&path).ctx("read", &path)?;
    Ok(parse_envelope(&bytes))
}

/// Hard-link the outgoing state file as a new backup (no data copy: the
/// state file is always replaced by rename, never written in place), and
/// sync `backups/`: the link is durable before the caller's rename makes
/// the new state durable, so no crash leaves the new state without the
/// backup of the one it replaced.
pub fn link_backup(
    io: &dyn Io,
    layout: &Layout,
    id: &MilestoneId,
    state_file: &std::path::Path,
    rev: u64,
) -> Result<String> {
    for attempt in 0..100 {
        let name = backup_name(id, rev, attempt);
        let path = layout.backups().join(&name);
        match io.hard_link(state_file, &path) {
            Ok(()) => {
                let dir = layout.backups();
                io.sync_dir(&dir).ctx("sync directory", &dir)?;
                return Ok(name);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("back up", &path, e)),
        }
    }
    Err(Error::io(
        "back up",
        layout.backups(),
        io::Error::new(io::ErrorKind::AlreadyExists, "no free backup name"),
    ))
}

/// Remove the oldest backups of `id` beyond `max`; checkpoints are kept.
///
/// Runs after every save, so it reads names only while the bound is not
/// exceeded. Over it, backups are ordered by the time in their name where
/// mstate wrote it (UTC, microseconds, revision) and by modification time
/// for the seed's names (local time, seconds), which are stat'ed.
pub fn prune(io: &dyn Io, layout: &Layout, id: &MilestoneId, max: usize) -> Result<Vec<String>> {
    let dir = layout.backups();
    let names = match io.read_dir(&dir) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", &dir, e)),
    };
    let backups: Vec<String> = names
        .into_iter()
        .filter(|e| e.kind == FileKind::File)
        .filter(|e| classify(id, &e.name) == Some(Kind::Backup))
        .map(|e| e.name)
        .collect();
    if backups.len() <= max {
        return Ok(Vec::new());
    }
    let mut keyed = Vec::with_capacity(backups.len());
    for name in backups {
        let key = match stamp_in_name(id, &name) {
            Some(key) => key,
            None => match io.metadata(&dir.join(&name)) {
                Ok(m) => (m.modified, 0),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("inspect", dir.join(&name), e)),
            },
        };
        keyed.push((key, name));
    }
    keyed.sort_by(|a, b| b.cmp(a));
    let mut removed = Vec::new();
    for (_, name) in keyed.into_iter().skip(max) {
        let path = dir.join(&name);
        match io.remove_file(&path) {
            Ok(()) => removed.push(name),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(Error::io("remove", &path, err)),
        }
    }
    Ok(removed)
}

/// The time and revision in the name of a backup mstate wrote
/// (`<id>-YYYYmmdd-HHMMSS-uuuuuu-r<rev>[-n].json`, UTC).
pub(crate) fn stamp_in_name(id: &MilestoneId, name: &str) -> Option<(SystemTime, u64)> {
    let rest = name.strip_prefix(id.as_str())?.strip_prefix('-')?;
    let rest = rest.strip_suffix(".json")?;
    let mut parts = rest.split('-');
    let (date, clock, micros, rev) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let rev: u64 = rev.strip_prefix('r')?.parse().ok()?;
    let micros: i32 = micros.parse().ok()?;
    let civil = jiff::civil::DateTime::strptime("%Y%m%d-%H%M%S", format!("{date}-{clock}")).ok()?;
    let ts = civil.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    let ts = ts
        .checked_add(jiff::SignedDuration::from_micros(i64::from(micros)))
        .ok()?;
    Some((SystemTime::from(ts), rev))
}

/// The file name of checkpoint `name` of `id`.
pub fn checkpoint_file(id: &MilestoneId, name: &CheckpointName) -> String {
    format!("{id}-checkpoint-{name}.json")
}

/// RFC 3339 form of a modification time.
pub fn mtime_string(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .map(time::format_micros)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_exactly() {
        assert_eq!(classify("a", "a-20261124-120000.json"), Some(Kind::Backup));
        assert_eq!(
            classify("a", "a-20261124-120000-123456-r7.json"),
            Some(Kind::Backup)
        );
        assert_eq!(
            classify("a", "a-20261124-120000-123456-r7-2.json"),
            Some(Kind::Backup)
        );
        assert_eq!(
            classify("a", "a-checkpoint-pre-restore-1.json"),
            Some(Kind::Checkpoint("pre-restore-1".into()))
        );
        assert_eq!(classify("a", "a-b-20261124-120000.json"), None);
        assert_eq!(
            classify("a-b", "a-b-20261124-120000.json"),
            Some(Kind::Backup)
        );
        assert_eq!(classify("a", "a-20261124-12000.json"), None);
        assert_eq!(classify("a", "a-20261124-120000.json.tmp.1"), None);
        assert_eq!(classify("a", "ab-20261124-120000.json"), None);
    }

    #[test]
    fn reads_the_time_in_our_backup_names_only() {
        let id = MilestoneId::new("a").unwrap();
        let (t, rev) = stamp_in_name(&id, "a-20261124-120000-000005-r7.json").unwrap();
        assert_eq!(rev, 7);
        let expected: jiff::Timestamp = "2026-11-24T12:00:00.000005Z".parse().unwrap();
        assert_eq!(t, SystemTime::from(expected));
        assert!(stamp_in_name(&id, "a-20261124-120000-000005-r7-2.json").is_some());
        // The seed's names are local time: ordered by modification time.
        assert_eq!(stamp_in_name(&id, "a-20261124-120000.json"), None);
    }
}
