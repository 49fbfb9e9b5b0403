//! The partition log: segments, appends with group commit, reads, truncation and retention.
//!
//! A [`PartitionLog`] lives on the shard that owns the partition and is used only there (it is
//! `!Send`). Appends stage bytes in memory and wait; the commit pipeline (`commit.rs`) writes
//! them with direct I/O as staging buffers fill, commits each group with one `fdatasync` and then
//! resolves every append the sync covered. No `RefCell` borrow of the state is held across an
//! `.await`.
//!
//! The parts: `handle.rs` (the handle, open, appends with rolls and epoch changes, accessors,
//! close), `read.rs` (reads by offset and timestamp), `repair.rs` (repairing a damaged range),
//! `truncate.rs` (truncation and retention), `types.rs` (what the API takes and returns). The
//! state they share is `disk/state.rs`.

mod handle;
mod read;
mod repair;
mod truncate;
mod types;

pub use crate::disk::clock::{system_clock, Clock};
pub use handle::PartitionLog;
pub use types::{AppendInfo, LogOptions, LogStats, OpenReport, ReadBatches};
