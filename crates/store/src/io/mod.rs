//! The narrow I/O interface every filesystem effect of the backend goes
//! through.
//!
//! Production code uses [`RealIo`]; tests substitute implementations that
//! fail on the Nth call or model a disk that loses unsynced data, to check
//! that every operation survives errors and crashes. The interface is
//! file-level on purpose: create a new file, write, sync, rename, link,
//! remove, read a directory, sync a directory.
//!
//! Symbolic links are never followed at the last component: opening a path
//! that is a symlink fails, and renames, links and removals act on the link
//! itself. The store's [`RealIo`] goes further (see its module): every path
//! beneath the store root is resolved from a handle of the root without
//! following any link, and special files (FIFOs, sockets, devices) are
//! refused, never waited on. Implementations report a path that is neither
//! a regular file, a directory nor a symlink as [`FileKind::Other`], and
//! refuse to open it as a file.

use std::fmt;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Identity of a file: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// What a directory entry or path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// The facts about a path the store needs (from `lstat`).
#[derive(Debug, Clone)]
pub struct Meta {
    pub kind: FileKind,
    pub len: u64,
    pub modified: SystemTime,
    pub id: FileId,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub kind: FileKind,
}

/// Advisory lock modes for [`File::lock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// An open file.
#[allow(clippy::len_without_is_empty)] // a file's emptiness is never asked
pub trait File: Send + fmt::Debug {
    /// Read up to `buf.len()` bytes at `offset`; 0 means end of file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Write all of `buf` at the current position (the end, for append files).
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Write all of `buf` at `offset`, also in a file opened for append:
    /// rewrites bytes in place (after a failed sync, so that they are
    /// written back again).
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Make written data durable (`fdatasync`).
    fn sync(&self) -> io::Result<()>;
    /// Current length.
    fn len(&self) -> io::Result<u64>;
    /// Truncate or extend to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Take an advisory lock (`flock`), waiting for it.
    fn lock(&self, mode: LockMode) -> io::Result<()>;
    /// Try to take an advisory lock without waiting: `false` when another
    /// open file holds a conflicting one (lock liveness probes use it).
    fn try_lock(&self, mode: LockMode) -> io::Result<bool>;
    /// Release the advisory lock.
    fn unlock(&self) -> io::Result<()>;
    /// Device and inode of the open file.
    fn id(&self) -> io::Result<FileId>;
}

/// Something that wakes a waiter when a watched path changes.
pub trait Watch: Send {
    /// Return when the watched path may have changed, or after `timeout`.
    /// Spurious returns are allowed: callers re-check what they wait for.
    fn wait(&mut self, timeout: Duration) -> io::Result<()>;

    /// Return when the entry `name` of the watched directory may have been
    /// removed or renamed away, when process `holder` (on this host) exits,
    /// or after `timeout`. Lock waiters use it to sleep through every
    /// change but a release, and to notice at once a holder that died
    /// without releasing. Spurious returns are allowed; by default, any
    /// change wakes.
    fn wait_released(
        &mut self,
        timeout: Duration,
        name: &str,
        holder: Option<u32>,
    ) -> io::Result<()> {
        let _ = (name, holder);
        self.wait(timeout)
    }
}

/// Every filesystem effect of the filesystem backend.
pub trait Io: Send + Sync + fmt::Debug {
    /// Read a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// `lstat` a path.
    fn metadata(&self, path: &Path) -> io::Result<Meta>;
    /// List a directory (without `.` and `..`), in no particular order.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    /// Create one directory; fails with `AlreadyExists` if it exists.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Create a new file for writing; fails if anything exists at `path`.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn File>>;
    /// Open an existing file for reading.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn File>>;
    /// Open a file for appending (and reading), creating it if `create`.
    fn open_append(&self, path: &Path, create: bool) -> io::Result<Box<dyn File>>;
    /// Rename, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Rename, failing with `AlreadyExists` if `to` exists.
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Create a hard link `to` of the file `from`.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Remove a file (or symlink).
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Remove an empty directory.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Make the entries of a directory durable (`fsync` of the directory).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Watch a file or directory for changes.
    fn watch(&self, path: &Path) -> io::Result<Box<dyn Watch>>;
    /// Set the modification time of a file (not following a link): a
    /// store moved here keeps when its backups and checkpoints were made.
    /// Implementations that keep no times report `Unsupported`, which
    /// callers may ignore.
    fn set_modified(&self, path: &Path, modified: SystemTime) -> io::Result<()> {
        let _ = (path, modified);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this I/O keeps no modification times",
        ))
    }
}

/// A [`Watch`] that only sleeps: for filesystems or test doubles without
/// change notification.
#[derive(Debug, Default)]
pub struct PollWatch;

impl Watch for PollWatch {
    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        std::thread::sleep(timeout.min(Duration::from_millis(20)));
        Ok(())
    }
}

pub mod fault;
mod real;
pub mod sim;

pub use real::{is_not_a_file, NotAFile, RealIo};
