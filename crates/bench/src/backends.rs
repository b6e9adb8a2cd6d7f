//! Both backends side by side: the file store (a directory under
//! `target/bench-work/`) and PostgreSQL (fresh schemas of the server at
//! `MSTATE_BENCH_PG_URL`, else `MSTATE_TEST_PG_URL`, else
//! [`DEFAULT_URL`]; dropped afterwards), measured in one run, one table.
//!
//! Rows: opening the store, save and load of a 1 KB state and the append
//! of one event, through the library (a `Box<dyn Store>` from
//! `mstate_store::open`, as every front end holds) and as whole
//! `mstate --store LOCATION` processes; `events --tail 50` and `--since`
//! (the last 50) on logs of 1K to 1M events, through both, and `--since`
//! again on one log beside nine times as many later events of another
//! milestone (PostgreSQL's planner judges `ts >= since` by the whole
//! table's statistics, not the milestone's); increments
//! (`StateEdit::add`, the edit `update` applies) from 1, 2, 4 and 8
//! processes at once on one milestone, the final count checked; and the
//! server's round trip (`SELECT 1` on one connection), the unit in which
//! the PostgreSQL figures can be read.
//!
//! Method: each run takes every row in turn, the two backends alternating
//! sample by sample (order swapped every sample), and records each
//! backend's median; the table gives the median of the run medians and
//! their range. Contention: per run and process count, both backends in
//! turn; the processes open their store, say they are ready, and start
//! together when told; the rate is their increments over the time from
//! that signal to the last one's exit.
//!
//! Each PostgreSQL log is in a schema of its own, made by one `INSERT ...
//! SELECT generate_series` in the rows `log` writes (the same lines as the file
//! logs of [`crate::loggen`], timestamps included), with the schema's
//! NOTIFY and added-rows triggers off for that insert and `next_seq`,
//! `last_ts` and `ts_disordered` set after it as an import sets them; a
//! check compares the last line of each. Without a server the part says
//! so and is skipped, unless `MSTATE_TEST_REQUIRE_TOOLS=1` (as in CI),
//! which makes it fail.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mstate_store::model::{EventQuery, NewEvent, StateEdit};
use mstate_store::{open, EventType, Location, MilestoneId, Store, StoreOptions, WriteOptions};
use serde_json::{json, Value};

use crate::data;
use crate::loggen;
use crate::procs;
use crate::query;
use crate::stats::{count, median_of, ratio, secs, spread, Samples, Table};

/// How many times as many events the later milestone beside a log has.
pub const LATER: u64 = 9;

/// The server used when neither variable names one.
pub const DEFAULT_URL: &str = "postgresql://postgres@127.0.0.1:5432/test";

/// What [`run`] measures.
pub struct Opts<'a> {
    /// Runs (each gives one median per row and backend).
    pub runs: usize,
    /// Library samples per row, per run and backend.
    pub samples: usize,
    /// Whole-process samples per row, per run and backend.
    pub cli_samples: usize,
    /// Log sizes the queries run on.
    pub events: Vec<u64>,
    /// The log size queried again beside [`LATER`] times as many later
    /// events of another milestone.
    pub beside: Option<u64>,
    /// Process counts of the contention rows.
    pub procs: Vec<usize>,
    /// Increments each contending process makes.
    pub increments: usize,
    pub mstate: &'a Path,
}

