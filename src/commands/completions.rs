//! `completions <shell>`.

use clap::Args;
use clap_complete::Shell;

use crate::exit::CliResult;
use crate::output::Out;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

pub fn cmd_completions(a: &CompletionsArgs) -> CliResult {
    let mut cmd = crate::cli::command();
    // Into memory first: `generate` panics when its writer fails.
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "mstate", &mut script);
    let mut out = Out::new();
    out.bytes(&script)?;
    out.finish()
}
