//! The store behind `mstate`: durable, concurrency-safe state for
//! long-running milestone executions.
//!
//! The milestone API is the [`Store`] trait, and [`open`] gives the store
//! at a [`Location`]; [`fs::FsStore`] implements it
//! over the seed's `.milestones/state/` directory, sharing it safely with
//! the seed's bash functions. Values crossing the API are in [`model`];
//! every error is an [`Error`] whose [`ErrorKind`] a front end maps to an
//! exit code.

pub mod error;
pub mod fs;
pub mod id;
pub mod inherited;
pub mod io;
pub mod json;
pub mod model;
mod open;
pub mod pg;
pub mod process;
pub mod store;
pub mod time;
pub mod timeline;
pub mod transfer;

pub use error::{Error, ErrorKind, Hint, ObjectKind, Result, TokenRefusal};
pub use fs::log::{Fields, LogLine};
pub use fs::{FsOptions, FsStore};
pub use id::{CheckpointName, EventType, MilestoneId, SessionId};
pub use model::{EventFields, EventRecord};
pub use open::{open, Location};
pub use store::{
    CleanupOptions, CleanupReport, EventStore, HistoryStore, LockStore, MaintenanceStore, Pinned,
    SessionStore, StateStore, Store, StoreBase, StoreOptions, TransferStore, WriteOptions,
};

/// The parts of the store API, to call them on a `dyn Store`:
/// `use mstate_store::prelude::*`.
pub mod prelude {
    pub use crate::store::{
        EventStore, HistoryStore, LockStore, MaintenanceStore, SessionStore, StateStore, Store,
        StoreBase, TransferStore,
    };
}
