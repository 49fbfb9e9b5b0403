//! The partition service's vocabulary: what an operation asks and what it answers, on the
//! domain's integers (`crate::types`). Everything here is `Send`: it crosses shards.

use std::time::Duration;

use bytes::Bytes;

use crate::types::{Epoch, NodeId, Offset, TimestampMs, TopicPartition};

use super::super::error::PartitionError;

/// A partition log's offsets: where it starts, what readers may see, where it ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogOffsets {
    pub log_start: Offset,
    pub high_watermark: Offset,
    pub log_end: Offset,
}

/// When a produce is acknowledged: the domain side of the wire's `acks` 1 and -1 (`acks` 0,
/// no answer at all, is the protocol adapter's business; the append is the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProduceAcks {
    /// Once the leader holds the batches durably (per the topic's durability).
    Leader,
    /// Once a majority of the partition's replicas hold them durably. The owner waits for it in
    /// `Shard::await_replicated` (`local.rs`), the seam replication fills.
    All,
}

/// One replica of a partition as its leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaState {
    pub node: NodeId,
    /// The offset up to which the leader knows this replica holds the log (its log end as last
    /// acknowledged); `None` if not known yet.
    pub log_end: Option<Offset>,
    /// Whether the leader counts it as in sync (caught up to the high watermark recently).
    pub in_sync: bool,
}

/// A read of one partition.
#[derive(Clone, Debug)]
pub struct FetchSpec {
    /// Where to start. `None`: a position before any log (a client sent a negative offset),
    /// answered as out of range with the log's offsets.
    pub offset: Option<Offset>,
    /// At most this many bytes (the first batch is returned whole even if larger), further
    /// bounded by the broker's `fetch_bytes_max`.
    pub max_bytes: usize,
    /// How long to wait for `min_bytes` when there are fewer (zero: answer at once), bounded by
    /// the broker's `fetch_wait_ms_max`.
    pub max_wait: Duration,
    /// Answer once at least this many bytes are there (or `max_wait` passed).
    pub min_bytes: usize,
}

/// What a fetch returns: whole batches from the requested offset, and the log's offsets.
#[derive(Clone, Debug, Default)]
pub struct Fetched {
    pub batches: Vec<Bytes>,
    pub offsets: LogOffsets,
}

impl Fetched {
    pub fn bytes(&self) -> usize {
        self.batches.iter().map(|b| b.len()).sum()
    }
}

/// Which offset a lookup asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetQuery {
    /// The high watermark: the offset the next readable record will have.
    Latest,
    /// The log start offset.
    Earliest,
    /// The first offset whose record timestamp is at or after this time (a negative time is
    /// refused).
    AtTime(TimestampMs),
}

/// One partition as its owner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub tp: TopicPartition,
    /// The partition's state, or why it is not served (it could not be opened).
    pub state: Result<PartitionState, PartitionError>,
}

/// A served partition's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionState {
    pub leader_epoch: Epoch,
    pub offsets: LogOffsets,
    /// Damaged ranges `(first, last)`: offsets not served (see `disk::damage`).
    pub damaged: Vec<(Offset, Offset)>,
    /// Every replica of the partition in placement order, the leader included, as the leader
    /// sees it (`Shard::replica_states`). Single node: this node, at the log end, in sync.
    pub replicas: Vec<ReplicaState>,
}
