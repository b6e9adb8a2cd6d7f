//! [`RealIo`]: the real filesystem, every path beneath the store root
//! resolved from a handle of the root.
//!
//! Guarantees:
//! - Nothing outside the store is reached through a path beneath the root.
//!   A rooted [`RealIo`] never re-walks such a path from its string: it
//!   opens the root once, keeps handles of the root's directories (the
//!   layout directories) for its lifetime, reaches deeper directories with
//!   `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (component by
//!   component with `O_NOFOLLOW | O_DIRECTORY` where the kernel lacks
//!   `openat2` or a sandbox forbids it), and acts on the last component
//!   with the `*at` calls (`openat` with `O_NOFOLLOW`, `unlinkat`,
//!   `renameat2`, `linkat`, `mkdirat`, `fstatat(AT_SYMLINK_NOFOLLOW)`). A
//!   symbolic link anywhere on the way fails with an error naming it; a
//!   layout directory swapped for a link after it was first used keeps
//!   resolving to the real directory. Removals act on the entry of a
//!   directory handle, so a planted link is removed itself, never its
//!   target.
//! - Nothing is waited on: files are opened non-blocking and their type is
//!   checked on the handle, so a FIFO, socket or device where a file is
//!   expected is refused with an error saying what was found.
//! - A signal never fails an operation: calls interrupted with `EINTR` are
//!   retried, and no close error panics (directories are listed with
//!   rustix's [`Dir`], which ignores close errors, unlike std's `ReadDir`).
//!
//! Limits: the root itself, and its parents, are reached by their path and
//! may be links (the user chose them); only the creation of the root and its
//! parents on the first write, and an unrooted [`RealIo`] (tests, tools),
//! use plain path calls. Watches ([`Io::watch`]) are set by path with
//! `IN_DONT_FOLLOW`: a link at the watched name is not followed, though a
//! link swapped in above it could redirect a watch (which only ever wakes
//! a waiter early or late; waiters re-check on a timer).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, RenameFlags, ResolveFlags, CWD};
use rustix::io::Errno;

use super::{DirEntry, File, FileId, FileKind, Io, LockMode, Meta, Watch};

/// The real filesystem.
///
/// [`RealIo::new`] acts on paths as given; [`RealIo::beneath`] resolves
/// every path beneath a store root from handles of that root (see the
/// module docs).
#[derive(Debug, Default)]
pub struct RealIo {
    root: Option<Root>,
}

/// The store root and the directory handles kept open for its lifetime.
#[derive(Debug)]
struct Root {
    path: PathBuf,
    fd: OnceLock<Arc<OwnedFd>>,
    /// Handles of the root's directories, by name, opened on first use.
    dirs: Mutex<Vec<(OsString, Arc<OwnedFd>)>>,
}

/// Whether `openat2` was found missing or forbidden (then every walk goes
/// component by component).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

impl RealIo {
    /// The real filesystem, acting on paths as given.
    pub const fn new() -> Self {
        RealIo { root: None }
    }

    /// The real filesystem for the store rooted at `root`: every path
    /// beneath `root` is resolved from a handle of it, never following a
    /// link.
    pub fn beneath(root: impl Into<PathBuf>) -> Self {
        RealIo {
            root: Some(Root {
                path: root.into(),
                fd: OnceLock::new(),
                dirs: Mutex::new(Vec::new()),
            }),
        }
    }
}

/// Retry `f` while it fails with `EINTR`.
fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// A directory handle to act relative to.
enum DirRef {
    Cwd,
    Shared(Arc<OwnedFd>),
    Owned(OwnedFd),
}

impl AsFd for DirRef {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            DirRef::Cwd => CWD,
            DirRef::Shared(fd) => fd.as_fd(),
            DirRef::Owned(fd) => fd.as_fd(),
        }
    }
}

/// Where a path lands: a directory handle and a name relative to it.
struct At<'a> {
    dir: DirRef,
    name: &'a OsStr,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// The error for a link met on the way to `path`.
fn link_on_way(path: &Path) -> io::Error {
    io::Error::other(format!(
        "{} is a symbolic link, or one is on the way to it; mstate never follows \
         links inside the store (move the link away)",
        path.display()
    ))
}

/// The error for a special file where a regular file was expected.
fn not_a_file(kind: FileType) -> io::Error {
    io::Error::other(NotAFile(kind_name(kind)))
}

