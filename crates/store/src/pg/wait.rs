//! Waiting for a lock held by someone else: woken by its release.
//!
//! Every release of a lease (`lock release`, the end of `lock run`, a
//! stale lease cleared) sends `NOTIFY` on the channel `mstate_locks:<schema>`
//! with the milestone's id, at its commit. A write that found the lock
//! held `LISTEN`s on that channel on its own connection and waits for a
//! notification naming its milestone, so a queue of waiters hands the
//! lock on within a round trip instead of a polling interval. It still
//! wakes after `pause` without one: a holder that died or whose lease ran
//! out sends nothing, and only a new try can judge it stale.

use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, GenericClient};

use crate::id::MilestoneId;

use super::migrate::quote_ident;
use super::{Fail, PgStore};

/// The channel releases of locks in `schema` notify.
fn channel(schema: &str) -> String {
    format!("mstate_locks:{schema}")
}

/// Announce, at the commit of `tx`, that `id`'s lock was released.
pub(super) fn announce_release(
    tx: &mut impl GenericClient,
    schema: &str,
    id: &MilestoneId,
) -> Result<(), Fail> {
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&channel(schema), &id.as_str()],
    )?;
    Ok(())
}

/// A write's state of waiting for a lock.
#[derive(Debug, Default)]
pub(super) struct Waiter {
    /// Whether the store's connection `LISTEN`s on the channel.
    listening: bool,
}

impl Waiter {
    /// Wait until `id`'s lock is announced released, or `pause` passed.
    /// The first call only starts listening and returns at once: a
    /// release between the try that found the lock held and the `LISTEN`
    /// would not be announced to this connection, so the caller tries
    /// again, and from then on no release is missed.
    pub fn wait(&mut self, store: &PgStore, id: &MilestoneId, pause: Duration) {
        let mut guard = store.connection();
        let Some(client) = guard.as_mut().filter(|c| !c.is_closed()) else {
            self.listening = false;
            std::thread::sleep(pause);
            return;
        };
        if !self.listening {
            let listen = format!("LISTEN {}", quote_ident(&channel(&store.schema)));
            match client.batch_execute(&listen) {
                Ok(()) => self.listening = true,
                Err(_) => std::thread::sleep(pause),
            }
            return;
        }
        if !released(client, id, pause) {
            // The connection failed: the next try replaces it.
            self.listening = false;
        }
    }

    /// The store's connection was replaced: the new one does not listen.
    pub fn connection_lost(&mut self) {
        self.listening = false;
    }

    /// Stop listening, and drop the notifications that came meanwhile,
    /// so a long-lived store does not gather them.
    pub fn finish(self, store: &PgStore) {
        if !self.listening {
            return;
        }
        let mut guard = store.connection();
        if let Some(client) = guard.as_mut().filter(|c| !c.is_closed()) {
            let unlisten = format!("UNLISTEN {}", quote_ident(&channel(&store.schema)));
            if client.batch_execute(&unlisten).is_ok() {
                let mut notes = client.notifications();
                let mut pending = notes.iter();
                while let Ok(Some(_)) = pending.next() {}
            }
        }
    }
}

/// Wait on `client` up to `pause` for a notification naming `id`. False
/// when the connection failed.
fn released(client: &mut Client, id: &MilestoneId, pause: Duration) -> bool {
    let deadline = Instant::now() + pause;
    let mut notes = client.notifications();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        match notes.timeout_iter(left).next() {
            Ok(Some(n)) if n.payload() == id.as_str() => return true,
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}
