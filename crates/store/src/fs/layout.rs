//! Where everything lives under `.milestones/state/` (the seed's layout).
//!
//! ```text
//! .milestones/state/
//!   active/<id>.json                  state of an active milestone
//!   completed/<id>.json               state of a completed milestone
//!   backups/<id>-<stamp>.json         backups (seed: <id>-YYYYmmdd-HHMMSS.json)
//!   backups/<id>-checkpoint-<n>.json  named checkpoints
//!   events/milestone-<id>.jsonl       live event log (appended in place;
//!                                     replaced by a cleanup that seals it)
//!   events/segments/<id>/<seq>.jsonl  sealed older parts of the log
//!   events/quarantine/                torn tails moved out of the way
//!   sessions/<session>.json           sessions
//!   .locks/<id>.lock/{pid,acquired,info.json}   (and `lease` once renewed)
//!   .locks/.<id>.token.<N>            newest fencing token of a milestone
//!   .current_session                  the seed's current session id
//! ```

use std::path::{Path, PathBuf};

use crate::id::{CheckpointName, MilestoneId, SessionId};
use crate::model::Status;

/// The directories every store has.
pub const SUBDIRS: [&str; 6] = [
    "active",
    "completed",
    "sessions",
    "backups",
    "events",
    ".locks",
];

/// Paths of one store.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// A layout rooted at `root` (a `.milestones/state` directory).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    pub fn active(&self) -> PathBuf {
        self.root.join("active")
    }
    pub fn completed(&self) -> PathBuf {
        self.root.join("completed")
    }
    pub fn backups(&self) -> PathBuf {
        self.root.join("backups")
    }
    pub fn events(&self) -> PathBuf {
        self.root.join("events")
    }
    pub fn sessions(&self) -> PathBuf {
        self.root.join("sessions")
    }
    pub fn locks(&self) -> PathBuf {
        self.root.join(".locks")
    }

    /// Directory holding the state files of milestones with `status`.
    pub fn status_dir(&self, status: Status) -> PathBuf {
        match status {
            Status::Active => self.active(),
            Status::Completed => self.completed(),
        }
    }

    /// `active/<id>.json` or `completed/<id>.json`.
    pub fn state_file(&self, id: &MilestoneId, status: Status) -> PathBuf {
        self.status_dir(status).join(format!("{id}.json"))
    }

    /// `backups/<id>-checkpoint-<name>.json`.
    pub fn checkpoint_file(&self, id: &MilestoneId, name: &CheckpointName) -> PathBuf {
        self.backups().join(format!("{id}-checkpoint-{name}.json"))
    }

    /// `events/milestone-<id>.jsonl`: the live log, the seed's file.
    pub fn event_log(&self, id: &MilestoneId) -> PathBuf {
        self.events().join(format!("milestone-{id}.jsonl"))
    }

    /// `events/segments/<id>/`: sealed segments of the log.
    pub fn segments_dir(&self, id: &MilestoneId) -> PathBuf {
        self.events().join("segments").join(id.as_str())
    }

    /// `events/quarantine/`: torn tails moved aside.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.events().join("quarantine")
    }

    /// `sessions/<session>.json`.
    pub fn session_file(&self, id: &SessionId) -> PathBuf {
        self.sessions().join(format!("{id}.json"))
    }

    /// `.current_session`.
    pub fn current_session(&self) -> PathBuf {
        self.root.join(".current_session")
    }

    /// `.locks/<id>.lock`: the seed's lock directory.
    pub fn lock_dir(&self, id: &MilestoneId) -> PathBuf {
        self.locks().join(format!("{id}.lock"))
    }
}
