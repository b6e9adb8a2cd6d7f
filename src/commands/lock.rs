//! `lock acquire|release|status|run`.
//!
//! `lock run` never lets go of the lock while its command may still write:
//! signal handling is set up before the command can start (and the command
//! is not started when that fails); the command runs in a process group
//! recorded in the lock, so a runner killed with SIGKILL leaves the lock
//! held until every process of that group has exited; and the runner
//! releases only once the group is gone. When the runner leads its own
//! process group (started by an interactive shell, or by `setsid`), the
//! command stays in that group, which keeps the terminal's foreground; the
//! lock records it. A runner in the foreground group of a terminal that it
//! does not lead (started by a script run from a terminal) runs its command
//! in that group too, unrecorded, so the command can read the terminal: a
//! SIGKILL of that runner leaves the command unprotected.
//!
//! A shell that takes the lock with `lock acquire` and leads its process
//! group has the group recorded, so its background jobs keep the lock after
//! it died. A group it does not lead may hold unrelated processes, so it is
//! not recorded; such a shell pins the lock instead (`lock acquire
//! --pin-path`, then `lock pin --fd`, as the shell layer does): its jobs
//! inherit the pinning descriptor and keep the lock while they run.
//!
//! Every lock taken by `lock acquire` or `lock run` carries a fencing token,
//! higher than any before it for that milestone. `lock acquire` prints it;
//! `lock run` gives it to its command as `MSTATE_LOCK_TOKEN` (with
//! `MSTATE_LOCK_MILESTONE`), and renews the lease of a lock with `--ttl`
//! every third of the TTL while the command runs. A write carrying the
//! token (`--lock-token`, or the variable) is refused once its lock was
//! released, broken, expired or taken again, so a holder that stalled past
//! its lease cannot overwrite its successor's work.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;

use mstate_store::model::{Liveness, LockInfo, LockRequest};
use mstate_store::process::{self, Alive};

use super::milestone;
use crate::context::{parse_secs, parse_ttl, Context, LOCK_MILESTONE_ENV, LOCK_TOKEN_ENV};
use crate::exit::{CliError, CliResult};
use crate::output::{note, warn, Out};

#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Take the lock and keep it for the calling shell (or --owner-pid) until released or that process exits; prints its fencing token.
    Acquire(AcquireArgs),
    /// Release the lock held by this shell; --force breaks anyone's (logged).
    Release(ReleaseArgs),
    /// Show who holds the lock, its fencing token, and whether the holder is alive.
    Status(StatusArgs),
    /// Pin the lock this shell holds with descriptor --fd, open on the file
    /// `lock acquire --pin-path` printed: the lock then stays held while any
    /// process holding that descriptor (the shell's jobs) lives.
    Pin(PinArgs),
    /// Run a command while holding the lock; mstate commands it runs use the held lock, and its token ($MSTATE_LOCK_TOKEN).
    Run(RunArgs),
    /// Internal to `lock run`: wait until the runner holds the lock, then
    /// become the command (exits 125 without running it otherwise).
    #[command(name = "__gate", hide = true)]
    Gate(GateArgs),
}

#[derive(Debug, Args)]
pub struct GateArgs {
    /// The read end of the runner's pipe.
    #[arg(long)]
    pub fd: i32,
    /// The milestone locked, for the command's `MSTATE_LOCK_MILESTONE`.
    #[arg(long)]
    pub milestone: String,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
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
    /// Print the path of the lock's pin file (for `lock pin`) instead of the message.
    #[arg(long)]
    pub pin_path: bool,
}

#[derive(Debug, Args)]
pub struct PinArgs {
    /// Milestone id.
    pub milestone: String,
    /// The caller's descriptor open on the pin file, e.g. from `exec {fd}<"$path"`.
    #[arg(long, value_name = "N")]
    pub fd: i32,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// Milestone id.
    pub milestone: String,
    /// Release the lock whoever holds it (logs a lock_force_released event).
    #[arg(long, conflicts_with = "if_stale")]
    pub force: bool,
    /// Release this shell's lock, or break one whose holder is gone or past
    /// its TTL (logs lock_broken); a live holder's lock stays (exit 5).
    #[arg(long)]
    pub if_stale: bool,
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
    /// Let others break the lock after this long even if the holder lives;
    /// renewed every third of it while the command runs.
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
    let ttl: Option<Duration> = ttl.as_deref().map(|t| parse_ttl(t, "--ttl")).transpose()?;
    Ok(LockRequest {
        operation: op.to_string(),
        timeout,
        owner_pid: owner,
        ttl,
        group: None,
    })
}

