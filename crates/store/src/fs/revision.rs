//! The revision high-water mark of a milestone.
//!
//! A state file carries its revision, but not every writer numbers it:
//! the seed's functions write files without one, `cp` an old file (with an
//! old revision) back into place, and a corrupt file has no readable
//! number at all. So mstate keeps, per milestone, the highest revision it
//! ever issued, as the *name* of an empty file in `active/`:
//! `.<id>.rev.<N>` (ids never start with `.`, so it cannot be a state
//! file; the seed never lists `active/`).
//!
//! Guarantees:
//! - the record costs no sync of its own: it moves to a new name by one
//!   `rename` after the state file's rename, in the same directory, and
//!   the directory sync that makes the new state durable makes it durable
//!   too (for a completed milestone, whose state lives in `completed/`,
//!   `active/` is synced as well);
//! - it never goes back: every write takes the highest of the record, the
//!   revision in the state file and (for a store without a record yet) the
//!   revisions in the names of its backups;
//! - a crash between the two renames leaves the record one behind a state
//!   file that holds the higher number, which then counts.

use std::io;
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::fs::backup;
use crate::fs::layout::Layout;
use crate::id::MilestoneId;
use crate::io::{FileKind, Io};

/// The record's name for revision `n` of `id`.
pub fn record_name(id: &MilestoneId, n: u64) -> String {
    mark_name(id, REV, n)
}

/// The revision in `name` if it is a record of `id`.
pub fn parse_record(id: &MilestoneId, name: &str) -> Option<u64> {
    parse_mark(id, REV, name)
}

/// Whether `name` (in `active/`) is a revision record of any milestone.
pub fn is_record(name: &str) -> bool {
    is_mark(REV, name)
}

/// The kind of mark a revision record is (`.<id>.rev.<N>`).
const REV: &str = "rev";

/// What was found of the record of one milestone.
#[derive(Debug, Default, Clone)]
pub struct Record {
    /// The highest revision recorded (0: none).
    pub high: u64,
    /// The record files found, with their revisions (normally one).
    pub names: Vec<(String, u64)>,
}

/// Read the record of `id`. `hint` is the revision of the state file when
/// it has one: the record normally names that revision, so one `lstat`
/// finds it; otherwise `active/` is listed.
pub fn read(io: &dyn Io, layout: &Layout, id: &MilestoneId, hint: Option<u64>) -> Result<Record> {
    read_marks(io, &layout.active(), id, REV, hint)
}

/// The highest revision in the names of `id`'s backups, for a milestone
/// that has no record yet (written before records existed): the backup
/// `-r<N>` was made by the write that issued revision N + 1.
pub fn from_backup_names(io: &dyn Io, layout: &Layout, id: &MilestoneId) -> Result<u64> {
    let dir = layout.backups();
    let entries = match io.read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("list", &dir, e)),
    };
    Ok(entries
        .iter()
        .filter_map(|e| backup::revision_in_name(id, &e.name))
        .map(|n| n + 1)
        .max()
        .unwrap_or(0))
}

/// Move the record of `id` to revision `n` (creating it if there is
/// none), removing any other record files. The caller syncs `active/`.
pub fn advance(io: &dyn Io, layout: &Layout, id: &MilestoneId, rec: &Record, n: u64) -> Result<()> {
    advance_mark(io, &layout.active(), id, REV, rec, n)
}

// A mark is a number kept per milestone as the name of an empty file
// `.<id>.<kind>.<N>` in a directory: the revision record here, the
// fencing-token counter in `.locks/` (see `fs::token`). Moving it is one
// `rename`, made durable by a sync of the directory.

/// The name of mark `kind` of `id` at `n`.
pub(crate) fn mark_name(id: &MilestoneId, kind: &str, n: u64) -> String {
    format!(".{id}.{kind}.{n}")
}

/// The number in `name` if it is a mark `kind` of `id`.
pub(crate) fn parse_mark(id: &MilestoneId, kind: &str, name: &str) -> Option<u64> {
    let n = name.strip_prefix('.')?.strip_prefix(id.as_str())?;
    let n = n.strip_prefix('.')?.strip_prefix(kind)?.strip_prefix('.')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// Whether `name` is a mark `kind` of any milestone.
pub(crate) fn is_mark(kind: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    rest.rsplit_once(&format!(".{kind}."))
        .is_some_and(|(id, n)| {
            MilestoneId::new(id).is_ok() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        })
}

/// Read mark `kind` of `id` in `dir`: one `lstat` when `hint` names it,
/// else a listing of `dir`.
pub(crate) fn read_marks(
    io: &dyn Io,
    dir: &Path,
    id: &MilestoneId,
    kind: &str,
    hint: Option<u64>,
) -> Result<Record> {
    if let Some(h) = hint.filter(|h| *h > 0) {
        let name = mark_name(id, kind, h);
        match io.metadata(&dir.join(&name)) {
            Ok(m) if m.kind == FileKind::File => {
                return Ok(Record {
                    high: h,
                    names: vec![(name, h)],
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("inspect", dir.join(&name), e)),
        }
    }
    let entries = match io.read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut rec = Record::default();
    for e in entries {
        if e.kind != FileKind::File {
            continue;
        }
        if let Some(n) = parse_mark(id, kind, &e.name) {
            rec.high = rec.high.max(n);
            rec.names.push((e.name, n));
        }
    }
    Ok(rec)
}

/// Move mark `kind` of `id` in `dir` to `n` (creating it if there is
/// none), removing any other files of that mark. The caller syncs `dir`.
pub(crate) fn advance_mark(
    io: &dyn Io,
    dir: &Path,
    id: &MilestoneId,
    kind: &str,
    rec: &Record,
    n: u64,
) -> Result<()> {
    let target = dir.join(mark_name(id, kind, n));
    let mut moved = false;
    for (name, _) in &rec.names {
        let path = dir.join(name);
        if path == target {
            moved = true;
            continue;
        }
        if !moved {
            match io.rename(&path, &target) {
                Ok(()) => {
                    moved = true;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("rename", &path, e)),
            }
        }
        remove(io, &path)?;
    }
    if !moved {
        match io.create_new(&target) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create", &target, e)),
        }
    }
    Ok(())
}

fn remove(io: &dyn Io, path: &Path) -> Result<()> {
    match io.remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx("remove", path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_belong_to_exactly_one_milestone() {
        let a = MilestoneId::new("a").unwrap();
        let dotted = MilestoneId::new("a.rev.3").unwrap();
        assert_eq!(parse_record(&a, &record_name(&a, 7)), Some(7));
        assert_eq!(parse_record(&a, &record_name(&dotted, 7)), None);
        assert_eq!(parse_record(&dotted, &record_name(&dotted, 7)), Some(7));
        assert_eq!(parse_record(&a, ".a.rev."), None);
        assert_eq!(parse_record(&a, "a.json"), None);
        assert!(is_record(".a.rev.12"));
        assert!(is_record(&record_name(&dotted, 1)));
        assert!(!is_record("a.json"));
        assert!(!is_record(".a.rev.x"));
        assert!(!is_record("a.json.tmp.1"));
    }
}
