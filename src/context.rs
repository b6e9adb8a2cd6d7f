//! Opening the store from the global options and the environment.

use std::path::PathBuf;
use std::time::Duration;

use mstate_store::{Location, Store, StoreOptions, WriteOptions};

use crate::cli::{GlobalArgs, Setting};
use crate::exit::{CliError, CliResult};

/// What every command needs: the store and the global options.
pub struct Context {
    pub store: Box<dyn Store>,
    pub global: GlobalArgs,
    /// `--lock-timeout`, checked.
    lock_timeout: Duration,
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
        })
    }

    /// The lock timeout from `--lock-timeout` (or `MSTATE_LOCK_TIMEOUT`).
    pub fn lock_timeout(&self) -> CliResult<Duration> {
        Ok(self.lock_timeout)
    }

    /// Write options with the global lock timeout.
    pub fn write_options(&self, expect_revision: Option<u64>) -> CliResult<WriteOptions> {
        Ok(WriteOptions {
            expect_revision,
            lock_timeout: self.lock_timeout()?,
            lock_token: None,
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