pub fn cmd_lock(ctx: &Context, cmd: LockCommand) -> CliResult {
    let mut out = Out::new();
    match cmd {
        LockCommand::Acquire(a) => {
            let id = milestone(&a.milestone)?;
            let owner = a.owner_pid.unwrap_or_else(super::session::parent_pid);
            let mut req = request(ctx, "lock acquire", &a.timeout, &a.ttl, owner)?;
            // A shell leading its group: its jobs hold the lock with it.
            req.group = (process::group_of(owner) == Some(owner)).then_some(owner);
            let info = ctx.store.lock_acquire(&id, &req)?;
            if a.pin_path {
                use std::os::unix::ffi::OsStrExt;
                let path = ctx.store.lock_pin_path(&id).ok_or_else(|| {
                    CliError::Invalid(format!(
                        "--pin-path: the store at {} keeps no lock files to pin",
                        ctx.store.location()
                    ))
                })?;
                let mut bytes = path.as_os_str().as_bytes().to_vec();
                bytes.push(b'\n');
                out.bytes(&bytes)?;
            } else if ctx.global.json {
                out.json(&info)?;
            } else {
                // The seed's line, then the token (absent only when the
                // lock was already held without one, by a seed script).
                let token = info
                    .token
                    .map(|t| format!(" (token {t})"))
                    .unwrap_or_default();
                out.line(&format!("State lock acquired for milestone: {id}{token}"))?;
            }
        }
        LockCommand::Release(a) => {
            let id = milestone(&a.milestone)?;
            let released = if a.if_stale {
                ctx.store.lock_release_if_stale(&id)?
            } else {
                ctx.store.lock_release(&id, a.force)?
            };
            if ctx.global.json {
                out.json(&json!({"milestone_id": id, "released": released}))?;
            } else if released.is_some() || a.force || a.if_stale {
                // Forced release of an unlocked milestone succeeds quietly,
                // like the seed's `rm -rf` (EXIT traps call it regardless).
                out.line(&format!("State lock released for milestone: {id}"))?;
            } else {
                note(&format!("milestone '{id}' was not locked"));
            }
        }
        LockCommand::Pin(a) => {
            let id = milestone(&a.milestone)?;
            if a.fd <= 2 {
                return Err(CliError::Invalid(format!(
                    "--fd {}: a standard stream cannot pin a lock",
                    a.fd
                )));
            }
            let pinned = ctx.store.lock_pin(&id, a.fd)?;
            if ctx.global.json {
                let now = pinned == mstate_store::Pinned::Now;
                out.json(&json!({"milestone_id": id, "pinned": true, "by_this_descriptor": now}))?;
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
                            Liveness::Unverified(r) => format!("held, unverified: {r}"),
                        };
                        let mine = if s.held_by_caller {
                            ", by this shell"
                        } else {
                            ""
                        };
                        let token = s
                            .info
                            .token
                            .map(|t| format!(" with token {t}"))
                            .unwrap_or_default();
                        out.line(&format!(
                            "{id}: locked by {}{token} [{state}{mine}]",
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
            return run_locked(ctx, &id, req, &a.command);
        }
        LockCommand::Gate(a) => return gate(&a),
    }
    Ok(())
}

/// Where the runner sends the signals it receives.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// No command yet; the first signal waits here.
    Pending(Option<i32>),
    Process(u32),
    Group(u32),
}

fn send(target: Target, sig: i32) {
    let Some(s) = rustix::process::Signal::from_named_raw(sig) else {
        return;
    };
    let pid = |p: u32| rustix::process::Pid::from_raw(p as i32);
    match target {
        Target::Process(p) => {
            if let Some(p) = pid(p) {
                let _ = rustix::process::kill_process(p, s);
            }
        }
        Target::Group(g) => {
            if let Some(g) = pid(g) {
                let _ = rustix::process::kill_process_group(g, s);
            }
        }
        Target::Pending(_) => {}
    }
}

/// Signals received by the runner, passed on to its command.
struct Forwarder {
    target: Arc<Mutex<Target>>,
    handle: signal_hook::iterator::Handle,
    thread: std::thread::JoinHandle<()>,
}

impl Forwarder {
    /// Catch SIGINT, SIGTERM and SIGHUP from now on. Fails (and nothing is
    /// caught) when the process cannot (no file descriptors, no threads).
    fn start() -> std::io::Result<Self> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        let handle = signals.handle();
        let target = Arc::new(Mutex::new(Target::Pending(None)));
        let shared = Arc::clone(&target);
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    let Ok(mut t) = shared.lock() else { return };
                    match *t {
                        Target::Pending(_) => *t = Target::Pending(Some(sig)),
                        target => send(target, sig),
                    }
                }
            });
        match spawned {
            Ok(thread) => Ok(Forwarder {
                target,
                handle,
                thread,
            }),
            Err(e) => {
                handle.close();
                Err(e)
            }
        }
    }

    /// From now on, signals go to `to`; one that came before goes now.
    fn aim(&self, to: Target) {
        if let Ok(mut t) = self.target.lock() {
            if let Target::Pending(Some(sig)) = *t {
                send(to, sig);
            }
            *t = to;
        }
    }

    fn stop(self) {
        self.handle.close();
        let _ = self.thread.join();
    }
}

