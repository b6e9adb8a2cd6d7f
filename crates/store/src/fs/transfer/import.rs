//! Import of a whole filesystem store: see the parent module.

use std::io as stdio;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, IoContext, ObjectKind, Result};
use crate::fs::atomic::{self, ensure_dir, temp_path, write_replace};
use crate::fs::log::line;
use crate::fs::state::{encode, NewState};
use crate::fs::{revision, FsStore};
use crate::id::{CheckpointName, MilestoneId, SessionId};
use crate::io::File;
use crate::model::Status;
use crate::transfer::{parse_time, Record, StateRecord};

/// Bytes of event lines gathered before one write.
const EVENT_BUFFER: usize = 1 << 20;

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
        hint: Some(crate::error::Hint::Advice(
            "import into a store that does not hold it".into(),
        )),
    }
}

impl FsStore {
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