impl<'a> Opts<'a> {
    /// The full plan, or the quick smoke run's.
    pub fn plan(quick: bool, mstate: &'a Path) -> Opts<'a> {
        if quick {
            Opts {
                runs: 2,
                samples: 3,
                cli_samples: 2,
                events: vec![1_000, 10_000],
                beside: Some(1_000),
                procs: vec![1, 4],
                increments: 5,
                mstate,
            }
        } else {
            Opts {
                runs: 5,
                samples: 40,
                cli_samples: 10,
                events: vec![1_000, 100_000, 1_000_000],
                beside: Some(100_000),
                procs: vec![1, 2, 4, 8],
                increments: 40,
                mstate,
            }
        }
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The server's connection string: the first of the two variables set.
fn server_url() -> String {
    ["MSTATE_BENCH_PG_URL", "MSTATE_TEST_PG_URL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_URL.to_string())
}

/// The schemas of this run on the server, dropped on drop, and a
/// connection of its own (round trips, log generation, settings).
struct Server {
    url: String,
    /// The main schema (milestone `m`, contention); each log has a schema
    /// of its own, named after it.
    schema: String,
    /// Every schema made, to drop.
    made: Vec<String>,
    admin: postgres::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        for schema in &self.made {
            let drop_it = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            if let Err(e) = self.admin.batch_execute(&drop_it) {
                eprintln!("backends: could not drop schema {schema}: {e}");
            }
        }
    }
}

impl Server {
    /// Connect to the server at `url`: `Ok(Err(why))` when none answers.
    fn connect(url: &str) -> Result<Result<Server, String>, String> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| format!("bad PostgreSQL URL {url:?}: {e}"))?;
        config.connect_timeout(Duration::from_secs(5));
        let admin = match config.connect(postgres::NoTls) {
            Ok(c) => c,
            Err(e) => {
                let why = match std::error::Error::source(&e) {
                    Some(cause) => format!("{e}: {cause}"),
                    None => e.to_string(),
                };
                return Ok(Err(why));
            }
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let schema = format!("mstate_bench_{}_{nanos:08x}", std::process::id());
        Ok(Ok(Server {
            url: url.to_string(),
            made: vec![schema.clone()],
            schema,
            admin,
        }))
    }

    /// The `--store` text of `schema`.
    fn store_arg(&self, schema: &str) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={schema}", self.url)
    }

    /// A new schema `<main>_<suffix>` holding an empty store (made by the
    /// store itself, at its current version); its `--store` text.
    fn empty_store(&mut self, suffix: &str) -> Result<String, String> {
        let schema = format!("{}_{suffix}", self.schema);
        self.made.push(schema.clone());
        let arg = self.store_arg(&schema);
        let m = milestone("m")?;
        let loc = Location::parse(&arg, Path::new("/")).map_err(err)?;
        open(&loc, StoreOptions::default())
            .and_then(|s| s.init(&m))
            .map_err(err)?;
        self.admin
            .batch_execute(&format!(
                "DELETE FROM \"{schema}\".mstate_milestones WHERE id = 'm'"
            ))
            .map_err(err)?;
        Ok(arg)
    }

    /// One setting of the server (`SHOW`).
    fn show(&mut self, name: &str) -> String {
        self.admin
            .simple_query(&format!("SHOW {name}"))
            .ok()
            .and_then(|msgs| {
                msgs.into_iter().find_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                })
            })
            .unwrap_or_else(|| "?".into())
    }

    /// One round trip: `SELECT 1` as a simple query.
    fn round_trip(&mut self) -> Result<(), String> {
        self.admin.simple_query("SELECT 1").map(drop).map_err(err)
    }

    /// Give milestone `id` of the store in `schema` a log of `n` events
    /// (no state), in one statement, in the rows `log` writes, its
    /// timestamps `shift_us` µs later than loggen's; returns the seconds
    /// it took.
    fn generate(&mut self, schema: &str, id: &str, n: u64, shift_us: u64) -> Result<f64, String> {
        let start = Instant::now();
        let n = i64::try_from(n).map_err(err)?;
        let shift = i64::try_from(shift_us).map_err(err)?;
        let mut tx = self.admin.transaction().map_err(err)?;
        tx.batch_execute(&format!(
            "SET LOCAL search_path TO \"{schema}\"; ALTER TABLE mstate_events DISABLE TRIGGER mstate_events_notify; \
             ALTER TABLE mstate_events DISABLE TRIGGER mstate_events_added"
        ))
        .map_err(err)?;
        tx.execute("INSERT INTO mstate_milestones (id) VALUES ($1)", &[&id])
            .map_err(err)?;
        tx.execute(GENERATE, &[&id, &n, &shift]).map_err(err)?;
        // What an import records: the next seq, the latest time, and
        // whether the times go back anywhere along seq.
        tx.execute(
            "UPDATE mstate_milestones SET next_seq = $2::bigint + 1, last_ts = o.last_ts, \
             ts_disordered = o.disordered \
             FROM (SELECT max(ts) AS last_ts, coalesce(bool_or(ts < before), false) AS disordered \
                   FROM (SELECT ts, lag(ts) OVER (ORDER BY seq) AS before \
                         FROM mstate_events WHERE milestone_id = $1) e) o \
             WHERE id = $1",
            &[&id, &n],
        )
        .map_err(err)?;
        tx.batch_execute(
            "ALTER TABLE mstate_events ENABLE TRIGGER mstate_events_notify; \
             ALTER TABLE mstate_events ENABLE TRIGGER mstate_events_added; ANALYZE mstate_events",
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(start.elapsed().as_secs_f64())
    }
}

