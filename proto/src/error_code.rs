//! The one table of wire error codes.
//!
//! Every code has an explicit value that is never reused or renumbered: a code that goes out of
//! use stays reserved. `docs/PROTOCOL.md` carries the same table, and a test checks that the two
//! agree. Internal errors become codes here and nowhere else (the `From` impls at the bottom).

use std::fmt;

use crate::frame::FrameError;
use crate::record::BatchError;

/// An error code as it travels in a response: a big-endian `u16`, 0 for success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum ErrorCode {
    /// No error.
    None = 0,
    /// The broker hit an error it has no specific code for; details are in the message.
    UnknownServerError = 1,
    /// A record batch failed validation: bad CRC, bad length, bad magic, malformed records.
    CorruptMessage = 2,
    /// The topic or partition does not exist on this broker.
    UnknownTopicOrPartition = 3,
    /// The requested offset is outside `[log_start_offset, log_end_offset]`.
    OffsetOutOfRange = 4,
    /// A record batch is larger than `batch_bytes_max`.
    MessageTooLarge = 5,
    /// A frame is larger than `frame_bytes_max`; the broker closes the connection after replying.
    FrameTooLarge = 6,
    /// The API key is unknown, or the API version is not supported.
    UnsupportedVersion = 7,
    /// The request body is malformed: a field runs past the frame, bad UTF-8, a negative length,
    /// an out-of-range enum value, trailing bytes.
    InvalidRequest = 8,
    /// CreateTopic named a topic that already exists.
    TopicAlreadyExists = 9,
    /// The topic name is empty, too long, or has characters outside `[a-zA-Z0-9._-]`.
    InvalidTopicName = 10,
    /// The partition count is zero or over the broker's limit.
    InvalidPartitions = 11,
    /// A topic setting is out of range (retention, segment size, durability, flush interval).
    InvalidConfig = 12,
    /// Disk I/O failed (for example ENOSPC); the request may succeed later.
    StorageError = 13,
    /// A stored segment failed its CRC check on read; that data is not served.
    CorruptStoredData = 14,
    /// The request did not complete within its timeout (for Produce: nothing of that partition
    /// was appended, so sending it again cannot duplicate it).
    RequestTimedOut = 15,
    /// The broker is shutting down and no longer accepts this request.
    BrokerShuttingDown = 16,
    /// The leader epoch the request relied on is no longer current; refresh metadata.
    StaleLeaderEpoch = 17,
    /// The connection has more requests in flight than `inflight_requests_max`.
    TooManyInflightRequests = 18,
    /// This broker's shard does not lead the partition (it is a follower, or the partition
    /// moved). Versions that carry a leader hint say where the leader is, when known; refresh
    /// metadata and send to the leader.
    NotLeader = 19,
    /// The partition has no leader right now (an election is under way); retry after a
    /// metadata refresh.
    LeaderNotAvailable = 20,
    /// An admin request reached a broker that is not the cluster's metadata leader (the
    /// controller); Metadata v2 names it in `controller_node`.
    NotController = 21,
    /// CreateTopic asked for more replicas than there are live nodes (or a factor the broker
    /// cannot place); the message names both numbers.
    InvalidReplicationFactor = 22,
    /// A well-formed record batch the broker refuses to append: a control batch sent by a
    /// producer (control batches are written only by the broker itself).
    InvalidRecord = 23,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 24] = [
        ErrorCode::None,
        ErrorCode::UnknownServerError,
        ErrorCode::CorruptMessage,
        ErrorCode::UnknownTopicOrPartition,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::MessageTooLarge,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::InvalidRequest,
        ErrorCode::TopicAlreadyExists,
        ErrorCode::InvalidTopicName,
        ErrorCode::InvalidPartitions,
        ErrorCode::InvalidConfig,
        ErrorCode::StorageError,
        ErrorCode::CorruptStoredData,
        ErrorCode::RequestTimedOut,
        ErrorCode::BrokerShuttingDown,
        ErrorCode::StaleLeaderEpoch,
        ErrorCode::TooManyInflightRequests,
        ErrorCode::NotLeader,
        ErrorCode::LeaderNotAvailable,
        ErrorCode::NotController,
        ErrorCode::InvalidReplicationFactor,
        ErrorCode::InvalidRecord,
    ];

    /// The code with wire value `value`, or `None` for a value this build does not know (a
    /// client talking to a newer broker treats such a code as [`ErrorCode::UnknownServerError`]).
    pub fn from_u16(value: u16) -> Option<ErrorCode> {
        Some(match value {
            0 => ErrorCode::None,
            1 => ErrorCode::UnknownServerError,
            2 => ErrorCode::CorruptMessage,
            3 => ErrorCode::UnknownTopicOrPartition,
            4 => ErrorCode::OffsetOutOfRange,
            5 => ErrorCode::MessageTooLarge,
            6 => ErrorCode::FrameTooLarge,
            7 => ErrorCode::UnsupportedVersion,
            8 => ErrorCode::InvalidRequest,
            9 => ErrorCode::TopicAlreadyExists,
            10 => ErrorCode::InvalidTopicName,
            11 => ErrorCode::InvalidPartitions,
            12 => ErrorCode::InvalidConfig,
            13 => ErrorCode::StorageError,
            14 => ErrorCode::CorruptStoredData,
            15 => ErrorCode::RequestTimedOut,
            16 => ErrorCode::BrokerShuttingDown,
            17 => ErrorCode::StaleLeaderEpoch,
            18 => ErrorCode::TooManyInflightRequests,
            19 => ErrorCode::NotLeader,
            20 => ErrorCode::LeaderNotAvailable,
            21 => ErrorCode::NotController,
            22 => ErrorCode::InvalidReplicationFactor,
            23 => ErrorCode::InvalidRecord,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// Whether the same request may succeed if sent again later, unchanged (possibly after a
    /// metadata refresh or a backoff).
    pub fn is_retriable(self) -> bool {
        match self {
            // A topic just created may not be visible on every shard yet.
            ErrorCode::UnknownTopicOrPartition
            | ErrorCode::StorageError
            | ErrorCode::RequestTimedOut
            | ErrorCode::BrokerShuttingDown
            | ErrorCode::StaleLeaderEpoch
            | ErrorCode::TooManyInflightRequests
            | ErrorCode::NotLeader
            | ErrorCode::LeaderNotAvailable
            | ErrorCode::NotController => true,
            ErrorCode::None
            | ErrorCode::UnknownServerError
            | ErrorCode::CorruptMessage
            | ErrorCode::OffsetOutOfRange
            | ErrorCode::MessageTooLarge
            | ErrorCode::FrameTooLarge
            | ErrorCode::UnsupportedVersion
            | ErrorCode::InvalidRequest
            | ErrorCode::TopicAlreadyExists
            | ErrorCode::InvalidTopicName
            | ErrorCode::InvalidPartitions
            | ErrorCode::InvalidConfig
            | ErrorCode::CorruptStoredData
            | ErrorCode::InvalidReplicationFactor
            | ErrorCode::InvalidRecord => false,
        }
    }

    /// The name in `SCREAMING_SNAKE_CASE`, as in `docs/PROTOCOL.md` and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::None => "NONE",
            ErrorCode::UnknownServerError => "UNKNOWN_SERVER_ERROR",
            ErrorCode::CorruptMessage => "CORRUPT_MESSAGE",
            ErrorCode::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
            ErrorCode::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
            ErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorCode::FrameTooLarge => "FRAME_TOO_LARGE",
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::TopicAlreadyExists => "TOPIC_ALREADY_EXISTS",
            ErrorCode::InvalidTopicName => "INVALID_TOPIC_NAME",
            ErrorCode::InvalidPartitions => "INVALID_PARTITIONS",
            ErrorCode::InvalidConfig => "INVALID_CONFIG",
            ErrorCode::StorageError => "STORAGE_ERROR",
            ErrorCode::CorruptStoredData => "CORRUPT_STORED_DATA",
            ErrorCode::RequestTimedOut => "REQUEST_TIMED_OUT",
            ErrorCode::BrokerShuttingDown => "BROKER_SHUTTING_DOWN",
            ErrorCode::StaleLeaderEpoch => "STALE_LEADER_EPOCH",
            ErrorCode::TooManyInflightRequests => "TOO_MANY_INFLIGHT_REQUESTS",
            ErrorCode::NotLeader => "NOT_LEADER",
            ErrorCode::LeaderNotAvailable => "LEADER_NOT_AVAILABLE",
            ErrorCode::NotController => "NOT_CONTROLLER",
            ErrorCode::InvalidReplicationFactor => "INVALID_REPLICATION_FACTOR",
            ErrorCode::InvalidRecord => "INVALID_RECORD",
        }
    }

    /// Whether the partition's leader is elsewhere or not known: the client refreshes its
    /// metadata (rate-limited) before sending again, to the new leader
    /// (`docs/PROTOCOL.md`, "Retrying").
    pub fn needs_metadata_refresh(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeader
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::NotController
                | ErrorCode::UnknownTopicOrPartition
                | ErrorCode::StaleLeaderEpoch
        )
    }

    /// Whether this is [`ErrorCode::None`].
    pub fn is_none(self) -> bool {
        self == ErrorCode::None
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A batch rejected on produce: over the size limit is `MessageTooLarge`, anything else about
/// its bytes is `CorruptMessage`.
impl From<&BatchError> for ErrorCode {
    fn from(e: &BatchError) -> ErrorCode {
        match e {
            BatchError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            _ => ErrorCode::CorruptMessage,
        }
    }
}

/// A frame the decoder refused. Either way the connection is closed after the reply.
impl From<&FrameError> for ErrorCode {
    fn from(e: &FrameError) -> ErrorCode {
        match e {
            FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            FrameError::TooSmall { .. } => ErrorCode::InvalidRequest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_explicit_dense_and_round_trip() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.as_u16() as usize, i, "{code}");
            assert_eq!(ErrorCode::from_u16(code.as_u16()), Some(*code));
        }
        assert_eq!(ErrorCode::from_u16(ErrorCode::ALL.len() as u16), None);
        assert_eq!(ErrorCode::from_u16(u16::MAX), None);
    }

    #[test]
    fn names_are_unique_screaming_snake_case() {
        let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        for name in &names {
            assert!(
                name.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{name}"
            );
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn retriable_codes_are_the_transient_ones() {
        let retriable: Vec<u16> = ErrorCode::ALL
            .iter()
            .filter(|c| c.is_retriable())
            .map(|c| c.as_u16())
            .collect();
        assert_eq!(retriable, [3, 13, 15, 16, 17, 18, 19, 20, 21]);
        assert!(!ErrorCode::None.is_retriable());
    }

    #[test]
    fn internal_errors_map_to_codes() {
        let too_large = BatchError::TooLarge { bytes: 10, max: 5 };
        assert_eq!(ErrorCode::from(&too_large), ErrorCode::MessageTooLarge);
        let crc = BatchError::BadCrc {
            stored: 1,
            computed: 2,
        };
        assert_eq!(ErrorCode::from(&crc), ErrorCode::CorruptMessage);
        let frame = FrameError::TooLarge { size: 10, max: 5 };
        assert_eq!(ErrorCode::from(&frame), ErrorCode::FrameTooLarge);
        let frame = FrameError::TooSmall { size: 3 };
        assert_eq!(ErrorCode::from(&frame), ErrorCode::InvalidRequest);
    }
}