fn cannot(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Other(format!(
        "{what}: {e}; the command was not started (free file descriptors or memory and retry)"
    ))
}

/// How `lock run` places its command.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Placement {
    /// The runner leads its process group: the command stays in it and the
    /// lock records it.
    OwnGroup,
    /// The runner is in the foreground of a terminal it does not lead: the
    /// command stays in that group, unrecorded.
    Foreground,
    /// A new process group, led by the command, recorded in the lock.
    NewGroup,
}

fn placement() -> Placement {
    let me = rustix::process::getpid();
    let group = rustix::process::getpgrp();
    if group == me {
        return Placement::OwnGroup;
    }
    let stdin = std::io::stdin();
    if rustix::termios::isatty(&stdin) && rustix::termios::tcgetpgrp(&stdin).ok() == Some(group) {
        return Placement::Foreground;
    }
    Placement::NewGroup
}

/// Run `command` holding the lock; exit with its status.
fn run_locked(
    ctx: &Context,
    id: &mstate_store::MilestoneId,
    mut req: LockRequest,
    command: &[String],
) -> CliResult {
    let place = placement();
    let status = match place {
        Placement::NewGroup => run_in_new_group(ctx, id, req, command)?,
        Placement::OwnGroup | Placement::Foreground => {
            if place == Placement::OwnGroup {
                req.group = Some(std::process::id());
            }
            let guard = ctx.store.lock_scoped(id, &req)?;
            let forwarder = match Forwarder::start() {
                Ok(f) => f,
                Err(e) => {
                    guard.release()?;
                    return Err(cannot("cannot handle signals", e));
                }
            };
            let mut cmd = Command::new(&command[0]);
            cmd.args(&command[1..]);
            give_token(&mut cmd, id, guard.info().token);
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    forwarder.stop();
                    guard.release()?;
                    return Err(spawn_error(&command[0], e));
                }
            };
            forwarder.aim(Target::Process(child.id()));
            let status = renewing(ctx, id, guard.info(), req.ttl, || child.wait());
            forwarder.stop();
            guard.release()?;
            status.map_err(|e| CliError::Other(format!("cannot wait for {:?}: {e}", command[0])))?
        }
    };
    exit_with(status)
}

/// `lock run` in a new process group: the command is started first, held
/// at a gate (an `mstate lock __gate` waiting on a pipe) so that the lock
/// can record its group before it runs; if the runner dies before opening
/// the gate, the pipe closes and the command never runs.
fn run_in_new_group(
    ctx: &Context,
    id: &mstate_store::MilestoneId,
    mut req: LockRequest,
    command: &[String],
) -> CliResult<std::process::ExitStatus> {
    use std::os::fd::AsRawFd;
    let exe = std::env::current_exe().map_err(|e| cannot("cannot find mstate itself", e))?;
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| cannot("cannot create a pipe", e))?;
    // The read end is inherited by the gate alone: this process is single
    // threaded until the forwarder starts below.
    rustix::io::fcntl_setfd(&rd, rustix::io::FdFlags::empty())
        .map_err(|e| cannot("cannot pass a pipe on", e))?;
    let spawned = Command::new(exe)
        .args(["lock", "__gate", "--fd", &rd.as_raw_fd().to_string()])
        .args(["--milestone", id.as_str()])
        .args(ctx.global.json.then_some("--json"))
        .arg("--")
        .args(command)
        .process_group(0)
        .spawn();
    drop(rd);
    let mut gate = spawned.map_err(|e| spawn_error("mstate", e))?;
    let pgid = gate.id();
    req.group = Some(pgid);
    let abandon = |gate: &mut std::process::Child, wr: rustix::fd::OwnedFd| {
        drop(wr); // the gate sees the pipe close and exits
        let _ = gate.wait();
    };
    let guard = match ctx.store.lock_scoped(id, &req) {
        Ok(g) => g,
        Err(e) => {
            abandon(&mut gate, wr);
            return Err(e.into());
        }
    };
    let forwarder = match Forwarder::start() {
        Ok(f) => f,
        Err(e) => {
            abandon(&mut gate, wr);
            guard.release()?;
            return Err(cannot("cannot handle signals", e));
        }
    };
    forwarder.aim(Target::Group(pgid));
    // Open the gate, telling it the lock's token (in one write, smaller
    // than a pipe's atomic size). If the gate is gone already (a signal),
    // its status says so.
    let go = match guard.info().token {
        Some(t) => format!("1{t}"),
        None => "1".to_string(),
    };
    let _ = rustix::io::write(&wr, go.as_bytes());
    drop(wr);
    let status = renewing(ctx, id, guard.info(), req.ttl, || {
        let status = gate.wait();
        // The command may have left processes of its group running: they
        // may still write, so the lock stays until the last has exited.
        while process::group_alive(pgid, None) == Alive::Yes {
            std::thread::sleep(Duration::from_millis(20));
        }
        status
    });
    forwarder.stop();
    guard.release()?;
    status.map_err(|e| CliError::Other(format!("cannot wait for {:?}: {e}", command[0])))
}

