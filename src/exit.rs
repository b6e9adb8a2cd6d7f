//! Exit codes and the binary's error type: the one place where a failure
//! becomes a message and a code.

use std::fmt;
use std::io;

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
    /// The output could not be written (a closed pipe is not an error).
    /// `committed` says what the command had already made durable, so a
    /// caller seeing exit 1 does not take a committed write for a failed one.
    Output {
        error: io::Error,
        committed: Option<String>,
    },
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
            CliError::Other(_) | CliError::Output { .. } => FAILURE,
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
    /// A failed write of the output.
    pub fn output(error: io::Error) -> CliError {
        CliError::Output {
            error,
            committed: None,
        }
    }

    /// For an output error of a command whose change was already
    /// committed: say what was committed (`what()`, e.g. "the state of 'm'
    /// is at revision 3"). Other errors are returned unchanged.
    pub fn committed(self, what: impl FnOnce() -> String) -> CliError {
        match self {
            CliError::Output {
                error,
                committed: None,
            } => CliError::Output {
                error,
                committed: Some(what()),
            },
            other => other,
        }
    }

    /// What was committed before the output failed, if anything.
    pub fn committed_text(&self) -> Option<&str> {
        match self {
            CliError::Output {
                committed: Some(c), ..
            } => Some(c),
            _ => None,
        }
    }

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
            CliError::Output { error, committed } => {
                write!(f, "cannot write the output: {error}")?;
                match committed {
                    Some(c) => write!(f, "; the change itself was committed: {c}"),
                    None => Ok(()),
                }
            }
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
