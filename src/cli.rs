//! The command line: global options and the command tree. Each command's
//! own arguments live beside its code in `commands/`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::commands::{backup, checkpoint, events, lock, session, state};
use crate::exit::CliError;

/// Default of `--lock-timeout` (the seed's).
const DEFAULT_LOCK_TIMEOUT: &str = "30";

/// Default of `--max-backups`: the store's (a unit test checks).
const DEFAULT_MAX_BACKUPS: &str = "50";

/// The variable that sets `--lock-timeout`.
pub const LOCK_TIMEOUT_ENV: &str = "MSTATE_LOCK_TIMEOUT";

/// The variable that sets `--max-backups`.
pub const MAX_BACKUPS_ENV: &str = "MSTATE_MAX_BACKUPS";

/// The command takes `--lock-timeout`: it can wait for a milestone's lock.
const LOCKS: u8 = 1;
/// The command takes `--max-backups`: it can write (and prune) backups.
const BACKUPS: u8 = 2;

/// What one command (by its path, `lock acquire`) takes beyond `-C` and
/// `--json`, and the examples its `--help` shows. Every command of the
/// tree has one (a unit test checks), so a new command gets examples and
/// is given the options it uses, and only those.
struct Spec {
    path: &'static str,
    options: u8,
    examples: &'static [&'static str],
}

