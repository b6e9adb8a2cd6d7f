//! `session start|end|current|list|show`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use clap::{Args, Subcommand};

use mstate_store::model::{SessionFilter, SessionStart};
use mstate_store::SessionId;

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
    /// Start it even for a milestone the store does not know (its
    /// session_created event creates the milestone's log), as the seed's
    /// create_milestone_session does; for the shell layer.
    #[arg(long, hide = true)]
    pub create: bool,
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
    #[arg(long, value_parser = clap::builder::TypedValueParser::try_map(
        clap::builder::PossibleValuesParser::new(["active", "completed", "abandoned"]),
        |s| s.parse::<mstate_store::model::SessionStatus>(),
    ))]
    pub status: Option<mstate_store::model::SessionStatus>,
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

/// How long `session start` waits for git to name the branch.
const GIT_TIMEOUT: Duration = Duration::from_secs(3);

/// `git branch --show-current` in the working directory, or `none`.
///
/// The branch is only informative, so nothing git does can fail or hang
/// the session: git runs on a thread and is given [`GIT_TIMEOUT`] (a repo
/// on a stale network mount, a prompt, a wedged spawn), then killed; its
/// output is read without std's `output()`, which panics when reading
/// the pipe fails.
fn git_branch(dir: &Path) -> String {
    let dir = dir.to_path_buf();
    let child_pid = Arc::new(AtomicU32::new(0));
    let (tx, rx) = mpsc::channel();
    let pid_slot = Arc::clone(&child_pid);
    let spawned = std::thread::Builder::new()
        .name("git-branch".into())
        .spawn(move || {
            let _ = tx.send(run_git(&dir, &pid_slot));
        });
    if spawned.is_err() {
        return "none".to_string();
    }
    match rx.recv_timeout(GIT_TIMEOUT) {
        Ok(Some(branch)) => branch,
        Ok(None) => "none".to_string(),
        Err(_) => {
            let pid = child_pid.load(Ordering::SeqCst);
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            "none".to_string()
        }
    }
}

fn run_git(dir: &Path, pid_slot: &AtomicU32) -> Option<String> {
    let mut child = Command::new("git")
        .args(["branch", "--show-current"])
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    pid_slot.store(child.id(), Ordering::SeqCst);
    let mut out = Vec::new();
    let read = child
        .stdout
        .take()
        .map(|s| s.take(4096).read_to_end(&mut out));
    let status = child.wait().ok()?;
    if !status.success() || !matches!(read, Some(Ok(_))) {
        return None;
    }
    let branch = String::from_utf8_lossy(&out).trim().to_string();
    (!branch.is_empty()).then_some(branch)
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
                create: a.create,
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
                status: a.status,
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
