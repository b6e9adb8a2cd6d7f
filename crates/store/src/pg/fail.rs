//! How failures inside a PostgreSQL operation become the store's errors.
//!
//! Operations run as closures returning [`Fail`]: a database error (kept
//! as it is until the operation knows whether to retry it), a store error
//! (a conflict, a refused token: reported as it is), or a busy lock
//! (retried after a pause until the operation's timeout). Database errors
//! become [`Error::Io`] naming the operation and the store, with the
//! server's message, SQLSTATE, detail and hint; the few that mean bad
//! input become [`Error::Invalid`].

use postgres::error::SqlState;

use crate::error::Error;
use crate::model::LockInfo;

use super::PgStore;

/// A failure inside an operation.
#[derive(Debug)]
pub enum Fail {
    /// The database refused or the connection failed.
    Db(postgres::Error),
    /// The operation itself refused (conflict, invalid token, not found).
    Store(Error),
    /// The milestone's lock is held by someone else: roll back, pause,
    /// try again until the timeout.
    Busy(Option<Box<LockInfo>>),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Store(e)
    }
}

impl Fail {
    /// A failure that re-running the whole transaction may cure.
    pub fn is_retryable(&self) -> bool {
        match self {
            Fail::Db(e) => matches!(
                e.code(),
                Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
            ),
            _ => false,
        }
    }

    /// The connection is gone (closed, or the server is shutting the
    /// session down).
    pub fn is_connection_loss(&self) -> bool {
        match self {
            Fail::Db(e) => {
                e.is_closed()
                    || matches!(
                        e.code(),
                        Some(c) if *c == SqlState::ADMIN_SHUTDOWN
                            || *c == SqlState::CRASH_SHUTDOWN
                            || *c == SqlState::CANNOT_CONNECT_NOW
                            || *c == SqlState::CONNECTION_FAILURE
                            || *c == SqlState::CONNECTION_EXCEPTION
                    )
                    || e.code().is_none() && e.as_db_error().is_none() && is_io(e)
            }
            _ => false,
        }
    }

    /// The store error for this failure of `op` on `store`.
    pub(super) fn into_error(self, store: &PgStore, op: &'static str, effect: Effect) -> Error {
        match self {
            Fail::Store(e) => e,
            Fail::Busy(holder) => Error::LockTimeout {
                milestone: String::new(),
                waited: std::time::Duration::ZERO,
                holder,
            },
            Fail::Db(e) => {
                if let Some(code) = e.code() {
                    if *code == SqlState::UNTRANSLATABLE_CHARACTER
                        || *code == SqlState::INVALID_TEXT_REPRESENTATION
                        || *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE
                    {
                        return Error::invalid(
                            "JSON for PostgreSQL",
                            format!(
                                "{}; PostgreSQL's jsonb cannot hold the escape \\u0000 (nor NUL bytes in text): remove it from the value",
                                describe(&e)
                            ),
                        );
                    }
                }
                let mut message = describe(&e);
                if Fail::Db(e).is_connection_loss() {
                    message.push_str(match effect {
                        Effect::Write => "; the connection was lost: a write was rolled back unless the loss came while it committed, so check before retrying one",
                        Effect::Read => "; the connection was lost: this only read, so nothing was changed and it can be run again",
                    });
                }
                store.io_error(op, message)
            }
        }
    }
}

/// Whether a failed operation could have changed the store: what a lost
/// connection means for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// It only reads: a lost connection changed nothing.
    Read,
    /// It writes: a lost connection rolled it back, unless the loss came
    /// while it committed.
    Write,
}

/// What to check when connecting failed with `e`, by its cause.
pub fn connect_hint(e: &postgres::Error) -> &'static str {
    let code = e.code();
    let is = |c: &SqlState| code == Some(c);
    if is(&SqlState::INVALID_CATALOG_NAME) {
        "the database does not exist: create it, or name another in the connection string"
    } else if is(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION) || is(&SqlState::INVALID_PASSWORD)
    {
        "the server refused this user: check the user name and password in the connection \
         string, and the server's pg_hba.conf"
    } else if is(&SqlState::TOO_MANY_CONNECTIONS) {
        "the server has no connection to spare: retry later, or raise its max_connections"
    } else if is(&SqlState::CANNOT_CONNECT_NOW) {
        "the server is starting or shutting down: retry shortly"
    } else if code.is_some() {
        "check the connection string and the server's log"
    } else if is_io(e) {
        "check that the server runs and listens at that host and port"
    } else {
        "check that the server runs and accepts this user, and the connection string"
    }
}

fn is_io(e: &postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The server's message with its SQLSTATE, detail and hint, or the
/// client's error with its causes.
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(d) = db.detail() {
            s.push_str(&format!("; {d}"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!("; hint: {h}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(&format!(": {text}"));
        }
        source = cause.source();
    }
    s
}
