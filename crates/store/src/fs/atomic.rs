//! Small building blocks over [`Io`]: durable replace of a file, optional
//! reads, removal of a directory tree, unique names.
//!
//! [`write_replace`] is the one way the backend replaces a file: write a
//! temporary file beside it, sync it, rename it over the target, sync the
//! directory. A crash leaves the old or the new content, never a mix.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, IoContext, Result};
use crate::io::{FileKind, Io};

/// A token unique to this process and call: pid, time and a counter.
pub fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{}-{nanos:x}-{n}", std::process::id())
}

/// The temporary name used while writing `target`: `<target>.tmp.<nonce>`
/// (the seed uses `<target>.tmp.<pid>`).
pub fn temp_path(target: &Path) -> PathBuf {
    let mut s = target.as_os_str().to_owned();
    s.push(format!(".tmp.{}", nonce()));
    PathBuf::from(s)
}

/// Durably replace `target` with `bytes`.
pub fn write_replace(io: &dyn Io, target: &Path, bytes: &[u8]) -> Result<()> {
    write_replace_with(io, target, &mut |w| w.write_all(bytes))
}

/// Durably replace `target` with what `fill` writes, streamed to the
/// temporary file through a buffer: a large state is never held encoded
/// in memory as a whole.
pub fn write_replace_with(
    io: &dyn Io,
    target: &Path,
    fill: &mut dyn FnMut(&mut dyn io::Write) -> io::Result<()>,
) -> Result<()> {
    write_replace_then(io, target, fill, &mut || {})
}

/// [`write_replace_with`], running `after_rename` once the new file is in
/// place and before the directory is synced: a change of another entry of
/// the same directory made there becomes durable with the new file, at
/// the cost of no sync of its own.
pub fn write_replace_then(
    io: &dyn Io,
    target: &Path,
    fill: &mut dyn FnMut(&mut dyn io::Write) -> io::Result<()>,
    after_rename: &mut dyn FnMut(),
) -> Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let tmp = temp_path(target);
    let result = (|| {
        let mut f = io.create_new(&tmp).ctx("create", &tmp)?;
        {
            let mut w = io::BufWriter::with_capacity(WRITE_BUFFER, FileWriter(&mut *f));
            fill(&mut w).ctx("write", &tmp)?;
            io::Write::flush(&mut w).ctx("write", &tmp)?;
        }
        f.sync().ctx("sync", &tmp)?;
        drop(f);
        io.rename(&tmp, target).ctx("rename into place", target)?;
        Ok(())
    })();
    if result.is_err() {
        discard(io, &tmp);
        return result;
    }
    after_rename();
    io.sync_dir(dir).ctx("sync directory", dir)
}

/// Write buffer of [`write_replace_with`]: a small state is one `write`.
const WRITE_BUFFER: usize = 256 * 1024;

/// [`io::Write`] over a [`crate::io::File`].
struct FileWriter<'a>(&'a mut dyn crate::io::File);

impl io::Write for FileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Create `target` with `bytes`, complete and synced, failing with
/// `AlreadyExists` if it exists: written under a temporary name, then
/// hard-linked into place (the link is atomic and never replaces). The
/// caller syncs the directory.
pub fn create_exclusive(io: &dyn Io, target: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(target);
    let result = (|| {
        let mut f = io.create_new(&tmp)?;
        f.write_all(bytes)?;
        f.sync()?;
        drop(f);
        io.hard_link(&tmp, target)
    })();
    discard(io, &tmp);
    result
}

/// Remove a temporary file or directory that is no longer needed, trying
/// twice: a transient failure should not leave garbage behind. Errors are
/// not reported (the caller is already returning its own result); doctor
/// removes what is left.
pub fn discard(io: &dyn Io, path: &Path) {
    for _ in 0..2 {
        if remove_tree(io, path).is_ok() {
            return;
        }
    }
}

/// Read a file, or `None` if it does not exist.
pub fn read_opt(io: &dyn Io, path: &Path) -> Result<Option<Vec<u8>>> {
    match io.read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Whether anything (even a dangling symlink) exists at `path`.
pub fn exists(io: &dyn Io, path: &Path) -> Result<bool> {
    match io.metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("inspect", path, e)),
    }
}

/// Remove `path` and, if it is a directory, everything below it. Symlinks
/// are removed, never followed.
pub fn remove_tree(io: &dyn Io, path: &Path) -> Result<()> {
    let meta = match io.metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("inspect", path, e)),
    };
    if meta.kind == FileKind::Dir {
        for entry in io.read_dir(path).ctx("list", path)? {
            remove_tree(io, &path.join(&entry.name))?;
        }
        match io.remove_dir(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", path, e)),
        }
    } else {
        match io.remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", path, e)),
        }
    }
}

/// Create `path` as a directory if it is missing; fail if something that
/// is not a directory (a planted symlink, say) stands there. Returns whether
/// it was created.
pub fn ensure_dir(io: &dyn Io, path: &Path) -> Result<bool> {
    match io.metadata(path) {
        Ok(m) if m.kind == FileKind::Dir => Ok(false),
        Ok(m) => Err(Error::Corrupt {
            what: "store layout".into(),
            path: path.to_path_buf(),
            detail: format!("expected a directory, found {:?}", m.kind).to_lowercase(),
            hint: Some(crate::error::Hint::Advice(
                "move it away; mstate never follows links out of the store".into(),
            )),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match io.create_dir(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io("create directory", path, e)),
        },
        Err(e) => Err(Error::io("inspect", path, e)),
    }
}
