//! Event queries at each log size, through the library (in process, peak
//! RSS from `VmHWM`), the CLI (whole process, peak RSS from `wait4`) and
//! SQLite (the same events in an indexed table).
//!
//! Queries: `--tail 50`; `--since` the 50th event from the end; `--until`
//! the 100th from the end with `--tail 50`; `--type rare`, a full filtered
//! scan matching 0.1% of the events.
//!
//! Then whole-log scans through the CLI: `events` in each format and
//! `timeline` in each format, `--type rare` against `grep`, and the seed's
//! timeline (Python) on logs of up to a million events: wall and CPU time
//! over interleaved rounds, and peak RSS.

use mstate_store::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mstate_store::model::EventQuery;
use mstate_store::{FsOptions, FsStore, MilestoneId};

use crate::loggen;
use crate::procs;
use crate::sqlite::Sql;
use crate::stats::{bytes, count, mib, ratio, secs, verdict, Samples, Table};

/// One query, as library arguments and as CLI arguments.
pub(crate) struct Q {
    pub name: &'static str,
    pub query: EventQuery,
    /// CLI arguments after `events MILESTONE`.
    pub args: Vec<String>,
    /// Lines it must return.
    pub expect: u64,
}

/// The queries of a generated log of `n` events (see the module doc).
pub(crate) fn queries(n: u64) -> Vec<Q> {
    let since = loggen::timestamp(n.saturating_sub(50));
    let until = loggen::timestamp(n.saturating_sub(100));
    let parse = |s: &str| s.parse::<jiff::Timestamp>().expect("valid timestamp");
    vec![
        Q {
            name: "--tail 50",
            query: EventQuery {
                tail: Some(50),
                ..Default::default()
            },
            args: vec!["--tail".into(), "50".into()],
            expect: n.min(50),
        },
        Q {
            name: "--since (last 50)",
            query: EventQuery {
                since: Some(parse(&since)),
                ..Default::default()
            },
            args: vec!["--since".into(), since],
            expect: n.min(50),
        },
        Q {
            name: "--until (end - 100) --tail 50",
            query: EventQuery {
                until: Some(parse(&until)),
                tail: Some(50),
                ..Default::default()
            },
            args: vec!["--until".into(), until, "--tail".into(), "50".into()],
            expect: n.saturating_sub(99).min(50),
        },
        Q {
            name: "--type rare (full scan)",
            query: EventQuery {
                types: vec!["rare".into()],
                ..Default::default()
            },
            args: vec!["--type".into(), "rare".into()],
            expect: n / 1000,
        },
    ]
}

/// Measurements of one query on one log.
#[derive(Default)]
struct M {
    lib: Samples,
    lib_peak_kib: u64,
    cli: Samples,
    cli_peak_kib: u64,
    sql: Samples,
}

/// A generated log and its store.
struct Log {
    n: u64,
    bytes: u64,
    dir: PathBuf,
    store: FsStore,
    sql: Option<Sql>,
}

