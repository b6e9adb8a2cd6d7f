//! `checkpoint create|list|restore|delete`.

use clap::{Args, Subcommand};
use serde_json::json;

use super::state::{committed_warnings, with_warnings};
use super::{checkpoint_name, milestone};
use crate::context::Context;
use crate::exit::CliResult;
use crate::output::{note, Out};

#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// Save a named copy of the current state (default name manual-<time>).
    Create(CreateArgs),
    /// List checkpoints, newest first.
    List(ListArgs),
    /// Make a checkpoint the current state (checkpoints the current state first as pre-restore-<time>).
    Restore(NameArgs),
    /// Delete a checkpoint.
    Delete(NameArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Milestone id.
    pub milestone: String,
    /// Checkpoint name.
    pub name: Option<String>,
    /// Replace an existing checkpoint of that name.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Milestone id.
    pub milestone: String,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// Milestone id.
    pub milestone: String,
    /// Checkpoint name.
    pub name: String,
    /// Fail with exit code 4 unless the stored revision is N (restore only).
    #[arg(long, value_name = "N")]
    pub expect_revision: Option<u64>,
}

pub fn cmd_checkpoint(ctx: &Context, cmd: &CheckpointCommand) -> CliResult {
    let mut out = Out::new();
    match cmd {
        CheckpointCommand::Create(a) => {
            let id = milestone(&a.milestone)?;
            let name = a.name.as_deref().map(checkpoint_name).transpose()?;
            let info = ctx.store.checkpoint_create(
                &id,
                name.as_ref(),
                a.force,
                &ctx.write_options(&id, None)?,
            )?;
            let warnings = committed_warnings(ctx);
            let print = |mut out: Out| -> CliResult {
                if ctx.global.json {
                    out.json(&with_warnings(&info, &warnings)?)?;
                } else {
                    out.line(&format!("Checkpoint created: {}", info.name))?;
                }
                out.finish()
            };
            print(out).map_err(|e| {
                e.committed(|| format!("checkpoint '{}' of '{id}' was created", info.name))
            })
        }
        CheckpointCommand::List(a) => {
            let id = milestone(&a.milestone)?;
            let list = ctx.store.checkpoints(&id)?;
            if ctx.global.json {
                out.json(&list)?;
            } else if list.is_empty() {
                note(&format!("no checkpoints of '{id}' yet"));
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            c.revision.map_or("-".into(), |r| r.to_string()),
                            c.size.to_string(),
                            c.modified.clone(),
                            if c.valid { "valid" } else { "INVALID" }.to_string(),
                        ]
                    })
                    .collect();
                let header = ["CHECKPOINT", "REVISION", "SIZE", "MODIFIED", "VALID"];
                for l in super::backup::table(&header, &[false, true, true, false, false], &rows) {
                    if !out.line(&l)? {
                        break;
                    }
                }
            }
            out.finish()
        }
        CheckpointCommand::Restore(a) => {
            let id = milestone(&a.milestone)?;
            let name = checkpoint_name(&a.name)?;
            let r = ctx.store.checkpoint_restore(
                &id,
                &name,
                &ctx.write_options(&id, a.expect_revision)?,
            )?;
            let warnings = committed_warnings(ctx);
            let print = |mut out: Out| -> CliResult {
                if ctx.global.json {
                    out.json(&with_warnings(&r, &warnings)?)?;
                } else {
                    if let Some(pre) = &r.pre_restore {
                        out.line(&format!("Checkpoint created: {pre}"))?;
                    }
                    out.line(&format!("State restored from checkpoint: {name}"))?;
                    note(&format!("{id} is now at revision {}", r.saved.revision));
                }
                out.finish()
            };
            print(out).map_err(|e| {
                e.committed(|| {
                    format!(
                        "'{id}' was restored from checkpoint '{name}' and is at revision {}",
                        r.saved.revision
                    )
                })
            })
        }
        CheckpointCommand::Delete(a) => {
            let id = milestone(&a.milestone)?;
            let name = checkpoint_name(&a.name)?;
            ctx.store.checkpoint_delete(&id, &name)?;
            let warnings = committed_warnings(ctx);
            let print = |mut out: Out| -> CliResult {
                if ctx.global.json {
                    out.json(&with_warnings(
                        &json!({"milestone_id": id, "deleted": name}),
                        &warnings,
                    )?)?;
                } else {
                    out.line(&format!("Checkpoint deleted: {name}"))?;
                }
                out.finish()
            };
            print(out)
                .map_err(|e| e.committed(|| format!("checkpoint '{name}' of '{id}' was deleted")))
        }
    }
}
