//! The vocabulary of the partition log's API: what open takes and reports, what appends and
//! reads return, the counters.

use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;

use crate::disk::cache::BatchCache;
use crate::disk::clock::Clock;
use crate::disk::config::LogConfig;
use crate::disk::damage::DamagedRange;
use crate::disk::files::FileCache;
use crate::disk::segment::RecoveryReport;
use crate::types::Offset;

/// Everything [`PartitionLog::open`](crate::disk::PartitionLog::open) needs besides the directory.
#[derive(Clone)]
pub struct LogOptions {
    pub config: LogConfig,
    /// The shard's batch cache, shared by all logs of the shard.
    pub cache: Rc<BatchCache>,
    /// The shard's cache of open sealed-segment files, shared by all logs of the shard.
    pub files: Rc<FileCache>,
    pub clock: Clock,
}

/// What an append returns once acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    pub last_offset: Offset,
}

/// Whole batches returned by a read, with the log's bounds at the time.
#[derive(Clone, Debug, Default)]
pub struct ReadBatches {
    pub batches: Vec<Bytes>,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
}

impl ReadBatches {
    pub fn bytes(&self) -> usize {
        self.batches.iter().map(|b| b.len()).sum()
    }
}

/// What [`PartitionLog::open`](crate::disk::PartitionLog::open) found and did.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    /// Recovery of the active segment.
    pub active: Option<RecoveryReport>,
    /// Sealed segments whose indexes had to be rebuilt.
    pub rebuilt: Vec<RecoveryReport>,
    /// Damaged ranges found by this open (media damage below the log end: kept, not served),
    /// as the segment's path and the offset range.
    pub corrupt: Vec<(PathBuf, Offset, Offset)>,
    /// Every damaged range of the log after the open, found now or known before.
    pub damaged: Vec<DamagedRange>,
    /// The recovery point the open started from (see `checkpoint.rs`).
    pub recovery_point: Offset,
}

/// Counters for the metrics hook.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    pub segments: usize,
    pub size_bytes: u64,
    /// Tail writes: groups of appends ended by writing the staged bytes after the last full
    /// staging buffer (full buffers are written as they fill, without ending a group).
    pub tail_writes: u64,
    pub fdatasyncs: u64,
    pub appends: u64,
    /// Damaged ranges not served (see
    /// [`PartitionLog::damaged_ranges`](crate::disk::PartitionLog::damaged_ranges)).
    pub damaged_ranges: usize,
    /// Recovery-point checkpoints written.
    pub checkpoints: u64,
}
