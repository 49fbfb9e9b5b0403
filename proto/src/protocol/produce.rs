//! Produce (key 5): record batches in, base offsets out.

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::{
    put_array_len, put_bytes, put_message, put_string, Reader, WireError, ARRAY_BYTES_MIN,
    BYTES_BYTES_MIN, STRING_BYTES_MIN,
};
use crate::error_code::ErrorCode;

/// Whether, and when, the broker answers a produce request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i8)]
pub enum Acks {
    /// No response frame at all: the client learns nothing, not even errors.
    None = 0,
    /// One response, once every batch is durable per its topic's durability (or has failed).
    Leader = 1,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProduceRequest {
    pub acks: Acks,
    /// How long the broker may wait for durability before answering `RequestTimedOut`.
    pub timeout_ms: u32,
    pub topics: Vec<ProduceTopic>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProduceTopic {
    pub name: String,
    pub partitions: Vec<ProducePartition>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducePartition {
    pub partition: u32,
    /// One or more whole Kafka v2 record batches, back to back, exactly as received. On decode
    /// this is a zero-copy slice of the request frame, so the broker stamps offsets in place.
    /// The codec does not validate it; the broker runs `record::validate_batch` on each batch.
    pub records: BytesMut,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProduceResponse {
    pub topics: Vec<ProduceTopicResponse>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProduceTopicResponse {
    pub name: String,
    pub partitions: Vec<ProducePartitionResponse>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducePartitionResponse {
    pub partition: u32,
    pub error_code: ErrorCode,
    pub error_message: Option<String>,
    /// The offset given to the first record of each batch, in the order of the batches; empty
    /// when `error_code` is not `None` (no batch of the partition was appended).
    pub base_offsets: Vec<i64>,
}

/// Empty `name`, empty `partitions`.
const TOPIC_BYTES_MIN: usize = STRING_BYTES_MIN + ARRAY_BYTES_MIN;
/// `partition`, empty `records`.
const PARTITION_BYTES_MIN: usize = 4 + BYTES_BYTES_MIN;
/// `partition`, `error_code`, null `error_message`, empty `base_offsets`.
const PARTITION_RESPONSE_BYTES_MIN: usize = 4 + 2 + 2 + ARRAY_BYTES_MIN;

impl ProduceRequest {
    pub(super) fn encode(&self, out: &mut BytesMut) {
        out.put_i8(self.acks as i8);
        out.put_u32(self.timeout_ms);
        put_array_len(out, self.topics.len());
        for t in &self.topics {
            put_string(out, &t.name);
            put_array_len(out, t.partitions.len());
            for p in &t.partitions {
                out.put_u32(p.partition);
                put_bytes(out, &p.records);
            }
        }
    }

    pub(super) fn decode(r: &mut Reader<BytesMut>) -> Result<Self, WireError> {
        let at = r.position();
        let acks = match r.i8("acks")? {
            0 => Acks::None,
            1 => Acks::Leader,
            value => {
                return Err(WireError::InvalidValue {
                    field: "acks",
                    at,
                    value: i64::from(value),
                })
            }
        };
        let timeout_ms = r.u32("timeout_ms")?;
        let topics = r.array("topics", TOPIC_BYTES_MIN, |r| {
            Ok(ProduceTopic {
                name: r.string("topics[].name")?,
                partitions: r.array("topics[].partitions", PARTITION_BYTES_MIN, |r| {
                    Ok(ProducePartition {
                        partition: r.u32("topics[].partitions[].partition")?,
                        records: r.bytes("topics[].partitions[].records")?,
                    })
                })?,
            })
        })?;
        Ok(ProduceRequest {
            acks,
            timeout_ms,
            topics,
        })
    }
}

impl ProduceResponse {
    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_array_len(out, self.topics.len());
        for t in &self.topics {
            put_string(out, &t.name);
            put_array_len(out, t.partitions.len());
            for p in &t.partitions {
                out.put_u32(p.partition);
                out.put_u16(p.error_code as u16);
                put_message(out, p.error_message.as_deref());
                put_array_len(out, p.base_offsets.len());
                for &offset in &p.base_offsets {
                    out.put_i64(offset);
                }
            }
        }
    }

    pub(super) fn decode(r: &mut Reader<Bytes>) -> Result<Self, WireError> {
        let topics = r.array("topics", TOPIC_BYTES_MIN, |r| {
            Ok(ProduceTopicResponse {
                name: r.string("topics[].name")?,
                partitions: r.array("topics[].partitions", PARTITION_RESPONSE_BYTES_MIN, |r| {
                    Ok(ProducePartitionResponse {
                        partition: r.u32("topics[].partitions[].partition")?,
                        error_code: r.error_code("topics[].partitions[].error_code")?,
                        error_message: r.nullable_string("topics[].partitions[].error_message")?,
                        base_offsets: r.array("topics[].partitions[].base_offsets", 8, |r| {
                            r.i64("topics[].partitions[].base_offsets[]")
                        })?,
                    })
                })?,
            })
        })?;
        Ok(ProduceResponse { topics })
    }
}