/// Inner error of the [`io::Error`] returned for a path that is not a
/// regular file (a FIFO, socket, device, or a directory read as a file).
#[derive(Debug)]
pub struct NotAFile(&'static str);

impl std::fmt::Display for NotAFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "expected a regular file, found {}; mstate neither follows links nor \
             opens special files in the store (move it away)",
            self.0
        )
    }
}

impl std::error::Error for NotAFile {}

/// Whether `e` is the refusal of a special file where a regular file was
/// expected (so a caller may treat the file as garbage, not as a failure).
pub fn is_not_a_file(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<NotAFile>())
}

fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO (named pipe)",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "a file of unknown type",
    }
}

fn kind_of(ft: FileType) -> FileKind {
    match ft {
        FileType::RegularFile => FileKind::File,
        FileType::Directory => FileKind::Dir,
        FileType::Symlink => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

impl Root {
    fn fd(&self) -> io::Result<Arc<OwnedFd>> {
        if let Some(fd) = self.fd.get() {
            return Ok(fd.clone());
        }
        // The root itself is reached by its path (links above it are the
        // user's choice); everything beneath it through this handle.
        let fd = retry(|| {
            rustix::fs::open(
                &self.path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
        })?;
        Ok(self.fd.get_or_init(|| Arc::new(fd)).clone())
    }

    /// The held handle of the root's directory `name`, opening it (without
    /// following a link) on first use.
    fn dir(&self, name: &OsStr, full: &Path) -> io::Result<Arc<OwnedFd>> {
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, fd)) = dirs.iter().find(|(n, _)| n == name) {
            return Ok(fd.clone());
        }
        let root = self.fd()?;
        let fd = open_dir_at(root.as_fd(), name, full)?;
        let fd = Arc::new(fd);
        dirs.push((name.to_owned(), fd.clone()));
        Ok(fd)
    }

    /// The path of `path` relative to the root, as its components, or
    /// `None` if `path` is not beneath the root (or is the root).
    fn components<'p>(&self, path: &'p Path) -> io::Result<Option<Vec<&'p OsStr>>> {
        let Ok(rel) = path.strip_prefix(&self.path) else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(n) => out.push(n),
                Component::CurDir => {}
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} leaves the store", path.display()),
                    ))
                }
            }
        }
        Ok(if out.is_empty() { None } else { Some(out) })
    }
}

/// Open directory `name` of `dir` without following a link.
fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr, full: &Path) -> io::Result<OwnedFd> {
    match retry(|| rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty())) {
        Ok(fd) => Ok(fd),
        Err(e) => Err(explain(dir, name, full, e)),
    }
}

/// Turn the `ENOTDIR`/`ELOOP` of a link met at `name` of `dir` into an
/// error that says so.
fn explain(dir: BorrowedFd<'_>, name: &OsStr, full: &Path, e: io::Error) -> io::Error {
    let code = e.raw_os_error();
    if code == Some(Errno::NOTDIR.raw_os_error())
        || code == Some(Errno::LOOP.raw_os_error())
        || code == Some(Errno::XDEV.raw_os_error())
    {
        let is_link = retry(|| rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW))
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
        if is_link || code != Some(Errno::NOTDIR.raw_os_error()) {
            return link_on_way(full);
        }
    }
    e
}

/// Walk `comps` down from `dir`, never following a link.
fn walk(dir: BorrowedFd<'_>, comps: &[&OsStr], full: &Path) -> io::Result<OwnedFd> {
    if !NO_OPENAT2.load(Ordering::Relaxed) && comps.len() > 1 {
        let mut rel = PathBuf::new();
        for c in comps {
            rel.push(c);
        }
        match retry(|| rustix::fs::openat2(dir, &rel, DIR_FLAGS, Mode::empty(), BENEATH)) {
            Ok(fd) => return Ok(fd),
            Err(e)
                if e.raw_os_error() == Some(Errno::NOSYS.raw_os_error())
                    || e.raw_os_error() == Some(Errno::PERM.raw_os_error()) =>
            {
                NO_OPENAT2.store(true, Ordering::Relaxed);
            }
            Err(e)
                if e.raw_os_error() == Some(Errno::LOOP.raw_os_error())
                    || e.raw_os_error() == Some(Errno::XDEV.raw_os_error()) =>
            {
                return Err(link_on_way(full))
            }
            // Name the link if it was one (the walk below does).
            Err(e) if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => {}
            Err(e) => return Err(e),
        }
    }
    let Some((first, rest)) = comps.split_first() else {
        return retry(|| rustix::fs::openat(dir, ".", DIR_FLAGS, Mode::empty()));
    };
    let mut cur = open_dir_at(dir, first, full)?;
    for c in rest {
        cur = open_dir_at(cur.as_fd(), c, full)?;
    }
    Ok(cur)
}

