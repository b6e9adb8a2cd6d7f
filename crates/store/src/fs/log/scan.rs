//! Reading the log: its files in order, lines forward and backward in
//! bounded chunks, bisection by time, and the `seq` of any line.
//!
//! A log is its sealed segments (oldest first) followed by the live file.
//! Each file is read up to a length snapshot taken under a shared `flock`,
//! so a line an appender is writing is never mistaken for a torn one.
//! Memory stays bounded by the chunk size plus the longest line.

use std::path::PathBuf;

use jiff::Timestamp;

use crate::error::{Error, IoContext, Result};
use crate::fs::layout::Layout;
use crate::id::MilestoneId;
use crate::io::{File, FileKind, Io, LockMode};

use super::line;

/// Bytes read per chunk.
pub const CHUNK: usize = 1 << 20;

/// One file of the log, opened with a length snapshot.
pub struct Source {
    pub path: PathBuf,
    pub file: Box<dyn File>,
    /// Length at the snapshot.
    pub len: u64,
    /// End of the last complete line (bytes past it are a torn tail).
    pub complete: u64,
}

/// Sealed segments of `id`, oldest first.
pub fn segment_paths(
    io: &dyn Io,
    layout: &Layout,
    id: &MilestoneId,
) -> Result<Vec<(u64, PathBuf)>> {
    let dir = layout.segments_dir(id);
    let entries = match io.read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", &dir, e)),
    };
    let mut out: Vec<(u64, PathBuf)> = entries
        .into_iter()
        .filter(|e| e.kind == FileKind::File)
        .filter_map(|e| {
            let n: u64 = e.name.strip_suffix(".jsonl")?.parse().ok()?;
            Some((n, dir.join(&e.name)))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Open every file of the log, oldest first, with length snapshots.
/// `locked` says the caller holds the live file's exclusive lock already
/// (taking the shared one on another descriptor would wait for ourselves).
pub fn open_sources(
    io: &dyn Io,
    layout: &Layout,
    id: &MilestoneId,
    locked: bool,
) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for (_, path) in segment_paths(io, layout, id)? {
        if let Some(s) = open_source(io, path, false)? {
            out.push(s);
        }
    }
    if let Some(s) = open_source(io, layout.event_log(id), !locked)? {
        out.push(s);
    }
    Ok(out)
}

fn open_source(io: &dyn Io, path: PathBuf, live: bool) -> Result<Option<Source>> {
    let file = match io.open_read(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", &path, e)),
    };
    let len = if live {
        // A brief shared lock: appenders hold it exclusively while they
        // write, so the snapshot never ends inside a line being written.
        file.lock(LockMode::Shared).ctx("lock", &path)?;
        let len = file.len();
        let _ = file.unlock();
        len.ctx("inspect", &path)?
    } else {
        file.len().ctx("inspect", &path)?
    };
    let complete = complete_end(&*file, len).ctx("read", &path)?;
    Ok(Some(Source {
        path,
        file,
        len,
        complete,
    }))
}

/// End of the last complete line of a file of length `len`.
pub fn complete_end(file: &dyn File, len: u64) -> std::io::Result<u64> {
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        read_exact_at(file, &mut buf[..n], start)?;
        if let Some(i) = memchr::memrchr(b'\n', &buf[..n]) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Read exactly `buf.len()` bytes at `offset` (short only at end of file).
pub fn read_exact_at(file: &dyn File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Call `f(offset, line)` for every complete line in `[start, end)`, in
/// order, until it returns false. `start` must be a line start. Returns
/// the offset where reading stopped (the start of an incomplete last line,
/// or `end`).
pub fn forward(
    file: &dyn File,
    start: u64,
    end: u64,
    f: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
) -> Result<u64> {
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut buf_off = start; // file offset of buf[0]
    let mut pos = start; // next byte to read
    loop {
        if pos >= end {
            // Whatever is left in buf is an incomplete line.
            return Ok(buf_off);
        }
        let want = CHUNK.min((end - pos) as usize);
        let old = buf.len();
        buf.resize(old + want, 0);
        let n = read_exact_at(file, &mut buf[old..], pos)
            .map_err(|e| Error::io("read", "event log", e))?;
        buf.truncate(old + n);
        if n == 0 {
            return Ok(buf_off);
        }
        pos += n as u64;
        let mut line_start = 0;
        for nl in memchr::memchr_iter(b'\n', &buf[old..]) {
            let nl = old + nl;
            if !f(buf_off + line_start as u64, &buf[line_start..nl])? {
                return Ok(buf_off + nl as u64 + 1);
            }
            line_start = nl + 1;
        }
        buf.drain(..line_start);
        buf_off += line_start as u64;
    }
}

/// Call `f(offset, line)` for every complete line in `[start, end)`, newest
/// first, until it returns false. `start` must be a line start and `end`
/// the end of a line (just past its newline).
pub fn backward(
    file: &dyn File,
    start: u64,
    end: u64,
    f: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
) -> Result<()> {
    // `pending` holds bytes [pos, line end) not yet handed out: the tail of
    // a line whose start lies in an older chunk. It always ends with '\n'.
    let mut pending: Vec<u8> = Vec::new();
    let mut pos = end;
    while pos > start {
        let from = pos.saturating_sub(CHUNK as u64).max(start);
        let n = (pos - from) as usize;
        let mut data = vec![0u8; n];
        let got =
            read_exact_at(file, &mut data, from).map_err(|e| Error::io("read", "event log", e))?;
        data.truncate(got);
        data.extend_from_slice(&pending);
        let mut e = data.len();
        while e > 0 {
            match memchr::memrchr(b'\n', &data[..e - 1]) {
                Some(i) => {
                    if !f(from + i as u64 + 1, &data[i + 1..e - 1])? {
                        return Ok(());
                    }
                    e = i + 1;
                }
                None => break,
            }
        }
        data.truncate(e);
        pending = data;
        pos = from;
    }
    if let Some((_, body)) = pending.split_last() {
        f(start, body)?;
    }
    Ok(())
}

/// The first line of `[0, end)` whose timestamp is at or after `since`,
/// found by bisection (the log is time-ordered); returns a line start from
/// which a forward scan finds every such line.
pub fn bisect(file: &dyn File, end: u64, since: Timestamp) -> Result<u64> {
    let mut lo = 0u64; // a line start with time < since, or 0
    let mut hi = end; // every line starting at or after hi has time >= since
    let mut buf = vec![0u8; 16 * 1024];
    while hi - lo > 8 * 1024 {
        let mid = lo + (hi - lo) / 2;
        // The next line start after mid.
        let Some((ls, ts)) = line_after(file, mid, hi, &mut buf)? else {
            hi = mid;
            continue;
        };
        match ts {
            Some(t) if t >= since => hi = ls,
            _ => lo = ls,
        }
    }
    Ok(lo)
}

/// The first line starting after `at` (and before `limit`), with its time.
fn line_after(
    file: &dyn File,
    at: u64,
    limit: u64,
    buf: &mut Vec<u8>,
) -> Result<Option<(u64, Option<Timestamp>)>> {
    let mut pos = at;
    // Find the newline ending the line that contains `at`.
    let ls = loop {
        if pos >= limit {
            return Ok(None);
        }
        let n = read_exact_at(file, buf, pos).map_err(|e| Error::io("read", "event log", e))?;
        if n == 0 {
            return Ok(None);
        }
        if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
            break pos + i as u64 + 1;
        }
        pos += n as u64;
    };
    if ls >= limit {
        return Ok(None);
    }
    // Read that line (a prefix is enough for the timestamp).
    let n = read_exact_at(file, buf, ls).map_err(|e| Error::io("read", "event log", e))?;
    let line = &buf[..n];
    let line = match memchr::memchr(b'\n', line) {
        Some(i) => &line[..i],
        None => line,
    };
    Ok(Some((ls, line::timestamp(line))))
}

/// The last complete line of `[0, end)`, if any.
pub fn last_line(file: &dyn File, end: u64) -> Result<Option<(u64, Vec<u8>)>> {
    let mut out = None;
    backward(file, 0, end, &mut |off, l| {
        out = Some((off, l.to_vec()));
        Ok(false)
    })?;
    Ok(out)
}

/// The seq of the line before `(source, offset)`: the nearest explicit
/// `seq` behind it plus the lines in between; 0 when nothing is before.
pub fn seq_before(sources: &[Source], source: usize, offset: u64) -> Result<u64> {
    let mut count = 0u64;
    let mut found = None;
    let mut idx = source;
    let mut end = offset;
    loop {
        if let Some(s) = sources.get(idx) {
            backward(&*s.file, 0, end.min(s.complete), &mut |_, l| {
                if let Some(seq) = line::seq(l) {
                    found = Some(seq + count);
                    return Ok(false);
                }
                count += 1;
                Ok(true)
            })?;
        }
        if let Some(f) = found {
            return Ok(f);
        }
        if idx == 0 {
            return Ok(count);
        }
        idx -= 1;
        end = sources[idx].complete;
    }
}