const fn spec(path: &'static str, options: u8, examples: &'static [&'static str]) -> Spec {
    Spec {
        path,
        options,
        examples,
    }
}

const SPECS: &[Spec] = &[
    spec("init", LOCKS, &["mstate init build"]),
    spec(
        "save",
        LOCKS | BACKUPS,
        &[
            r#"mstate save build '{"step": 2, "files": ["a.rs"]}'"#,
            r#"echo '{"step": 3}' | mstate save build"#,
            r#"mstate save build '{"step": 3}' --expect-revision 2 --lock-timeout 5"#,
            r#"mstate save build '{"step": 4}' --lock-token 12    # 12: printed by `lock acquire`"#,
        ],
    ),
    spec(
        "load",
        LOCKS | BACKUPS,
        &[
            "mstate load build",
            "mstate load build --envelope",
            "mstate load build --json | jq .revision",
        ],
    ),
    spec(
        "update",
        LOCKS | BACKUPS,
        &[
            "mstate update build --set /progress=50",
            r#"mstate update build --merge '{"done": true, "scratch": null}'"#,
        ],
    ),
    spec("list", 0, &["mstate list", "mstate list --json"]),
    spec("complete", LOCKS, &["mstate complete build"]),
    spec("reopen", LOCKS, &["mstate reopen build"]),
    spec(
        "backups",
        0,
        &["mstate backups build", "mstate backups build --json"],
    ),
    spec(
        "recover",
        LOCKS | BACKUPS,
        &[
            "mstate recover build",
            "mstate recover build --from \"$(mstate backups build --json | jq -r '.[1].name')\"",
        ],
    ),
    spec(
        "checkpoint",
        0,
        &[
            "mstate checkpoint create build before-refactor",
            "mstate checkpoint list build",
            "mstate checkpoint restore build before-refactor",
        ],
    ),
    spec(
        "checkpoint create",
        LOCKS,
        &[
            "mstate checkpoint create build before-refactor",
            "mstate checkpoint create build",
        ],
    ),
    spec("checkpoint list", 0, &["mstate checkpoint list build"]),
    spec(
        "checkpoint restore",
        LOCKS | BACKUPS,
        &["mstate checkpoint restore build before-refactor"],
    ),
    spec(
        "checkpoint delete",
        0,
        &["mstate checkpoint delete build before-refactor"],
    ),
    spec(
        "lock",
        0,
        &[
            "mstate lock run build -- make test",
            "mstate lock status build",
        ],
    ),
    spec(
        "lock acquire",
        LOCKS,
        &[
            "mstate lock acquire build",
            "mstate lock acquire build --timeout 10 --ttl 30m",
        ],
    ),
    spec(
        "lock release",
        0,
        &[
            "mstate lock release build",
            "mstate lock release build --if-stale",
            "mstate lock release build --force",
        ],
    ),
    spec(
        "lock status",
        0,
        &[
            "mstate lock status build",
            "mstate lock status build --json",
        ],
    ),
    spec(
        "lock pin",
        0,
        &[
            r#"mstate lock pin build --fd "$fd"    # after: exec {fd}<"$(mstate lock acquire build --pin-path)""#,
        ],
    ),
    spec(
        "lock run",
        LOCKS,
        &[
            "mstate lock run build -- make test",
            "mstate lock run build --timeout 5m --ttl 2h -- ./deploy.sh",
        ],
    ),
    spec("lock __gate", 0, &[]),
    spec(
        "log",
        0,
        &[
            r#"mstate log build step_done '{"step": 2}'"#,
            "mstate log build note",
        ],
    ),
    spec(
        "events",
        0,
        &[
            "mstate events build --tail 20",
            "mstate events build --type step_done --since 2h --format text",
            "mstate events build --follow",
        ],
    ),
    spec(
        "timeline",
        0,
        &[
            "mstate timeline build",
            "mstate timeline build --format markdown > TIMELINE.md",
        ],
    ),
    spec(
        "cleanup",
        0,
        &[
            "mstate cleanup build --retention-days 30",
            "mstate cleanup --all --dry-run",
        ],
    ),
    spec(
        "session",
        0,
        &[
            "mstate session start build",
            "mstate session list --status abandoned",
        ],
    ),
    spec(
        "session start",
        0,
        &[
            "mstate session start build",
            "mstate session start build --owner-pid \"$$\" --no-current",
        ],
    ),
    spec(
        "session end",
        LOCKS,
        &["mstate session end", "mstate session end --missing-ok"],
    ),
    spec("session current", 0, &["mstate session current"]),
    spec(
        "session list",
        0,
        &["mstate session list --milestone build --status abandoned"],
    ),
    spec(
        "session show",
        0,
        &["mstate session show \"$(mstate session current)\""],
    ),
    spec(
        "doctor",
        BACKUPS,
        &["mstate doctor", "mstate doctor --repair --json"],
    ),
    spec(
        "migrate",
        0,
        &[
            "mstate migrate --from .milestones/state --to 'postgres://mstate@db.internal/ops?schema=mstate'",
            "mstate migrate --from 'postgres://mstate@db.internal/ops?schema=mstate' --to backup/.milestones/state --json",
        ],
    ),
    spec(
        "shell-init",
        0,
        &[
            "mstate shell-init bash > ~/.mstate.sh    # then: eval \"$(mstate shell-init bash)\"",
            "mstate shell-init zsh",
        ],
    ),
    spec(
        "completions",
        0,
        &[
            "mstate completions bash > /etc/bash_completion.d/mstate",
            "mstate completions zsh > ~/.zfunc/_mstate",
        ],
    ),
];

fn spec_of(path: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.path == path)
}

/// `--lock-timeout`, on the top level and on each command that locks.
fn lock_timeout_arg() -> Arg {
    Arg::new("lock_timeout")
        .long("lock-timeout")
        .value_name("SECS")
        .help("Wait at most SECS for a milestone's lock (30, 1.5, 500ms, 2m)")
        .env(LOCK_TIMEOUT_ENV)
        .default_value(DEFAULT_LOCK_TIMEOUT)
        .hide_env_values(true)
}

/// `--max-backups`, on the top level and on each command that writes backups.
fn max_backups_arg() -> Arg {
    Arg::new("max_backups")
        .long("max-backups")
        .value_name("N")
        .help("Backups kept per milestone (oldest removed first; checkpoints are kept)")
        .env(MAX_BACKUPS_ENV)
        .default_value(DEFAULT_MAX_BACKUPS)
        .hide_env_values(true)
}

