//! Printing: results on stdout (text or JSON), warnings and errors on
//! stderr. A closed stdout (`mstate events | head`) ends the command
//! quietly.

use std::io::{self, BufWriter, StdoutLock, Write};

use mstate_store::json::write_nested;
use serde::Serialize;

use crate::exit::{CliError, CliResult};

/// Buffered stdout that treats a closed pipe as the reader being done.
pub struct Out {
    inner: BufWriter<StdoutLock<'static>>,
    closed: bool,
}

impl Out {
    pub fn new() -> Self {
        Out {
            inner: BufWriter::with_capacity(64 * 1024, io::stdout().lock()),
            closed: false,
        }
    }

    /// Whether the reader went away.
    pub fn closed(&self) -> bool {
        self.closed
    }

    fn check(&mut self, r: io::Result<()>) -> CliResult<bool> {
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(false)
            }
            Err(e) => Err(CliError::Other(format!("cannot write output: {e}"))),
        }
    }

    /// Write `s` and a newline; false once the reader is gone.
    pub fn line(&mut self, s: &str) -> CliResult<bool> {
        if self.closed {
            return Ok(false);
        }
        let r = self
            .inner
            .write_all(s.as_bytes())
            .and_then(|()| self.inner.write_all(b"\n"));
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
        if self.closed {
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
        if self.closed {
            return Ok(false);
        }
        let r = self.inner.flush();
        self.check(r)
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        let _ = self.inner.flush();
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
        let v = serde_json::json!({
            "error": {"kind": err.kind_name(), "code": err.code(), "message": err.to_string()}
        });
        let _ = writeln!(stderr, "{v}");
    } else {
        let _ = writeln!(stderr, "mstate: error: {err}");
    }
}
