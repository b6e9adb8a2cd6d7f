//! Reading the log: its files in order, lines forward and backward in
//! bounded chunks, the `seq` of any position, and bisection by time.
//!
//! A log is its sealed segments (oldest first) followed by the live file;
//! each is a [`Part`]. A snapshot of the log is taken with a brief shared
//! `flock` of the live file: appenders hold it exclusively while they
//! write, and retention holds it exclusively while it renames segments, so
//! a snapshot never ends inside a line being written nor sees a segment
//! half-renamed. Everything after that reads open files up to the snapshot
//! lengths, without locks. Memory stays bounded by the chunk size plus the
//! longest line.

use std::io;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use crate::error::{Error, IoContext, Result};
use crate::fs::layout::Layout;
use crate::id::MilestoneId;
use crate::io::{File, FileId, FileKind, Io, LockMode};

use super::line;

/// Bytes read per chunk when scanning.
pub const CHUNK: usize = 1 << 20;
/// Bytes read per chunk when looking at the end or a few lines.
pub const SMALL_CHUNK: usize = 64 * 1024;
/// Read size when looking at the last lines of a file (an append's look
/// at the tail): most events are a few hundred bytes.
const TAIL_CHUNK: usize = 8 * 1024;
/// Bisection stops when the interval is this small and scans the rest.
const BISECT_SPAN: u64 = 64 * 1024;
/// How often a snapshot is retried when files move under it.
const SNAPSHOT_ATTEMPTS: usize = 100;

/// One file of the log, open, with a length snapshot.
pub struct Part {
    /// Where the file was opened.
    pub path: PathBuf,
    /// The open file (read through it even if the path changes).
    pub file: Box<dyn File>,
    /// Its device and inode.
    pub id: FileId,
    /// Length at the snapshot.
    pub len: u64,
    /// Where the first line starts: past the header of a rewritten
    /// segment, else 0.
    pub body: u64,
    /// End of the last complete line (bytes past it are a torn tail).
    pub end: u64,
    /// For a segment, the `seq` before its first line (its header's
    /// `first_seq`, or its name, minus one). `None` for the live file,
    /// whose numbering continues from the part before it.
    pub base: Option<u64>,
}

impl Part {
    /// Bytes of a torn tail (a last line without newline).
    pub fn torn(&self) -> u64 {
        self.len.saturating_sub(self.end)
    }
}

/// A position in a log: a line start in a part. `Pos::end(parts)` is past
/// the last part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// Index of the part.
    pub part: usize,
    /// Byte offset in the part.
    pub off: u64,
}

impl Pos {
    /// The start of the log.
    pub fn start(parts: &[Part]) -> Pos {
        Pos {
            part: 0,
            off: parts.first().map_or(0, |p| p.body),
        }
    }

    /// The end of the log.
    pub fn end(parts: &[Part]) -> Pos {
        Pos {
            part: parts.len(),
            off: 0,
        }
    }
}

/// Read into all of `buf` at `offset`; shorter only at end of file.
pub fn read_full_at(file: &dyn File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Read exactly `buf.len()` bytes at `offset`: the file must not shrink
/// under a reader (only torn bytes past a snapshot are ever cut).
fn read_exact_at(file: &dyn File, buf: &mut [u8], offset: u64, path: &Path) -> Result<()> {
    let n = read_full_at(file, buf, offset).ctx("read", path)?;
    if n < buf.len() {
        return Err(Error::io(
            "read",
            path,
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file ended at {} while reading", offset + n as u64),
            ),
        ));
    }
    Ok(())
}

/// End of the last complete line in `[from, len)`, or `from` if none.
pub fn complete_end(file: &dyn File, from: u64, len: u64, path: &Path) -> Result<u64> {
    let mut buf = vec![0u8; TAIL_CHUNK.min(len.saturating_sub(from) as usize)];
    let mut end = len;
    while end > from {
        let start = end.saturating_sub(buf.len() as u64).max(from);
        let chunk = &mut buf[..(end - start) as usize];
        read_exact_at(file, chunk, start, path)?;
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(from)
}

/// Complete lines of a file range, oldest first.
pub struct Lines<'a> {
    file: &'a dyn File,
    path: &'a Path,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_off: u64,
    /// Start of the next line in `buf`.
    i: usize,
    /// Bytes of `buf` holding file data.
    filled: usize,
    end: u64,
    chunk: usize,
}

