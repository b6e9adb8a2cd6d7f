//! `doctor`: check the whole store, and repair what is safe to repair.
//!
//! Every finding names a path and what `--repair` does about it. Repairs
//! never delete user data: they remove orphan temp files of dead writers,
//! links planted in the store (the link, never its target), stale locks;
//! they recover corrupt state from backups, quarantine torn log tails and
//! mark abandoned sessions ended. Each repair is logged as an event of the
//! milestone concerned, where there is one.

use std::collections::BTreeSet;
use std::io as stdio;
use std::path::Path;

use serde_json::json;

use crate::error::{Error, Result};
use crate::fs::atomic::{read_opt, remove_tree, write_replace};
use crate::fs::backup::{self, Kind};
use crate::fs::layout::SUBDIRS;
use crate::fs::session::{ABANDONED, ACTIVE, COMPLETED};
use crate::fs::FsStore;
use crate::id::{MilestoneId, SessionId};
use crate::io::{DirEntry, FileKind};
use crate::model::{DoctorReport, EventQuery, Finding, Liveness, SessionRecord, Status};
use crate::process::{self, Alive};
use crate::store::{Store, WriteOptions};
use crate::time;

/// Progress of a doctor run: (items done, items in all).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

struct Doctor<'a> {
    store: &'a FsStore,
    repair: bool,
    report: DoctorReport,
}

/// Pid embedded in a temp file name: `<file>.tmp.<pid>` (the seed's) or
/// `<file>.tmp.<pid>-<nanos>-<n>` (ours).
fn temp_owner(name: &str) -> Option<Option<u32>> {
    let (_, rest) = name.rsplit_once(".tmp.")?;
    Some(rest.split('-').next().and_then(|p| p.parse().ok()))
}

fn kind_name(k: FileKind) -> &'static str {
    match k {
        FileKind::File => "file",
        FileKind::Dir => "directory",
        FileKind::Symlink => "symbolic link",
        FileKind::Other => "special file",
    }
}

