//! Validated names: milestone ids, checkpoint names, session ids, event types.
//!
//! Every name that ends up in a path or in a shell script is checked once,
//! when its type is built, so the rest of the store can use it as a file name
//! without fear: no separators, no `..`, no control characters, no leading
//! `-` or `.`, at most [`MAX_NAME_LEN`] bytes, and only letters, digits and a
//! few punctuation characters (so look-alikes of `/` or `.` from other
//! scripts, and invisible characters, are refused too).
//!
//! Every file name the store builds from a valid name fits the 255-byte
//! limit of a file name ([`MAX_FILE_NAME`]), its temporary twin included:
//! a 128-byte id gives `<id>-<stamp>-r<rev>.json` backups, `<id>.json`
//! plus `.corrupted.<stamp>` or `.tmp.<nonce>` and `milestone-<id>.jsonl`
//! well inside it. The one pair that could exceed it, an id and a
//! checkpoint name in `<id>-checkpoint-<name>.json`, is bounded together
//! by [`check_checkpoint_file`] ([`MAX_CHECKPOINT_ID_AND_NAME`] bytes).

use std::fmt;
use std::ops::Deref;

use crate::error::{Error, Result};

/// Longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Longest file name (one path component) that Linux filesystems accept
/// (`NAME_MAX`), in bytes.
pub const MAX_FILE_NAME: usize = 255;

/// Room kept after a file name for the temporary twin it is written as
/// first, `<name>.tmp.<nonce>` (`fs::atomic::temp_path`): `.tmp.`, a pid
/// (a `u32`, 10 digits), `-`, nanoseconds in hex (a `u64`, 16 digits), `-`
/// and a counter (a `u64`, 20 digits).
pub const TEMP_SUFFIX_RESERVE: usize = 5 + 10 + 1 + 16 + 1 + 20;

/// Longest milestone id and checkpoint name together, in bytes: 185, so
/// that `<id>-checkpoint-<name>.json` and its temporary twin fit in
/// [`MAX_FILE_NAME`]. The checkpoints the store names itself
/// (`manual-<stamp>`, `pre-restore-<stamp>`, at most 34 bytes) always fit
/// beside an id of [`MAX_NAME_LEN`].
pub const MAX_CHECKPOINT_ID_AND_NAME: usize =
    MAX_FILE_NAME - "-checkpoint-".len() - ".json".len() - TEMP_SUFFIX_RESERVE;

/// Refuse a milestone id and a checkpoint name that are each valid but
/// together make a checkpoint file name longer than a filesystem accepts:
/// invalid input, refused before anything is touched, rather than an
/// `ENAMETOOLONG` half way through a command.
pub fn check_checkpoint_file(id: &MilestoneId, name: &CheckpointName) -> Result<()> {
    let together = id.len() + name.len();
    if together <= MAX_CHECKPOINT_ID_AND_NAME {
        return Ok(());
    }
    Err(Error::invalid(
        "checkpoint name",
        format!(
            "{:?} and the milestone id {:?} are {together} bytes together; at most \
             {MAX_CHECKPOINT_ID_AND_NAME} are allowed, so that the file \
             <id>-checkpoint-<name>.json fits the {MAX_FILE_NAME}-byte limit of a file \
             name; choose a name of at most {} bytes",
            shorten(name),
            shorten(id),
            MAX_CHECKPOINT_ID_AND_NAME.saturating_sub(id.len())
        ),
    ))
}

/// ASCII punctuation accepted inside names besides letters and digits.
const NAME_PUNCT: &[char] = &['.', '_', '-', '+', '@'];

/// Event types are stricter still: they appear in shell scripts and in
/// `grep` patterns of the seed, so they are ASCII only.
const EVENT_PUNCT: &[char] = &['.', '_', '-', ':'];

