//! `log`, `events`, `timeline`, `cleanup`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use mstate_store::json::{parse_strict, write_nested};
use mstate_store::model::{EventQuery, NewEvent, Progress, ReadReport};
use mstate_store::time::{format_micros, now, parse_duration, parse_time_arg};
use mstate_store::timeline::{self, write_json, Entry, Options as TimelineOptions, Summary};
use mstate_store::{CleanupOptions, CleanupReport, EventType, LogLine, MilestoneId, SessionId};

use super::{json_input, milestone};
use crate::context::Context;
use crate::exit::{CliError, CliResult};
use crate::output::{note, warn, Out};

/// What `cleanup --help` says of the live log: removing events seals it
/// into a segment and puts a new file in its place, so a watcher holding
/// the old file (`tail -f`) sees nothing after it.
pub const CLEANUP_REPLACES_LOG: &str = "When it removes events, cleanup moves the live log \
events/milestone-<id>.jsonl into events/segments/<id>/ and puts a new, empty file in its place \
(the seed's cleanup replaces it too): follow the log by name with `tail -F`, or with \
`mstate events <id> --follow`; `tail -f` stays on the old file and sees nothing after a cleanup.";

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Milestone id.
    pub milestone: String,
    /// Event type (letters, digits, '.', '_', '-', ':').
    pub event_type: String,
    /// Event data as JSON; `-` reads standard input; nothing means {}.
    pub data: Option<String>,
    /// Record this session instead of the current one.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Keep data that is not valid JSON as a JSON string (with a warning) instead of failing.
    #[arg(long)]
    pub raw_fallback: bool,
    /// Log even to a milestone the store does not know, creating its log,
    /// as the seed's log_milestone_event does; for the shell layer.
    #[arg(long, hide = true)]
    pub create: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventFormat {
    /// One stored JSON line per event.
    Jsonl,
    /// A pretty JSON array.
    Json,
    /// `timestamp [type] data` lines.
    Text,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Milestone id.
    pub milestone: String,
    /// Only events of this type (repeatable).
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only events at or after TIME (RFC 3339, a date, or an age such as 90s, 2h, 7d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only events at or before TIME.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only events of this session.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// The first N matching events.
    #[arg(long, value_name = "N", conflicts_with = "tail")]
    pub limit: Option<usize>,
    /// The last N matching events.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Newest first.
    #[arg(long)]
    pub reverse: bool,
    /// Keep printing new events as they are appended (Ctrl-C to stop).
    #[arg(long, short = 'f', conflicts_with = "reverse")]
    pub follow: bool,
    /// Output format: jsonl (one stored JSON line per event), json (a pretty
    /// array) or text (`timestamp [type] data` lines); --json means json (jsonl with --follow).
    #[arg(long, value_enum, hide_possible_values = true)]
    pub format: Option<EventFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TimelineFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// Milestone id.
    pub milestone: String,
    /// Leave out the session spans (text and markdown).
    #[arg(long)]
    pub no_sessions: bool,
    /// Output format (--json means json).
    #[arg(long, value_enum)]
    pub format: Option<TimelineFormat>,
}

/// Where cleanup removes events, the live log is replaced (see
/// [`CLEANUP_REPLACES_LOG`]).
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true))]
#[command(after_help = CLEANUP_REPLACES_LOG)]
pub struct CleanupArgs {
    /// Milestone id.
    #[arg(group = "which")]
    pub milestone: Option<String>,
    /// Clean every milestone.
    #[arg(long, group = "which")]
    pub all: bool,
    /// Remove what is older than N days (fractions allowed).
    #[arg(long, value_name = "N", default_value = "7")]
    pub retention_days: f64,
    /// Remove named checkpoints older than N days too.
    #[arg(long)]
    pub include_checkpoints: bool,
    /// Only report what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    /// Clean even a milestone the store does not know (its state_cleaned
    /// event creates its log), as the seed's cleanup_milestone_state does;
    /// for the shell layer.
    #[arg(long, hide = true)]
    pub create: bool,
}

fn print_warnings(report: &ReadReport) {
    for w in &report.warnings {
        warn(w);
    }
}

