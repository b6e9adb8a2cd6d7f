//! The store's one error type.
//!
//! Every failure the store can report is a variant of [`Error`]; front ends
//! map each variant to one exit code or status in one place (see
//! [`Error::kind`]). Messages name the thing that went wrong and, where there
//! is one, the way out.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::LockInfo;

/// Result alias used throughout the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of object a [`Error::NotFound`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Milestone,
    Checkpoint,
    Backup,
    Session,
    Lock,
    EventLog,
    Store,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Milestone => "milestone",
            ObjectKind::Checkpoint => "checkpoint",
            ObjectKind::Backup => "backup",
            ObjectKind::Session => "session",
            ObjectKind::Lock => "lock",
            ObjectKind::EventLog => "event log",
            ObjectKind::Store => "store",
        })
    }
}

/// Coarse classification of an [`Error`], one per exit code of the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// I/O or any other failure.
    Io,
    /// A named object does not exist.
    NotFound,
    /// Optimistic concurrency check failed.
    Conflict,
    /// The lock could not be had in time, or is not ours to release.
    Lock,
    /// Input was rejected: JSON, id, name or argument value.
    Invalid,
    /// Stored data is corrupt and no valid backup exists.
    Corrupt,
}

/// Every error the store reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem (or other I/O) operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A milestone, checkpoint, backup or session does not exist.
    #[error("{kind} '{name}' not found")]
    NotFound {
        kind: ObjectKind,
        name: String,
        hint: Option<Hint>,
    },

    /// A command other than `init` or `save` named a milestone the store
    /// knows nothing of (no state, event log, backup or checkpoint): a
    /// typo must not create a milestone. Front ends word how to create one.
    #[error("milestone '{name}' not found{}", unknown_suffix(nearest, no_store))]
    UnknownMilestone {
        name: String,
        /// Known milestone ids close to `name` (nearest first; empty when
        /// none is close).
        nearest: Vec<String>,
        /// Set when there is no store at all: where it was looked for
        /// (the store's [`crate::Store::location`]).
        no_store: Option<String>,
    },

    /// An object that must not be overwritten already exists.
    #[error("{kind} '{name}' already exists")]
    AlreadyExists {
        kind: ObjectKind,
        name: String,
        hint: Option<Hint>,
    },

    /// `--expect-revision` did not match the stored revision.
    #[error("revision conflict on milestone '{milestone}': expected revision {expected}, found {actual}; load the state again and retry")]
    Conflict {
        milestone: String,
        expected: u64,
        actual: u64,
    },

    /// The lock was held by someone else for the whole wait. The message
    /// names no option or command: a front end words the way out (the
    /// CLI names `--lock-timeout` or `--timeout`, and `lock release`).
    #[error("milestone '{milestone}' is locked{}; waited {:.1}s", holder_suffix(holder), waited.as_secs_f64())]
    LockTimeout {
        milestone: String,
        waited: Duration,
        holder: Option<Box<LockInfo>>,
    },

    /// A release or pin was asked for a lock this process tree does not
    /// hold: someone else's (`holder`), or none (`holder` is `None`).
    #[error("{}", not_owned_message(milestone, holder))]
    LockNotOwned {
        milestone: String,
        holder: Option<Box<LockInfo>>,
    },

    /// A write carrying a lock's fencing token was refused: the token is
    /// not the live lock of the milestone any more (or never was), so the
    /// writer may have lost the lock while it paused.
    #[error("{}", token_message(milestone, *token, reason))]
    TokenRefused {
        milestone: String,
        token: u64,
        reason: TokenRefusal,
    },

    /// JSON input did not parse.
    #[error("invalid JSON in {context} at line {line}, column {column}: {message}")]
    InvalidJson {
        context: String,
        line: usize,
        column: usize,
        message: String,
    },

    /// An id, name or argument value was rejected.
    #[error("invalid {what}: {message}")]
    Invalid {
        what: String,
        message: String,
        hint: Option<Box<Hint>>,
    },

    /// A stored file is corrupt and could not be recovered.
    #[error("{what} is corrupt ({}): {detail}", path.display())]
    Corrupt {
        what: String,
        path: PathBuf,
        detail: String,
        hint: Option<Hint>,
    },
}

