//! Puente's memory: links between records, seen values, cursors, intents,
//! run history, per-record status, tombstones, the field-level change log and
//! the conflict inbox.
//!
//! One implementation over sqlx's `Any` driver serves SQLite (the default, a
//! file created on first run) and PostgreSQL (`postgres://…` state URLs):
//! the same queries, the same tests, migrations embedded per backend.

mod lease;
mod store;
mod vault;

pub use lease::{Acquired, Holder, Lease, LeaseRow};
pub use store::{
    now, Backend, ChangeRow, Commit, ConflictRow, EntryWrite, GroupRow, Intent, IntentBatch,
    IntentRef, Marker, RecordFilter, RecordRow, Revisit, RunRow, StateError, StateStore,
    StatusCounts, STATUSES,
};
pub use vault::{SecretInfo, SecretKey};
