//! `mstate`: durable, concurrency-safe state for long-running milestone
//! executions. This binary only parses arguments, calls the store and
//! renders results; see the `mstate-store` crate for the store itself.

mod cli;
mod commands;
mod context;
mod exit;
mod output;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Past a file size limit (`ulimit -f`) the kernel sends SIGXFSZ, whose
    // default action kills the process mid-write. Catching it turns the
    // write into an EFBIG error that is reported and cleaned up.
    let _ = signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let cli = cli::Cli::from_env();
    let json = cli.global.json;
    match commands::run(cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => {
            output::report_error(&err, json);
            ExitCode::from(err.code())
        }
    }
}
