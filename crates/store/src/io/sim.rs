//! A simulated disk that can crash.
//!
//! [`SimIo`] keeps a whole filesystem in memory and records every change as
//! an operation. Changes are volatile until made durable the way a real
//! disk makes them durable:
//! - data written to a file (and its length) is durable once that file is
//!   synced;
//! - a new name, a removal or a rename is durable once a directory it
//!   touches is synced (a rename is one journal entry, so both sides become
//!   durable together).
//!
//! [`SimIo::crash_states`] then lists disks that a power loss at any point
//! could leave: every durable change, plus a chosen subset of the volatile
//! ones (none, all, each prefix, all but one, random picks), with the last
//! kept unsynced write also torn in half or zero-filled. The one ordering
//! kept is causal: a change to a directory entry keeps the earlier changes
//! to the same entry (no filesystem persists a create without the rename
//! that freed its name). Tests reopen a
//! store on each and check its invariants. Everything is single-threaded
//! and deterministic; `flock` is a no-op.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::{DirEntry, File, FileId, FileKind, Io, LockMode, Meta, PollWatch, Watch};

type Ino = u64;

#[derive(Debug, Clone)]
enum Node {
    File(Vec<u8>),
    Dir(BTreeMap<String, Ino>),
}

#[derive(Debug, Clone)]
struct Inode {
    node: Node,
    modified: SystemTime,
}

/// A filesystem image: inodes by number, root is inode 1.
#[derive(Debug, Clone)]
pub struct Image {
    inodes: BTreeMap<Ino, Inode>,
    next: Ino,
}

const ROOT: Ino = 1;

impl Default for Image {
    fn default() -> Self {
        let mut inodes = BTreeMap::new();
        inodes.insert(
            ROOT,
            Inode {
                node: Node::Dir(BTreeMap::new()),
                modified: SystemTime::UNIX_EPOCH,
            },
        );
        Image { inodes, next: 2 }
    }
}

/// One recorded change.
#[derive(Debug, Clone)]
enum Op {
    NewInode {
        ino: Ino,
        dir: bool,
    },
    Write {
        ino: Ino,
        offset: u64,
        data: Vec<u8>,
    },
    SetLen {
        ino: Ino,
        len: u64,
    },
    Link {
        dir: Ino,
        name: String,
        ino: Ino,
    },
    Unlink {
        dir: Ino,
        name: String,
    },
    Rename {
        from: Ino,
        from_name: String,
        to: Ino,
        to_name: String,
    },
}

impl Op {
    /// Whether a sync of `ino` (file or directory) makes this op durable.
    fn synced_by(&self, ino: Ino, is_dir: bool) -> bool {
        match self {
            Op::NewInode { .. } => true,
            Op::Write { ino: i, .. } | Op::SetLen { ino: i, .. } => !is_dir && *i == ino,
            Op::Link { dir, .. } | Op::Unlink { dir, .. } => is_dir && *dir == ino,
            Op::Rename { from, to, .. } => is_dir && (*from == ino || *to == ino),
        }
    }
}

impl Image {
    fn apply(&mut self, op: &Op, now: SystemTime) {
        match op {
            Op::NewInode { ino, dir } => {
                let node = if *dir {
                    Node::Dir(BTreeMap::new())
                } else {
                    Node::File(Vec::new())
                };
                self.inodes.insert(
                    *ino,
                    Inode {
                        node,
                        modified: now,
                    },
                );
                self.next = self.next.max(ino + 1);
            }
            Op::Write { ino, offset, data } => {
                if let Some(Inode {
                    node: Node::File(buf),
                    modified,
                }) = self.inodes.get_mut(ino)
                {
                    let off = *offset as usize;
                    if buf.len() < off + data.len() {
                        buf.resize(off + data.len(), 0);
                    }
                    buf[off..off + data.len()].copy_from_slice(data);
                    *modified = now;
                }
            }
            Op::SetLen { ino, len } => {
                if let Some(Inode {
                    node: Node::File(buf),
                    modified,
                }) = self.inodes.get_mut(ino)
                {
                    buf.resize(*len as usize, 0);
                    *modified = now;
                }
            }
            Op::Link { dir, name, ino } => {
                if let Some(Inode {
                    node: Node::Dir(e), ..
                }) = self.inodes.get_mut(dir)
                {
                    e.insert(name.clone(), *ino);
                }
            }
            Op::Unlink { dir, name } => {
                if let Some(Inode {
                    node: Node::Dir(e), ..
                }) = self.inodes.get_mut(dir)
                {
                    e.remove(name);
                }
            }
            Op::Rename {
                from,
                from_name,
                to,
                to_name,
            } => {
                let ino = match self.inodes.get_mut(from) {
                    Some(Inode {
                        node: Node::Dir(e), ..
                    }) => e.remove(from_name),
                    _ => None,
                };
                if let (
                    Some(ino),
                    Some(Inode {
                        node: Node::Dir(e), ..
                    }),
                ) = (ino, self.inodes.get_mut(to))
                {
                    e.insert(to_name.clone(), ino);
                }
            }
        }
    }