/// Events `0..$2` of milestone `$1`, as [`crate::loggen::write_log`]
/// writes them (timestamps `$3` µs later) and as the store's `log` stores
/// them: the line begins with the timestamp and has seq between user and
/// host.
const GENERATE: &str = r#"
INSERT INTO mstate_events
    (milestone_id, seq, ts, session_id, event_type, data, pid, "user", host, line)
SELECT $1::text, g.i + 1, g.ts, 's', g.t, g.d::jsonb, 1, 'u', 'h',
       '{"timestamp":"' || to_char(g.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
       || '","milestone_id":"' || $1::text || '","session_id":"s","event_type":"' || g.t
       || '","data":' || g.d || ',"pid":1,"user":"u","seq":' || (g.i + 1) || ',"host":"h"}'
FROM (
    SELECT i,
           timestamptz '2026-01-01 00:00:00+00'
               + ($3::bigint + i * 1000 + (i * 37) % 1000) * interval '1 microsecond' AS ts,
           CASE WHEN i % 1000 = 999 THEN 'rare'
                ELSE (ARRAY['task_started', 'progress', 'task_completed', 'state_saved'])[i % 4 + 1]
           END AS t,
           '{"task":"step-' || lpad(i::text, 7, '0') || '","percentage":' || (i % 100)
               || ',"message":"compiled crate ' || (i % 500) || ' of 500 in 0.'
               || lpad((i % 100)::text, 2, '0') || 's"}' AS d
    FROM generate_series(0::bigint, $2::bigint - 1) AS i
) g
"#;

/// A store to query: a log of `n` events of milestone `id`.
struct LogStore {
    n: u64,
    /// Whether the PostgreSQL store also holds a later milestone's events
    /// (the file store is the same either way).
    beside: bool,
    store: Box<dyn Store>,
    arg: String,
    id: MilestoneId,
}

/// One backend: its store (milestone `m`, a 1 KB state), its `--store`
/// text, and its logs.
struct Backend {
    name: &'static str,
    location: Location,
    arg: String,
    store: Box<dyn Store>,
    logs: Vec<LogStore>,
}

impl Backend {
    fn new(name: &'static str, arg: String, state: &Value) -> Result<Backend, String> {
        let cwd = std::env::current_dir().map_err(err)?;
        let location = Location::parse(&arg, &cwd).map_err(err)?;
        let store = open(&location, StoreOptions::default()).map_err(err)?;
        let m = milestone("m")?;
        store.init(&m).map_err(err)?;
        store
            .save(&m, state, &WriteOptions::default())
            .map_err(err)?;
        Ok(Backend {
            name,
            location,
            arg,
            store,
            logs: Vec::new(),
        })
    }

    /// `mstate --store ARG ARGS`, output discarded.
    fn cli(&self, bin: &Path, args: &[&str]) -> Command {
        let mut c = procs::quiet(bin);
        c.env_remove("MSTATE_DIR")
            .env_remove("MSTATE_STORE")
            .env_remove("MSTATE_SESSION")
            .arg("--store")
            .arg(&self.arg)
            .args(args);
        c
    }
}

fn milestone(id: &str) -> Result<MilestoneId, String> {
    MilestoneId::new(id).map_err(err)
}

/// What one row measures.
#[derive(Clone, Copy)]
enum Op {
    Open,
    Save,
    Load,
    Log,
    CliSave,
    CliLoad,
    CliLog,
    /// Query `q` of [`query::queries`] on log `log`.
    Query {
        log: usize,
        q: usize,
    },
    CliQuery {
        log: usize,
        q: usize,
    },
}

/// Everything a sample needs besides its backend.
struct Ctx<'a> {
    mstate: &'a Path,
    state: Value,
    input: PathBuf,
    m: MilestoneId,
    progress: EventType,
    /// Queries of each log size, in the order of the backends' logs.
    queries: Vec<Vec<query::Q>>,
}

