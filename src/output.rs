//! Printing: results on stdout (text or JSON), warnings and errors on
//! stderr.
//!
//! Guarantees: a failed write of the output (a full disk, an unwritable
//! descriptor, an I/O error) is an error, reported as "cannot write the
//! output: ..." with exit 1, never a silent success; a command that had
//! committed a change before its output failed says what it committed
//! ([`CliError::committed`]). A closed pipe (`mstate events m | head -1`)
//! is the reader being done: the command ends quietly with its own status.

use std::io::{self, BufWriter, Write};
use std::os::fd::AsFd;
use std::sync::Mutex;

use mstate_store::json::write_nested;
use serde::Serialize;

use crate::exit::{CliError, CliResult};

/// Standard output written with `write(2)` itself: std's `Stdout` treats
/// EBADF as success (output to an unwritable descriptor would vanish
/// without an error) and line-buffers on top of our own buffer.
struct RawStdout;

impl Write for RawStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // `write_all` retries EINTR and short writes.
        Ok(rustix::io::write(io::stdout().as_fd(), buf)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A failed flush of an [`Out`] dropped without [`Out::finish`] (an early
/// return): `main` reports it, so no path loses an output error.
static UNREPORTED: Mutex<Option<io::Error>> = Mutex::new(None);

/// The output error of an `Out` that was dropped unfinished, if any.
pub fn unreported_error() -> Option<io::Error> {
    UNREPORTED.lock().ok().and_then(|mut e| e.take())
}

/// Buffered stdout that treats a closed pipe as the reader being done and
/// any other failed write as an error.
pub struct Out {
    inner: BufWriter<RawStdout>,
    /// The reader went away, or a write failed: nothing more is written.
    done: bool,
    closed: bool,
}

impl Out {
    pub fn new() -> Self {
        Out {
            inner: BufWriter::with_capacity(64 * 1024, RawStdout),
            done: false,
            closed: false,
        }
    }

    /// Whether the reader went away.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Drop what is buffered without writing it.
    fn discard(&mut self) {
        self.done = true;
        let old = std::mem::replace(&mut self.inner, BufWriter::with_capacity(0, RawStdout));
        let _ = old.into_parts();
    }

    fn check(&mut self, r: io::Result<()>) -> CliResult<bool> {
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                self.discard();
                Ok(false)
            }
            Err(e) => {
                self.discard();
                Err(CliError::output(e))
            }
        }
    }

    /// Write `s` and a newline; false once the reader is gone.
    pub fn line(&mut self, s: &str) -> CliResult<bool> {
        if self.done {
            return Ok(false);
        }
        let r = self
            .inner
            .write_all(s.as_bytes())
            .and_then(|()| self.inner.write_all(b"\n"));
        self.check(r)
    }

    /// Write `bytes` as they are.
    pub fn bytes(&mut self, bytes: &[u8]) -> CliResult<bool> {
        if self.done {
            return Ok(false);
        }
        let r = self.inner.write_all(bytes);
        self.check(r)
    }

    /// Write a value as pretty JSON and a newline.
    pub fn json<T: Serialize + ?Sized>(&mut self, value: &T) -> CliResult<bool> {
        let s = serde_json::to_string_pretty(value)
            .map_err(|e| CliError::Other(format!("cannot encode output: {e}")))?;
        self.line(&s)
    }

    /// Write pretty JSON text (as `json` lays it out, e.g. a loaded
    /// state) and a newline.
    pub fn json_text(&mut self, text: &str) -> CliResult<bool> {
        self.json_members_or_text(None, text)
    }

    /// Write a JSON object from members given as pretty JSON text, laid
    /// out as `json` would lay it out, and a newline.
    pub fn json_members(&mut self, members: &[(&str, &str)]) -> CliResult<bool> {
        self.json_members_or_text(Some(members), "")
    }

    fn json_members_or_text(
        &mut self,
        members: Option<&[(&str, &str)]>,
        text: &str,
    ) -> CliResult<bool> {
        if self.done {
            return Ok(false);
        }
        let w = &mut self.inner;
        let r = (|| -> io::Result<()> {
            let Some(members) = members else {
                w.write_all(text.as_bytes())?;
                return w.write_all(b"\n");
            };
            w.write_all(b"{")?;
            for (i, (key, value)) in members.iter().enumerate() {
                w.write_all(if i == 0 { b"\n  " } else { b",\n  " })?;
                serde_json::to_writer(&mut *w, key).map_err(io::Error::from)?;
                w.write_all(b": ")?;
                write_nested(value.as_bytes(), 1, w)?;
            }
            w.write_all(if members.is_empty() { b"}\n" } else { b"\n}\n" })
        })();
        self.check(r)
    }

    /// Flush now (for streaming output such as `--follow`).
    pub fn flush(&mut self) -> CliResult<bool> {
        if self.done {
            return Ok(false);
        }
        let r = self.inner.flush();
        self.check(r)
    }

    /// Write out what is buffered: the end of a command's output, where a
    /// failed write becomes the command's error.
    pub fn finish(mut self) -> CliResult {
        self.flush()?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        match self.inner.flush() {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                if let Ok(mut slot) = UNREPORTED.lock() {
                    slot.get_or_insert(e);
                }
            }
            _ => {}
        }
        self.discard();
    }
}

/// Print a warning on stderr.
pub fn warn(msg: &str) {
    let _ = writeln!(io::stderr(), "mstate: warning: {msg}");
}

/// Print a status message on stderr (what the seed printed as chatter).
pub fn note(msg: &str) {
    let _ = writeln!(io::stderr(), "{msg}");
}

/// Print an error on stderr, as text or JSON.
pub fn report_error(err: &CliError, json: bool) {
    if let CliError::Exit(_) = err {
        return;
    }
    let mut stderr = io::stderr().lock();
    if json {
        let mut e = serde_json::json!({
            "kind": err.kind_name(), "code": err.code(), "message": err.to_string()
        });
        if let Some(c) = err.committed_text() {
            e["committed"] = serde_json::Value::String(c.to_string());
        }
        if let CliError::Usage { usage: Some(u), .. } = err {
            e["usage"] = serde_json::Value::String(u.clone());
        }
        let _ = writeln!(stderr, "{}", serde_json::json!({ "error": e }));
    } else {
        let _ = writeln!(stderr, "mstate: error: {err}");
    }
}