/// The end of `mstate --help`.
fn after_help() -> String {
    format!(
        "Store: --store LOCATION, else $MSTATE_STORE, else -C DIR, else $MSTATE_DIR, else the \
         nearest ancestor holding .milestones/state, else ./.milestones/state. A LOCATION is a \
         postgres:// URL (?schema=NAME, default mstate) or a directory; under -C DIR a directory \
         in the environment is ignored.\n\n\
         --lock-timeout and --max-backups are taken by the commands that use them, before or \
         after the command's name.\n\n\
         Exit codes (the JSON error's \"code\" and \"kind\"; more: mstate help exit-codes):\n{}",
        crate::exit::exit_codes_text("  ").trim_end()
    )
}

/// Give command `cmd` (at `path`) the options and examples of its spec.
fn adjust(mut cmd: clap::Command, path: &str) -> clap::Command {
    if let Some(spec) = spec_of(path) {
        if spec.options & LOCKS != 0 {
            cmd = cmd.arg(lock_timeout_arg());
        }
        if spec.options & BACKUPS != 0 {
            cmd = cmd.arg(max_backups_arg());
        }
        if !spec.examples.is_empty() {
            // A command's own after-help (a note) comes before its examples.
            let mut text = match cmd.get_after_help() {
                Some(own) => format!("{own}\n\n"),
                None => String::new(),
            };
            text.push_str("Examples:\n");
            for e in spec.examples {
                text.push_str("  ");
                text.push_str(e);
                text.push('\n');
            }
            cmd = cmd.after_help(text.trim_end().to_string());
        }
    }
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for name in names {
        let sub_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path} {name}")
        };
        cmd = cmd.mut_subcommand(&name, |c| adjust(c, &sub_path));
    }
    cmd
}

/// The top level's own options (`--lock-timeout` and `--max-backups`
/// before the command's name).
fn top(cmd: clap::Command) -> clap::Command {
    cmd.arg(lock_timeout_arg()).arg(max_backups_arg())
}

/// The whole command tree, as `mstate` parses it and completions show it.
pub fn command() -> clap::Command {
    adjust(top(Parsed::command()).after_help(after_help()), "")
}

/// The command line as clap's derive parses it.
#[derive(Debug, Parser)]
#[command(name = "mstate", version, about, propagate_version = true)]
struct Parsed {
    #[command(flatten)]
    flags: Flags,
    #[command(subcommand)]
    command: Command,
}

/// Durable, concurrency-safe state for long-running milestone executions.
#[derive(Debug)]
pub struct Cli {
    pub global: GlobalArgs,
    pub command: Command,
}

impl Cli {
    /// Parse the process's arguments. Help and version go to stdout; a
    /// usage error is exit 2 with clap's message, or with `--json`
    /// anywhere before `--`, the JSON error object.
    ///
    /// The commands scripts call in loops (`load`, `save`, `update`, `log`,
    /// `events`) are first parsed against a command tree holding only the
    /// one named: building clap's whole tree costs more instructions than
    /// the rest of a small `mstate load`. Anything else, and every error or
    /// help request, goes through the whole tree, so messages are the same.
    pub fn from_env() -> Cli {
        let args: Vec<OsString> = std::env::args_os().collect();
        if let Some(cli) = lean(&args) {
            return cli;
        }
        if let Some(json) = exit_codes_topic(&args) {
            print_exit_codes(json);
        }
        parse(&args).unwrap_or_else(|e| exit_with(&e, json_in(&args)))
    }

    /// The option a lock timeout's hint names: the one that set the wait.
    pub fn wait_flag(&self) -> String {
        let timeout = match &self.command {
            Command::Lock(lock::LockCommand::Acquire(a)) => a.timeout.is_some(),
            Command::Lock(lock::LockCommand::Run(a)) => a.timeout.is_some(),
            _ => false,
        };
        match self.global.lock_timeout.source {
            _ if timeout => "--timeout".into(),
            Source::Env(var) => format!("--lock-timeout (or {var})"),
            _ => "--lock-timeout".into(),
        }
    }
}