impl RealIo {
    /// Resolve `path` to a directory handle and a last component.
    fn at<'p>(&self, path: &'p Path) -> io::Result<At<'p>> {
        let plain = At {
            dir: DirRef::Cwd,
            name: path.as_os_str(),
        };
        let Some(root) = &self.root else {
            return Ok(plain);
        };
        let Some(comps) = root.components(path)? else {
            return Ok(plain);
        };
        let Some((name, parents)) = comps.split_last() else {
            return Ok(plain);
        };
        let dir = match parents {
            [] => DirRef::Shared(root.fd()?),
            [first, rest @ ..] => {
                let first = root.dir(first, path)?;
                if rest.is_empty() {
                    DirRef::Shared(first)
                } else {
                    DirRef::Owned(walk(first.as_fd(), rest, path)?)
                }
            }
        };
        Ok(At { dir, name })
    }

    /// Open a file two or more levels below a layout directory in one
    /// `openat2` call (instead of opening each directory on the way).
    /// `None` when that does not apply or the error is better explained by
    /// the walk (a link, a socket), which the caller then does.
    fn open_deep(&self, path: &Path, flags: OFlags) -> Option<io::Result<OwnedFd>> {
        let root = self.root.as_ref()?;
        if NO_OPENAT2.load(Ordering::Relaxed) {
            return None;
        }
        let comps = root.components(path).ok()??;
        let [first, rest @ ..] = &comps[..] else {
            return None;
        };
        if rest.len() < 2 {
            return None;
        }
        let dir = match root.dir(first, path) {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        };
        let mut rel = PathBuf::new();
        for c in rest {
            rel.push(c);
        }
        // openat2 refuses a mode without O_CREAT.
        let mode = if flags.contains(OFlags::CREATE) {
            Mode::from(0o644)
        } else {
            Mode::empty()
        };
        match retry(|| rustix::fs::openat2(&*dir, &rel, flags, mode, BENEATH)) {
            Ok(fd) => Some(Ok(fd)),
            Err(e)
                if e.raw_os_error() == Some(Errno::NOSYS.raw_os_error())
                    || e.raw_os_error() == Some(Errno::PERM.raw_os_error()) =>
            {
                NO_OPENAT2.store(true, Ordering::Relaxed);
                None
            }
            Err(e) if e.raw_os_error() == Some(Errno::XDEV.raw_os_error()) => {
                Some(Err(link_on_way(path)))
            }
            // A link (on the way or last), a socket: the walk says which.
            Err(e)
                if e.raw_os_error() == Some(Errno::LOOP.raw_os_error())
                    || e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error())
                    || e.raw_os_error() == Some(Errno::NXIO.raw_os_error()) =>
            {
                None
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// Open the file at `path` with `flags`, non-blocking and without
    /// following a link, and check it is a regular file (or a directory,
    /// if `dir_ok`). Returns the file and its length (from the `fstat` of the check; 0
    /// for a file just created).
    fn open(&self, path: &Path, flags: OFlags, dir_ok: bool) -> io::Result<(fs::File, u64)> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match self.open_deep(path, flags) {
            Some(r) => r?,
            None => self.open_at(path, flags)?,
        };
        let mut len = 0;
        if !flags.contains(OFlags::EXCL) {
            let st = retry(|| rustix::fs::fstat(&fd))?;
            let kind = FileType::from_raw_mode(st.st_mode);
            if !(kind == FileType::RegularFile || dir_ok && kind == FileType::Directory) {
                return Err(not_a_file(kind));
            }
            len = st.st_size as u64;
        }
        Ok((fs::File::from(fd), len))
    }

    /// Open `path` from the handle of its directory.
    fn open_at(&self, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        let at = self.at(path)?;
        match retry(|| rustix::fs::openat(&at.dir, at.name, flags, Mode::from(0o644))) {
            // The last component is a link (the walk refused any before it).
            Err(e) if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
                Err(not_a_file(FileType::Symlink))
            }
            // A socket (or a FIFO opened for writing with no reader).
            Err(e) if e.raw_os_error() == Some(Errno::NXIO.raw_os_error()) => Err(
                match retry(|| rustix::fs::statat(&at.dir, at.name, AtFlags::SYMLINK_NOFOLLOW)) {
                    Ok(st) => not_a_file(FileType::from_raw_mode(st.st_mode)),
                    Err(_) => e,
                },
            ),
            r => r,
        }
    }
}

