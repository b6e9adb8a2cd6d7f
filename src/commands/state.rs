//! `init`, `save`, `load`, `update`, `list`, `complete`, `reopen`.

use clap::Args;
use serde_json::json;

use mstate_store::json::parse_strict;
use mstate_store::model::{EditOp, StateEdit};

use super::{json_input, milestone};
use crate::context::Context;
use crate::exit::{CliError, CliResult};
use crate::output::{note, warn, Out};

#[derive(Debug, Args)]
pub struct IdArgs {
    /// Milestone id.
    pub milestone: String,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Milestone id.
    pub milestone: String,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Milestone id.
    pub milestone: String,
    /// The state as JSON; `-` or nothing reads standard input.
    pub state: Option<String>,
    /// Fail with exit code 4 unless the stored revision is N (0: no state yet).
    #[arg(long, value_name = "N")]
    pub expect_revision: Option<u64>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Milestone id.
    pub milestone: String,
    /// Print the whole envelope (timestamp, milestone_id, version, revision, state).
    #[arg(long)]
    pub envelope: bool,
    /// Also log a state_loaded event, as the seed's load_milestone_state does.
    #[arg(long)]
    pub log_access: bool,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("edit").required(true).multiple(true))]
pub struct UpdateArgs {
    /// Milestone id.
    pub milestone: String,
    /// Apply an RFC 7396 merge patch (null removes a key).
    #[arg(long, value_name = "JSON", group = "edit")]
    pub merge: Option<String>,
    /// Set the value at an RFC 6901 JSON pointer, e.g. --set /progress=50 (repeatable).
    #[arg(long = "set", value_name = "POINTER=JSON", group = "edit")]
    pub set: Vec<String>,
    /// Fail with exit code 4 unless the stored revision is N.
    #[arg(long, value_name = "N")]
    pub expect_revision: Option<u64>,
}

pub fn cmd_init(ctx: &Context, a: &InitArgs) -> CliResult {
    let id = milestone(&a.milestone)?;
    let r = ctx.store.init(&id)?;
    let warnings = committed_warnings(ctx);
    let print = || -> CliResult {
        let mut out = Out::new();
        if ctx.global.json {
            out.json(&with_warnings(&r, &warnings)?)?;
        } else {
            out.line(&format!("State management initialized for milestone: {id}"))?;
        }
        out.finish()
    };
    print().map_err(|e| e.committed(|| format!("milestone '{id}' is initialized")))
}

pub fn cmd_save(ctx: &Context, a: &SaveArgs) -> CliResult {
    let id = milestone(&a.milestone)?;
    let bytes = json_input(a.state.as_deref())?;
    // Stored as checked text: no `Value` (about ten times its size) is built.
    let saved = ctx
        .store
        .save_text(&id, &bytes, &ctx.write_options(&id, a.expect_revision)?)?;
    print_saved(ctx, &saved, &committed_warnings(ctx))
}

/// Print the revision a save or update committed. A failed write of it
/// still says that the state was committed, and at which revision.
fn print_saved(
    ctx: &Context,
    saved: &mstate_store::model::Saved,
    warnings: &[String],
) -> CliResult {
    let print = || -> CliResult {
        let mut out = Out::new();
        if ctx.global.json {
            out.json(&with_warnings(saved, warnings)?)?;
        } else {
            out.line(&saved.revision.to_string())?;
        }
        out.finish()
    };
    print().map_err(|e| {
        e.committed(|| {
            format!(
                "the state of '{}' is at revision {}",
                saved.milestone_id, saved.revision
            )
        })
    })
}

pub fn cmd_load(ctx: &Context, a: &LoadArgs) -> CliResult {
    let id = milestone(&a.milestone)?;
    // As text: printing needs no `Value` (about ten times the state's size).
    let loaded = ctx.store.load_raw(&id, &ctx.write_options(&id, None)?)?;
    let warnings = committed_warnings(ctx);
    if a.log_access {
        ctx.store.log(
            &id,
            &mstate_store::model::NewEvent {
                event_type: mstate_store::EventType::new("state_loaded")?,
                data: json!({"state_file": format!(".milestones/state/{}/{id}.json", loaded.status.as_str())}),
                session_id: None,
            },
        )?;
    }
    if let Some(r) = &loaded.recovered {
        warn(&format!(
            "the state file of '{id}' was corrupt; recovered revision {} from backup {}{}",
            r.revision,
            r.backup.as_deref().unwrap_or("-"),
            r.corrupt_moved_to
                .as_deref()
                .map(|m| format!(" (corrupt file kept as {m})"))
                .unwrap_or_default()
        ));
    }
    let warnings_text = text(&warnings)?;
    let mut out = Out::new();
    if ctx.global.json {
        let (id_text, status, revision) = (
            text(&loaded.milestone_id)?,
            text(&loaded.status)?,
            loaded.revision.to_string(),
        );
        let (timestamp, version, recovered) = (
            text(&loaded.timestamp)?,
            text(&loaded.version)?,
            text(&loaded.recovered)?,
        );
        let mut members = vec![
            ("milestone_id", id_text.as_str()),
            ("status", &status),
            ("revision", &revision),
            ("timestamp", &timestamp),
            ("version", &version),
            ("state", &loaded.state),
            ("recovered", &recovered),
        ];
        if !warnings.is_empty() {
            members.push(("warnings", &warnings_text));
        }
        out.json_members(&members)?;
    } else if a.envelope {
        out.json_members(&[
            ("timestamp", &text(&loaded.timestamp)?),
            ("milestone_id", &text(&loaded.milestone_id)?),
            ("version", &text(&loaded.version)?),
            ("revision", &loaded.revision.to_string()),
            ("state", &loaded.state),
        ])?;
    } else {
        out.json_text(&loaded.state)?;
    }
    out.finish()
}