impl<'a> Lines<'a> {
    /// Lines of `[start, end)`; `start` must be a line start.
    pub fn new(file: &'a dyn File, path: &'a Path, start: u64, end: u64, chunk: usize) -> Self {
        Lines {
            file,
            path,
            buf: Vec::new(),
            buf_off: start,
            i: 0,
            filled: 0,
            end: end.max(start),
            chunk,
        }
    }

    /// The next complete line (without its newline) and its offset. A last
    /// line without newline is not returned; [`Lines::pos`] is its start.
    pub fn next_line(&mut self) -> Result<Option<(u64, &[u8])>> {
        loop {
            let found = memchr::memchr(b'\n', &self.buf[self.i..self.filled]);
            if let Some(k) = found {
                let s = self.i;
                self.i += k + 1;
                return Ok(Some((self.buf_off + s as u64, &self.buf[s..s + k])));
            }
            let at = self.buf_off + self.filled as u64;
            if at >= self.end {
                return Ok(None);
            }
            if self.i > 0 {
                self.buf.copy_within(self.i..self.filled, 0);
                self.filled -= self.i;
                self.buf_off += self.i as u64;
                self.i = 0;
            }
            let want = (self.end - at).min(self.chunk as u64) as usize;
            if self.buf.len() < self.filled + want {
                // Grows past the chunk only for a line longer than it.
                let cap = (self.filled + want).max(self.buf.len() * 2);
                self.buf
                    .resize(cap.min(self.filled + (self.end - at) as usize), 0);
            }
            let room = (self.buf.len() - self.filled).min((self.end - at) as usize);
            let n = read_full_at(
                self.file,
                &mut self.buf[self.filled..self.filled + room],
                at,
            )
            .ctx("read", self.path)?;
            if n == 0 {
                // The file is shorter than expected: what is left is
                // unfinished.
                self.end = at;
                return Ok(None);
            }
            self.filled += n;
        }
    }

    /// Offset just past the last line returned.
    pub fn pos(&self) -> u64 {
        self.buf_off + self.i as u64
    }
}

/// Complete lines of a file range, newest first.
pub struct RevLines<'a> {
    file: &'a dyn File,
    path: &'a Path,
    /// File bytes `[buf_off, buf_off + j)` not handed out yet.
    buf: Vec<u8>,
    buf_off: u64,
    j: usize,
    start: u64,
    chunk: usize,
}

impl<'a> RevLines<'a> {
    /// Lines of `[start, end)`, newest first: `start` must be a line start
    /// and `end` a line end (just past a newline).
    pub fn new(file: &'a dyn File, path: &'a Path, start: u64, end: u64, chunk: usize) -> Self {
        RevLines {
            file,
            path,
            buf: Vec::new(),
            buf_off: end.max(start),
            j: 0,
            start,
            chunk,
        }
    }

    /// The previous line (without its newline) and its offset.
    pub fn prev_line(&mut self) -> Result<Option<(u64, &[u8])>> {
        loop {
            if self.j == 0 {
                if self.buf_off <= self.start {
                    return Ok(None);
                }
                self.load()?;
                continue;
            }
            let body_end = if self.buf[self.j - 1] == b'\n' {
                self.j - 1
            } else {
                self.j
            };
            let found = memchr::memrchr(b'\n', &self.buf[..body_end]);
            match found {
                Some(p) => {
                    let s = p + 1;
                    self.j = s;
                    return Ok(Some((self.buf_off + s as u64, &self.buf[s..body_end])));
                }
                None if self.buf_off <= self.start => {
                    self.j = 0;
                    return Ok(Some((self.buf_off, &self.buf[..body_end])));
                }
                None => self.load()?,
            }
        }
    }

    /// Prepend the chunk before `buf_off` to what is left of the buffer.
    fn load(&mut self) -> Result<()> {
        let from = self
            .buf_off
            .saturating_sub(self.chunk as u64)
            .max(self.start);
        let n = (self.buf_off - from) as usize;
        let mut fresh = vec![0u8; n + self.j];
        read_exact_at(self.file, &mut fresh[..n], from, self.path)?;
        fresh[n..].copy_from_slice(&self.buf[..self.j]);
        self.buf = fresh;
        self.buf_off = from;
        self.j = self.buf.len();
        // Grow the reads, so a long line costs linear time, not quadratic.
        self.chunk = self.chunk.saturating_mul(2).min(CHUNK.max(self.chunk));
        Ok(())
    }
}

/// A visitor of lines: `(part index, offset, line)`, returns whether to go on.
pub type LineFn<'a> = dyn FnMut(usize, u64, &[u8]) -> Result<bool> + 'a;

