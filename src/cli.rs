//! The command line: global options and the command tree. Each command's
//! own arguments live beside its code in `commands/`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, FromArgMatches, Parser, Subcommand};

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

/// Default of `--lock-timeout` (the seed's).
const DEFAULT_LOCK_TIMEOUT: &str = "30";

/// Default of `--max-backups`.
const DEFAULT_MAX_BACKUPS: usize = mstate_store::fs::backup::DEFAULT_MAX_BACKUPS;

/// Durable, concurrency-safe state for long-running milestone executions.
#[derive(Debug, Parser)]
#[command(name = "mstate", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parse the process's arguments.
    ///
    /// The commands scripts call in loops (`load`, `save`, `update`, `log`,
    /// `events`) are first parsed against a command tree holding only the
    /// one named: building clap's whole tree costs more instructions than
    /// the rest of a small `mstate load`. Anything else, and every error or
    /// help request, goes through the whole tree, so messages are the same.
    pub fn from_env() -> Cli {
        let args: Vec<OsString> = std::env::args_os().collect();
        if let Some(cli) = lean(&args) {
            return cli;
        }
        Cli::try_parse_from(args).unwrap_or_else(|e| exit_with(&e))
    }
}

/// Print clap's help, version or usage error and exit with its status,
/// as `clap::Error::exit` does, except that help or version that cannot
/// be written to stdout (a full disk, not a closed pipe) is exit 1 with
/// the reason, not a silent success.
fn exit_with(e: &clap::Error) -> ! {
    use std::io::IsTerminal;
    if e.use_stderr() || std::io::stdout().is_terminal() {
        // Usage errors go to stderr; a terminal gets clap's colours.
        e.exit();
    }
    let mut out = crate::output::Out::new();
    let printed = out
        .bytes(e.render().to_string().as_bytes())
        .and_then(|_| out.finish());
    match printed {
        Ok(()) => std::process::exit(e.exit_code()),
        Err(err) => {
            crate::output::report_error(&err, false);
            std::process::exit(i32::from(err.code()));
        }
    }
}

/// Parse `args` if they name a hot command and are valid for it.
fn lean(args: &[OsString]) -> Option<Cli> {
    match args.get(1)?.to_str()? {
        "load" => simple_load(args).or_else(|| only(args, "load", Command::Load)),
        "save" => only(args, "save", Command::Save),
        "update" => only(args, "update", Command::Update),
        "log" => only(args, "log", Command::Log),
        "events" => only(args, "events", Command::Events),
        _ => None,
    }
}

/// `mstate load <milestone> [--json] [--envelope] [--log-access]`, global
/// options from the environment only: the form scripts run in loops,
/// parsed by hand, since clap's parser alone costs more than the rest of a
/// small load. Any other form returns `None` (clap then decides).
fn simple_load(args: &[OsString]) -> Option<Cli> {
    if args.get(1)?.to_str()? != "load" {
        return None;
    }
    let mut milestone = None;
    let (mut json, mut envelope, mut log_access) = (false, false, false);
    for arg in args.get(2..)? {
        let flag = match arg.to_str()? {
            "--json" => &mut json,
            "--envelope" => &mut envelope,
            "--log-access" => &mut log_access,
            s if !s.starts_with('-') && milestone.is_none() => {
                milestone = Some(s.to_string());
                continue;
            }
            _ => return None,
        };
        if std::mem::replace(flag, true) {
            return None; // repeated: clap's error
        }
    }
    let env = |name: &str, default: &str| match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        Err(std::env::VarError::NotPresent) => Some(default.to_string()),
        _ => None,
    };
    let global = GlobalArgs {
        chdir: None,
        json,
        lock_timeout: env("MSTATE_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT)?,
        max_backups: env("MSTATE_MAX_BACKUPS", &DEFAULT_MAX_BACKUPS.to_string())?
            .parse()
            .ok()?,
    };
    Some(Cli {
        global,
        command: Command::Load(state::LoadArgs {
            milestone: milestone?,
            envelope,
            log_access,
        }),
    })
}

/// Parse `args` against a tree of the global options and command `name`.
fn only<A: Args + FromArgMatches>(
    args: &[OsString],
    name: &'static str,
    wrap: fn(A) -> Command,
) -> Option<Cli> {
    let tree = GlobalArgs::augment_args(clap::Command::new("mstate"))
        .subcommand(A::augment_args(clap::Command::new(name)))
        .subcommand_required(true);
    let matches = tree.try_get_matches_from(args).ok()?;
    let global = GlobalArgs::from_arg_matches(&matches).ok()?;
    let (_, sub) = matches.subcommand()?;
    let command = wrap(A::from_arg_matches(sub).ok()?);
    Some(Cli { global, command })
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
        default_value = DEFAULT_LOCK_TIMEOUT,
        env = "MSTATE_LOCK_TIMEOUT"
    )]
    pub lock_timeout: String,

    /// Backups kept per milestone (oldest removed first; checkpoints are kept).
    #[arg(
        long,
        value_name = "N",
        global = true,
        default_value_t = DEFAULT_MAX_BACKUPS,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The lean parsers give what clap's whole tree gives, or step aside.
    #[test]
    fn lean_parsing_agrees_with_the_whole_tree() {
        let cases: &[&[&str]] = &[
            &["load", "m1"],
            &["load", "m1", "--json"],
            &["load", "--json", "m1", "--envelope", "--log-access"],
            &["load", "m1", "--json", "--json"],
            &["load", "m1", "m2"],
            &["load"],
            &["load", "-C", "/tmp", "m1"],
            &["load", "m1", "--lock-timeout", "5"],
            &["load", "-", "--json"],
            &["load", "--", "m1"],
            &["load", "m1", "--help"],
            &["save", "m1", "{}", "--expect-revision", "3"],
            &["update", "m1", "--set", "/a=1", "--json"],
            &["update", "m1"],
            &["log", "m1", "note", "{}", "--raw-fallback"],
            &["events", "m1", "--tail", "5", "--type", "a", "--type", "b"],
            &["events", "m1", "--follow", "--json"],
            &["lock", "status", "m1"],
        ];
        for case in cases {
            let args: Vec<OsString> = std::iter::once("mstate")
                .chain(case.iter().copied())
                .map(OsString::from)
                .collect();
            let whole = Cli::try_parse_from(&args).ok();
            if let Some(lean) = lean(&args) {
                assert_eq!(
                    Some(format!("{lean:?}")),
                    whole.map(|w| format!("{w:?}")),
                    "{case:?}"
                );
            }
            if let Some(simple) = simple_load(&args) {
                let whole = Cli::try_parse_from(&args).ok();
                assert_eq!(
                    Some(format!("{simple:?}")),
                    whole.map(|w| format!("{w:?}")),
                    "{case:?}"
                );
            }
        }
        let load = |a: &[&str]| {
            let args: Vec<OsString> = ["mstate"].iter().chain(a).map(OsString::from).collect();
            simple_load(&args).is_some()
        };
        assert!(load(&["load", "m1", "--json"]));
        assert!(!load(&["load", "m1", "--json", "--json"]));
    }
}