    fn dir(&self, ino: Ino) -> Option<&BTreeMap<String, Ino>> {
        match self.inodes.get(&ino) {
            Some(Inode {
                node: Node::Dir(e), ..
            }) => Some(e),
            _ => None,
        }
    }

    /// Resolve an absolute path to its parent directory and final name.
    fn parent_of(&self, path: &Path) -> io::Result<(Ino, String)> {
        let mut comps: Vec<String> = Vec::new();
        for c in path.components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(s) => comps.push(s.to_string_lossy().into_owned()),
                Component::ParentDir => {
                    comps.pop();
                }
                Component::Prefix(_) => return Err(einval()),
            }
        }
        let Some(name) = comps.pop() else {
            return Err(einval());
        };
        let mut cur = ROOT;
        for c in comps {
            let entries = self.dir(cur).ok_or_else(enotdir)?;
            cur = *entries.get(&c).ok_or_else(enoent)?;
        }
        self.dir(cur).ok_or_else(enotdir)?;
        Ok((cur, name))
    }

    fn lookup(&self, path: &Path) -> io::Result<Ino> {
        if path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::CurDir))
        {
            return Ok(ROOT);
        }
        let (dir, name) = self.parent_of(path)?;
        self.dir(dir)
            .and_then(|e| e.get(&name))
            .copied()
            .ok_or_else(enoent)
    }

    /// Every file below `/` with its content, for comparing images.
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![(ROOT, String::new())];
        while let Some((ino, prefix)) = stack.pop() {
            if let Some(entries) = self.dir(ino) {
                for (name, child) in entries {
                    let path = format!("{prefix}/{name}");
                    match self.inodes.get(child).map(|i| &i.node) {
                        Some(Node::File(data)) => {
                            out.insert(path, data.clone());
                        }
                        Some(Node::Dir(_)) => stack.push((*child, path)),
                        None => {}
                    }
                }
            }
        }
        out
    }
}

fn enoent() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}
fn enotdir() -> io::Error {
    io::Error::from_raw_os_error(rustix::io::Errno::NOTDIR.raw_os_error())
}
fn einval() -> io::Error {
    io::Error::from(io::ErrorKind::InvalidInput)
}
fn eexist() -> io::Error {
    io::Error::from(io::ErrorKind::AlreadyExists)
}

#[derive(Debug)]
struct State {
    /// The disk as it was when recording started (all durable).
    base: Image,
    /// The disk as processes see it now.
    cur: Image,
    /// Changes since `base`, each with the call count at which it became
    /// durable, if it has.
    ops: Vec<(Op, Option<u64>)>,
    /// I/O calls made so far.
    calls: u64,
    /// `ops.len()` after each call: `marks[c]` = ops recorded by the first
    /// `c` calls.
    marks: Vec<usize>,
    clock: SystemTime,
}

/// The simulated filesystem. Clones share the same disk.
#[derive(Debug, Clone)]
pub struct SimIo {
    state: Arc<Mutex<State>>,
}

impl Default for SimIo {
    fn default() -> Self {
        Self::from_image(Image::default())
    }
}

