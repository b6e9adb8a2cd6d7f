//! Exit codes and the binary's error type: the one place where a failure
//! becomes a message and a code.

use std::fmt;

use mstate_store::ErrorKind;

/// Success.
pub const OK: u8 = 0;
/// I/O or other failure.
pub const FAILURE: u8 = 1;
// 2: bad usage (unknown flag, missing argument), reported by clap itself.
/// Milestone, checkpoint, backup or session not found.
pub const NOT_FOUND: u8 = 3;
/// Revision conflict (`--expect-revision`).
pub const CONFLICT: u8 = 4;
/// Lock not acquired in time (or not ours to release).
pub const LOCKED: u8 = 5;
/// Invalid input: JSON, id, name, argument value.
pub const INVALID: u8 = 6;
/// Corruption with no valid backup to recover from.
pub const CORRUPT: u8 = 7;

/// Every way the binary can fail.
#[derive(Debug)]
pub enum CliError {
    /// An error from the store.
    Store(mstate_store::Error),
    /// An argument value the parser accepted but the command cannot use.
    Invalid(String),
    /// Any other failure (reading stdin, running a child).
    Other(String),
    /// Exit with this code without a message (a child's status).
    Exit(u8),
}

impl CliError {
    /// The exit code of this error.
    pub fn code(&self) -> u8 {
        match self {
            CliError::Store(e) => match e.kind() {
                ErrorKind::Io => FAILURE,
                ErrorKind::NotFound => NOT_FOUND,
                ErrorKind::Conflict => CONFLICT,
                ErrorKind::Lock => LOCKED,
                ErrorKind::Invalid => INVALID,
                ErrorKind::Corrupt => CORRUPT,
            },
            CliError::Invalid(_) => INVALID,
            CliError::Other(_) => FAILURE,
            CliError::Exit(code) => *code,
        }
    }

    /// A short name of the kind, for JSON errors.
    pub fn kind_name(&self) -> &'static str {
        match self.code() {
            NOT_FOUND => "not_found",
            CONFLICT => "conflict",
            LOCKED => "locked",
            INVALID => "invalid",
            CORRUPT => "corrupt",
            _ => "failure",
        }
    }
}

impl CliError {
    /// Report this error's message, but exit with `code`.
    pub fn with_code(self, code: u8) -> CliError {
        crate::output::report_error(&self, false);
        CliError::Exit(code)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Store(e) => write!(f, "{e}"),
            CliError::Invalid(m) | CliError::Other(m) => f.write_str(m),
            CliError::Exit(code) => write!(f, "exit status {code}"),
        }
    }
}

impl From<mstate_store::Error> for CliError {
    fn from(e: mstate_store::Error) -> Self {
        CliError::Store(e)
    }
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;
