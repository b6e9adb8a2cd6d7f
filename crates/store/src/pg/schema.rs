//! The PostgreSQL schema, as numbered migrations.
//!
//! Migration `n` takes a schema at version `n - 1` to version `n`. Each is
//! applied in its own transaction by [`super::migrate`], so a schema is
//! always at exactly one version; a migration once released is never
//! edited (a change is a new migration). Every statement names objects
//! unqualified: the migrating connection's `search_path` is the target
//! schema alone.
//!
//! Every table name starts with `mstate_`, so the store can share a schema
//! (even `public`) with other applications' tables.

/// One migration: its version and its SQL (several statements).
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The schema version this migration brings the schema to.
    pub version: i32,
    /// What it does, recorded in `mstate_schema_version`.
    pub description: &'static str,
    /// The statements, run as one batch inside the migration's transaction.
    pub sql: &'static str,
}

/// Every migration, oldest first; versions are 1, 2, ... without gaps.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "milestones, revisions, checkpoints, events, locks, sessions",
        sql: V1,
    },
    Migration {
        version: 2,
        description: "current session; NOTIFY on every event",
        sql: V2,
    },
    Migration {
        version: 3,
        description: "whether each milestone's event times follow seq; events indexed by (milestone, ts, seq)",
        sql: V3,
    },
];

/// The version a fully migrated schema is at.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Version 1: the whole store.
///
/// - `mstate_milestones`: one row per milestone, created by the first
///   operation that names it (`init`, `save`, `log`, `lock`). `revision` 0
///   and a NULL state mean "no state saved yet". The state is kept twice:
///   `state_text` is the JSON exactly as saved (what `load` returns, key
///   order and number spelling included) and `state` is its `jsonb` form
///   for queries. `next_seq` is the seq the next event gets (the gapless
///   counter), `lock_token` the fencing token of the newest lock
///   acquisition (0: never locked).
/// - `mstate_revisions`: every earlier state, one row per revision, moved
///   here by the save that replaced it (backups, `recover`, history, diff).
/// - `mstate_checkpoints`: named copies of a state.
/// - `mstate_events`: the event log; `(milestone_id, seq)` is the key, seq
///   1, 2, ... without gaps per milestone. `line` is the event as one
///   compact JSON line, the filesystem backend's format byte for byte.
/// - `mstate_locks`: at most one lease per milestone, with its holder, its
///   expiry (NULL: until released) and its fencing token, drawn from
///   `mstate_lock_token_seq` (increasing across the whole schema).
/// - `mstate_sessions`: sessions of milestones.
const V1: &str = r#"
CREATE TABLE mstate_milestones (
    id               text PRIMARY KEY,
    status           text NOT NULL DEFAULT 'active'
                     CHECK (status IN ('active', 'completed')),
    revision         bigint NOT NULL DEFAULT 0 CHECK (revision >= 0),
    state            jsonb,
    state_text       text,
    state_written_at timestamptz,
    next_seq         bigint NOT NULL DEFAULT 1 CHECK (next_seq >= 1),
    lock_token       bigint NOT NULL DEFAULT 0 CHECK (lock_token >= 0),
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((revision = 0) = (state_text IS NULL)),
    CHECK ((state IS NULL) = (state_text IS NULL))
);

CREATE TABLE mstate_revisions (
    milestone_id  text NOT NULL REFERENCES mstate_milestones (id) ON DELETE CASCADE,
    revision      bigint NOT NULL CHECK (revision > 0),
    state         jsonb NOT NULL,
    state_text    text NOT NULL,
    written_at    timestamptz NOT NULL,
    superseded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (milestone_id, revision)
);

CREATE TABLE mstate_checkpoints (
    milestone_id text NOT NULL REFERENCES mstate_milestones (id) ON DELETE CASCADE,
    name         text NOT NULL,
    revision     bigint NOT NULL,
    state        jsonb NOT NULL,
    state_text   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (milestone_id, name)
);

CREATE TABLE mstate_events (
    milestone_id text NOT NULL REFERENCES mstate_milestones (id) ON DELETE CASCADE,
    seq          bigint NOT NULL CHECK (seq > 0),
    ts           timestamptz NOT NULL,
    session_id   text,
    event_type   text NOT NULL,
    data         jsonb NOT NULL,
    pid          bigint,
    "user"       text,
    host         text,
    line         text NOT NULL,
    PRIMARY KEY (milestone_id, seq)
);
CREATE INDEX mstate_events_ts ON mstate_events (milestone_id, ts);
CREATE INDEX mstate_events_type ON mstate_events (milestone_id, event_type, seq);
CREATE INDEX mstate_events_session ON mstate_events (milestone_id, session_id, seq);

CREATE SEQUENCE mstate_lock_token_seq AS bigint MINVALUE 1 START 1 NO CYCLE;

CREATE TABLE mstate_locks (
    milestone_id text PRIMARY KEY REFERENCES mstate_milestones (id) ON DELETE CASCADE,
    token        bigint NOT NULL UNIQUE,
    operation    text NOT NULL,
    host         text NOT NULL,
    pid          bigint NOT NULL,
    pid_start    bigint,
    boot_id      text,
    "user"       text NOT NULL,
    acquired_at  timestamptz NOT NULL,
    ttl_secs     double precision CHECK (ttl_secs IS NULL OR ttl_secs >= 0),
    expires_at   timestamptz,
    CHECK ((ttl_secs IS NULL) = (expires_at IS NULL))
);

