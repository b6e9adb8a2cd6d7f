//! In-process comparison of each operation: the I/O floor, the mstate
//! library and SQLite, interleaved sample by sample in one run, at each
//! state size; then the peak RSS of save and load in fresh processes.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::data::{self, size_name};
use crate::floor::{self, Counts, Floor};
use crate::libops::Lib;
use crate::procs;
use crate::sqlite::Sql;
use crate::stats::{bytes, count, mib, ratio, secs, verdict, Samples, Table};

/// The operations compared. `save (text)` and `load (text)` are the
/// library's `save_text` and `load_raw` (the state as JSON text, as the
/// CLI passes it), against the same floor and SQLite operations.
pub const OPS: [&str; 8] = [
    "save",
    "save (text)",
    "load",
    "load (text)",
    "update",
    "log",
    "checkpoint",
    "lock",
];

/// Saves made before measuring, so the backup directory is at its steady
/// size (mstate keeps 50 backups).
const WARM_SAVES: usize = 52;

/// Budget of an operation, as a ratio to its floor, if it has one.
fn budget(op: &str) -> Option<f64> {
    match op {
        "save" | "save (text)" | "log" | "checkpoint" => Some(1.3),
        "load" | "load (text)" => Some(1.2),
        _ => None,
    }
}

/// The three implementations, set up for one state size.
struct Setup {
    floor: Floor,
    lib: Lib,
    sql: Sql,
    state: Value,
    /// The state as compact JSON text.
    input: Vec<u8>,
    info: Vec<u8>,
    file: Vec<u8>,
    saved_line: Vec<u8>,
    serial: u64,
}

impl Setup {
    fn new(dir: &Path, size: usize, warm: usize) -> Result<Setup, String> {
        let state = data::state(size);
        let file = data::state_file("m", 1, &state);
        let err = |e: std::io::Error| e.to_string();
        let mut floor = Floor::create(&dir.join("floor"), &file).map_err(err)?;
        let lib = Lib::create(&dir.join("lib/.milestones/state"), &state)?;
        let sql = Sql::open(&dir.join("sqlite.db"))?;
        sql.save(&state)?;
        let info = floor::info_json();
        let saved_line = data::event_line("state_saved", &data::saved_data(1), 1);
        for _ in 0..warm {
            floor
                .save(&info, &file, &saved_line)
                .map_err(|e| e.to_string())?;
            floor.trim_backups();
            lib.save(&state)?;
        }
        let input = serde_json::to_vec(&state).map_err(|e| e.to_string())?;
        Ok(Setup {
            floor,
            lib,
            sql,
            state,
            input,
            info,
            file,
            saved_line,
            serial: 0,
        })
    }

    /// Run `op` once on implementation `which` (0 floor, 1 library, 2 SQLite).
    fn run(&mut self, op: &str, which: usize, t: &mut Samples) -> Result<(), String> {
        self.serial += 1;
        let n = self.serial;
        let io = |r: rustix::io::Result<()>| r.map_err(|e| e.to_string());
        let op = match (which, op) {
            (1, "save (text)") => return t.time(|| self.lib.save_text(&self.input)).map(drop),
            (1, "load (text)") => return t.time(|| self.lib.load_text()).map(drop),
            (_, text) => text.strip_suffix(" (text)").unwrap_or(text),
        };
        match (which, op) {
            (0, "save") => {
                io(t.time(|| {
                    let r = self.floor.save(&self.info, &self.file, &self.saved_line);
                    self.floor.trim_backups();
                    r
                }))?;
            }
            (0, "load") => {
                t.time(|| self.floor.load())?;
            }
            (0, "update") => {
                io(t.time(|| {
                    let r = self.floor.update(&self.info, &self.saved_line, n);
                    self.floor.trim_backups();
                    r
                }))?;
            }
            (0, "log") => {
                let line = data::event_line("progress", &data::progress_data(n), n);
                io(t.time(|| self.floor.append(&line)))?;
            }
            (0, "checkpoint") => {
                io(t.time(|| self.floor.checkpoint(&self.info, &self.saved_line)))?
            }
            (0, "lock") => io(t.time(|| self.floor.lock(&self.info)))?,
            (1, "save") => {
                t.time(|| self.lib.save(&self.state))?;
            }
            (1, "load") => {
                t.time(|| self.lib.load())?;
            }
            (1, "update") => {
                t.time(|| self.lib.update())?;
            }
            (1, "log") => {
                let d = data::progress_data(n);
                t.time(|| self.lib.log(&d))?;
            }
            (1, "checkpoint") => t.time(|| self.lib.checkpoint())?,
            (1, "lock") => t.time(|| self.lib.lock())?,
            (2, "save") => {
                t.time(|| self.sql.save(&self.state))?;
            }
            (2, "load") => {
                t.time(|| self.sql.load())?;
            }
            (2, "update") => {
                t.time(|| self.sql.update(n))?;
            }
            (2, "log") => {
                let d = data::progress_data(n);
                t.time(|| self.sql.log(&d))?;
            }
            (2, "checkpoint") => t.time(|| self.sql.checkpoint())?,
            (2, "lock") => t.time(|| self.sql.lock())?,
            _ => return Err(format!("unknown operation {op}")),
        }
        Ok(())
    }
}

