//! `log`, `events`, `timeline`, `cleanup`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Args, ValueEnum};
use serde::Serialize;
use serde_json::{json, Value};

use mstate_store::json::parse_strict;
use mstate_store::model::{EventQuery, NewEvent, ReadReport};
use mstate_store::time::{format_micros, now, parse_duration, parse_time_arg, parse_timestamp};
use mstate_store::{
    CleanupOptions, CleanupReport, EventType, LogLine, MilestoneId, SessionId, Store,
};

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
    /// array) or text (`timestamp [type] data` lines); --json means json.
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
    })
}

/// Decode a stored line for json and text output.
fn decode(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
}

fn event_type_of(v: &Value) -> &str {
    v.get("event_type")
        .or_else(|| v.get("event"))
        .and_then(Value::as_str)
        .unwrap_or("?")
}

fn text_line(v: &Value) -> String {
    let ts = v.get("timestamp").and_then(Value::as_str).unwrap_or("?");
    let data = v.get("data").cloned().unwrap_or_else(|| json!({}));
    format!("{ts} [{}] {data}", event_type_of(v))
}

/// Writes events in one format, streaming.
struct EventWriter {
    out: Out,
    format: EventFormat,
    count: usize,
}

impl EventWriter {
    fn start(&mut self) -> CliResult<bool> {
        if self.format == EventFormat::Json {
            return self.out.line("[");
        }
        Ok(true)
    }

    fn event(&mut self, line: &LogLine) -> CliResult<bool> {
        let ok = match self.format {
            EventFormat::Jsonl => self.out.line(line.raw)?,
            EventFormat::Text => self.out.line(&text_line(&decode(line.raw)))?,
            EventFormat::Json => {
                let pretty = serde_json::to_string_pretty(&decode(line.raw))
                    .map_err(|e| CliError::Other(e.to_string()))?;
                let indented: Vec<String> = pretty.lines().map(|l| format!("  {l}")).collect();
                let sep = if self.count == 0 { "" } else { ",\n" };
                self.out.line(&format!("{sep}{}", indented.join("\n")))?
            }
        };
        self.count += 1;
        Ok(ok)
    }

    fn finish(&mut self) -> CliResult {
        if self.format == EventFormat::Json {
            self.out.line("]")?;
        }
        self.out.flush()?;
        Ok(())
    }
}

pub fn cmd_events(ctx: &Context, a: &EventsArgs) -> CliResult {
    let id = milestone(&a.milestone)?;
    let query = build_query(a)?;
    let format = a.format.unwrap_or(if ctx.global.json {
        EventFormat::Json
    } else {
        EventFormat::Jsonl
    });
    if a.follow && format == EventFormat::Json {
        return Err(CliError::Invalid(
            "--follow streams jsonl or text; --format json cannot be streamed".into(),
        ));
    }
    let mut w = EventWriter {
        out: Out::new(),
        format,
        count: 0,
    };
    w.start()?;
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
        ctx.store
            .events(&id, &query, &mut |line| Ok(emit(&mut w, line, false)))
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

/// One session's span in a timeline.
#[derive(Debug, Serialize)]
struct Span {
    session_id: String,
    start: String,
    end: String,
    duration_secs: f64,
    events: u64,
    ended: bool,
}

pub fn cmd_timeline(ctx: &Context, a: &TimelineArgs) -> CliResult {
    let id = milestone(&a.milestone)?;
    let format = a.format.unwrap_or(if ctx.global.json {
        TimelineFormat::Json
    } else {
        TimelineFormat::Text
    });
    let mut events: Vec<(String, u64, Value)> = Vec::new();
    let report = ctx.store.events(&id, &EventQuery::default(), &mut |line| {
        events.push((format_micros(line.timestamp), line.seq, decode(line.raw)));
        Ok(true)
    })?;
    print_warnings(&report);
    if events.is_empty() {
        require_known(ctx, &id)?;
    }
    events.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
    let spans = if a.no_sessions {
        Vec::new()
    } else {
        session_spans(&events)
    };
    let mut out = Out::new();
    match format {
        TimelineFormat::Json => {
            let list: Vec<&Value> = events.iter().map(|e| &e.2).collect();
            out.json(&list)?;
        }
        TimelineFormat::Text => {
            out.line(&format!("=== Milestone Event Timeline: {id} ==="))?;
            for (_, _, v) in &events {
                if !out.line(&text_line(v))? {
                    return out.finish();
                }
            }
            if !spans.is_empty() {
                out.line("")?;
                out.line("=== Sessions ===")?;
                for s in &spans {
                    out.line(&format!(
                        "{}  {} .. {}  {}  {} events{}",
                        s.session_id,
                        s.start,
                        s.end,
                        human_duration(s.duration_secs),
                        s.events,
                        if s.ended { "" } else { "  (not ended)" }
                    ))?;
                }
            }
        }
        TimelineFormat::Markdown => {
            out.line(&format!("# Event timeline: {id}"))?;
            out.line("")?;
            out.line("| Time | Seq | Type | Session | Data |")?;
            out.line("|---|---:|---|---|---|")?;
            for (_, seq, v) in &events {
                let session = v.get("session_id").and_then(Value::as_str).unwrap_or("");
                let data = v.get("data").map(|d| d.to_string()).unwrap_or_default();
                out.line(&format!(
                    "| {} | {seq} | {} | {} | `{}` |",
                    v.get("timestamp").and_then(Value::as_str).unwrap_or("?"),
                    md_escape(event_type_of(v)),
                    md_escape(session),
                    md_escape(&data).replace('`', "'")
                ))?;
            }
            if !spans.is_empty() {
                out.line("")?;
                out.line("## Sessions")?;
                out.line("")?;
                out.line("| Session | Start | End | Duration | Events |")?;
                out.line("|---|---|---|---:|---:|")?;
                for s in &spans {
                    out.line(&format!(
                        "| {} | {} | {} | {} | {} |",
                        md_escape(&s.session_id),
                        s.start,
                        s.end,
                        human_duration(s.duration_secs),
                        s.events
                    ))?;
                }
            }
        }
    }
    out.finish()
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

/// Start, end and count of each session (other than `no-session`) in time order.
fn session_spans(events: &[(String, u64, Value)]) -> Vec<Span> {
    let mut spans: BTreeMap<String, Span> = BTreeMap::new();
    for (ts, _, v) in events {
        let Some(session) = v.get("session_id").and_then(Value::as_str) else {
            continue;
        };
        if session == "no-session" {
            continue;
        }
        let span = spans.entry(session.to_string()).or_insert_with(|| Span {
            session_id: session.to_string(),
            start: ts.clone(),
            end: ts.clone(),
            duration_secs: 0.0,
            events: 0,
            ended: false,
        });
        span.end = ts.clone();
        span.events += 1;
        if event_type_of(v) == "session_ended" {
            span.ended = true;
        }
    }
    let mut out: Vec<Span> = spans
        .into_values()
        .map(|mut s| {
            if let (Some(a), Some(b)) = (parse_timestamp(&s.start), parse_timestamp(&s.end)) {
                s.duration_secs = b.duration_since(a).as_secs_f64();
            }
            s
        })
        .collect();
    out.sort_by(|a, b| a.start.cmp(&b.start));
    out
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
