//! `lock acquire|release|status|run`.

use std::process::Command;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;

use mstate_store::model::{Liveness, LockRequest};
use mstate_store::Store;

use super::milestone;
use crate::context::{parse_secs, Context};
use crate::exit::{CliError, CliResult};
use crate::output::{note, Out};

#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Take the lock and keep it for the calling shell (or --owner-pid) until released or that process exits.
    Acquire(AcquireArgs),
    /// Release the lock held by this shell; --force breaks anyone's (logged).
    Release(ReleaseArgs),
    /// Show who holds the lock and whether the holder is alive.
    Status(StatusArgs),
    /// Run a command while holding the lock; mstate commands it runs use the held lock.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct AcquireArgs {
    /// Milestone id.
    pub milestone: String,
    /// Wait at most SECS (default: --lock-timeout).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<String>,
    /// Let others break the lock after this long even if the holder lives (e.g. 10m).
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// The process that owns the lock (default: the parent, i.e. the calling shell).
    #[arg(long, value_name = "PID")]
    pub owner_pid: Option<u32>,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// Milestone id.
    pub milestone: String,
    /// Release the lock whoever holds it (logs a lock_force_released event).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Milestone id.
    pub milestone: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Milestone id.
    pub milestone: String,
    /// Wait at most SECS (default: --lock-timeout).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<String>,
    /// Let others break the lock after this long even if the holder lives.
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn request(
    ctx: &Context,
    op: &str,
    timeout: &Option<String>,
    ttl: &Option<String>,
    owner: u32,
) -> CliResult<LockRequest> {
    let timeout = match timeout {
        Some(t) => parse_secs(t, "--timeout")?,
        None => ctx.lock_timeout()?,
    };
    let ttl: Option<Duration> = ttl.as_deref().map(|t| parse_secs(t, "--ttl")).transpose()?;
    Ok(LockRequest {
        operation: op.to_string(),
        timeout,
        owner_pid: owner,
        ttl,
    })
}

pub fn cmd_lock(ctx: &Context, cmd: LockCommand) -> CliResult {
    let mut out = Out::new();
    match cmd {
        LockCommand::Acquire(a) => {
            let id = milestone(&a.milestone)?;
            let owner = a.owner_pid.unwrap_or_else(super::session::parent_pid);
            let req = request(ctx, "lock acquire", &a.timeout, &a.ttl, owner)?;
            let info = ctx.store.lock_acquire(&id, &req)?;
            if ctx.global.json {
                out.json(&info)?;
            } else {
                out.line(&format!("State lock acquired for milestone: {id}"))?;
            }
        }
        LockCommand::Release(a) => {
            let id = milestone(&a.milestone)?;
            let released = ctx.store.lock_release(&id, a.force)?;
            if ctx.global.json {
                out.json(&json!({"milestone_id": id, "released": released}))?;
            } else if released.is_some() || a.force {
                // Forced release of an unlocked milestone succeeds quietly,
                // like the seed's `rm -rf` (EXIT traps call it regardless).
                out.line(&format!("State lock released for milestone: {id}"))?;
            } else {
                note(&format!("milestone '{id}' was not locked"));
            }
        }
        LockCommand::Status(a) => {
            let id = milestone(&a.milestone)?;
            let status = ctx.store.lock_status(&id)?;
            if ctx.global.json {
                out.json(&json!({"milestone_id": id, "locked": status.is_some(), "lock": status}))?;
            } else {
                match status {
                    None => {
                        out.line(&format!("{id}: unlocked"))?;
                    }
                    Some(s) => {
                        let state = match &s.liveness {
                            Liveness::Held => "held".to_string(),
                            Liveness::Stale(r) => format!("stale: {r}"),
                        };
                        let mine = if s.held_by_caller {
                            ", by this shell"
                        } else {
                            ""
                        };
                        out.line(&format!(
                            "{id}: locked by {} [{state}{mine}]",
                            s.info.describe()
                        ))?;
                    }
                }
            }
        }
        LockCommand::Run(a) => {
            let id = milestone(&a.milestone)?;
            let req = request(
                ctx,
                &format!("lock run {}", a.command[0]),
                &a.timeout,
                &a.ttl,
                std::process::id(),
            )?;
            drop(out);
            return run_locked(ctx, &id, &req, &a.command);
        }
    }
    Ok(())
}

/// Run `command` holding the lock; exit with its status.
fn run_locked(
    ctx: &Context,
    id: &mstate_store::MilestoneId,
    req: &LockRequest,
    command: &[String],
) -> CliResult {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let guard = ctx.store.lock_scoped(id, req)?;
    let mut child = match Command::new(&command[0]).args(&command[1..]).spawn() {
        Ok(c) => c,
        Err(e) => {
            guard.release()?;
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return Err(
                CliError::Other(format!("cannot run {:?}: {e}", command[0])).with_code(code)
            );
        }
    };
    // Keep running through signals so the lock is released after the
    // child ends; pass them on to the child.
    let child_pid = child.id();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| CliError::Other(format!("cannot handle signals: {e}")))?;
    let handle = signals.handle();
    let forwarder = std::thread::spawn(move || {
        for sig in signals.forever() {
            if let (Some(pid), Some(s)) = (
                rustix::process::Pid::from_raw(child_pid as i32),
                rustix::process::Signal::from_named_raw(sig),
            ) {
                let _ = rustix::process::kill_process(pid, s);
            }
        }
    });
    let status = child.wait();
    handle.close();
    let _ = forwarder.join();
    guard.release()?;
    let status =
        status.map_err(|e| CliError::Other(format!("cannot wait for {:?}: {e}", command[0])))?;
    use std::os::unix::process::ExitStatusExt;
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        _ => 1,
    };
    if code == 0 {
        Ok(())
    } else {
        Err(CliError::Exit(code.clamp(0, 255) as u8))
    }
}
