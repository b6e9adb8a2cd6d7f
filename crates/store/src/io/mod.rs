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
//! that is a symlink fails with `ELOOP`, and renames, links and removals act
//! on the link itself. Combined with the layout check done when a store is
//! opened, a link planted inside the store cannot redirect a write outside it.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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
}

/// The real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealIo;

#[derive(Debug)]
struct RealFile(fs::File);

fn nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

impl File for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.0, buf, offset)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
        // Linux's pwrite appends on an O_APPEND descriptor: clear the flag
        // for this write and put it back.
        let flags = fcntl_getfl(&self.0)?;
        let append = flags.contains(OFlags::APPEND);
        if append {
            fcntl_setfl(&self.0, flags - OFlags::APPEND)?;
        }
        let written = std::os::unix::fs::FileExt::write_all_at(&self.0, buf, offset);
        if append {
            fcntl_setfl(&self.0, flags)?;
        }
        written
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn lock(&self, mode: LockMode) -> io::Result<()> {
        let op = match mode {
            LockMode::Shared => rustix::fs::FlockOperation::LockShared,
            LockMode::Exclusive => rustix::fs::FlockOperation::LockExclusive,
        };
        loop {
            match rustix::fs::flock(&self.0, op) {
                Err(rustix::io::Errno::INTR) => continue,
                r => return r.map_err(io::Error::from),
            }
        }
    }
    fn unlock(&self) -> io::Result<()> {
        rustix::fs::flock(&self.0, rustix::fs::FlockOperation::Unlock).map_err(io::Error::from)
    }
    fn id(&self) -> io::Result<FileId> {
        let m = self.0.metadata()?;
        Ok(FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

fn kind_of(ft: fs::FileType) -> FileKind {
    if ft.is_symlink() {
        FileKind::Symlink
    } else if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    }
}

impl Io for RealIo {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(nofollow())
            .open(path)?;
        // Sized once from fstat; `read_to_end` would ask for the size
        // again (fstat and lseek) before reading.
        let len = f.metadata().map(|m| m.len() as usize).unwrap_or(0);
        let mut buf = vec![0u8; len + 1];
        let mut filled = 0;
        loop {
            if filled == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            match f.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    fn metadata(&self, path: &Path) -> io::Result<Meta> {
        let m = fs::symlink_metadata(path)?;
        Ok(Meta {
            kind: kind_of(m.file_type()),
            len: m.len(),
            modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            id: FileId {
                dev: m.dev(),
                ino: m.ino(),
            },
        })
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                // Names that are not UTF-8 cannot be ours; list them under a
                // lossy name so doctor can still report them.
                out.push(DirEntry {
                    name: entry.file_name().to_string_lossy().into_owned(),
                    kind: FileKind::Other,
                });
                continue;
            };
            let kind = entry.file_type().map(kind_of).unwrap_or(FileKind::Other);
            out.push(DirEntry { name, kind });
        }
        Ok(out)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir(path)
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nofollow())
            .open(path)?;
        Ok(Box::new(RealFile(f)))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(nofollow())
            .open(path)?;
        Ok(Box::new(RealFile(f)))
    }

    fn open_append(&self, path: &Path, create: bool) -> io::Result<Box<dyn File>> {
        let f = fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(create)
            .mode(0o644)
            .custom_flags(nofollow())
            .open(path)?;
        Ok(Box::new(RealFile(f)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE).map_err(io::Error::from)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::hard_link(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let d = fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NOFOLLOW).bits() as i32,
            )
            .open(path)?;
        d.sync_all()
    }

    fn watch(&self, path: &Path) -> io::Result<Box<dyn Watch>> {
        Ok(Box::new(InotifyWatch::new(path)?))
    }
}

/// A [`Watch`] backed by inotify.
struct InotifyWatch {
    fd: rustix::fd::OwnedFd,
}

impl InotifyWatch {
    fn new(path: &Path) -> io::Result<Self> {
        use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        inotify::add_watch(
            &fd,
            path,
            WatchFlags::MODIFY
                | WatchFlags::CLOSE_WRITE
                | WatchFlags::CREATE
                | WatchFlags::DELETE
                | WatchFlags::DELETE_SELF
                | WatchFlags::MOVED_FROM
                | WatchFlags::MOVED_TO
                | WatchFlags::MOVE_SELF
                | WatchFlags::ATTRIB,
        )?;
        Ok(Self { fd })
    }

    fn drain(&self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = rustix::io::read(&self.fd, &mut buf) {
            if n == 0 {
                break;
            }
        }
    }
}

impl Watch for InotifyWatch {
    fn wait_released(
        &mut self,
        timeout: Duration,
        name: &str,
        holder: Option<u32>,
    ) -> io::Result<()> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        use rustix::fs::inotify::{ReadFlags, Reader};
        let deadline = std::time::Instant::now() + timeout;
        // The holder's exit makes its pidfd readable. Without pidfds (old
        // kernels) the caller's periodic recheck finds a dead holder.
        let pidfd = match holder
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw)
            .map(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()))
        {
            Some(Err(rustix::io::Errno::SRCH)) => return Ok(()), // already gone
            Some(Ok(fd)) => Some(fd),
            _ => None,
        };
        let wake = ReadFlags::DELETE_SELF
            | ReadFlags::MOVE_SELF
            | ReadFlags::IGNORED
            | ReadFlags::QUEUE_OVERFLOW
            | ReadFlags::UNMOUNT;
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            let ts = Timespec {
                tv_sec: left.as_secs() as _,
                tv_nsec: left.subsec_nanos() as _,
            };
            let mut fds = vec![PollFd::new(&self.fd, PollFlags::IN)];
            if let Some(fd) = &pidfd {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            match poll(&mut fds, Some(&ts)) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if fds.get(1).is_some_and(|f| !f.revents().is_empty()) {
                return Ok(()); // the holder exited
            }
            let mut reader = Reader::new(&self.fd, &mut buf);
            let mut removed = false;
            loop {
                match reader.next() {
                    Ok(ev) => {
                        let flags = ev.events();
                        let gone = flags.intersects(ReadFlags::MOVED_FROM | ReadFlags::DELETE)
                            && ev
                                .file_name()
                                .is_some_and(|n| n.to_bytes() == name.as_bytes());
                        removed |= gone || flags.intersects(wake);
                    }
                    Err(rustix::io::Errno::INTR) => continue,
                    // Drained (AGAIN), or an error: let the caller look.
                    Err(rustix::io::Errno::AGAIN) => break,
                    Err(_) => return Ok(()),
                }
            }
            if removed {
                return Ok(());
            }
        }
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let ts = Timespec {
            tv_sec: timeout.as_secs() as _,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        self.drain();
        Ok(())
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
pub mod sim;
