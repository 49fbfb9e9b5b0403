//! Produce (key 5): record batches in, base offsets out. Version 1 accepts `acks = -1`
//! ([`Acks::All`]) and gives every partition response a [`LeaderHint`].

use bytes::{BufMut, Bytes, BytesMut};

use super::leader::{LeaderHint, LEADER_HINT_BYTES};
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
    /// Version 1 only: one response, once a majority of the partition's replicas hold every
    /// batch durably (per the topic's durability), or it failed. With one replica this is
    /// [`Acks::Leader`].
    All = -1,
}

impl Acks {
    /// The lowest Produce version that can carry this mode.
    pub fn version_min(self) -> u16 {
        match self {
            Acks::All => 1,
            Acks::None | Acks::Leader => 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProduceRequest {
    /// The version the request goes as (0 or 1); [`Acks::All`] needs 1, and only a version 1
    /// response carries leader hints.
    pub version: u16,
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
    /// Version 1: where the leader is, with `NOT_LEADER`; [`LeaderHint::UNKNOWN`] otherwise and
    /// in version 0.
    pub leader: LeaderHint,
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

    /// Decodes the body of a request of `version` (0 or 1).
    pub(super) fn decode(r: &mut Reader<BytesMut>, version: u16) -> Result<Self, WireError> {
        let at = r.position();
        let acks = match r.i8("acks")? {
            0 => Acks::None,
            1 => Acks::Leader,
            -1 if version >= 1 => Acks::All,
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
            version,
            acks,
            timeout_ms,
            topics,
        })
    }
}

impl ProduceResponse {
    /// Encodes the body of a response of `version`.
    pub(super) fn encode(&self, out: &mut BytesMut, version: u16) {
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
                if version >= 1 {
                    p.leader.encode(out);
                }
            }
        }
    }

    /// Decodes the body of a response of `version`.
    pub(super) fn decode(r: &mut Reader<Bytes>, version: u16) -> Result<Self, WireError> {
        let partition_bytes_min =
            PARTITION_RESPONSE_BYTES_MIN + if version >= 1 { LEADER_HINT_BYTES } else { 0 };
        let topics = r.array("topics", TOPIC_BYTES_MIN, |r| {
            Ok(ProduceTopicResponse {
                name: r.string("topics[].name")?,
                partitions: r.array("topics[].partitions", partition_bytes_min, |r| {
                    Ok(ProducePartitionResponse {
                        partition: r.u32("topics[].partitions[].partition")?,
                        error_code: r.error_code("topics[].partitions[].error_code")?,
                        error_message: r.nullable_string("topics[].partitions[].error_message")?,
                        base_offsets: r.array("topics[].partitions[].base_offsets", 8, |r| {
                            r.i64("topics[].partitions[].base_offsets[]")
                        })?,
                        leader: if version >= 1 {
                            LeaderHint::decode(r)?
                        } else {
                            LeaderHint::UNKNOWN
                        },
                    })
                })?,
            })
        })?;
        Ok(ProduceResponse { topics })
    }
}
