//! Contention: 1, 2, 4, 8 processes saving the same milestone, or
//! appending to the same log, for a fixed time; aggregate operations per
//! second. Workers are processes of this binary (`worker` subcommand) using
//! the library (or SQLite); they start together at an agreed instant. After
//! each run the store is checked: every acknowledged append is in the log
//! once with `seq` without gaps, and the revision counts every save.

use mstate_store::prelude::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mstate_store::model::EventQuery;
use mstate_store::{FsOptions, FsStore, MilestoneId};

use crate::data;
use crate::floor::Floor;
use crate::libops::Lib;
use crate::sqlite::Sql;
use crate::stats::{count, ratio, verdict, Table};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Body of a worker process: run `op` from `start_ms` until `end_ms`
/// (Unix milliseconds) and print `<ops finished in the window> <ops done>`.
pub fn worker(
    imp: &str,
    op: &str,
    root: &Path,
    size: usize,
    start_ms: u64,
    end_ms: u64,
) -> Result<(), String> {
    let state = data::state(size);
    let data = data::progress_data(std::process::id() as u64);
    let mut lib = if imp == "lib" {
        Some(Lib::open(root)?)
    } else {
        None
    };
    let sql = if imp == "sqlite" {
        Some(Sql::open(root)?)
    } else {
        None
    };
    let mut fl = imp.starts_with("floor").then(|| Floor::open(root));
    let line = data::event_line("progress", &data, 1);
    let wait = start_ms.saturating_sub(now_ms());
    std::thread::sleep(Duration::from_millis(wait));
    let (mut in_window, mut done) = (0u64, 0u64);
    while now_ms() < end_ms {
        match (op, lib.as_mut(), &sql, fl.as_mut()) {
            ("save", Some(l), _, _) => l.save(&state).map(drop)?,
            ("log", Some(l), _, _) => l.log(&data).map(drop)?,
            ("save", _, Some(q), _) => q.save(&state).map(drop)?,
            ("log", _, Some(q), _) => q.log(&data).map(drop)?,
            ("log", _, _, Some(f)) if imp == "floor" => {
                f.append(&line).map_err(|e| e.to_string())?
            }
            ("log", _, _, Some(f)) => f.append_sync_under_lock(&line).map_err(|e| e.to_string())?,
            _ => return Err(format!("unknown worker {imp} {op}")),
        }
        done += 1;
        if now_ms() <= end_ms {
            in_window += 1;
        }
    }
    println!("{in_window} {done}");
    Ok(())
}

/// Events in the log of `m`, checking `seq` runs 1, 2, 3, ... without gaps.
pub fn check_log(root: &Path) -> Result<u64, String> {
    let store = FsStore::open(root, FsOptions::default()).map_err(|e| e.to_string())?;
    let id = MilestoneId::new("m").map_err(|e| e.to_string())?;
    let mut n = 0u64;
    let mut bad = None;
    store
        .events(&id, &EventQuery::default(), &mut |l| {
            n += 1;
            if l.seq != n && bad.is_none() {
                bad = Some((n, l.seq));
            }
            Ok(true)
        })
        .map_err(|e| e.to_string())?;
    match bad {
        Some((want, got)) => Err(format!("event {want} of the log has seq {got}")),
        None => Ok(n),
    }
}

/// Options of a contention run.
pub struct Opts {
    pub procs: Vec<usize>,
    pub secs: f64,
    pub size: usize,
    pub sqlite: bool,
    /// Measure the floor's append (and the variant syncing under the lock).
    pub floor: bool,
}