impl Ctx<'_> {
    /// Time one sample of `op` on `b`.
    fn sample(&self, op: Op, b: &Backend) -> Result<Duration, String> {
        let opts = WriteOptions::default();
        let mut s = Samples::default();
        match op {
            Op::Open => {
                s.time(|| open(&b.location, StoreOptions::default()))
                    .map_err(err)?;
            }
            Op::Save => {
                s.time(|| b.store.save(&self.m, &self.state, &opts))
                    .map_err(err)?;
            }
            Op::Load => {
                s.time(|| b.store.load(&self.m, &opts)).map_err(err)?;
            }
            Op::Log => {
                let ev = NewEvent {
                    event_type: self.progress.clone(),
                    data: data::progress_data(1),
                    session_id: None,
                };
                s.time(|| b.store.log(&self.m, &ev)).map_err(err)?;
            }
            Op::CliSave | Op::CliLoad | Op::CliLog => {
                let mut c = match op {
                    Op::CliSave => {
                        let mut c = b.cli(self.mstate, &["save", "m", "-"]);
                        c.stdin(std::fs::File::open(&self.input).map_err(err)?);
                        c
                    }
                    Op::CliLoad => b.cli(self.mstate, &["load", "m"]),
                    _ => b.cli(
                        self.mstate,
                        &["log", "m", "progress", r#"{"task":"x","percentage":1}"#],
                    ),
                };
                s.push(procs::run_ok(&mut c)?.wall);
            }
            Op::Query { log, q } => {
                let (l, q) = (&b.logs[log], &self.queries[log][q]);
                let got = s.time(|| query::events_of(l.store.as_ref(), &l.id, &q.query))?;
                if got != q.expect {
                    return Err(format!(
                        "{}: {} on {} events returned {got} lines, expected {}",
                        b.name, q.name, l.n, q.expect
                    ));
                }
            }
            Op::CliQuery { log, q } => {
                let (l, q) = (&b.logs[log], &self.queries[log][q]);
                let mut c = procs::quiet(self.mstate);
                c.env_remove("MSTATE_DIR")
                    .env_remove("MSTATE_STORE")
                    .arg("--store")
                    .arg(&l.arg)
                    .args(["events", l.id.as_str()])
                    .args(&q.args);
                s.push(procs::run_ok(&mut c)?.wall);
            }
        }
        Ok(Duration::from_secs_f64(s.median()))
    }
}

/// What a row of the table measures.
#[derive(Clone, Copy)]
enum Kind {
    /// Samples of one operation (seconds).
    Op(Op),
    /// Increments from this many processes (per second).
    Contend(usize),
    /// The server's round trip (seconds; PostgreSQL only).
    RoundTrip,
}

/// One line of the table: its name and each backend's run medians.
struct Row {
    name: String,
    kind: Kind,
    file: Vec<f64>,
    pg: Vec<f64>,
}

impl Row {
    fn new(name: String, kind: Kind) -> Row {
        Row {
            name,
            kind,
            file: Vec::new(),
            pg: Vec::new(),
        }
    }

    fn rate(&self) -> bool {
        matches!(self.kind, Kind::Contend(_))
    }
}

/// The rows of the table, in its order; `logs` are the sizes of the logs
/// and whether each is the one beside a later milestone.
fn table_rows(o: &Opts<'_>, ctx: &Ctx<'_>, logs: &[(u64, bool)]) -> Vec<Row> {
    let op = |name: &str, op: Op| Row::new(name.to_string(), Kind::Op(op));
    let mut rows = vec![
        op("open the store (library)", Op::Open),
        op("save, 1 KB state (library)", Op::Save),
        op("`mstate save`, 1 KB state (process)", Op::CliSave),
        op("load, 1 KB state (library)", Op::Load),
        op("`mstate load` (process)", Op::CliLoad),
        op("log one event (library)", Op::Log),
        op("`mstate log` (process)", Op::CliLog),
    ];
    for q in [0usize, 1] {
        for (log, &(n, beside)) in logs.iter().enumerate() {
            if beside && q == 0 {
                continue;
            }
            let mut name = format!("`events {}`, {} events", ctx.queries[log][q].name, count(n));
            if beside {
                name.push_str(&format!(
                    ", beside {} later ones of another milestone",
                    count(LATER * n)
                ));
            }
            rows.push(op(&format!("{name} (library)"), Op::Query { log, q }));
            rows.push(op(&format!("{name} (process)"), Op::CliQuery { log, q }));
        }
    }
    for &p in &o.procs {
        let name = format!(
            "increments from {p} process{} (aggregate per second)",
            if p == 1 { "" } else { "es" }
        );
        rows.push(Row::new(name, Kind::Contend(p)));
    }
    rows.push(Row::new(
        "`SELECT 1` round trip (one connection)".into(),
        Kind::RoundTrip,
    ));
    rows
}

