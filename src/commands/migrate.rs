//! `migrate --from LOCATION --to LOCATION`: move a whole store to another
//! (files or PostgreSQL, either way), then check the copy by reading it
//! back.
//!
//! The source is read once, as a stream of records, on a thread that
//! feeds the target's import through a bounded channel: memory holds a
//! few hundred records, whatever the size of the logs. Everything that
//! can be refused (a location that does not parse, a source with no
//! store, a target that is not empty) is refused before the target is
//! written.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::mpsc::sync_channel;

use clap::Args;
use serde_json::json;

use mstate_store::transfer::{Record, Tally};
use mstate_store::{Location, Store, StoreOptions};

use crate::cli::GlobalArgs;
use crate::exit::{CliError, CliResult};
use crate::output::{note, warn, Out};

/// Records in flight between the reader of the source and the writer of
/// the target.
const CHANNEL_RECORDS: usize = 512;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The store to move: a postgres:// URL (with ?schema=NAME) or a
    /// .milestones/state directory.
    #[arg(long, value_name = "LOCATION")]
    pub from: String,
    /// Where to move it: a postgres:// URL or a directory (created if
    /// missing). It must hold no milestones or sessions, unless
    /// --into-nonempty.
    #[arg(long, value_name = "LOCATION")]
    pub to: String,
    /// Copy into a target that already holds milestones or sessions;
    /// none of the source's may be among them.
    #[arg(long)]
    pub into_nonempty: bool,
}

/// Parse a location flag.
fn location(flag: &str, text: &str, base: &Path) -> CliResult<Location> {
    Location::parse(text, base).map_err(|e| CliError::Invalid(format!("{flag} {text:?}: {e}")))
}

/// The ids of the store's sessions.
fn session_ids(store: &dyn Store) -> CliResult<BTreeSet<String>> {
    Ok(store
        .sessions(&Default::default())?
        .into_iter()
        .map(|v| v.record.session_id)
        .collect())
}

/// A short list of names for a message.
fn some(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    let more = names.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Refuse a target that holds anything, or (with `into_nonempty`) any
/// milestone or session of the source.
fn check_target(
    source: &dyn Store,
    target: &dyn Store,
    to: &Location,
    into_nonempty: bool,
) -> CliResult {
    if !target.exists()? {
        return Ok(());
    }
    let theirs: BTreeSet<String> = target
        .milestone_ids()?
        .into_iter()
        .map(|i| i.to_string())
        .collect();
    let their_sessions = session_ids(target)?;
    if theirs.is_empty() && their_sessions.is_empty() {
        return Ok(());
    }
    if !into_nonempty {
        return Err(CliError::Invalid(format!(
            "--to {to}: the target is not empty ({} milestones, {} sessions); move into an empty store, or pass --into-nonempty to add to it",
            theirs.len(),
            their_sessions.len()
        )));
    }
    let both: Vec<String> = source
        .milestone_ids()?
        .into_iter()
        .map(|i| i.to_string())
        .filter(|i| theirs.contains(i))
        .collect();
    if !both.is_empty() {
        return Err(CliError::Invalid(format!(
            "--to {to}: the target already holds milestones of the source ({}); nothing was moved",
            some(&both)
        )));
    }
    let both: Vec<String> = session_ids(source)?
        .into_iter()
        .filter(|s| their_sessions.contains(s))
        .collect();
    if !both.is_empty() {
        return Err(CliError::Invalid(format!(
            "--to {to}: the target already holds sessions of the source ({}); nothing was moved",
            some(&both)
        )));
    }
    Ok(())
}

/// Copy every record of `source` into `target`, tallying what passed.
fn copy(
    source: &dyn Store,
    target: &dyn Store,
    bar: &indicatif::ProgressBar,
) -> CliResult<(Tally, Vec<String>)> {
    let (tx, rx) = sync_channel::<mstate_store::Result<Record>>(CHANNEL_RECORDS);
    let (imported, exported) = std::thread::scope(|s| {
        let exporter = s.spawn(move || {
            let mut tally = Tally::default();
            let result = source.export(&mut |record| {
                tally.add(&record);
                let milestone = matches!(record, Record::Milestone { .. });
                if milestone {
                    bar.inc(1);
                }
                if milestone || tally.records % 256 == 0 {
                    bar.set_message(format!("{} events", tally.events));
                }
                // A closed channel: the import stopped (it failed).
                Ok(tx.send(Ok(record)).is_ok())
            });
            match result {
                Ok(report) => Ok((tally, report.warnings)),
                Err(e) => {
                    // The import stops at this; the error reported is `e`.
                    let _ = tx.send(Err(mstate_store::Error::invalid(
                        "source",
                        "reading it failed",
                    )));
                    Err(e)
                }
            }
        });
        let imported = target.import(&mut rx.iter());
        drop(rx);
        (imported, exporter.join())
    });
    let exported = exported.map_err(|_| CliError::Other("reading the source failed".into()))?;
    // The source's failure is the cause of the target's.
    let (tally, warnings) = exported?;
    imported?;
    Ok((tally, warnings))
}

/// A progress bar over `milestones` milestones on stderr, when it is a
/// terminal and the output is not JSON; hidden otherwise.
fn progress(global: &GlobalArgs, milestones: u64, doing: &str) -> indicatif::ProgressBar {
    if global.json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(milestones);
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{{bar:30}} {{pos}}/{{len}} milestones {doing}, {{msg}} ({{elapsed}})"
    )) {
        bar.set_style(style);
    }
    bar.set_message("0 events");
    bar
}

