//! Leases with fencing tokens.
//!
//! A milestone's lock is its row in `mstate_locks`; every change of it is
//! made under the milestone row's lock (taken by every write first),
//! so acquisitions, releases and fenced writes of one milestone are
//! serialised. Expiry is judged on the server's clock only.

use std::time::{Duration, SystemTime};

use postgres::{GenericClient, Row, Transaction};
use serde_json::json;

use crate::error::{Error, Result, TokenRefusal};
use crate::id::MilestoneId;
use crate::model::{Actor, Liveness, LockInfo, LockRequest, LockStatus};

use super::events::{append, NO_SESSION};
use super::state::{lock_row, MilestoneRow};
use super::{format_time, Fail, PgStore};

/// A lock as held: what is recorded, its fencing token and when its
/// lease ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub info: LockInfo,
    /// The fencing token: writes under this lease carry it.
    pub token: u64,
    /// When the lease ends (RFC 3339), `None` for a lock without TTL.
    pub expires_at: Option<String>,
}

/// The lock row of a milestone, with whether its lease has expired.
pub(super) struct LockRow {
    pub lease: Lease,
    pub expired: bool,
}

const SELECT_LOCK: &str = "SELECT token, operation, host, pid, pid_start, boot_id, \"user\", \
     acquired_at, ttl_secs, expires_at, \
     (expires_at IS NOT NULL AND expires_at <= clock_timestamp()) AS expired \
     FROM mstate_locks WHERE milestone_id = $1";

pub(super) fn decode(id: &str, row: &Row) -> Result<LockRow, Fail> {
    let token: i64 = row.try_get("token")?;
    let host: String = row.try_get("host")?;
    let user: String = row.try_get("user")?;
    let pid: i64 = row.try_get("pid")?;
    let pid_start: Option<i64> = row.try_get("pid_start")?;
    let acquired: SystemTime = row.try_get("acquired_at")?;
    let expires: Option<SystemTime> = row.try_get("expires_at")?;
    let info = LockInfo {
        id: token.to_string(),
        milestone_id: id.to_string(),
        operation: row.try_get("operation")?,
        who: format!("{user}@{host}"),
        pid: u32::try_from(pid).unwrap_or(0),
        created: format_time(acquired),
        pid_start: pid_start.and_then(|p| u64::try_from(p).ok()),
        boot_id: row.try_get("boot_id")?,
        host: Some(host),
        ttl_secs: row.try_get("ttl_secs")?,
        seed: false,
        pgid: None,
        pgid_start: None,
        boot_clock: None,
        pid_ns: None,
        token: u64::try_from(token).ok(),
    };
    Ok(LockRow {
        lease: Lease {
            info,
            token: u64::try_from(token).unwrap_or(0),
            expires_at: expires.map(format_time),
        },
        expired: row.try_get("expired")?,
    })
}

impl LockRow {
    /// Why the lease protects nothing any more: it expired, or its holder
    /// was a process of this host that is gone (broken at once; a holder
    /// on another host only at expiry). `None` while it holds.
    pub(super) fn stale(&self, actor: &Actor) -> Option<String> {
        if self.expired {
            return Some(format!(
                "lease expired at {}",
                self.lease.expires_at.as_deref().unwrap_or("?")
            ));
        }
        let info = &self.lease.info;
        if info.host.as_deref() != Some(actor.host.as_str()) {
            return None;
        }
        crate::process::gone(info.pid, info.pid_start, info.boot_id.as_deref())
            .map(|why| format!("its holder on this host: {why}"))
    }

    /// Whether the holder is the caller or one of its ancestors on this
    /// host (a shell that took the lock, then runs `mstate save`).
    pub(super) fn held_by_tree_of(&self, actor: &Actor) -> bool {
        let info = &self.lease.info;
        info.host.as_deref() == Some(actor.host.as_str())
            && crate::process::ancestry(actor.pid)
                .iter()
                .any(|(pid, start)| {
                    *pid == info.pid && (info.pid_start.is_none() || *start == info.pid_start)
                })
    }
}