/// Parse `args` with the whole tree.
fn parse(args: &[OsString]) -> Result<Cli, clap::Error> {
    let mut tree = command();
    let matches = tree.try_get_matches_from_mut(args)?;
    let parsed = Parsed::from_arg_matches(&matches).map_err(|e| e.format(&mut tree))?;
    let global = resolve(parsed.flags, &matches)?;
    Ok(Cli {
        global,
        command: parsed.command,
    })
}

/// Whether `--json` is on the command line (before a `--`), for errors
/// found before the command line could be parsed.
fn json_in(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json")
}

/// `mstate help exit-codes [--json]`: `Some(json)` when `args` ask for it.
fn exit_codes_topic(args: &[OsString]) -> Option<bool> {
    let words: Vec<&OsString> = args.iter().skip(1).filter(|a| *a != "--json").collect();
    (words.len() == 2 && words[0] == "help" && words[1] == "exit-codes").then(|| json_in(args))
}

/// Print the exit codes (as JSON with `--json`) and exit.
fn print_exit_codes(json: bool) -> ! {
    let mut out = crate::output::Out::new();
    let printed = if json {
        out.json(crate::exit::EXIT_CODES)
    } else {
        out.bytes(crate::exit::exit_codes_topic().as_bytes())
    }
    .and_then(|_| out.finish());
    match printed {
        Ok(()) => std::process::exit(0),
        Err(err) => {
            crate::output::report_error(&err, json);
            std::process::exit(i32::from(err.code()));
        }
    }
}

