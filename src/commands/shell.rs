//! `shell-init bash|zsh`: the seed's functions as a drop-in shell layer.

use clap::{Args, ValueEnum};

use crate::exit::{CliError, CliResult};
use crate::output::Out;

/// The function definitions, with `@MSTATE_BIN@` standing for this binary.
const FUNCTIONS: &str = include_str!("../shell/functions.sh");

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShellKind {
    Bash,
    Zsh,
}

#[derive(Debug, Args)]
pub struct ShellInitArgs {
    /// The shell to print functions for.
    pub shell: ShellKind,
}

/// Quote `s` for a POSIX shell's single quotes.
fn single_quote_body(s: &str) -> String {
    s.replace('\'', "'\\''")
}

pub fn cmd_shell_init(a: &ShellInitArgs) -> CliResult {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Other(format!("cannot find this binary's path: {e}")))?;
    let exe = exe.to_string_lossy();
    // The placeholder sits inside single quotes.
    let body = FUNCTIONS.replace("@MSTATE_BIN@", &single_quote_body(&exe));
    let mut out = Out::new();
    if a.shell == ShellKind::Zsh {
        out.line("# zsh: the functions are POSIX-style; word splitting is not relied on.")?;
    }
    out.line(body.trim_end())?;
    out.finish()
}
