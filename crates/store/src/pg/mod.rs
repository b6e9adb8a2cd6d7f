//! A PostgreSQL backend: one milestone store shared by agents on many
//! machines.
//!
//! [`PgStore`] implements every part of the store API ([`crate::Store`];
//! `api.rs`), over the schema and its migrations (`schema.rs`,
//! `migrate.rs`): state (`state.rs`), edits, recovery, checkpoints and
//! cleanup (`backups.rs`), events (`events.rs`, `follow.rs`), leases
//! (`lock.rs`), sessions (`session.rs`), moving a store (`transfer.rs`),
//! TLS (`tls.rs`). The behaviour suite (`tests/contract.rs`) runs on it
//! and on the file store alike.
//!
//! # Threads and async front ends
//!
//! The client is the synchronous `postgres` crate, which drives its own
//! runtime: it must not be called from a thread running a tokio runtime
//! (it panics there). An async front end (the MCP server) calls the store
//! from `tokio::task::spawn_blocking`, or from a thread of its own, as it
//! would any blocking I/O; the file store is used the same way, so both
//! backends serve it through the one trait.
//!
//! # Schema
//!
//! Every object lives in one schema of the caller's choosing (default
//! [`DEFAULT_SCHEMA`]; see [`migrate::check_schema_name`]), reached through
//! the connection's `search_path`, and every table name starts with
//! `mstate_`. [`schema`] lists the tables: `mstate_milestones` (one row per
//! milestone: status, revision, the state as saved and as `jsonb`, the
//! event counter, the newest fencing token), `mstate_revisions` (earlier
//! states), `mstate_checkpoints`, `mstate_events`, `mstate_locks` (leases)
//! and `mstate_sessions`. `mstate_schema_version` records the migrations
//! applied; [`PgStore::connect`] applies those missing (see [`migrate`]).
//!
//! # Concurrency
//!
//! Every write is one transaction at READ COMMITTED that first locks the
//! milestone's row (`SELECT ... FOR NO KEY UPDATE`, after an
//! `INSERT ... ON CONFLICT DO NOTHING` so the row exists): writers of one
//! milestone serialise on that row, writers of different milestones do not
//! meet, and inserts into the child tables (which take `KEY SHARE` locks
//! for their foreign keys) are not blocked by it. A transaction that fails
//! on `serialization_failure` or `deadlock_detected` is re-run whole, a
//! few times ([`MAX_TX_RETRIES`]); any other failure, a lost connection
//! included, rolls the transaction back and is reported. Reads that fail
//! because the connection was lost are retried once on a new connection;
//! a write is not (it may have committed just before the loss); the next
//! call connects again.
//!
//! - **Revisions.** A save checks `expect_revision` against the locked
//!   row, moves the current state to `mstate_revisions`, writes the new
//!   one with `revision + 1` and logs `state_saved`, all in its
//!   transaction: a state and its event are committed together.
//! - **Gapless event seq.** An append is one statement: an upsert of the
//!   milestone row that increments `next_seq` and returns the old value,
//!   feeding the insert of the event (see [`events`]). Concurrent
//!   appenders of a milestone queue on the row's lock; a failed or rolled
//!   back append rolls its increment back with it, so seqs are 1, 2, ...
//!   with neither gaps nor duplicates, in commit order. The timestamp is
//!   the server's clock, read after the row lock is taken, so timestamps
//!   follow seq order across machines whose clocks disagree.
//! - **Leases.** A lock is a row of `mstate_locks` with an expiry on the
//!   server's clock (`ttl`; none means until released). A live lease
//!   makes every write without its token wait (polling, up to the write's
//!   `lock_timeout`), then fail with [`Error::LockTimeout`]. An expired
//!   lease is taken over by the next acquirer, which logs `lock_broken`.
//! - **Fencing tokens.** Each acquisition draws a token from the sequence
//!   `mstate_lock_token_seq` (increasing across the schema, never reused)
//!   and stores it as the milestone's `lock_token`. A write made under a
//!   lease carries its token; it is refused unless the token is the
//!   milestone's newest and its lease is still there and live, so a
//!   holder that stalled past its lease cannot overwrite the work of the
//!   one that took over. The CLI passes it as `--lock-token` /
//!   `MSTATE_LOCK_TOKEN`. A write without a token waits for a live lease
//!   unless the lease's holder is the writer or one of its ancestors on
//!   this host (a shell that took the lock runs `mstate save`); a lease
//!   whose holder on this host is gone is no lease.
//! - **Follow.** Every event insert `NOTIFY`s the channel
//!   `mstate_events:<schema>` (a trigger; hence the 40-byte limit on
//!   schema names: channel names are identifiers of at most 63 bytes)
//!   with the payload `<seq> <milestone id>`, sent at commit; a follower
//!   `LISTEN`s, then reads from the last seq it covered, so a notification
//!   lost while it reconnects costs only latency (see `follow.rs`).

