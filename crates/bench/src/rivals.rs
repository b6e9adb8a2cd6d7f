//! Whole processes side by side: `mstate save`/`load` against what a user
//! would otherwise run, and against a C program making only the system
//! calls the operation needs (the floor, `src/c/floor.c`, compiled here
//! with `cc -O2`).
//!
//! Contenders per operation: the C floor, `mstate`, the seed's bash
//! functions (`tests/fixtures/seed_original.sh`: `cp` for the backup,
//! `python3 -m json.tool` to check, a heredoc, `mv`), and the `sqlite3`
//! CLI (WAL, `synchronous=FULL`; save is the state upsert plus an event
//! insert in one transaction, the state read with `readfile()`; load is a
//! `SELECT`, which prints the text as stored, not pretty). A contender
//! whose tool is missing (`cc`, `sqlite3`, `python3`) is skipped with a
//! note.
//!
//! Method: in each round every contender runs once, in an order rotated
//! round by round, each after a `sync` (not timed) so no process pays for
//! another's dirty pages; a round's ratio is the contender's time over the
//! floor's in that round. A run reports the median of those paired
//! ratios; `repeat` runs give the median of the run medians and their
//! range. Output goes to `/dev/null` for every contender.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::data::{self, size_name};
use crate::libops::Lib;
use crate::procs;
use crate::stats::{self, median_of, secs, Table};

/// The C floor's source, compiled by [`build_floor`].
const FLOOR_C: &str = include_str!("c/floor.c");

/// The seed's functions, verbatim.
const SEED: &str = include_str!("../../../tests/fixtures/seed_original.sh");