/// The milestone's lock row, if there is one.
pub(super) fn current(
    client: &mut impl GenericClient,
    id: &MilestoneId,
) -> Result<Option<LockRow>, Fail> {
    match client.query_opt(SELECT_LOCK, &[&id.as_str()])? {
        Some(row) => Ok(Some(decode(id.as_str(), &row)?)),
        None => Ok(None),
    }
}

/// May a write of `id` go ahead? Run under the milestone row's lock.
/// With a token, only if it is the milestone's newest and its lease is
/// there and live; without, only while no live lease is held by anyone
/// but the caller's process tree.
pub(super) fn check_write(
    tx: &mut Transaction<'_>,
    actor: &Actor,
    id: &MilestoneId,
    row: &MilestoneRow,
    token: Option<u64>,
) -> Result<(), Fail> {
    let lock = current(tx, id)?;
    let Some(t) = token else {
        return match lock {
            Some(l) if l.stale(actor).is_none() && !l.held_by_tree_of(actor) => {
                Err(Fail::Busy(Some(Box::new(l.lease.info))))
            }
            _ => Ok(()),
        };
    };
    let newest = row.lock_token;
    let refuse = |reason: TokenRefusal| {
        Err(Fail::Store(Error::TokenRefused {
            milestone: id.to_string(),
            token: t,
            reason,
        }))
    };
    if t < newest {
        return refuse(TokenRefusal::Superseded {
            newest,
            holder: lock.map(|l| Box::new(l.lease.info)),
        });
    }
    if t > newest {
        return refuse(TokenRefusal::NeverIssued { newest });
    }
    match lock {
        Some(l) if l.lease.token == t && !l.expired => Ok(()),
        Some(l) if l.lease.token == t => refuse(TokenRefusal::Expired {
            at: l.lease.expires_at.unwrap_or_else(|| "?".into()),
        }),
        _ => refuse(TokenRefusal::Released),
    }
}

impl PgStore {
    /// Take the milestone's lock for `req.owner_pid` of this host, waiting
    /// up to `req.timeout` for a live lease to be released or to expire.
    /// An expired lease is taken over (and `lock_broken` logged). The
    /// lease lasts `req.ttl` (until released when `None`); its token is
    /// greater than every token issued before in this schema.
    pub fn lock_acquire(&self, id: &MilestoneId, req: &LockRequest) -> Result<Lease> {
        let ttl = req.ttl.map(|d| d.as_secs_f64());
        let pid = i64::from(req.owner_pid);
        let pid_start =
            crate::process::start_ticks(req.owner_pid).and_then(|t| i64::try_from(t).ok());
        let boot_id = crate::process::boot_id();
        self.write("take the lock in", id, req.timeout, |tx| {
            let _row = lock_row(tx, id, true)?.ok_or_else(|| not_found(id))?;
            if let Some(old) = current(tx, id)? {
                let Some(reason) = old.stale(&self.actor) else {
                    return Err(Fail::Busy(Some(Box::new(old.lease.info))));
                };
                tx.execute(
                    "DELETE FROM mstate_locks WHERE milestone_id = $1",
                    &[&id.as_str()],
                )?;
                let data = json!({
                    "reason": reason,
                    "token": old.lease.token,
                    "holder": old.lease.info,
                });
                append(tx, &self.actor, id, NO_SESSION, "lock_broken", &data)?;
            }
            let row = tx.query_one(
                "WITH now AS (SELECT clock_timestamp() AS t) \
                 INSERT INTO mstate_locks (milestone_id, token, operation, host, pid, pid_start, \
                     boot_id, \"user\", acquired_at, ttl_secs, expires_at) \
                 SELECT $1, nextval('mstate_lock_token_seq'), $2, $3, $4, $5, $6, $7, now.t, \
                     $8::float8, now.t + $8::float8 * interval '1 second' FROM now \
                 RETURNING token",
                &[
                    &id.as_str(),
                    &req.operation,
                    &self.actor.host,
                    &pid,
                    &pid_start,
                    &boot_id,
                    &self.actor.user(),
                    &ttl,
                ],
            )?;
            let token: i64 = row.try_get(0)?;
            tx.execute(
                "UPDATE mstate_milestones SET lock_token = $2 WHERE id = $1",
                &[&id.as_str(), &token],
            )?;
            current(tx, id)?
                .map(|l| l.lease)
                .ok_or_else(|| Fail::Store(not_found(id)))
        })
    }

