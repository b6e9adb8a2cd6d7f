//! Facts about processes on this host: is a pid alive, when did it start,
//! who is its parent, which boot is this.
//!
//! Locks and sessions record the owner's pid together with its start time
//! (clock ticks since boot, field 22 of `/proc/<pid>/stat`) and the boot
//! id, so a pid reused by an unrelated process, or a lock left from before a
//! reboot, is recognised as stale.
//!
//! A lock may also record a process group: the holder then counts as
//! alive while any member of that group lives, so the children of a
//! `lock run` (or of a shell leading its group) that outlive the process
//! which took the lock keep it. Durations such as a lock's TTL are measured
//! with [`boot_clock`] (`CLOCK_BOOTTIME`), which wall-clock steps do not
//! move.

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

/// Process group of `pid`.
pub fn group_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(2)?.parse().ok()
}

/// The process group of this process.
pub fn own_group() -> u32 {
    rustix::process::getpgrp().as_raw_nonzero().get() as u32
}

/// Whether `pgid` is the process group led by the process that had start
/// time `leader_start` and still has a member on this host.
///
/// The kernel does not hand out a number as a pid while a process group of
/// that number exists, so the group is the one recorded unless its number
/// now names a process that started at another time (the group died out
/// and its number was reused).
pub fn group_alive(pgid: u32, leader_start: Option<u64>) -> Alive {
    let Some(p) = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return Alive::No;
    };
    if let (Some(recorded), Some(now)) = (leader_start, start_ticks(pgid)) {
        if recorded != now && group_of(pgid) == Some(pgid) {
            return Alive::No;
        }
    }
    match rustix::process::test_kill_process_group(p) {
        Ok(()) | Err(rustix::io::Errno::PERM) => {}
        Err(rustix::io::Errno::SRCH) => return Alive::No,
        Err(_) => return Alive::Unknown,
    }
    // The group exists, but its members may all have exited and wait to be
    // reaped (a reparented zombie waits for init): look for a live one,
    // the leader first.
    if alive(pgid) == Alive::Yes && group_of(pgid) == Some(pgid) {
        return Alive::Yes;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Alive::Yes;
    };
    let live_member = entries.flatten().any(|e| {
        e.file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .and_then(stat_fields)
            .is_some_and(|f| {
                f.first().is_some_and(|st| st != "Z" && st != "X")
                    && f.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
            })
    });
    if live_member {
        Alive::Yes
    } else {
        Alive::No
    }
}

/// Seconds on `CLOCK_BOOTTIME`: time since boot, suspend included, never
/// stepped by changes of the wall clock. Comparable only within one boot.
///
/// Read from `/proc/uptime` (the boot clock, to the hundredth of a second)
/// rather than through the vDSO, which tools such as valgrind do not map.
pub fn boot_clock() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Identity of this process's pid namespace (the inode of
/// `/proc/self/ns/pid`): pids recorded by a process of another namespace
/// (another container on the same kernel) mean nothing here.
pub fn pid_namespace() -> Option<u64> {
    static NS: OnceLock<Option<u64>> = OnceLock::new();
    *NS.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
    })
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

/// Why the process `pid` of this host, recorded with its start time and
/// the boot id of then, is gone; `None` while it may still run (alive,
/// or cannot tell).
pub fn gone(pid: u32, pid_start: Option<u64>, boot: Option<&str>) -> Option<String> {
    if let (Some(theirs), Some(ours)) = (boot, boot_id()) {
        if theirs != ours {
            return Some("started before the last reboot".into());
        }
    }
    if pid == 0 {
        return None;
    }
    if alive(pid) == Alive::No {
        return Some(format!("process {pid} is gone"));
    }
    match pid_start {
        Some(start) if start_ticks(pid).is_some_and(|now| now != start) => {
            Some(format!("pid {pid} now belongs to another process"))
        }
        _ => None,
    }
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
        assert_eq!(group_of(me), Some(own_group()));
        assert_eq!(group_alive(own_group(), None), Alive::Yes);
        assert!(boot_clock().is_some_and(|t| t > 0.0));
        assert!(pid_namespace().is_some());
    }

    #[test]
    fn a_group_is_alive_while_a_member_lives() {
        use std::os::unix::process::CommandExt;
        let mut leader = std::process::Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = leader.id();
        let start = start_ticks(pgid);
        assert_eq!(group_alive(pgid, start), Alive::Yes);
        // Another start time for the leader: the number was reused.
        assert_eq!(group_alive(pgid, start.map(|s| s + 1)), Alive::No);
        leader.kill().unwrap();
        leader.wait().unwrap();
        assert_eq!(group_alive(pgid, start), Alive::No);
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
