//! The storage engine: segmented partition logs written with direct I/O and group commit.
//!
//! Sans-I/O parts: [`index`] (offset and time indexes), [`recovery`] (the batch-by-batch scan
//! that tells a torn tail from damage), [`damage`] (the damaged ranges), [`epochs`] (the
//! leader-epoch cache), [`cache`] (the per-shard batch cache), `appender` (staging in pooled
//! buffers, tracking writes that complete in any order) and `group_commit` (the decisions of
//! group commit: what to write, when to sync, what to acknowledge, roll back or poison).
//! [`checkpoint`] writes the small checkpoint files. I/O parts, driven by glommio on the owning
//! shard: `dma` (direct-I/O buffers and writes), `commit` (runs the group-commit core's I/O),
//! `segment` (one segment's files), `meta` (a log's checkpoint files and checkpoint task),
//! [`log`] (the partition log, over the shared `state`), [`probe`] (the poll-ring workaround).

mod appender;
pub mod cache;
pub mod checkpoint;
mod clock;
mod commit;
pub mod config;
pub mod damage;
mod dma;
pub mod epochs;
pub mod error;
mod faults;
pub mod files;
mod group_commit;
pub mod index;
pub mod log;
mod meta;
pub mod probe;
pub mod recovery;
pub mod replica_state;
mod segment;
mod space;
mod state;

pub use cache::{BatchCache, CacheStats};
pub use config::{Durability, LogConfig, DIO_ALIGN_BYTES, SEGMENT_BYTES_LIMIT};
pub use damage::DamagedRange;
pub use error::LogError;
pub use files::{FileCache, FileCacheStats};
pub use log::{
    system_clock, AppendInfo, Clock, LogOptions, LogStats, OpenReport, PartitionLog, ReadBatches,
};
pub use segment::{RecoveryReport, NO_TIMESTAMP};
