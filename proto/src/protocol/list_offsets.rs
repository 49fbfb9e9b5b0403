//! ListOffsets (key 7): the offset at the start, the end, or a timestamp of a partition.
//! Version 1 has the same request body and gives every partition response a [`LeaderHint`].

use bytes::{BufMut, Bytes, BytesMut};

use super::leader::{LeaderHint, LEADER_HINT_BYTES};
use super::wire::{
    put_array_len, put_string, Reader, WireError, ARRAY_BYTES_MIN, STRING_BYTES_MIN,
};
use crate::error_code::ErrorCode;

/// `timestamp` asking for the high watermark (the offset the next record will get, once
/// everything before it is durable).
pub const TIMESTAMP_LATEST: i64 = -1;
/// `timestamp` asking for the log start offset (the first offset still stored).
pub const TIMESTAMP_EARLIEST: i64 = -2;
/// `offset` answered when no record has a timestamp at or after the one asked for.
pub const OFFSET_NONE: i64 = -1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListOffsetsRequest {
    /// The version the request goes as (0 or 1): only a version 1 response carries leader
    /// hints; the body is the same.
    pub version: u16,
    pub topics: Vec<ListOffsetsTopic>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListOffsetsTopic {
    pub name: String,
    pub partitions: Vec<ListOffsetsPartition>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListOffsetsPartition {
    pub partition: u32,
    /// [`TIMESTAMP_LATEST`], [`TIMESTAMP_EARLIEST`], or milliseconds since the Unix epoch: the
    /// answer is then the first offset whose record timestamp is at or after it.
    pub timestamp: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListOffsetsResponse {
    pub topics: Vec<ListOffsetsTopicResponse>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListOffsetsTopicResponse {
    pub name: String,
    pub partitions: Vec<ListOffsetsPartitionResponse>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListOffsetsPartitionResponse {
    pub partition: u32,
    pub error_code: ErrorCode,
    /// The offset found, or [`OFFSET_NONE`].
    pub offset: i64,
    /// Version 1: where the leader is, with `NOT_LEADER`; [`LeaderHint::UNKNOWN`] otherwise and
    /// in version 0. On the wire it follows `offset`.
    pub leader: LeaderHint,
}

/// Empty `name`, empty `partitions`.
const TOPIC_BYTES_MIN: usize = STRING_BYTES_MIN + ARRAY_BYTES_MIN;
const PARTITION_BYTES: usize = 4 + 8;
const PARTITION_RESPONSE_BYTES: usize = 4 + 2 + 8;

impl ListOffsetsRequest {
    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_array_len(out, self.topics.len());
        for t in &self.topics {
            put_string(out, &t.name);
            put_array_len(out, t.partitions.len());
            for p in &t.partitions {
                out.put_u32(p.partition);
                out.put_i64(p.timestamp);
            }
        }
    }

    /// Decodes the body of a request of `version` (0 or 1: the same body).
    pub(super) fn decode(r: &mut Reader<BytesMut>, version: u16) -> Result<Self, WireError> {
        let topics = r.array("topics", TOPIC_BYTES_MIN, |r| {
            Ok(ListOffsetsTopic {
                name: r.string("topics[].name")?,
                partitions: r.array("topics[].partitions", PARTITION_BYTES, |r| {
                    Ok(ListOffsetsPartition {
                        partition: r.u32("topics[].partitions[].partition")?,
                        timestamp: r.i64("topics[].partitions[].timestamp")?,
                    })
                })?,
            })
        })?;
        Ok(ListOffsetsRequest { version, topics })
    }
}

impl ListOffsetsResponse {
    /// Encodes the body of a response of `version`.
    pub(super) fn encode(&self, out: &mut BytesMut, version: u16) {
        put_array_len(out, self.topics.len());
        for t in &self.topics {
            put_string(out, &t.name);
            put_array_len(out, t.partitions.len());
            for p in &t.partitions {
                out.put_u32(p.partition);
                out.put_u16(p.error_code as u16);
                out.put_i64(p.offset);
                if version >= 1 {
                    p.leader.encode(out);
                }
            }
        }
    }

    /// Decodes the body of a response of `version`.
    pub(super) fn decode(r: &mut Reader<Bytes>, version: u16) -> Result<Self, WireError> {
        let partition_bytes =
            PARTITION_RESPONSE_BYTES + if version >= 1 { LEADER_HINT_BYTES } else { 0 };
        let topics = r.array("topics", TOPIC_BYTES_MIN, |r| {
            Ok(ListOffsetsTopicResponse {
                name: r.string("topics[].name")?,
                partitions: r.array("topics[].partitions", partition_bytes, |r| {
                    Ok(ListOffsetsPartitionResponse {
                        partition: r.u32("topics[].partitions[].partition")?,
                        error_code: r.error_code("topics[].partitions[].error_code")?,
                        offset: r.i64("topics[].partitions[].offset")?,
                        leader: if version >= 1 {
                            LeaderHint::decode(r)?
                        } else {
                            LeaderHint::UNKNOWN
                        },
                    })
                })?,
            })
        })?;
        Ok(ListOffsetsResponse { topics })
    }
}