/// Run `r` of every row: each backend's median, appended to the row.
fn measure_run(
    r: usize,
    rows: &mut [Row],
    ctx: &Ctx<'_>,
    o: &Opts<'_>,
    (file, pg): (&Backend, &Backend),
    server: &mut Server,
) -> Result<(), String> {
    // The backend measured first alternates (by sample, and by run).
    let first = |i: usize| (i + r) % 2 == 0;
    for row in rows.iter_mut() {
        match row.kind {
            Kind::Op(op) => {
                let n = match op {
                    Op::CliSave | Op::CliLoad | Op::CliLog | Op::CliQuery { .. } => o.cli_samples,
                    _ => o.samples,
                };
                let (mut a, mut b) = (Samples::default(), Samples::default());
                for s in 0..n.max(1) {
                    if first(s) {
                        a.push(ctx.sample(op, file)?);
                        b.push(ctx.sample(op, pg)?);
                    } else {
                        b.push(ctx.sample(op, pg)?);
                        a.push(ctx.sample(op, file)?);
                    }
                }
                row.file.push(a.median());
                row.pg.push(b.median());
            }
            Kind::Contend(p) => {
                if first(0) {
                    row.file.push(contend(file, p, o.increments)?);
                    row.pg.push(contend(pg, p, o.increments)?);
                } else {
                    row.pg.push(contend(pg, p, o.increments)?);
                    row.file.push(contend(file, p, o.increments)?);
                }
            }
            Kind::RoundTrip => {
                let mut t = Samples::default();
                for _ in 0..round_trips(o) {
                    t.time(|| server.round_trip())?;
                }
                row.pg.push(t.median());
            }
        }
    }
    Ok(())
}

/// Round trips timed per run.
fn round_trips(o: &Opts<'_>) -> usize {
    o.samples.max(1) * 5
}

/// The table: each backend's median (range), their ratio, and the
/// PostgreSQL figure in round trips.
fn render(rows: &[Row]) -> String {
    let round_trip = rows
        .iter()
        .find(|r| matches!(r.kind, Kind::RoundTrip))
        .map_or(0.0, |r| median_of(&r.pg));
    let mut t = Table::new(&[
        "operation",
        ">file store",
        ">PostgreSQL",
        ">PostgreSQL / file",
        ">PostgreSQL in round trips",
    ]);
    for row in rows {
        let show = |v: &[f64]| {
            if v.is_empty() {
                "-".to_string()
            } else if row.rate() {
                spread(v, |x| count(x.round() as u64))
            } else {
                spread(v, secs)
            }
        };
        let (f, p) = (median_of(&row.file), median_of(&row.pg));
        t.row(vec![
            row.name.clone(),
            show(&row.file),
            show(&row.pg),
            if row.file.is_empty() {
                "-".into()
            } else {
                ratio(p, f)
            },
            if row.rate() || round_trip <= 0.0 {
                "-".into()
            } else {
                format!("{:.1}", p / round_trip)
            },
        ]);
    }
    t.render()
}

