//! `doctor`: check the whole store, and repair what is safe to repair.
//!
//! Every finding names a path and what `--repair` does about it. Repairs
//! never delete user data: they remove orphan temp files of dead writers,
//! links planted in the store (the link, never its target), stale locks;
//! they recover corrupt state from backups, quarantine torn log tails and
//! mark abandoned sessions ended. Each repair is logged as an event of the
//! milestone concerned, where there is one.
//!
//! Doctor reads without locks, so every repair checks again, under what
//! the writers it could race take, before it changes anything: a corrupt
//! state file is recovered only if it is still there and still corrupt
//! with the milestone's lock held (a `complete`, `reopen` or `save` that
//! moved or replaced it meanwhile is left alone); a torn tail is measured
//! again under the log's `flock`; `.current_session` (which `session
//! start` writes with no lock, after creating the session's file) is
//! removed only if the session it names still does not exist, after
//! renaming it aside, and put back if it changed; an abandoned session is
//! ended only if it is still active and its process still gone; a stale
//! lock is broken only if it is still the lock that was judged stale.

use std::collections::BTreeSet;
use std::io as stdio;
use std::path::Path;

use serde_json::json;

use crate::error::{Error, Result};
use crate::fs::atomic::{read_opt, remove_tree, write_replace};
use crate::fs::backup::{self, Kind};
use crate::fs::layout::SUBDIRS;
use crate::fs::revision;
use crate::fs::session::{ACTIVE, COMPLETED};
use crate::fs::FsStore;
use crate::id::{MilestoneId, SessionId};
use crate::io::{DirEntry, FileKind};
use crate::model::{DoctorReport, EventQuery, Finding, Liveness, SessionRecord, Status};
use crate::prelude::*;
use crate::process::{self, Alive};
use crate::store::WriteOptions;
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
        self.finding_with(kind, path, problem, repair, None, fix)
    }

    /// [`Self::finding`] with a way out beyond `repair`.
    fn finding_with(
        &mut self,
        kind: &str,
        path: &Path,
        problem: String,
        repair: &str,
        hint: Option<crate::error::Hint>,
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
            hint,
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

    /// A temporary file whose writer may or may not live (the process
    /// check failed): neither removed nor passed over as clean.
    fn unverified_temp(&mut self, path: &Path, owner: Option<u32>) -> Result<()> {
        let pid = owner.map_or_else(|| "?".to_string(), |p| p.to_string());
        self.finding_with(
            "unverified_temp",
            path,
            format!("temporary file of pid {pid}, which could not be checked for being alive"),
            "leave it",
            Some(crate::error::Hint::CheckAgain),
            None,
        )
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
            match owner.map(process::alive) {
                Some(Alive::Yes) => {}
                Some(Alive::Unknown) => self.unverified_temp(&path, owner)?,
                Some(Alive::No) | None => self.finding(
                    "orphan_temp",
                    &path,
                    "temporary file left by a writer that is gone".into(),
                    "remove it",
                    Some(&mut || remove_tree(io, &path)),
                )?,
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
                if self.common(&dir, &e)?
                    || e.name.contains(".json.corrupted.")
                    || revision::is_record(&e.name)
                {
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
                let Some(bytes) = read_opt(&*self.store.io, &path)? else {
                    // Moved by `complete` or `reopen` since the listing.
                    continue;
                };
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
                                Some(&mut || recover_if_still_corrupt(store, &id, &path)),
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

    /// State revisions left without their event: a write whose append
    /// failed after the state was committed succeeded with a warning, and
    /// is found here. A log whose events before the state's time were
    /// removed by cleanup cannot tell, and is left alone.
    fn unlogged_states(&mut self) -> Result<()> {
        let store = self.store;
        for status in [Status::Active, Status::Completed] {
            let dir = store.layout.status_dir(status);
            for e in self.list(&dir)? {
                if e.kind != FileKind::File {
                    continue;
                }
                let Some(id) = e
                    .name
                    .strip_suffix(".json")
                    .and_then(|n| MilestoneId::new(n).ok())
                else {
                    continue;
                };
                let path = dir.join(&e.name);
                let Some(bytes) = read_opt(&*store.io, &path)? else {
                    continue;
                };
                let Ok(head) = backup::parse_head(&bytes) else {
                    continue;
                };
                let Ok(saved_at) = head.timestamp.parse::<jiff::Timestamp>() else {
                    continue;
                };
                if head.revision == 0 {
                    continue; // the seed's: it logs its own events
                }
                let (mut logged, mut first) = (0u64, None);
                store
                    .log_of(&id)
                    .query(&EventQuery::default(), &mut |line| {
                        first.get_or_insert(line.timestamp);
                        let text = line.line()?;
                        if text.contains("\"event_type\":\"state_") {
                            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                                if let Some(r) = v["data"]["revision"].as_u64() {
                                    logged = logged.max(r);
                                }
                            }
                        }
                        Ok(true)
                    })?;
                if logged >= head.revision || first.is_none_or(|f| f > saved_at) {
                    continue;
                }
                let revision = head.revision;
                let state_file = format!(".milestones/state/{}/{id}.json", status.as_str());
                self.finding(
                    "unlogged_state",
                    &path,
                    format!("revision {revision} of '{id}' has no event in its log (its append failed after the state was saved)"),
                    "log a state_unlogged event for it",
                    Some(&mut || {
                        store.emit(
                            &id,
                            "state_unlogged",
                            json!({"state_file": state_file, "revision": revision}),
                        )?;
                        Ok(())
                    }),
                )?;
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
            if view.effective_status == crate::model::SessionStatus::Abandoned {
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
            // `session start` creates the session's file before it points
            // `.current_session` at it: a session newer than the listing
            // is checked again.
            if !ids.contains(&name) && !session_exists(store, &name)? {
                self.finding(
                    "current_session",
                    &cur,
                    format!("names session '{name}', which does not exist"),
                    "remove it",
                    Some(&mut || remove_dangling_current(store, &name)),
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
            if e.kind == FileKind::Dir
                && (e.name == "segments" || e.name == "quarantine" || e.name == "clock")
            {
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
        let mut last: Option<(u64, jiff::Timestamp)> = None;
        let mut seq_problems = ProblemList::default();
        let mut time_problems = ProblemList::default();
        let report = store
            .log_of(id)
            .query(&EventQuery::default(), &mut |line| {
                if let Some((prev, prev_ts)) = last {
                    let problem = if line.seq == prev {
                        Some(format!("seq {} repeats", line.seq))
                    } else if line.seq < prev {
                        Some(format!("seq goes back from {prev} to {}", line.seq))
                    } else if line.seq > prev + 1 {
                        Some(format!("seq jumps from {prev} to {}", line.seq))
                    } else {
                        None
                    };
                    if let Some(p) = problem {
                        seq_problems.push(p);
                    }
                    // The seed stamps whole seconds: going back less than
                    // that is its rounding, not a clock step.
                    if prev_ts
                        .checked_sub(SEED_RESOLUTION)
                        .is_ok_and(|floor| line.timestamp < floor)
                    {
                        time_problems.push(format!(
                            "timestamp goes back at seq {} ({} after {})",
                            line.seq,
                            time::format_micros(line.timestamp),
                            time::format_micros(prev_ts)
                        ));
                    }
                }
                last = Some((line.seq, line.timestamp));
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
        let log = store.log_of(id);
        let unsynced = log.unsynced()?;
        if !unsynced.is_empty() {
            let bytes: u64 = unsynced.iter().map(|r| r.len).sum();
            let fence = log.unsynced_path();
            self.finding(
                "log_unsynced",
                &fence,
                format!(
                    "{} range(s) of {bytes} bytes of {} may not be on disk: their sync failed and so did a second attempt; no later append is acknowledged until they are written again",
                    unsynced.len(),
                    self.rel(path)
                ),
                "write them again and sync them (the next append does too)",
                Some(&mut || store.log_of(id).repair().map(|_| ())),
            )?;
        }
        let seq_repair = "leave it (nothing is lost; a seed line appended while an mstate append \
                          was numbering its own, a corrupt line or a removed one)";
        let (seq_total, seq_more) = (seq_problems.total(), seq_problems.more);
        for p in seq_problems.listed {
            self.finding("log_seq", path, p, seq_repair, None)?;
        }
        if seq_more > 0 {
            self.finding(
                "log_seq_more",
                path,
                format!(
                    "{} more seq repeats or gaps not listed ({} in all)",
                    seq_more, seq_total
                ),
                seq_repair,
                None,
            )?;
        }
        let (time_total, time_more) = (time_problems.total(), time_problems.more);
        for p in time_problems.listed {
            self.finding(
                "log_order",
                path,
                p,
                "leave it (nothing is lost; a clock step or a planted line; readers cope)",
                None,
            )?;
        }
        if time_more > 0 {
            self.finding(
                "log_order_more",
                path,
                format!(
                    "{} more timestamps going back not listed ({} in all)",
                    time_more, time_total
                ),
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
            if e.kind == FileKind::File && crate::fs::token::is_record(&e.name) {
                continue; // a milestone's fencing-token counter
            }
            let trash = e.name.starts_with(".trash-");
            if let Some(rest) = e
                .name
                .strip_prefix(".tmp-")
                .or_else(|| e.name.strip_prefix(".trash-"))
            {
                // A lock being built belongs to its process while it lives;
                // a released lock renamed to trash is garbage at once.
                let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
                if !trash {
                    match pid.map(process::alive) {
                        Some(Alive::Yes) => continue,
                        Some(Alive::Unknown) => {
                            self.unverified_temp(&path, pid)?;
                            continue;
                        }
                        Some(Alive::No) | None => {}
                    }
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
                self.finding_with(
                    "unverified_lock",
                    &path,
                    format!(
                        "lock of '{id}' held by {} cannot be verified: {reason}",
                        info.describe()
                    ),
                    "leave it",
                    Some(crate::error::Hint::ForceReleaseIfGone {
                        milestone: id.to_string(),
                    }),
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

/// How far the seed's whole-second timestamps can trail the line before.
const SEED_RESOLUTION: jiff::SignedDuration = jiff::SignedDuration::from_secs(1);

/// Most problems of one kind listed one by one per log; the rest are
/// counted in one more finding, so every problem is accounted for.
const MAX_LISTED: usize = 1000;

/// Problems of one kind found in a log: the first [`MAX_LISTED`], and how
/// many more.
#[derive(Default)]
struct ProblemList {
    listed: Vec<String>,
    more: u64,
}

impl ProblemList {
    fn push(&mut self, p: String) {
        if self.listed.len() < MAX_LISTED {
            self.listed.push(p);
        } else {
            self.more += 1;
        }
    }

    fn total(&self) -> u64 {
        self.listed.len() as u64 + self.more
    }
}

fn remove_file(io: &dyn crate::io::Io, path: &Path) -> Result<()> {
    match io.remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == stdio::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// Recover the state file at `path` from its newest valid backup, if it
/// is still there and still corrupt once the milestone's lock is held
/// (the lock every state writer takes): a file a `complete`, `reopen` or
/// `save` replaced or moved since it was read is left alone.
fn recover_if_still_corrupt(store: &FsStore, id: &MilestoneId, path: &Path) -> Result<()> {
    let opts = WriteOptions::default();
    store.locked(id, "doctor", opts.lock_timeout, || {
        let Some(bytes) = read_opt(&*store.io, path)? else {
            return Ok(());
        };
        if backup::parse_envelope(&bytes).is_ok() {
            return Ok(());
        }
        store.recover_state(id, None, &opts).map(|_| ())
    })
}

/// Whether `sessions/<name>.json` exists now.
fn session_exists(store: &FsStore, name: &str) -> Result<bool> {
    let Ok(sid) = SessionId::new(name) else {
        return Ok(false);
    };
    crate::fs::atomic::exists(&*store.io, &store.layout.session_file(&sid))
}

/// Remove `.current_session` if it still names `name` and that session
/// still does not exist (a live session's pointer is never removed).
fn remove_dangling_current(store: &FsStore, name: &str) -> Result<()> {
    store.remove_current_if(&mut |taken| Ok(taken == name && !session_exists(store, taken)?))
}

fn end_abandoned(store: &FsStore, record: &SessionRecord, reason: &str) -> Result<()> {
    let sid = SessionId::new(record.session_id.as_str())?;
    let mut r = store.read_session(&sid)?;
    // Ended meanwhile, or its process seen alive after all: leave it.
    if r.status != ACTIVE
        || store.view(r.clone()).effective_status != crate::model::SessionStatus::Abandoned
    {
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
    /// Where there is no store at all, that is the one answer: it is
    /// not a store with every directory missing, and `repair` does not
    /// create one.
    pub(crate) fn run_doctor(&self, repair: bool, progress: Progress<'_>) -> Result<DoctorReport> {
        if !self.exists()? {
            return Err(Error::NotFound {
                kind: crate::error::ObjectKind::Store,
                name: self.root().display().to_string(),
                hint: Some(crate::error::Hint::NoStoreHere),
            });
        }
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
        if usable.contains("active") && usable.contains("events") {
            d.unlogged_states()?;
        }
        Ok(d.report)
    }
}