pub fn cmd_migrate(global: &GlobalArgs, a: &MigrateArgs) -> CliResult {
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::Other(format!("cannot read the working directory: {e}")))?;
    let base = match &global.chdir {
        Some(dir) => cwd.join(dir),
        None => cwd,
    };
    let from = location("--from", &a.from, &base)?;
    let to = location("--to", &a.to, &base)?;
    if from == to {
        return Err(CliError::Invalid(format!(
            "--from and --to name the same store ({from}); name another target"
        )));
    }
    let source = mstate_store::open(&from, StoreOptions::default())?;
    if !source.exists()? {
        return Err(CliError::Invalid(format!(
            "--from {from}: there is no store there; name a .milestones/state directory or a postgres:// URL with its ?schema="
        )));
    }
    let target = mstate_store::open(&to, StoreOptions::default())?;
    check_target(&*source, &*target, &to, a.into_nonempty)?;
    let milestones = source.milestone_ids()?.len() as u64;
    let bar = progress(global, milestones, "moved");
    let copied = copy(&*source, &*target, &bar);
    bar.finish_and_clear();
    let (tally, mut warnings) = copied.map_err(|e| {
        let code = e.code();
        match e {
            CliError::Store(err) => CliError::Worded {
                code,
                message: format!(
                    "{err}; the move did not finish (a PostgreSQL target is left as it was; a directory target may hold part of the store: remove what was added before trying again)"
                ),
            },
            other => other,
        }
    })?;
    warnings.extend(source.take_warnings());
    warnings.extend(target.take_warnings());
    let bar = progress(global, milestones, "read back");
    let mut copy_tally = Tally::default();
    let read_back = target.export(&mut |record| {
        let milestone = matches!(record, Record::Milestone { .. });
        if milestone {
            bar.inc(1);
        }
        copy_tally.add(&record);
        if milestone || copy_tally.records % 256 == 0 {
            bar.set_message(format!("{} events", copy_tally.events));
        }
        Ok(true)
    });
    bar.finish_and_clear();
    read_back?;
    let differences = tally.differences(&copy_tally);
    report(global, &from, &to, &tally, &warnings, &differences)?;
    if differences.is_empty() {
        Ok(())
    } else {
        Err(CliError::Other(format!(
            "the copy at {to} does not match the source: {}",
            differences.join("; ")
        )))
    }
}

/// Print the summary: one line per milestone, or one JSON object.
fn report(
    global: &GlobalArgs,
    from: &Location,
    to: &Location,
    tally: &Tally,
    warnings: &[String],
    differences: &[String],
) -> CliResult {
    let milestones = tally.milestones();
    let mut out = Out::new();
    if global.json {
        out.json(&json!({
            "from": from.to_string(),
            "to": to.to_string(),
            "verified": differences.is_empty(),
            "differences": differences,
            "milestones": milestones,
            "sessions": tally.sessions().len(),
            "current_session": tally.current_session(),
            "events": tally.events,
            "records": tally.records,
            "warnings": warnings,
        }))?;
        return out.finish();
    }
    for (id, m) in &milestones {
        out.line(&format!(
            "{id}: {} revision {}, {} backups, {} checkpoints, {} events (last seq {}, checksum {})",
            m.status, m.revision, m.revisions, m.checkpoints, m.events, m.last_seq, m.events_checksum
        ))?;
    }
    for w in warnings {
        warn(w);
    }
    if differences.is_empty() {
        note(&format!(
            "moved {} milestones, {} events and {} sessions from {from} to {to}; read back: counts and checksums match",
            milestones.len(),
            tally.events,
            tally.sessions().len()
        ));
    }
    out.finish()
}
