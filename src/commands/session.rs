//! `session start|end|current|list|show`.

use clap::{Args, Subcommand};

use mstate_store::model::{SessionFilter, SessionStart};
use mstate_store::{SessionId, Store};

use super::milestone;
use crate::context::Context;
use crate::exit::{CliError, CliResult};
use crate::output::{note, Out};

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Start a session of a milestone; prints its id and makes it current.
    Start(StartArgs),
    /// End a session (default: the current one).
    End(EndArgs),
    /// Print the current session id ($MSTATE_SESSION, else .current_session, else no-session).
    Current,
    /// List sessions; `abandoned` ones are active but their process is gone.
    List(ListArgs),
    /// Show one session.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Milestone id.
    pub milestone: String,
    /// The process the session belongs to (default: the parent, i.e. the calling shell).
    #[arg(long, value_name = "PID")]
    pub owner_pid: Option<u32>,
    /// Do not make it the current session (.current_session is left alone).
    #[arg(long)]
    pub no_current: bool,
}

#[derive(Debug, Args)]
pub struct EndArgs {
    /// Session id (default: the current session).
    pub session: Option<String>,
    /// Succeed quietly when there is no such session (the seed's behaviour).
    #[arg(long)]
    pub missing_ok: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only sessions of this milestone.
    #[arg(long, value_name = "ID")]
    pub milestone: Option<String>,
    /// Only sessions with this status.
    #[arg(long, value_parser = ["active", "completed", "abandoned"])]
    pub status: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Session id.
    pub session: String,
}

/// The parent process: the shell that ran us.
pub fn parent_pid() -> u32 {
    rustix::process::getppid().map_or(1, |p| p.as_raw_nonzero().get() as u32)
}

/// `git branch --show-current` in the working directory, or `none`.
fn git_branch(dir: &std::path::Path) -> String {
    std::process::Command::new("git")
        .args(["branch", "--show-current"])
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "none".to_string())
}

pub fn cmd_session(ctx: &Context, cmd: &SessionCommand) -> CliResult {
    let mut out = Out::new();
    match cmd {
        SessionCommand::Start(a) => {
            let id = milestone(&a.milestone)?;
            let cwd = std::env::current_dir()
                .map_err(|e| CliError::Other(format!("cannot read the working directory: {e}")))?;
            let start = SessionStart {
                owner_pid: a.owner_pid.unwrap_or_else(parent_pid),
                working_directory: cwd.to_string_lossy().into_owned(),
                git_branch: git_branch(&cwd),
                make_current: !a.no_current,
            };
            let record = ctx.store.session_start(&id, &start)?;
            let print = |mut out: Out| -> CliResult {
                if ctx.global.json {
                    out.json(&record)?;
                } else {
                    out.line(&record.session_id)?;
                }
                out.finish()
            };
            print(out).map_err(|e| {
                e.committed(|| format!("session {} of '{id}' was started", record.session_id))
            })
        }
        SessionCommand::End(a) => {
            let sid = a.session.as_deref().map(SessionId::new).transpose()?;
            let record = match ctx.store.session_end(sid.as_ref()) {
                Err(mstate_store::Error::NotFound { .. }) if a.missing_ok => return Ok(()),
                r => r?,
            };
            let print = |mut out: Out| -> CliResult {
                if ctx.global.json {
                    out.json(&record)?;
                } else {
                    out.line(&format!("Session ended: {}", record.session_id))?;
                }
                out.finish()
            };
            print(out)
                .map_err(|e| e.committed(|| format!("session {} was ended", record.session_id)))
        }
        SessionCommand::Current => {
            let cur = ctx.store.current_session()?;
            if ctx.global.json {
                out.json(&serde_json::json!({"session_id": cur}))?;
            } else {
                out.line(&cur)?;
            }
            out.finish()
        }
        SessionCommand::List(a) => {
            let filter = SessionFilter {
                milestone: a
                    .milestone
                    .as_deref()
                    .map(milestone)
                    .transpose()?
                    .map(|m| m.to_string()),
                status: a.status.clone(),
            };
            let list = ctx.store.sessions(&filter)?;
            if ctx.global.json {
                out.json(&list)?;
            } else if list.is_empty() {
                note("no sessions");
            } else {
                for s in &list {
                    let r = &s.record;
                    out.line(&format!(
                        "{}  {}  {:<9}  {}  pid {}  {}@{}  {}",
                        r.session_id,
                        r.milestone_id,
                        s.effective_status,
                        r.created_at,
                        r.pid,
                        r.user,
                        r.host.as_deref().unwrap_or("?"),
                        r.ended_at
                            .as_deref()
                            .map(|e| format!("ended {e}"))
                            .unwrap_or_default()
                    ))?;
                }
            }
            out.finish()
        }
        SessionCommand::Show(a) => {
            let view = ctx
                .store
                .session_get(&SessionId::new(a.session.as_str())?)?;
            out.json(&view)?;
            out.finish()
        }
    }
}
