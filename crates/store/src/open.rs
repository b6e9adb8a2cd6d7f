//! Opening a store: the one entry point of front ends (the CLI, a future
//! MCP server or HTML timeline), which then hold a `Box<dyn Store>` and
//! never name a backend.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::fs::FsStore;
use crate::store::{Store, StoreOptions};

/// Where a store is; [`open`] picks the backend from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A `.milestones/state` directory: the seed's layout, shared with
    /// its bash functions.
    Files(PathBuf),
}

impl Location {
    /// The store of a command started in `cwd`: `env_dir` (`MSTATE_DIR`)
    /// if given, else the nearest ancestor of `cwd` holding
    /// `.milestones/state`, else `cwd/.milestones/state` (created by the
    /// first write).
    pub fn discover(cwd: &Path, env_dir: Option<&Path>) -> Location {
        Location::Files(crate::fs::discover(cwd, env_dir))
    }
}

/// Open the store at `location`.
pub fn open(location: &Location, options: StoreOptions) -> Result<Box<dyn Store>> {
    match location {
        Location::Files(root) => Ok(Box::new(FsStore::open(root.clone(), options)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::MilestoneId;
    use crate::store::WriteOptions;

    /// A store opened through `open` is the store at that location: what
    /// one handle saves, another opened there loads; the location names it.
    #[test]
    fn open_gives_the_store_at_the_location() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::discover(dir.path(), None);
        assert_eq!(
            location,
            Location::Files(dir.path().join(crate::fs::STORE_DIR))
        );
        let id = MilestoneId::new("m").unwrap();
        let a = open(&location, StoreOptions::default()).unwrap();
        assert!(!a.exists().unwrap());
        a.save(
            &id,
            &serde_json::json!({"step": 1}),
            &WriteOptions::default(),
        )
        .unwrap();
        assert!(a.take_created());
        let b = open(&location, StoreOptions::default()).unwrap();
        let loaded = b.load(&id, &WriteOptions::default()).unwrap();
        assert_eq!(loaded.envelope.state, serde_json::json!({"step": 1}));
        assert!(b.location().ends_with(crate::fs::STORE_DIR));
        b.require_known(&id).unwrap();
        let other = MilestoneId::new("n").unwrap();
        assert!(matches!(
            b.require_known(&other),
            Err(crate::Error::UnknownMilestone { .. })
        ));
    }
}