/// A way out of an error, as data: front ends word it (the CLI names its
/// commands; another front end its tools). Messages of errors never
/// include it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hint {
    /// Create the milestone by saving a state.
    SaveToCreate { milestone: String },
    /// Create the milestone by saving a state, or look at those there are.
    SaveToCreateOrList { milestone: String },
    /// See the milestone's checkpoints.
    ListCheckpoints { milestone: String },
    /// See the milestone's backups.
    ListBackups { milestone: String },
    /// The name given is no backup of the milestone; see its backups.
    NotABackupOf { milestone: String },
    /// Name another backup of the milestone.
    OtherBackup { milestone: String },
    /// See the sessions.
    ListSessions,
    /// There is no current session: name one.
    NameSession,
    /// Choose another name, or replace the existing object.
    OtherNameOrReplace,
    /// A corrupt state with a valid backup: recover it.
    Recover { milestone: String },
    /// A corrupt state with no valid backup but a valid checkpoint:
    /// restore it, or save a new state.
    RestoreCheckpointOrSave {
        milestone: String,
        checkpoint: Box<str>,
    },
    /// A corrupt state with neither: save a new state (the corrupt file
    /// is kept aside), or repair the file by hand.
    SaveOverCorrupt { milestone: String },
    /// A corrupt state stops a move of the store: recover it first.
    RecoverBeforeMove { milestone: String },
    /// No store where the command looked: name one, or create one.
    NoStoreHere,
    /// A checkpoint was named where a backup was asked for: restore it
    /// as a checkpoint.
    RestoreCheckpoint {
        milestone: Box<str>,
        checkpoint: Box<str>,
    },
    /// A state without a revision (saved by the seed's functions): save
    /// it once through the store first.
    SaveThroughStore { milestone: String },
    /// The session named has ended: log without one, or start another.
    SessionEnded,
    /// A check that could not decide: run the check again later.
    CheckAgain,
    /// A lock whose holder could not be verified: break it if the holder
    /// is known to be gone.
    ForceReleaseIfGone { milestone: String },
    /// A stored state whose copies differ: save the state again.
    SaveAgain { milestone: String },
    /// Advice that names no command or option.
    Advice(String),
}

/// Why a fencing token was refused ([`Error::TokenRefused`]).
#[derive(Debug, Clone, PartialEq)]
pub enum TokenRefusal {
    /// The lock was taken again since: `newest` is the token issued last,
    /// `holder` who holds the lock now, if anyone.
    Superseded {
        newest: u64,
        holder: Option<Box<LockInfo>>,
    },
    /// No such token was ever issued for the milestone.
    NeverIssued { newest: u64 },
    /// The token's lease ran out (at this time, RFC 3339).
    Expired { at: String },
    /// The lock of that token was released.
    Released,
}

fn token_message(milestone: &str, token: u64, reason: &TokenRefusal) -> String {
    let why = match reason {
        TokenRefusal::Superseded { newest, holder } => format!(
            "the lock was taken again since (token {newest}{})",
            match holder {
                Some(h) => format!(", now held by {}", h.describe()),
                None => String::new(),
            }
        ),
        TokenRefusal::NeverIssued { newest } => {
            format!("it was never issued (the newest token is {newest})")
        }
        TokenRefusal::Expired { at } => format!("its lease expired at {at}"),
        TokenRefusal::Released => "its lock was released".to_string(),
    };
    format!("write to milestone '{milestone}' with lock token {token} refused: {why}")
}

fn unknown_suffix(nearest: &[String], no_store: &Option<String>) -> String {
    if let Some(root) = no_store {
        return format!(": there is no store at {root}");
    }
    match nearest {
        [] => String::new(),
        [one] => format!("; did you mean '{one}'?"),
        many => format!(
            "; did you mean one of {}?",
            many.iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn holder_suffix(holder: &Option<Box<LockInfo>>) -> String {
    match holder {
        Some(info) => format!(" by {}", info.describe()),
        None => String::new(),
    }
}

fn not_owned_message(milestone: &str, holder: &Option<Box<LockInfo>>) -> String {
    match holder {
        Some(info) => format!(
            "lock of milestone '{milestone}' is held by {}, not by this process",
            info.describe()
        ),
        None => {
            format!("milestone '{milestone}' is not locked by this process (nobody holds its lock)")
        }
    }
}

impl Error {
    /// The coarse kind of this error; front ends map kinds to exit codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::NotFound { .. } | Error::UnknownMilestone { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::Invalid,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::LockTimeout { .. } | Error::LockNotOwned { .. } | Error::TokenRefused { .. } => {
                ErrorKind::Lock
            }
            Error::InvalidJson { .. } | Error::Invalid { .. } => ErrorKind::Invalid,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
        }
    }

    /// Build an [`Error::Io`] for `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Build an [`Error::Invalid`].
    pub fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            message: message.into(),
            hint: None,
        }
    }

    /// Build an [`Error::Invalid`] with a way out.
    pub fn invalid_with(what: impl Into<String>, message: impl Into<String>, hint: Hint) -> Self {
        Error::Invalid {
            what: what.into(),
            message: message.into(),
            hint: Some(Box::new(hint)),
        }
    }

    /// The way out the error carries, if any.
    pub fn hint(&self) -> Option<&Hint> {
        match self {
            Error::NotFound { hint, .. }
            | Error::AlreadyExists { hint, .. }
            | Error::Corrupt { hint, .. } => hint.as_ref(),
            Error::Invalid { hint, .. } => hint.as_deref(),
            _ => None,
        }
    }

    /// Build an [`Error::NotFound`] without a hint.
    pub fn not_found(kind: ObjectKind, name: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            name: name.into(),
            hint: None,
        }
    }
}

/// Attach an operation and a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}