#[derive(Debug)]
struct RealFile(fs::File);

impl File for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        loop {
            match std::os::unix::fs::FileExt::read_at(&self.0, buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        // std's write_all retries EINTR.
        self.0.write_all(buf)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
        // Linux's pwrite appends on an O_APPEND descriptor: clear the flag
        // for this write and put it back.
        let flags = retry(|| fcntl_getfl(&self.0))?;
        let append = flags.contains(OFlags::APPEND);
        if append {
            retry(|| fcntl_setfl(&self.0, flags - OFlags::APPEND))?;
        }
        // std's write_all_at retries EINTR.
        let written = std::os::unix::fs::FileExt::write_all_at(&self.0, buf, offset);
        if append {
            retry(|| fcntl_setfl(&self.0, flags))?;
        }
        written
    }
    fn sync(&self) -> io::Result<()> {
        retry(|| rustix::fs::fdatasync(&self.0))
    }
    fn len(&self) -> io::Result<u64> {
        Ok(retry(|| rustix::fs::fstat(&self.0))?.st_size as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        retry(|| rustix::fs::ftruncate(&self.0, len))
    }
    fn lock(&self, mode: LockMode) -> io::Result<()> {
        let op = match mode {
            LockMode::Shared => rustix::fs::FlockOperation::LockShared,
            LockMode::Exclusive => rustix::fs::FlockOperation::LockExclusive,
        };
        retry(|| rustix::fs::flock(&self.0, op))
    }
    fn try_lock(&self, mode: LockMode) -> io::Result<bool> {
        let op = match mode {
            LockMode::Shared => rustix::fs::FlockOperation::NonBlockingLockShared,
            LockMode::Exclusive => rustix::fs::FlockOperation::NonBlockingLockExclusive,
        };
        match retry(|| rustix::fs::flock(&self.0, op)) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::WOULDBLOCK.raw_os_error()) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
    fn unlock(&self) -> io::Result<()> {
        retry(|| rustix::fs::flock(&self.0, rustix::fs::FlockOperation::Unlock))
    }
    fn id(&self) -> io::Result<FileId> {
        let st = retry(|| rustix::fs::fstat(&self.0))?;
        Ok(FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }
}

fn meta_of(st: &rustix::fs::Stat) -> Meta {
    let modified = if st.st_mtime >= 0 {
        SystemTime::UNIX_EPOCH + Duration::new(st.st_mtime as u64, st.st_mtime_nsec as u32)
    } else {
        SystemTime::UNIX_EPOCH
    };
    Meta {
        kind: kind_of(FileType::from_raw_mode(st.st_mode)),
        len: st.st_size as u64,
        modified,
        id: FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        },
    }
}

impl Io for RealIo {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        // Sized once from the fstat of the type check; `read_to_end` would
        // ask for the size again (fstat and lseek) before reading.
        let (mut f, len) = self.open(path, OFlags::RDONLY, false)?;
        let len = usize::try_from(len).unwrap_or(0);
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
        let at = self.at(path)?;
        let st = retry(|| rustix::fs::statat(&at.dir, at.name, AtFlags::SYMLINK_NOFOLLOW))?;
        Ok(meta_of(&st))
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let at = self.at(path)?;
        let fd = open_dir_at(at.dir.as_fd(), at.name, path)?;
        let mut dir = Dir::new(fd)?;
        let mut out = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = match entry {
                Ok(e) => e,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            let raw = entry.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            let Ok(name) = std::str::from_utf8(raw) else {
                // Names that are not UTF-8 cannot be ours; list them under a
                // lossy name so doctor can still report them.
                out.push(DirEntry {
                    name: String::from_utf8_lossy(raw).into_owned(),
                    kind: FileKind::Other,
                });
                continue;
            };
            let kind = match entry.file_type() {
                FileType::Unknown => {
                    let dfd = dir.fd()?;
                    retry(|| {
                        rustix::fs::statat(dfd, OsStr::from_bytes(raw), AtFlags::SYMLINK_NOFOLLOW)
                    })
                    .map(|st| kind_of(FileType::from_raw_mode(st.st_mode)))
                    .unwrap_or(FileKind::Other)
                }
                ft => kind_of(ft),
            };
            out.push(DirEntry {
                name: name.to_owned(),
                kind,
            });
        }
        Ok(out)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let at = self.at(path)?;
        retry(|| rustix::fs::mkdirat(&at.dir, at.name, Mode::from(0o777)))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let (f, _) = self.open(path, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL, false)?;
        Ok(Box::new(RealFile(f)))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn File>> {
        // A directory is allowed: the lock code takes an flock on one.
        let (f, _) = self.open(path, OFlags::RDONLY, true)?;
        Ok(Box::new(RealFile(f)))
    }

