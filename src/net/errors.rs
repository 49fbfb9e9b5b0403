//! The native protocol's one mapping from domain errors (the partition service's and topic
//! admin's, `shard::error`) to wire error codes (`error_code.rs`). The message a client reads is
//! the domain error's own text.

use super::error_code::ErrorCode;
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ShardId, TopicPartition};

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
