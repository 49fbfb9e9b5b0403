//! The client's one error type.
//!
//! Every failure a client call can meet is a [`ClientError`] value with a message written for a
//! person ("unknown topic 'orders'", "broker 127.0.0.1:9092 unreachable: connection refused"),
//! the wire [`ErrorCode`] where the broker sent one ([`ClientError::code`]), and whether trying
//! again later may help ([`ClientError::is_retriable`]). Errors are `Clone` because one failed
//! batch fails every record in it, and `Send` so the blocking API can hand them across threads.

use std::io;

use quill_proto::error_code::ErrorCode;

/// What went wrong in a client call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A broker address (`host:port`) could not be parsed or resolved.
    #[error("bad broker address '{addr}': {reason}")]
    BadAddress { addr: String, reason: String },
    /// No TCP connection could be opened to the broker.
    #[error("broker {addr} unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    /// The connection broke (closed by the broker, reset, or a write failed) while requests
    /// were outstanding; their outcome is unknown.
    #[error("connection to broker {addr} lost: {reason}")]
    ConnectionLost { addr: String, reason: String },
    /// No response within `request_timeout_ms`; the connection was closed, since a pipelined
    /// connection cannot skip one response.
    #[error("request to broker {addr} timed out after {timeout_ms} ms")]
    TimedOut { addr: String, timeout_ms: u64 },
    /// The TCP connection was not established within `connect_timeout_ms`.
    #[error("broker {addr} unreachable: no connection within {timeout_ms} ms")]
    ConnectTimedOut { addr: String, timeout_ms: u64 },
    /// The peer at `addr` does not speak the protocol: its first answer (to ApiVersions) is
    /// not a Quill response, for example an HTTP server's "400 Bad Request". Not retried.
    #[error("the peer at {addr} is not a Quill broker: {reason}")]
    NotQuill { addr: String, reason: String },
    /// The broker sent something the protocol does not allow (an undecodable frame, a response
    /// out of order); the connection was closed.
    #[error("broker {addr} broke the protocol: {reason}")]
    Protocol { addr: String, reason: String },
    /// The topic does not exist (confirmed by a metadata refresh).
    #[error("unknown topic '{topic}'")]
    UnknownTopic { topic: String },
    /// The topic exists but has no such partition.
    #[error("topic '{topic}' has no partition {partition} (it has {partitions})")]
    UnknownPartition {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    /// CreateTopic named a topic that already exists.
    #[error("topic '{topic}' already exists")]
    TopicExists { topic: String },
    /// The name breaks the topic name rules (1 to 249 bytes of `[a-zA-Z0-9._-]`, not `.`/`..`).
    #[error("invalid topic name '{topic}': use 1 to 249 characters from [a-zA-Z0-9._-], not '.' or '..'")]
    InvalidTopicName { topic: String },
    /// A record (as the one record of a batch) is larger than the broker accepts.
    #[error("record of {bytes} bytes is too large: batches are limited to {max} bytes")]
    RecordTooLarge { bytes: usize, max: usize },
    /// A consumer position is outside the partition's log and the reset policy is `Error`.
    /// `log_end_offset` is the offset the next record will get, one past the last.
    #[error("offset {offset} is out of range for {topic}-{partition}: {}", describe_log_range(*.log_start_offset, *.log_end_offset))]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// The broker answered with an error code not covered by a variant above.
    #[error("{context}: {code}{}", .message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Broker {
        code: ErrorCode,
        message: Option<String>,
        context: String,
    },
    /// A bad argument or configuration value, caught before anything was sent.
    #[error("invalid {what}: {reason}")]
    InvalidArgument { what: &'static str, reason: String },
    /// Fetched data this client cannot read (a compressed batch, a damaged batch).
    #[error("cannot read {topic}-{partition} at offset {offset}: {reason}")]
    Unreadable {
        topic: String,
        partition: u32,
        offset: i64,
        reason: String,
    },
    /// A record was not acknowledged within the producer's `delivery_timeout_ms`: it was
    /// retried (through leader changes, after metadata refreshes) until the timeout ran out.
    /// `last` is the last failure.
    #[error("delivery to {topic}-{partition} timed out after {timeout_ms} ms (delivery_timeout_ms) with {attempts} attempts; last error: {last}")]
    DeliveryTimedOut {
        topic: String,
        partition: u32,
        timeout_ms: u64,
        attempts: u32,
        last: Box<ClientError>,
    },
    /// The producer, consumer or client was closed or dropped before the call completed.
    #[error("the {what} was closed before the call completed")]
    Closed { what: &'static str },
    /// Offsets `first` to `last` of a partition are damaged on the broker (stored, but failed
    /// their checks when read) and are not served. A consumer returns this once per range and
    /// continues at `last + 1`: those records are lost on this broker.
    #[error("{topic}-{partition}: offsets {first} to {last} are damaged on the broker and were skipped ({reason})")]
    DamagedRange {
        topic: String,
        partition: u32,
        first: i64,
        last: i64,
        reason: String,
    },
}

impl ClientError {
    /// The wire error code behind this error, if the broker sent one (or would have).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::UnknownTopic { .. } | ClientError::UnknownPartition { .. } => {
                Some(ErrorCode::UnknownTopicOrPartition)
            }
            ClientError::TopicExists { .. } => Some(ErrorCode::TopicAlreadyExists),
            ClientError::InvalidTopicName { .. } => Some(ErrorCode::InvalidTopicName),
            ClientError::RecordTooLarge { .. } => Some(ErrorCode::MessageTooLarge),
            ClientError::OffsetOutOfRange { .. } => Some(ErrorCode::OffsetOutOfRange),
            ClientError::DamagedRange { .. } => Some(ErrorCode::CorruptStoredData),
            ClientError::Broker { code, .. } => Some(*code),
            ClientError::DeliveryTimedOut { last, .. } => last.code(),
            _ => None,
        }
    }

    /// Whether the same call may succeed if made again later: connection trouble, timeouts, and
    /// the wire codes [`ErrorCode::is_retriable`] names. An unknown topic is not: the client
    /// only reports it after a metadata refresh confirmed it.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Unreachable { .. }
            | ClientError::ConnectionLost { .. }
            | ClientError::TimedOut { .. }
            | ClientError::ConnectTimedOut { .. }
            | ClientError::DeliveryTimedOut { .. } => true,
            ClientError::Broker { code, .. } => code.is_retriable(),
            _ => false,
        }
    }

    /// Whether this is about reaching a broker at all (unreachable, connection lost, timed
    /// out, or the peer is not a Quill broker), as opposed to the broker refusing the
    /// operation.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. }
                | ClientError::NotQuill { .. }
                | ClientError::ConnectionLost { .. }
                | ClientError::TimedOut { .. }
                | ClientError::ConnectTimedOut { .. }
        )
    }

    /// Whether the client gave up waiting (to connect, or for a response). The client does
    /// not retry these within the same call: a broker that let a whole timeout pass is
    /// unlikely to answer the next attempt sooner, and retrying would multiply the wait.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            ClientError::TimedOut { .. } | ClientError::ConnectTimedOut { .. }
        )
    }

    /// The error for a wire `code` about `topic` (and `partition`), with the broker's message.
    pub(crate) fn from_code(
        code: ErrorCode,
        message: Option<String>,
        topic: &str,
        partition: Option<u32>,
        context: impl FnOnce() -> String,
    ) -> ClientError {
        match code {
            ErrorCode::TopicAlreadyExists => ClientError::TopicExists {
                topic: topic.to_string(),
            },
            ErrorCode::InvalidTopicName => ClientError::InvalidTopicName {
                topic: topic.to_string(),
            },
            ErrorCode::UnknownTopicOrPartition if partition.is_none() => {
                ClientError::UnknownTopic {
                    topic: topic.to_string(),
                }
            }
            _ => ClientError::Broker {
                code,
                message,
                context: context(),
            },
        }
    }
}

