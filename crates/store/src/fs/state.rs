//! State files: save, load, update, complete/reopen, recover, checkpoints,
//! cleanup of one milestone.
//!
//! Every write of a state file goes: take the lock, link the outgoing file
//! as a backup and sync `backups/`, write a temp file, fsync it, rename it
//! over the state file (the commit point), advance the revision record,
//! fsync the directory, log the event, release.
//!
//! Guarantees:
//! - the revision grows with every write, whatever the write is (save,
//!   update, recover, restore), and never goes back: it is taken above the
//!   highest revision ever issued ([`revision`]), so a recovery never
//!   reuses the number of a revision lost with a corrupt file;
//! - a state file mstate did not number (the seed's, or an older file
//!   copied back) is a change of its own: it is backed up as the revision
//!   after the highest, and `--expect-revision` never matches it (the
//!   conflict numbers it, so a reload and retry converges);
//! - a corrupt state file is kept by a hard link and replaced by the
//!   rename: there is never a moment without a state file;
//! - what fails before the commit point fails the write and changes
//!   nothing; what fails after it (pruning, the event, the record) is a
//!   warning, and the write succeeds.

use std::borrow::Cow;
use std::io as stdio;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Error, IoContext, ObjectKind, Result};
use crate::fs::atomic::{self, read_opt, write_replace, write_replace_then};
use crate::fs::backup::{self, Kind};
use crate::fs::revision;
use crate::fs::FsStore;
use crate::id::{CheckpointName, MilestoneId};
use crate::model::{
    CheckpointInfo, Envelope, Loaded, LoadedRaw, Recovery, Saved, Status, ENVELOPE_VERSION,
};
use crate::store::{CleanupOptions, CleanupReport, Restored, WriteOptions};
use crate::time;

/// The state file of a milestone as found on disk.
pub(crate) struct Current {
    pub status: Status,
    pub path: PathBuf,
    /// Its revision, or why it does not parse.
    pub revision: std::result::Result<u64, String>,
    /// Its whole envelope, when asked for (see [`FsStore::current`]).
    pub envelope: Option<Envelope>,
}

impl Current {
    /// The error for this file if it is corrupt, with `hint` (see
    /// [`FsStore::corrupt_way_out`]).
    fn corrupt_error(
        &self,
        id: &MilestoneId,
        hint: impl FnOnce() -> crate::error::Hint,
    ) -> Option<Error> {
        let detail = self.revision.as_ref().err()?;
        Some(Error::Corrupt {
            what: format!("state of milestone '{id}'"),
            path: self.path.clone(),
            detail: detail.clone(),
            hint: Some(hint()),
        })
    }
}

/// Where a state file stands against its milestone's revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// There is no state file.
    Missing,
    /// Written by mstate, and the newest revision issued.
    Numbered(u64),
    /// Written by someone else: no revision (the seed's functions), or one
    /// below the highest issued (an older file copied back into place).
    Foreign,
    /// Does not parse.
    Corrupt,
}

/// The revisions of a milestone, read under its lock.
struct Revs {
    standing: Standing,
    /// The highest revision ever issued.
    high: u64,
    record: revision::Record,
}

impl Revs {
    /// The revision a write takes, and the revision the file it replaces
    /// is backed up as (`None`: nothing to back up). A foreign file is a
    /// change of its own: it counts as the revision after the highest, and
    /// the write takes the one after that.
    fn next(&self) -> (u64, Option<u64>) {
        match self.standing {
            Standing::Missing | Standing::Corrupt => (self.high + 1, None),
            Standing::Numbered(r) => (r + 1, Some(r)),
            Standing::Foreign => (self.high + 2, Some(self.high + 1)),
        }
    }
}

/// What [`FsStore::commit`] did.
struct Committed {
    saved: Saved,
    /// Where a corrupt file replaced was kept.
    corrupt_moved_to: Option<String>,
}

/// The state a write stores.
pub(crate) enum NewState<'a> {
    /// A value, borrowed when it is the caller's (no copy of it is made).
    Value(Cow<'a, Value>),
    /// JSON text that passed [`crate::json::check_strict`]: laid out as
    /// it is written, with no `Value` built (about ten times its size).
    Text(&'a [u8]),
}

/// An envelope to encode, borrowing its state.
#[derive(serde::Serialize)]
struct EnvelopeRef<'a> {
    timestamp: &'a str,
    milestone_id: &'a str,
    version: &'a str,
    revision: u64,
    state: &'a Value,
}

/// The seed's way of naming a state file in event data.
fn seed_path(status: Status, id: &MilestoneId) -> String {
    format!(".milestones/state/{}/{id}.json", status.as_str())
}

fn not_found(id: &MilestoneId) -> Error {
    Error::NotFound {
        kind: ObjectKind::Milestone,
        name: id.to_string(),
        hint: Some(crate::error::Hint::SaveToCreateOrList {
            milestone: id.to_string(),
        }),
    }
}

