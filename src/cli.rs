//! The command line: global options and the command tree. Each command's
//! own arguments live beside its code in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands::{backup, checkpoint, events, lock, session, state};

const AFTER_HELP: &str = concat!(
    "Store: -C DIR, else $MSTATE_DIR, else the nearest ancestor holding .milestones/state, else ./.milestones/state.\n\n",
    "Exit codes:\n",
    "  0  success\n",
    "  1  I/O or other failure\n",
    "  2  usage error\n",
    "  3  not found (milestone, checkpoint, backup, session)\n",
    "  4  revision conflict (--expect-revision)\n",
    "  5  lock not acquired in time\n",
    "  6  invalid input (JSON, id, name, argument value)\n",
    "  7  corruption with no valid backup to recover from"
);

/// Durable, concurrency-safe state for long-running milestone executions.
#[derive(Debug, Parser)]
#[command(name = "mstate", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Run as if started in DIR (like git -C).
    #[arg(short = 'C', value_name = "DIR", global = true)]
    pub chdir: Option<PathBuf>,

    /// Print machine-readable JSON (errors too, on stderr).
    #[arg(long, global = true)]
    pub json: bool,

    /// Wait at most SECS for a milestone's lock.
    #[arg(
        long,
        value_name = "SECS",
        global = true,
        default_value = "30",
        env = "MSTATE_LOCK_TIMEOUT"
    )]
    pub lock_timeout: String,

    /// Backups kept per milestone (oldest removed first; checkpoints are kept).
    #[arg(
        long,
        value_name = "N",
        global = true,
        default_value_t = 50,
        env = "MSTATE_MAX_BACKUPS"
    )]
    pub max_backups: usize,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the store layout and the milestone's first event (idempotent).
    Init(state::InitArgs),
    /// Save a milestone's state (JSON argument, or stdin with - or nothing).
    Save(state::SaveArgs),
    /// Print a milestone's state as pretty JSON.
    Load(state::LoadArgs),
    /// Change a milestone's state in one atomic read-modify-write.
    Update(state::UpdateArgs),
    /// List every milestone with its status, revision and lock.
    List,
    /// Mark a milestone completed (moves its state to completed/).
    Complete(state::IdArgs),
    /// Make a completed milestone active again.
    Reopen(state::IdArgs),
    /// List a milestone's backups, newest first.
    Backups(backup::BackupsArgs),
    /// Restore the newest valid backup (or --from one).
    Recover(backup::RecoverArgs),
    /// Named checkpoints of a milestone's state.
    #[command(subcommand)]
    Checkpoint(checkpoint::CheckpointCommand),
    /// Milestone locks, shared with the seed's lock directories.
    #[command(subcommand)]
    Lock(lock::LockCommand),
    /// Append an event to a milestone's log.
    Log(events::LogArgs),
    /// Query a milestone's events.
    Events(events::EventsArgs),
    /// A milestone's events in time order, with session spans.
    Timeline(events::TimelineArgs),
    /// Remove events, backups and completed sessions older than N days.
    Cleanup(events::CleanupArgs),
    /// Sessions: who worked on a milestone, from where, and when.
    #[command(subcommand)]
    Session(session::SessionCommand),
    /// Check the whole store; exit 0 only when it is clean.
    Doctor(crate::commands::doctor::DoctorArgs),
    /// Print the seed's shell functions backed by mstate: eval "$(mstate shell-init bash)".
    ShellInit(crate::commands::shell::ShellInitArgs),
    /// Print shell completions.
    Completions(crate::commands::completions::CompletionsArgs),
}