/// Call `f(part, offset, line)` for every complete line from `from` to
/// `to`, oldest first, until it returns false. Returns false if stopped.
pub fn forward(
    parts: &[Part],
    from: Pos,
    to: Pos,
    chunk: usize,
    f: &mut LineFn<'_>,
) -> Result<bool> {
    for (i, p) in parts.iter().enumerate().take(to.part.saturating_add(1)) {
        if i < from.part {
            continue;
        }
        let start = if i == from.part { from.off } else { p.body };
        let stop = if i == to.part { to.off } else { p.end };
        let mut lines = Lines::new(&*p.file, &p.path, start.max(p.body), stop.min(p.end), chunk);
        while let Some((off, raw)) = lines.next_line()? {
            if !f(i, off, raw)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Call `f(part, offset, line)` for every complete line from `to` back to
/// `from`, newest first, until it returns false. Returns false if stopped.
pub fn backward(
    parts: &[Part],
    from: Pos,
    to: Pos,
    chunk: usize,
    f: &mut LineFn<'_>,
) -> Result<bool> {
    let last = to.part.min(parts.len().saturating_sub(1));
    for i in (from.part..=last).rev() {
        let Some(p) = parts.get(i) else { continue };
        let start = if i == from.part { from.off } else { p.body };
        let stop = if i == to.part { to.off } else { p.end };
        let mut lines = RevLines::new(&*p.file, &p.path, start.max(p.body), stop.min(p.end), chunk);
        while let Some((off, raw)) = lines.prev_line()? {
            if !f(i, off, raw)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// What walking back from a position found.
#[derive(Debug, Default)]
pub struct Back {
    /// The nearest explicit `seq` behind the position, if reached.
    pub explicit: Option<u64>,
    /// Records between that line (or the part's start) and the position.
    pub count: u64,
    /// The newest readable timestamp among the lines walked.
    pub timestamp: Option<Timestamp>,
}

/// Walk back from `off` (a line end) to `start` in a file, stopping at the
/// nearest line with an explicit `seq`, counting the records without one.
pub fn walk_back(file: &dyn File, path: &Path, start: u64, off: u64) -> Result<Back> {
    let mut back = Back::default();
    let mut lines = RevLines::new(file, path, start, off, TAIL_CHUNK);
    while let Some((_, raw)) = lines.prev_line()? {
        let Some(rec) = line::record(raw) else {
            continue;
        };
        if back.timestamp.is_none() {
            back.timestamp = line::timestamp_of(rec.payload);
        }
        if let Some(seq) = line::explicit_seq(rec.payload) {
            back.explicit = Some(seq);
            return Ok(back);
        }
        back.count += 1;
    }
    Ok(back)
}

/// The `seq` of the last record before `off` in part `i`: the nearest
/// explicit one plus the records after it, else the part's base (a
/// segment) or the part before (the live file); 0 at the log's start.
pub fn seq_before(parts: &[Part], i: usize, off: u64) -> Result<u64> {
    let mut count = 0u64;
    let mut i = i.min(parts.len());
    let mut off = off;
    if i == parts.len() {
        let Some(last) = i.checked_sub(1) else {
            return Ok(0);
        };
        i = last;
        off = parts[last].end;
    }
    loop {
        let p = &parts[i];
        let back = walk_back(&*p.file, &p.path, p.body, off.min(p.end))?;
        count = count.saturating_add(back.count);
        if let Some(seq) = back.explicit {
            return Ok(seq.saturating_add(count));
        }
        if let Some(base) = p.base {
            return Ok(base.saturating_add(count));
        }
        let Some(prev) = i.checked_sub(1) else {
            return Ok(count);
        };
        i = prev;
        off = parts[i].end;
    }
}

/// Whether the segment directory of `id` exists. It and its parent must
/// be real directories: a link planted there could lead reads and writes
/// out of the store.
pub fn segments_dir_exists(io: &dyn Io, layout: &Layout, id: &MilestoneId) -> Result<bool> {
    let dir = layout.segments_dir(id);
    for p in [dir.parent().unwrap_or(&dir), &dir] {
        match io.metadata(p) {
            Ok(m) if m.kind == FileKind::Dir => {}
            Ok(m) => {
                return Err(Error::Corrupt {
                    what: "store layout".into(),
                    path: p.to_path_buf(),
                    detail: format!("expected a directory, found {:?}", m.kind).to_lowercase(),
                    hint: Some(crate::error::Hint::Advice(
                        "move it away; mstate never follows links out of the store".into(),
                    )),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("inspect", p, e)),
        }
    }
    Ok(true)
}

/// Sealed segments of `id` as (name, path), oldest first. Other files in
/// the directory (its lock, temporary files) are not segments.
pub fn list_segments(
    io: &dyn Io,
    layout: &Layout,
    id: &MilestoneId,
) -> Result<Vec<(u64, PathBuf)>> {
    if !segments_dir_exists(io, layout, id)? {
        return Ok(Vec::new());
    }
    let dir = layout.segments_dir(id);
    let entries = match io.read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", &dir, e)),
    };
    let mut out: Vec<(u64, PathBuf)> = entries
        .into_iter()
        .filter(|e| e.kind == FileKind::File)
        .filter_map(|e| {
            let digits = e.name.strip_suffix(".jsonl")?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((digits.parse().ok()?, dir.join(&e.name)))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Open a segment; `None` if it vanished.
pub fn open_segment(io: &dyn Io, name: u64, path: PathBuf) -> Result<Option<Part>> {
    let file = match io.open_read(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", &path, e)),
    };
    let len = file.len().ctx("inspect", &path)?;
    let id = file.id().ctx("inspect", &path)?;
    segment_part(file, path, id, len, name).map(Some)
}

/// A segment [`Part`] of an open file of length `len`.
pub fn segment_part(
    file: Box<dyn File>,
    path: PathBuf,
    id: FileId,
    len: u64,
    name: u64,
) -> Result<Part> {
    let (body, first_seq) = read_header(&*file, len, &path)?.unwrap_or((0, name));
    let end = complete_end(&*file, body, len, &path)?;
    Ok(Part {
        path,
        file,
        id,
        len,
        body,
        end,
        base: Some(first_seq.saturating_sub(1)),
    })
}

/// The header of a rewritten segment: (end of the header line, first seq).
fn read_header(file: &dyn File, len: u64, path: &Path) -> Result<Option<(u64, u64)>> {
    let mut buf = vec![0u8; 256.min(len as usize)];
    read_exact_at(file, &mut buf, 0, path)?;
    if !buf.starts_with(line::HEADER_PREFIX) {
        return Ok(None);
    }
    let Some(nl) = memchr::memchr(b'\n', &buf) else {
        return Ok(None);
    };
    Ok(line::parse_segment_header(&buf[..nl]).map(|seq| (nl as u64 + 1, seq)))
}

/// The live file as a [`Part`], given its length snapshot.
pub fn live_part(file: Box<dyn File>, path: PathBuf, id: FileId, len: u64) -> Result<Part> {
    let end = complete_end(&*file, 0, len, &path)?;
    Ok(Part {
        path,
        file,
        id,
        len,
        body: 0,
        end,
        base: None,
    })
}

/// Open every part of the log, oldest first, as one consistent snapshot.
pub fn snapshot(io: &dyn Io, layout: &Layout, id: &MilestoneId) -> Result<Vec<Part>> {
    let live_path = layout.event_log(id);
    for _ in 0..SNAPSHOT_ATTEMPTS {
        let live = match io.open_read(&live_path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("open", &live_path, e)),
        };
        let listed = match &live {
            Some(f) => {
                f.lock(LockMode::Shared).ctx("lock", &live_path)?;
                let listed = list_under_lock(io, layout, id, &**f, &live_path);
                let _ = f.unlock();
                listed?
            }
            None => open_segments(io, layout, id)?.map(|s| (s, None, 0)),
        };
        let Some((segments, live_id, live_len)) = listed else {
            continue;
        };
        let mut parts = Vec::with_capacity(segments.len() + 1);
        for (name, path, file, sid, len) in segments {
            // A seal interrupted by a crash links the live file as a
            // segment too: it is read once, as the live file.
            if Some(sid) != live_id {
                parts.push(segment_part(file, path, sid, len, name)?);
            }
        }
        if let (Some(f), Some(lid)) = (live, live_id) {
            parts.push(live_part(f, live_path.clone(), lid, live_len)?);
        }
        return Ok(parts);
    }
    Err(Error::io(
        "read",
        &live_path,
        io::Error::other("the log kept changing while it was opened; retry"),
    ))
}

type OpenSegment = (u64, PathBuf, Box<dyn File>, FileId, u64);

/// What a snapshot lists: the segments, and the live file's id and length.
type Listing = (Vec<OpenSegment>, Option<FileId>, u64);

/// Under the shared lock of the live file: check it is still the live file,
/// take its length, and open the segments. `None` means retry.
fn list_under_lock(
    io: &dyn Io,
    layout: &Layout,
    id: &MilestoneId,
    live: &dyn File,
    live_path: &Path,
) -> Result<Option<Listing>> {
    let fid = live.id().ctx("inspect", live_path)?;
    match io.metadata(live_path) {
        Ok(m) if m.id == fid => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("inspect", live_path, e)),
    }
    let len = live.len().ctx("inspect", live_path)?;
    Ok(open_segments(io, layout, id)?.map(|s| (s, Some(fid), len)))
}

/// Open every segment with its length; `None` if one vanished meanwhile.
fn open_segments(
    io: &dyn Io,
    layout: &Layout,
    id: &MilestoneId,
) -> Result<Option<Vec<OpenSegment>>> {
    let mut out = Vec::new();
    for (name, path) in list_segments(io, layout, id)? {
        let file = match io.open_read(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let len = file.len().ctx("inspect", &path)?;
        let fid = file.id().ctx("inspect", &path)?;
        out.push((name, path, file, fid, len));
    }
    Ok(Some(out))
}

/// Bytes of line content in the log before `pos`, counting each part from
/// its body: positions on one scale for bisection.
pub fn virt(parts: &[Part], pos: Pos) -> u64 {
    let mut v = 0;
    for (i, p) in parts.iter().enumerate() {
        if i == pos.part {
            return v + pos.off.clamp(p.body, p.end) - p.body;
        }
        v += p.end - p.body;
    }
    v
}

/// The position of virtual offset `v`.
fn unvirt(parts: &[Part], mut v: u64) -> Pos {
    for (i, p) in parts.iter().enumerate() {
        let size = p.end - p.body;
        if v < size {
            return Pos {
                part: i,
                off: p.body + v,
            };
        }
        v -= size;
    }
    Pos::end(parts)
}

/// The first line start at or after virtual offset `v` (at most `limit`).
fn line_start_from(parts: &[Part], v: u64, limit: u64) -> Result<u64> {
    let pos = unvirt(parts, v);
    let Some(p) = parts.get(pos.part) else {
        return Ok(limit);
    };
    if pos.off == p.body {
        return Ok(v);
    }
    // The line containing `pos` ends at the first newline at or after it.
    let mut buf = vec![0u8; 4096];
    let mut at = pos.off - 1;
    let stop = p.end.min(pos.off - 1 + (limit - v) + 1);
    while at < stop {
        let n = (buf.len() as u64).min(stop - at) as usize;
        read_exact_at(&*p.file, &mut buf[..n], at, &p.path)?;
        if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
            let ls = at + i as u64 + 1;
            return Ok((v + (ls - pos.off)).min(limit));
        }
        at += n as u64;
    }
    Ok(limit)
}

/// Bisect the log between `from` and `to` for the boundary of `pred`,
/// which the log's time order makes false on older lines and true on newer
/// ones. Returns `(lo, hi)`: `lo` is `from` or the start of a line where
/// `pred` is false, `hi` is `to` or a line start from which the first
/// line with a readable timestamp makes `pred` true. Lines without a
/// readable timestamp are stepped over.
pub fn bisect(
    parts: &[Part],
    from: Pos,
    to: Pos,
    pred: &dyn Fn(Timestamp) -> bool,
) -> Result<(Pos, Pos)> {
    let mut lo = virt(parts, from);
    let mut hi = virt(parts, to).max(lo);
    while hi - lo > BISECT_SPAN {
        let mid = lo + (hi - lo) / 2;
        let mut ls = line_start_from(parts, mid, hi)?;
        if ls >= hi {
            ls = line_start_from(parts, lo + 1, hi)?;
            if ls >= hi {
                break;
            }
        }
        let probe_from = unvirt(parts, ls);
        let probe_to = unvirt(parts, hi);
        let mut verdict = None;
        forward(
            parts,
            probe_from,
            probe_to,
            16 * 1024,
            &mut |i, off, raw| {
                // Only a valid line is evidence of the time order.
                let Some(rec) =
                    line::record(raw).filter(|r| line::object_text(r.payload).is_some())
                else {
                    return Ok(true);
                };
                match line::timestamp_of(rec.payload) {
                    Some(t) => {
                        verdict = Some((pred(t), Pos { part: i, off }));
                        Ok(false)
                    }
                    None => Ok(true),
                }
            },
        )?;
        match verdict {
            Some((false, at)) => lo = virt(parts, at),
            Some((true, _)) | None => hi = ls,
        }
    }
    let lo_pos = if lo == virt(parts, from) {
        from
    } else {
        unvirt(parts, lo)
    };
    let hi_pos = if hi == virt(parts, to) {
        to
    } else {
        unvirt(parts, hi)
    };
    Ok((lo_pos, hi_pos))
}
