//! Processes and memory: peak RSS of this process (`VmHWM`, resettable
//! through `/proc/self/clear_refs`), running a child with its wall time,
//! and a child's peak RSS (`wait4`'s `ru_maxrss`, read by a small parent).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Reset this process's peak RSS to its current RSS. False if the kernel
/// does not allow it (then `VmHWM` is the peak since start).
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak RSS of `f` in KiB: (peak during `f`, RSS before `f`).
pub fn peak_of<T>(f: impl FnOnce() -> T) -> (T, u64, u64) {
    reset_peak();
    let before = status_kib("VmRSS").unwrap_or(0);
    let out = f();
    let peak = status_kib("VmHWM").unwrap_or(0);
    (out, peak, before)
}

/// How a child process ran.
#[derive(Debug, Clone, Copy)]
pub struct Ran {
    /// From just before spawning to just after reaping.
    pub wall: Duration,
    /// User plus system CPU time of the process (from `wait4`).
    pub cpu: Duration,
    /// Exit status as `wait4` reports it.
    pub status: i32,
}

impl Ran {
    /// Whether it exited with status 0.
    pub fn ok(&self) -> bool {
        libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 0
    }
}

/// Run `cmd` to completion, timing it. (Its `ru_maxrss` would include
/// this large parent's memory: see [`peak_rss`].)
pub fn run(cmd: &mut Command) -> std::io::Result<Ran> {
    let start = Instant::now();
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our unreaped child; both pointers are valid for
        // the call. `child` is never waited on through std afterwards.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let wall = start.elapsed();
    drop(child);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Ran {
        wall,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        status,
    })
}

/// Peak RSS in KiB of `cmd` (with stdin from `stdin`, or /dev/null), run
/// under the small `mstate-bench-rss` parent so the figure is the
/// command's own (see that binary). Fails unless it exits 0.
pub fn peak_rss(cmd: &Command, stdin: Option<&Path>) -> Result<u64, String> {
    let here = std::env::current_exe().map_err(|e| e.to_string())?;
    let spawner = here.with_file_name("mstate-bench-rss");
    let out = std::env::temp_dir().join(format!("mstate-bench-rss-{}", std::process::id()));
    let mut c = quiet(&spawner);
    c.arg(&out).arg(cmd.get_program()).args(cmd.get_args());
    if let Some(d) = cmd.get_current_dir() {
        c.current_dir(d);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(p) = stdin {
        c.stdin(std::fs::File::open(p).map_err(|e| e.to_string())?);
    }
    run_ok(&mut c)?;
    let text = std::fs::read_to_string(&out).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&out);
    text.trim()
        .parse()
        .map_err(|_| format!("bad RSS report {text:?}"))
}

/// Run `cmd` and fail unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Result<Ran, String> {
    let what = format!("{cmd:?}");
    let ran = run(cmd).map_err(|e| format!("cannot run {what}: {e}"))?;
    if !ran.ok() {
        return Err(format!("{what} failed (wait status {})", ran.status));
    }
    Ok(ran)
}

/// A command whose output is thrown away.
pub fn quiet(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    c
}

/// Whether `program` can be found on `PATH`.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            let p = d.join(program);
            p.is_file()
        })
    })
}

/// Filesystem type name of the filesystem holding `path` (`stat -f`).
pub fn fs_type(path: &Path) -> String {
    let out = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(path)
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => "unknown".into(),
    }
}

/// One line describing this machine: cores, memory, kernel.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let uname = rustix::system::uname();
    format!(
        "{cores} cores, {:.1} GiB memory, Linux {}",
        mem_kib as f64 / 1024.0 / 1024.0,
        uname.release().to_string_lossy()
    )
}
