//! Whole processes: `mstate load`/`save`/`log` against the minimal
//! read-and-print binary (`mstate-bench-cat`, the floor of starting a
//! process), the durable append rate of `mstate log` processes, system
//! calls per operation (`strace -f -c`) and instruction counts
//! (`valgrind --tool=callgrind`).

use mstate_store::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::data::{self, size_name};
use crate::floor::Counts;
use crate::libops::Lib;
use crate::procs;
use crate::stats::{count, mib, ratio, secs, verdict, Samples, Table};

/// The binaries under test.
pub struct Bins {
    pub mstate: PathBuf,
    pub cat: PathBuf,
}

/// A store of milestone `m` for CLI runs: the directory to run in, the
/// state file, and a file holding the state to save (stdin of `save`).
struct CliStore {
    dir: PathBuf,
    state_file: PathBuf,
    input: PathBuf,
}

fn cli_store(name: &str, size: usize) -> Result<CliStore, String> {
    let dir = data::fresh_dir(name).map_err(|e| e.to_string())?;
    let root = dir.join(".milestones/state");
    let state = data::state(size);
    let lib = Lib::create(&root, &state)?;
    lib.save(&state)?;
    let input = dir.join("input.json");
    std::fs::write(
        &input,
        serde_json::to_vec(&state).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    Ok(CliStore {
        dir,
        state_file: root.join("active/m.json"),
        input,
    })
}

impl Bins {
    /// `mstate ARGS` in the store's directory, output discarded.
    fn mstate(&self, s: &CliStore, args: &[&str]) -> Command {
        let mut c = procs::quiet(&self.mstate);
        c.current_dir(&s.dir)
            .env_remove("MSTATE_DIR")
            .env_remove("MSTATE_SESSION")
            .args(args);
        c
    }

    fn save(&self, s: &CliStore) -> Result<Command, String> {
        let mut c = self.mstate(s, &["save", "m", "-"]);
        c.stdin(File::open(&s.input).map_err(|e| e.to_string())?);
        Ok(c)
    }

    fn cat(&self, s: &CliStore) -> Command {
        let mut c = procs::quiet(&self.cat);
        c.arg(&s.state_file);
        c
    }
}

/// Whole-process times of load, save and log against the cat binary.
pub fn whole_process(b: &Bins, sizes: &[usize], runs: usize) -> Result<String, String> {
    let mut t = Table::new(&[
        "state",
        ">read-and-print binary",
        ">`mstate load`",
        ">load / floor",
        "budget <= 1.5x",
        ">`mstate save`",
        ">save / floor",
        ">`mstate log`",
        ">`mstate update --set`",
        ">`mstate checkpoint create`",
        ">peak RSS: floor / load / save",
    ]);
    for &size in sizes {
        eprintln!("cli: {} state, {runs} runs", size_name(size));
        let s = cli_store(&format!("cli-{size}"), size)?;
        let mut m: [Samples; 6] = Default::default();
        for i in 0..runs.max(1) {
            for j in 0..6 {
                let k = (i + j) % 6;
                let mut c = match k {
                    0 => b.cat(&s),
                    1 => b.mstate(&s, &["load", "m"]),
                    2 => b.save(&s)?,
                    3 => b.mstate(
                        &s,
                        &["log", "m", "progress", r#"{"task":"x","percentage":1}"#],
                    ),
                    4 => b.mstate(&s, &["update", "m", "--set", "/phase=\"x\""]),
                    _ => b.mstate(&s, &["checkpoint", "create", "m", "c", "--force"]),
                };
                m[k].push(procs::run_ok(&mut c)?.wall);
            }
        }
        let rss = [
            procs::peak_rss(&b.cat(&s), None)?,
            procs::peak_rss(&b.mstate(&s, &["load", "m"]), None)?,
            procs::peak_rss(&b.mstate(&s, &["save", "m", "-"]), Some(&s.input))?,
        ];
        let (cat, load) = (m[0].median(), m[1].median());
        t.row(vec![
            size_name(size),
            secs(cat),
            secs(load),
            ratio(load, cat),
            verdict(load <= 1.5 * cat).into(),
            secs(m[2].median()),
            ratio(m[2].median(), cat),
            secs(m[3].median()),
            secs(m[4].median()),
            secs(m[5].median()),
            format!("{} / {} / {}", mib(rss[0]), mib(rss[1]), mib(rss[2])),
        ]);
        std::fs::remove_dir_all(&s.dir).map_err(|e| e.to_string())?;
    }
    Ok(format!(
        "{}\nMedian wall time of {runs} runs of each whole process (spawn to reap), interleaved; `save` reads the state from stdin (a file); peak RSS is the process's `ru_maxrss` (measured by a small parent, `mstate-bench-rss`).\n",
        t.render()
    ))
}

/// Durable appends through `mstate log` processes, from `procs` concurrent
/// loops, for `secs` each.
pub fn append_rate(b: &Bins, procs_list: &[usize], secs_each: f64) -> Result<String, String> {
    let mut t = Table::new(&[">processes", ">appends", ">appends/s", ">vs 1 process"]);
    let mut one = 0.0;
    for &p in procs_list {
        eprintln!("cli: `mstate log` from {p} processes");
        let s = cli_store(&format!("cli-append-{p}"), 100)?;
        let done = AtomicU64::new(0);
        let failed = AtomicU64::new(0);
        let start = Instant::now();
        let until = start + Duration::from_secs_f64(secs_each);
        std::thread::scope(|scope| {
            for _ in 0..p {
                scope.spawn(|| {
                    while Instant::now() < until {
                        let mut c = b.mstate(&s, &["log", "m", "progress", r#"{"task":"x"}"#]);
                        match procs::run_ok(&mut c) {
                            Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                            Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                });
            }
        });
        let elapsed = start.elapsed().as_secs_f64();
        if failed.load(Ordering::Relaxed) > 0 {
            return Err(format!(
                "{} `mstate log` runs failed",
                failed.load(Ordering::Relaxed)
            ));
        }
        let n = done.load(Ordering::Relaxed);
        let events = crate::contention::check_log(&s.dir.join(".milestones/state"))?;
        // init and the two saves logged 3 events before.
        if events != n + 3 {
            return Err(format!("log holds {events} events after {n} appends (+3)"));
        }
        let rate = n as f64 / elapsed;
        if p == 1 {
            one = rate;
        }
        t.row(vec![
            p.to_string(),
            count(n),
            format!("{rate:.0}"),
            ratio(rate, one),
        ]);
        std::fs::remove_dir_all(&s.dir).map_err(|e| e.to_string())?;
    }
    Ok(format!(
        "{}\nOne `mstate log` process per event, each durable (fdatasync) before it exits; the log was checked afterwards (every event once, `seq` without gaps).\n",
        t.render()
    ))
}

/// Parse the table `strace -c -o FILE` writes: calls per system call.
pub fn parse_strace(text: &str) -> Counts {
    let mut c = Counts::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[0].parse::<f64>().is_err() {
            continue;
        }
        let name = f[f.len() - 1];
        if name == "total" {
            continue;
        }
        if let Ok(calls) = f[3].parse::<u64>() {
            let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
            *c.0.entry(leaked).or_default() += calls;
        }
    }
    c
}

fn strace_counts(cmd: &mut Command, out: &Path) -> Result<Counts, String> {
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut s = Command::new("strace");
    s.args(["-f", "-c", "-o"])
        .arg(out)
        .arg("--")
        .arg(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(d) = cmd.get_current_dir() {
        s.current_dir(d);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => s.env(k, v),
            None => s.env_remove(k),
        };
    }
    let stdin_file = out.with_extension("stdin");
    if stdin_file.exists() {
        s.stdin(File::open(&stdin_file).map_err(|e| e.to_string())?);
    }
    let st = s.status().map_err(|e| e.to_string())?;
    if !st.success() {
        return Err(format!("strace of {cmd:?} failed"));
    }
    let text = std::fs::read_to_string(out).map_err(|e| e.to_string())?;
    Ok(parse_strace(&text))
}

fn brief(c: &Counts, top: usize) -> String {
    let mut v: Vec<(&&str, &u64)> = c.0.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .take(top)
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// System calls per operation: floor (its own count), library (strace of
/// `lib-op` with 1 and 11 runs: the difference / 10) and CLI (one process).
pub fn syscalls(b: &Bins, floor: &[(&'static str, Counts)]) -> Result<String, String> {
    if !procs::have("strace") {
        let mut t = Table::new(&["operation", ">floor syscalls", ">floor fsync + fdatasync"]);
        for (op, c) in floor {
            t.row(vec![op.to_string(), count(c.total()), count(c.syncs())]);
        }
        return Ok(format!(
            "strace is not installed: library and CLI counts skipped (`apt-get install strace` to get them). The floor's own counts:\n\n{}",
            t.render()
        ));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let s = cli_store("syscalls", 1_000)?;
    let root = s.dir.join(".milestones/state");
    let tmp = s.dir.join("strace.out");
    let mut t = Table::new(&[
        "operation",
        ">floor: syscalls (syncs)",
        ">library: syscalls (syncs)",
        ">CLI process: syscalls (syncs)",
        "library's most frequent calls",
    ]);
    let cli_args: BTreeMap<&str, Vec<&str>> = [
        ("save", vec!["save", "m", "-"]),
        ("load", vec!["load", "m"]),
        ("update", vec!["update", "m", "--set", "/phase=\"x\""]),
        ("log", vec!["log", "m", "progress", "{\"task\":\"x\"}"]),
        (
            "checkpoint",
            vec!["checkpoint", "create", "m", "c", "--force"],
        ),
        ("lock", vec!["lock", "run", "m", "--", "true"]),
    ]
    .into_iter()
    .collect();
    for (op, fc) in floor {
        let lib = |n: usize| -> Result<Counts, String> {
            let mut c = Command::new(&exe);
            c.args(["lib-op", op]).arg(&root).arg(n.to_string());
            strace_counts(&mut c, &tmp)
        };
        let one = lib(1)?;
        let eleven = lib(11)?;
        let mut per = Counts::default();
        for (k, v) in &eleven.0 {
            let d = v.saturating_sub(one.get(k));
            if d >= 10 {
                per.0.insert(k, d.div_ceil(10));
            }
        }
        let cli = match cli_args.get(op) {
            Some(args) => {
                if *op == "save" {
                    std::fs::copy(&s.input, tmp.with_extension("stdin"))
                        .map_err(|e| e.to_string())?;
                }
                let mut c = b.mstate(&s, args);
                let r = strace_counts(&mut c, &tmp);
                let _ = std::fs::remove_file(tmp.with_extension("stdin"));
                let r = r?;
                format!("{} ({})", count(r.total()), r.syncs())
            }
            None => "-".into(),
        };
        t.row(vec![
            op.to_string(),
            format!("{} ({})", count(fc.total()), fc.syncs()),
            format!("{} ({})", count(per.total()), per.syncs()),
            cli,
            brief(&per, 6),
        ]);
    }
    let cat = {
        let mut c = b.cat(&s);
        strace_counts(&mut c, &tmp)?
    };
    std::fs::remove_dir_all(&s.dir).map_err(|e| e.to_string())?;
    Ok(format!(
        "{}\nLibrary: `strace -f -c` of 11 runs minus 1 run, / 10 (calls made at most once per process, such as reading the boot id, drop out). CLI: one whole process, start-up included (the read-and-print binary makes {} calls). `lock` in the CLI column is `mstate lock run m -- true` (it also spawns `true`).\n",
        t.render(),
        cat.total()
    ))
}

/// Run a library operation `n` times (under strace, for [`syscalls`]).
pub fn lib_op(op: &str, root: &Path, n: usize) -> Result<(), String> {
    let mut lib = Lib::open(root)?;
    let state = lib
        .store
        .load(
            &mstate_store::MilestoneId::new("m").map_err(|e| e.to_string())?,
            &Default::default(),
        )
        .map_err(|e| e.to_string())?
        .envelope
        .state;
    let text = serde_json::to_vec(&state).map_err(|e| e.to_string())?;
    for i in 0..n {
        match op {
            "save" => lib.save(&state).map(drop)?,
            "save (text)" => lib.save_text(&text).map(drop)?,
            "load" => lib.load().map(drop)?,
            "load (text)" => lib.load_text().map(drop)?,
            "update" => lib.update().map(drop)?,
            "log" => lib.log(&data::progress_data(i as u64)).map(drop)?,
            "checkpoint" => lib.checkpoint()?,
            "lock" => lib.lock()?,
            _ => return Err(format!("unknown operation {op}")),
        }
    }
    Ok(())
}

/// Instructions (callgrind) of `mstate load`/`save`/`log` against the
/// read-and-print binary.
pub fn callgrind(b: &Bins, sizes: &[usize]) -> Result<String, String> {
    if !procs::have("valgrind") {
        return Ok("valgrind is not installed: instruction counts skipped.\n".into());
    }
    let mut t = Table::new(&[
        "state",
        ">read-and-print binary",
        ">`mstate load`",
        ">load / floor",
        ">`mstate save`",
        ">save / floor",
        ">`mstate log`",
    ]);
    for &size in sizes {
        eprintln!("callgrind: {} state", size_name(size));
        let s = cli_store(&format!("callgrind-{size}"), size)?;
        let out = s.dir.join("callgrind.out");
        let run = |cmd: Command| -> Result<u64, String> {
            let mut v = Command::new("valgrind");
            v.args(["--tool=callgrind", "-q"])
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(cmd.get_program())
                .args(cmd.get_args())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some(d) = cmd.get_current_dir() {
                v.current_dir(d);
            }
            v.stdin(Stdio::null());
            if cmd.get_args().any(|a| a == "save") {
                v.stdin(File::open(&s.input).map_err(|e| e.to_string())?);
            }
            let st = v.status().map_err(|e| e.to_string())?;
            if !st.success() {
                return Err(format!("valgrind of {cmd:?} failed"));
            }
            let text = std::fs::read_to_string(&out).map_err(|e| e.to_string())?;
            parse_callgrind(&text).ok_or_else(|| "no summary in callgrind output".to_string())
        };
        let cat = run(b.cat(&s))?;
        let load = run(b.mstate(&s, &["load", "m"]))?;
        let save = run(b.mstate(&s, &["save", "m", "-"]))?;
        let log = run(b.mstate(&s, &["log", "m", "progress", "{\"task\":\"x\"}"]))?;
        t.row(vec![
            size_name(size),
            count(cat),
            count(load),
            ratio(load as f64, cat as f64),
            count(save),
            ratio(save as f64, cat as f64),
            count(log),
        ]);
        std::fs::remove_dir_all(&s.dir).map_err(|e| e.to_string())?;
    }
    let mut md = t.render();
    let _ = writeln!(
        md,
        "\nInstructions executed (callgrind `summary:`), whole process including the dynamic loader."
    );
    Ok(md)
}

/// The total of a callgrind output file (`summary:` or `totals:` line).
pub fn parse_callgrind(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strace_tables() {
        let text = "% time     seconds  usecs/call     calls    errors syscall\n\
------ ----------- ----------- --------- --------- ----------------\n\
 40.00    0.000040           4        10           statx\n\
 30.00    0.000030          15         2         1 openat\n\
------ ----------- ----------- --------- --------- ----------------\n\
100.00    0.000070           5        12         1 total\n";
        let c = parse_strace(text);
        assert_eq!(c.get("statx"), 10);
        assert_eq!(c.get("openat"), 2);
        assert_eq!(c.total(), 12);
    }

    #[test]
    fn parses_callgrind_totals() {
        assert_eq!(parse_callgrind("events: Ir\nsummary: 12345\n"), Some(12345));
        assert_eq!(parse_callgrind("totals: 7\n"), Some(7));
        assert_eq!(parse_callgrind("x"), None);
    }
}