/// A clap usage error as the binary reports it: clap's message without
/// "error: ", the usage lines and the pointer to `--help` (a tip stays).
pub fn usage_error(e: &clap::Error) -> CliError {
    let text = e.render().to_string();
    if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return missing_subcommand(&text);
    }
    let mut message = Vec::new();
    let mut usage = None;
    for para in text.split("\n\n") {
        let para = para.trim();
        if let Some(u) = para.strip_prefix("Usage:") {
            usage = Some(u.split_whitespace().collect::<Vec<_>>().join(" "));
        } else if !para.is_empty() && !para.starts_with("For more information") {
            let para = para.strip_prefix("error:").unwrap_or(para);
            message.push(para.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    CliError::Usage {
        message: message.join("; "),
        usage,
    }
}

/// A command group named without its subcommand (`mstate lock`): clap
/// renders the group's whole help, which is no error message; name the
/// subcommands instead.
fn missing_subcommand(help: &str) -> CliError {
    let mut names = Vec::new();
    let mut usage = None;
    for para in help.split("\n\n") {
        if let Some(u) = para.trim().strip_prefix("Usage:") {
            usage = Some(u.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        let Some(list) = para.strip_prefix("Commands:") else {
            continue;
        };
        for line in list.lines() {
            // A name is indented by two spaces; wrapped text, by more.
            let Some(rest) = line.strip_prefix("  ") else {
                continue;
            };
            match rest.split_whitespace().next() {
                Some(name) if !rest.starts_with(' ') && name != "help" => {
                    names.push(name.to_string())
                }
                _ => {}
            }
        }
    }
    let group = usage
        .as_deref()
        .and_then(|u| u.split(" [").next())
        .and_then(|u| u.split(" <").next())
        .unwrap_or("this command")
        .to_string();
    CliError::Usage {
        message: format!(
            "'{group}' needs a subcommand: {}; see `{group} --help`",
            names.join(", ")
        ),
        usage,
    }
}

/// Print clap's help, version or usage error and exit with its status,
/// as `clap::Error::exit` does, except that: a usage error under `--json`
/// is the JSON error object; help or version that cannot be written to
/// stdout (a full disk, not a closed pipe) is exit 1 with the reason, not
/// a silent success.
fn exit_with(e: &clap::Error, json: bool) -> ! {
    use std::io::IsTerminal;
    if e.use_stderr() {
        if json {
            crate::output::report_error(&usage_error(e), true);
            std::process::exit(i32::from(crate::exit::USAGE));
        }
        // A terminal gets clap's colours.
        e.exit();
    }
    if std::io::stdout().is_terminal() {
        e.exit();
    }
    let mut out = crate::output::Out::new();
    let printed = out
        .bytes(e.render().to_string().as_bytes())
        .and_then(|_| out.finish());
    match printed {
        Ok(()) => std::process::exit(e.exit_code()),
        Err(err) => {
            crate::output::report_error(&err, json);
            std::process::exit(i32::from(err.code()));
        }
    }
}

/// Parse `args` if they name a hot command and are valid for it.
fn lean(args: &[OsString]) -> Option<Cli> {
    match args.get(1)?.to_str()? {
        "load" => simple_load(args).or_else(|| only(args, "load", Command::Load)),
        "save" => only(args, "save", Command::Save),
        "update" => only(args, "update", Command::Update),
        "log" => only(args, "log", Command::Log),
        "events" => only(args, "events", Command::Events),
        _ => None,
    }
}

/// `mstate load <milestone> [--json] [--envelope] [--log-access]`, global
/// options from the environment only: the form scripts run in loops,
/// parsed by hand, since clap's parser alone costs more than the rest of a
/// small load. Any other form returns `None` (clap then decides).
fn simple_load(args: &[OsString]) -> Option<Cli> {
    if args.get(1)?.to_str()? != "load" {
        return None;
    }
    let mut milestone = None;
    let (mut json, mut envelope, mut log_access) = (false, false, false);
    for arg in args.get(2..)? {
        let flag = match arg.to_str()? {
            "--json" => &mut json,
            "--envelope" => &mut envelope,
            "--log-access" => &mut log_access,
            s if !s.starts_with('-') && milestone.is_none() => {
                milestone = Some(s.to_string());
                continue;
            }
            _ => return None,
        };
        if std::mem::replace(flag, true) {
            return None; // repeated: clap's error
        }
    }
    // As clap reads them: an empty variable is not set.
    let env = |name: &'static str, default: &str| match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(Setting {
            value: v,
            source: Source::Env(name),
        }),
        Err(std::env::VarError::NotPresent) => Some(Setting::default_of(default)),
        _ => None,
    };
    let global = GlobalArgs {
        chdir: None,
        store: None,
        json,
        lock_token: None,
        lock_timeout: env(LOCK_TIMEOUT_ENV, DEFAULT_LOCK_TIMEOUT)?,
        max_backups: env(MAX_BACKUPS_ENV, DEFAULT_MAX_BACKUPS)?,
    };
    Some(Cli {
        global,
        command: Command::Load(state::LoadArgs {
            milestone: milestone?,
            envelope,
            log_access,
        }),
    })
}

/// Parse `args` against a tree of the global options and command `name`.
fn only<A: Args + FromArgMatches>(
    args: &[OsString],
    name: &'static str,
    wrap: fn(A) -> Command,
) -> Option<Cli> {
    let tree = top(Flags::augment_args(clap::Command::new("mstate")))
        .subcommand(adjust(A::augment_args(clap::Command::new(name)), name))
        .subcommand_required(true);
    let matches = tree.try_get_matches_from(args).ok()?;
    let flags = Flags::from_arg_matches(&matches).ok()?;
    let global = resolve(flags, &matches).ok()?;
    let (_, sub) = matches.subcommand()?;
    let command = wrap(A::from_arg_matches(sub).ok()?);
    Some(Cli { global, command })
}

/// Options every command takes, anywhere on the command line.
#[derive(Debug, Clone, Args)]
struct Flags {
    /// Run as if started in DIR (like git -C).
    #[arg(short = 'C', value_name = "DIR", global = true)]
    chdir: Option<PathBuf>,

    /// The store: postgres://user@host:port/db?schema=NAME, or the path of
    /// a .milestones/state directory [env: MSTATE_STORE]
    #[arg(long = "store", value_name = "LOCATION", global = true)]
    store: Option<String>,

    /// Print machine-readable JSON (errors too, on stderr).
    #[arg(long, global = true)]
    json: bool,

    /// Write with fencing token N of a lock you hold (`lock acquire`
    /// prints it; default: $MSTATE_LOCK_TOKEN, which `lock run` sets):
    /// the write is refused (exit 5) once that lock was released, expired
    /// or taken again.
    #[arg(long, value_name = "N", global = true)]
    lock_token: Option<String>,
}

/// Where an option's value came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Not given: the default.
    Default,
    /// This environment variable.
    Env(&'static str),
    /// This option on the command line.
    Flag(&'static str),
}

/// An option's value as given (checked by the command that uses it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    pub source: Source,
}

impl Setting {
    fn default_of(value: &str) -> Setting {
        Setting {
            value: value.to_string(),
            source: Source::Default,
        }
    }

    /// How a message names where the value came from: `--lock-timeout
    /// "abc"`, `MSTATE_LOCK_TIMEOUT="abc"`.
    pub fn named(&self, flag: &str) -> String {
        match self.source {
            Source::Env(var) => format!("{var}={:?}", self.value),
            Source::Flag(f) => format!("{f} {:?}", self.value),
            Source::Default => format!("{flag} {:?}", self.value),
        }
    }
}

/// The global options as the command sees them.
#[derive(Debug, Clone)]
pub struct GlobalArgs {
    pub chdir: Option<PathBuf>,
    /// `--store`, as given.
    pub store: Option<String>,
    pub json: bool,
    /// `--lock-token` as given (checked by [`crate::context`]).
    pub lock_token: Option<String>,
    /// `--lock-timeout` (its default for a command that takes no lock).
    pub lock_timeout: Setting,
    /// `--max-backups` (its default for a command that writes no backup).
    pub max_backups: Setting,
}

/// The global options of a parsed command line: `--lock-timeout` and
/// `--max-backups` after the command's name win over the same before it,
/// which win over the environment. Before the name of a command that does
/// not take them, they are checked but have no effect; the environment is
/// then ignored.
fn resolve(flags: Flags, matches: &ArgMatches) -> Result<GlobalArgs, clap::Error> {
    let mut path = Vec::new();
    let mut leaf = matches;
    while let Some((name, sub)) = leaf.subcommand() {
        path.push(name);
        leaf = sub;
    }
    let path = path.join(" ");
    let options = spec_of(&path).map_or(0, |s| s.options);
    let setting = |id: &str, flag: &'static str, var: &'static str, default: String, bit: u8| {
        let given = |m: &ArgMatches| {
            m.try_get_one::<String>(id)
                .ok()
                .flatten()
                .map(|v| (v.clone(), m.value_source(id)))
        };
        let before = given(matches).filter(|(_, s)| *s == Some(ValueSource::CommandLine));
        if options & bit == 0 {
            // Before the name it is the top level's option, which a
            // wrapper may pass to every command: it is checked (a bad
            // value is an error) and has no effect. After the name it is
            // no option of this command (a usage error, from clap).
            return Ok::<_, clap::Error>(match before {
                Some((value, _)) => Setting {
                    value,
                    source: Source::Flag(flag),
                },
                None => Setting::default_of(&default),
            });
        }
        let after = given(leaf);
        Ok(match (after, before) {
            (Some((value, Some(ValueSource::CommandLine))), _) | (_, Some((value, _))) => Setting {
                value,
                source: Source::Flag(flag),
            },
            (Some((value, Some(ValueSource::EnvVariable))), None) => Setting {
                value,
                source: Source::Env(var),
            },
            _ => Setting::default_of(&default),
        })
    };
    Ok(GlobalArgs {
        chdir: flags.chdir,
        store: flags.store,
        json: flags.json,
        lock_token: flags.lock_token,
        lock_timeout: setting(
            "lock_timeout",
            "--lock-timeout",
            LOCK_TIMEOUT_ENV,
            DEFAULT_LOCK_TIMEOUT.to_string(),
            LOCKS,
        )?,
        max_backups: setting(
            "max_backups",
            "--max-backups",
            MAX_BACKUPS_ENV,
            DEFAULT_MAX_BACKUPS.to_string(),
            BACKUPS,
        )?,
    })
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the store layout and the milestone's first event (idempotent).
    Init(state::InitArgs),
    /// Save a milestone's state (JSON argument, or stdin with - or nothing).
    Save(state::SaveArgs),
    /// Print a milestone's state as pretty JSON.
    Load(state::LoadArgs),
    /// Change a milestone's state in one atomic read-modify-write.
    Update(state::UpdateArgs),
    /// List every milestone with its status, revision and lock.
    List,
    /// Mark a milestone completed (moves its state to completed/).
    Complete(state::IdArgs),
    /// Make a completed milestone active again.
    Reopen(state::IdArgs),
    /// List a milestone's backups, newest first.
    Backups(backup::BackupsArgs),
    /// Restore the newest valid backup (or --from one).
    Recover(backup::RecoverArgs),
    /// Named checkpoints of a milestone's state.
    #[command(subcommand)]
    Checkpoint(checkpoint::CheckpointCommand),
    /// Milestone locks, shared with the seed's lock directories.
    #[command(subcommand)]
    Lock(lock::LockCommand),
    /// Append an event to a milestone's log.
    Log(events::LogArgs),
    /// Query a milestone's events.
    Events(events::EventsArgs),
    /// A milestone's events in time order, with session spans.
    Timeline(events::TimelineArgs),
    /// Remove events, backups and completed sessions older than N days.
    Cleanup(events::CleanupArgs),
    /// Sessions: who worked on a milestone, from where, and when.
    #[command(subcommand)]
    Session(session::SessionCommand),
    /// Check the whole store; exit 0 only when it is clean.
    Doctor(crate::commands::doctor::DoctorArgs),
    /// Move a whole store to another (files or PostgreSQL), then verify the copy.
    Migrate(crate::commands::migrate::MigrateArgs),
    /// Print the seed's shell functions backed by mstate: eval "$(mstate shell-init bash)".
    ShellInit(crate::commands::shell::ShellInitArgs),
    /// Print shell completions.
    Completions(crate::commands::completions::CompletionsArgs),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lean parsers give what clap's whole tree gives, or step aside.
    #[test]
    fn lean_parsing_agrees_with_the_whole_tree() {
        let cases: &[&[&str]] = &[
            &["load", "m1"],
            &["load", "m1", "--json"],
            &["load", "--json", "m1", "--envelope", "--log-access"],
            &["load", "m1", "--json", "--json"],
            &["load", "m1", "m2"],
            &["load"],
            &["load", "-C", "/tmp", "m1"],
            &["load", "m1", "--lock-timeout", "5"],
            &["load", "-", "--json"],
            &["load", "--", "m1"],
            &["load", "m1", "--help"],
            &["save", "m1", "{}", "--expect-revision", "3"],
            &["update", "m1", "--set", "/a=1", "--json"],
            &["update", "m1"],
            &["log", "m1", "note", "{}", "--raw-fallback"],
            &["events", "m1", "--tail", "5", "--type", "a", "--type", "b"],
            &["events", "m1", "--follow", "--json"],
            &["lock", "status", "m1"],
            &["--lock-timeout", "5", "save", "m1", "{}"],
            &[
                "--lock-timeout",
                "5",
                "save",
                "m1",
                "{}",
                "--lock-timeout",
                "7",
            ],
            &["save", "m1", "{}", "--max-backups", "3"],
            &["--max-backups", "3", "load", "m1"],
            &["--lock-timeout", "5", "log", "m1", "note"],
            &["log", "m1", "note", "--lock-timeout", "5"],
            &["events", "m1", "--max-backups", "5"],
            &["save", "m1", "{}", "--lock-token", "3"],
            &["--lock-token", "3", "update", "m1", "--set", "/a=1"],
            &["load", "m1", "--lock-token", "3"],
        ];
        for case in cases {
            let args: Vec<OsString> = std::iter::once("mstate")
                .chain(case.iter().copied())
                .map(OsString::from)
                .collect();
            let whole = parse(&args).ok();
            if let Some(lean) = lean(&args) {
                assert_eq!(
                    Some(format!("{lean:?}")),
                    whole.map(|w| format!("{w:?}")),
                    "{case:?}"
                );
            }
            if let Some(simple) = simple_load(&args) {
                let whole = parse(&args).ok();
                assert_eq!(
                    Some(format!("{simple:?}")),
                    whole.map(|w| format!("{w:?}")),
                    "{case:?}"
                );
            }
        }
        let load = |a: &[&str]| {
            let args: Vec<OsString> = ["mstate"].iter().chain(a).map(OsString::from).collect();
            simple_load(&args).is_some()
        };
        assert!(load(&["load", "m1", "--json"]));
        assert!(!load(&["load", "m1", "--json", "--json"]));
    }

    /// Every command of the tree has a spec (its options and examples),
    /// every spec names a command, and the default shown is the store's.
    #[test]
    fn specs_match_the_tree() {
        fn walk(cmd: &clap::Command, path: &str, found: &mut Vec<String>) {
            for sub in cmd.get_subcommands() {
                let p = if path.is_empty() {
                    sub.get_name().to_string()
                } else {
                    format!("{path} {}", sub.get_name())
                };
                found.push(p.clone());
                walk(sub, &p, found);
            }
        }
        let mut found = Vec::new();
        walk(&Parsed::command(), "", &mut found);
        for p in &found {
            assert!(spec_of(p).is_some(), "no spec for `{p}`");
        }
        for s in SPECS {
            assert!(
                found.iter().any(|p| p == s.path),
                "spec of no command: {}",
                s.path
            );
            let start = format!("mstate {}", s.path);
            let of = |e: &&str| *e == start || e.starts_with(&format!("{start} "));
            assert!(
                s.path == "lock __gate" || s.examples.iter().any(of),
                "no example of `{}`",
                s.path
            );
        }
        assert_eq!(
            DEFAULT_MAX_BACKUPS,
            mstate_store::store::DEFAULT_MAX_BACKUPS.to_string()
        );
        command().debug_assert();
    }

    /// Later wins: after the command's name over before it, both over
    /// the environment, which is only read for a command that uses it.
    #[test]
    fn where_an_option_came_from() {
        let p = |a: &[&str]| {
            let args: Vec<OsString> = ["mstate"].iter().chain(a).map(OsString::from).collect();
            parse(&args).map(|c| c.global)
        };
        let g = p(&[
            "--lock-timeout",
            "5",
            "save",
            "m",
            "{}",
            "--lock-timeout",
            "7",
        ])
        .unwrap();
        assert_eq!(g.lock_timeout.value, "7");
        let g = p(&["--lock-timeout", "5", "save", "m", "{}"]).unwrap();
        assert_eq!(
            g.lock_timeout,
            Setting {
                value: "5".into(),
                source: Source::Flag("--lock-timeout")
            }
        );
        // Before the name of a command that does not use it: the top
        // level's, kept to be checked; after the name: no option of it.
        let g = p(&["--lock-timeout", "5", "list"]).unwrap();
        assert_eq!(g.lock_timeout.source, Source::Flag("--lock-timeout"));
        assert!(p(&["list", "--lock-timeout", "5"]).is_err());
        assert!(p(&["lock", "acquire", "m", "--max-backups", "5"]).is_err());
        assert!(p(&["--max-backups", "5", "checkpoint", "restore", "m", "c"]).is_ok());
    }
}