/// Give `cmd` the token of the lock of `id` it runs under, or, when the
/// lock has none (a seed script's), no token at all: one inherited from
/// an outer `lock run` would name another lock.
fn give_token(cmd: &mut Command, id: &mstate_store::MilestoneId, token: Option<u64>) {
    match token {
        Some(t) => {
            cmd.env(LOCK_TOKEN_ENV, t.to_string())
                .env(LOCK_MILESTONE_ENV, id.as_str());
        }
        None => {
            cmd.env_remove(LOCK_TOKEN_ENV)
                .env_remove(LOCK_MILESTONE_ENV);
        }
    }
}

/// Run `wait` (the command's run) while a thread renews the lease of
/// `info`, the lock taken with TTL `ttl`, every third of the TTL; the
/// thread sleeps on a channel between renewals and ends when `wait`
/// returns. A renewal refused (the lease ran out while this process was
/// stopped) is reported once, and renewing stops: the command's writes
/// with the token are refused from then on.
fn renewing<T>(
    ctx: &Context,
    id: &mstate_store::MilestoneId,
    info: &LockInfo,
    ttl: Option<Duration>,
    wait: impl FnOnce() -> T,
) -> T {
    let (Some(ttl), Some(token)) = (ttl, info.token) else {
        return wait();
    };
    let every = (ttl / 3).max(Duration::from_millis(1));
    let store = &*ctx.store;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("renew".into())
            .spawn_scoped(scope, move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    if let Err(e) = store.lock_renew(id, token) {
                        warn(&format!(
                            "the lease of the lock of '{id}' could not be renewed: {e}"
                        ));
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            warn(&format!(
                "cannot renew the lease of the lock of '{id}' (no thread: {e}); it ends {ttl:?} after it was taken"
            ));
        }
        let result = wait();
        drop(stop);
        result
    })
}

fn spawn_error(what: &str, e: std::io::Error) -> CliError {
    let code = if e.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    CliError::Other(format!("cannot run {what:?}: {e}")).with_code(code)
}

fn exit_with(status: std::process::ExitStatus) -> CliResult {
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

/// `lock __gate`: wait for the runner's go, then become the command.
fn gate(a: &GateArgs) -> CliResult {
    use std::os::fd::FromRawFd;
    if a.fd <= 2 {
        return Err(CliError::Invalid(
            "lock __gate is internal to `mstate lock run`".into(),
        ));
    }
    // SAFETY: `lock run` passes the number of the pipe's read end it made
    // inheritable for this process alone, and nothing else in this process
    // knows the number, so the descriptor is open and owned here only. A
    // number that is not open makes the read below fail with EBADF, which
    // is handled; the `OwnedFd` then closes nothing another owner holds.
    let fd = unsafe { rustix::fd::OwnedFd::from_raw_fd(a.fd) };
    // "1", then the lock's token if it has one, then the end of the pipe.
    let mut message = Vec::new();
    let mut buf = [0u8; 32];
    loop {
        match rustix::io::read(&fd, &mut buf) {
            Ok(0) => break,
            Ok(n) if message.len() + n <= 64 => message.extend_from_slice(&buf[..n]),
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
    }
    drop(fd);
    let Some(rest) = message.strip_prefix(b"1") else {
        // The runner did not get the lock, or died: do not run.
        return Err(CliError::Exit(125));
    };
    let token = std::str::from_utf8(rest)
        .ok()
        .and_then(|t| t.parse::<u64>().ok());
    let mut cmd = Command::new(&a.command[0]);
    cmd.args(&a.command[1..]);
    let id = milestone(&a.milestone)?;
    give_token(&mut cmd, &id, token);
    let e = cmd.exec();
    Err(spawn_error(&a.command[0], e))
}
