//! `mstate`: durable, concurrency-safe state for long-running milestone
//! executions. This binary only parses arguments, calls the store and
//! renders results; see the `mstate-store` crate for the store itself.

mod cli;
mod commands;
mod context;
mod exit;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let json = cli.global.json;
    match commands::run(cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => {
            output::report_error(&err, json);
            ExitCode::from(err.code())
        }
    }
}
