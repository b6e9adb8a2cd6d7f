//! Exit codes and the binary's error type: the one place where a failure
//! becomes a message and a code.

use std::fmt;
use std::io;

use mstate_store::ErrorKind;

/// Success.
pub const OK: u8 = 0;
/// I/O or other failure.
pub const FAILURE: u8 = 1;
/// Bad usage: unknown command or flag, missing or conflicting arguments.
pub const USAGE: u8 = 2;
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

/// One exit code: its number, the `kind` a JSON error of it carries, and
/// what it means.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ExitKind {
    pub code: u8,
    pub kind: &'static str,
    pub meaning: &'static str,
}

/// Every exit code of mstate: the one source of `mstate help exit-codes`,
/// the end of `mstate --help`, the `kind` of JSON errors and README's
/// table (a test keeps README equal to what the binary prints).
pub const EXIT_CODES: &[ExitKind] = &[
    ExitKind {
        code: OK,
        kind: "ok",
        meaning: "success",
    },
    ExitKind {
        code: FAILURE,
        kind: "failure",
        meaning: "I/O or other failure (and doctor findings left)",
    },
    ExitKind {
        code: USAGE,
        kind: "usage",
        meaning: "usage error: unknown command or flag, missing, extra or conflicting arguments",
    },
    ExitKind {
        code: NOT_FOUND,
        kind: "not_found",
        meaning: "not found (milestone, checkpoint, backup, session; for doctor, the store)",
    },
    ExitKind {
        code: CONFLICT,
        kind: "conflict",
        meaning: "revision conflict (--expect-revision)",
    },
    ExitKind {
        code: LOCKED,
        kind: "locked",
        meaning: "lock not acquired in time, not yours to release or pin, or its token refused",
    },
    ExitKind {
        code: INVALID,
        kind: "invalid",
        meaning: "invalid input (JSON, id, name, argument or environment value)",
    },
    ExitKind {
        code: CORRUPT,
        kind: "corrupt",
        meaning: "corruption with no valid backup to recover from",
    },
];

/// The kind name of exit code `code` (`failure` for a code not in the
/// table, such as a `lock run` command's own status).
pub fn kind_of(code: u8) -> &'static str {
    EXIT_CODES
        .iter()
        .find(|k| k.code == code && code != OK)
        .map_or("failure", |k| k.kind)
}

/// The exit codes as aligned text lines, each indented by `indent`.
pub fn exit_codes_text(indent: &str) -> String {
    let width = EXIT_CODES.iter().map(|k| k.kind.len()).max().unwrap_or(0);
    let mut s = String::new();
    for k in EXIT_CODES {
        s.push_str(&format!(
            "{indent}{}  {:<width$}  {}\n",
            k.code, k.kind, k.meaning
        ));
    }
    s
}

/// `mstate help exit-codes`: the table, and what else sets the status.
pub fn exit_codes_topic() -> String {
    format!(
        "Exit codes (with --json, an error is one line on stderr:\n\
         {{\"error\": {{\"kind\": KIND, \"code\": CODE, \"message\": TEXT}}}}):\n\n\
         {}\n\
         `lock run` exits with its command's status (125: not run, 126: cannot run, 127: not found).\n",
        exit_codes_text("  ")
    )
}

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
    /// A usage error found by the argument parser: `message` without
    /// clap's "error: " and usage lines, `usage` the usage line.
    Usage {
        message: String,
        usage: Option<String>,
    },
    /// A store error worded by the binary with what only it knows (the
    /// flag the user set); `code` is the store error's.
    Worded { code: u8, message: String },
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
            CliError::Usage { .. } => USAGE,
            CliError::Worded { code, .. } => *code,
        }
    }

    /// A short name of the kind, for JSON errors (see [`EXIT_CODES`]).
    pub fn kind_name(&self) -> &'static str {
        kind_of(self.code())
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

    /// A lock timeout whose hint names `flag`, the option (or variable)
    /// that set the wait the user ran out of (`--timeout` of `lock
    /// acquire`, else `--lock-timeout`); a refused fencing token with the
    /// way out. Other errors are unchanged.
    pub fn naming_wait(self, flag: &str) -> CliError {
        match self {
            CliError::Store(e @ mstate_store::Error::TokenRefused { .. }) => {
                let mstate_store::Error::TokenRefused {
                    milestone, reason, ..
                } = &e
                else {
                    return CliError::Store(e);
                };
                let way_out = match reason {
                    mstate_store::TokenRefusal::NeverIssued { .. } => format!(
                        "check the token: `mstate lock status {milestone}` shows the lock's"
                    ),
                    mstate_store::TokenRefusal::Expired { .. } => format!(
                        "take the lock again (`mstate lock acquire {milestone}`), load the state \
                         again and retry with the new token; `mstate lock run --ttl` renews its \
                         lease while its command runs"
                    ),
                    _ => format!(
                        "this process may have lost the lock while it paused: take it again \
                         (`mstate lock acquire {milestone}`), load the state again and retry with \
                         the new token"
                    ),
                };
                CliError::Worded {
                    code: LOCKED,
                    message: format!("{e}; {way_out}"),
                }
            }
            CliError::Store(mstate_store::Error::LockTimeout {
                milestone,
                waited,
                holder,
            }) => {
                let by = holder
                    .map(|h| format!(" by {}", h.describe()))
                    .unwrap_or_default();
                CliError::Worded {
                    code: LOCKED,
                    message: format!(
                        "milestone '{milestone}' is locked{by}; waited {:.1}s; retry with a longer {flag}, \
                         or if the holder is gone run `mstate lock release {milestone} --force`",
                        waited.as_secs_f64()
                    ),
                }
            }
            other => other,
        }
    }

    /// This error's message, but exit status `code` (reported by `main`,
    /// as JSON under `--json`).
    pub fn with_code(self, code: u8) -> CliError {
        CliError::Worded {
            code,
            message: self.to_string(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Store(e) => f.write_str(&crate::hints::message(e)),
            CliError::Invalid(m) | CliError::Other(m) => f.write_str(m),
            CliError::Usage { message, .. } | CliError::Worded { message, .. } => {
                f.write_str(message)
            }
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