mod api;
mod backups;
pub mod events;
mod fail;
mod follow;
pub mod lock;
pub mod migrate;
pub mod schema;
mod session;
mod state;
mod tls;
mod transfer;
mod wait;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use postgres::{Client, Config, NoTls, Transaction};

use crate::error::{Error, Result};
use crate::id::MilestoneId;
use crate::model::Actor;
use crate::store::StoreOptions;

use self::fail::Effect;
pub use self::fail::Fail;
pub use self::lock::Lease;

/// The schema used when none is given.
pub const DEFAULT_SCHEMA: &str = "mstate";

/// How many times a write transaction that failed on a serialization
/// failure or a deadlock is re-run before the failure is reported.
pub const MAX_TX_RETRIES: u32 = 5;

/// Connect timeout used when the connection string sets none.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest pause between two tries of a lock held by someone else (a
/// release wakes a waiter before; the pause bounds how late a dead or
/// expired holder is noticed).
const MAX_LOCK_PAUSE: Duration = Duration::from_millis(200);

/// A milestone store in a PostgreSQL schema.
///
/// It holds one connection, used by one operation at a time; threads that
/// want to work in parallel open a store each.
pub struct PgStore {
    config: Config,
    /// The TLS connector `sslmode` asks for (`None`: plain connections).
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    schema: String,
    /// Where the store is, for messages: host, database and schema (never
    /// the password).
    place: String,
    actor: Actor,
    /// Backups kept, the session events name by default, the lock wait of
    /// operations that take no write options.
    opts: StoreOptions,
    /// Whether the schema is known to be at the version this code writes
    /// (checked once: a store is migrated by its first write).
    ready: AtomicBool,
    conn: Mutex<Option<Client>>,
    /// Warnings of operations since the last [`crate::Store::take_warnings`].
    warnings: Mutex<Vec<String>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("place", &self.place)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connect to the database at `url` (a `postgresql://` URL or a
    /// `host=... dbname=...` string), with the store's objects in
    /// `schema`, creating or migrating the schema as needed.
    pub fn connect(url: &str, schema: &str) -> Result<PgStore> {
        PgStore::connect_as(url, schema, Actor::current())
    }

    /// [`PgStore::connect`], recording `actor` as who acts (in events,
    /// locks and sessions).
    pub fn connect_as(url: &str, schema: &str, actor: Actor) -> Result<PgStore> {
        let store = PgStore::open(
            url,
            schema,
            StoreOptions {
                actor,
                ..StoreOptions::default()
            },
        )?;
        store.ensure_schema()?;
        Ok(store)
    }

    /// Open the store in `schema` of the database at `url`, connecting
    /// once to check it: a server that cannot be reached, refused
    /// authentication or a schema of a newer version than this code
    /// knows fail here. A schema at an older version is migrated; a
    /// missing one is created by the first write (reads of a store that
    /// does not exist create nothing).
    pub fn open(url: &str, schema: &str, opts: StoreOptions) -> Result<PgStore> {
        migrate::check_schema_name(schema)?;
        const FORM: &str =
            "use postgresql://user@host:port/dbname or \"host=... user=... dbname=...\"";
        let ssl = tls::split(url)?;
        let mut config: Config = ssl.rest.parse().map_err(|e: postgres::Error| {
            Error::invalid(
                "PostgreSQL connection string",
                format!("{}; {FORM}", fail::describe(&e)),
            )
        })?;
        // The client has no default host (libpq's is a local socket):
        // without one, connecting could only fail, with a vaguer message.
        if config.get_hosts().is_empty() {
            return Err(Error::invalid(
                "PostgreSQL connection string",
                format!("it names no server host; {FORM}"),
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("mstate");
        }
        config.ssl_mode(ssl.mode.client_mode());
        let tls = tls::connector(ssl.mode, ssl.root_cert.as_deref())?;
        let place = describe_place(&config, schema);
        let store = PgStore {
            config,
            tls,
            schema: schema.to_string(),
            place,
            actor: opts.actor.clone(),
            opts,
            ready: AtomicBool::new(false),
            conn: Mutex::new(None),
            warnings: Mutex::new(Vec::new()),
        };
        let version = store.read("read the schema version of", migrate::current_version)?;
        let latest = schema::latest_version();
        if version > latest {
            return Err(Error::invalid(
                "database schema",
                format!(
                    "{} is at version {version}, newer than this mstate knows ({latest}); use a newer mstate",
                    store.place
                ),
            ));
        }
        store.note_version(version)?;
        Ok(store)
    }

    /// Create or migrate the schema unless it is known to be current.
    /// Safe when several processes do it at once (see [`migrate`]).
    pub(crate) fn ensure_schema(&self) -> Result<()> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        self.with_client("migrate", |c| {
            migrate::migrate(c, &self.schema)?;
            Ok(())
        })?;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether the store's schema exists (migrating it if it is old).
    pub(crate) fn has_schema(&self) -> Result<bool> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(true);
        }
        let version = self.read("read the schema version of", migrate::current_version)?;
        if version == 0 {
            return Ok(false);
        }
        self.note_version(version)?;
        Ok(true)
    }

    /// Act on the schema version just read: a current schema is ready as
    /// it is (no migration transactions, whose DDL and advisory lock every
    /// command would otherwise pay, and which a read could not retry); an
    /// older one is migrated; a missing one (0) is left to the first write.
    fn note_version(&self, version: i32) -> Result<()> {
        if version == schema::latest_version() {
            self.ready.store(true, Ordering::Release);
        } else if version > 0 {
            self.ensure_schema()?;
        }
        Ok(())
    }

    /// The schema the store lives in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Who the store records as acting.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The schema's version (the newest migration applied).
    pub fn schema_version(&self) -> Result<i32> {
        self.read("read the schema version of", |c| {
            migrate::current_version(c)
        })
    }

    /// The server process of the current connection (connecting if there
    /// is none): what `pg_terminate_backend` takes.
    pub fn backend_pid(&self) -> Result<i32> {
        self.read("ask the server process of", |c| {
            Ok(c.query_one("SELECT pg_backend_pid()", &[])?.try_get(0)?)
        })
    }

    /// Run `f` on the connection, connecting first if there is none or it
    /// was lost. Errors are mapped for `op`.
    fn with_client<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Client) -> Result<T, Fail>,
    ) -> Result<T> {
        self.with_client_lost(op, Effect::Write, f)
            .map_err(|(e, _)| e)
    }

    /// [`PgStore::with_client`], also saying whether the connection was
    /// lost in the failure.
    fn with_client_lost<T>(
        &self,
        op: &'static str,
        effect: Effect,
        f: impl FnOnce(&mut Client) -> Result<T, Fail>,
    ) -> std::result::Result<T, (Error, bool)> {
        let mut guard = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = None;
            *guard = Some(self.open_connection().map_err(|e| (e, true))?);
        }
        let Some(client) = guard.as_mut() else {
            return Err((self.io_error(op, "no connection".into()), true));
        };
        match f(client) {
            Ok(v) => Ok(v),
            Err(fail) => {
                let lost = client.is_closed() || fail.is_connection_loss();
                if lost {
                    *guard = None;
                }
                Err((fail.into_error(self, op, effect), lost))
            }
        }
    }

    fn open_connection(&self) -> Result<Client> {
        let connected = match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        };
        let mut client = connected.map_err(|e| {
            self.io_error(
                "connect to",
                format!("{}; {}", fail::describe(&e), fail::connect_hint(&e)),
            )
        })?;
        // The schema alone: every name the store uses resolves there
        // (pg_catalog is searched first anyway, temporary objects never).
        client
            .execute(
                "SELECT set_config('search_path', $1, false)",
                &[&migrate::quote_ident(&self.schema)],
            )
            .map_err(|e| {
                Fail::Db(e).into_error(self, "configure the connection to", Effect::Read)
            })?;
        Ok(client)
    }

    /// A read: retried once on a new connection if the connection was
    /// lost (a read has no effect to repeat).
    fn read<T>(
        &self,
        op: &'static str,
        f: impl FnMut(&mut Client) -> Result<T, Fail>,
    ) -> Result<T> {
        self.read_lost(op, f).map_err(|(e, _)| e)
    }

    /// [`PgStore::read`], also saying whether the failure was a lost
    /// connection (or one that could not be made).
    fn read_lost<T>(
        &self,
        op: &'static str,
        mut f: impl FnMut(&mut Client) -> Result<T, Fail>,
    ) -> std::result::Result<T, (Error, bool)> {
        match self.with_client_lost(op, Effect::Read, &mut f) {
            Ok(v) => Ok(v),
            Err((_, true)) => self.with_client_lost(op, Effect::Read, f),
            Err(e) => Err(e),
        }
    }

    /// A write: `body` runs in a transaction, which is committed if it
    /// returns `Ok`. Re-run whole on a serialization failure or deadlock
    /// (at most [`MAX_TX_RETRIES`] times), and after a pause while the
    /// milestone's lock is held by someone else ([`Fail::Busy`]), until
    /// `timeout`. A connection found dead at `BEGIN` is replaced and the
    /// transaction run again; one lost later fails the write (it may have
    /// committed if the loss came during `COMMIT`).
    fn write<T>(
        &self,
        op: &'static str,
        id: &MilestoneId,
        timeout: Duration,
        mut body: impl FnMut(&mut Transaction<'_>) -> Result<T, Fail>,
    ) -> Result<T> {
        self.ensure_schema()?;
        let start = Instant::now();
        let mut retries = 0;
        let mut reconnected = false;
        let mut pause = Duration::from_millis(5);
        let mut waiter = wait::Waiter::default();
        let result = loop {
            let outcome = {
                let mut guard = self.connection();
                if guard.as_ref().is_none_or(|c| c.is_closed()) {
                    *guard = None;
                    waiter.connection_lost();
                    *guard = Some(self.open_connection()?);
                }
                let Some(client) = guard.as_mut() else {
                    return Err(self.io_error(op, "no connection".into()));
                };
                let outcome = run_transaction(client, &mut body);
                let lost = match &outcome {
                    Err((fail, _)) => client.is_closed() || fail.is_connection_loss(),
                    Ok(_) => client.is_closed(),
                };
                if lost {
                    *guard = None;
                    waiter.connection_lost();
                }
                outcome.map_err(|(fail, at_begin)| (fail, at_begin && lost))
            };
            match outcome {
                Ok(v) => break Ok(v),
                // The connection was found dead before anything was sent
                // (it died while idle): nothing can have been done, so the
                // transaction is run on a new connection, once.
                Err((_, true)) if !reconnected => reconnected = true,
                Err((Fail::Busy(holder), _)) => {
                    let waited = start.elapsed();
                    if waited >= timeout {
                        break Err(Error::LockTimeout {
                            milestone: id.to_string(),
                            waited,
                            holder,
                        });
                    }
                    waiter.wait(self, id, pause.min(timeout - waited));
                    pause = (pause * 2).min(MAX_LOCK_PAUSE);
                }
                Err((fail, _)) if fail.is_retryable() && retries < MAX_TX_RETRIES => retries += 1,
                Err((fail, _)) => break Err(fail.into_error(self, op, Effect::Write)),
            }
        };
        waiter.finish(self);
        result
    }

    /// The store's connection (`None` until opened, or after it was lost).
    fn connection(&self) -> std::sync::MutexGuard<'_, Option<Client>> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An [`Error::Io`] about this store.
    fn io_error(&self, op: &'static str, message: String) -> Error {
        Error::Io {
            op,
            path: PathBuf::from(&self.place),
            source: std::io::Error::other(message),
        }
    }
}

