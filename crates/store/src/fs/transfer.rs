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

use std::io as stdio;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, IoContext, ObjectKind, Result};
use crate::fs::atomic::{self, ensure_dir, read_opt, temp_path, write_replace};
use crate::fs::backup::{self, Kind};
use crate::fs::log::line;
use crate::fs::state::{encode, NewState};
use crate::fs::{revision, FsStore, NO_SESSION};
use crate::id::{CheckpointName, MilestoneId, SessionId};
use crate::io::File;
use crate::model::{EventQuery, ReadReport, SessionFilter, Status};
use crate::store::Store;
use crate::transfer::{format_time, parse_time, Record, StateRecord};

/// Bytes of event lines gathered before one write.
const EVENT_BUFFER: usize = 1 << 20;

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

/// [`stdio::Write`] over a [`File`].
struct FileWriter<'a>(&'a mut dyn File);

impl stdio::Write for FileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> stdio::Result<usize> {
        self.0.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> stdio::Result<()> {
        Ok(())
    }
}

/// The log of the milestone being imported, written to a temporary file
/// and put in place by [`FsStore::finish_log`].
struct Pending {
    id: MilestoneId,
    /// Set once the milestone has a state: a milestone with neither state
    /// nor events gets an empty log, so the store knows it.
    has_state: bool,
    /// The part of the log being written.
    log: Option<OpenLog>,
    /// Earlier parts, written and synced: a line without `seq` after a
    /// gap (where the source skipped a damaged line) starts a new
    /// segment, whose header gives it its seq.
    sealed: Vec<Part>,
    last_seq: u64,
    /// The latest timestamp of the lines so far, and whether the log was
    /// marked as out of time order (as an append marks it, so `since`
    /// and `until` scan it whole).
    latest: Option<jiff::Timestamp>,
    unordered: bool,
}

impl Pending {
    fn new(id: MilestoneId, has_state: bool) -> Pending {
        Pending {
            id,
            has_state,
            log: None,
            sealed: Vec::new(),
            last_seq: 0,
            latest: None,
            unordered: false,
        }
    }

    /// Remove the temporary files of a log that will not be put in place.
    fn discard(self, io: &dyn crate::io::Io) {
        for part in self.sealed.iter().chain(self.log.as_ref().map(|l| &l.part)) {
            atomic::discard(io, &part.tmp);
        }
    }
}

/// One file of an imported log: where it is written, where it goes.
struct Part {
    tmp: PathBuf,
    target: PathBuf,
    /// A segment (its first seq is not 1, or the log has several parts).
    segment: bool,
}

struct OpenLog {
    file: Box<dyn File>,
    part: Part,
    buf: Vec<u8>,
}

fn out_of_order(what: impl Into<String>) -> Error {
    Error::invalid(
        "imported records",
        format!("{}: the records are not in export order", what.into()),
    )
}

