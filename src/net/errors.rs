//! The native protocol's one mapping from domain errors (the partition service's and topic
//! admin's, `shard::error`) to wire error codes (`error_code.rs`). The message a client reads is
//! the domain error's own text.

use super::error_code::ErrorCode;
use super::protocol::LeaderHint;
use crate::shard::catalog::CatalogError;
use crate::shard::{LogFailure, NotOpen, PartitionError, TopicError};

/// The code of a storage failure.
pub(crate) fn log_failure_code(f: LogFailure) -> ErrorCode {
    match f {
        LogFailure::BatchTooLarge => ErrorCode::MessageTooLarge,
        LogFailure::InvalidBatch => ErrorCode::CorruptMessage,
        LogFailure::OffsetOutOfRange => ErrorCode::OffsetOutOfRange,
        LogFailure::Damaged => ErrorCode::CorruptStoredData,
        LogFailure::Io => ErrorCode::StorageError,
        LogFailure::StaleEpoch => ErrorCode::StaleLeaderEpoch,
        LogFailure::Closed => ErrorCode::BrokerShuttingDown,
        LogFailure::TimedOut => ErrorCode::RequestTimedOut,
        LogFailure::Other => ErrorCode::UnknownServerError,
    }
}

/// The code of a failed partition operation.
pub(crate) fn partition_code(e: &PartitionError) -> ErrorCode {
    match e {
        PartitionError::InvalidTopicName { .. } => ErrorCode::InvalidTopicName,
        PartitionError::UnknownPartition(_) => ErrorCode::UnknownTopicOrPartition,
        PartitionError::ShuttingDown(_) => ErrorCode::BrokerShuttingDown,
        PartitionError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        PartitionError::Log { failure, .. } => log_failure_code(*failure),
        PartitionError::NoRecordBatch => ErrorCode::CorruptMessage,
        PartitionError::InvalidTimestamp(_) => ErrorCode::InvalidRequest,
        PartitionError::NotOpen { reason, .. } => match reason {
            NotOpen::NoRoom { .. } => ErrorCode::StorageError,
            NotOpen::OutOfFds { failure, .. } | NotOpen::Log { failure, .. } => {
                log_failure_code(*failure)
            }
        },
        PartitionError::NotLeader { .. } => ErrorCode::NotLeader,
        PartitionError::LeaderNotAvailable(_) => ErrorCode::LeaderNotAvailable,
        PartitionError::ControlBatch { .. } => ErrorCode::InvalidRecord,
    }
}

/// The leader hint a version 1 partition response carries with `e`: where the leader is for
/// `NOT_LEADER`, nothing (-1s) for any other error.
pub(crate) fn leader_hint(e: &PartitionError) -> LeaderHint {
    match e {
        PartitionError::NotLeader { leader, epoch, .. } => LeaderHint {
            leader_node: leader.map_or(-1, |(node, _)| i32::try_from(node.0).unwrap_or(-1)),
            leader_shard: leader.map_or(-1, |(_, shard)| i16::try_from(shard.0).unwrap_or(-1)),
            leader_epoch: epoch.map_or(-1, |e| e.0),
        },
        _ => LeaderHint::UNKNOWN,
    }
}

