//! Descriptors this process inherited, and the `flock`s on them that pin
//! milestone locks.
//!
//! A shell that holds a lock keeps a descriptor of the lock's `info.json`
//! open and has mstate take an exclusive `flock` on it (`lock pin`). A
//! `flock` belongs to the open file description, which every process the
//! shell starts inherits with the descriptor, so the lock stays pinned as
//! long as the shell or any of those processes lives, whatever their
//! process group (see [`crate::fs::lock`]).
//!
//! These are not operations on store paths, so they do not go through the
//! I/O seam: they act on descriptors this process was handed, and read
//! `/proc/self` to learn what they are.

use std::io;

use crate::io::FileId;

/// `O_CLOEXEC` as `/proc/<pid>/fdinfo` reports it (octal `02000000`).
const CLOSE_ON_EXEC: u32 = 0o2_000_000;

/// The file (device and inode) that this process's descriptor `fd` is open
/// on; an error when `fd` is not open.
pub fn identity(fd: i32) -> io::Result<FileId> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(format!("/proc/self/fd/{fd}"))?;
    Ok(FileId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

/// Take an exclusive `flock` on the open file description of this
/// process's descriptor `fd`, without waiting: `false` when another open
/// file description holds a lock on the file already (an earlier pin).
///
/// The lock is not released when this process exits: it lasts while any
/// process holds a descriptor of that open file description.
pub fn pin(fd: i32) -> io::Result<bool> {
    // Fail cleanly (EBADF, ENOENT) on a number that is not open before
    // borrowing it.
    identity(fd)?;
    // SAFETY: `fd` was just seen open in this process, and nothing in this
    // process closes descriptors it did not open, so it stays open for the
    // borrow below (two system calls). It is only borrowed: this process
    // never closes it.
    let borrowed = unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) };
    let op = rustix::fs::FlockOperation::NonBlockingLockExclusive;
    loop {
        match rustix::fs::flock(borrowed, op) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The files this process holds pinned: those of its inherited descriptors
/// (not close-on-exec, so not opened by mstate itself) whose open file
/// description holds a `flock`. Empty when `/proc` cannot tell.
pub fn pinned() -> Vec<FileId> {
    // Listed with rustix's `Dir`, which ignores a failed close (std's
    // `ReadDir` panics on one).
    use rustix::fs::{Mode, OFlags};
    let Ok(fd) = rustix::fs::open(
        "/proc/self/fd",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return Vec::new();
    };
    let Ok(mut dir) = rustix::fs::Dir::new(fd) else {
        return Vec::new();
    };
    let mut fds = Vec::new();
    while let Some(entry) = dir.read() {
        let Ok(entry) = entry else {
            break;
        };
        if let Some(n) = entry
            .file_name()
            .to_str()
            .ok()
            .and_then(|n| n.parse::<i32>().ok())
        {
            fds.push(n);
        }
    }
    fds.into_iter()
        .filter(|fd| holds_inherited_flock(*fd))
        .filter_map(|fd| identity(fd).ok())
        .collect()
}

/// Whether descriptor `fd` is inherited and its open file description holds
/// a `flock` (`/proc/self/fdinfo` lists the locks an open file holds).
fn holds_inherited_flock(fd: i32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
        return false;
    };
    let inherited = text
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .is_some_and(|f| f & CLOSE_ON_EXEC == 0);
    inherited
        && text
            .lines()
            .any(|l| l.starts_with("lock:") && l.contains("FLOCK"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_pinned_inherited_descriptor_is_found_and_a_second_pin_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("info.json");
        std::fs::write(&path, b"{}").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let fd = file.as_raw_fd();
        let id = identity(fd).unwrap();
        // Opened here (close-on-exec) and unlocked: not a pin.
        assert!(!pinned().contains(&id));
        rustix::io::fcntl_setfd(&file, rustix::io::FdFlags::empty()).unwrap();
        assert!(!pinned().contains(&id));
        assert!(pin(fd).unwrap());
        assert!(pinned().contains(&id));
        // Another open file description of the same file cannot pin it.
        let other = std::fs::File::open(&path).unwrap();
        rustix::io::fcntl_setfd(&other, rustix::io::FdFlags::empty()).unwrap();
        assert!(!pin(other.as_raw_fd()).unwrap());
        drop(file);
        assert!(pin(other.as_raw_fd()).unwrap());
        drop(other);
        assert!(identity(fd).is_err() || identity(fd).unwrap() != id);
    }
}