    fn open_append(&self, path: &Path, create: bool) -> io::Result<Box<dyn File>> {
        let mut flags = OFlags::RDWR | OFlags::APPEND;
        if create {
            flags |= OFlags::CREATE;
        }
        let (f, _) = self.open(path, flags, false)?;
        Ok(Box::new(RealFile(f)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (f, t) = (self.at(from)?, self.at(to)?);
        retry(|| rustix::fs::renameat(&f.dir, f.name, &t.dir, t.name))
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (f, t) = (self.at(from)?, self.at(to)?);
        retry(|| rustix::fs::renameat_with(&f.dir, f.name, &t.dir, t.name, RenameFlags::NOREPLACE))
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (f, t) = (self.at(from)?, self.at(to)?);
        retry(|| rustix::fs::linkat(&f.dir, f.name, &t.dir, t.name, AtFlags::empty()))
    }

    fn set_modified(&self, path: &Path, modified: std::time::SystemTime) -> io::Result<()> {
        let at = self.at(path)?;
        let since = |t: std::time::SystemTime| match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                i64::from(d.subsec_nanos()),
            ),
            Err(e) => {
                let d = e.duration();
                let secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                match d.subsec_nanos() {
                    0 => (secs, 0),
                    n => (secs - 1, 1_000_000_000 - i64::from(n)),
                }
            }
        };
        let (tv_sec, tv_nsec) = since(modified);
        let times = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            last_modification: rustix::fs::Timespec { tv_sec, tv_nsec },
        };
        retry(|| rustix::fs::utimensat(&at.dir, at.name, &times, AtFlags::SYMLINK_NOFOLLOW))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let at = self.at(path)?;
        retry(|| rustix::fs::unlinkat(&at.dir, at.name, AtFlags::empty()))
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let at = self.at(path)?;
        retry(|| rustix::fs::unlinkat(&at.dir, at.name, AtFlags::REMOVEDIR))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if let Some(root) = &self.root {
            if path == root.path {
                let fd = root.fd()?;
                return retry(|| rustix::fs::fsync(&*fd));
            }
        }
        if let Some(root) = &self.root {
            // A layout directory: its held handle.
            if let Some([name]) = root.components(path)?.as_deref() {
                let fd = root.dir(name, path)?;
                return retry(|| rustix::fs::fsync(&*fd));
            }
        }
        let at = self.at(path)?;
        let fd = open_dir_at(at.dir.as_fd(), at.name, path)?;
        retry(|| rustix::fs::fsync(&fd))
    }

    fn watch(&self, path: &Path) -> io::Result<Box<dyn Watch>> {
        let dir = self.metadata(path)?.kind == FileKind::Dir;
        Ok(Box::new(InotifyWatch::new(path, dir)?))
    }
}

/// A [`Watch`] backed by inotify.
struct InotifyWatch {
    fd: OwnedFd,
}

impl InotifyWatch {
    fn new(path: &Path, dir: bool) -> io::Result<Self> {
        use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        let mut flags = WatchFlags::MODIFY
            | WatchFlags::CLOSE_WRITE
            | WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::MOVE_SELF
            | WatchFlags::ATTRIB
            | WatchFlags::DONT_FOLLOW;
        if dir {
            flags |= WatchFlags::ONLYDIR;
        }
        retry(|| inotify::add_watch(&fd, path, flags))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A store root with `active/` and `events/`, and a directory beside it.
    fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("state");
        let outside = tmp.path().join("outside");
        for d in [root.join("active"), root.join("events"), outside.clone()] {
            fs::create_dir_all(d).unwrap();
        }
        (tmp, root, outside)
    }

