//! The ways out of the store's errors, worded for the command line: the
//! one place that turns an error's data ([`mstate_store::Hint`], the
//! milestone and holder of a lock error) into the commands and options a
//! user of `mstate` types. The library's messages state what went wrong;
//! what to do about it is said here.

use mstate_store::{Error, Hint};

/// How a hint reads on the command line.
pub fn word(hint: &Hint) -> String {
    match hint {
        Hint::SaveToCreate { milestone } => format!("create it with `mstate save {milestone}`"),
        Hint::SaveToCreateOrList { milestone } => {
            format!("create it with `mstate save {milestone} '{{...}}'`, or see `mstate list`")
        }
        Hint::ListCheckpoints { milestone } => {
            format!("list them with `mstate checkpoint list {milestone}`")
        }
        Hint::ListBackups { milestone } => format!("see `mstate backups {milestone}`"),
        Hint::NotABackupOf { milestone } => {
            format!("it is not a backup of '{milestone}'; see `mstate backups {milestone}`")
        }
        Hint::OtherBackup { milestone } => {
            format!("name another one (`mstate backups {milestone}`)")
        }
        Hint::ListSessions => "see `mstate session list`".into(),
        Hint::NameSession => {
            "there is no current session; name one (`mstate session end <id>`)".into()
        }
        Hint::OtherNameOrReplace => "choose another name, or pass --force to replace it".into(),
        Hint::Recover { milestone } => {
            format!("run `mstate recover {milestone}` to restore its newest valid backup")
        }
        Hint::RestoreCheckpointOrSave {
            milestone,
            checkpoint,
        } => format!(
            "no valid backup of it exists; restore a checkpoint (`mstate checkpoint restore \
             {milestone} {checkpoint}`), or save a new state (`mstate save {milestone} '{{...}}'`)"
        ),
        Hint::SaveOverCorrupt { milestone } => format!(
            "no valid backup or checkpoint of it exists; save a new state (`mstate save \
             {milestone} '{{...}}'`, which keeps the corrupt file as \
             {milestone}.json.corrupted.<time>), or repair the file by hand"
        ),
        Hint::RecoverBeforeMove { milestone } => format!(
            "recover it first (`mstate recover {milestone}`, or `mstate doctor --repair`), then \
             move the store"
        ),
        Hint::NoStoreHere => "nothing to check here; name a store (--store LOCATION, -C DIR, or \
             MSTATE_DIR=<path of a .milestones/state directory>), or create one with `mstate \
             init <milestone>`"
            .into(),
        Hint::RestoreCheckpoint {
            milestone,
            checkpoint,
        } => format!("use `mstate checkpoint restore {milestone} {checkpoint}`"),
        Hint::SaveThroughStore { milestone } => format!(
            "save it once with mstate (`mstate load {milestone} | mstate save {milestone}`), then move the store"
        ),
        Hint::SessionEnded => "log without --session, or start a new one".into(),
        Hint::CheckAgain => "run `mstate doctor` again".into(),
        Hint::ForceReleaseIfGone { milestone } => {
            format!("if its holder is gone, run `mstate lock release {milestone} --force`")
        }
        Hint::SaveAgain { milestone } => {
            format!("save the state again (`mstate load {milestone}`, then `mstate save {milestone}`)")
        }
        Hint::Advice(text) => text.clone(),
        // A hint of a newer library, which this binary cannot word.
        _ => String::new(),
    }
}

/// The way out of `err` on the command line, if there is one to say.
pub fn way_out(err: &Error) -> Option<String> {
    match err {
        Error::LockTimeout { milestone, .. } => Some(format!(
            "retry with a longer lock timeout, or if the holder is gone run `mstate lock release \
             {milestone} --force`"
        )),
        Error::LockNotOwned {
            milestone,
            holder: Some(_),
        } => Some(format!(
            "to break it anyway run `mstate lock release {milestone} --force`"
        )),
        Error::LockNotOwned {
            milestone,
            holder: None,
        } => Some(format!(
            "take it first with `mstate lock acquire {milestone}`"
        )),
        other => other.hint().map(word).filter(|w| !w.is_empty()),
    }
}

/// `err`'s message with its way out, as the binary prints it.
pub fn message(err: &Error) -> String {
    match way_out(err) {
        Some(w) => format!("{err}; {w}"),
        None => err.to_string(),
    }
}

/// Word the hint of a milestone the store does not know for the command
/// line (the store's error carries the data): the ids it may have meant,
/// how to create it, or where the store was looked for.
pub fn word_hints(e: crate::exit::CliError) -> crate::exit::CliError {
    use crate::exit::CliError;
    let CliError::Store(mstate_store::Error::UnknownMilestone {
        name,
        nearest,
        no_store,
    }) = e
    else {
        return e;
    };
    let quoted: Vec<String> = nearest.iter().map(|n| format!("'{n}'")).collect();
    let hint = match (&no_store, quoted.as_slice()) {
        (Some(root), _) => format!(
            "there is no store at {root}; create one with `mstate init {name}`, or name one (--store LOCATION, -C DIR, or MSTATE_DIR=<path of a .milestones/state directory>)"
        ),
        (None, []) => format!(
            "the store knows no milestone of that name (see `mstate list`); create it with `mstate init {name}`"
        ),
        (None, [one]) => format!("did you mean {one}? To create '{name}': `mstate init {name}`"),
        (None, many) => format!(
            "did you mean one of {}? To create '{name}': `mstate init {name}`",
            many.join(", ")
        ),
    };
    CliError::Store(mstate_store::Error::NotFound {
        kind: mstate_store::ObjectKind::Milestone,
        name,
        hint: Some(mstate_store::Hint::Advice(hint)),
    })
}