/// One measured configuration.
struct Run {
    imp: &'static str,
    op: &'static str,
    procs: usize,
    ops: u64,
    secs: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

fn measure(imp: &'static str, op: &'static str, procs: usize, o: &Opts) -> Result<Run, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir =
        data::fresh_dir(&format!("contention-{imp}-{op}-{procs}")).map_err(|e| e.to_string())?;
    let state = data::state(o.size);
    let root = if imp == "lib" {
        let root = dir.join(".milestones/state");
        Lib::create(&root, &state)?;
        root
    } else if imp.starts_with("floor") {
        let root = dir.join("floor");
        Floor::create(&root, &data::state_file("m", 1, &state)).map_err(|e| e.to_string())?;
        root
    } else {
        let db = dir.join("sqlite.db");
        Sql::open(&db)?.save(&state)?;
        db
    };
    // Events and revision before the run: init (1 event) + first save (1).
    let (base_events, base_rev) = (if imp == "lib" { 2 } else { 1 }, 1u64);
    let start = now_ms() + 300 + 20 * procs as u64;
    let end = start + (o.secs * 1000.0) as u64;
    let mut children = Vec::new();
    for _ in 0..procs {
        let child = Command::new(&exe)
            .args(["worker", imp, op])
            .arg(&root)
            .args([o.size.to_string(), start.to_string(), end.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        children.push(child);
    }
    let (mut in_window, mut done) = (0u64, 0u64);
    for c in children {
        let out = c.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("a {imp} {op} worker failed"));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text
            .split_whitespace()
            .map(|x| x.parse::<u64>().unwrap_or(0));
        in_window += it.next().unwrap_or(0);
        done += it.next().unwrap_or(0);
    }
    // Integrity: nothing acknowledged is lost, nothing is doubled.
    match (imp, op) {
        ("lib", "log") => {
            let n = check_log(&root)?;
            if n != base_events + done {
                return Err(format!(
                    "log holds {n} events, expected {}",
                    base_events + done
                ));
            }
        }
        ("lib", "save") => {
            let rev = Lib::open(&root)?.load()?;
            if rev != base_rev + done {
                return Err(format!(
                    "revision {rev} after {done} saves from revision {base_rev}"
                ));
            }
            let n = check_log(&root)?;
            if n != base_events + done {
                return Err(format!(
                    "log holds {n} events, expected {}",
                    base_events + done
                ));
            }
        }
        (f, _) if f.starts_with("floor") => {
            let log =
                std::fs::read(root.join("events/milestone-m.jsonl")).map_err(|e| e.to_string())?;
            let n = log.iter().filter(|&&b| b == b'\n').count() as u64;
            if n != done {
                return Err(format!("floor log holds {n} lines after {done} appends"));
            }
        }
        _ => {
            if op == "save" {
                let rev = Sql::open(&root)?.load()?;
                if rev != base_rev + done {
                    return Err(format!("SQLite revision {rev} after {done} saves"));
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(Run {
        imp,
        op,
        procs,
        ops: in_window,
        secs: (end - start) as f64 / 1000.0,
    })
}

/// Run every configuration; markdown out.
pub fn run(o: &Opts) -> Result<String, String> {
    let mut runs = Vec::new();
    let mut imps: Vec<&'static str> = vec!["lib"];
    if o.floor {
        imps.extend(["floor", "floor-sync-under-lock"]);
    }
    if o.sqlite {
        imps.push("sqlite");
    }
    for &imp in &imps {
        for op in ["save", "log"] {
            if imp.starts_with("floor") && op == "save" {
                continue;
            }
            for &p in &o.procs {
                eprintln!("contention: {imp} {op} from {p} processes");
                runs.push(measure(imp, op, p, o)?);
            }
        }
    }
    let mut t = Table::new(&[
        "implementation",
        "operation",
        ">processes",
        ">operations",
        ">aggregate ops/s",
        ">vs 1 process",
        "budget",
    ]);
    for r in &runs {
        let one = runs
            .iter()
            .find(|x| x.imp == r.imp && x.op == r.op && x.procs == 1)
            .map_or(0.0, Run::rate);
        let budget = match (r.imp, r.op, r.procs) {
            ("lib", "save", 8) => format!(">= 0.7x: {}", verdict(r.rate() >= 0.7 * one)),
            ("lib", "log", 8) => format!(">= 1x: {}", verdict(r.rate() >= one)),
            _ => "-".into(),
        };
        t.row(vec![
            match r.imp {
                "lib" => "mstate library",
                "floor" => "floor (fdatasync after the unlock, as mstate)",
                "floor-sync-under-lock" => {
                    "floor, fdatasync under the flock (as mstate did before)"
                }
                _ => "SQLite",
            }
            .into(),
            r.op.into(),
            r.procs.to_string(),
            count(r.ops),
            format!("{:.0}", r.rate()),
            ratio(r.rate(), one),
            budget,
        ]);
    }
    Ok(format!(
        "{}\nEach row: {:.1} s of every process running the operation back to back on one milestone ({} state); the store was checked afterwards (every append in the log once, `seq` 1..n without gaps; revision = saves).\n",
        t.render(),
        o.secs,
        data::size_name(o.size)
    ))
}
