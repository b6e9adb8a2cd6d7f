//! Export and import of a whole filesystem store ([`crate::transfer`]).
//!
//! Export reads only. Import writes each file complete under a temporary
//! name, syncs it and links or renames it into place without replacing
//! anything (a name already taken is an error, never overwritten), then
//! syncs the directories: once it returns, the copy is durable. Backups
//! and checkpoints get back their modification times (what `backups` and
//! `checkpoint list` show; the envelope inside takes that time too),
//! backups their mstate names (`<id>-<superseded stamp>-r<rev>.json`);
//! events are written as their lines, byte for byte, keeping their seqs
//! (a log whose first seq is not 1 starts in a sealed segment with a
//! header line, as retention leaves it, and a line without `seq` after a
//! gap starts another).

mod import;
#[cfg(test)]
mod tests;

use crate::prelude::*;
use std::path::Path;

use crate::error::{Error, Result};
use crate::fs::atomic::read_opt;
use crate::fs::backup::{self, Kind};
use crate::fs::{revision, FsStore, NO_SESSION};
use crate::id::{CheckpointName, MilestoneId};
use crate::model::{EventQuery, ReadReport, SessionFilter, Status};
use crate::transfer::{format_time, Record, StateRecord};

/// A stored envelope's time, revision and state text (the state laid out
/// as `load` shows it).
struct RawState {
    timestamp: String,
    revision: u64,
    text: String,
}

/// Read the envelope at `path`: `None` when there is no file, the parse
/// error when it is corrupt.
fn read_raw(store: &FsStore, path: &Path) -> Result<Option<std::result::Result<RawState, String>>> {
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        timestamp: String,
        #[allow(dead_code)] // required, as for every reader of envelopes
        milestone_id: serde::de::IgnoredAny,
        #[allow(dead_code)]
        version: serde::de::IgnoredAny,
        #[serde(default)]
        revision: u64,
        #[serde(borrow)]
        state: &'a serde_json::value::RawValue,
    }
    let Some(bytes) = read_opt(&*store.io, path)? else {
        return Ok(None);
    };
    let raw = match crate::json::from_slice_nested::<Raw<'_>>(&bytes, 1) {
        Ok(raw) => raw,
        Err(e) => return Ok(Some(Err(e))),
    };
    let mut text = raw.state.get().as_bytes().to_vec();
    crate::json::dedent_in_place(&mut text, 1);
    Ok(Some(
        String::from_utf8(text)
            .map(|text| RawState {
                timestamp: raw.timestamp,
                revision: raw.revision,
                text,
            })
            .map_err(|e| e.to_string()),
    ))
}

impl FsStore {
    /// Every record of the store, in export order (see
    /// [`crate::transfer`]). A corrupt current state fails the export;
    /// corrupt or unnumbered backups and checkpoints, and damaged event
    /// lines, are skipped and reported.
    pub(crate) fn export_records(
        &self,
        sink: &mut dyn FnMut(Record) -> Result<bool>,
    ) -> Result<ReadReport> {
        let mut report = ReadReport::default();
        if !self.exists()? {
            return Ok(report);
        }
        for id in self.milestone_ids()? {
            if !self.export_milestone(&id, &mut report, sink)? {
                return Ok(report);
            }
        }
        for view in self.list_sessions(&SessionFilter::default())? {
            if !sink(Record::Session(view.record))? {
                return Ok(report);
            }
        }
        let current = read_opt(&*self.io, &self.layout.current_session())?
            .and_then(|b| String::from_utf8(b).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s != NO_SESSION);
        if let Some(sid) = current {
            sink(Record::CurrentSession(sid))?;
        }
        Ok(report)
    }

    /// The revision a state file whose own number is `file_rev` counts
    /// as: its number when mstate wrote it, else (the seed's file, or an
    /// older one copied back) the revision after the highest issued, as
    /// the next write here would number it.
    fn effective_revision(&self, id: &MilestoneId, file_rev: u64) -> Result<u64> {
        let record = revision::read(&*self.io, &self.layout, id, Some(file_rev))?;
        let mut high = record.high;
        if record.names.is_empty() {
            high = high.max(revision::from_backup_names(&*self.io, &self.layout, id)?);
        }
        Ok(if file_rev == 0 || file_rev < high {
            high + 1
        } else {
            file_rev
        })
    }