/// The file logs of each size (loggen's, reused) and the same events in
/// PostgreSQL, each log in a schema of its own; and the `beside` log
/// again in a schema that also holds [`LATER`] times as many later events
/// of another milestone. Checks the logs agree; returns notes on the
/// generation.
fn make_logs(
    sizes: &[u64],
    beside: Option<u64>,
    file: &mut Backend,
    pg: &mut Backend,
    server: &mut Server,
) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let plan = sizes
        .iter()
        .map(|&n| (n, false))
        .chain(beside.map(|n| (n, true)));
    for (n, beside) in plan {
        let g = loggen::ensure(n).map_err(|e| format!("generating {n} events: {e}"))?;
        let root = g.dir.join(".milestones/state");
        let arg = root.display().to_string();
        let loc = Location::Files(root);
        file.logs.push(LogStore {
            n,
            beside,
            store: open(&loc, StoreOptions::default()).map_err(err)?,
            arg,
            id: milestone("m")?,
        });
        let id = format!("e{n}");
        let suffix = format!("{}{n}", if beside { "b" } else { "l" });
        let arg = server.empty_store(&suffix)?;
        let schema = format!("{}_{suffix}", server.schema);
        eprintln!("backends: {} events into PostgreSQL", count(n));
        let took = server.generate(&schema, &id, n, 0)?;
        notes.push(format!("{} events in {:.1} s", count(n), took));
        if beside {
            // Starting where `id`'s end (event i is about i ms in).
            let took = server.generate(&schema, "later", LATER * n, n * 1000)?;
            notes.push(format!(
                "{} later events in {:.1} s",
                count(LATER * n),
                took
            ));
        }
        let loc = Location::parse(&arg, Path::new("/")).map_err(err)?;
        pg.logs.push(LogStore {
            n,
            beside,
            store: open(&loc, StoreOptions::default()).map_err(err)?,
            arg,
            id: milestone(&id)?,
        });
    }
    // The last line of each PostgreSQL log is the file log's, but for the
    // milestone's name.
    let last = EventQuery {
        tail: Some(1),
        ..Default::default()
    };
    for (f, p) in file.logs.iter().zip(&pg.logs) {
        let line = |l: &LogStore| -> Result<String, String> {
            let mut out = String::new();
            l.store
                .events(&l.id, &last, &mut |e| {
                    out = e.line()?.into_owned();
                    Ok(true)
                })
                .map_err(err)?;
            Ok(out)
        };
        let (a, b) = (line(f)?, line(p)?);
        let renamed = b.replacen(
            &format!("\"milestone_id\":\"{}\"", p.id),
            "\"milestone_id\":\"m\"",
            1,
        );
        if a.is_empty() || a != renamed {
            return Err(format!(
                "the generated PostgreSQL log of {} events does not end as the file log:\n  file: {a}\n  pg:   {b}",
                f.n
            ));
        }
    }
    Ok(notes)
}

/// Body of a contention worker (`backend-worker`): open the store at
/// `location`, print `ready`, wait for a line on stdin (end of input
/// aborts), then add 1 to `/count` of `milestone` `k` times.
pub fn worker(location: &str, milestone_id: &str, k: usize) -> Result<(), String> {
    let cwd = std::env::current_dir().map_err(err)?;
    let store = open(
        &Location::parse(location, &cwd).map_err(err)?,
        StoreOptions::default(),
    )
    .map_err(err)?;
    let id = milestone(milestone_id)?;
    let edit = StateEdit::add("/count", 1);
    let opts = WriteOptions::default();
    println!("ready");
    std::io::stdout().flush().map_err(err)?;
    let mut go = String::new();
    if std::io::stdin().read_line(&mut go).map_err(err)? == 0 {
        return Err("told to stop before starting".into());
    }
    for _ in 0..k {
        store.update(&id, &edit, &opts).map_err(err)?;
    }
    Ok(())
}

