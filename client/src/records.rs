//! The records a user hands to a producer and gets from a consumer.
//!
//! Topic names are `Arc<str>` so that a record, its delivery report and every consumed record
//! share one allocation of the name: a clone costs a reference count, not a copy. Keys, values
//! and header values are [`Bytes`]; consumed ones are slices of the fetched batch, not copies.

use std::sync::Arc;

use bytes::Bytes;

/// A record header: a key (Kafka requires UTF-8) and an optional value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

impl Header {
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Header {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// A record to produce.
///
/// ```no_run
/// use quill_client::ProducerRecord;
///
/// let record = ProducerRecord::new("orders", "{\"id\":1}")
///     .with_key("customer-7")
///     .with_header("source", "web");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerRecord {
    pub topic: Arc<str>,
    /// `None`: the partitioner chooses (by key hash, or sticky round robin without a key).
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    /// `None` is a null value (a tombstone).
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch, at least 0; `None`: the time of `send`.
    pub timestamp_ms: Option<i64>,
}

impl ProducerRecord {
    /// A record with `value`, no key, no headers, partition and timestamp chosen at send.
    pub fn new(topic: impl Into<Arc<str>>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp_ms: None,
        }
    }

    /// A record with a key and a null value (a tombstone).
    pub fn tombstone(topic: impl Into<Arc<str>>, key: impl Into<Bytes>) -> Self {
        ProducerRecord {
            value: None,
            ..ProducerRecord::new(topic, Bytes::new()).with_key(key)
        }
    }

    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    pub fn with_timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }
}

/// Where an acknowledged record went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: Arc<str>,
    pub partition: u32,
    /// The record's offset; -1 when produced with `acks = none` (the broker does not say).
    pub offset: i64,
    /// The record's timestamp as sent (CreateTime).
    pub timestamp_ms: i64,
}

/// A record read by a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: i64,
    /// The producer's timestamp (CreateTime), or the broker's for a LogAppendTime batch.
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// Header keys that are not UTF-8 are converted lossily.
    pub headers: Vec<Header>,
}
