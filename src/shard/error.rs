//! What the partition service and the topic admin can fail with, as domain values: no wire code
//! here. Each protocol maps these to its own codes in one place (the native protocol in
//! `net/errors.rs`). Every error is `Send` and `Clone`: it crosses shards in a mesh reply, and a
//! partition that could not be opened answers every request with the same error.
//!
//! The messages are what a client reads; they do not change without a reason.

use crate::disk::LogError;
use crate::record::BatchError;
use crate::types::{Epoch, NodeId, ShardId, TopicPartition};

use super::catalog::CatalogError;
use super::fds::FDS_PER_PARTITION;
use super::partition::LogOffsets;

/// The kind of a storage failure, as a protocol needs to tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFailure {
    /// A batch larger than the topic's `batch_bytes_max`.
    BatchTooLarge,
    /// A batch that failed validation (length, magic, CRC, records).
    InvalidBatch,
    OffsetOutOfRange,
    /// The read reached a damaged range of stored data.
    Damaged,
    /// A disk operation failed, or the log stopped taking appends after a failed sync.
    Io,
    /// An append with a leader epoch older than the log's.
    StaleEpoch,
    /// The log closed while the operation waited.
    Closed,
    /// The append could not start before its deadline.
    TimedOut,
    /// Anything else (truncation, repair, configuration): a bug to report.
    Other,
}

impl LogFailure {
    pub fn of(e: &LogError) -> LogFailure {
        match e {
            LogError::InvalidBatch(BatchError::TooLarge { .. }) => LogFailure::BatchTooLarge,
            LogError::InvalidBatch(_) => LogFailure::InvalidBatch,
            LogError::OffsetOutOfRange { .. } => LogFailure::OffsetOutOfRange,
            LogError::CorruptSegment { .. } => LogFailure::Damaged,
            LogError::Io { .. } | LogError::Poisoned { .. } => LogFailure::Io,
            LogError::StaleEpoch { .. } => LogFailure::StaleEpoch,
            LogError::Closed => LogFailure::Closed,
            LogError::AppendTimedOut { .. } => LogFailure::TimedOut,
            LogError::Truncated { .. }
            | LogError::TruncateBelowHighWatermark { .. }
            | LogError::TruncateInsideBatch { .. }
            | LogError::Repair { .. }
            | LogError::OffsetMismatch { .. }
            | LogError::Config(_) => LogFailure::Other,
        }
    }
}

/// Why a partition operation (produce, fetch, list offsets, partition info) failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: String },
    /// No such topic, no such partition, or a topic still being created.
    #[error("unknown topic or partition {0}")]
    UnknownPartition(TopicPartition),
    /// The shard that would serve it is shutting down.
    #[error("shard {0} is shutting down")]
    ShuttingDown(ShardId),
    /// A fetch outside the log; `offsets` is the valid range.
    #[error("{message}")]
    OffsetOutOfRange {
        message: String,
        offsets: LogOffsets,
    },
    /// The partition's log failed the operation.
    #[error("{message}")]
    Log {
        failure: LogFailure,
        message: String,
    },
    #[error("produce request carries no record batch")]
    NoRecordBatch,
    /// A timestamp lookup for a time before the epoch.
    #[error("timestamp {0} is neither -1 (latest), -2 (earliest) nor a time")]
    InvalidTimestamp(i64),
    /// The partition's owner could not open it at start; every request gets this.
    #[error("partition {tp} is not open: {reason}")]
    NotOpen { tp: TopicPartition, reason: NotOpen },
    /// This broker's shard does not lead the partition (a follower, or leadership moved);
    /// nothing was done. `leader` and `epoch` are where the leader is, as far as this broker
    /// knows.
    #[error("this broker's shard does not lead partition {tp}; {}", describe_leader(*.leader, *.epoch))]
    NotLeader {
        tp: TopicPartition,
        leader: Option<(NodeId, ShardId)>,
        epoch: Option<Epoch>,
    },
    /// The partition has no leader right now (an election is under way); nothing was done.
    #[error("partition {0} has no leader yet (an election is under way); retry after a metadata refresh")]
    LeaderNotAvailable(TopicPartition),
    /// A batch the broker refuses although it is well formed: a control batch from a
    /// producer (control batches are written only by the broker itself). Nothing of the
    /// partition was appended.
    #[error("batch {index} of the request (at byte {at}) is a control batch (attributes bit 5); producers may not write control batches")]
    ControlBatch { index: usize, at: usize },
}

fn describe_leader(leader: Option<(NodeId, ShardId)>, epoch: Option<Epoch>) -> String {
    match (leader, epoch) {
        (Some((node, shard)), Some(e)) => {
            format!("the leader is node {node} shard {shard} (epoch {})", e.0)
        }
        (Some((node, shard)), None) => format!("the leader is node {node} shard {shard}"),
        (None, _) => "the leader is not known here".to_string(),
    }
}

impl PartitionError {
    pub fn log(e: &LogError) -> PartitionError {
        PartitionError::Log {
            failure: LogFailure::of(e),
            message: e.to_string(),
        }
    }
}

/// Why a partition is not open.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotOpen {
    /// The shard's share of the descriptor limit is full.
    #[error(
        "shard {shard} has room for {partitions_max} partitions within the file descriptor \
         limit ({nofile}; {FDS_PER_PARTITION} descriptors per partition, {segment_files_max} for \
         sealed-segment reads); raise the hard ulimit -n and restart"
    )]
    NoRoom {
        shard: ShardId,
        partitions_max: usize,
        nofile: u64,
        segment_files_max: usize,
    },
    /// Opening ran out of descriptors (EMFILE, ENFILE).
    #[error("out of file descriptors (limit {nofile}): {message}")]
    OutOfFds {
        nofile: u64,
        failure: LogFailure,
        message: String,
    },
    /// Opening (recovering) the log failed.
    #[error("{message}")]
    Log {
        failure: LogFailure,
        message: String,
    },
}

/// Why a topic create or delete failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("shard {0} is shutting down")]
    ShuttingDown(ShardId),
    /// Settings a log cannot have.
    #[error("{0}")]
    InvalidConfig(String),
    /// A shard has no room, within its file descriptors, for the partitions it would own.
    #[error(
        "topic {topic} needs {needs} partitions on shard {shard}, which has room for {room} more \
         within the file descriptor limit ({nofile}; {FDS_PER_PARTITION} descriptors per \
         partition); raise the hard ulimit -n and restart, or create fewer partitions"
    )]
    NoRoom {
        topic: String,
        needs: usize,
        shard: ShardId,
        room: usize,
        nofile: u64,
    },
    /// A shard could not open one of its partitions of the new topic.
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// Topic admin reached a broker that is not the cluster's metadata leader; nothing was
    /// done. `controller` is the leader, as far as this broker knows.
    #[error("this broker is not the cluster's metadata leader; {}", match .controller {
        Some(node) => format!("send topic admin to node {node}"),
        None => "no metadata leader is known (an election is under way)".to_string(),
    })]
    NotController { controller: Option<NodeId> },
    /// More replicas asked for than there are nodes to hold them.
    #[error("replication factor {asked} is more than the {live} live node{} of the cluster", if *.live == 1 { "" } else { "s" })]
    InvalidReplicationFactor { asked: u16, live: usize },
    /// The metadata group did not commit and apply the change in time (no quorum reachable);
    /// it may still take effect later.
    #[error("the cluster metadata did not take the change in time (is a majority of nodes up?)")]
    TimedOut,
    /// The metadata group refused the change (a placement the applied state cannot hold, a
    /// replica failure); nothing was done.
    #[error("cluster metadata: {0}")]
    Metadata(String),
}
