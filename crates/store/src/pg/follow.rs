//! `events --follow` in PostgreSQL: woken by `NOTIFY`, reading by seq.
//!
//! A follower opens a connection of its own and `LISTEN`s on the store's
//! channel (see [`super::schema`], version 2) before it reads anything.
//! It then reads the newest seq, runs the query up to that seq, and from
//! then on, each time a notification names its milestone, reads the
//! events after the last seq it covered up to the newest: no event is
//! missed or shown twice, whatever the notifications. Notifications sent
//! while the listening connection was down are lost, so after a
//! reconnect it catches up by seq the same way. A connection lost while
//! it reads (a server restart) is handled as a lost listener: it listens
//! again, trying at most [`MAX_RECONNECT_PAUSE`] apart for as long as it
//! runs, then goes on after the last event it handed over (for a read
//! with `tail` or `reverse`, a loss before the first catch-up ends it
//! with the error). Between notifications it sleeps in the wait for one,
//! waking only to check `stop`.

use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;

use crate::error::{Error, Result};
use crate::id::MilestoneId;
use crate::model::EventRecord;
use crate::model::{EventQuery, ReadReport};

use super::events::SeqRange;
use super::migrate::quote_ident;
use super::PgStore;

/// How often a follower waiting for a notification checks `stop`.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// First pause after a failed try to reconnect the listener; each
/// further one doubles it, up to [`MAX_RECONNECT_PAUSE`].
const FIRST_RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// Longest pause between two tries to reconnect the listener: a server
/// back from a restart is seen within about this long.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(1);

impl PgStore {
    /// The channel appends of this store notify.
    fn channel(&self) -> String {
        format!("mstate_events:{}", self.schema)
    }

    /// A new connection listening on the store's channel.
    fn listener(&self) -> Result<Client> {
        let mut client = self.open_connection()?;
        client
            .batch_execute(&format!("LISTEN {}", quote_ident(&self.channel())))
            .map_err(|e| {
                super::Fail::Db(e).into_error(
                    self,
                    "listen for events in",
                    super::fail::Effect::Read,
                )
            })?;
        Ok(client)
    }

    /// The newest seq of `id` (0 before its first event); a failure says
    /// whether the connection was lost (or could not be made).
    fn newest_seq(&self, id: &MilestoneId) -> std::result::Result<u64, (Error, bool)> {
        self.read_lost("read the newest event of", |c| {
            let row = c.query_opt(
                "SELECT next_seq - 1 FROM mstate_milestones WHERE id = $1",
                &[&id.as_str()],
            )?;
            let n: i64 = match row {
                Some(r) => r.try_get(0)?,
                None => 0,
            };
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    pub(super) fn follow_events(
        &self,
        id: &MilestoneId,
        q: &EventQuery,
        stop: &dyn Fn() -> bool,
        sink: &mut dyn FnMut(&EventRecord) -> Result<bool>,
    ) -> Result<ReadReport> {
        let mut listener = Some(self.listener()?);
        let mut covered = self.newest_seq(id).map_err(|(e, _)| e)?;
        let mut handed = 0usize;
        let mut more = true;
        let mut counting = |line: &EventRecord| -> Result<bool> {
            handed += 1;
            let go_on = sink(line)?;
            Ok(go_on && q.limit.is_none_or(|l| handed < l))
        };
        let mut last = None;
        let first = self.query_events_lost(
            id,
            q,
            SeqRange {
                after: None,
                upto: Some(covered),
            },
            &mut |line| {
                last = Some(line.seq);
                more = counting(line)?;
                Ok(more)
            },
        );
        match first {
            Ok(_) => {}
            // Events in seq order, every one up to `last` handed over:
            // the rest come with the catch-up after the reconnect. (A
            // tail or a reversed read cannot be resumed so.)
            Err((_, true)) if q.tail.is_none() && !q.reverse => {
                covered = last.unwrap_or(0);
                listener = None;
            }
            Err((e, _)) => return Err(e),
        }
        // What comes next is new: no tail, no reversal, the limit counted
        // across both parts.
        let later = EventQuery {
            tail: None,
            reverse: false,
            limit: None,
            ..q.clone()
        };
        let mut pause = FIRST_RECONNECT_PAUSE;
        while more && !stop() {
            let Some(conn) = listener.as_mut() else {
                if let Ok(c) = self.listener() {
                    listener = Some(c);
                    // Reconnected: notifications may have been lost.
                    match self.catch_up(id, &later, &mut covered, &mut |line| {
                        more = counting(line)?;
                        Ok(more)
                    }) {
                        Ok(()) => {
                            pause = FIRST_RECONNECT_PAUSE;
                            continue;
                        }
                        Err((_, true)) => listener = None,
                        Err((e, false)) => return Err(e),
                    }
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
                continue;
            };
            let mut wake = false;
            let mut lost = false;
            {
                let mut notes = conn.notifications();
                match notes.timeout_iter(STOP_CHECK).next() {
                    Ok(Some(n)) => wake |= names(n.payload(), id),
                    Err(_) => lost = true,
                    Ok(None) => {}
                }
                // Drain what else arrived, without waiting.
                let mut rest = notes.iter();
                loop {
                    match rest.next() {
                        Ok(Some(n)) => wake |= names(n.payload(), id),
                        Err(_) => {
                            lost = true;
                            break;
                        }
                        Ok(None) => break,
                    }
                }
            }
            if lost || conn.is_closed() {
                listener = None;
                continue;
            }
            if wake {
                match self.catch_up(id, &later, &mut covered, &mut |line| {
                    more = counting(line)?;
                    Ok(more)
                }) {
                    Ok(()) => {}
                    // The server went away while it was read (a restart):
                    // listen again, then catch up from what was handed.
                    Err((_, true)) => listener = None,
                    Err((e, false)) => return Err(e),
                }
            }
        }
        Ok(ReadReport::default())
    }

    /// Hand over the events after `covered` up to the newest, and move
    /// `covered` to the last one handed over. A failure says whether the
    /// connection was lost (or could not be made).
    fn catch_up(
        &self,
        id: &MilestoneId,
        q: &EventQuery,
        covered: &mut u64,
        sink: &mut dyn FnMut(&EventRecord) -> Result<bool>,
    ) -> std::result::Result<(), (Error, bool)> {
        let newest = self.newest_seq(id)?;
        if newest <= *covered {
            return Ok(());
        }
        let mut last = *covered;
        let result = self.query_events_lost(
            id,
            q,
            SeqRange {
                after: Some(*covered),
                upto: Some(newest),
            },
            &mut |line| {
                last = line.seq;
                sink(line)
            },
        );
        // Every event up to `newest` was seen, or up to the last handed
        // over: a sink that stopped early leaves the rest for nobody (the
        // follower ends), a lost connection for the next catch-up.
        *covered = if result.is_ok() { newest } else { last };
        result.map(|_| ())
    }
}

/// Whether a notification's payload (`<seq> <milestone id>`) is about `id`.
fn names(payload: &str, id: &MilestoneId) -> bool {
    payload
        .split_once(' ')
        .is_some_and(|(_, m)| m == id.as_str())
}
