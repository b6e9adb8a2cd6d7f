//! Facts about processes on this host: is a pid alive, when did it start,
//! who is its parent, which boot is this.
//!
//! Locks and sessions record the owner's pid together with its start time
//! (clock ticks since boot, field 22 of `/proc/<pid>/stat`) and the boot
//! id, so a pid reused by an unrelated process, or a lock left from before a
//! reboot, is recognised as stale.

use std::sync::OnceLock;

/// Whether a process exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alive {
    Yes,
    No,
    /// Cannot tell (no permission to look, odd pid).
    Unknown,
}

/// Whether `pid` is a live process on this host.
pub fn alive(pid: u32) -> Alive {
    let Ok(raw) = i32::try_from(pid) else {
        return Alive::No;
    };
    let Some(p) = rustix::process::Pid::from_raw(raw) else {
        return Alive::No;
    };
    match rustix::process::test_kill_process(p) {
        // A zombie has exited; only its parent has yet to reap it.
        Ok(()) | Err(rustix::io::Errno::PERM) if is_zombie(pid) => Alive::No,
        Ok(()) => Alive::Yes,
        Err(rustix::io::Errno::SRCH) => Alive::No,
        Err(rustix::io::Errno::PERM) => Alive::Yes,
        Err(_) => Alive::Unknown,
    }
}

/// Whether `pid` has exited and waits to be reaped (state `Z`).
fn is_zombie(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s == "Z"))
}

/// The fields of `/proc/<pid>/stat` after the command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces and ')'.
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Start time of `pid` in clock ticks since boot.
pub fn start_ticks(pid: u32) -> Option<u64> {
    // Field 22 overall; the slice starts at field 3.
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Start time of this process in clock ticks since boot, read once.
pub fn own_start_ticks() -> Option<u64> {
    static OWN: OnceLock<(u32, Option<u64>)> = OnceLock::new();
    let me = std::process::id();
    let (pid, ticks) = *OWN.get_or_init(|| (me, start_ticks(me)));
    // A forked child inherits the cache but is another process.
    if pid == me {
        ticks
    } else {
        start_ticks(me)
    }
}

/// Parent of `pid`.
pub fn parent(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// Start time of `pid` as seconds since the Unix epoch.
pub fn start_epoch_secs(pid: u32) -> Option<u64> {
    let ticks = start_ticks(pid)?;
    let hz = rustix::param::clock_ticks_per_second();
    if hz == 0 {
        return None;
    }
    Some(boot_time_secs()? + ticks / hz)
}

/// Boot time as seconds since the Unix epoch (`btime` of `/proc/stat`).
pub fn boot_time_secs() -> Option<u64> {
    static BTIME: OnceLock<Option<u64>> = OnceLock::new();
    *BTIME.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id() -> Option<String> {
    static BOOT: OnceLock<Option<String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
    })
    .clone()
}

/// This process and its ancestors, nearest first, each with its start time.
pub fn ancestry(pid: u32) -> Vec<(u32, Option<u64>)> {
    let mut out = Vec::new();
    let mut cur = pid;
    for _ in 0..64 {
        out.push((cur, start_ticks(cur)));
        match parent(cur) {
            Some(p) if p > 1 && p != cur => cur = p,
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_with_a_parent() {
        let me = std::process::id();
        assert_eq!(alive(me), Alive::Yes);
        assert!(start_ticks(me).is_some());
        let chain = ancestry(me);
        assert_eq!(chain[0].0, me);
        assert!(chain.len() >= 2, "{chain:?}");
        assert!(boot_id().is_some());
        assert!(start_epoch_secs(me).is_some());
    }

    #[test]
    fn an_exited_child_not_yet_reaped_is_gone() {
        use rustix::process::{waitid, Pid, WaitId, WaitIdOptions};
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32).unwrap();
        // Wait for the exit but leave the child unreaped: a zombie.
        waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        )
        .unwrap();
        assert_eq!(alive(child.id()), Alive::No);
        child.wait().unwrap();
        assert_eq!(alive(child.id()), Alive::No);
    }

    #[test]
    fn a_reaped_child_is_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        // The pid may in theory be reused at once, but not by a process
        // that started before the child: its start time differs.
        if alive(pid) == Alive::Yes {
            assert!(start_ticks(pid).is_some());
        }
    }
}