/// Write a state file: the pretty envelope and a newline. Text states
/// come out exactly as their value would.
pub(crate) fn encode(
    timestamp: &str,
    id: &MilestoneId,
    revision: u64,
    state: &NewState<'_>,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    match state {
        NewState::Value(value) => {
            let envelope = EnvelopeRef {
                timestamp,
                milestone_id: id.as_str(),
                version: ENVELOPE_VERSION,
                revision,
                state: value,
            };
            serde_json::to_writer_pretty(&mut *out, &envelope)?;
        }
        NewState::Text(text) => {
            out.write_all(b"{\n  \"timestamp\": ")?;
            serde_json::to_writer(&mut *out, timestamp)?;
            out.write_all(b",\n  \"milestone_id\": ")?;
            serde_json::to_writer(&mut *out, id.as_str())?;
            out.write_all(b",\n  \"version\": ")?;
            serde_json::to_writer(&mut *out, ENVELOPE_VERSION)?;
            write!(out, ",\n  \"revision\": {revision},\n  \"state\": ")?;
            crate::json::reindent(text, 1, out)?;
            out.write_all(b"\n}")?;
        }
    }
    out.write_all(b"\n")
}

/// Which write of a state [`FsStore::write_state`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteKind {
    /// A new state replacing the current one, read only for its revision.
    Save,
    /// An edit of the current state, which must be there and valid.
    Update,
}

impl FsStore {
    /// The error for a milestone without a state file: unknown to the
    /// store, or known (its log, its backups) but with no state yet.
    pub(crate) fn no_state(&self, id: &MilestoneId) -> Error {
        match self.is_known(id) {
            Ok(false) => self.unknown(id),
            _ => not_found(id),
        }
    }