/// Show the warnings of a command that succeeded: failures after its
/// commit point (an event that could not be logged), which did not undo
/// its change. On stderr always; returned for `--json` output too.
pub fn committed_warnings(ctx: &Context) -> Vec<String> {
    if ctx.store.take_created() {
        note(&format!("created a new store at {}", ctx.store.location()));
    }
    let warnings = ctx.store.take_warnings();
    for w in &warnings {
        warn(w);
    }
    warnings
}

/// `value` as JSON, with a `warnings` member when there are any.
pub fn with_warnings<T: serde::Serialize>(
    value: &T,
    warnings: &[String],
) -> CliResult<serde_json::Value> {
    let mut v = serde_json::to_value(value)
        .map_err(|e| CliError::Other(format!("cannot encode output: {e}")))?;
    if !warnings.is_empty() {
        if let serde_json::Value::Object(map) = &mut v {
            map.insert("warnings".into(), json!(warnings));
        }
    }
    Ok(v)
}

/// A small value as compact JSON text, for [`Out::json_members`].
fn text<T: serde::Serialize>(value: &T) -> CliResult<String> {
    serde_json::to_string(value).map_err(|e| CliError::Other(format!("cannot encode output: {e}")))
}

pub fn cmd_update(ctx: &Context, a: &UpdateArgs) -> CliResult {
    let id = milestone(&a.milestone)?;
    let mut edit = StateEdit::default();
    if let Some(m) = a.merge.as_deref() {
        edit = edit.then(EditOp::Merge {
            patch: parse_strict(m.as_bytes(), "--merge")?,
        });
    }
    for s in &a.set {
        let Some((pointer, value)) = s.split_once('=') else {
            return Err(CliError::Invalid(format!(
                "--set {s:?}: expected POINTER=JSON, e.g. --set /progress/percentage=50"
            )));
        };
        edit = edit.then(EditOp::Set {
            pointer: pointer.to_string(),
            value: parse_strict(value.as_bytes(), &format!("--set {pointer}"))?,
        });
    }
    let saved = ctx
        .store
        .update(&id, &edit, &ctx.write_options(&id, a.expect_revision)?)?;
    print_saved(ctx, &saved, &committed_warnings(ctx))
}

pub fn cmd_list(ctx: &Context) -> CliResult {
    let list = ctx.store.list()?;
    let mut out = Out::new();
    if ctx.global.json {
        out.json(&list)?;
        return out.finish();
    }
    if list.is_empty() {
        note(&no_milestones(ctx)?);
        return out.finish();
    }
    // A state file that cannot be read is `corrupt` in STATUS, with its
    // error in the last column (present only when some row has one).
    let notes = list.iter().any(|m| m.error.is_some());
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|m| {
            let mut row = vec![
                m.milestone_id.clone(),
                match &m.error {
                    Some(_) => "corrupt".to_string(),
                    None => m.status.as_str().to_string(),
                },
                m.revision.map_or("-".to_string(), |r| r.to_string()),
                m.updated.clone().unwrap_or_else(|| "-".into()),
                m.lock.as_ref().map_or("-".into(), |l| l.describe()),
            ];
            if notes {
                row.push(m.error.as_ref().map_or(String::new(), |e| {
                    format!("{}/{}.json: {e}", m.status.as_str(), m.milestone_id)
                }));
            }
            row
        })
        .collect();
    let mut header = vec!["MILESTONE", "STATUS", "REVISION", "UPDATED", "LOCK"];
    if notes {
        header.push("NOTE");
    }
    let lines = super::backup::table(&header, &[false, false, true, false, false, false], &rows);
    for l in lines {
        if !out.line(l.trim_end())? {
            break;
        }
    }
    out.finish()
}

/// What `list` says when there is no milestone: where it looked, when
/// there is no store there.
fn no_milestones(ctx: &Context) -> CliResult<String> {
    if ctx.store.exists()? {
        return Ok("no milestones yet; create one with `mstate init <milestone>`".into());
    }
    Ok(format!(
        "no store at {}: no milestones; create one with `mstate init <milestone>`, or name one (--store LOCATION, -C DIR, or MSTATE_DIR=<path of a .milestones/state directory>)",
        ctx.store.location()
    ))
}

pub fn cmd_complete(ctx: &Context, a: &IdArgs, complete: bool) -> CliResult {
    let id = milestone(&a.milestone)?;
    let opts = ctx.write_options(&id, None)?;
    if complete {
        ctx.store.complete(&id, &opts)?;
    } else {
        ctx.store.reopen(&id, &opts)?;
    }
    let warnings = committed_warnings(ctx);
    let status = if complete { "completed" } else { "active" };
    let print = || -> CliResult {
        let mut out = Out::new();
        if ctx.global.json {
            out.json(&with_warnings(
                &json!({"milestone_id": id, "status": status}),
                &warnings,
            )?)?;
        } else {
            out.line(&format!("Milestone {id} is now {status}"))?;
        }
        out.finish()
    };
    print().map_err(|e| e.committed(|| format!("'{id}' is now {status}")))
}