/// What offsets a log of `[start, end)` holds, for a person: "the log holds offsets 0 to 2",
/// "the log is empty", or "the log is empty (its next offset is 7)" after retention.
pub(crate) fn describe_log_range(start: i64, end: i64) -> String {
    match end {
        0 => "the log is empty".to_string(),
        end if end <= start => format!("the log is empty (its next offset is {end})"),
        end => format!("the log holds offsets {start} to {}", end - 1),
    }
}

/// A short lower-case description of an I/O error, without the "(os error N)" suffix.
pub(crate) fn describe_io(e: &io::Error) -> String {
    use io::ErrorKind::*;
    let known = match e.kind() {
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset by the broker",
        ConnectionAborted => "connection aborted",
        BrokenPipe => "the broker closed the connection",
        UnexpectedEof => "the broker closed the connection",
        TimedOut => "connection timed out",
        HostUnreachable => "host unreachable",
        NetworkUnreachable => "network unreachable",
        AddrNotAvailable => "address not available",
        PermissionDenied => "permission denied",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => format!("{:?}", e.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_like_sentences() {
        let e = ClientError::UnknownTopic {
            topic: "orders".into(),
        };
        assert_eq!(e.to_string(), "unknown topic 'orders'");
        assert_eq!(e.code(), Some(ErrorCode::UnknownTopicOrPartition));
        assert!(!e.is_retriable());

        let e = ClientError::Unreachable {
            addr: "127.0.0.1:9092".into(),
            reason: describe_io(&io::Error::from(io::ErrorKind::ConnectionRefused)),
        };
        assert_eq!(
            e.to_string(),
            "broker 127.0.0.1:9092 unreachable: connection refused"
        );
        assert!(e.is_retriable() && e.is_connection());

        let e = ClientError::Broker {
            code: ErrorCode::CorruptMessage,
            message: Some("bad crc".into()),
            context: "produce to t-0".into(),
        };
        assert_eq!(e.to_string(), "produce to t-0: CORRUPT_MESSAGE (bad crc)");
        let e = ClientError::Broker {
            code: ErrorCode::StorageError,
            message: None,
            context: "produce to t-0".into(),
        };
        assert_eq!(e.to_string(), "produce to t-0: STORAGE_ERROR");
        assert!(e.is_retriable());
    }

    #[test]
    fn timeouts_are_connection_errors_not_retried_within_a_call() {
        let e = ClientError::ConnectTimedOut {
            addr: "127.0.0.1:9092".into(),
            timeout_ms: 300,
        };
        assert_eq!(
            e.to_string(),
            "broker 127.0.0.1:9092 unreachable: no connection within 300 ms"
        );
        assert!(e.is_connection() && e.is_timeout());
        let e = ClientError::TimedOut {
            addr: "127.0.0.1:9092".into(),
            timeout_ms: 300,
        };
        assert!(e.is_connection() && e.is_timeout());
        let e = ClientError::ConnectionLost {
            addr: "127.0.0.1:9092".into(),
            reason: "reset".into(),
        };
        assert!(!e.is_timeout());
    }

    #[test]
    fn out_of_range_names_the_last_offset_that_exists() {
        let e = |start, end| ClientError::OffsetOutOfRange {
            topic: "t".into(),
            partition: 1,
            offset: 9,
            log_start_offset: start,
            log_end_offset: end,
        };
        assert_eq!(
            e(0, 3).to_string(),
            "offset 9 is out of range for t-1: the log holds offsets 0 to 2"
        );
        assert_eq!(
            e(0, 0).to_string(),
            "offset 9 is out of range for t-1: the log is empty"
        );
        assert_eq!(
            e(7, 7).to_string(),
            "offset 9 is out of range for t-1: the log is empty (its next offset is 7)"
        );
        assert_eq!(
            e(10, 11).to_string(),
            "offset 9 is out of range for t-1: the log holds offsets 10 to 10"
        );
    }

    #[test]
    fn io_errors_lose_their_os_suffix() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(describe_io(&e), "no such file or directory");
    }

    #[test]
    fn codes_map_to_typed_variants() {
        let e = ClientError::from_code(ErrorCode::TopicAlreadyExists, None, "t", None, String::new);
        assert_eq!(e, ClientError::TopicExists { topic: "t".into() });
        let e = ClientError::from_code(
            ErrorCode::UnknownTopicOrPartition,
            None,
            "t",
            None,
            String::new,
        );
        assert_eq!(e, ClientError::UnknownTopic { topic: "t".into() });
    }
}
