//! The same operations through the library: `mstate_store::FsStore`
//! behind the `Store` trait, as the CLI calls it.

use mstate_store::prelude::*;
use std::path::Path;
use std::time::Duration;

use mstate_store::model::{LockRequest, NewEvent};
use mstate_store::{CheckpointName, EventType, FsOptions, FsStore, MilestoneId, WriteOptions};
use serde_json::Value;

/// An open store with milestone `m`.
pub struct Lib {
    /// The store.
    pub store: FsStore,
    id: MilestoneId,
    opts: WriteOptions,
    checkpoint: CheckpointName,
    progress: EventType,
    serial: u64,
}

/// Error text of a store error.
fn e(err: mstate_store::Error) -> String {
    err.to_string()
}

impl Lib {
    /// Open (creating) the store at `root` (a `.milestones/state` directory).
    pub fn open(root: &Path) -> Result<Lib, String> {
        let store = FsStore::open(root, FsOptions::default()).map_err(e)?;
        Ok(Lib {
            store,
            id: MilestoneId::new("m").map_err(e)?,
            opts: WriteOptions {
                expect_revision: None,
                lock_timeout: Duration::from_secs(120),
                lock_token: None,
            },
            checkpoint: CheckpointName::new("c").map_err(e)?,
            progress: EventType::new("progress").map_err(e)?,
            serial: 0,
        })
    }

    /// `init` plus a first `save`.
    pub fn create(root: &Path, state: &Value) -> Result<Lib, String> {
        let lib = Lib::open(root)?;
        lib.store.init(&lib.id).map_err(e)?;
        lib.save(state)?;
        Ok(lib)
    }

    /// `save`; returns the new revision.
    pub fn save(&self, state: &Value) -> Result<u64, String> {
        Ok(self
            .store
            .save(&self.id, state, &self.opts)
            .map_err(e)?
            .revision)
    }

    /// `save_text` of the state as JSON text; returns the new revision.
    pub fn save_text(&self, state: &[u8]) -> Result<u64, String> {
        Ok(self
            .store
            .save_text(&self.id, state, &self.opts)
            .map_err(e)?
            .revision)
    }

    /// `load_raw` (the state as text); returns the revision loaded.
    pub fn load_text(&self) -> Result<u64, String> {
        Ok(self
            .store
            .load_raw(&self.id, &self.opts)
            .map_err(e)?
            .revision)
    }

    /// `load`; returns the revision loaded.
    pub fn load(&self) -> Result<u64, String> {
        Ok(self
            .store
            .load(&self.id, &self.opts)
            .map_err(e)?
            .envelope
            .revision)
    }

    /// `update`: set `/phase` (a small edit of a large state).
    pub fn update(&mut self) -> Result<u64, String> {
        self.serial += 1;
        let phase = Value::String(format!("phase-{}", self.serial));
        let edit = mstate_store::model::StateEdit::set("/phase", phase);
        Ok(self
            .store
            .update(&self.id, &edit, &self.opts)
            .map_err(e)?
            .revision)
    }

    /// `log` of a `progress` event; returns its `seq`.
    pub fn log(&mut self, data: &Value) -> Result<u64, String> {
        self.serial += 1;
        let ev = NewEvent {
            event_type: self.progress.clone(),
            data: data.clone(),
            session_id: None,
        };
        Ok(self.store.log(&self.id, &ev).map_err(e)?.seq.unwrap_or(0))
    }

    /// `checkpoint create m c --force`.
    pub fn checkpoint(&self) -> Result<(), String> {
        self.store
            .checkpoint_create(&self.id, Some(&self.checkpoint), true, &self.opts)
            .map_err(e)?;
        Ok(())
    }

    /// Take the lock for this process and release it (what every write
    /// does around its work).
    pub fn lock(&self) -> Result<(), String> {
        let req = LockRequest {
            operation: "bench".into(),
            timeout: self.opts.lock_timeout,
            owner_pid: std::process::id(),
            ttl: None,
            group: None,
        };
        let held = self.store.lock_scoped(&self.id, &req).map_err(e)?;
        held.release().map_err(e)
    }
}