    /// One milestone's records; false when the sink said enough.
    fn export_milestone(
        &self,
        id: &MilestoneId,
        report: &mut ReadReport,
        sink: &mut dyn FnMut(Record) -> Result<bool>,
    ) -> Result<bool> {
        let (status, state) = match self.find_state(id)? {
            None => (Status::Active, None),
            Some((status, path)) => match read_raw(self, &path)? {
                None => (Status::Active, None),
                Some(Ok(raw)) => (
                    status,
                    Some(StateRecord {
                        revision: self.effective_revision(id, raw.revision)?,
                        text: raw.text,
                        written_at: raw.timestamp,
                    }),
                ),
                Some(Err(detail)) => {
                    return Err(Error::Corrupt {
                        what: format!("state of milestone '{id}'"),
                        path,
                        detail,
                        hint: Some(crate::error::Hint::RecoverBeforeMove {
                            milestone: id.to_string(),
                        }),
                    })
                }
            },
        };
        if !sink(Record::Milestone {
            id: id.clone(),
            status,
            state,
        })? {
            return Ok(false);
        }
        let entries = backup::list(&*self.io, &self.layout, id)?;
        // Backups, oldest revision first; their contents are read one at
        // a time.
        let mut numbered = Vec::new();
        for e in entries.iter().filter(|e| e.kind == Kind::Backup) {
            let path = self.layout.backups().join(&e.file);
            let Some(parsed) = read_raw(self, &path)? else {
                continue;
            };
            let rev = match &parsed {
                Ok(raw) if raw.revision > 0 => raw.revision,
                Ok(_) => backup::revision_in_name(id, &e.file).unwrap_or(0),
                Err(detail) => {
                    report.warnings.push(format!(
                        "backup {} is corrupt ({detail}); not moved",
                        e.file
                    ));
                    continue;
                }
            };
            if rev == 0 {
                report.warnings.push(format!(
                    "backup {} has no revision (written by the seed's functions); not moved",
                    e.file
                ));
                continue;
            }
            let superseded = backup::stamp_in_name(id, &e.file).map_or(e.meta.modified, |s| s.0);
            numbered.push((rev, superseded, e.file.clone()));
        }
        numbered.sort();
        let mut last = None;
        for (rev, superseded, file) in numbered {
            if last == Some(rev) {
                report.warnings.push(format!(
                    "backup {file} repeats revision {rev}; not moved (the other copy is)"
                ));
                continue;
            }
            last = Some(rev);
            let path = self.layout.backups().join(&file);
            let Some(Ok(raw)) = read_raw(self, &path)? else {
                continue;
            };
            // When the state was written, as `backups` shows it: the
            // file's time (a backup is the state file itself, linked).
            let written = match self.io.metadata(&path) {
                Ok(m) => format_time(m.modified),
                Err(_) => raw.timestamp,
            };
            if !sink(Record::Revision {
                milestone: id.clone(),
                revision: rev,
                text: raw.text,
                written_at: written,
                superseded_at: format_time(superseded),
            })? {
                return Ok(false);
            }
        }
        for e in &entries {
            let Kind::Checkpoint(name) = &e.kind else {
                continue;
            };
            let path = self.layout.backups().join(&e.file);
            let raw = match read_raw(self, &path)? {
                None => continue,
                Some(Ok(raw)) => raw,
                Some(Err(detail)) => {
                    report.warnings.push(format!(
                        "checkpoint {} is corrupt ({detail}); not moved",
                        e.file
                    ));
                    continue;
                }
            };
            if !sink(Record::Checkpoint {
                milestone: id.clone(),
                name: CheckpointName::new(name.as_str())?,
                revision: raw.revision,
                text: raw.text,
                created_at: format_time(e.meta.modified),
            })? {
                return Ok(false);
            }
        }
        let mut more = true;
        let read = EventStore::events(self, id, &EventQuery::default(), &mut |l| {
            more = sink(Record::Event {
                milestone: id.clone(),
                seq: l.seq,
                line: l.line()?.into_owned(),
            })?;
            Ok(more)
        })?;
        report.warnings.extend(
            read.warnings
                .into_iter()
                .map(|w| format!("events of '{id}': {w}; not moved")),
        );
        Ok(more)
    }
}
