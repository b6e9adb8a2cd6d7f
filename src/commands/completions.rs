//! `completions <shell>`.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;
use crate::exit::CliResult;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

pub fn cmd_completions(a: &CompletionsArgs) -> CliResult {
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "mstate", &mut std::io::stdout());
    Ok(())
}