fn open_sql(n: u64, log: &Path) -> Result<Sql, String> {
    let dir = crate::data::target_dir().join("bench-data");
    let path = dir.join(format!("loggen-{n}.sqlite"));
    let marker = dir.join(format!("loggen-{n}.sqlite.complete"));
    if !marker.exists() {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
        let start = std::time::Instant::now();
        let db = Sql::open(&path)?;
        let rows = db.import_log(log)?;
        drop(db);
        std::fs::write(&marker, format!("{rows}\n")).map_err(|e| e.to_string())?;
        eprintln!(
            "query: imported {rows} events into SQLite in {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    Sql::open(&path)
}

/// Run the library query on milestone `m`, returning the lines it produced.
fn lib_query(store: &FsStore, q: &EventQuery) -> Result<u64, String> {
    let id = MilestoneId::new("m").map_err(|e| e.to_string())?;
    events_of(store, &id, q)
}

/// Run a query on the events of `id` in any store, returning the lines it
/// produced (each line's bytes are touched, as a reader would).
pub(crate) fn events_of(
    store: &dyn Store,
    id: &MilestoneId,
    q: &EventQuery,
) -> Result<u64, String> {
    let mut lines = 0u64;
    let mut total = 0usize;
    store
        .events(id, q, &mut |l| {
            lines += 1;
            total += l.line()?.len();
            Ok(true)
        })
        .map_err(|e| e.to_string())?;
    std::hint::black_box(total);
    Ok(lines)
}

fn sql_query(db: &Sql, i: usize, n: u64) -> Result<usize, String> {
    match i {
        0 => db.tail(50),
        1 => db.since(&loggen::timestamp(n.saturating_sub(50))),
        2 => db.until_tail(&loggen::timestamp(n.saturating_sub(100)), 50),
        _ => db.by_type("rare"),
    }
}

/// Peak RSS (KiB) of a fresh process of this binary that opens the store
/// and runs query `qi` once (`query-rss`).
fn lib_peak(dir: &Path, n: u64, qi: usize) -> Result<u64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .arg("query-rss")
        .arg(dir)
        .args([n.to_string(), qi.to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "query-rss failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| "bad query-rss output".to_string())
}

/// Body of `query-rss`: run query `qi` of a log of `n` events in `dir`
/// once and print this process's peak RSS in KiB.
pub fn query_rss(dir: &Path, n: u64, qi: usize) -> Result<(), String> {
    let store = FsStore::open(dir.join(".milestones/state"), FsOptions::default())
        .map_err(|e| e.to_string())?;
    let q = queries(n).into_iter().nth(qi).ok_or("no such query")?;
    lib_query(&store, &q.query)?;
    println!("{}", procs::status_kib("VmHWM").unwrap_or(0));
    Ok(())
}

/// Options of a query-scale run.
pub struct Opts<'a> {
    pub counts: Vec<u64>,
    pub runs: usize,
    pub scan_runs: usize,
    pub mstate: Option<&'a Path>,
    pub sqlite: bool,
}

/// Measure every query at every log size; markdown out.
pub fn run(o: &Opts<'_>) -> Result<String, String> {
    let mut logs = Vec::new();
    for &n in &o.counts {
        let g = loggen::ensure(n).map_err(|e| format!("generating {n} events: {e}"))?;
        let store = FsStore::open(g.dir.join(".milestones/state"), FsOptions::default())
            .map_err(|e| e.to_string())?;
        let sql = if o.sqlite {
            Some(open_sql(n, &g.log)?)
        } else {
            None
        };
        logs.push(Log {
            n,
            bytes: g.bytes,
            dir: g.dir,
            store,
            sql,
        });
    }
    // results[log][query]
    let mut results: Vec<Vec<M>> = Vec::new();
    for log in &logs {
        eprintln!("query: {} events", count(log.n));
        let mut per = Vec::new();
        for (qi, q) in queries(log.n).iter().enumerate() {
            let runs = if qi == 3 { o.scan_runs } else { o.runs }.max(1);
            let mut m = M::default();
            // Warm the page cache and check the answer.
            let got = lib_query(&log.store, &q.query)?;
            if got != q.expect {
                return Err(format!(
                    "{} on {} events returned {got} lines, expected {}",
                    q.name, log.n, q.expect
                ));
            }
            for i in 0..runs {
                // Interleave library, CLI and SQLite runs.
                for j in 0..3 {
                    match (i + j) % 3 {
                        0 => {
                            m.lib.time(|| lib_query(&log.store, &q.query))?;
                        }
                        1 => {
                            if let Some(bin) = o.mstate {
                                let mut c = procs::quiet(bin);
                                c.current_dir(&log.dir)
                                    .env_remove("MSTATE_DIR")
                                    .args(["events", "m"])
                                    .args(&q.args);
                                m.cli.push(procs::run_ok(&mut c)?.wall);
                                if i == 0 {
                                    m.cli_peak_kib = procs::peak_rss(&c, None)?;
                                }
                            }
                        }
                        _ => {
                            if let Some(db) = &log.sql {
                                m.sql.time(|| sql_query(db, qi, log.n))?;
                            }
                        }
                    }
                }
            }
            m.lib_peak_kib = lib_peak(&log.dir, log.n, qi)?;
            per.push(m);
        }
        results.push(per);
    }
    let mut md = render(&logs, &results, o);
    md.push_str(&run_scans(&logs, o)?);
    Ok(md)
}

fn render(logs: &[Log], results: &[Vec<M>], o: &Opts<'_>) -> String {
    let mut md = String::new();
    let names: Vec<&str> = queries(1000).iter().map(|q| q.name).collect();
    for (qi, name) in names.iter().enumerate() {
        let _ = writeln!(md, "\n#### `{name}`\n");
        let mut t = Table::new(&[
            ">events",
            ">log size",
            ">library",
            ">CLI (whole process)",
            ">SQLite",
            ">library peak RSS (process)",
            ">CLI peak RSS",
        ]);
        for (li, log) in logs.iter().enumerate() {
            let m = &results[li][qi];
            t.row(vec![
                count(log.n),
                bytes(log.bytes),
                secs(m.lib.median()),
                if o.mstate.is_some() {
                    secs(m.cli.median())
                } else {
                    "-".into()
                },
                if o.sqlite {
                    secs(m.sql.median())
                } else {
                    "-".into()
                },
                mib(m.lib_peak_kib),
                if o.mstate.is_some() {
                    mib(m.cli_peak_kib)
                } else {
                    "-".into()
                },
            ]);
        }
        md.push_str(&t.render());
    }
    // Budgets.
    let (Some(small), Some(big)) = (logs.first(), logs.last()) else {
        return md;
    };
    let (si, bi) = (0, logs.len() - 1);
    let _ = writeln!(
        md,
        "\n#### Budgets ({} vs {} events)\n",
        count(big.n),
        count(small.n)
    );
    let mut t = Table::new(&["check", ">measured", "budget", "verdict"]);
    for qi in [0usize, 1] {
        let (a, b) = (&results[bi][qi], &results[si][qi]);
        let lib = a.lib.median() / b.lib.median().max(f64::MIN_POSITIVE);
        t.row(vec![
            format!("`{}` library, largest / smallest log", names[qi]),
            ratio(a.lib.median(), b.lib.median()),
            "<= 2x".into(),
            verdict(lib <= 2.0).into(),
        ]);
        if o.mstate.is_some() {
            let cli = a.cli.median() / b.cli.median().max(f64::MIN_POSITIVE);
            t.row(vec![
                format!("`{}` CLI, largest / smallest log", names[qi]),
                ratio(a.cli.median(), b.cli.median()),
                "<= 2x".into(),
                verdict(cli <= 2.0).into(),
            ]);
        }
    }
    let scan = &results[bi][3];
    let lib_rate = big.bytes as f64 / scan.lib.median().max(f64::MIN_POSITIVE) / 1e6;
    t.row(vec![
        format!("full filtered scan, library, {}", bytes(big.bytes)),
        format!("{lib_rate:.0} MB/s"),
        ">= 500 MB/s".into(),
        verdict(lib_rate >= 500.0).into(),
    ]);
    if o.mstate.is_some() {
        let cli_rate = big.bytes as f64 / scan.cli.median().max(f64::MIN_POSITIVE) / 1e6;
        t.row(vec![
            format!("full filtered scan, CLI, {}", bytes(big.bytes)),
            format!("{cli_rate:.0} MB/s"),
            ">= 500 MB/s".into(),
            verdict(cli_rate >= 500.0).into(),
        ]);
    }
    if o.sqlite {
        let rate = big.bytes as f64 / scan.sql.median().max(f64::MIN_POSITIVE) / 1e6;
        t.row(vec![
            "full filtered scan, SQLite (same events; MB of JSONL per second)".into(),
            format!("{rate:.0} MB/s"),
            "(reference)".into(),
            "-".into(),
        ]);
    }
    let lib_peak = results
        .iter()
        .flatten()
        .map(|m| m.lib_peak_kib)
        .max()
        .unwrap_or(0);
    let cli_peak = results
        .iter()
        .flatten()
        .map(|m| m.cli_peak_kib)
        .max()
        .unwrap_or(0);
    t.row(vec![
        "peak RSS of any query, library (a process running one query)".into(),
        mib(lib_peak),
        "< 64 MB".into(),
        verdict(lib_peak * 1024 < 64_000_000).into(),
    ]);
    if o.mstate.is_some() {
        t.row(vec![
            "peak RSS of any query, CLI".into(),
            mib(cli_peak),
            "< 64 MB".into(),
            verdict(cli_peak * 1024 < 64_000_000).into(),
        ]);
    }
    md.push_str(&t.render());
    let _ = writeln!(
        md,
        "\nMedians of {} runs ({} for the full scan), library, CLI and SQLite interleaved; logs in the page cache.",
        o.runs, o.scan_runs
    );
    md
}

/// The seed's functions, for its timeline.
const SEED: &str = include_str!("../../../tests/fixtures/seed_original.sh");

/// Largest log the seed's timeline is run on (it holds the whole log in
/// Python objects: about 10 s and 2 GB per million events).
const SEED_MAX: u64 = 1_000_000;

/// Logs at least this large get at most 3 runs per whole-log scan.
const LONG_LOG: u64 = 10_000_000;

/// One whole-log scan, as a command.
struct Scan {
    name: &'static str,
    /// Program and arguments; `None` for mstate itself.
    program: Option<&'static str>,
    args: Vec<String>,
    /// Output to a file (grep writes nothing when stdout is /dev/null).
    to_file: bool,
}

fn scans(n: u64, log: &Path, have_python: bool) -> Vec<Scan> {
    let m = |name, args: &[&str]| Scan {
        name,
        program: None,
        args: args.iter().map(|s| s.to_string()).collect(),
        to_file: false,
    };
    let mut v = vec![
        m("events (jsonl)", &["events", "m"]),
        m("events --format json", &["events", "m", "--format", "json"]),
        m("events --format text", &["events", "m", "--format", "text"]),
        m("timeline (text)", &["timeline", "m"]),
        m(
            "timeline --format json",
            &["timeline", "m", "--format", "json"],
        ),
        m(
            "timeline --format markdown",
            &["timeline", "m", "--format", "markdown"],
        ),
        m("events --type rare", &["events", "m", "--type", "rare"]),
    ];
    let path = log.display().to_string();
    v.push(Scan {
        name: "grep -c '\"event_type\":\"rare\"'",
        program: Some("grep"),
        args: vec!["-c".into(), "\"event_type\":\"rare\"".into(), path.clone()],
        to_file: true,
    });
    v.push(Scan {
        name: "grep '\"event_type\":\"rare\"' (the seed's filter)",
        program: Some("grep"),
        args: vec!["\"event_type\":\"rare\"".into(), path],
        to_file: true,
    });
    if have_python && n <= SEED_MAX {
        for format in ["text", "json"] {
            v.push(Scan {
                name: if format == "text" {
                    "seed: generate_event_timeline m text"
                } else {
                    "seed: generate_event_timeline m json"
                },
                program: Some("bash"),
                args: vec![
                    "-c".into(),
                    format!("{SEED}\ngenerate_event_timeline m {format}"),
                ],
                to_file: false,
            });
        }
    }
    v
}

/// Wall and CPU (user + system) time of scans of one log.
#[derive(Default)]
struct ScanM {
    wall: Samples,
    cpu: Samples,
    peak_kib: u64,
}

/// Run `cmd`, returning its wall and CPU time; it must exit 0.
fn timed(cmd: &mut std::process::Command) -> Result<(Duration, Duration), String> {
    let what = format!("{:?}", cmd.get_program());
    let ran = procs::run(cmd).map_err(|e| format!("cannot run {what}: {e}"))?;
    if !ran.ok() {
        return Err(format!("{what} failed (wait status {})", ran.status));
    }
    Ok((ran.wall, ran.cpu))
}

/// Time every whole-log scan of every log; markdown out.
fn run_scans(logs: &[Log], o: &Opts<'_>) -> Result<String, String> {
    let Some(bin) = o.mstate else {
        return Ok(String::new());
    };
    let have_python = procs::have("python3") && procs::have("bash");
    let out_file = crate::data::target_dir()
        .join("bench-data")
        .join(format!("scan-out-{}", std::process::id()));
    let mut md = String::new();
    let _ = writeln!(md, "\n#### Whole-log scans: `events` and `timeline`\n");
    let mut t = Table::new(&[
        "command",
        ">events",
        ">wall (median)",
        ">wall range",
        ">CPU (median)",
        ">CPU per event",
        ">peak RSS",
    ]);
    // (log index, scan name) -> measurements, for the goals.
    let mut all: Vec<(usize, &'static str, ScanM)> = Vec::new();
    for (li, log) in logs.iter().enumerate() {
        let path = log.dir.join(".milestones/state/events/milestone-m.jsonl");
        let list = scans(log.n, &path, have_python);
        let runs = if log.n >= LONG_LOG {
            o.scan_runs.min(3)
        } else {
            o.scan_runs
        }
        .max(1);
        eprintln!("query: whole-log scans of {} events", count(log.n));
        let mut ms: Vec<ScanM> = list.iter().map(|_| ScanM::default()).collect();
        let command = |s: &Scan| -> Result<std::process::Command, String> {
            let mut c = procs::quiet(s.program.map_or(bin.as_os_str(), std::ffi::OsStr::new));
            c.current_dir(&log.dir)
                .env_remove("MSTATE_DIR")
                .args(&s.args);
            if s.to_file {
                let f = std::fs::File::create(&out_file).map_err(|e| e.to_string())?;
                c.stdout(f);
            }
            Ok(c)
        };
        // Each round runs every scan once, so load on the machine hits
        // them alike.
        for _ in 0..runs {
            for (s, m) in list.iter().zip(ms.iter_mut()) {
                let (wall, cpu) = timed(&mut command(s)?)?;
                m.wall.push(wall);
                m.cpu.push(cpu);
            }
        }
        for (s, m) in list.iter().zip(ms.iter_mut()) {
            m.peak_kib = procs::peak_rss(&command(s)?, None)?;
        }
        for (s, m) in list.iter().zip(ms) {
            t.row(vec![
                format!("`{}`", s.name),
                count(log.n),
                secs(m.wall.median()),
                format!(
                    "{} - {}",
                    secs(m.wall.quantile(0.0)),
                    secs(m.wall.quantile(1.0))
                ),
                secs(m.cpu.median()),
                secs(m.cpu.median() / log.n.max(1) as f64),
                mib(m.peak_kib),
            ]);
            all.push((li, s.name, m));
        }
    }
    let _ = std::fs::remove_file(&out_file);
    md.push_str(&t.render());
    let _ = writeln!(
        md,
        "\n{} rounds per log ({} for logs of {} events or more), every scan once per round; output to /dev/null (grep's to a file: it stops at the first match when its output is /dev/null). CPU is user + system time of the process.",
        o.scan_runs,
        o.scan_runs.min(3),
        count(LONG_LOG)
    );
    md.push_str(&scan_goals(logs, &all));
    Ok(md)
}

fn scan_goals(logs: &[Log], all: &[(usize, &'static str, ScanM)]) -> String {
    let get = |li: usize, name: &str| {
        all.iter()
            .find(|(l, n, _)| *l == li && *n == name)
            .map(|x| &x.2)
    };
    let mut t = Table::new(&["check", ">measured", "goal", "verdict"]);
    let (Some(_), Some(big)) = (logs.first(), logs.last()) else {
        return String::new();
    };
    let bi = logs.len() - 1;
    if let (Some(ours), Some(grep)) = (
        get(bi, "events --type rare"),
        get(bi, "grep -c '\"event_type\":\"rare\"'"),
    ) {
        for (what, a, b) in [
            ("wall", ours.wall.median(), grep.wall.median()),
            ("CPU", ours.cpu.median(), grep.cpu.median()),
        ] {
            t.row(vec![
                format!(
                    "`events --type rare` / `grep -c`, {}, {} events",
                    what,
                    count(big.n)
                ),
                ratio(a, b),
                "<= 1.5x".into(),
                verdict(a <= 1.5 * b).into(),
            ]);
        }
    }
    for (li, log) in logs.iter().enumerate() {
        for (ours, seed) in [
            ("timeline (text)", "seed: generate_event_timeline m text"),
            (
                "timeline --format json",
                "seed: generate_event_timeline m json",
            ),
        ] {
            if let (Some(a), Some(s)) = (get(li, ours), get(li, seed)) {
                for (what, x, y) in [
                    ("wall", a.wall.median(), s.wall.median()),
                    ("CPU", a.cpu.median(), s.cpu.median()),
                ] {
                    t.row(vec![
                        format!(
                            "seed's timeline / `{ours}`, {what}, {} events",
                            count(log.n)
                        ),
                        ratio(y, x),
                        ">= 10x".into(),
                        verdict(y >= 10.0 * x).into(),
                    ]);
                }
            }
        }
    }
    // Linear: CPU per event of the largest log against the smallest of at
    // least 100,000 events (smaller ones are start-up bound).
    if let Some(si) = logs
        .iter()
        .position(|l| l.n >= 100_000)
        .filter(|&si| si < bi)
    {
        for name in [
            "timeline (text)",
            "timeline --format json",
            "timeline --format markdown",
            "events --format json",
        ] {
            if let (Some(a), Some(b)) = (get(bi, name), get(si, name)) {
                let pa = a.cpu.median() / big.n as f64;
                let pb = b.cpu.median() / logs[si].n as f64;
                t.row(vec![
                    format!(
                        "`{name}` CPU per event, {} / {} events",
                        count(big.n),
                        count(logs[si].n)
                    ),
                    ratio(pa, pb),
                    "<= 1.5x (linear)".into(),
                    verdict(pa <= 1.5 * pb).into(),
                ]);
            }
        }
    }
    let peak = all
        .iter()
        .filter(|(_, n, _)| !n.starts_with("seed") && !n.starts_with("grep"))
        .map(|x| x.2.peak_kib)
        .max()
        .unwrap_or(0);
    t.row(vec![
        "peak RSS of any `events` or `timeline` scan".into(),
        mib(peak),
        "< 64 MB".into(),
        verdict(peak * 1024 < 64_000_000).into(),
    ]);
    format!("\n#### Goals of the whole-log scans\n\n{}", t.render())
}
