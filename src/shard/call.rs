//! The work one shard asks of another: calls and their replies. Everything here is `Send` (it
//! crosses threads); batch bytes move without copying (`BytesMut`/`Bytes` hand over ownership).

use bytes::BytesMut;

use super::catalog::{TopicConfig, TopicMeta};
use super::error::{PartitionError, TopicError};
use super::partition::{FetchSpec, Fetched, OffsetQuery, PartitionInfo, ProduceAcks};
use crate::types::{Offset, TopicPartition};

/// Topic settings a client asked for, the broker defaults applied.
#[derive(Clone, Debug)]
pub struct TopicRequest {
    pub name: String,
    pub partitions: u32,
    /// Replicas per partition, the leader included; 0 for the broker's default.
    pub replication_factor: u16,
    pub config: TopicConfig,
}

pub(crate) enum Call {
    /// Append batches to a partition this shard owns; reply [`Reply::Produce`].
    Produce {
        tp: TopicPartition,
        records: BytesMut,
        /// Past this the batches are not appended (the append times out).
        deadline: std::time::Instant,
        acks: ProduceAcks,
    },
    Fetch(TopicPartition, FetchSpec),
    /// Reply [`Reply::Offset`].
    ListOffset(TopicPartition, OffsetQuery),
    /// The partitions this shard owns among `topics` (`None`: all).
    PartitionInfo {
        topics: Option<Vec<String>>,
    },
    /// To the controller (shard 0).
    CreateTopic(TopicRequest),
    DeleteTopic {
        name: String,
    },
    /// From the controller, before a topic is created: can you open every partition of it
    /// placed on you (file descriptors)? Reply [`Reply::Admin`].
    CanOpen(TopicMeta),
    /// From the controller: a topic is being created; open the partitions placed on you, all
    /// or none, and do not serve them until [`Call::CommitTopic`].
    OpenTopic(TopicMeta),
    /// From the controller: every shard opened its partitions of the topic; serve them.
    CommitTopic(TopicMeta),
    /// From the controller: a topic is gone (or its create rolled back); close the partitions
    /// you own, and remove their directories when the flag says the catalog on disk recorded
    /// the deletion.
    DropTopic(TopicMeta, bool),
    /// From shard 0 of a cluster node: the applied cluster metadata. Reply [`Reply::Admin`].
    Cluster(Box<super::replicas::ClusterUpdate>),
    /// To shard 0 of a cluster node: metadata commands for the metadata leader.
    ForwardMeta(bytes::Bytes),
}

pub(crate) enum Reply {
    Produce(Result<Vec<Offset>, PartitionError>),
    Fetch(Result<Fetched, PartitionError>),
    Offset(Result<Option<Offset>, PartitionError>),
    PartitionInfo(Vec<PartitionInfo>),
    Admin(Result<(), TopicError>),
}