/// The code of a failed topic create or delete.
pub(crate) fn topic_code(e: &TopicError) -> ErrorCode {
    match e {
        TopicError::Catalog(c) => match c {
            CatalogError::TopicExists(_) => ErrorCode::TopicAlreadyExists,
            CatalogError::UnknownTopic(_) => ErrorCode::UnknownTopicOrPartition,
            CatalogError::InvalidName { .. } => ErrorCode::InvalidTopicName,
            CatalogError::InvalidPartitions(_) => ErrorCode::InvalidPartitions,
            CatalogError::InvalidConfig(_) => ErrorCode::InvalidConfig,
            CatalogError::Io(_) => ErrorCode::StorageError,
        },
        TopicError::ShuttingDown(_) => ErrorCode::BrokerShuttingDown,
        TopicError::InvalidConfig(_) => ErrorCode::InvalidConfig,
        TopicError::NoRoom { .. } => ErrorCode::StorageError,
        TopicError::Partition(p) => partition_code(p),
        TopicError::NotController { .. } => ErrorCode::NotController,
        TopicError::InvalidReplicationFactor { .. } => ErrorCode::InvalidReplicationFactor,
        TopicError::TimedOut => ErrorCode::RequestTimedOut,
        TopicError::Metadata(_) => ErrorCode::UnknownServerError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Epoch, NodeId, ShardId, TopicPartition};

    #[test]
    fn codes_and_messages() {
        let e = PartitionError::UnknownPartition(TopicPartition::new("orders", 3));
        assert_eq!(partition_code(&e), ErrorCode::UnknownTopicOrPartition);
        assert_eq!(e.to_string(), "unknown topic or partition orders-3");
        let e = PartitionError::ShuttingDown(ShardId(1));
        assert_eq!(partition_code(&e), ErrorCode::BrokerShuttingDown);
        assert_eq!(e.to_string(), "shard 1 is shutting down");
        let e = PartitionError::NotOpen {
            tp: TopicPartition::new("t", 0),
            reason: NotOpen::OutOfFds {
                nofile: 64,
                failure: LogFailure::Io,
                message: "open failed".into(),
            },
        };
        assert_eq!(partition_code(&e), ErrorCode::StorageError);
        assert_eq!(
            e.to_string(),
            "partition t-0 is not open: out of file descriptors (limit 64): open failed"
        );
        let e = TopicError::Partition(PartitionError::NoRecordBatch);
        assert_eq!(topic_code(&e), ErrorCode::CorruptMessage);
        let tp = TopicPartition::new("t", 0);
        let e = PartitionError::NotLeader {
            tp: tp.clone(),
            leader: Some((NodeId(2), ShardId(1))),
            epoch: Some(Epoch(5)),
        };
        assert_eq!(partition_code(&e), ErrorCode::NotLeader);
        assert_eq!(
            e.to_string(),
            "this broker's shard does not lead partition t-0; the leader is node 2 shard 1 (epoch 5)"
        );
        assert_eq!(
            leader_hint(&e),
            LeaderHint {
                leader_node: 2,
                leader_shard: 1,
                leader_epoch: 5
            }
        );
        let e = PartitionError::NotLeader {
            tp: tp.clone(),
            leader: None,
            epoch: None,
        };
        assert_eq!(leader_hint(&e), LeaderHint::UNKNOWN);
        assert!(
            e.to_string().ends_with("the leader is not known here"),
            "{e}"
        );
        let e = PartitionError::LeaderNotAvailable(tp);
        assert_eq!(partition_code(&e), ErrorCode::LeaderNotAvailable);
        assert_eq!(leader_hint(&e), LeaderHint::UNKNOWN);
        let e = PartitionError::ControlBatch { index: 1, at: 70 };
        assert_eq!(partition_code(&e), ErrorCode::InvalidRecord);
        assert!(e.to_string().contains("control batch"), "{e}");
        let e = TopicError::NotController {
            controller: Some(NodeId(3)),
        };
        assert_eq!(
            (topic_code(&e), e.to_string()),
            (
                ErrorCode::NotController,
                "this broker is not the cluster's metadata leader; send topic admin to node 3"
                    .into()
            )
        );
        let e = TopicError::InvalidReplicationFactor { asked: 3, live: 1 };
        assert_eq!(
            (topic_code(&e), e.to_string()),
            (
                ErrorCode::InvalidReplicationFactor,
                "replication factor 3 is more than the 1 live node of the cluster".into()
            )
        );
        let e = TopicError::Catalog(CatalogError::TopicExists("t".into()));
        assert_eq!(
            (topic_code(&e), e.to_string()),
            (
                ErrorCode::TopicAlreadyExists,
                "topic \"t\" already exists".into()
            )
        );
    }
}
