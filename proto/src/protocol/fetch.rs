//! Fetch (key 6): whole stored batches out, from an offset, without re-encoding them. Version 1
//! has the same request body and gives every partition response a [`LeaderHint`].

use bytes::{BufMut, Bytes, BytesMut};

use super::leader::{LeaderHint, LEADER_HINT_BYTES};
use super::wire::{
    put_array_len, put_bytes_len, put_message, put_string, ChunkWriter, Reader, WireError,
    ARRAY_BYTES_MIN, BYTES_BYTES_MIN, STRING_BYTES_MIN,
};
use crate::error_code::ErrorCode;
use crate::record::batches;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    /// The version the request goes as (0 or 1): only a version 1 response carries leader
    /// hints; the body is the same.
    pub version: u16,
    /// How long the broker may wait for `min_bytes` to accumulate (capped by
    /// `fetch_wait_ms_max`).
    pub max_wait_ms: u32,
    /// Answer as soon as this many record bytes are available (0: answer at once).
    pub min_bytes: u32,
    /// Most record bytes in the whole response (capped by `fetch_bytes_max`).
    pub max_bytes: u32,
    pub topics: Vec<FetchTopic>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchTopic {
    pub name: String,
    pub partitions: Vec<FetchPartition>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchPartition {
    pub partition: u32,
    /// The first offset wanted.
    pub fetch_offset: i64,
    /// Most record bytes for this partition.
    pub partition_max_bytes: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchResponse {
    pub topics: Vec<FetchTopicResponse>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchTopicResponse {
    pub name: String,
    pub partitions: Vec<FetchPartitionResponse>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPartitionResponse {
    pub partition: u32,
    pub error_code: ErrorCode,
    pub error_message: Option<String>,
    /// Version 1: where the leader is, with `NOT_LEADER`; [`LeaderHint::UNKNOWN`] otherwise and
    /// in version 0. On the wire it follows `error_message`.
    pub leader: LeaderHint,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// Whole batches as stored, in offset order, each its own buffer. On the wire they are one
    /// `bytes` field, the batches back to back; encoding sends each buffer as is.
    pub records: Vec<Bytes>,
}

impl FetchPartitionResponse {
    /// Total size of the records.
    pub fn records_bytes(&self) -> usize {
        self.records.iter().map(Bytes::len).sum()
    }
}

/// Empty `name`, empty `partitions`.
const TOPIC_BYTES_MIN: usize = STRING_BYTES_MIN + ARRAY_BYTES_MIN;
const PARTITION_BYTES: usize = 4 + 8 + 4;
/// `partition`, `error_code`, null `error_message`, the three offsets, empty `records`.
const PARTITION_RESPONSE_BYTES_MIN: usize = 4 + 2 + 2 + 8 * 3 + BYTES_BYTES_MIN;

impl FetchRequest {
    pub(super) fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.max_wait_ms);
        out.put_u32(self.min_bytes);
        out.put_u32(self.max_bytes);
        put_array_len(out, self.topics.len());
        for t in &self.topics {
            put_string(out, &t.name);
            put_array_len(out, t.partitions.len());
            for p in &t.partitions {
                out.put_u32(p.partition);
                out.put_i64(p.fetch_offset);
                out.put_u32(p.partition_max_bytes);
            }
        }
    }

    /// Decodes the body of a request of `version` (0 or 1: the same body).
    pub(super) fn decode(r: &mut Reader<BytesMut>, version: u16) -> Result<Self, WireError> {
        let max_wait_ms = r.u32("max_wait_ms")?;
        let min_bytes = r.u32("min_bytes")?;
        let max_bytes = r.u32("max_bytes")?;
        let topics = r.array("topics", TOPIC_BYTES_MIN, |r| {
            Ok(FetchTopic {
                name: r.string("topics[].name")?,
                partitions: r.array("topics[].partitions", PARTITION_BYTES, |r| {
                    Ok(FetchPartition {
                        partition: r.u32("topics[].partitions[].partition")?,
                        fetch_offset: r.i64("topics[].partitions[].fetch_offset")?,
                        partition_max_bytes: r.u32("topics[].partitions[].partition_max_bytes")?,
                    })
                })?,
            })
        })?;
        Ok(FetchRequest {
            version,
            max_wait_ms,
            min_bytes,
            max_bytes,
            topics,
        })
    }
}

impl FetchResponse {
    /// Encodes the body of a response of `version`.
    pub(super) fn encode(&self, w: &mut ChunkWriter, version: u16) {
        put_array_len(w.buf(), self.topics.len());
        for t in &self.topics {
            put_string(w.buf(), &t.name);
            put_array_len(w.buf(), t.partitions.len());
            for p in &t.partitions {
                let out = w.buf();
                out.put_u32(p.partition);
                out.put_u16(p.error_code as u16);
                put_message(out, p.error_message.as_deref());
                if version >= 1 {
                    p.leader.encode(out);
                }
                out.put_i64(p.high_watermark);
                out.put_i64(p.log_start_offset);
                out.put_i64(p.log_end_offset);
                put_bytes_len(out, p.records_bytes());
                for batch in &p.records {
                    w.push_shared(batch);
                }
            }
        }
    }

    /// Decodes the body of a response of `version`.
    pub(super) fn decode(r: &mut Reader<Bytes>, version: u16) -> Result<Self, WireError> {
        let partition_bytes_min =
            PARTITION_RESPONSE_BYTES_MIN + if version >= 1 { LEADER_HINT_BYTES } else { 0 };
        let topics = r.array("topics", TOPIC_BYTES_MIN, |r| {
            Ok(FetchTopicResponse {
                name: r.string("topics[].name")?,
                partitions: r.array("topics[].partitions", partition_bytes_min, |r| {
                    decode_partition(r, version)
                })?,
            })
        })?;
        Ok(FetchResponse { topics })
    }
}

fn decode_partition(
    r: &mut Reader<Bytes>,
    version: u16,
) -> Result<FetchPartitionResponse, WireError> {
    let partition = r.u32("topics[].partitions[].partition")?;
    let error_code = r.error_code("topics[].partitions[].error_code")?;
    let error_message = r.nullable_string("topics[].partitions[].error_message")?;
    let leader = if version >= 1 {
        LeaderHint::decode(r)?
    } else {
        LeaderHint::UNKNOWN
    };
    let high_watermark = r.i64("topics[].partitions[].high_watermark")?;
    let log_start_offset = r.i64("topics[].partitions[].log_start_offset")?;
    let log_end_offset = r.i64("topics[].partitions[].log_end_offset")?;
    let field = "topics[].partitions[].records";
    let at = r.position();
    let bytes = r.bytes(field)?;
    let mut records = Vec::new();
    for batch in batches(&bytes) {
        let (_, range) = batch.map_err(|e| WireError::CorruptRecords {
            field,
            at,
            reason: e.to_string(),
        })?;
        records.push(bytes.slice(range));
    }
    Ok(FetchPartitionResponse {
        partition,
        error_code,
        error_message,
        leader,
        high_watermark,
        log_start_offset,
        log_end_offset,
        records,
    })
}
