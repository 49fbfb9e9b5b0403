//! The work one shard asks of another: calls and their replies. Everything here is `Send` (it
//! crosses threads); batch bytes move without copying (`BytesMut`/`Bytes` hand over ownership).

use bytes::{Bytes, BytesMut};

use super::catalog::{TopicConfig, TopicMeta};
use crate::net::error_code::ErrorCode;

/// A typed failure for one partition or one admin operation, as it goes on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    pub code: ErrorCode,
    pub message: String,
    /// For a partition error: the log's offsets `(log start, high watermark, log end)`, so an
    /// out-of-range fetch tells the client the valid range.
    pub offsets: Option<(i64, i64, i64)>,
}

impl CallError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CallError {
            code,
            message: message.into(),
            offsets: None,
        }
    }
}

/// A fetch of one partition.
#[derive(Clone, Debug)]
pub struct FetchPartition {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub max_bytes: u32,
    /// How long to wait for `min_bytes` when there are fewer (0: answer at once).
    pub max_wait_ms: u32,
    /// Answer once at least this many bytes are there (or `max_wait_ms` passed).
    pub min_bytes: u32,
}

/// What a partition fetch returns.
#[derive(Clone, Debug, Default)]
pub struct FetchedPartition {
    pub batches: Vec<Bytes>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

impl FetchedPartition {
    pub fn bytes(&self) -> usize {
        self.batches.iter().map(|b| b.len()).sum()
    }
}

/// Offsets of one partition, for metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub topic: String,
    pub partition: u32,
    pub leader_epoch: i32,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    /// Why the partition is not served (it could not be opened), if it is not; the offsets are
    /// then -1.
    pub error: Option<CallError>,
    /// Damaged ranges `(first, last)`: offsets not served (see `disk::damage`).
    pub damaged: Vec<(i64, i64)>,
}

/// Topic settings a client asked for, before broker defaults are applied.
#[derive(Clone, Debug)]
pub struct TopicRequest {
    pub name: String,
    pub partitions: u32,
    pub config: TopicConfig,
}

pub(crate) enum Call {
    /// Append batches to a partition this shard owns; reply [`Reply::Produce`].
    Produce {
        topic: String,
        partition: u32,
        records: BytesMut,
        /// Past this the batches are not appended (REQUEST_TIMED_OUT).
        deadline: std::time::Instant,
    },
    Fetch(FetchPartition),
    /// `timestamp`: -1 latest, -2 earliest, else by timestamp; reply [`Reply::Offset`].
    ListOffset {
        topic: String,
        partition: u32,
        timestamp: i64,
    },
    /// Offsets of the partitions this shard owns among `topics` (`None`: all).
    PartitionInfo {
        topics: Option<Vec<String>>,
    },
    /// To the controller (shard 0).
    CreateTopic(TopicRequest),
    DeleteTopic {
        name: String,
    },
    /// From the controller, before a topic is created: can you open every partition of it you
    /// would own (file descriptors)? Reply [`Reply::Admin`].
    CanOpen(TopicMeta),
    /// From the controller: a topic is being created; open the partitions you own, all or
    /// none, and do not serve them until [`Call::CommitTopic`].
    OpenTopic(TopicMeta),
    /// From the controller: every shard opened its partitions of the topic; serve them.
    CommitTopic(TopicMeta),
    /// From the controller: a topic is gone (or its create rolled back); close the partitions
    /// you own, and remove their directories when the flag says the catalog on disk recorded
    /// the deletion.
    DropTopic(TopicMeta, bool),
}

pub(crate) enum Reply {
    Produce(Result<Vec<i64>, CallError>),
    Fetch(Result<FetchedPartition, CallError>),
    Offset(Result<i64, CallError>),
    PartitionInfo(Vec<PartitionInfo>),
    Admin(Result<(), CallError>),
}