fn check(what: &str, s: &str, ascii_only: bool, punct: &[char]) -> Result<()> {
    let bad = |message: String| Error::invalid(what, message);
    if s.is_empty() {
        return Err(bad("must not be empty".into()));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(bad(format!(
            "is {} bytes long, at most {MAX_NAME_LEN} are allowed",
            s.len()
        )));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(bad(format!(
            "{:?} contains the control character U+{:04X}",
            shorten(s),
            c as u32
        )));
    }
    if s.starts_with('-') || s.starts_with('.') {
        return Err(bad(format!("{s:?} must not start with '-' or '.'")));
    }
    if s.contains("..") {
        return Err(bad(format!("{s:?} must not contain '..'")));
    }
    for c in s.chars() {
        let ok = if ascii_only {
            c.is_ascii_alphanumeric() || punct.contains(&c)
        } else {
            c.is_alphanumeric() || punct.contains(&c)
        };
        if !ok {
            let allowed: String = punct.iter().collect();
            return Err(bad(format!(
                "{:?} contains {c:?} (U+{:04X}); use {}letters, digits and {allowed:?}",
                shorten(s),
                c as u32,
                if ascii_only { "ASCII " } else { "" }
            )));
        }
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= 40 {
        s.to_string()
    } else {
        let head: String = s.chars().take(40).collect();
        format!("{head}…")
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $ascii:expr, $punct:expr, $extra:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validate `s` and wrap it.
            pub fn new(s: impl Into<String>) -> Result<Self> {
                let s = s.into();
                check($what, &s, $ascii, $punct)?;
                let extra: fn(&str) -> Result<()> = $extra;
                extra(&s)?;
                Ok(Self(s))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A milestone id: the `<id>` of `active/<id>.json`.
    MilestoneId,
    "milestone id",
    false,
    NAME_PUNCT,
    |s| {
        // `<id>-checkpoint-<name>.json` is the seed's checkpoint file name:
        // an id containing that marker would be ambiguous with another
        // milestone's checkpoints.
        if s.contains("-checkpoint-") {
            return Err(Error::invalid(
                "milestone id",
                format!("{s:?} must not contain '-checkpoint-' (it would be read as a checkpoint file name)"),
            ));
        }
        Ok(())
    }
);
name_type!(
    /// A checkpoint name: the `<name>` of `backups/<id>-checkpoint-<name>.json`.
    CheckpointName,
    "checkpoint name",
    false,
    NAME_PUNCT,
    |_| Ok(())
);
name_type!(
    /// A session id such as `session-20261124-120000-4121`.
    SessionId,
    "session id",
    false,
    NAME_PUNCT,
    |_| Ok(())
);
name_type!(
    /// An event type such as `state_saved`.
    EventType,
    "event type",
    true,
    EVENT_PUNCT,
    |_| Ok(())
);

/// The names among `known` close enough to `name` to be what was meant
/// (a typo: at most a third of the longer name's characters differ, at
/// least one; a swap of two neighbours counts once), nearest first, at
/// most three.
pub(crate) fn nearest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut close: Vec<(usize, &str)> = known
        .into_iter()
        .filter(|k| *k != name)
        .filter_map(|k| {
            let d = strsim::osa_distance(name, k);
            let longer = name.chars().count().max(k.chars().count());
            (d <= (longer / 3).max(1)).then_some((d, k))
        })
        .collect();
    close.sort();
    close
        .into_iter()
        .take(3)
        .map(|(_, k)| k.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_names() {
        for s in ["m1", "milestone-2", "M_3.1", "été", "a+b@c", "x-checkpoint"] {
            MilestoneId::new(s).unwrap();
        }
        EventType::new("state_saved").unwrap();
        EventType::new("task.done:ok").unwrap();
    }

    #[test]
    fn rejects_hostile_names() {
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for s in [
            "",
            "../x",
            "a/b",
            "a\\b",
            "a\0b",
            "a\nb",
            "-rf",
            ".hidden",
            "a..b",
            "a b",
            "a\u{2215}b",
            "a\u{ff0e}b",
            "a\u{200d}b",
            "x'; touch /tmp/pwned; echo '",
            long.as_str(),
        ] {
            assert!(MilestoneId::new(s).is_err(), "accepted {s:?}");
        }
        assert!(EventType::new("x'; touch /tmp/pwned; echo '").is_err());
        assert!(EventType::new("été").is_err());
    }

    #[test]
    fn the_temp_suffix_reserve_holds_the_longest_nonce() {
        let longest = format!(".tmp.{}-{:x}-{}", u32::MAX, u64::MAX, u64::MAX);
        assert_eq!(longest.len(), TEMP_SUFFIX_RESERVE);
        let tmp = crate::fs::atomic::temp_path(std::path::Path::new("x.json"));
        let suffix = tmp.to_string_lossy().len() - "x.json".len();
        assert!(suffix <= TEMP_SUFFIX_RESERVE, "{tmp:?}");
        assert_eq!(MAX_CHECKPOINT_ID_AND_NAME, 185);
    }

    #[test]
    fn checkpoint_files_fit_in_a_file_name() {
        let id = MilestoneId::new("a".repeat(MAX_NAME_LEN)).unwrap();
        let fits =
            CheckpointName::new("b".repeat(MAX_CHECKPOINT_ID_AND_NAME - MAX_NAME_LEN)).unwrap();
        check_checkpoint_file(&id, &fits).unwrap();
        let file = format!("{id}-checkpoint-{fits}.json");
        assert!(file.len() + TEMP_SUFFIX_RESERVE <= MAX_FILE_NAME);
        let long = CheckpointName::new(format!("{fits}b")).unwrap();
        let err = check_checkpoint_file(&id, &long).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Invalid);
        // The names the store gives checkpoints itself fit any id.
        for auto in [
            "manual-20261124-120000-123456",
            "pre-restore-20261124-120000-123456",
        ] {
            check_checkpoint_file(&id, &CheckpointName::new(auto).unwrap()).unwrap();
        }
    }

    proptest! {
        #[test]
        fn valid_names_are_single_safe_path_components(s in "\\PC{0,140}") {
            if let Ok(id) = MilestoneId::new(s.clone()) {
                prop_assert!(!id.contains('/') && !id.contains('\\') && !id.contains('\0'));
                prop_assert!(!id.starts_with('.') && !id.starts_with('-'));
                prop_assert!(id.len() <= MAX_NAME_LEN);
                let p = std::path::Path::new(id.as_str());
                prop_assert_eq!(p.components().count(), 1);
                prop_assert!(matches!(p.components().next(), Some(std::path::Component::Normal(_))));
            }
        }
    }
}