    /// What to do about the corrupt state of `id`, suggesting only what
    /// would work: `recover` when a valid backup exists, else what
    /// [`FsStore::no_backup_way_out`] says.
    pub(crate) fn corrupt_way_out(&self, id: &MilestoneId) -> crate::error::Hint {
        let valid_backup = backup::list(&*self.io, &self.layout, id)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.kind == Kind::Backup)
            .any(|e| {
                matches!(
                    backup::read_head(&*self.io, &self.layout, &e.file),
                    Ok(Ok(_))
                )
            });
        if valid_backup {
            return crate::error::Hint::Recover {
                milestone: id.to_string(),
            };
        }
        self.no_backup_way_out(id)
    }

    /// The way out for a corrupt state of `id` that no backup can
    /// restore: the newest valid checkpoint if there is one, else a new
    /// save (which keeps the corrupt file aside, as `recover` would).
    fn no_backup_way_out(&self, id: &MilestoneId) -> crate::error::Hint {
        let checkpoint = backup::list(&*self.io, &self.layout, id)
            .unwrap_or_default()
            .into_iter()
            .find_map(|e| match e.kind {
                Kind::Checkpoint(name)
                    if matches!(
                        backup::read_head(&*self.io, &self.layout, &e.file),
                        Ok(Ok(_))
                    ) =>
                {
                    Some(name)
                }
                _ => None,
            });
        match checkpoint {
            Some(name) => crate::error::Hint::RestoreCheckpointOrSave {
                milestone: id.to_string(),
                checkpoint: name.as_str().into(),
            },
            None => crate::error::Hint::SaveOverCorrupt {
                milestone: id.to_string(),
            },
        }
    }

    /// Read the state file of `id`, if it has one: its revision, and with
    /// `full` its whole envelope.
    pub(crate) fn current(&self, id: &MilestoneId, full: bool) -> Result<Option<Current>> {
        for status in [Status::Active, Status::Completed] {
            let path = self.layout.state_file(id, status);
            if let Some(bytes) = read_opt(&*self.io, &path)? {
                let (revision, envelope) = if full {
                    match backup::parse_envelope(&bytes) {
                        Ok(env) => (Ok(env.revision), Some(env)),
                        Err(e) => (Err(e), None),
                    }
                } else {
                    (backup::parse_head(&bytes).map(|h| h.revision), None)
                };
                return Ok(Some(Current {
                    status,
                    path,
                    revision,
                    envelope,
                }));
            }
        }
        Ok(None)
    }

    /// Where the state file stands against the revisions of `id`: the
    /// highest revision ever issued (its record, the file's own number,
    /// and for a milestone with no record yet the names of its backups).
    fn revs(&self, id: &MilestoneId, current: Option<&Current>) -> Result<Revs> {
        let file_rev = current.and_then(|c| c.revision.as_ref().ok().copied());
        let record = revision::read(&*self.io, &self.layout, id, file_rev)?;
        let mut high = record.high;
        if record.names.is_empty() {
            high = high.max(revision::from_backup_names(&*self.io, &self.layout, id)?);
        }
        let standing = match current {
            None => Standing::Missing,
            Some(c) => match c.revision {
                Err(_) => Standing::Corrupt,
                Ok(0) => Standing::Foreign,
                Ok(r) if r < high => Standing::Foreign,
                Ok(r) => Standing::Numbered(r),
            },
        };
        if let Standing::Numbered(r) = standing {
            high = high.max(r);
        }
        Ok(Revs {
            standing,
            high,
            record,
        })
    }

    /// Check `--expect-revision` against the state file. A file mstate did
    /// not number (the seed's, or an older file put back) matches no
    /// expectation: the caller cannot have seen it. It is given a revision
    /// of its own first, so a reload shows it and a retry succeeds.
    fn check_expected(
        &self,
        id: &MilestoneId,
        current: Option<&Current>,
        revs: &Revs,
        expected: u64,
    ) -> Result<()> {
        let actual = match (revs.standing, current) {
            (Standing::Missing, _) => 0,
            (Standing::Numbered(r), _) => r,
            (Standing::Corrupt, _) => revs.high,
            (Standing::Foreign, Some(c)) => {
                let env = match &c.envelope {
                    Some(env) => Cow::Borrowed(env),
                    None => {
                        let bytes = self.io.read(&c.path).ctx("read", &c.path)?;
                        Cow::Owned(backup::parse_envelope(&bytes).map_err(|detail| {
                            Error::Corrupt {
                                what: format!("state of milestone '{id}'"),
                                path: c.path.clone(),
                                detail,
                                hint: Some(self.corrupt_way_out(id)),
                            }
                        })?)
                    }
                };
                let mut data = serde_json::Map::new();
                data.insert(
                    "reason".into(),
                    json!("the state file was written without a current revision (by the seed, or an older file put back)"),
                );
                let state = NewState::Value(Cow::Borrowed(&env.state));
                let numbered = self.commit(
                    id,
                    current,
                    revs,
                    &state,
                    "state_numbered",
                    data,
                    revs.high + 1,
                    None,
                )?;
                return Err(Error::Conflict {
                    milestone: id.to_string(),
                    expected,
                    actual: numbered.saved.revision,
                });
            }
            (Standing::Foreign, None) => 0,
        };
        if expected != actual {
            return Err(Error::Conflict {
                milestone: id.to_string(),
                expected,
                actual,
            });
        }
        Ok(())
    }

    /// Keep a corrupt state file as `<file>.corrupted.<stamp>` (the seed's
    /// name, with microseconds) by a hard link: the state file itself stays
    /// until the new one is renamed over it, so there is never a moment
    /// without one.
    fn link_corrupt_aside(&self, path: &Path) -> Result<String> {
        let stamp = time::file_stamp(time::now());
        for attempt in 0..100u32 {
            let mut target = path.as_os_str().to_owned();
            target.push(format!(".corrupted.{stamp}"));
            if attempt > 0 {
                target.push(format!("-{attempt}"));
            }
            let target = PathBuf::from(target);
            match self.io.hard_link(path, &target) {
                Ok(()) => {
                    return Ok(target
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default())
                }
                Err(e) if e.kind() == stdio::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("keep aside", path, e)),
            }
        }
        Err(Error::io(
            "keep aside",
            path,
            stdio::Error::new(stdio::ErrorKind::AlreadyExists, "no free name"),
        ))
    }

    /// Write `state` as `revision`, backing up what it replaces as
    /// revision `backup_as` (none: no backup). Runs under the lock;
    /// `current` is the file being replaced.
    ///
    /// The commit point is the rename of the new file: what fails before
    /// it fails the write and changes nothing; what fails after it (the
    /// revision record, pruning, the event) does not undo it and becomes a
    /// warning (see [`FsStore::take_warnings`]).
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &self,
        id: &MilestoneId,
        current: Option<&Current>,
        revs: &Revs,
        state: &NewState<'_>,
        event: &str,
        mut data: serde_json::Map<String, Value>,
        revision: u64,
        backup_as: Option<u64>,
    ) -> Result<Committed> {
        let status = current.map_or(Status::Active, |c| c.status);
        let target = self.layout.state_file(id, status);
        let mut backup_name = None;
        let mut corrupt_moved_to = None;
        match (current, backup_as) {
            (
                Some(Current {
                    revision: Ok(_),
                    path,
                    ..
                }),
                Some(outgoing),
            ) => {
                backup_name = Some(backup::link_backup(
                    &*self.io,
                    &self.layout,
                    id,
                    path,
                    outgoing,
                )?);
            }
            (
                Some(Current {
                    revision: Err(_),
                    path,
                    ..
                }),
                _,
            ) => {
                let kept = self.link_corrupt_aside(path)?;
                data.insert("corrupt_moved_to".into(), json!(kept));
                corrupt_moved_to = Some(kept);
            }
            _ => {}
        }
        let timestamp = time::format_micros(time::now());
        let mut record_error = None;
        let written = write_replace_then(
            &*self.io,
            &target,
            &mut |out| encode(&timestamp, id, revision, state, out),
            &mut || {
                record_error =
                    revision::advance(&*self.io, &self.layout, id, &revs.record, revision).err();
            },
        );
        if let Err(e) = written {
            // Where the corrupt file is still the state file (the failure
            // came before the rename) it needs no second name.
            if let Some(kept) = &corrupt_moved_to {
                let link = self.layout.status_dir(status).join(kept);
                let same = match (self.io.metadata(&link), self.io.metadata(&target)) {
                    (Ok(a), Ok(b)) => a.id == b.id,
                    _ => false,
                };
                if same {
                    let _ = self.io.remove_file(&link);
                }
            }
            return Err(e);
        }
        // Committed: nothing below undoes it.
        if record_error.is_none() && status != Status::Active {
            let dir = self.layout.active();
            record_error = self.io.sync_dir(&dir).ctx("sync directory", &dir).err();
        }
        if let Some(e) = record_error {
            self.warn(format!(
                "revision {revision} of '{id}' was written, but its revision record could not be kept: {e}"
            ));
        }
        if backup_name.is_some() {
            if let Err(e) = backup::prune(&*self.io, &self.layout, id, self.opts.max_backups) {
                self.warn(format!("old backups of '{id}' could not be pruned: {e}"));
            }
        }
        let mut full = serde_json::Map::new();
        full.insert("state_file".into(), json!(seed_path(status, id)));
        full.insert("revision".into(), json!(revision));
        full.extend(data);
        self.emit_committed(
            id,
            event,
            Value::Object(full),
            &format!("revision {revision} of '{id}' was written"),
        );
        Ok(Committed {
            saved: Saved {
                milestone_id: id.to_string(),
                revision,
                timestamp,
                backup: backup_name,
            },
            corrupt_moved_to,
        })
    }

    /// Save or update: compute the new state from the current envelope
    /// (`None` for a save, which needs only the current revision).
    pub(crate) fn write_state<'s>(
        &self,
        id: &MilestoneId,
        kind: WriteKind,
        opts: &WriteOptions,
        make: &mut dyn FnMut(Option<Envelope>) -> Result<NewState<'s>>,
    ) -> Result<Saved> {
        let save = kind == WriteKind::Save;
        let operation = if save { "save" } else { "update" };
        self.locked_for(id, operation, opts, || {
            let mut current = self.current(id, !save)?;
            if !save {
                if let Some(e) = current
                    .as_ref()
                    .and_then(|c| c.corrupt_error(id, || self.corrupt_way_out(id)))
                {
                    return Err(e);
                }
            }
            let revs = self.revs(id, current.as_ref())?;
            if let Some(expected) = opts.expect_revision {
                self.check_expected(id, current.as_ref(), &revs, expected)?;
            }
            let state = make(current.as_mut().and_then(|c| c.envelope.take()))?;
            let event = if save { "state_saved" } else { "state_updated" };
            let (revision, backup_as) = revs.next();
            Ok(self
                .commit(
                    id,
                    current.as_ref(),
                    &revs,
                    &state,
                    event,
                    Default::default(),
                    revision,
                    backup_as,
                )?
                .saved)
        })
    }

    /// Load, recovering a corrupt state from its newest valid backup.
    pub(crate) fn load_state(&self, id: &MilestoneId, opts: &WriteOptions) -> Result<Loaded> {
        let loaded = |current: Option<Current>| match current {
            Some(Current {
                status,
                envelope: Some(envelope),
                ..
            }) => Some((status, envelope)),
            _ => None,
        };
        let Some(current) = self.current(id, true)? else {
            return Err(self.no_state(id));
        };
        if let Some((status, envelope)) = loaded(Some(current)) {
            return Ok(Loaded {
                envelope,
                status,
                recovered: None,
            });
        }
        let recovery = self.recover_state(id, None, opts)?;
        match loaded(self.current(id, true)?) {
            Some((status, envelope)) => Ok(Loaded {
                envelope,
                status,
                recovered: Some(recovery),
            }),
            None => Err(self.no_state(id)),
        }
    }

    /// Load as text: one parse checks the file and finds the state's text,
    /// which is moved to the front of the buffer read and given the pretty
    /// layout at top level (no second buffer for mstate's files, no
    /// `Value`). A corrupt file takes [`FsStore::load_state`]'s recovery.
    pub(crate) fn load_state_raw(
        &self,
        id: &MilestoneId,
        opts: &WriteOptions,
    ) -> Result<LoadedRaw> {
        #[derive(serde::Deserialize)]
        struct RawEnvelope<'a> {
            timestamp: String,
            milestone_id: String,
            version: String,
            #[serde(default)]
            revision: u64,
            #[serde(borrow)]
            state: &'a serde_json::value::RawValue,
        }
        for status in [Status::Active, Status::Completed] {
            // The state's text and the envelope's head as loaded; text that
            // is not UTF-8 is a corrupt file, not a panic.
            let raw = |state: Vec<u8>, head: (String, String, String, u64), path: &Path| {
                let (timestamp, milestone_id, version, revision) = head;
                let state = String::from_utf8(state).map_err(|e| Error::Corrupt {
                    what: format!("state of milestone '{id}'"),
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                    hint: Some(self.corrupt_way_out(id)),
                })?;
                Ok(LoadedRaw {
                    timestamp,
                    milestone_id,
                    version,
                    revision,
                    state,
                    status,
                    recovered: None,
                })
            };
            let path = self.layout.state_file(id, status);
            let Some(mut bytes) = read_opt(&*self.io, &path)? else {
                continue;
            };
            // The fast path: one pass checks the file and finds the state.
            if let Some((parts, (timestamp, milestone_id, version, revision))) =
                crate::json::split_envelope(&bytes).and_then(|p| p.head().map(|h| (p, h)))
            {
                let range = parts.state;
                let state = if revision > 0 {
                    // Written by mstate: pretty, nested one level in the
                    // envelope. Taking that level off is a copy in place.
                    bytes.copy_within(range.clone(), 0);
                    bytes.truncate(range.len());
                    crate::json::dedent_in_place(&mut bytes, 1);
                    bytes
                } else {
                    // The seed's (or a hand's) layout: lay it out again.
                    let mut pretty = Vec::with_capacity(range.len() + range.len() / 2);
                    crate::json::reindent(&bytes[range], 0, &mut pretty).ctx("lay out", &path)?;
                    pretty
                };
                // Checked as UTF-8 by the scan; the copy kept whole
                // characters, so this cannot fail.
                return raw(state, (timestamp, milestone_id, version, revision), &path);
            }
            let Ok(env) = crate::json::from_slice_nested::<RawEnvelope<'_>>(&bytes, 1) else {
                break; // corrupt: recover below
            };
            let text = env.state.get();
            let Some(start) = (text.as_ptr() as usize)
                .checked_sub(bytes.as_ptr() as usize)
                .filter(|s| s + text.len() <= bytes.len())
            else {
                break; // not borrowed from the buffer: take the slow path
            };
            let range = start..start + text.len();
            let (timestamp, milestone_id, version, revision) =
                (env.timestamp, env.milestone_id, env.version, env.revision);
            bytes.copy_within(range.clone(), 0);
            bytes.truncate(range.len());
            if revision > 0 {
                // Written by mstate: pretty, nested one level in the
                // envelope. Taking that level off is a copy.
                crate::json::dedent_in_place(&mut bytes, 1);
            } else {
                // The seed's (or a hand's) layout: lay it out again.
                let mut pretty = Vec::with_capacity(bytes.len());
                crate::json::reindent(&bytes, 0, &mut pretty).ctx("lay out", &path)?;
                bytes = pretty;
            }
            return raw(bytes, (timestamp, milestone_id, version, revision), &path);
        }
        let loaded = self.load_state(id, opts)?;
        let env = loaded.envelope;
        Ok(LoadedRaw {
            state: serde_json::to_string_pretty(&env.state)
                .map_err(|e| Error::invalid("state", e.to_string()))?,
            timestamp: env.timestamp,
            milestone_id: env.milestone_id,
            version: env.version,
            revision: env.revision,
            status: loaded.status,
            recovered: loaded.recovered,
        })
    }

    /// Restore the newest valid backup (or `from`) as the next revision.
    /// Without `from`, a valid state is left alone (the result names no
    /// backup): recovery is for a corrupt or missing state, and rolling a
    /// valid one back is asked for by naming the backup.
    pub(crate) fn recover_state(
        &self,
        id: &MilestoneId,
        from: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Recovery> {
        let valid = |current: &Option<Current>| match current {
            Some(Current {
                revision: Ok(r), ..
            }) if from.is_none() => Some(Recovery {
                backup: None,
                corrupt_moved_to: None,
                revision: *r,
            }),
            _ => None,
        };
        // Checked before the lock too: telling that a state is valid
        // does not wait for a holder.
        if let Some(r) = valid(&self.current(id, false)?) {
            return Ok(r);
        }
        self.locked_for(id, "recover", opts, || {
            let current = self.current(id, false)?;
            if let Some(r) = valid(&current) {
                return Ok(r);
            }
            let candidates: Vec<String> = match from {
                Some(name) => {
                    let name = name.rsplit('/').next().unwrap_or(name);
                    match backup::classify(id, name) {
                        Some(Kind::Backup) => {}
                        Some(Kind::Checkpoint(checkpoint)) => {
                            return Err(Error::invalid_with(
                                "backup",
                                format!("{name:?} is a checkpoint"),
                                crate::error::Hint::RestoreCheckpoint {
                                    milestone: id.as_str().into(),
                                    checkpoint: checkpoint.into(),
                                },
                            ))
                        }
                        None => {
                            return Err(Error::NotFound {
                                kind: ObjectKind::Backup,
                                name: name.to_string(),
                                hint: Some(crate::error::Hint::NotABackupOf {
                                    milestone: id.to_string(),
                                }),
                            })
                        }
                    }
                    if !atomic::exists(&*self.io, &self.layout.backups().join(name))? {
                        return Err(Error::NotFound {
                            kind: ObjectKind::Backup,
                            name: name.to_string(),
                            hint: Some(crate::error::Hint::ListBackups {
                                milestone: id.to_string(),
                            }),
                        });
                    }
                    vec![name.to_string()]
                }
                None => backup::list(&*self.io, &self.layout, id)?
                    .into_iter()
                    .filter(|e| e.kind == Kind::Backup)
                    .map(|e| e.file)
                    .collect(),
            };
            let mut chosen = None;
            for name in &candidates {
                if let Ok(env) = backup::read_envelope(&*self.io, &self.layout, name)? {
                    chosen = Some((name.clone(), env));
                    break;
                }
            }
            let Some((name, env)) = chosen else {
                if current.is_none() && candidates.is_empty() {
                    return Err(self.no_state(id));
                }
                let path = match (&current, from) {
                    (_, Some(name)) => self
                        .layout
                        .backups()
                        .join(name.rsplit('/').next().unwrap_or(name)),
                    (Some(c), None) => c.path.clone(),
                    (None, None) => self.layout.backups(),
                };
                let detail = match (from, candidates.len(), &current) {
                    (Some(_), _, _) => "the backup named is not a valid state".to_string(),
                    (None, 0, _) => "there is no backup to recover from".to_string(),
                    (None, n, Some(_)) => format!("none of its {n} backups is valid"),
                    (None, n, None) => {
                        format!("it has no state file, and none of its {n} backups is valid")
                    }
                };
                return Err(Error::Corrupt {
                    what: if from.is_some() {
                        format!("backup of milestone '{id}'")
                    } else {
                        format!("state of milestone '{id}'")
                    },
                    path,
                    detail,
                    hint: Some(if from.is_some() {
                        crate::error::Hint::OtherBackup {
                            milestone: id.to_string(),
                        }
                    } else {
                        self.no_backup_way_out(id)
                    }),
                });
            };
            let mut data = serde_json::Map::new();
            data.insert(
                "backup_file".into(),
                json!(format!(".milestones/state/backups/{name}")),
            );
            let state = NewState::Value(Cow::Borrowed(&env.state));
            let revs = self.revs(id, current.as_ref())?;
            let (revision, backup_as) = revs.next();
            let done = self.commit(
                id,
                current.as_ref(),
                &revs,
                &state,
                "state_recovered",
                data,
                revision,
                backup_as,
            )?;
            Ok(Recovery {
                backup: Some(name),
                corrupt_moved_to: done.corrupt_moved_to,
                revision: done.saved.revision,
            })
        })
    }

    /// Move the state file between `active/` and `completed/`.
    pub(crate) fn move_state(
        &self,
        id: &MilestoneId,
        from: Status,
        to: Status,
        opts: &WriteOptions,
    ) -> Result<()> {
        let op = if to == Status::Completed {
            "complete"
        } else {
            "reopen"
        };
        self.locked_for(id, op, opts, || {
            let src = self.layout.state_file(id, from);
            let dst = self.layout.state_file(id, to);
            if !atomic::exists(&*self.io, &src)? {
                if atomic::exists(&*self.io, &dst)? {
                    return Err(Error::invalid(
                        "milestone state",
                        format!("milestone '{id}' is already {}", to.as_str()),
                    ));
                }
                return Err(self.no_state(id));
            }
            match self.io.rename_noreplace(&src, &dst) {
                Ok(()) => {}
                Err(e) if e.kind() == stdio::ErrorKind::AlreadyExists => {
                    return Err(Error::AlreadyExists {
                        kind: ObjectKind::Milestone,
                        name: format!("{}/{id}.json", to.as_str()),
                        hint: Some(crate::error::Hint::Advice(
                            "two copies of the state exist; remove the stale one by hand".into(),
                        )),
                    })
                }
                Err(e) => return Err(Error::io("move", &src, e)),
            }
            for dir in [self.layout.status_dir(to), self.layout.status_dir(from)] {
                self.io.sync_dir(&dir).ctx("sync directory", &dir)?;
            }
            let event = if to == Status::Completed {
                "milestone_completed"
            } else {
                "milestone_reopened"
            };
            self.emit_committed(
                id,
                event,
                json!({"state_file": seed_path(to, id)}),
                &format!("milestone '{id}' is now {}", to.as_str()),
            );
            Ok(())
        })
    }

    /// Copy the current state to a checkpoint. Runs under the lock.
    pub(crate) fn create_checkpoint(
        &self,
        id: &MilestoneId,
        name: Option<&CheckpointName>,
        force: bool,
    ) -> Result<CheckpointInfo> {
        let name = match name {
            Some(n) => n.clone(),
            None => CheckpointName::new(format!("manual-{}", time::file_stamp(time::now())))?,
        };
        let Some((_, state_path)) = self.find_state(id)? else {
            return Err(self.no_state(id));
        };
        let bytes = self.io.read(&state_path).ctx("read", &state_path)?;
        let head = backup::parse_head(&bytes).map_err(|detail| Error::Corrupt {
            what: format!("state of milestone '{id}'"),
            path: state_path.clone(),
            detail,
            hint: Some(self.corrupt_way_out(id)),
        })?;
        let target = self.layout.checkpoint_file(id, &name);
        if !force && atomic::exists(&*self.io, &target)? {
            return Err(Error::AlreadyExists {
                kind: ObjectKind::Checkpoint,
                name: name.to_string(),
                hint: Some(crate::error::Hint::OtherNameOrReplace),
            });
        }
        // A copy, not a link: the seed restores with `cp` into the state
        // file, which must not write through into a checkpoint.
        write_replace(&*self.io, &target, &bytes)?;
        let file = format!(
            ".milestones/state/backups/{}",
            backup::checkpoint_file(id, &name)
        );
        self.emit_committed(
            id,
            "checkpoint_created",
            json!({"checkpoint_name": name.as_str(), "checkpoint_file": file, "revision": head.revision}),
            &format!("checkpoint '{name}' of '{id}' was created"),
        );
        Ok(CheckpointInfo {
            name: name.to_string(),
            size: bytes.len() as u64,
            modified: time::format_micros(time::now()),
            revision: Some(head.revision),
            valid: true,
        })
    }

    /// Restore a checkpoint, checkpointing the current state first.
    pub(crate) fn restore_checkpoint(
        &self,
        id: &MilestoneId,
        name: &CheckpointName,
        opts: &WriteOptions,
    ) -> Result<Restored> {
        self.locked_for(id, "checkpoint restore", opts, || {
            let path = self.layout.checkpoint_file(id, name);
            let Some(bytes) = read_opt(&*self.io, &path)? else {
                return Err(Error::NotFound {
                    kind: ObjectKind::Checkpoint,
                    name: name.to_string(),
                    hint: Some(crate::error::Hint::ListCheckpoints {
                        milestone: id.to_string(),
                    }),
                });
            };
            let env = backup::parse_envelope(&bytes).map_err(|detail| Error::Corrupt {
                what: format!("checkpoint '{name}'"),
                path: path.clone(),
                detail,
                hint: None,
            })?;
            let current = self.current(id, false)?;
            let revs = self.revs(id, current.as_ref())?;
            // Everything that can refuse the restore runs before anything
            // is written: a conflict leaves no pre-restore checkpoint.
            if let Some(expected) = opts.expect_revision {
                self.check_expected(id, current.as_ref(), &revs, expected)?;
            }
            let pre_restore = match &current {
                Some(Current {
                    revision: Ok(_), ..
                }) => {
                    let pre = CheckpointName::new(format!(
                        "pre-restore-{}",
                        time::file_stamp(time::now())
                    ))?;
                    Some(self.create_checkpoint(id, Some(&pre), false)?.name)
                }
                _ => None,
            };
            let mut data = serde_json::Map::new();
            data.insert("checkpoint_name".into(), json!(name.as_str()));
            let state = NewState::Value(Cow::Borrowed(&env.state));
            let (revision, backup_as) = revs.next();
            let saved = self
                .commit(
                    id,
                    current.as_ref(),
                    &revs,
                    &state,
                    "state_restored",
                    data,
                    revision,
                    backup_as,
                )?
                .saved;
            Ok(Restored { saved, pre_restore })
        })
    }

    /// Remove events, backups (and with the option, checkpoints) and
    /// completed sessions of `id` older than the cutoff.
    pub(crate) fn cleanup_milestone(
        &self,
        id: &MilestoneId,
        opts: &CleanupOptions,
    ) -> Result<CleanupReport> {
        let mut report = CleanupReport {
            milestone_id: id.to_string(),
            dry_run: opts.dry_run,
            ..Default::default()
        };
        // The wall clock may have stepped forward since what is judged was
        // written: the boot clock's evidence moves the cutoff back by that.
        let clock = crate::fs::log::clock_check(
            &*self.io,
            &self.layout,
            (!opts.dry_run).then_some(opts.cutoff),
        )?;
        let cutoff_ts = opts
            .cutoff
            .checked_sub(jiff::SignedDuration::from_secs_f64(clock.step_seconds))
            .unwrap_or(opts.cutoff);
        let cutoff = std::time::SystemTime::from(cutoff_ts);
        for e in backup::list(&*self.io, &self.layout, id)? {
            // A backup is a hard link of the replaced state file, whose
            // modification time is when that state was written, not when
            // the backup was made: the time in its name says that.
            let made = match backup::stamp_in_name(id, &e.file) {
                Some((t, _)) => t.max(e.meta.modified),
                None => e.meta.modified,
            };
            if made >= cutoff {
                continue;
            }
            let list = match &e.kind {
                Kind::Backup => &mut report.backups_removed,
                Kind::Checkpoint(_) if opts.include_checkpoints => &mut report.checkpoints_removed,
                Kind::Checkpoint(_) => continue,
            };
            if !opts.dry_run {
                let path = self.layout.backups().join(&e.file);
                match self.io.remove_file(&path) {
                    Ok(()) => {}
                    Err(err) if err.kind() == stdio::ErrorKind::NotFound => continue,
                    Err(err) => return Err(Error::io("remove", &path, err)),
                }
            }
            list.push(e.file);
        }
        report.sessions_removed = self.cleanup_sessions(id, cutoff, opts.dry_run)?;
        let log = self.log_of(id).cleanup(cutoff_ts, opts.dry_run)?;
        report.events_removed = log.events_removed;
        if !opts.dry_run {
            let dir = self.layout.backups();
            if atomic::exists(&*self.io, &dir)? {
                self.io.sync_dir(&dir).ctx("sync directory", &dir)?;
            }
            // As given (7 stays 7, not the age of the cutoff by now).
            let days = opts.retention_days.unwrap_or_else(|| {
                time::now().duration_since(opts.cutoff).as_secs_f64() / 86_400.0
            });
            let days = if days.fract() == 0.0 && days.abs() < 1e15 {
                json!(days as i64)
            } else {
                json!(days)
            };
            self.emit(
                id,
                "state_cleaned",
                json!({
                    "retention_days": days,
                    "events_removed": report.events_removed,
                    "backups_removed": report.backups_removed.len(),
                    "checkpoints_removed": report.checkpoints_removed.len(),
                    "sessions_removed": report.sessions_removed.len(),
                    "clock": {
                        "now": time::format_micros(time::now()),
                        "cutoff": time::format_micros(cutoff_ts),
                        "step_seconds": clock.step_seconds,
                        "rests_on": clock.rests_on,
                        "events_by": "their timestamps",
                        "backups_by": "the time in their names (when each was made), else their modification time",
                        "sessions_by": "their modification time",
                    },
                }),
            )?;
        }
        Ok(report)
    }

    /// Completed sessions of `id` last changed before `cutoff`.
    fn cleanup_sessions(
        &self,
        id: &MilestoneId,
        cutoff: std::time::SystemTime,
        dry_run: bool,
    ) -> Result<Vec<String>> {
        let dir = self.layout.sessions();
        let entries = match self.io.read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == stdio::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &dir, e)),
        };
        let mut removed = Vec::new();
        for e in entries {
            if e.kind != crate::io::FileKind::File || !e.name.ends_with(".json") {
                continue;
            }
            let path = dir.join(&e.name);
            let Ok(meta) = self.io.metadata(&path) else {
                continue;
            };
            if meta.modified >= cutoff {
                continue;
            }
            let Some(bytes) = read_opt(&*self.io, &path)? else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            if v.get("milestone_id").and_then(Value::as_str) != Some(id.as_str())
                || v.get("status").and_then(Value::as_str) != Some("completed")
            {
                continue;
            }
            if !dry_run {
                match self.io.remove_file(&path) {
                    Ok(()) => {}
                    Err(err) if err.kind() == stdio::ErrorKind::NotFound => continue,
                    Err(err) => return Err(Error::io("remove", &path, err)),
                }
            }
            removed.push(e.name.trim_end_matches(".json").to_string());
        }
        if !removed.is_empty() && !dry_run {
            self.io.sync_dir(&dir).ctx("sync directory", &dir)?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// A state saved as text is stored byte for byte as its value is.
        #[test]
        fn text_states_encode_as_their_values(v in crate::json::arb_value(), pretty: bool) {
            let id = MilestoneId::new("m").unwrap();
            let text = if pretty {
                serde_json::to_vec_pretty(&v).unwrap()
            } else {
                serde_json::to_vec(&v).unwrap()
            };
            crate::json::check_strict(&text, "state").unwrap();
            let ts = "2026-11-25T00:00:00.000000Z";
            let (mut from_text, mut from_value) = (Vec::new(), Vec::new());
            encode(ts, &id, 7, &NewState::Text(&text), &mut from_text).unwrap();
            encode(ts, &id, 7, &NewState::Value(Cow::Borrowed(&v)), &mut from_value).unwrap();
            prop_assert_eq!(String::from_utf8(from_text).unwrap(), String::from_utf8(from_value).unwrap());
        }
    }

    /// The header read a save takes of the file it replaces (the fast
    /// scanner, then serde_json for what it does not vouch for) accepts
    /// exactly the files a full parse accepts, so a save never backs up a
    /// file a load would call corrupt, nor moves aside one a load reads.
    #[test]
    fn the_header_parse_fails_exactly_when_the_full_parse_does() {
        let head = r#"{"timestamp":"t","milestone_id":"m","version":"1.0","revision":3,"state":"#;
        for state in [
            r#""\ud800""#,
            r#""\udc00x""#,
            r#"{"a":[1,]}"#,
            r#"{"a":1,"a":2}"#,
            r#""\ud83d\ude00""#,
            r#"[1e999, -0, "\u0000"]"#,
            "\"\u{1}\"",
            "[1] x",
        ] {
            let file = format!("{head}{state}}}\n");
            let full = backup::parse_envelope(file.as_bytes()).is_ok();
            let header = backup::parse_head(file.as_bytes());
            assert_eq!(header.is_ok(), full, "{file}");
            if let Ok(h) = header {
                assert_eq!(h.revision, 3);
            }
        }
        let broken = format!("{head}{{\"a\":[1,]}}}}");
        assert!(backup::parse_head(broken.as_bytes()).is_err());
    }

    #[test]
    fn check_strict_rejects_what_parse_strict_rejects() {
        for bad in [
            &b"{\"a\":1,\"a\":2}"[..],
            b"{\"a\":1} x",
            b"",
            b"[1,]",
            b"\"\xff\"",
            b"\"\\ud800\"",
        ] {
            assert!(crate::json::parse_strict(bad, "s").is_err());
            assert!(crate::json::check_strict(bad, "s").is_err(), "{bad:?}");
        }
        // Repeats among many keys (past the short list) are found too.
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let wide = format!("{{{},\"k33\":0}}", many.join(","));
        assert!(crate::json::check_strict(wide.as_bytes(), "s").is_err());
        let early = format!("{{{},\"k3\":0}}", many.join(","));
        assert!(crate::json::check_strict(early.as_bytes(), "s").is_err());
        let fine = format!("{{{}}}", many.join(","));
        assert!(crate::json::check_strict(fine.as_bytes(), "s").is_ok());
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(crate::json::check_strict(deep.as_bytes(), "s").is_err());
    }
}