impl SimIo {
    /// A disk holding `image`, all of it durable.
    pub fn from_image(image: Image) -> Self {
        SimIo {
            state: Arc::new(Mutex::new(State {
                base: image.clone(),
                cur: image,
                ops: Vec::new(),
                calls: 0,
                marks: vec![0],
                // Before any real boot time: what a crash leaves looks like it
                // predates the reboot that follows a power loss.
                clock: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Forget the history: what is on disk now becomes the durable base.
    /// Unsynced changes are kept as if they had been synced.
    pub fn settle(&self) {
        let mut s = self.lock();
        s.base = s.cur.clone();
        s.ops.clear();
        s.calls = 0;
        s.marks = vec![0];
    }

    /// I/O calls made since the last [`settle`](Self::settle).
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// The disk as processes see it now.
    pub fn image(&self) -> Image {
        self.lock().cur.clone()
    }

    /// Disks a power loss after `call` I/O calls (counted since the last
    /// settle) could leave, at most `limit` of them, chosen
    /// deterministically from `seed`.
    pub fn crash_states(&self, call: u64, seed: u64, limit: usize) -> Vec<Image> {
        let s = self.lock();
        let n_ops = s.marks.get(call as usize).copied().unwrap_or(s.ops.len());
        let ops = &s.ops[..n_ops];
        // Creating an inode is never lost on its own: without a name it is
        // invisible, so it counts as durable.
        let durable_at = |i: usize| {
            matches!(ops[i].0, Op::NewInode { .. }) || matches!(ops[i].1, Some(at) if at <= call)
        };
        let pending: Vec<usize> = (0..ops.len()).filter(|&i| !durable_at(i)).collect();
        let mut choices: Vec<Vec<bool>> = Vec::new();
        let p = pending.len();
        choices.push(vec![false; p]);
        choices.push(vec![true; p]);
        for k in 1..p {
            choices.push((0..p).map(|i| i < k).collect());
        }
        for k in 0..p {
            choices.push((0..p).map(|i| i != k).collect());
        }
        let mut rng = seed | 1;
        for _ in 0..8 {
            choices.push(
                (0..p)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng & 1 == 1
                    })
                    .collect(),
            );
        }
        // A change to a directory entry depends on the earlier changes to
        // that same entry (a create can only follow the rename that freed
        // the name): keeping it keeps them, in every filesystem that
        // journals metadata in order.
        for keep in choices.iter_mut() {
            for j in (0..p).rev() {
                if !keep[j] {
                    continue;
                }
                let later = entry_keys(&ops[pending[j]].0);
                for i in 0..j {
                    if !keep[i]
                        && entry_keys(&ops[pending[i]].0)
                            .iter()
                            .any(|k| later.contains(k))
                    {
                        keep[i] = true;
                    }
                }
            }
        }
        choices.sort();
        choices.dedup();
        let mut out = Vec::new();
        for keep in choices {
            for tear in [Tear::None, Tear::Half, Tear::Zero] {
                if out.len() >= limit {
                    return out;
                }
                let last_kept_write = pending
                    .iter()
                    .zip(&keep)
                    .filter(|(_, k)| **k)
                    .map(|(i, _)| *i)
                    .rfind(|i| matches!(ops[*i].0, Op::Write { .. }));
                if tear != Tear::None && last_kept_write.is_none() {
                    continue;
                }
                let mut img = s.base.clone();
                let mut kept = keep.iter();
                for (i, (op, _)) in ops.iter().enumerate() {
                    let keep_it = durable_at(i) || kept.next().copied().unwrap_or(false);
                    if !keep_it {
                        continue;
                    }
                    if Some(i) == last_kept_write {
                        if let Op::Write { ino, offset, data } = op {
                            let torn = match tear {
                                Tear::None => data.clone(),
                                Tear::Half => data[..data.len() / 2].to_vec(),
                                Tear::Zero => vec![0; data.len()],
                            };
                            img.apply(
                                &Op::Write {
                                    ino: *ino,
                                    offset: *offset,
                                    data: torn,
                                },
                                s.clock,
                            );
                            continue;
                        }
                    }
                    img.apply(op, s.clock);
                }
                out.push(img);
            }
        }
        out
    }

    /// The operations recorded by the first `call` calls, with the call at
    /// which each became durable (for debugging tests).
    pub fn debug_ops(&self, call: u64) -> Vec<String> {
        let s = self.lock();
        let n = s.marks.get(call as usize).copied().unwrap_or(s.ops.len());
        s.ops[..n]
            .iter()
            .map(|(op, d)| {
                let op = match op {
                    Op::Write { ino, offset, data } => format!(
                        "Write {{ ino: {ino}, offset: {offset}, len: {} }}",
                        data.len()
                    ),
                    other => format!("{other:?}"),
                };
                format!("{op} durable_at={d:?}")
            })
            .collect()
    }

    /// Count a call; returns the number of this call (1-based).
    fn call(s: &mut State) -> u64 {
        s.calls += 1;
        s.clock += Duration::from_millis(1);
        s.calls
    }

    fn end_call(s: &mut State) {
        let n = s.ops.len();
        s.marks.push(n);
    }

    fn record(s: &mut State, op: Op) {
        let now = s.clock;
        s.cur.apply(&op, now);
        s.ops.push((op, None));
    }

    fn sync_ino(s: &mut State, ino: Ino, is_dir: bool) {
        let call = s.calls;
        for (op, durable) in s.ops.iter_mut() {
            if durable.is_none() && op.synced_by(ino, is_dir) {
                *durable = Some(call);
            }
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> io::Result<T>) -> io::Result<T> {
        let mut s = self.lock();
        Self::call(&mut s);
        let r = f(&mut s);
        Self::end_call(&mut s);
        r
    }

    fn new_inode(s: &mut State, dir: bool) -> Ino {
        let ino = s.cur.next;
        Self::record(s, Op::NewInode { ino, dir });
        ino
    }
}

/// The directory entries an operation changes.
fn entry_keys(op: &Op) -> Vec<(Ino, &str)> {
    match op {
        Op::Link { dir, name, .. } | Op::Unlink { dir, name } => vec![(*dir, name.as_str())],
        Op::Rename {
            from,
            from_name,
            to,
            to_name,
        } => vec![(*from, from_name.as_str()), (*to, to_name.as_str())],
        Op::NewInode { .. } | Op::Write { .. } | Op::SetLen { .. } => Vec::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tear {
    None,
    Half,
    Zero,
}

fn meta_of(img: &Image, ino: Ino) -> io::Result<Meta> {
    let inode = img.inodes.get(&ino).ok_or_else(enoent)?;
    let (kind, len) = match &inode.node {
        Node::File(d) => (FileKind::File, d.len() as u64),
        Node::Dir(e) => (FileKind::Dir, e.len() as u64),
    };
    Ok(Meta {
        kind,
        len,
        modified: inode.modified,
        id: FileId { dev: 1, ino },
    })
}

/// An open file of a [`SimIo`].
#[derive(Debug)]
struct SimFile {
    io: SimIo,
    ino: Ino,
    append: bool,
    pos: u64,
}

impl File for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.io
            .with(|s| match s.cur.inodes.get(&self.ino).map(|i| &i.node) {
                Some(Node::File(d)) => {
                    let off = (offset as usize).min(d.len());
                    let n = buf.len().min(d.len() - off);
                    buf[..n].copy_from_slice(&d[off..off + n]);
                    Ok(n)
                }
                _ => Err(einval()),
            })
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let ino = self.ino;
        let append = self.append;
        let pos = self.pos;
        let written = self.io.with(|s| {
            let len = match s.cur.inodes.get(&ino).map(|i| &i.node) {
                Some(Node::File(d)) => d.len() as u64,
                _ => return Err(einval()),
            };
            let offset = if append { len } else { pos };
            SimIo::record(
                s,
                Op::Write {
                    ino,
                    offset,
                    data: buf.to_vec(),
                },
            );
            Ok(offset + buf.len() as u64)
        })?;
        self.pos = written;
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let ino = self.ino;
        self.io.with(|s| {
            match s.cur.inodes.get(&ino).map(|i| &i.node) {
                Some(Node::File(_)) => {}
                _ => return Err(einval()),
            }
            SimIo::record(
                s,
                Op::Write {
                    ino,
                    offset,
                    data: buf.to_vec(),
                },
            );
            Ok(())
        })
    }

    fn sync(&self) -> io::Result<()> {
        self.io.with(|s| {
            SimIo::sync_ino(s, self.ino, false);
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.io.with(|s| meta_of(&s.cur, self.ino).map(|m| m.len))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.io.with(|s| {
            SimIo::record(s, Op::SetLen { ino: self.ino, len });
            Ok(())
        })
    }

    fn lock(&self, _mode: LockMode) -> io::Result<()> {
        self.io.with(|_| Ok(()))
    }

    fn try_lock(&self, _mode: LockMode) -> io::Result<bool> {
        // One process: nothing else holds a lock.
        self.io.with(|_| Ok(true))
    }

    fn unlock(&self) -> io::Result<()> {
        self.io.with(|_| Ok(()))
    }

    fn id(&self) -> io::Result<FileId> {
        Ok(FileId {
            dev: 1,
            ino: self.ino,
        })
    }
}

impl Io for SimIo {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.with(|s| {
            let ino = s.cur.lookup(path)?;
            match &s.cur.inodes.get(&ino).ok_or_else(enoent)?.node {
                Node::File(d) => Ok(d.clone()),
                Node::Dir(_) => Err(io::Error::from_raw_os_error(
                    rustix::io::Errno::ISDIR.raw_os_error(),
                )),
            }
        })
    }

    fn metadata(&self, path: &Path) -> io::Result<Meta> {
        self.with(|s| {
            let ino = s.cur.lookup(path)?;
            meta_of(&s.cur, ino)
        })
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.with(|s| {
            let ino = s.cur.lookup(path)?;
            let entries = s.cur.dir(ino).ok_or_else(enotdir)?;
            Ok(entries
                .iter()
                .map(|(name, child)| DirEntry {
                    name: name.clone(),
                    kind: meta_of(&s.cur, *child)
                        .map(|m| m.kind)
                        .unwrap_or(FileKind::Other),
                })
                .collect())
        })
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.with(|s| {
            let (dir, name) = s.cur.parent_of(path)?;
            if s.cur.dir(dir).is_some_and(|e| e.contains_key(&name)) {
                return Err(eexist());
            }
            let ino = SimIo::new_inode(s, true);
            SimIo::record(s, Op::Link { dir, name, ino });
            Ok(())
        })
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let ino = self.with(|s| {
            let (dir, name) = s.cur.parent_of(path)?;
            if s.cur.dir(dir).is_some_and(|e| e.contains_key(&name)) {
                return Err(eexist());
            }
            let ino = SimIo::new_inode(s, false);
            SimIo::record(s, Op::Link { dir, name, ino });
            Ok(ino)
        })?;
        Ok(Box::new(SimFile {
            io: self.clone(),
            ino,
            append: false,
            pos: 0,
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let ino = self.with(|s| s.cur.lookup(path))?;
        Ok(Box::new(SimFile {
            io: self.clone(),
            ino,
            append: false,
            pos: 0,
        }))
    }

    fn open_append(&self, path: &Path, create: bool) -> io::Result<Box<dyn File>> {
        let ino = self.with(|s| match s.cur.lookup(path) {
            Ok(ino) => match s.cur.inodes.get(&ino).map(|i| &i.node) {
                Some(Node::File(_)) => Ok(ino),
                _ => Err(einval()),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                let (dir, name) = s.cur.parent_of(path)?;
                let ino = SimIo::new_inode(s, false);
                SimIo::record(s, Op::Link { dir, name, ino });
                Ok(ino)
            }
            Err(e) => Err(e),
        })?;
        Ok(Box::new(SimFile {
            io: self.clone(),
            ino,
            append: true,
            pos: 0,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.with(|s| {
            let (fd, fname) = s.cur.parent_of(from)?;
            let (td, tname) = s.cur.parent_of(to)?;
            if !s.cur.dir(fd).is_some_and(|e| e.contains_key(&fname)) {
                return Err(enoent());
            }
            SimIo::record(
                s,
                Op::Rename {
                    from: fd,
                    from_name: fname,
                    to: td,
                    to_name: tname,
                },
            );
            Ok(())
        })
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.with(|s| {
            let (fd, fname) = s.cur.parent_of(from)?;
            let (td, tname) = s.cur.parent_of(to)?;
            if !s.cur.dir(fd).is_some_and(|e| e.contains_key(&fname)) {
                return Err(enoent());
            }
            if s.cur.dir(td).is_some_and(|e| e.contains_key(&tname)) {
                return Err(eexist());
            }
            SimIo::record(
                s,
                Op::Rename {
                    from: fd,
                    from_name: fname,
                    to: td,
                    to_name: tname,
                },
            );
            Ok(())
        })
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.with(|s| {
            let ino = s.cur.lookup(from)?;
            let (dir, name) = s.cur.parent_of(to)?;
            if s.cur.dir(dir).is_some_and(|e| e.contains_key(&name)) {
                return Err(eexist());
            }
            SimIo::record(s, Op::Link { dir, name, ino });
            Ok(())
        })
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.with(|s| {
            let (dir, name) = s.cur.parent_of(path)?;
            let ino = *s
                .cur
                .dir(dir)
                .and_then(|e| e.get(&name))
                .ok_or_else(enoent)?;
            if s.cur.dir(ino).is_some() {
                return Err(io::Error::from_raw_os_error(
                    rustix::io::Errno::ISDIR.raw_os_error(),
                ));
            }
            SimIo::record(s, Op::Unlink { dir, name });
            Ok(())
        })
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.with(|s| {
            let (dir, name) = s.cur.parent_of(path)?;
            let ino = *s
                .cur
                .dir(dir)
                .and_then(|e| e.get(&name))
                .ok_or_else(enoent)?;
            match s.cur.dir(ino) {
                Some(e) if e.is_empty() => {}
                Some(_) => {
                    return Err(io::Error::from_raw_os_error(
                        rustix::io::Errno::NOTEMPTY.raw_os_error(),
                    ))
                }
                None => return Err(enotdir()),
            }
            SimIo::record(s, Op::Unlink { dir, name });
            Ok(())
        })
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.with(|s| {
            let ino = s.cur.lookup(path)?;
            s.cur.dir(ino).ok_or_else(enotdir)?;
            SimIo::sync_ino(s, ino, true);
            Ok(())
        })
    }

    fn watch(&self, _path: &Path) -> io::Result<Box<dyn Watch>> {
        Ok(Box::new(PollWatch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(io: &SimIo, p: &str, data: &[u8], sync: bool) {
        let mut f = io.create_new(Path::new(p)).unwrap();
        f.write_all(data).unwrap();
        if sync {
            f.sync().unwrap();
        }
    }

    #[test]
    fn unsynced_names_and_data_can_vanish() {
        let io = SimIo::default();
        io.create_dir(Path::new("/d")).unwrap();
        io.sync_dir(Path::new("/")).unwrap();
        io.settle();
        write(&io, "/d/a", b"hello", true);
        let calls = io.calls();
        let states = io.crash_states(calls, 1, 100);
        // The name was never made durable: some crash states lack it.
        assert!(states.iter().any(|s| !s.files().contains_key("/d/a")));
        io.sync_dir(Path::new("/d")).unwrap();
        let states = io.crash_states(io.calls(), 1, 100);
        assert!(states
            .iter()
            .all(|s| s.files().get("/d/a").map(Vec::as_slice) == Some(&b"hello"[..])));
    }

    #[test]
    fn rename_without_data_sync_can_leave_an_empty_file() {
        let io = SimIo::default();
        io.create_dir(Path::new("/d")).unwrap();
        write(&io, "/d/f", b"old", true);
        io.sync_dir(Path::new("/d")).unwrap();
        io.settle();
        write(&io, "/d/tmp", b"new", false);
        io.rename(Path::new("/d/tmp"), Path::new("/d/f")).unwrap();
        io.sync_dir(Path::new("/d")).unwrap();
        let states = io.crash_states(io.calls(), 7, 1000);
        let contents: Vec<Vec<u8>> = states
            .iter()
            .filter_map(|s| s.files().get("/d/f").cloned())
            .collect();
        assert!(
            contents
                .iter()
                .any(|c| c.is_empty() || c.iter().all(|b| *b == 0)),
            "{contents:?}"
        );
    }
}
