//! Errors of the storage engine. Operating errors (bad input, disk faults) are values; broken
//! invariants of our own code are assertions.

use std::path::PathBuf;
use std::rc::Rc;

use crate::record::BatchError;
use crate::types::{Epoch, Offset};

/// An error from a partition log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// The batch handed to `append` failed validation; nothing was written.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// The requested offset is outside `[earliest, latest]`; `latest` is the next offset to be
    /// written (one past the last record a reader may see).
    #[error("offset {requested} is out of range: {}", held_range(*earliest, *latest))]
    OffsetOutOfRange {
        requested: Offset,
        earliest: Offset,
        latest: Offset,
    },
    /// Offsets `first` to `last` are a damaged range: their bytes in `path` failed their checks
    /// (CRC, length, offset or epoch) when read back. They are not served; reading resumes at
    /// `next`. Replication will repair the range from a replica.
    #[error(
        "offsets {first} to {last} of {path} are damaged and not served ({reason}); \
         the next readable offset is {next}"
    )]
    CorruptSegment {
        path: PathBuf,
        first: Offset,
        last: Offset,
        next: Offset,
        reason: String,
    },
    /// A disk operation failed. Appends that were not acknowledged before it were rolled back.
    #[error("{op} on {path} failed: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Rc<std::io::Error>,
    },
    /// An earlier `fdatasync` failed, so the state of the device is unknown; the log refuses
    /// appends until it is reopened (and recovered) and keeps serving reads.
    #[error("the log at {path} stopped accepting appends after a failed fdatasync: {cause}")]
    Poisoned { path: PathBuf, cause: String },
    /// Truncation below the high watermark would remove committed records.
    #[error("cannot truncate to {requested}: the high watermark is {high_watermark}")]
    TruncateBelowHighWatermark {
        requested: Offset,
        high_watermark: Offset,
    },
    /// Truncation must land on a batch boundary.
    #[error("cannot truncate to {requested}: it is inside a batch")]
    TruncateInsideBatch { requested: Offset },
    /// An append carried a leader epoch below the newest batch's.
    #[error("leader epoch {epoch} is older than the log's current epoch {current}")]
    StaleEpoch { epoch: Epoch, current: Epoch },
    /// [`crate::disk::PartitionLog::repair_range`] refused the replacement bytes.
    #[error("cannot repair the damaged range at offset {first}: {reason}")]
    Repair { first: Offset, reason: String },
    /// A replicated append's batches do not start at the log end, or are not contiguous
    /// (`expected` is where the batch had to start); nothing from that batch on was appended.
    #[error("a replicated batch starts at offset {got}, but the log needs offset {expected}")]
    OffsetMismatch { expected: Offset, got: Offset },
    /// The log was closed while the operation waited.
    #[error("the log is closed")]
    Closed,
    /// The append was written but not yet acknowledged when a truncation to `offset` removed it
    /// (a replica giving up an uncommitted suffix).
    #[error(
        "the append was removed by a truncation to offset {offset} before it was acknowledged"
    )]
    Truncated { offset: Offset },
    /// The append waited for room in the log's queue (`pending_bytes_max`) past its deadline;
    /// nothing of it was appended.
    #[error("not appended: no room in the partition's write queue within {waited_ms} ms")]
    AppendTimedOut { waited_ms: u64 },
    /// The directory or configuration cannot hold a log.
    #[error("invalid log configuration: {0}")]
    Config(String),
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LogError::Io {
            op,
            path: path.into(),
            source: Rc::new(source),
        }
    }

    pub(crate) fn glommio(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: glommio::GlommioError<()>,
    ) -> Self {
        // Keep the OS error number (e.g. ENOSPC): glommio's own conversion to io::Error drops
        // it for errors that carry a path.
        let io = match source {
            glommio::GlommioError::EnhancedIoError { source, .. } => source,
            glommio::GlommioError::IoError(e) => e,
            other => other.into(),
        };
        Self::io(op, path, io)
    }

    /// The OS error number behind an I/O error, if any (e.g. `libc::ENOSPC`).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            LogError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Says which offsets a log holds, naming the last one that exists.
fn held_range(earliest: Offset, next: Offset) -> String {
    if next <= earliest {
        format!("the log holds no record; the next offset is {next}")
    } else {
        format!(
            "the log holds offsets {earliest} to {} (the next is {next})",
            next.prev()
        )
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;