impl Doctor<'_> {
    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(self.store.layout.root())
            .unwrap_or(p)
            .display()
            .to_string()
    }

    /// Record a finding; with `--repair`, run `fix` when it is repairable.
    fn finding(
        &mut self,
        kind: &str,
        path: &Path,
        problem: String,
        repair: &str,
        fix: Option<&mut dyn FnMut() -> Result<()>>,
    ) -> Result<()> {
        let repairable = fix.is_some();
        let mut repaired = false;
        if self.repair {
            if let Some(fix) = fix {
                fix()?;
                repaired = true;
            }
        }
        self.report.findings.push(Finding {
            kind: kind.to_string(),
            path: self.rel(path),
            problem,
            repair: repair.to_string(),
            repairable,
            repaired,
        });
        Ok(())
    }

    fn list(&mut self, dir: &Path) -> Result<Vec<DirEntry>> {
        match self.store.io.read_dir(dir) {
            Ok(mut e) => {
                e.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(e)
            }
            Err(e) if e.kind() == stdio::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("list", dir, e)),
        }
    }

    /// Entries that are not regular files, and orphan temp files; returns
    /// true when the entry was dealt with.
    fn common(&mut self, dir: &Path, e: &DirEntry) -> Result<bool> {
        let io = &*self.store.io;
        let path = dir.join(&e.name);
        if e.kind == FileKind::Symlink {
            self.finding(
                "not_regular",
                &path,
                "a symbolic link inside the store (mstate never follows it)".into(),
                "remove the link (its target is left alone)",
                Some(&mut || remove_file(io, &path)),
            )?;
            return Ok(true);
        }
        if let Some(owner) = temp_owner(&e.name) {
            let alive = owner.is_some_and(|p| process::alive(p) != Alive::No);
            if !alive {
                self.finding(
                    "orphan_temp",
                    &path,
                    "temporary file left by a writer that is gone".into(),
                    "remove it",
                    Some(&mut || remove_tree(io, &path)),
                )?;
            }
            return Ok(true);
        }
        if e.kind != FileKind::File {
            self.finding(
                "not_regular",
                &path,
                format!("a {} where only files belong", kind_name(e.kind)),
                "leave it; move it away by hand",
                None,
            )?;
            return Ok(true);
        }
        Ok(false)
    }

    fn layout(&mut self) -> Result<BTreeSet<&'static str>> {
        let mut usable = BTreeSet::new();
        let io = &*self.store.io;
        for sub in SUBDIRS {
            let p = self.store.layout.dir(sub);
            match io.metadata(&p) {
                Ok(m) if m.kind == FileKind::Dir => {
                    usable.insert(sub);
                }
                Ok(m) => self.finding(
                    "layout",
                    &p,
                    format!("expected a directory, found a {}", kind_name(m.kind)),
                    "leave it; move it away by hand (mstate refuses to use the store meanwhile)",
                    None,
                )?,
                Err(e) if e.kind() == stdio::ErrorKind::NotFound => {
                    self.finding(
                        "layout",
                        &p,
                        "missing directory".into(),
                        "create it",
                        Some(&mut || {
                            crate::fs::atomic::ensure_dir(io, &p)?;
                            Ok(())
                        }),
                    )?;
                    usable.insert(sub);
                }
                Err(e) => return Err(Error::io("inspect", &p, e)),
            }
        }
        Ok(usable)
    }

    fn states(&mut self) -> Result<()> {
        let mut seen: BTreeSet<MilestoneId> = BTreeSet::new();
        for status in [Status::Active, Status::Completed] {
            let dir = self.store.layout.status_dir(status);
            for e in self.list(&dir)? {
                self.report.checked += 1;
                if self.common(&dir, &e)? || e.name.contains(".json.corrupted.") {
                    continue;
                }
                let path = dir.join(&e.name);
                let Some(id) = e
                    .name
                    .strip_suffix(".json")
                    .and_then(|n| MilestoneId::new(n).ok())
                else {
                    self.finding(
                        "unknown_file",
                        &path,
                        "not a state file".into(),
                        "leave it",
                        None,
                    )?;
                    continue;
                };
                if !seen.insert(id.clone()) {
                    self.finding(
                        "duplicate_state",
                        &path,
                        format!("milestone '{id}' has state in both active/ and completed/"),
                        "leave it; remove the stale copy by hand",
                        None,
                    )?;
                }
                let bytes = read_opt(&*self.store.io, &path)?.unwrap_or_default();
                match backup::parse_envelope(&bytes) {
                    Ok(env) if env.milestone_id != id.as_str() => self.finding(
                        "envelope_mismatch",
                        &path,
                        format!("the envelope names milestone '{}'", env.milestone_id),
                        "leave it",
                        None,
                    )?,
                    Ok(_) => {}
                    Err(err) => {
                        let store = self.store;
                        let has_backup = store.backups(&id)?.iter().any(|b| b.valid);
                        let problem = format!("corrupt state file: {err}");
                        if has_backup {
                            self.finding(
                                "corrupt_state",
                                &path,
                                problem,
                                "recover the newest valid backup (logs state_recovered)",
                                Some(&mut || {
                                    store
                                        .recover_state(&id, None, &WriteOptions::default())
                                        .map(|_| ())
                                }),
                            )?;
                        } else {
                            self.finding(
                                "corrupt_state",
                                &path,
                                problem,
                                "leave it: there is no valid backup; restore a checkpoint or save a new state",
                                None,
                            )?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn backups(&mut self, known: &BTreeSet<MilestoneId>) -> Result<()> {
        let dir = self.store.layout.backups();
        for e in self.list(&dir)? {
            self.report.checked += 1;
            if self.common(&dir, &e)? {
                continue;
            }
            let path = dir.join(&e.name);
            let owner = known
                .iter()
                .find(|id| backup::classify(id, &e.name).is_some());
            let Some(id) = owner else {
                self.finding(
                    "unknown_backup",
                    &path,
                    "a backup or checkpoint of no known milestone".into(),
                    "leave it; remove it by hand if it is not needed",
                    None,
                )?;
                continue;
            };
            if let Ok(Err(err)) =
                backup::read_envelope(&*self.store.io, &self.store.layout, &e.name)
            {
                let what = match backup::classify(id, &e.name) {
                    Some(Kind::Checkpoint(_)) => "checkpoint",
                    _ => "backup",
                };
                self.finding(
                    "corrupt_backup",
                    &path,
                    format!("corrupt {what} of '{id}': {err}"),
                    "leave it (recovery skips invalid backups)",
                    None,
                )?;
            }
        }
        Ok(())
    }

    fn sessions(&mut self) -> Result<()> {
        let store = self.store;
        let dir = store.layout.sessions();
        let mut ids = BTreeSet::new();
        for e in self.list(&dir)? {
            self.report.checked += 1;
            if self.common(&dir, &e)? {
                continue;
            }
            let path = dir.join(&e.name);
            let Some(sid) = e
                .name
                .strip_suffix(".json")
                .and_then(|n| SessionId::new(n).ok())
            else {
                self.finding(
                    "unknown_file",
                    &path,
                    "not a session file".into(),
                    "leave it",
                    None,
                )?;
                continue;
            };
            ids.insert(sid.to_string());
            let record = match store.read_session(&sid) {
                Ok(r) => r,
                Err(err) => {
                    self.finding("corrupt_session", &path, err.to_string(), "leave it", None)?;
                    continue;
                }
            };
            let view = store.view(record);
            if view.effective_status == ABANDONED {
                let reason = view.abandoned_because.clone().unwrap_or_default();
                let record = view.record.clone();
                self.finding(
                    "abandoned_session",
                    &path,
                    format!("session is active but abandoned: {reason}"),
                    "mark it completed (logs session_abandoned)",
                    Some(&mut || end_abandoned(store, &record, &reason)),
                )?;
            }
        }
        let cur = store.layout.current_session();
        if let Some(bytes) = read_opt(&*store.io, &cur)? {
            let name = String::from_utf8_lossy(&bytes).trim().to_string();
            if !ids.contains(&name) {
                let io = &*store.io;
                self.finding(
                    "current_session",
                    &cur,
                    format!("names session '{name}', which does not exist"),
                    "remove it",
                    Some(&mut || remove_file(io, &cur)),
                )?;
            }
        }
        Ok(())
    }

    fn events(&mut self) -> Result<()> {
        let store = self.store;
        let dir = store.layout.events();
        for e in self.list(&dir)? {
            self.report.checked += 1;
            if e.kind == FileKind::Dir && (e.name == "segments" || e.name == "quarantine") {
                continue;
            }
            if self.common(&dir, &e)? {
                continue;
            }
            let path = dir.join(&e.name);
            let Some(id) = e
                .name
                .strip_prefix("milestone-")
                .and_then(|n| n.strip_suffix(".jsonl"))
                .and_then(|n| MilestoneId::new(n).ok())
            else {
                self.finding(
                    "unknown_file",
                    &path,
                    "not an event log".into(),
                    "leave it",
                    None,
                )?;
                continue;
            };
            self.log(&id, &path)?;
        }
        Ok(())
    }

    fn log(&mut self, id: &MilestoneId, path: &Path) -> Result<()> {
        let store = self.store;
        let mut last_seq: Option<u64> = None;
        let mut last_ts = None;
        let mut problems: Vec<String> = Vec::new();
        let report = store
            .log_of(id)
            .query(&EventQuery::default(), &mut |line| {
                if let Some(prev) = last_seq {
                    if line.seq == prev && problems.len() < 20 {
                        problems.push(format!("seq {} repeats", line.seq));
                    } else if line.seq > prev + 1 && problems.len() < 20 {
                        problems.push(format!("seq jumps from {prev} to {}", line.seq));
                    } else if line.seq < prev && problems.len() < 20 {
                        problems.push(format!("seq goes back from {prev} to {}", line.seq));
                    }
                }
                if let Some(prev) = last_ts {
                    if line.timestamp < prev && problems.len() < 20 {
                        problems.push(format!(
                            "timestamp goes back at seq {} ({} after {})",
                            line.seq,
                            time::format_micros(line.timestamp),
                            time::format_micros(prev)
                        ));
                    }
                }
                last_seq = Some(line.seq);
                last_ts = Some(line.timestamp);
                Ok(true)
            })?;
        for w in report.warnings {
            let torn = w.contains("torn");
            if torn {
                self.finding(
                    "torn_tail",
                    path,
                    w,
                    "move the torn bytes to events/quarantine/ (logs log_repaired)",
                    Some(&mut || {
                        if let Some(q) = store.log_of(id).repair()? {
                            store.emit(id, "log_repaired", json!({"quarantined": q}))?;
                        }
                        Ok(())
                    }),
                )?;
            } else {
                self.finding("corrupt_line", path, w, "leave it (readers skip it)", None)?;
            }
        }
        for p in problems {
            self.finding(
                "log_order",
                path,
                p,
                "leave it (nothing is lost; readers cope)",
                None,
            )?;
        }
        Ok(())
    }

    fn locks(&mut self) -> Result<()> {
        let store = self.store;
        let dir = store.layout.locks();
        for e in self.list(&dir)? {
            self.report.checked += 1;
            let path = dir.join(&e.name);
            let io = &*store.io;
            let trash = e.name.starts_with(".trash-");
            if let Some(rest) = e
                .name
                .strip_prefix(".tmp-")
                .or_else(|| e.name.strip_prefix(".trash-"))
            {
                // A lock being built belongs to its process while it lives;
                // a released lock renamed to trash is garbage at once.
                let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
                if !trash && pid.is_some_and(|p| process::alive(p) != Alive::No) {
                    continue;
                }
                self.finding(
                    "orphan_temp",
                    &path,
                    "leftover of a lock operation by a process that is gone".into(),
                    "remove it",
                    Some(&mut || remove_tree(io, &path)),
                )?;
                continue;
            }
            let Some(id) = e
                .name
                .strip_suffix(".lock")
                .and_then(|n| MilestoneId::new(n).ok())
            else {
                self.finding("unknown_file", &path, "not a lock".into(), "leave it", None)?;
                continue;
            };
            let locks = store.locks();
            let Some(info) = locks.read(&id)? else {
                continue;
            };
            let liveness = locks.liveness(&id, &info)?;
            if let Liveness::Unverified(reason) = &liveness {
                // Held, as far as anyone here can tell: only the user can.
                self.finding(
                    "unverified_lock",
                    &path,
                    format!(
                        "lock of '{id}' held by {} cannot be verified: {reason}",
                        info.describe()
                    ),
                    &format!(
                        "leave it; if its holder is gone, run `mstate lock release {id} --force`"
                    ),
                    None,
                )?;
            }
            if let Liveness::Stale(reason) = liveness {
                self.finding(
                    "stale_lock",
                    &path,
                    format!(
                        "lock of '{id}' held by {} is stale: {reason}",
                        info.describe()
                    ),
                    "break it (logs lock_broken)",
                    Some(&mut || {
                        if store.locks().break_stale(&id, &info)? {
                            store.emit(
                                &id,
                                "lock_broken",
                                json!({"reason": reason, "holder": info, "by": "doctor"}),
                            )?;
                        }
                        Ok(())
                    }),
                )?;
            }
        }
        Ok(())
    }
}

fn remove_file(io: &dyn crate::io::Io, path: &Path) -> Result<()> {
    match io.remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == stdio::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

fn end_abandoned(store: &FsStore, record: &SessionRecord, reason: &str) -> Result<()> {
    let sid = SessionId::new(record.session_id.as_str())?;
    let mut r = store.read_session(&sid)?;
    if r.status != ACTIVE {
        return Ok(());
    }
    r.status = COMPLETED.to_string();
    r.ended_at = Some(time::format_micros(time::now()));
    let mut bytes =
        serde_json::to_vec_pretty(&r).map_err(|e| Error::io("encode", "session", e.into()))?;
    bytes.push(b'\n');
    write_replace(&*store.io, &store.layout.session_file(&sid), &bytes)?;
    if let Ok(id) = MilestoneId::new(r.milestone_id.as_str()) {
        store.append_as(
            &id,
            sid.as_str(),
            "session_abandoned",
            json!({"session_id": sid.as_str(), "reason": reason}),
        )?;
    }
    Ok(())
}

impl FsStore {
    /// Check the store; with `repair`, fix what is safe to fix.
    pub(crate) fn run_doctor(&self, repair: bool, progress: Progress<'_>) -> Result<DoctorReport> {
        let mut d = Doctor {
            store: self,
            repair,
            report: DoctorReport::default(),
        };
        let usable = d.layout()?;
        let known: BTreeSet<MilestoneId> = self.milestone_ids()?.into_iter().collect();
        // Each check runs only when its directory is usable.
        const STEPS: [&str; 5] = ["active", "backups", "sessions", "events", ".locks"];
        for (i, dir) in STEPS.into_iter().enumerate() {
            if usable.contains(dir) {
                match dir {
                    "active" => d.states()?,
                    "backups" => d.backups(&known)?,
                    "sessions" => d.sessions()?,
                    "events" => d.events()?,
                    _ => d.locks()?,
                }
            }
            progress(i as u64 + 1, STEPS.len() as u64);
        }
        Ok(d.report)
    }
}