/// Compile the C floor into `dir`; `None` (with a note) without `cc`.
pub fn build_floor(dir: &Path) -> Result<Option<PathBuf>, String> {
    if !procs::have("cc") {
        eprintln!("note: cc not installed; the C floor (and so this part) is skipped");
        return Ok(None);
    }
    let src = dir.join("floor.c");
    let bin = dir.join("floor");
    std::fs::write(&src, FLOOR_C).map_err(|e| e.to_string())?;
    let out = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .map_err(|e| format!("cc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cc failed on the floor program: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(Some(bin))
}

/// One contender: a name and how to make its command for an operation.
struct Contender {
    name: &'static str,
    make: Box<dyn Fn(Op) -> Result<Command, String>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Save,
    Load,
}

/// Paired ratios of one contender over the floor, per run.
#[derive(Default)]
struct Row {
    /// Median of the paired ratios of each run.
    run_medians: Vec<f64>,
    /// Median time of each run.
    run_times: Vec<f64>,
}

/// `1.23x (1.10x–1.40x)`: median and range of the run medians.
fn spread(v: &[f64]) -> String {
    stats::spread(v, |x| format!("{x:.2}x"))
}

fn quiet(program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
    let mut c = procs::quiet(program);
    c.current_dir(dir)
        .env_remove("MSTATE_DIR")
        .env_remove("MSTATE_SESSION")
        .stdout(Stdio::null());
    c
}

fn stdin_of(c: &mut Command, input: &Path) -> Result<(), String> {
    c.stdin(File::open(input).map_err(|e| format!("{}: {e}", input.display()))?);
    Ok(())
}

/// The stores of each contender for one state size, under `dir`.
fn contenders(
    dir: &Path,
    size: usize,
    floor: &Path,
    mstate: &Path,
) -> Result<(Vec<Contender>, Vec<String>), String> {
    let mut notes = Vec::new();
    let state = data::state(size);
    let input = dir.join("input.json");
    std::fs::write(
        &input,
        serde_json::to_vec(&state).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let mut list = Vec::new();

    // The floor and mstate: each its own store, made by the library.
    for (name, sub) in [("floor", "floor"), ("mstate", "mstate")] {
        let d = dir.join(sub);
        let root = d.join(".milestones/state");
        let lib = Lib::create(&root, &state)?;
        lib.save(&state)?;
        let (input, floor, mstate, root) = (
            input.clone(),
            floor.to_path_buf(),
            mstate.to_path_buf(),
            root,
        );
        let make: Box<dyn Fn(Op) -> Result<Command, String>> = if name == "floor" {
            Box::new(move |op| {
                let mut c = quiet(&floor, &d);
                c.arg(if op == Op::Save { "save" } else { "load" })
                    .arg(&root);
                if op == Op::Save {
                    stdin_of(&mut c, &input)?;
                }
                Ok(c)
            })
        } else {
            Box::new(move |op| {
                let mut c = quiet(&mstate, &d);
                if op == Op::Save {
                    c.args(["save", "m", "-"]);
                    stdin_of(&mut c, &input)?;
                } else {
                    c.args(["load", "m"]);
                }
                Ok(c)
            })
        };
        list.push(Contender { name, make });
    }

    // The seed, in bash; its save takes the state as an argument of a
    // function (no exec, so no argument size limit).
    if procs::have("bash") && procs::have("python3") {
        let d = dir.join("seed");
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        let script = d.join("seed.sh");
        std::fs::write(&script, SEED).map_err(|e| e.to_string())?;
        let init = Command::new("bash")
            .current_dir(&d)
            .arg("-c")
            .arg(
                r#"source ./seed.sh && init_milestone_state m >/dev/null && save_milestone_state m "$(< ../input.json)" >/dev/null"#,
            )
            .status()
            .map_err(|e| e.to_string())?;
        if !init.success() {
            return Err("the seed's first save failed".into());
        }
        list.push(Contender {
            name: "seed (bash + python3)",
            make: Box::new(move |op| {
                let mut c = quiet("bash", &d);
                c.arg("-c").arg(if op == Op::Save {
                    r#"source ./seed.sh && save_milestone_state m "$(< ../input.json)""#
                } else {
                    "source ./seed.sh && load_milestone_state m"
                });
                Ok(c)
            }),
        });
    } else {
        notes.push("the seed skipped: bash or python3 not installed".to_string());
    }

    // The sqlite3 CLI.
    if procs::have("sqlite3") {
        let d = dir.join("sqlite");
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        let setup = "PRAGMA journal_mode=WAL; \
            CREATE TABLE states(id TEXT PRIMARY KEY, revision INTEGER NOT NULL, state TEXT NOT NULL); \
            CREATE TABLE events(seq INTEGER PRIMARY KEY, milestone_id TEXT, event_type TEXT, data TEXT, timestamp TEXT);";
        let ok = Command::new("sqlite3")
            .current_dir(&d)
            .arg("m.db")
            .arg(setup)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        if !ok.success() {
            return Err("sqlite3 could not create its database".into());
        }
        list.push(Contender {
            name: "sqlite3 CLI",
            make: Box::new(move |op| {
                let mut c = quiet("sqlite3", &d);
                c.arg("m.db").arg(if op == Op::Save {
                    "PRAGMA synchronous=FULL; BEGIN IMMEDIATE; \
                     INSERT INTO states(id, revision, state) VALUES('m', 1, readfile('../input.json')) \
                       ON CONFLICT(id) DO UPDATE SET revision = revision + 1, state = excluded.state; \
                     INSERT INTO events(milestone_id, event_type, data, timestamp) \
                       VALUES('m', 'state_saved', '{\"revision\":1}', strftime('%Y-%m-%dT%H:%M:%fZ')); \
                     COMMIT;"
                } else {
                    "SELECT state FROM states WHERE id = 'm';"
                });
                Ok(c)
            }),
        });
    } else {
        notes.push(
            "the sqlite3 CLI skipped: not installed (apt-get install -y sqlite3)".to_string(),
        );
    }
    Ok((list, notes))
}

/// What [`run`] measures.
pub struct Opts<'a> {
    pub sizes: Vec<usize>,
    /// Rounds per run.
    pub rounds: usize,
    /// Runs.
    pub repeat: usize,
    pub mstate: &'a Path,
}

/// Save and load of each contender as whole processes.
pub fn run(o: &Opts<'_>) -> Result<String, String> {
    let work = data::fresh_dir("rivals").map_err(|e| e.to_string())?;
    let Some(floor) = build_floor(&work)? else {
        return Ok(
            "Skipped: `cc` is not installed, so there is no floor to compare with.\n".into(),
        );
    };
    let mut out = String::new();
    let mut all_notes = Vec::new();
    for op in [Op::Save, Op::Load] {
        let mut t = Table::new(&[
            "state",
            "contender",
            ">median time",
            ">/ floor: median of run medians (range)",
        ]);
        for &size in &o.sizes {
            let dir = work.join(format!(
                "{}-{size}",
                if op == Op::Save { "save" } else { "load" }
            ));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let (list, notes) = contenders(&dir, size, &floor, o.mstate)?;
            for n in notes {
                if !all_notes.contains(&n) {
                    all_notes.push(n);
                }
            }
            eprintln!(
                "rivals: {} {}, {} runs of {} rounds",
                if op == Op::Save { "save" } else { "load" },
                size_name(size),
                o.repeat,
                o.rounds
            );
            let mut rows: Vec<Row> = list.iter().map(|_| Row::default()).collect();
            for _ in 0..o.repeat.max(1) {
                let mut times: Vec<Vec<f64>> = vec![Vec::new(); list.len()];
                for round in 0..o.rounds.max(1) {
                    for j in 0..list.len() {
                        let k = (round + j) % list.len();
                        let mut c = (list[k].make)(op)?;
                        // SAFETY: sync(2) takes no arguments and cannot fail.
                        unsafe { libc::sync() };
                        let ran = procs::run_ok(&mut c)
                            .map_err(|e| format!("{} {}: {e}", list[k].name, size_name(size)))?;
                        times[k].push(ran.wall.as_secs_f64());
                    }
                }
                for (k, row) in rows.iter_mut().enumerate() {
                    let ratios: Vec<f64> =
                        times[k].iter().zip(&times[0]).map(|(a, f)| a / f).collect();
                    row.run_medians.push(median_of(&ratios));
                    row.run_times.push(median_of(&times[k]));
                }
            }
            for (c, row) in list.iter().zip(&rows) {
                t.row(vec![
                    size_name(size),
                    c.name.to_string(),
                    secs(median_of(&row.run_times)),
                    if c.name == "floor" {
                        "1.00x".into()
                    } else {
                        spread(&row.run_medians)
                    },
                ]);
            }
            std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())?;
        }
        let _ = writeln!(
            out,
            "#### `{}`\n\n{}",
            if op == Op::Save { "save" } else { "load" },
            t.render()
        );
    }
    std::fs::remove_dir_all(&work).map_err(|e| e.to_string())?;
    let _ = writeln!(
        out,
        "Whole processes, spawn to reap, output to /dev/null. Each round runs every contender once (order rotated), each after an untimed `sync`; a round's ratio is the contender's time over the C floor's in that round. Per run: the median of {} paired ratios; over {} runs: the median of the run medians and their range. The floor is `crates/bench/src/c/floor.c` (`cc -O2`), making only the operation's system calls on mstate's layout.",
        o.rounds, o.repeat
    );
    for n in all_notes {
        let _ = writeln!(out, "\nNote: {n}.");
    }
    Ok(out)
}
