//! An [`Io`] wrapper that fails one chosen call.
//!
//! [`FaultIo`] counts every call made through it (including calls on the
//! files it opened) and makes call number N fail with a chosen error, the
//! way SQLite's test harness does: run an operation with N = 1, 2, ...
//! until it completes without meeting the fault, and check after each
//! failure that the store is consistent. A short write writes half of the
//! buffer before failing.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{DirEntry, File, FileId, Io, LockMode, Meta, Watch};

/// The error a fault produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No space left on device.
    NoSpace,
    /// Input/output error.
    Eio,
    /// Permission denied.
    Access,
    /// Read-only filesystem.
    ReadOnly,
    /// Half the bytes of a write land, then ENOSPC (other calls: ENOSPC).
    ShortWrite,
}

impl Fault {
    /// All kinds, for loops.
    pub const ALL: [Fault; 5] = [
        Fault::NoSpace,
        Fault::Eio,
        Fault::Access,
        Fault::ReadOnly,
        Fault::ShortWrite,
    ];

    fn error(self) -> io::Error {
        use rustix::io::Errno;
        let errno = match self {
            Fault::NoSpace | Fault::ShortWrite => Errno::NOSPC,
            Fault::Eio => Errno::IO,
            Fault::Access => Errno::ACCESS,
            Fault::ReadOnly => Errno::ROFS,
        };
        io::Error::from_raw_os_error(errno.raw_os_error())
    }
}

#[derive(Debug)]
struct Counter {
    calls: AtomicU64,
    fail_at: AtomicU64,
    fault: Fault,
    hit: AtomicU64,
}

impl Counter {
    /// Count a call; true if this one must fail.
    fn tick(&self) -> bool {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_at.load(Ordering::SeqCst) {
            self.hit.fetch_add(1, Ordering::SeqCst);
            true
        } else {
            false
        }
    }
}

/// Wraps an [`Io`] and fails its `fail_at`-th call (1-based; 0 never).
#[derive(Debug, Clone)]
pub struct FaultIo<I> {
    inner: I,
    counter: Arc<Counter>,
}

impl<I: Io> FaultIo<I> {
    pub fn new(inner: I, fail_at: u64, fault: Fault) -> Self {
        FaultIo {
            inner,
            counter: Arc::new(Counter {
                calls: AtomicU64::new(0),
                fail_at: AtomicU64::new(fail_at),
                fault,
                hit: AtomicU64::new(0),
            }),
        }
    }

    /// Fail the `n`-th call from now on (e.g. once a store is opened).
    pub fn arm(&self, n: u64) {
        self.counter.calls.store(0, Ordering::SeqCst);
        self.counter.fail_at.store(n, Ordering::SeqCst);
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.counter.calls.load(Ordering::SeqCst)
    }

    /// Whether the fault was injected.
    pub fn fired(&self) -> bool {
        self.counter.hit.load(Ordering::SeqCst) > 0
    }

    fn check(&self) -> io::Result<()> {
        if self.counter.tick() {
            Err(self.counter.fault.error())
        } else {
            Ok(())
        }
    }

    fn wrap(&self, f: Box<dyn File>) -> Box<dyn File> {
        Box::new(FaultFile {
            inner: f,
            counter: Arc::clone(&self.counter),
        })
    }
}

#[derive(Debug)]
struct FaultFile {
    inner: Box<dyn File>,
    counter: Arc<Counter>,
}

impl FaultFile {
    fn check(&self) -> io::Result<()> {
        if self.counter.tick() {
            Err(self.counter.fault.error())
        } else {
            Ok(())
        }
    }
}

impl File for FaultFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.check()?;
        self.inner.read_at(buf, offset)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.counter.tick() {
            if self.counter.fault == Fault::ShortWrite && buf.len() > 1 {
                self.inner.write_all(&buf[..buf.len() / 2])?;
            }
            return Err(self.counter.fault.error());
        }
        self.inner.write_all(buf)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check()?;
        self.inner.write_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.check()?;
        self.inner.sync()
    }
    fn len(&self) -> io::Result<u64> {
        self.check()?;
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        self.inner.set_len(len)
    }
    fn lock(&self, mode: LockMode) -> io::Result<()> {
        self.check()?;
        self.inner.lock(mode)
    }
    fn try_lock(&self, mode: LockMode) -> io::Result<bool> {
        self.check()?;
        self.inner.try_lock(mode)
    }
    fn unlock(&self) -> io::Result<()> {
        self.check()?;
        self.inner.unlock()
    }
    fn id(&self) -> io::Result<FileId> {
        self.check()?;
        self.inner.id()
    }
}

impl<I: Io> Io for FaultIo<I> {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.check()?;
        self.inner.read(path)
    }
    fn metadata(&self, path: &Path) -> io::Result<Meta> {
        self.check()?;
        self.inner.metadata(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.check()?;
        self.inner.read_dir(path)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.check()?;
        self.inner.create_dir(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn File>> {
        self.check()?;
        self.inner.create_new(path).map(|f| self.wrap(f))
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn File>> {
        self.check()?;
        self.inner.open_read(path).map(|f| self.wrap(f))
    }
    fn open_append(&self, path: &Path, create: bool) -> io::Result<Box<dyn File>> {
        self.check()?;
        self.inner.open_append(path, create).map(|f| self.wrap(f))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check()?;
        self.inner.rename(from, to)
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check()?;
        self.inner.rename_noreplace(from, to)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check()?;
        self.inner.hard_link(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check()?;
        self.inner.remove_file(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.check()?;
        self.inner.remove_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.check()?;
        self.inner.sync_dir(path)
    }
    fn watch(&self, path: &Path) -> io::Result<Box<dyn Watch>> {
        self.check()?;
        self.inner.watch(path)
    }
}
