//! The storage engine: segmented partition logs written with direct I/O and group commit.
//!
//! Sans-I/O parts: [`index`] (offset and time indexes), [`recovery`] (the batch-by-batch scan
//! that tells a torn tail from damage), [`damage`] (the damaged ranges), [`epochs`] (the
//! leader-epoch cache), [`cache`] (the per-shard batch cache). [`checkpoint`] writes the small
//! checkpoint files. I/O parts, driven by glommio on the owning shard:
//! `appender` (aligned staging in pooled buffers), `commit` (the pipeline of writes, syncs and
//! acknowledgements), `segment` (one segment's files), [`log`] (the partition log), [`probe`]
//! (the poll-ring workaround).

mod appender;
pub mod cache;
pub mod checkpoint;
mod commit;
pub mod config;
pub mod damage;
pub mod epochs;
pub mod error;
pub mod files;
pub mod index;
pub mod log;
pub mod probe;
pub mod recovery;
mod segment;
mod space;

pub use cache::{BatchCache, CacheStats};
pub use config::{Durability, LogConfig, DIO_ALIGN_BYTES, SEGMENT_BYTES_LIMIT};
pub use damage::DamagedRange;
pub use error::LogError;
pub use files::{FileCache, FileCacheStats};
pub use log::{
    system_clock, AppendInfo, Clock, LogOptions, LogStats, OpenReport, PartitionLog, ReadBatches,
};
pub use segment::{RecoveryReport, NO_TIMESTAMP};

/// Transitional: the crash tests still name the synthetic batches here; they live in
/// `quill-testkit`.
#[doc(hidden)]
pub use quill_testkit::synthetic;
