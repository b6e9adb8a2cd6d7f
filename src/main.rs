//! `mstate`: durable, concurrency-safe state for long-running milestone
//! executions. This binary only parses arguments, calls the store and
//! renders results; see the `mstate-store` crate for the store itself.

mod cli;
mod commands;
mod context;
mod exit;
mod hints;
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
    let wait_flag = cli.wait_flag();
    // An output error of an `Out` dropped on an early return is reported
    // here, so no failed write of the output ends as a success.
    let result = commands::run(cli).and_then(|()| match output::unreported_error() {
        Some(e) => Err(exit::CliError::output(e)),
        None => Ok(()),
    });
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => {
            let err = err.naming_wait(&wait_flag);
            output::report_error(&err, json);
            ExitCode::from(err.code())
        }
    }
}