/// Run `body` in a transaction and commit it. A failure says whether it
/// came at `BEGIN`, before anything of the transaction reached the server.
fn run_transaction<T>(
    client: &mut Client,
    body: &mut impl FnMut(&mut Transaction<'_>) -> Result<T, Fail>,
) -> Result<T, (Fail, bool)> {
    let mut tx = client.transaction().map_err(|e| (Fail::Db(e), true))?;
    let value = body(&mut tx).map_err(|f| (f, false))?;
    tx.commit().map_err(|e| (Fail::Db(e), false))?;
    Ok(value)
}

/// `PostgreSQL database 'test' on 127.0.0.1:5432, schema 'mstate'`.
fn describe_place(config: &Config, schema: &str) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let host = if hosts.is_empty() {
        "localhost".to_string()
    } else {
        hosts.join(",")
    };
    let port = match config.get_ports() {
        [] => String::new(),
        ports => format!(
            ":{}",
            ports
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("PostgreSQL database '{db}' on {host}{port}, schema '{schema}'")
}

/// A stored time as mstate writes times (RFC 3339, microseconds, UTC).
fn format_time(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => crate::time::format_micros(ts),
        // Outside jiff's range (year ±9999): only a hand-edited row.
        Err(_) => humanish(t),
    }
}

fn humanish(t: SystemTime) -> String {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => format!("{}s after the epoch", d.as_secs()),
        Err(e) => format!("{}s before the epoch", e.duration().as_secs()),
    }
}
