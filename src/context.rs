//! Opening the store from the global options and the environment.

use std::path::PathBuf;
use std::time::Duration;

use mstate_store::{Location, MilestoneId, Store, StoreOptions, WriteOptions};

use crate::cli::{GlobalArgs, Setting};
use crate::exit::{CliError, CliResult};

/// What every command needs: the store and the global options.
pub struct Context {
    pub store: Box<dyn Store>,
    pub global: GlobalArgs,
    /// `--lock-timeout`, checked.
    lock_timeout: Duration,
    /// `--lock-token` (or `MSTATE_LOCK_TOKEN`), checked: a bad value of
    /// the variable is the message of the writes' usage error.
    lock_token: Result<Option<LockToken>, String>,
}

/// The variable that sets `--lock-token`; `lock run` sets it for its command.
pub const LOCK_TOKEN_ENV: &str = "MSTATE_LOCK_TOKEN";

/// The milestone whose lock `MSTATE_LOCK_TOKEN` is of (`lock run` sets it
/// too): the token then goes with writes of that milestone only, so a
/// command run under one milestone's lock can still write another.
pub const LOCK_MILESTONE_ENV: &str = "MSTATE_LOCK_MILESTONE";

/// A fencing token for writes, and the milestone it is limited to.
#[derive(Debug, Clone)]
struct LockToken {
    token: u64,
    milestone: Option<String>,
}

impl Context {
    /// Find and open the store.
    pub fn open(global: GlobalArgs) -> CliResult<Self> {
        let cwd = std::env::current_dir()
            .map_err(|e| CliError::Other(format!("cannot read the working directory: {e}")))?;
        let base = match &global.chdir {
            Some(dir) => cwd.join(dir),
            None => cwd,
        };
        if !base.is_dir() {
            return Err(CliError::Invalid(format!(
                "-C {}: not a directory",
                base.display()
            )));
        }
        let location = locate(&global, &base)?;
        let session = std::env::var("MSTATE_SESSION")
            .ok()
            .filter(|s| !s.is_empty());
        let (lock_timeout, max_backups) = settings(&global)?;
        let lock_token = lock_token(&global);
        if let (Err(message), Some(_)) = (&lock_token, &global.lock_token) {
            // The flag is checked whatever the command.
            return Err(usage(message.clone()));
        }
        let opts = StoreOptions {
            max_backups,
            session,
            lock_timeout,
            ..StoreOptions::default()
        };
        let store = mstate_store::open(&location, opts)?;
        Ok(Context {
            store,
            global,
            lock_timeout,
            lock_token,
        })
    }

    /// The lock timeout from `--lock-timeout` (or `MSTATE_LOCK_TIMEOUT`).
    pub fn lock_timeout(&self) -> CliResult<Duration> {
        Ok(self.lock_timeout)
    }

    /// Write options of a write of `id`, with the global lock timeout and
    /// the fencing token that goes with writes of `id`.
    pub fn write_options(
        &self,
        id: &MilestoneId,
        expect_revision: Option<u64>,
    ) -> CliResult<WriteOptions> {
        let lock_token = self
            .lock_token
            .as_ref()
            .map_err(|message| usage(message.clone()))?
            .as_ref()
            .filter(|t| t.milestone.as_deref().is_none_or(|m| m == id.as_str()))
            .map(|t| t.token);
        Ok(WriteOptions {
            expect_revision,
            lock_timeout: self.lock_timeout()?,
            lock_token,
        })
    }
}