pub fn cmd_log(ctx: &Context, a: &LogArgs) -> CliResult {
    let id = milestone(&a.milestone)?;
    let event_type = EventType::new(a.event_type.as_str())?;
    let session = a
        .session
        .as_deref()
        .map(|s| SessionId::new(s).map(|s| s.to_string()))
        .transpose()?;
    let data = match &a.data {
        None => json!({}),
        Some(arg) => {
            let bytes = json_input(Some(arg))?;
            match parse_strict(&bytes, "event data") {
                Ok(v) => v,
                Err(e) if a.raw_fallback => {
                    warn(&format!("{e}; keeping the data as a JSON string"));
                    Value::String(String::from_utf8_lossy(&bytes).into_owned())
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let event = NewEvent {
        event_type,
        data,
        session_id: session,
    };
    let event = if a.create {
        ctx.store.log_creating(&id, &event)?
    } else {
        ctx.store.log(&id, &event)?
    };
    if !ctx.global.json {
        return Ok(());
    }
    let print = || -> CliResult {
        let mut out = Out::new();
        out.json(&event)?;
        out.finish()
    };
    print().map_err(|e| {
        e.committed(|| match event.seq {
            Some(seq) => format!("the event was appended to the log of '{id}' as seq {seq}"),
            None => format!("the event was appended to the log of '{id}'"),
        })
    })
}

fn build_query(a: &EventsArgs) -> CliResult<EventQuery> {
    let t = now();
    let time = |s: &Option<String>| -> CliResult<_> {
        Ok(s.as_deref().map(|s| parse_time_arg(s, t)).transpose()?)
    };
    for ty in &a.types {
        EventType::new(ty.as_str())?;
    }
    Ok(EventQuery {
        types: a.types.clone(),
        since: time(&a.since)?,
        until: time(&a.until)?,
        session: a.session.clone(),
        limit: a.limit,
        tail: a.tail,
        reverse: a.reverse,
        progress: None,
    })
}

/// A progress bar on stderr for a scan that takes more than a second:
/// drawn from a thread that reads the query's [`Progress`], only when
/// stderr is a terminal and stdout is not (output on the terminal shows
/// its own progress, and a bar would be drawn over it).
struct ScanBar {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ScanBar {
    fn start(progress: &Progress) -> ScanBar {
        if !std::io::stderr().is_terminal() || std::io::stdout().is_terminal() {
            return ScanBar {
                stop: None,
                thread: None,
            };
        }
        let (tx, rx) = mpsc::channel::<()>();
        let p = progress.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut bar: Option<indicatif::ProgressBar> = None;
            // Ends when the scan is over (the sender is dropped).
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(Duration::from_millis(100))
            {
                if bar.is_none() && started.elapsed() >= Duration::from_secs(1) {
                    let b = indicatif::ProgressBar::with_draw_target(
                        Some(p.total()),
                        indicatif::ProgressDrawTarget::stderr(),
                    );
                    b.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{bar:30} {binary_bytes}/{binary_total_bytes} of the log, {eta} left",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    bar = Some(b);
                }
                if let Some(b) = &bar {
                    b.set_length(p.total());
                    b.set_position(p.done());
                }
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        });
        ScanBar {
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Take the bar off the screen (before anything else goes to stderr).
    fn finish(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ScanBar {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `data` as serde_json writes it (compact, or pretty at `depth`), into
/// `buf`: directly from the stored text when that gives the same bytes,
/// else through a `Value`.
fn put_json(buf: &mut Vec<u8>, text: &str, pretty: Option<usize>) {
    if write_json(text, pretty, buf) {
        return;
    }
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => Value::String(text.to_string()),
    };
    match pretty {
        None => buf.extend_from_slice(v.to_string().as_bytes()),
        Some(depth) => {
            let s = serde_json::to_string_pretty(&v).unwrap_or_default();
            let _ = write_nested(s.as_bytes(), depth, buf);
        }
    }
}

/// `timestamp [type] data`, the seed's text line.
fn put_text_line(buf: &mut Vec<u8>, time: Option<&str>, ty: Option<&str>, data: Option<&str>) {
    buf.extend_from_slice(time.unwrap_or("?").as_bytes());
    buf.extend_from_slice(b" [");
    buf.extend_from_slice(ty.unwrap_or("?").as_bytes());
    buf.extend_from_slice(b"] ");
    match data {
        Some(d) => put_json(buf, d, None),
        None => buf.extend_from_slice(b"{}"),
    }
}

/// Writes events in one format, streaming. Nothing is written before the
/// first event (or the end), so a command that fails before it prints
/// nothing on stdout.
struct EventWriter {
    out: Out,
    format: EventFormat,
    count: usize,
    buf: Vec<u8>,
}

impl EventWriter {
    /// Write one event. The JSON formats write the stored line when the
    /// backend stores one (the fast path, no value built) and the event
    /// encoded as the file store's line otherwise ([`LogLine::line`]
    /// borrows in the first case), so both give the same bytes.
    fn event(&mut self, line: &LogLine) -> CliResult<bool> {
        self.buf.clear();
        let f = &line.fields;
        match self.format {
            EventFormat::Jsonl => self.buf.extend_from_slice(line.line()?.as_bytes()),
            EventFormat::Text => put_text_line(
                &mut self.buf,
                f.timestamp.as_deref(),
                f.event_type.as_deref(),
                f.data.as_deref(),
            ),
            EventFormat::Json => {
                // serde_json's pretty array: `[`, elements indented one
                // level and separated by `,` after their closing brace.
                self.buf
                    .extend_from_slice(if self.count == 0 { b"[\n  " } else { b",\n  " });
                put_json(&mut self.buf, &line.line()?, Some(1));
            }
        }
        if self.format != EventFormat::Json {
            self.buf.push(b'\n');
        }
        self.count += 1;
        self.out.bytes(&self.buf)
    }

    fn finish(&mut self) -> CliResult {
        if self.format == EventFormat::Json {
            self.out
                .bytes(if self.count == 0 { b"[]\n" } else { b"\n]\n" })?;
        }
        self.out.flush()?;
        Ok(())
    }
}

pub fn cmd_events(ctx: &Context, a: &EventsArgs) -> CliResult {
    let id = milestone(&a.milestone)?;
    let mut query = build_query(a)?;
    // `--json` means one JSON array, except with `--follow`, which has no
    // end to close an array at: there it means the JSON lines.
    let format = a.format.unwrap_or(if ctx.global.json && !a.follow {
        EventFormat::Json
    } else {
        EventFormat::Jsonl
    });
    if a.follow && format == EventFormat::Json {
        return Err(CliError::Invalid(
            "--follow streams jsonl or text; --format json (one array) has no end to stream to: use --format jsonl".into(),
        ));
    }
    let mut w = EventWriter {
        out: Out::new(),
        format,
        count: 0,
        buf: Vec::with_capacity(1024),
    };
    // Output errors end the query; they are reported after it.
    let mut failed: Option<CliError> = None;
    let mut emit = |w: &mut EventWriter, line: &LogLine, flush: bool| -> bool {
        let r = w
            .event(line)
            .and_then(|ok| if ok && flush { w.out.flush() } else { Ok(ok) });
        match r {
            Ok(ok) => ok,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    };
    let report = if a.follow {
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ] {
            signal_hook::flag::register(sig, Arc::clone(&stop))
                .map_err(|e| CliError::Other(format!("cannot handle signals: {e}")))?;
        }
        let stop_fn = || stop.load(Ordering::Relaxed);
        ctx.store.follow(&id, &query, &stop_fn, &mut |line| {
            Ok(emit(&mut w, line, true))
        })
    } else {
        let progress = Progress::default();
        query.progress = Some(progress.clone());
        let mut bar = ScanBar::start(&progress);
        let report = ctx
            .store
            .events(&id, &query, &mut |line| Ok(emit(&mut w, line, false)));
        bar.finish();
        report
    };
    if let Some(e) = failed {
        return Err(e);
    }
    let report = report.map_err(CliError::from)?;
    print_warnings(&report);
    if w.count == 0 && !a.follow {
        require_known(ctx, &id)?;
    }
    if !w.out.closed() {
        w.finish()?;
    }
    Ok(())
}

/// Writes a timeline in one format as its events come. The header is
/// written with the first event (or at the end), so a timeline of an
/// unknown milestone prints nothing on stdout.
struct TimelineWriter {
    out: Out,
    format: TimelineFormat,
    id: String,
    started: bool,
    count: u64,
    buf: Vec<u8>,
}

impl TimelineWriter {
    fn header(&mut self) -> CliResult<bool> {
        if std::mem::replace(&mut self.started, true) {
            return Ok(true);
        }
        let head = match self.format {
            TimelineFormat::Json => return Ok(true),
            TimelineFormat::Text => format!("=== Milestone Event Timeline: {} ===\n", self.id),
            TimelineFormat::Markdown => format!(
                "# Event timeline: {}\n\n| Time | Seq | Type | Session | Data |\n|---|---:|---|---|---|\n",
                self.id
            ),
        };
        self.out.bytes(head.as_bytes())
    }

    fn entry(&mut self, e: &Entry) -> CliResult<bool> {
        if !self.header()? {
            return Ok(false);
        }
        let buf = &mut self.buf;
        buf.clear();
        match self.format {
            TimelineFormat::Text => {
                put_text_line(buf, e.time_text(), e.event_type(), e.data());
                if e.out_of_order() {
                    buf.extend_from_slice(b"  (out of order)");
                }
                buf.push(b'\n');
            }
            TimelineFormat::Json => {
                buf.extend_from_slice(if self.count == 0 { b"[\n  " } else { b",\n  " });
                put_json(buf, e.raw(), Some(1));
            }
            TimelineFormat::Markdown => {
                let mut data = Vec::new();
                if let Some(d) = e.data() {
                    put_json(&mut data, d, None);
                }
                let data = String::from_utf8_lossy(&data);
                let late = if e.out_of_order() {
                    " (out of order)"
                } else {
                    ""
                };
                let row = format!(
                    "| {}{late} | {} | {} | {} | `{}` |\n",
                    e.time_text().unwrap_or("?"),
                    e.seq(),
                    md_escape(e.event_type().unwrap_or("?")),
                    md_escape(e.session_id().unwrap_or("")),
                    md_escape(&data).replace('`', "'")
                );
                buf.extend_from_slice(row.as_bytes());
            }
        }
        self.count += 1;
        self.out.bytes(&self.buf)
    }

    fn finish(mut self, summary: &Summary) -> CliResult {
        if !self.header()? {
            return Ok(());
        }
        let spans = &summary.spans;
        match self.format {
            TimelineFormat::Json => {
                self.out
                    .bytes(if self.count == 0 { b"[]\n" } else { b"\n]\n" })?;
            }
            TimelineFormat::Text if !spans.is_empty() => {
                self.out.line("")?;
                self.out.line("=== Sessions ===")?;
                for s in spans {
                    self.out.line(&format!(
                        "{}  {} .. {}  {}  {} events{}",
                        s.session_id,
                        format_micros(s.start),
                        format_micros(s.end),
                        human_duration(s.duration().as_secs_f64()),
                        s.events,
                        if s.ended { "" } else { "  (not ended)" }
                    ))?;
                }
            }
            TimelineFormat::Markdown if !spans.is_empty() => {
                self.out.line("")?;
                self.out.line("## Sessions")?;
                self.out.line("")?;
                self.out
                    .line("| Session | Start | End | Duration | Events |")?;
                self.out.line("|---|---|---|---:|---:|")?;
                for s in spans {
                    self.out.line(&format!(
                        "| {} | {} | {} | {} | {} |",
                        md_escape(&s.session_id),
                        format_micros(s.start),
                        format_micros(s.end),
                        human_duration(s.duration().as_secs_f64()),
                        s.events
                    ))?;
                }
            }
            _ => {}
        }
        self.out.finish()
    }
}

pub fn cmd_timeline(ctx: &Context, a: &TimelineArgs) -> CliResult {
    let id = milestone(&a.milestone)?;
    let format = a.format.unwrap_or(if ctx.global.json {
        TimelineFormat::Json
    } else {
        TimelineFormat::Text
    });
    let opts = TimelineOptions {
        no_sessions: a.no_sessions,
        ..Default::default()
    };
    let mut w = TimelineWriter {
        out: Out::new(),
        format,
        id: id.to_string(),
        started: false,
        count: 0,
        buf: Vec::with_capacity(1024),
    };
    let progress = Progress::default();
    let mut bar = ScanBar::start(&progress);
    // Output errors end the scan; they are reported after it.
    let mut failed: Option<CliError> = None;
    let result = timeline::scan(
        &*ctx.store,
        &id,
        &opts,
        Some(progress),
        &mut |e| match w.entry(e) {
            Ok(ok) => Ok(ok),
            Err(err) => {
                failed = Some(err);
                Ok(false)
            }
        },
    );
    bar.finish();
    if let Some(e) = failed {
        return Err(e);
    }
    let (summary, report) = result?;
    print_warnings(&report);
    if summary.out_of_order > 0 {
        let seqs: Vec<String> = summary
            .out_of_order_seqs
            .iter()
            .map(u64::to_string)
            .collect();
        warn(&format!(
            "{} events were logged further out of time order than the timeline sorts ({} events or {} MiB back) and are shown where they were read, marked (out of order) in text and markdown; seq {}{}",
            summary.out_of_order,
            opts.window.events,
            opts.window.bytes >> 20,
            seqs.join(", "),
            if summary.out_of_order as usize > seqs.len() { ", ..." } else { "" }
        ));
    }
    if summary.events == 0 {
        require_known(ctx, &id)?;
    }
    if w.out.closed() {
        return Ok(());
    }
    w.finish(&summary)
}

/// Fail with "not found" (exit 3) when the store knows nothing of `id`
/// (the store's queries already do; kept for the empty results).
fn require_known(ctx: &Context, id: &MilestoneId) -> CliResult {
    Ok(ctx.store.require_known(id)?)
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

pub fn cmd_cleanup(ctx: &Context, a: &CleanupArgs) -> CliResult {
    if !(a.retention_days.is_finite() && a.retention_days >= 0.0) {
        return Err(CliError::Invalid(format!(
            "--retention-days {}: expected a number of days, 0 or more",
            a.retention_days
        )));
    }
    let retention = parse_duration(&format!("{}d", a.retention_days))?;
    let cutoff = jiff::SignedDuration::try_from(retention)
        .ok()
        .and_then(|d| now().checked_sub(d).ok())
        .ok_or_else(|| CliError::Invalid("--retention-days is too large".into()))?;
    let opts = CleanupOptions {
        cutoff,
        retention_days: Some(a.retention_days),
        create: a.create,
        include_checkpoints: a.include_checkpoints,
        dry_run: a.dry_run,
    };
    let ids: Vec<MilestoneId> = match (&a.milestone, a.all) {
        (Some(m), _) => vec![milestone(m)?],
        (None, _) => ctx.store.milestone_ids()?,
    };
    let bar = indicatif::ProgressBar::new(ids.len() as u64);
    if ids.len() < 2 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut reports = Vec::new();
    for id in &ids {
        bar.set_message(id.to_string());
        reports.push(ctx.store.cleanup(id, &opts)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let done = |e: CliError| {
        if a.dry_run {
            return e;
        }
        e.committed(|| match (&a.milestone, reports.len()) {
            (Some(m), _) => format!("the cleanup of '{m}' was done"),
            (None, n) => format!("the cleanup of {n} milestones was done"),
        })
    };
    print_cleanup(ctx, a, &reports).map_err(done)
}

fn print_cleanup(ctx: &Context, a: &CleanupArgs, reports: &[CleanupReport]) -> CliResult {
    let mut out = Out::new();
    if ctx.global.json {
        out.json(&reports)?;
        return out.finish();
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    for r in reports {
        out.line(&format!(
            "{}: {verb} {} events, {} backups, {} checkpoints, {} sessions",
            r.milestone_id,
            r.events_removed,
            r.backups_removed.len(),
            r.checkpoints_removed.len(),
            r.sessions_removed.len()
        ))?;
        if a.dry_run {
            for f in r.backups_removed.iter().chain(&r.checkpoints_removed) {
                out.line(&format!("  backups/{f}"))?;
            }
            for s in &r.sessions_removed {
                out.line(&format!("  sessions/{s}.json"))?;
            }
        }
    }
    if reports.is_empty() {
        note("no milestones to clean");
    }
    out.finish()
}