CREATE TABLE mstate_sessions (
    session_id        text PRIMARY KEY,
    milestone_id      text NOT NULL REFERENCES mstate_milestones (id) ON DELETE CASCADE,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    pid               bigint NOT NULL,
    "user"            text NOT NULL,
    working_directory text NOT NULL DEFAULT '',
    git_branch        text NOT NULL DEFAULT '',
    status            text NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'completed')),
    ended_at          timestamptz,
    host              text,
    pid_start         bigint,
    boot_id           text
);
CREATE INDEX mstate_sessions_milestone ON mstate_sessions (milestone_id, created_at);
"#;

/// Version 2: what the store API needs beyond version 1.
///
/// - `mstate_current_session`: the store's current session (at most one
///   row), what events name when their caller names none.
/// - A trigger on `mstate_events` that sends `NOTIFY` on the channel
///   `mstate_events:<schema>` with the payload `<seq> <milestone id>` for
///   every event, delivered at commit: `events --follow` waits on it
///   instead of polling. The schema is read from the table's own, so
///   stores in several schemas of one database do not wake each other.
const V2: &str = r#"
CREATE TABLE mstate_current_session (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    session_id text NOT NULL
);

CREATE FUNCTION mstate_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mstate_events:' || TG_TABLE_SCHEMA, NEW.seq || ' ' || NEW.milestone_id);
    RETURN NULL;
END
$$;

CREATE TRIGGER mstate_events_notify AFTER INSERT ON mstate_events
    FOR EACH ROW EXECUTE FUNCTION mstate_notify_event();
"#;

/// Version 3: `--since` and `--until` by seq bounds.
///
/// A time bound alone is planned from the statistics of the whole
/// `mstate_events` table, so a milestone beside many later events of
/// other milestones was read whole through the primary key. Where a
/// milestone's event times never go down along seq, the events at or
/// after a time are a suffix of its log and those up to a time a prefix:
/// a query finds the first and last seq through `mstate_events_ts_seq`
/// (one index probe each, whatever the statistics) and reads between them
/// by seq.
///
/// - `mstate_milestones.last_ts`: the time of the milestone's latest
///   event; `ts_disordered`: whether an event ever came with a time
///   earlier than one before it. Such a milestone's time bounds are read
///   by filtering, exact as before; once set, the flag stays set.
/// - They are kept by the writers themselves, never by a trigger that
///   updates the milestone row once per event (an import of millions of
///   events in one transaction would pile up a row version per event):
///   `log` reads the clock once under the milestone's row lock, keeps it
///   as `last_ts` and sets the flag if it is earlier than the one before
///   (a server clock stepped back); an import marks its milestone
///   disordered while its batches go in and records the judgement of its
///   events at the end.
/// - Statement triggers catch every other writer: rows inserted other
///   than as the latest event `log` just recorded (hand-made SQL), and any
///   change of an event's time, seq or milestone, mark the milestone
///   disordered, one update per milestone and statement.
/// - The existing events are judged along seq.
/// - `mstate_events_ts_seq` replaces `mstate_events_ts`, so the first event
///   at or after a time is the first index entry, ties in seq order.
const V3: &str = r#"
ALTER TABLE mstate_milestones
    ADD COLUMN last_ts timestamptz,
    ADD COLUMN ts_disordered boolean NOT NULL DEFAULT false;

UPDATE mstate_milestones m
   SET last_ts = o.last_ts, ts_disordered = o.disordered
  FROM (
      SELECT milestone_id, max(ts) AS last_ts,
             coalesce(bool_or(ts < before), false) AS disordered
        FROM (
            SELECT milestone_id, ts,
                   max(ts) OVER (PARTITION BY milestone_id ORDER BY seq
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
              FROM mstate_events
        ) e
       GROUP BY milestone_id
  ) o
 WHERE m.id = o.milestone_id;

CREATE INDEX mstate_events_ts_seq ON mstate_events (milestone_id, ts, seq);
DROP INDEX mstate_events_ts;

CREATE FUNCTION mstate_check_added_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mstate_milestones m SET ts_disordered = true
      FROM (SELECT milestone_id, count(*) AS n, max(seq) AS seq, max(ts) AS ts
              FROM added GROUP BY milestone_id) a
     WHERE m.id = a.milestone_id AND NOT m.ts_disordered
       AND NOT (a.n = 1 AND a.seq = m.next_seq - 1 AND a.ts = m.last_ts);
    RETURN NULL;
END
$$;

CREATE FUNCTION mstate_check_changed_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mstate_milestones m SET ts_disordered = true
     WHERE NOT m.ts_disordered AND m.id IN (
         SELECT milestone_id FROM (
             (SELECT milestone_id, seq, ts FROM after
              EXCEPT ALL SELECT milestone_id, seq, ts FROM before)
             UNION ALL
             (SELECT milestone_id, seq, ts FROM before
              EXCEPT ALL SELECT milestone_id, seq, ts FROM after)
         ) changed);
    RETURN NULL;
END
$$;

CREATE TRIGGER mstate_events_added AFTER INSERT ON mstate_events
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION mstate_check_added_events();
CREATE TRIGGER mstate_events_changed AFTER UPDATE ON mstate_events
    REFERENCING OLD TABLE AS before NEW TABLE AS after
    FOR EACH STATEMENT EXECUTE FUNCTION mstate_check_changed_events();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1, "{}", m.description);
        }
        assert_eq!(latest_version(), MIGRATIONS.len() as i32);
    }
}