/// Where the store is: `--store`, else `MSTATE_STORE`, else the
/// directory found from `base` (`-C DIR` wins over a directory named by
/// the environment, `MSTATE_STORE` or `MSTATE_DIR`: it runs as if
/// started in DIR; a URL in `MSTATE_STORE` holds under `-C`).
fn locate(global: &GlobalArgs, base: &std::path::Path) -> CliResult<Location> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(text) = &global.store {
        return Location::parse(text, base)
            .map_err(|e| CliError::Invalid(format!("--store {text:?}: {e}")));
    }
    if let Some(var) = env("MSTATE_STORE") {
        let text = var.to_str().ok_or_else(|| {
            CliError::Invalid(
                "MSTATE_STORE is not valid UTF-8; give a postgres:// URL or a directory".into(),
            )
        })?;
        let location = Location::parse(text, base)
            .map_err(|e| CliError::Invalid(format!("MSTATE_STORE={text:?}: {e}")))?;
        if matches!(location, Location::Postgres { .. }) || global.chdir.is_none() {
            return Ok(location);
        }
    }
    let env_dir = env("MSTATE_DIR")
        .filter(|_| global.chdir.is_none())
        .map(PathBuf::from);
    Ok(Location::discover(base, env_dir.as_deref()))
}

/// `--lock-timeout` and `--max-backups`, checked: a bad value is an
/// error even where the command makes no use of it.
pub fn settings(global: &GlobalArgs) -> CliResult<(Duration, usize)> {
    let lock_timeout = parse_setting(&global.lock_timeout, "--lock-timeout")?;
    let max_backups = global
        .max_backups
        .value
        .trim()
        .parse::<usize>()
        .map_err(|_| {
            CliError::Invalid(format!(
                "{}: expected a whole number of backups to keep, e.g. 50",
                global.max_backups.named("--max-backups")
            ))
        })?;
    Ok((lock_timeout, max_backups))
}

/// `--lock-token`, else `MSTATE_LOCK_TOKEN` (limited to the milestone of
/// `MSTATE_LOCK_MILESTONE` when that is set); the message of a value that
/// is not a token. A bad flag fails any command, a bad variable only the
/// writes (as other variables fail only the commands that use them).
fn lock_token(global: &GlobalArgs) -> Result<Option<LockToken>, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (value, named, milestone) = match &global.lock_token {
        Some(v) => (v.clone(), format!("--lock-token {v:?}"), None),
        None => match var(LOCK_TOKEN_ENV) {
            Some(v) => (
                v.clone(),
                format!("{LOCK_TOKEN_ENV}={v:?}"),
                var(LOCK_MILESTONE_ENV),
            ),
            None => return Ok(None),
        },
    };
    let token = value.trim().parse::<u64>().map_err(|_| {
        format!(
            "{named}: not a lock token; expected the whole number `mstate lock acquire` printed, \
             e.g. --lock-token 12"
        )
    })?;
    Ok(Some(LockToken { token, milestone }))
}

/// A usage error without a usage line.
fn usage(message: String) -> CliError {
    CliError::Usage {
        message,
        usage: None,
    }
}

/// Parse a number of seconds (or a duration such as `500ms`, `2m`).
pub fn parse_secs(s: &str, flag: &str) -> CliResult<Duration> {
    mstate_store::time::parse_duration(s)
        .map_err(|e| CliError::Invalid(format!("{flag} {s:?}: {e}")))
}

/// Parse a lock's TTL: a duration, as [`parse_secs`], that is more than
/// zero (a lock that may be broken at once protects nothing).
pub fn parse_ttl(s: &str, flag: &str) -> CliResult<Duration> {
    let ttl = parse_secs(s, flag)?;
    if ttl.is_zero() {
        return Err(CliError::Invalid(format!(
            "{flag} {s:?}: the TTL must be positive, e.g. 30s or 10m (leave {flag} out for a lock \
             that lasts while its holder lives)"
        )));
    }
    Ok(ttl)
}

/// Parse a duration setting, naming where it came from when it is bad
/// (`MSTATE_LOCK_TIMEOUT="abc": ...`).
fn parse_setting(setting: &Setting, flag: &str) -> CliResult<Duration> {
    mstate_store::time::parse_duration(&setting.value)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", setting.named(flag))))
}