    /// Extend the lease of `token` by its TTL from now. Refused (as a
    /// write with that token is) when the token is not the live lease's.
    pub fn lock_renew(&self, id: &MilestoneId, token: u64) -> Result<Lease> {
        self.write("renew the lock in", id, Duration::ZERO, |tx| {
            let row = lock_row(tx, id, false)?.ok_or_else(|| not_found(id))?;
            check_write(tx, &self.actor, id, &row, Some(token))?;
            tx.execute(
                "UPDATE mstate_locks SET expires_at = clock_timestamp() + ttl_secs * interval '1 second' \
                 WHERE milestone_id = $1",
                &[&id.as_str()],
            )?;
            current(tx, id)?
                .map(|l| l.lease)
                .ok_or_else(|| Fail::Store(not_found(id)))
        })
    }

    /// Release the lock: the holder's (the lease of `token`, or without a
    /// token one taken by this process on this host), or with `force`
    /// whoever's (logged as `lock_broken`). Returns the lock released, if
    /// there was one; someone else's lock without `force` is
    /// [`Error::LockNotOwned`].
    pub fn lock_release(
        &self,
        id: &MilestoneId,
        token: Option<u64>,
        force: bool,
    ) -> Result<Option<LockInfo>> {
        self.write("release the lock in", id, Duration::ZERO, |tx| {
            if lock_row(tx, id, false)?.is_none() {
                return Ok(None);
            }
            let Some(lock) = current(tx, id)? else {
                return Ok(None);
            };
            let own = match token {
                Some(t) => lock.lease.token == t,
                None => lock.held_by_tree_of(&self.actor),
            };
            if !own && !force {
                return Err(Fail::Store(Error::LockNotOwned {
                    milestone: id.to_string(),
                    holder: Some(Box::new(lock.lease.info)),
                }));
            }
            tx.execute(
                "DELETE FROM mstate_locks WHERE milestone_id = $1",
                &[&id.as_str()],
            )?;
            super::wait::announce_release(tx, &self.schema, id)?;
            if !own {
                let data = json!({"holder": lock.lease.info, "token": lock.lease.token});
                append(
                    tx,
                    &self.actor,
                    id,
                    NO_SESSION,
                    "lock_force_released",
                    &data,
                )?;
            }
            Ok(Some(lock.lease.info))
        })
    }

    /// The milestone's lock, if any: an expired lease is `Stale`.
    pub fn lock_status(&self, id: &MilestoneId) -> Result<Option<LockStatus>> {
        let lock = self.read("read the lock in", |c| current(c, id))?;
        Ok(lock.map(|l| {
            let held_by_caller = l.lease.info.host.as_deref() == Some(self.actor.host.as_str())
                && l.lease.info.pid == self.actor.pid;
            let liveness = match l.stale(&self.actor) {
                Some(why) => Liveness::Stale(why),
                None => Liveness::Held,
            };
            LockStatus {
                milestone_id: id.to_string(),
                info: l.lease.info,
                liveness,
                held_by_caller,
            }
        }))
    }
}

fn not_found(id: &MilestoneId) -> Error {
    Error::not_found(crate::error::ObjectKind::Milestone, id.as_str())
}
