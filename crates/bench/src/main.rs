//! `mstate-bench`: how far mstate is from what its work fundamentally
//! costs, and from SQLite.
//!
//! Each operation is measured against an **I/O floor** (the same system
//! calls on the same files with no other logic, see [`floor`]), through the
//! **library** (`FsStore`), as a **whole CLI process** against a minimal
//! read-and-print binary, and on **SQLite** (WAL, `synchronous=FULL`). All
//! comparisons are ratios of medians measured in the same run, interleaved,
//! because the machine is shared and noisy. `all` runs everything and
//! writes the markdown tables `scripts/bench.sh` prints.
//!
//! Benchmark files live under `target/bench-work/` (scratch, removed after
//! each part) and `target/bench-data/` (generated logs, kept and reused):
//! on real disk, never on a tmpfs `/tmp`.

mod backends;
mod cli;
mod compare;
mod contention;
mod data;
mod floor;
mod libops;
mod loggen;
mod procs;
mod query;
mod rivals;
mod sqlite;
mod stats;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mstate-bench",
    about = "Benchmarks of mstate against its I/O floor and SQLite"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where the binaries under test are (defaults: beside this one).
#[derive(clap::Args, Clone)]
struct BinArgs {
    /// The `mstate` binary.
    #[arg(long)]
    mstate: Option<PathBuf>,
    /// The read-and-print binary.
    #[arg(long)]
    cat: Option<PathBuf>,
}

impl BinArgs {
    fn bins(&self) -> Result<cli::Bins, String> {
        let here = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        let mstate = self.mstate.clone().unwrap_or_else(|| here.join("mstate"));
        let cat = self
            .cat
            .clone()
            .unwrap_or_else(|| here.join("mstate-bench-cat"));
        for p in [&mstate, &cat] {
            if !p.is_file() {
                return Err(format!(
                    "{} not found: build it first (cargo build --release --workspace)",
                    p.display()
                ));
            }
        }
        // Commands run in other directories: make the paths absolute.
        let abs =
            |p: PathBuf| std::fs::canonicalize(&p).map_err(|e| format!("{}: {e}", p.display()));
        Ok(cli::Bins {
            mstate: abs(mstate)?,
            cat: abs(cat)?,
        })
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Everything, as markdown (what scripts/bench.sh runs).
    All {
        /// Tiny sizes and few iterations: a smoke test, not a measurement.
        #[arg(long)]
        quick: bool,
        /// Also write the markdown here.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        bins: BinArgs,
    },
    /// Floor vs library vs SQLite for each operation, and peak RSS.
    Compare {
        #[arg(long, default_value = "1KB,100KB,5MB")]
        sizes: String,
        /// Samples per operation, per size.
        #[arg(long, default_value = "300,100,15")]
        iters: String,
    },
    /// Whole `mstate` processes against the read-and-print binary.
    Cli {
        #[arg(long, default_value = "1KB,100KB,5MB")]
        sizes: String,
        #[arg(long, default_value_t = 30)]
        runs: usize,
        #[command(flatten)]
        bins: BinArgs,
    },
    /// Whole `mstate save`/`load` processes against a C floor, the seed
    /// and the sqlite3 CLI: medians of paired ratios over several runs.
    Rivals {
        #[arg(long, default_value = "1KB,5MB")]
        sizes: String,
        /// Rounds per run (each contender once per round).
        #[arg(long, default_value_t = 15)]
        rounds: usize,
        /// Runs (a median and range is taken over them).
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        #[command(flatten)]
        bins: BinArgs,
    },
    /// Processes saving one milestone / appending to one log at once.
    Contention {
        #[arg(long, default_value = "1,2,4,8")]
        procs: String,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        #[arg(long, default_value = "1KB")]
        size: String,
        /// Measure SQLite too.
        #[arg(long)]
        sqlite: bool,
    },
    /// Durable appends through `mstate log` processes.
    AppendRate {
        #[arg(long, default_value = "1,8")]
        procs: String,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        #[command(flatten)]
        bins: BinArgs,
    },
    /// The file store and PostgreSQL side by side (a fresh schema of the
    /// server at MSTATE_BENCH_PG_URL, else MSTATE_TEST_PG_URL, else
    /// postgresql://postgres@127.0.0.1:5432/test).
    Backends {
        /// Tiny sizes and few samples: a smoke test, not a measurement.
        #[arg(long)]
        quick: bool,
        /// Log sizes of the event queries (default 1K, 100K, 1M; quick:
        /// 1K, 10K).
        #[arg(long)]
        events: Option<String>,
        /// Runs (default 5; quick: 2).
        #[arg(long)]
        runs: Option<usize>,
        #[command(flatten)]
        bins: BinArgs,
    },
    /// Generate (or reuse) an event log under target/bench-data/.
    Loggen {
        #[arg(long)]
        events: String,
    },
    /// Event queries at each log size.
    Query {
        #[arg(long, default_value = "1000,1000000,10000000")]
        events: String,
        #[arg(long, default_value_t = 15)]
        runs: usize,
        #[arg(long, default_value_t = 3)]
        scan_runs: usize,
        /// Measure SQLite too (imports each log once).
        #[arg(long)]
        sqlite: bool,
        /// Skip the CLI.
        #[arg(long)]
        no_cli: bool,
        #[command(flatten)]
        bins: BinArgs,
    },
    /// System calls per operation (strace, when installed).
    Syscalls {
        #[command(flatten)]
        bins: BinArgs,
    },
    /// Instruction counts of whole processes (valgrind, when installed).
    Callgrind {
        #[arg(long, default_value = "1KB")]
        sizes: String,
        #[command(flatten)]
        bins: BinArgs,
    },
    /// (internal) Peak RSS of one operation in a fresh process.
    #[command(hide = true)]
    RssOp {
        imp: String,
        op: String,
        root: PathBuf,
        data: PathBuf,
    },
    /// (internal) Peak RSS of a process running one query.
    #[command(hide = true)]
    QueryRss { dir: PathBuf, n: u64, qi: usize },
    /// (internal) Run a library operation N times.
    #[command(hide = true)]
    LibOp { op: String, root: PathBuf, n: usize },
    /// (internal) A worker of the backends' contention rows.
    #[command(hide = true)]
    BackendWorker {
        location: String,
        milestone: String,
        k: usize,
    },
    /// (internal) A contention worker.
    #[command(hide = true)]
    Worker {
        imp: String,
        op: String,
        root: PathBuf,
        size: usize,
        start_ms: u64,
        end_ms: u64,
    },
}

fn list(s: &str) -> Result<Vec<usize>, String> {
    data::parse_list(s)
}

/// Parameters of a full or quick run of everything.
struct Plan {
    sizes: Vec<usize>,
    iters: Vec<usize>,
    warm: bool,
    cli_runs: usize,
    rival_sizes: Vec<usize>,
    rival_rounds: usize,
    rival_repeat: usize,
    callgrind_sizes: Vec<usize>,
    procs: Vec<usize>,
    secs: f64,
    events: Vec<u64>,
    query_runs: usize,
    scan_runs: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                sizes: vec![1_000, 100_000],
                iters: vec![5, 3],
                warm: false,
                cli_runs: 3,
                rival_sizes: vec![1_000],
                rival_rounds: 2,
                rival_repeat: 1,
                callgrind_sizes: vec![1_000],
                procs: vec![1, 8],
                secs: 0.3,
                events: vec![1_000, 10_000],
                query_runs: 3,
                scan_runs: 2,
            }
        } else {
            Plan {
                sizes: vec![1_000, 100_000, 5_000_000],
                iters: vec![300, 100, 15],
                warm: true,
                cli_runs: 30,
                rival_sizes: vec![1_000, 5_000_000],
                rival_rounds: 15,
                rival_repeat: 5,
                callgrind_sizes: vec![1_000, 100_000, 5_000_000],
                procs: vec![1, 2, 4, 8],
                secs: 3.0,
                events: vec![1_000, 1_000_000, 10_000_000],
                query_runs: 15,
                scan_runs: 3,
            }
        }
    }
}

