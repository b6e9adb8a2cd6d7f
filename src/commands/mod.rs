//! One module per command group; [`run`] dispatches.

pub mod backup;
pub mod checkpoint;
pub mod completions;
pub mod doctor;
pub mod events;
pub mod lock;
pub mod migrate;
pub mod session;
pub mod shell;
pub mod state;

use std::io::Read;

use mstate_store::json::MAX_JSON_BYTES;
use mstate_store::{CheckpointName, MilestoneId};

use crate::cli::{Cli, Command};
use crate::context::Context;
use crate::exit::{CliError, CliResult};

/// Run the parsed command line.
pub fn run(cli: Cli) -> CliResult {
    match &cli.command {
        Command::Completions(args) => {
            crate::context::settings(&cli.global)?;
            return completions::cmd_completions(args);
        }
        Command::ShellInit(args) => {
            crate::context::settings(&cli.global)?;
            return shell::cmd_shell_init(args);
        }
        Command::Migrate(args) => {
            crate::context::settings(&cli.global)?;
            return migrate::cmd_migrate(&cli.global, args).map_err(crate::hints::word_hints);
        }
        _ => {}
    }
    let ctx = Context::open(cli.global)?;
    let result = dispatch(&ctx, cli.command).map_err(crate::hints::word_hints);
    // Failures after a commit point that the command did not show itself
    // (an event that could not be logged): the change stands, so they are
    // warnings, shown whatever the command's outcome.
    state::committed_warnings(&ctx);
    result
}

fn dispatch(ctx: &Context, command: Command) -> CliResult {
    match command {
        Command::Init(a) => state::cmd_init(ctx, &a),
        Command::Save(a) => state::cmd_save(ctx, &a),
        Command::Load(a) => state::cmd_load(ctx, &a),
        Command::Update(a) => state::cmd_update(ctx, &a),
        Command::List => state::cmd_list(ctx),
        Command::Complete(a) => state::cmd_complete(ctx, &a, true),
        Command::Reopen(a) => state::cmd_complete(ctx, &a, false),
        Command::Backups(a) => backup::cmd_backups(ctx, &a),
        Command::Recover(a) => backup::cmd_recover(ctx, &a),
        Command::Checkpoint(c) => checkpoint::cmd_checkpoint(ctx, &c),
        Command::Lock(c) => lock::cmd_lock(ctx, c),
        Command::Log(a) => events::cmd_log(ctx, &a),
        Command::Events(a) => events::cmd_events(ctx, &a),
        Command::Timeline(a) => events::cmd_timeline(ctx, &a),
        Command::Cleanup(a) => events::cmd_cleanup(ctx, &a),
        Command::Session(c) => session::cmd_session(ctx, &c),
        Command::Doctor(a) => doctor::cmd_doctor(ctx, &a),
        Command::Completions(_) | Command::ShellInit(_) | Command::Migrate(_) => Ok(()),
    }
}

/// Validate a milestone id argument.
pub fn milestone(s: &str) -> CliResult<MilestoneId> {
    Ok(MilestoneId::new(s)?)
}

/// Validate a checkpoint name argument.
pub fn checkpoint_name(s: &str) -> CliResult<CheckpointName> {
    Ok(CheckpointName::new(s)?)
}

/// The bytes of a JSON argument: the argument itself, or stdin for `-`
/// or no argument.
pub fn json_input(arg: Option<&str>) -> CliResult<Vec<u8>> {
    match arg {
        Some(s) if s != "-" => Ok(s.as_bytes().to_vec()),
        _ => {
            use std::io::IsTerminal;
            if arg.is_none() && std::io::stdin().is_terminal() {
                return Err(CliError::Invalid(
                    "no JSON given: pass it as an argument, or pipe it to standard input".into(),
                ));
            }
            let mut buf = Vec::new();
            // From a file, read into a buffer of its size, not one grown
            // by doubling (a large state would take up to twice its size).
            if let Ok(st) = rustix::fs::fstat(std::io::stdin()) {
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    == rustix::fs::FileType::RegularFile
                {
                    let size = usize::try_from(st.st_size).unwrap_or(0);
                    buf.reserve(size.min(MAX_JSON_BYTES) + 1);
                }
            }
            std::io::stdin()
                .lock()
                .take(MAX_JSON_BYTES as u64 + 1)
                .read_to_end(&mut buf)
                .map_err(|e| CliError::Other(format!("cannot read standard input: {e}")))?;
            Ok(buf)
        }
    }
}