fn taken(kind: ObjectKind, name: impl Into<String>) -> Error {
    Error::AlreadyExists {
        kind,
        name: name.into(),
        hint: Some("import into a store that does not hold it".into()),
    }
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
                        hint: Some(format!(
                            "recover it first (`mstate recover {id}`, or `mstate doctor --repair`), then move the store"
                        )),
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
        let read = Store::events(self, id, &EventQuery::default(), &mut |l| {
            more = sink(Record::Event {
                milestone: id.clone(),
                seq: l.seq,
                line: l.raw.to_string(),
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

    /// Write `records` (in export order) into this store, which must hold
    /// none of their milestones and sessions.
    pub(crate) fn import_records(
        &self,
        records: &mut dyn Iterator<Item = Result<Record>>,
    ) -> Result<()> {
        self.ensure_layout()?;
        let mut pending: Option<Pending> = None;
        let result = (|| {
            for record in &mut *records {
                match record? {
                    Record::Milestone { id, status, state } => {
                        if let Some(p) = pending.take() {
                            self.finish_log(p)?;
                        }
                        let has_state = state.is_some();
                        self.put_milestone(&id, status, state)?;
                        pending = Some(Pending::new(id, has_state));
                    }
                    Record::Revision {
                        milestone,
                        revision,
                        text,
                        written_at,
                        superseded_at,
                    } => {
                        current(&pending, &milestone)?;
                        self.put_backup(&milestone, revision, &text, &written_at, &superseded_at)?;
                    }
                    Record::Checkpoint {
                        milestone,
                        name,
                        revision,
                        text,
                        created_at,
                    } => {
                        current(&pending, &milestone)?;
                        self.put_checkpoint(&milestone, &name, revision, &text, &created_at)?;
                    }
                    Record::Event {
                        milestone,
                        seq,
                        line,
                    } => {
                        current(&pending, &milestone)?;
                        if let Some(p) = pending.as_mut() {
                            self.put_event(p, seq, &line)?;
                        }
                    }
                    Record::Session(s) => {
                        if let Some(p) = pending.take() {
                            self.finish_log(p)?;
                        }
                        let sid = SessionId::new(&s.session_id)?;
                        let path = self.layout.session_file(&sid);
                        let mut bytes = serde_json::to_vec_pretty(&s)
                            .map_err(|e| Error::io("encode", "session", e.into()))?;
                        bytes.push(b'\n');
                        match atomic::create_exclusive(&*self.io, &path, &bytes) {
                            Ok(()) => {}
                            Err(e) if e.kind() == stdio::ErrorKind::AlreadyExists => {
                                return Err(taken(ObjectKind::Session, sid.as_str()))
                            }
                            Err(e) => return Err(Error::io("create", &path, e)),
                        }
                    }
                    Record::CurrentSession(sid) => {
                        if let Some(p) = pending.take() {
                            self.finish_log(p)?;
                        }
                        let sid = SessionId::new(&sid)?;
                        write_replace(
                            &*self.io,
                            &self.layout.current_session(),
                            format!("{sid}\n").as_bytes(),
                        )?;
                    }
                }
            }
            if let Some(p) = pending.take() {
                self.finish_log(p)?;
            }
            for dir in [self.layout.sessions(), self.layout.backups()] {
                self.io.sync_dir(&dir).ctx("sync directory", &dir)?;
            }
            Ok(())
        })();
        if let Some(p) = pending {
            p.discard(&*self.io);
        }
        result
    }

    /// The milestone's state file and revision record.
    fn put_milestone(
        &self,
        id: &MilestoneId,
        status: Status,
        state: Option<StateRecord>,
    ) -> Result<()> {
        let known = self.find_state(id)?.is_some()
            || atomic::exists(&*self.io, &self.layout.event_log(id))?
            || atomic::exists(&*self.io, &self.layout.segments_dir(id))?;
        if known {
            return Err(taken(ObjectKind::Milestone, id.as_str()));
        }
        let Some(state) = state else {
            return Ok(());
        };
        crate::json::check_strict(state.text.as_bytes(), "imported state")?;
        let target = self.layout.state_file(id, status);
        let new = NewState::Text(state.text.as_bytes());
        let mut record = Ok(());
        atomic::write_replace_then(
            &*self.io,
            &target,
            &mut |out| encode(&state.written_at, id, state.revision, &new, out),
            &mut || {
                if state.revision > 0 {
                    record = revision::advance(
                        &*self.io,
                        &self.layout,
                        id,
                        &revision::Record::default(),
                        state.revision,
                    );
                }
            },
        )?;
        record?;
        if status != Status::Active {
            let dir = self.layout.active();
            self.io.sync_dir(&dir).ctx("sync directory", &dir)?;
        }
        Ok(())
    }

    /// A backup file of revision `rev`, named for when it was superseded.
    fn put_backup(
        &self,
        id: &MilestoneId,
        rev: u64,
        text: &str,
        written_at: &str,
        superseded_at: &str,
    ) -> Result<()> {
        crate::json::check_strict(text.as_bytes(), "imported revision")?;
        let at = parse_time(superseded_at, &format!("revision {rev} of '{id}'"))?;
        let modified = parse_time(written_at, &format!("revision {rev} of '{id}'"))?;
        let stamp = crate::time::file_stamp(jiff::Timestamp::try_from(at).map_err(|e| {
            Error::invalid("imported record", format!("revision {rev} of '{id}': {e}"))
        })?);
        let new = NewState::Text(text.as_bytes());
        for attempt in 0..100u32 {
            let name = match attempt {
                0 => format!("{id}-{stamp}-r{rev}.json"),
                n => format!("{id}-{stamp}-r{rev}-{n}.json"),
            };
            let path = self.layout.backups().join(&name);
            let fill = &mut |out: &mut dyn stdio::Write| encode(written_at, id, rev, &new, out);
            match self.write_new(&path, fill, modified)? {
                true => return Ok(()),
                false => continue,
            }
        }
        Err(taken(ObjectKind::Backup, format!("r{rev} of '{id}'")))
    }

    fn put_checkpoint(
        &self,
        id: &MilestoneId,
        name: &CheckpointName,
        rev: u64,
        text: &str,
        created_at: &str,
    ) -> Result<()> {
        crate::id::check_checkpoint_file(id, name)?;
        crate::json::check_strict(text.as_bytes(), "imported checkpoint")?;
        let at = parse_time(created_at, &format!("checkpoint '{name}' of '{id}'"))?;
        let path = self.layout.checkpoint_file(id, name);
        let new = NewState::Text(text.as_bytes());
        let fill = &mut |out: &mut dyn stdio::Write| encode(created_at, id, rev, &new, out);
        if !self.write_new(&path, fill, at)? {
            return Err(taken(ObjectKind::Checkpoint, name.as_str()));
        }
        Ok(())
    }

    /// Create `path` with what `fill` writes, synced, with modification
    /// time `modified`; false (and nothing written) when the name is
    /// taken. The caller syncs the directory.
    fn write_new(
        &self,
        path: &Path,
        fill: &mut dyn FnMut(&mut dyn stdio::Write) -> stdio::Result<()>,
        modified: SystemTime,
    ) -> Result<bool> {
        if atomic::exists(&*self.io, path)? {
            return Ok(false);
        }
        let tmp = temp_path(path);
        let result = (|| {
            let mut f = self.io.create_new(&tmp).ctx("create", &tmp)?;
            {
                let mut w = stdio::BufWriter::with_capacity(EVENT_BUFFER, FileWriter(&mut *f));
                fill(&mut w).ctx("write", &tmp)?;
                stdio::Write::flush(&mut w).ctx("write", &tmp)?;
            }
            match self.io.set_modified(&tmp, modified) {
                Ok(()) => {}
                Err(e) if e.kind() == stdio::ErrorKind::Unsupported => {}
                Err(e) => return Err(Error::io("set the time of", &tmp, e)),
            }
            f.sync().ctx("sync", &tmp)?;
            drop(f);
            match self.io.rename_noreplace(&tmp, path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == stdio::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(Error::io("rename into place", path, e)),
            }
        })();
        if !matches!(result, Ok(true)) {
            atomic::discard(&*self.io, &tmp);
        }
        result
    }

    /// Open a part of `id`'s log whose first line has `seq`.
    fn open_part(&self, id: &MilestoneId, seq: u64) -> Result<OpenLog> {
        let (target, segment, head) = if seq == 1 {
            (self.layout.event_log(id), false, Vec::new())
        } else {
            (self.segment_path(id, seq)?, true, line::segment_header(seq))
        };
        let tmp = temp_path(&target);
        let file = self.io.create_new(&tmp).ctx("create", &tmp)?;
        Ok(OpenLog {
            file,
            part: Part {
                tmp,
                target,
                segment,
            },
            buf: head,
        })
    }

    /// `events/segments/<id>/<seq>.jsonl`, its directories created.
    fn segment_path(&self, id: &MilestoneId, seq: u64) -> Result<PathBuf> {
        ensure_dir(&*self.io, &self.layout.events().join("segments"))?;
        let dir = self.layout.segments_dir(id);
        ensure_dir(&*self.io, &dir)?;
        Ok(dir.join(format!("{seq:020}.jsonl")))
    }

    /// Write out and sync a part; its file is closed.
    fn seal(&self, mut log: OpenLog) -> Result<Part> {
        let result = (|| {
            log.file.write_all(&log.buf).ctx("write", &log.part.tmp)?;
            log.file.sync().ctx("sync", &log.part.tmp)
        })();
        if let Err(e) = result {
            atomic::discard(&*self.io, &log.part.tmp);
            return Err(e);
        }
        Ok(log.part)
    }

    /// Add one event line to the log being written.
    fn put_event(&self, p: &mut Pending, seq: u64, text: &str) -> Result<()> {
        let id = p.id.clone();
        let bad =
            |why: &str| Error::invalid("imported event", format!("event {seq} of '{id}': {why}"));
        if text.contains('\n') || text.contains('\r') {
            return Err(bad("its line holds a line break"));
        }
        let explicit = line::explicit_seq(text.as_bytes());
        if explicit.is_some_and(|e| e != seq) {
            return Err(bad("its line names another seq"));
        }
        if p.log.is_none() {
            if seq == 0 {
                return Err(bad("seqs start at 1"));
            }
            p.last_seq = seq - 1;
            p.log = Some(self.open_part(&id, seq)?);
        }
        if seq <= p.last_seq {
            return Err(out_of_order(format!("event {seq} of '{id}'")));
        }
        if explicit.is_none() && seq != p.last_seq + 1 {
            // A line without seq takes the one after the line before it:
            // after a gap, only a new segment's header can give it its own.
            if let Some(log) = p.log.take() {
                p.sealed.push(self.seal(log)?);
            }
            p.log = Some(self.open_part(&id, seq)?);
        }
        p.last_seq = seq;
        if let Some(ts) = line::timestamp_of(text.as_bytes()) {
            let behind = p
                .latest
                .and_then(|l| l.checked_sub(crate::fs::log::ORDER_SLACK).ok())
                .is_some_and(|bound| ts < bound);
            if behind && !p.unordered {
                self.log_of(&id)
                    .mark_unordered(seq, &crate::time::format_micros(ts))?;
                p.unordered = true;
            }
            p.latest = Some(p.latest.map_or(ts, |l| l.max(ts)));
        }
        let Some(log) = p.log.as_mut() else {
            return Ok(());
        };
        log.buf.extend_from_slice(text.as_bytes());
        log.buf.push(b'\n');
        if log.buf.len() >= EVENT_BUFFER {
            log.file.write_all(&log.buf).ctx("write", &log.part.tmp)?;
            log.buf.clear();
        }
        Ok(())
    }

    /// Put the milestone's log in place, synced: one live file, or
    /// segments and an empty live file.
    fn finish_log(&self, mut p: Pending) -> Result<()> {
        let live = self.layout.event_log(&p.id);
        let Some(log) = p.log.take() else {
            if !p.has_state {
                self.create_empty(&live)?;
                let dir = self.layout.events();
                self.io.sync_dir(&dir).ctx("sync directory", &dir)?;
            }
            return Ok(());
        };
        match self.seal(log) {
            Ok(part) => p.sealed.push(part),
            Err(e) => {
                p.discard(&*self.io);
                return Err(e);
            }
        }
        if p.sealed.len() > 1 && !p.sealed[0].segment {
            match self.segment_path(&p.id, 1) {
                Ok(target) => {
                    p.sealed[0].target = target;
                    p.sealed[0].segment = true;
                }
                Err(e) => {
                    p.discard(&*self.io);
                    return Err(e);
                }
            }
        }
        for (k, part) in p.sealed.iter().enumerate() {
            let err = match self.io.rename_noreplace(&part.tmp, &part.target) {
                Ok(()) => continue,
                Err(e) if e.kind() == stdio::ErrorKind::AlreadyExists => {
                    taken(ObjectKind::EventLog, p.id.as_str())
                }
                Err(e) => Error::io("rename into place", &part.target, e),
            };
            for rest in &p.sealed[k..] {
                atomic::discard(&*self.io, &rest.tmp);
            }
            return Err(err);
        }
        if p.sealed.iter().any(|part| part.segment) {
            let dir = self.layout.segments_dir(&p.id);
            self.io.sync_dir(&dir).ctx("sync directory", &dir)?;
            let parent = self.layout.events().join("segments");
            self.io.sync_dir(&parent).ctx("sync directory", &parent)?;
            self.create_empty(&live)?;
        }
        let dir = self.layout.events();
        self.io.sync_dir(&dir).ctx("sync directory", &dir)
    }

    /// An empty file at `path`, synced (the caller syncs the directory).
    fn create_empty(&self, path: &Path) -> Result<()> {
        match self.io.create_new(path) {
            Ok(f) => f.sync().ctx("sync", path),
            Err(e) if e.kind() == stdio::ErrorKind::AlreadyExists => {
                Err(taken(ObjectKind::EventLog, path.display().to_string()))
            }
            Err(e) => Err(Error::io("create", path, e)),
        }
    }
}

/// Check that a record belongs to the milestone being imported.
fn current(pending: &Option<Pending>, milestone: &MilestoneId) -> Result<()> {
    match pending {
        Some(p) if p.id == *milestone => Ok(()),
        _ => Err(out_of_order(format!("a record of '{milestone}'"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NewEvent, SessionStart};
    use crate::store::{StoreOptions, WriteOptions};

    fn export_all(store: &dyn Store) -> Vec<Record> {
        let mut out = Vec::new();
        let report = store
            .export(&mut |r| {
                out.push(r);
                Ok(true)
            })
            .unwrap();
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        out
    }

    fn filled(dir: &Path) -> FsStore {
        let store = FsStore::open(dir.join("a"), StoreOptions::default()).unwrap();
        let id = MilestoneId::new("m").unwrap();
        let w = WriteOptions::default();
        store.init(&id).unwrap();
        store.save_text(&id, br#"{"step": 1}"#, &w).unwrap();
        store
            .save_text(&id, br#"{"step": 2, "n": 1.50}"#, &w)
            .unwrap();
        let cp = CheckpointName::new("cp").unwrap();
        store.checkpoint_create(&id, Some(&cp), false, &w).unwrap();
        store.save_text(&id, br#"{"step": 3}"#, &w).unwrap();
        let start = SessionStart {
            owner_pid: std::process::id(),
            working_directory: "/w".into(),
            git_branch: "main".into(),
            make_current: true,
            create: false,
        };
        store.session_start(&id, &start).unwrap();
        let note = NewEvent {
            event_type: crate::id::EventType::new("note").unwrap(),
            data: serde_json::json!({"text": "é\u{2028}"}),
            session_id: None,
        };
        store.log(&id, &note).unwrap();
        let other = MilestoneId::new("done").unwrap();
        store.save_text(&other, b"[]", &w).unwrap();
        store.complete(&other, &w).unwrap();
        store
    }

    /// What one store exports, another imports, and then exports the
    /// same, record for record (times and backup names included).
    #[test]
    fn a_store_imported_exports_what_it_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let a = filled(dir.path());
        let records = export_all(&a);
        assert!(records
            .iter()
            .any(|r| matches!(r, Record::Revision { revision: 2, .. })));
        assert!(records
            .iter()
            .any(|r| matches!(r, Record::CurrentSession(_))));
        let b = FsStore::open(dir.path().join("b"), StoreOptions::default()).unwrap();
        b.import(&mut records.clone().into_iter().map(Ok)).unwrap();
        assert_eq!(export_all(&b), records);
        let names = |s: &FsStore| {
            let mut n: Vec<String> = s
                .backups(&MilestoneId::new("m").unwrap())
                .unwrap()
                .into_iter()
                .map(|b| format!("{} {}", b.name, b.modified))
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(&a), names(&b));
    }

    /// A milestone the target holds already is refused, and its files are
    /// left as they were.
    #[test]
    fn an_import_over_a_known_milestone_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = filled(dir.path());
        let records = export_all(&a);
        let b = FsStore::open(dir.path().join("b"), StoreOptions::default()).unwrap();
        let id = MilestoneId::new("m").unwrap();
        b.save_text(&id, br#"{"theirs": true}"#, &WriteOptions::default())
            .unwrap();
        let err = b.import(&mut records.into_iter().map(Ok)).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        let loaded = b.load(&id, &WriteOptions::default()).unwrap();
        assert_eq!(loaded.envelope.state, serde_json::json!({"theirs": true}));
    }

    /// Records out of export order, and event lines that cannot be kept
    /// as they are, are refused.
    #[test]
    fn bad_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsStore::open(dir.path().join("b"), StoreOptions::default()).unwrap();
        let id = MilestoneId::new("m").unwrap();
        let head = Record::Milestone {
            id: id.clone(),
            status: Status::Active,
            state: None,
        };
        let ev = |seq: u64, line: &str| Record::Event {
            milestone: id.clone(),
            seq,
            line: line.to_string(),
        };
        let line =
            r#"{"timestamp":"2026-01-01T00:00:00.000000Z","milestone_id":"m","event_type":"x"}"#;
        for bad in [
            vec![ev(1, line)],
            vec![head.clone(), ev(2, line), ev(2, line)],
            vec![head.clone(), ev(1, "{}\n{}")],
        ] {
            assert!(b.import(&mut bad.into_iter().map(Ok)).is_err());
        }
    }

    /// Lines without `seq` keep theirs across a gap (the source skipped a
    /// damaged line): the log is written as segments whose headers carry
    /// them, and appends go on after the last.
    #[test]
    fn lines_without_seq_keep_theirs_across_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsStore::open(dir.path().join("b"), StoreOptions::default()).unwrap();
        let id = MilestoneId::new("m").unwrap();
        let line = |i: u32| {
            format!(
                r#"{{"timestamp":"2026-01-01T00:00:0{i}.000000Z","milestone_id":"m","event":"seeded","n":{i}}}"#
            )
        };
        let records = vec![
            Record::Milestone {
                id: id.clone(),
                status: Status::Active,
                state: None,
            },
            Record::Event {
                milestone: id.clone(),
                seq: 1,
                line: line(1),
            },
            Record::Event {
                milestone: id.clone(),
                seq: 3,
                line: line(3),
            },
            Record::Event {
                milestone: id.clone(),
                seq: 4,
                line: line(4),
            },
        ];
        b.import(&mut records.clone().into_iter().map(Ok)).unwrap();
        assert_eq!(export_all(&b), records);
        let note = NewEvent {
            event_type: crate::id::EventType::new("note").unwrap(),
            data: serde_json::json!({}),
            session_id: None,
        };
        assert_eq!(b.log(&id, &note).unwrap().seq, Some(5));
    }
}