/// `procs` processes adding 1 to one counter `k` times each, on `b`;
/// checks the count and returns increments per second.
fn contend(b: &Backend, procs: usize, k: usize) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(err)?;
    let c = milestone("c")?;
    b.store
        .save(&c, &json!({"count": 0}), &WriteOptions::default())
        .map_err(err)?;
    let mut children = Vec::new();
    let mut ready = Ok(());
    for _ in 0..procs {
        let spawned = Command::new(&exe)
            .args(["backend-worker", &b.arg, "c", &k.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        match spawned {
            Ok(child) => children.push(child),
            Err(e) => {
                ready = Err(format!("cannot start a worker: {e}"));
                break;
            }
        }
    }
    for child in &mut children {
        let mut line = String::new();
        let said = child
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        if ready.is_ok() && !matches!(said, Some(Ok(n)) if n > 0 && line.trim() == "ready") {
            ready = Err(format!("a {} worker failed to start", b.name));
        }
    }
    let start = Instant::now();
    for child in &mut children {
        if let Some(mut stdin) = child.stdin.take() {
            if ready.is_ok() {
                if let Err(e) = stdin.write_all(b"go\n") {
                    ready = Err(format!("cannot start a worker: {e}"));
                }
            }
        }
    }
    let mut failed = 0;
    for child in &mut children {
        if !child.wait().map_err(err)?.success() {
            failed += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    ready?;
    if failed > 0 {
        return Err(format!("{failed} {} contention workers failed", b.name));
    }
    let got = b
        .store
        .load(&c, &WriteOptions::default())
        .map_err(err)?
        .envelope
        .state["count"]
        .as_u64();
    let want = (procs * k) as u64;
    if got != Some(want) {
        return Err(format!(
            "{}: count {got:?} after {procs} processes added 1 {k} times each (want {want})",
            b.name
        ));
    }
    Ok(want as f64 / elapsed)
}

/// Measure every row on both backends; markdown out.
pub fn run(o: &Opts<'_>) -> Result<String, String> {
    let url = server_url();
    // For messages: the URL without its password.
    let shown = match Location::parse(&url, Path::new("/")) {
        Ok(loc @ Location::Postgres { .. }) => {
            let text = loc.to_string();
            text.rsplit_once("?schema=").map_or(text.clone(), |(u, _)| u.to_string())
        }
        _ => {
            return Err(
                "the PostgreSQL server's URL (MSTATE_BENCH_PG_URL or MSTATE_TEST_PG_URL) is not a postgresql:// URL: the CLI's --store needs one".into(),
            )
        }
    };
    let mut server = match Server::connect(&url)? {
        Ok(s) => s,
        Err(why) => {
            let msg = format!("No PostgreSQL server answered at {shown} ({why})");
            let hint =
                "Set MSTATE_BENCH_PG_URL (or MSTATE_TEST_PG_URL) to a server's URL to run it.";
            if std::env::var("MSTATE_TEST_REQUIRE_TOOLS").as_deref() == Ok("1") {
                return Err(format!(
                    "{msg}, and MSTATE_TEST_REQUIRE_TOOLS=1 requires the backends part. {hint}"
                ));
            }
            let msg = format!("{msg}: this part is skipped. {hint}");
            eprintln!("backends: {msg}");
            return Ok(format!("{msg}\n"));
        }
    };
    let work = data::fresh_dir("backends").map_err(err)?;
    let state = data::state(1_000);
    let input = work.join("input.json");
    std::fs::write(&input, serde_json::to_vec(&state).map_err(err)?).map_err(err)?;
    let file_root = work.join(".milestones/state");
    let mut file = Backend::new("file", file_root.display().to_string(), &state)?;
    let main = server.store_arg(&server.schema);
    let mut pg = Backend::new("PostgreSQL", main, &state)?;
    let gen_notes = make_logs(&o.events, o.beside, &mut file, &mut pg, &mut server)?;

    let ctx = Ctx {
        mstate: o.mstate,
        state,
        input,
        m: milestone("m")?,
        progress: EventType::new("progress").map_err(err)?,
        queries: file.logs.iter().map(|l| query::queries(l.n)).collect(),
    };
    let logs: Vec<(u64, bool)> = file.logs.iter().map(|l| (l.n, l.beside)).collect();
    let mut rows = table_rows(o, &ctx, &logs);
    for r in 0..o.runs.max(1) {
        eprintln!("backends: run {} of {}", r + 1, o.runs.max(1));
        measure_run(r, &mut rows, &ctx, o, (&file, &pg), &mut server)?;
    }
    let mut md = render(&rows);
    let _ = writeln!(
        md,
        "\nMedian of {runs} run medians (min–max of the run medians). Per run: {s} library samples and {c} whole processes per row and backend, the backends alternating sample by sample; the round trip from {rt} `SELECT 1`s per run. \"In round trips\": the PostgreSQL median over the round trip's. Increments: {k} `StateEdit::add(\"/count\", 1)` updates per process (the edit `update` applies; each process a store of its own), from the go signal to the last exit, the final count checked; figures are increments per second.",
        runs = o.runs.max(1),
        s = o.samples.max(1),
        c = o.cli_samples.max(1),
        rt = round_trips(o),
        k = o.increments,
    );
    let _ = writeln!(
        md,
        "\nFile store: under `target/bench-work/` ({}). PostgreSQL {} at {} (`fsync` {}, `synchronous_commit` {}), fresh schemas (the state and contention in one, each log in its own), dropped after; the logs generated in one statement each, in the rows `log` writes ({}).",
        procs::fs_type(&file_root),
        server.show("server_version"),
        shown,
        server.show("fsync"),
        server.show("synchronous_commit"),
        gen_notes.join(", ")
    );
    drop(file);
    drop(pg);
    drop(server);
    std::fs::remove_dir_all(&work).map_err(err)?;
    Ok(md)
}