    #[test]
    fn a_link_on_the_way_is_refused_and_never_followed() {
        let (_tmp, root, outside) = fixture();
        fs::write(outside.join("pid"), "1\n").unwrap();
        symlink(&outside, root.join("events/segments")).unwrap();
        let io = RealIo::beneath(&root);
        let deep = root.join("events/segments/pid");
        for err in [
            io.read(&deep).unwrap_err(),
            io.remove_file(&deep).unwrap_err(),
            io.metadata(&deep).unwrap_err(),
            io.create_new(&root.join("events/segments/new"))
                .unwrap_err(),
            io.read_dir(&root.join("events/segments")).unwrap_err(),
        ] {
            assert!(err.to_string().contains("symbolic link"), "{err}");
        }
        // The link itself is what a removal removes.
        io.remove_file(&root.join("events/segments")).unwrap();
        assert_eq!(fs::read_to_string(outside.join("pid")).unwrap(), "1\n");
        assert!(!outside.join("new").exists());
    }

    #[test]
    fn the_component_walk_refuses_links_like_openat2() {
        let (_tmp, root, outside) = fixture();
        fs::create_dir_all(root.join("events/a")).unwrap();
        symlink(&outside, root.join("events/a/b")).unwrap();
        let events = rustix::fs::open(root.join("events"), DIR_FLAGS, Mode::empty()).unwrap();
        let comps = [OsStr::new("a"), OsStr::new("b")];
        let full = root.join("events/a/b/x");
        let err = walk(events.as_fd(), &comps, &full).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // Forced fallback: component by component.
        let mut cur = open_dir_at(events.as_fd(), comps[0], &full).unwrap();
        let err = open_dir_at(cur.as_fd(), comps[1], &full).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        cur = open_dir_at(events.as_fd(), OsStr::new("a"), &full).unwrap();
        assert!(rustix::fs::fstat(&cur).is_ok());
    }

    #[test]
    fn a_layout_directory_swapped_after_first_use_resolves_to_the_real_one() {
        let (_tmp, root, outside) = fixture();
        let io = RealIo::beneath(&root);
        io.create_new(&root.join("active/a.json")).unwrap();
        fs::rename(root.join("active"), root.join("active.real")).unwrap();
        symlink(&outside, root.join("active")).unwrap();
        io.create_new(&root.join("active/b.json")).unwrap();
        assert!(root.join("active.real/b.json").exists());
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        // A fresh handle refuses the link.
        let fresh = RealIo::beneath(&root);
        let err = fresh.create_new(&root.join("active/c.json")).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn special_files_are_refused_without_waiting() {
        let (_tmp, root, _outside) = fixture();
        let fifo = root.join("active/m.json");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let sock = root.join("events/milestone-m.jsonl");
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        for io in [RealIo::beneath(&root), RealIo::new()] {
            for p in [&fifo, &sock] {
                let e = io.read(p).unwrap_err().to_string();
                assert!(
                    e.contains("found a FIFO") || e.contains("found a socket"),
                    "{e}"
                );
                assert!(io.open_read(p).is_err());
                assert!(io.open_append(p, true).is_err());
            }
            assert_eq!(io.metadata(&fifo).unwrap().kind, FileKind::Other);
        }
        // A directory opens for reading (the lock code flocks one), but is
        // not read as a file.
        let io = RealIo::beneath(&root);
        assert!(io.open_read(&root.join("active")).is_ok());
        assert!(io.read(&root.join("active")).is_err());
    }

    #[test]
    fn paths_outside_the_root_and_the_root_itself_use_plain_calls() {
        let (tmp, root, _outside) = fixture();
        let io = RealIo::beneath(&root);
        let beside = tmp.path().join("beside");
        io.create_dir(&beside).unwrap();
        io.sync_dir(&beside).unwrap();
        io.sync_dir(&root).unwrap();
        io.sync_dir(&root.join("active")).unwrap();
        assert_eq!(io.metadata(&root).unwrap().kind, FileKind::Dir);
        let err = io.metadata(&root.join("active/../../beside")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