fn all(quick: bool, out: Option<&Path>, bins: &BinArgs) -> Result<(), String> {
    let b = bins.bins()?;
    let p = Plan::new(quick);
    let started = Instant::now();
    let mut md = String::new();
    let section = |md: &mut String, title: &str, body: &str| {
        let _ = writeln!(md, "\n### {title}\n\n{}", body.trim_start());
        print!("\n### {title}\n\n{}", body.trim_start());
    };
    let target = data::target_dir();
    let head = format!(
        "## mstate benchmark results{}\n\nMachine: {}; benchmark files on {} ({}).\n",
        if quick {
            " (quick smoke run: tiny sizes and few samples; the figures mean nothing)"
        } else {
            ""
        },
        procs::machine(),
        procs::fs_type(&target),
        target.display()
    );
    print!("{head}");
    md.push_str(&head);

    let cmp = compare::compare(&p.sizes, &p.iters, p.warm)?;
    section(
        &mut md,
        "Each operation: I/O floor, library, SQLite (in process)",
        &compare::render(&cmp),
    );
    section(
        &mut md,
        "Where the library's CPU time goes (each step alone)",
        &compare::breakdown(&p.sizes, &p.iters)?,
    );
    section(
        &mut md,
        "The floor's system calls per operation",
        &compare::render_floor_calls(&cmp[0]),
    );
    section(
        &mut md,
        "Peak RSS of save and load (each in a fresh process)",
        &compare::rss_table(&p.sizes)?,
    );
    section(
        &mut md,
        "Whole CLI processes",
        &cli::whole_process(&b, &p.sizes, p.cli_runs)?,
    );
    let r = rivals::Opts {
        sizes: p.rival_sizes.clone(),
        rounds: p.rival_rounds,
        repeat: p.rival_repeat,
        mstate: &b.mstate,
    };
    section(
        &mut md,
        "Whole processes against a C floor, the seed and the sqlite3 CLI",
        &rivals::run(&r)?,
    );
    section(
        &mut md,
        "System calls per operation",
        &cli::syscalls(&b, &cmp[0].floor_calls)?,
    );
    section(
        &mut md,
        "Instructions per process (callgrind)",
        &cli::callgrind(&b, &p.callgrind_sizes)?,
    );
    let c = contention::Opts {
        procs: p.procs.clone(),
        secs: p.secs,
        size: 1_000,
        sqlite: true,
        floor: true,
    };
    section(
        &mut md,
        "Contention (library processes)",
        &contention::run(&c)?,
    );
    section(
        &mut md,
        "Durable appends through `mstate log` processes",
        &cli::append_rate(&b, &[1, 8], p.secs)?,
    );
    let q = query::Opts {
        counts: p.events.clone(),
        runs: p.query_runs,
        scan_runs: p.scan_runs,
        mstate: Some(&b.mstate),
        sqlite: true,
    };
    section(&mut md, "Event queries by log size", &query::run(&q)?);
    section(
        &mut md,
        "Both backends: file store and PostgreSQL",
        &backends::run(&backends::Opts::plan(quick, &b.mstate))?,
    );
    let tail = format!(
        "\nAll parts ran in {:.0} s.\n",
        started.elapsed().as_secs_f64()
    );
    print!("{tail}");
    md.push_str(&tail);
    if let Some(path) = out {
        std::fs::write(path, &md).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn run(args: Args) -> Result<(), String> {
    match args.cmd {
        Cmd::All { quick, out, bins } => all(quick, out.as_deref(), &bins),
        Cmd::Compare { sizes, iters } => {
            let sizes = list(&sizes)?;
            let r = compare::compare(&sizes, &list(&iters)?, true)?;
            print!("{}", compare::render(&r));
            if let Some(first) = r.first() {
                print!("\n{}", compare::render_floor_calls(first));
            }
            print!("\n{}", compare::rss_table(&sizes)?);
            print!("\n{}", compare::breakdown(&sizes, &list(&iters)?)?);
            Ok(())
        }
        Cmd::Cli { sizes, runs, bins } => {
            print!(
                "{}",
                cli::whole_process(&bins.bins()?, &list(&sizes)?, runs)?
            );
            Ok(())
        }
        Cmd::Rivals {
            sizes,
            rounds,
            repeat,
            bins,
        } => {
            let b = bins.bins()?;
            let o = rivals::Opts {
                sizes: list(&sizes)?,
                rounds,
                repeat,
                mstate: &b.mstate,
            };
            print!("{}", rivals::run(&o)?);
            Ok(())
        }
        Cmd::Contention {
            procs,
            secs,
            size,
            sqlite,
        } => {
            let o = contention::Opts {
                procs: list(&procs)?,
                secs,
                size: data::parse_size(&size)?,
                sqlite,
                floor: true,
            };
            print!("{}", contention::run(&o)?);
            Ok(())
        }
        Cmd::AppendRate { procs, secs, bins } => {
            print!("{}", cli::append_rate(&bins.bins()?, &list(&procs)?, secs)?);
            Ok(())
        }
        Cmd::Backends {
            quick,
            events,
            runs,
            bins,
        } => {
            let b = bins.bins()?;
            let mut o = backends::Opts::plan(quick, &b.mstate);
            if let Some(e) = events {
                o.events = list(&e)?.into_iter().map(|n| n as u64).collect();
            }
            if let Some(r) = runs {
                o.runs = r;
            }
            print!("{}", backends::run(&o)?);
            Ok(())
        }
        Cmd::BackendWorker {
            location,
            milestone,
            k,
        } => backends::worker(&location, &milestone, k),
        Cmd::Loggen { events } => {
            for n in list(&events)? {
                let g = loggen::ensure(n as u64).map_err(|e| e.to_string())?;
                println!("{} ({})", g.log.display(), stats::bytes(g.bytes));
            }
            Ok(())
        }
        Cmd::Query {
            events,
            runs,
            scan_runs,
            sqlite,
            no_cli,
            bins,
        } => {
            let b = if no_cli { None } else { Some(bins.bins()?) };
            let o = query::Opts {
                counts: list(&events)?.into_iter().map(|n| n as u64).collect(),
                runs,
                scan_runs,
                mstate: b.as_ref().map(|b| b.mstate.as_path()),
                sqlite,
            };
            print!("{}", query::run(&o)?);
            Ok(())
        }
        Cmd::Syscalls { bins } => {
            let floor = compare::compare(&[1_000], &[1], false)?;
            print!("{}", cli::syscalls(&bins.bins()?, &floor[0].floor_calls)?);
            Ok(())
        }
        Cmd::Callgrind { sizes, bins } => {
            print!("{}", cli::callgrind(&bins.bins()?, &list(&sizes)?)?);
            Ok(())
        }
        Cmd::RssOp {
            imp,
            op,
            root,
            data,
        } => compare::rss_op(&imp, &op, &root, &data),
        Cmd::QueryRss { dir, n, qi } => query::query_rss(&dir, n, qi),
        Cmd::LibOp { op, root, n } => cli::lib_op(&op, &root, n),
        Cmd::Worker {
            imp,
            op,
            root,
            size,
            start_ms,
            end_ms,
        } => contention::worker(&imp, &op, &root, size, start_ms, end_ms),
    }
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mstate-bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}
