//! `backups` and `recover`.

use clap::Args;

use mstate_store::Store;

use super::milestone;
use super::state::{committed_warnings, with_warnings};
use crate::context::Context;
use crate::exit::CliResult;
use crate::output::{note, Out};

#[derive(Debug, Args)]
pub struct BackupsArgs {
    /// Milestone id.
    pub milestone: String,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// Milestone id.
    pub milestone: String,
    /// Restore this backup (a name from `mstate backups`) instead of the newest valid one.
    #[arg(long, value_name = "BACKUP")]
    pub from: Option<String>,
}

pub fn cmd_backups(ctx: &Context, a: &BackupsArgs) -> CliResult {
    let id = milestone(&a.milestone)?;
    let list = ctx.store.backups(&id)?;
    let mut out = Out::new();
    if ctx.global.json {
        out.json(&list)?;
        return out.finish();
    }
    if list.is_empty() {
        note(&format!("no backups of '{id}' yet"));
        return out.finish();
    }
    for b in &list {
        let rev = b.revision.map_or("-".into(), |r| format!("r{r}"));
        let valid = if b.valid { "" } else { "  INVALID" };
        out.line(&format!(
            "{}  {rev:>6}  {:>9}  {}{valid}",
            b.name, b.size, b.modified
        ))?;
    }
    out.finish()
}

pub fn cmd_recover(ctx: &Context, a: &RecoverArgs) -> CliResult {
    let id = milestone(&a.milestone)?;
    let r = ctx
        .store
        .recover(&id, a.from.as_deref(), &ctx.write_options(None)?)?;
    let warnings = committed_warnings(ctx);
    let print = || -> CliResult {
        let mut out = Out::new();
        if ctx.global.json {
            out.json(&with_warnings(&r, &warnings)?)?;
        } else {
            if let Some(m) = &r.corrupt_moved_to {
                note(&format!("Corrupted state moved aside to {m}"));
            }
            out.line(&format!(
                "State recovered successfully from: .milestones/state/backups/{}",
                r.backup
            ))?;
            note(&format!("{id} is now at revision {}", r.revision));
        }
        out.finish()
    };
    print().map_err(|e| {
        e.committed(|| {
            format!(
                "'{id}' was recovered from backup {} and is at revision {}",
                r.backup, r.revision
            )
        })
    })
}
