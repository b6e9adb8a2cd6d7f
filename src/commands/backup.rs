//! `backups` and `recover`.

use clap::Args;

use super::milestone;
use super::state::{committed_warnings, with_warnings};
use crate::context::Context;
use crate::exit::CliResult;
use crate::output::{note, Out};

/// The lines of a text table: a header, then the rows, every column but
/// the last padded to its widest cell (`right` ones aligned right).
pub fn table(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(cell.chars().count());
            let last = i + 1 == widths.len();
            if i > 0 {
                out.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if !last {
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        out
    };
    let mut lines = vec![line(&mut header.iter().copied())];
    lines.extend(rows.iter().map(|r| line(&mut r.iter().map(String::as_str))));
    lines
}

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
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|b| {
            vec![
                b.name.clone(),
                b.revision.map_or("-".into(), |r| r.to_string()),
                b.size.to_string(),
                b.modified.clone(),
                if b.valid { "valid" } else { "INVALID" }.to_string(),
            ]
        })
        .collect();
    let header = ["BACKUP", "REVISION", "SIZE", "MODIFIED", "VALID"];
    for l in table(&header, &[false, true, true, false, false], &rows) {
        if !out.line(&l)? {
            break;
        }
    }
    out.finish()
}

pub fn cmd_recover(ctx: &Context, a: &RecoverArgs) -> CliResult {
    let id = milestone(&a.milestone)?;
    let r = ctx
        .store
        .recover(&id, a.from.as_deref(), &ctx.write_options(&id, None)?)?;
    let warnings = committed_warnings(ctx);
    let print = || -> CliResult {
        let mut out = Out::new();
        if ctx.global.json {
            out.json(&with_warnings(&r, &warnings)?)?;
        } else if let Some(backup) = &r.backup {
            if let Some(m) = &r.corrupt_moved_to {
                note(&format!("Corrupted state moved aside to {m}"));
            }
            out.line(&format!(
                "State recovered successfully from: .milestones/state/backups/{backup}"
            ))?;
            note(&format!("{id} is now at revision {}", r.revision));
        } else {
            out.line(&format!(
                "State of {id} is valid (revision {}); nothing to recover",
                r.revision
            ))?;
            note(&format!(
                "to roll back to a backup anyway, name it: `mstate recover {id} --from <backup>` (see `mstate backups {id}`)"
            ));
        }
        out.finish()
    };
    print().map_err(|e| match &r.backup {
        Some(backup) => e.committed(|| {
            format!(
                "'{id}' was recovered from backup {backup} and is at revision {}",
                r.revision
            )
        }),
        None => e,
    })
}