/// Result of one size.
pub struct SizeResult {
    pub size: usize,
    pub file_len: usize,
    /// Per operation: (floor, library, SQLite) samples.
    pub ops: Vec<(&'static str, [Samples; 3])>,
    /// Calls the floor made for one run of each operation.
    pub floor_calls: Vec<(&'static str, Counts)>,
}

/// Compare the three implementations at each size, `iters[i]` samples of
/// each operation at `sizes[i]`.
pub fn compare(sizes: &[usize], iters: &[usize], warm: bool) -> Result<Vec<SizeResult>, String> {
    let mut out = Vec::new();
    for (k, &size) in sizes.iter().enumerate() {
        let n = iters.get(k).or(iters.last()).copied().unwrap_or(10).max(1);
        let dir = data::fresh_dir(&format!("compare-{size}")).map_err(|e| e.to_string())?;
        eprintln!(
            "compare: {} state, {n} samples per operation",
            size_name(size)
        );
        let mut s = Setup::new(&dir, size, if warm { WARM_SAVES } else { 2 })?;
        let file_len = s.file.len();
        let mut ops = Vec::new();
        let mut floor_calls = Vec::new();
        for op in OPS {
            let mut t: [Samples; 3] = Default::default();
            // One untimed run each to warm caches.
            for w in 0..3 {
                s.run(op, w, &mut Samples::default())?;
            }
            let before = s.floor.counts.clone();
            s.run(op, 0, &mut Samples::default())?;
            floor_calls.push((op, s.floor.counts.since(&before)));
            for i in 0..n {
                // Rotate who goes first so no side always follows another.
                for j in 0..3 {
                    let which = (i + j) % 3;
                    s.run(op, which, &mut t[which])?;
                }
            }
            ops.push((op, t));
        }
        drop(s);
        std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())?;
        out.push(SizeResult {
            size,
            file_len,
            ops,
            floor_calls,
        });
    }
    Ok(out)
}

/// Markdown for the comparison: one table per size.
pub fn render(results: &[SizeResult]) -> String {
    let mut md = String::new();
    for r in results {
        let _ = writeln!(
            md,
            "\n#### State of {} (state file {})\n",
            size_name(r.size),
            bytes(r.file_len as u64)
        );
        let mut t = Table::new(&[
            "operation",
            ">floor",
            ">mstate library",
            ">SQLite",
            ">library / floor",
            ">SQLite / floor",
            "budget",
        ]);
        for (op, s) in &r.ops {
            let (f, l, q) = (s[0].median(), s[1].median(), s[2].median());
            let b = match budget(op) {
                _ if s[1].is_empty() => "-".into(),
                Some(b) => format!("<= {b}x: {}", verdict(l <= b * f)),
                None => "-".into(),
            };
            t.row(vec![
                op.to_string(),
                secs(f),
                secs(l),
                secs(q),
                ratio(l, f),
                ratio(q, f),
                b,
            ]);
        }
        md.push_str(&t.render());
        let _ = writeln!(
            md,
            "\nMedians of {} interleaved samples each.",
            r.ops.first().map_or(0, |o| o.1[0].len())
        );
    }
    md
}

/// Markdown: the floor's system calls per operation.
pub fn render_floor_calls(r: &SizeResult) -> String {
    let mut t = Table::new(&["operation", ">syscalls", ">fsync + fdatasync", "calls"]);
    for (op, c) in &r.floor_calls {
        let detail: Vec<String> = c.0.iter().map(|(k, v)| format!("{k} {v}")).collect();
        t.row(vec![
            op.to_string(),
            count(c.total()),
            count(c.syncs()),
            detail.join(", "),
        ]);
    }
    t.render()
}

/// Measure the peak RSS of one operation in this (fresh) process: prints
/// `peak_kib baseline_kib`. `impl_` is `lib`, `floor` or `sqlite`; `data`
/// holds `input.json` (the state to save, parsed before the baseline is
/// taken: the caller of a save holds its state) and `state.json` (the
/// floor's state file).
pub fn rss_op(impl_: &str, op: &str, root: &Path, data: &Path) -> Result<(), String> {
    let err = |e: std::io::Error| e.to_string();
    let op = match impl_ {
        "lib" => op,
        _ => op.strip_suffix(" (text)").unwrap_or(op),
    };
    let input = if op == "save (text)" {
        std::fs::read(data.join("input.json")).map_err(err)?
    } else {
        Vec::new()
    };
    let state: Value = if op == "save" && impl_ != "floor" {
        let input = std::fs::read(data.join("input.json")).map_err(err)?;
        serde_json::from_slice(&input).map_err(|e| e.to_string())?
    } else {
        Value::Null
    };
    let file = if impl_ == "floor" {
        std::fs::read(data.join("state.json")).map_err(err)?
    } else {
        Vec::new()
    };
    let info = floor::info_json();
    let line = data::event_line("state_saved", &data::saved_data(1), 1);
    let lib = (impl_ == "lib").then(|| Lib::open(root)).transpose()?;
    let mut fl = (impl_ == "floor")
        .then(|| Floor::create(root, &file))
        .transpose()
        .map_err(err)?;
    let sql = (impl_ == "sqlite").then(|| Sql::open(root)).transpose()?;
    // Give back what set-up freed, so the baseline is what is held.
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    let run = || -> Result<(), String> {
        match (op, &lib, fl.as_mut(), &sql) {
            ("save", Some(l), _, _) => l.save(&state).map(drop),
            ("save (text)", Some(l), _, _) => l.save_text(&input).map(drop),
            ("load", Some(l), _, _) => l.load().map(drop),
            ("load (text)", Some(l), _, _) => l.load_text().map(drop),
            ("save", _, Some(f), _) => f.save(&info, &file, &line).map_err(|e| e.to_string()),
            ("load", _, Some(f), _) => f.load().map(drop),
            ("save", _, _, Some(q)) => q.save(&state).map(drop),
            ("load", _, _, Some(q)) => q.load().map(drop),
            _ => Err(format!("unknown rss-op {impl_} {op}")),
        }
    };
    let (r, peak, before) = procs::peak_of(run);
    r?;
    println!("{peak} {before}");
    Ok(())
}

/// Peak RSS of save and load of each size, each in a fresh process.
pub fn rss_table(sizes: &[usize]) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut t = Table::new(&[
        "state",
        "operation",
        ">library: process peak",
        ">library: peak - baseline",
        ">(peak - baseline) / state size",
        ">floor (read+parse / syscalls): peak - baseline",
        ">SQLite: peak - baseline",
        "budget < 3x state",
    ]);
    for &size in sizes {
        let dir = data::fresh_dir(&format!("rss-{size}")).map_err(|e| e.to_string())?;
        let state = data::state(size);
        let nominal = data::compact_len(&state) as u64;
        let lib_root = dir.join("lib/.milestones/state");
        let lib = Lib::create(&lib_root, &state)?;
        lib.save(&state)?;
        drop(lib);
        let sql = dir.join("sqlite.db");
        Sql::open(&sql)?.save(&state)?;
        let err = |e: std::io::Error| e.to_string();
        std::fs::write(
            dir.join("input.json"),
            serde_json::to_vec(&state).map_err(|e| e.to_string())?,
        )
        .map_err(err)?;
        std::fs::write(dir.join("state.json"), data::state_file("m", 1, &state)).map_err(err)?;
        for op in ["save", "save (text)", "load", "load (text)"] {
            let measure = |imp: &str, root: &Path| -> Result<(u64, u64), String> {
                let out = Command::new(&exe)
                    .args(["rss-op", imp, op])
                    .arg(root)
                    .arg(&dir)
                    .output()
                    .map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(format!(
                        "rss-op {imp} {op} failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
                let text = String::from_utf8_lossy(&out.stdout);
                let mut it = text
                    .split_whitespace()
                    .map(|x| x.parse::<u64>().unwrap_or(0));
                Ok((it.next().unwrap_or(0), it.next().unwrap_or(0)))
            };
            let (lp, lb) = measure("lib", &lib_root)?;
            let floor_dir = dir.join(format!("floor-{op}"));
            let (fp, fb) = measure("floor", &floor_dir)?;
            let (sp, sb) = measure("sqlite", &sql)?;
            let inc = lp.saturating_sub(lb);
            let x = inc as f64 * 1024.0 / nominal as f64;
            t.row(vec![
                size_name(size),
                op.into(),
                mib(lp),
                mib(inc),
                format!("{x:.1}x"),
                mib(fp.saturating_sub(fb)),
                mib(sp.saturating_sub(sb)),
                if size >= 1_000_000 {
                    verdict(x < 3.0).into()
                } else {
                    "-".into()
                },
            ]);
        }
        std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())?;
    }
    Ok(t.render())
}

/// The envelope with its state skipped (validated, not built): all a save
/// needs of the file it replaces is its revision.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // fields are parsed for validation only
struct EnvelopeHead {
    timestamp: String,
    milestone_id: String,
    version: String,
    #[serde(default)]
    revision: u64,
    state: serde::de::IgnoredAny,
}

/// Where a save's CPU time goes, per size: the steps the library does on
/// top of the floor's system calls, timed alone (medians, interleaved).
pub fn breakdown(sizes: &[usize], iters: &[usize]) -> Result<String, String> {
    let mut t = Table::new(&[
        "state",
        ">parse state file to a `Value` (load, save, checkpoint)",
        ">parse, state skipped (`IgnoredAny`)",
        ">clone the state `Value` (save)",
        ">encode pretty envelope (save, update)",
        ">encode compact (for comparison)",
        ">`parse_strict` of the input",
        ">`check_strict` of the input (CLI save)",
        ">`reindent` of the input (CLI save)",
    ]);
    for (k, &size) in sizes.iter().enumerate() {
        let n = iters.get(k).or(iters.last()).copied().unwrap_or(10).max(1);
        let state = data::state(size);
        let file = data::state_file("m", 1, &state);
        let input = serde_json::to_vec(&state).map_err(|e| e.to_string())?;
        let env: mstate_store::model::Envelope =
            serde_json::from_slice(&file).map_err(|e| e.to_string())?;
        let mut s: [Samples; 8] = Default::default();
        for i in 0..n {
            for j in 0..8 {
                let w = (i + j) % 8;
                match w {
                    0 => {
                        let v = s[0].time(|| {
                            serde_json::from_slice::<mstate_store::model::Envelope>(&file)
                        });
                        drop(std::hint::black_box(v));
                    }
                    1 => {
                        let v = s[1].time(|| serde_json::from_slice::<EnvelopeHead>(&file));
                        drop(std::hint::black_box(v));
                    }
                    2 => {
                        let v = s[2].time(|| env.state.clone());
                        drop(std::hint::black_box(v));
                    }
                    3 => {
                        let v = s[3].time(|| serde_json::to_vec_pretty(&env));
                        drop(std::hint::black_box(v));
                    }
                    4 => {
                        let v = s[4].time(|| mstate_store::json::parse_strict(&input, "state"));
                        drop(std::hint::black_box(v));
                    }
                    5 => {
                        let v = s[5].time(|| serde_json::to_vec(&env));
                        drop(std::hint::black_box(v));
                    }
                    6 => {
                        let v = s[6].time(|| mstate_store::json::check_strict(&input, "state"));
                        drop(std::hint::black_box(v));
                    }
                    _ => {
                        let mut out = Vec::with_capacity(file.len() + 4096);
                        let v = s[7].time(|| mstate_store::json::reindent(&input, 1, &mut out));
                        drop(std::hint::black_box((v, out)));
                    }
                }
            }
        }
        t.row(vec![
            size_name(size),
            secs(s[0].median()),
            secs(s[1].median()),
            secs(s[2].median()),
            secs(s[3].median()),
            secs(s[5].median()),
            secs(s[4].median()),
            secs(s[6].median()),
            secs(s[7].median()),
        ]);
    }
    Ok(format!(
        "{}\nEach step timed alone (the drop of what it built is not timed), median of interleaved samples.\n",
        t.render()
    ))
}
