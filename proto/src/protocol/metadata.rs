//! Metadata (key 1): the brokers with their per-shard ports, and who leads each partition.
//! Version 1 adds, after the topics, the damaged ranges of the partitions described: offsets
//! the broker holds but cannot serve (see `docs/PROTOCOL.md`). Version 2 adds each partition's
//! replicas and in-sync replicas, and the cluster's metadata leader (`controller_node`). The
//! request body is the same in every version.

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::{
    put_array_len, put_nullable_array_len, put_string, Reader, WireError, ARRAY_BYTES_MIN,
    STRING_BYTES_MIN,
};
use crate::error_code::ErrorCode;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataRequest {
    /// The version the request goes as: 0, 1 (damaged ranges too) or 2 (replicas, in-sync
    /// replicas and the controller too). The body is the same.
    pub version: u16,
    /// The topics to describe; `None` (wire: null array) for all of them.
    pub topics: Option<Vec<String>>,
}

impl MetadataRequest {
    /// The newest version this build speaks.
    pub const VERSION_MAX: u16 = 2;

    /// A version 0 request for `topics`.
    pub fn new(topics: Option<Vec<String>>) -> Self {
        MetadataRequest { version: 0, topics }
    }

    /// A request for `topics` at the newest version.
    pub fn latest(topics: Option<Vec<String>>) -> Self {
        MetadataRequest {
            version: Self::VERSION_MAX,
            topics,
        }
    }

    /// Whether the answer carries damaged ranges (version 1 and later).
    pub fn damaged_ranges(&self) -> bool {
        self.version >= 1
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataResponse {
    pub brokers: Vec<BrokerMetadata>,
    pub topics: Vec<TopicMetadata>,
    /// Version 1 and later (`None` in a version 0 response): the damaged ranges of the
    /// partitions described, by topic, partition and first offset.
    pub damaged_ranges: Option<Vec<DamagedRangeMetadata>>,
    /// Version 2: the node leading the cluster's metadata (where CreateTopic and DeleteTopic
    /// go), -1 if unknown and in earlier versions.
    pub controller_node: i32,
}

/// Offsets `first_offset` to `last_offset` of a partition are damaged: stored but not served;
/// a consumer continues at `last_offset + 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedRangeMetadata {
    pub topic: String,
    pub partition: u32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerMetadata {
    pub node_id: u32,
    pub host: String,
    /// The common port: any shard's work can be asked for here.
    pub port: u16,
    /// One port per shard, reaching that shard's core directly.
    pub shard_ports: Vec<ShardPort>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardPort {
    pub shard_id: u16,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMetadata {
    /// `UnknownTopicOrPartition` for a requested topic that does not exist (then no partitions).
    pub error_code: ErrorCode,
    pub name: String,
    pub partitions: Vec<PartitionMetadata>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub partition: u32,
    pub error_code: ErrorCode,
    pub leader_node: u32,
    pub leader_shard: u16,
    pub leader_epoch: i32,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    /// Version 2: the nodes holding a replica, the leader included, in the order the placement
    /// records them (ascending node id when the cluster assigned them; the leader is not
    /// necessarily first). Empty in earlier versions.
    pub replicas: Vec<u32>,
    /// Version 2: the replicas the leader counts as caught up (in `replicas` order): those that
    /// acknowledged its log up to the high watermark recently (the leader's view; the leader
    /// itself always). Empty in earlier versions.
    pub in_sync: Vec<u32>,
}

/// `node_id`, empty `host`, `port`, empty `shard_ports`.
const BROKER_BYTES_MIN: usize = 4 + STRING_BYTES_MIN + 2 + ARRAY_BYTES_MIN;
const SHARD_PORT_BYTES: usize = 4;
/// `error_code`, empty `name`, empty `partitions`.
const TOPIC_BYTES_MIN: usize = 2 + STRING_BYTES_MIN + ARRAY_BYTES_MIN;
const PARTITION_BYTES: usize = 4 + 2 + 4 + 2 + 4 + 8 + 8 + 8;
/// A version 2 partition: the version 0 fields, empty `replicas`, empty `in_sync`.
const PARTITION_V2_BYTES_MIN: usize = PARTITION_BYTES + 2 * ARRAY_BYTES_MIN;
/// Empty `topic`, `partition`, `first_offset`, `last_offset`.
const DAMAGED_RANGE_BYTES_MIN: usize = STRING_BYTES_MIN + 4 + 8 + 8;

impl MetadataRequest {
    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_nullable_array_len(out, self.topics.as_ref().map(Vec::len));
        for name in self.topics.iter().flatten() {
            put_string(out, name);
        }
    }

    /// Decodes the body of a request of `version` (0 to 2: the same body).
    pub(super) fn decode(r: &mut Reader<BytesMut>, version: u16) -> Result<Self, WireError> {
        let topics = match r.nullable_array_len("topics", STRING_BYTES_MIN)? {
            None => None,
            Some(count) => {
                let mut topics = Vec::with_capacity(count);
                for _ in 0..count {
                    topics.push(r.string("topics[]")?);
                }
                Some(topics)
            }
        };
        Ok(MetadataRequest { version, topics })
    }
}

impl MetadataResponse {
    /// Encodes the body of a response of `version`; fields of later versions are left out.
    pub(super) fn encode(&self, out: &mut BytesMut, version: u16) {
        put_array_len(out, self.brokers.len());
        for b in &self.brokers {
            out.put_u32(b.node_id);
            put_string(out, &b.host);
            out.put_u16(b.port);
            put_array_len(out, b.shard_ports.len());
            for s in &b.shard_ports {
                out.put_u16(s.shard_id);
                out.put_u16(s.port);
            }
        }
        put_array_len(out, self.topics.len());
        for t in &self.topics {
            out.put_u16(t.error_code as u16);
            put_string(out, &t.name);
            put_array_len(out, t.partitions.len());
            for p in &t.partitions {
                out.put_u32(p.partition);
                out.put_u16(p.error_code as u16);
                out.put_u32(p.leader_node);
                out.put_u16(p.leader_shard);
                out.put_i32(p.leader_epoch);
                out.put_i64(p.log_start_offset);
                out.put_i64(p.high_watermark);
                out.put_i64(p.log_end_offset);
                if version >= 2 {
                    put_node_ids(out, &p.replicas);
                    put_node_ids(out, &p.in_sync);
                }
            }
        }
        if version >= 1 {
            let ranges = self.damaged_ranges.as_deref().unwrap_or_default();
            put_array_len(out, ranges.len());
            for d in ranges {
                put_string(out, &d.topic);
                out.put_u32(d.partition);
                out.put_i64(d.first_offset);
                out.put_i64(d.last_offset);
            }
        }
        if version >= 2 {
            out.put_i32(self.controller_node);
        }
    }

    /// Decodes the body of a response of `version`.
    pub(super) fn decode(r: &mut Reader<Bytes>, version: u16) -> Result<Self, WireError> {
        let brokers = r.array("brokers", BROKER_BYTES_MIN, |r| {
            Ok(BrokerMetadata {
                node_id: r.u32("brokers[].node_id")?,
                host: r.string("brokers[].host")?,
                port: r.u16("brokers[].port")?,
                shard_ports: r.array("brokers[].shard_ports", SHARD_PORT_BYTES, |r| {
                    Ok(ShardPort {
                        shard_id: r.u16("brokers[].shard_ports[].shard_id")?,
                        port: r.u16("brokers[].shard_ports[].port")?,
                    })
                })?,
            })
        })?;
        let topics = r.array("topics", TOPIC_BYTES_MIN, |r| {
            Ok(TopicMetadata {
                error_code: r.error_code("topics[].error_code")?,
                name: r.string("topics[].name")?,
                partitions: if version >= 2 {
                    r.array("topics[].partitions", PARTITION_V2_BYTES_MIN, |r| {
                        let mut p = decode_partition(r)?;
                        p.replicas = decode_node_ids(r, "topics[].partitions[].replicas")?;
                        p.in_sync = decode_node_ids(r, "topics[].partitions[].in_sync")?;
                        Ok(p)
                    })?
                } else {
                    r.array("topics[].partitions", PARTITION_BYTES, decode_partition)?
                },
            })
        })?;
        let damaged_ranges = if version >= 1 {
            Some(r.array("damaged_ranges", DAMAGED_RANGE_BYTES_MIN, |r| {
                Ok(DamagedRangeMetadata {
                    topic: r.string("damaged_ranges[].topic")?,
                    partition: r.u32("damaged_ranges[].partition")?,
                    first_offset: r.i64("damaged_ranges[].first_offset")?,
                    last_offset: r.i64("damaged_ranges[].last_offset")?,
                })
            })?)
        } else {
            None
        };
        let controller_node = if version >= 2 {
            r.i32("controller_node")?
        } else {
            -1
        };
        Ok(MetadataResponse {
            brokers,
            topics,
            damaged_ranges,
            controller_node,
        })
    }
}

fn decode_partition(r: &mut Reader<Bytes>) -> Result<PartitionMetadata, WireError> {
    Ok(PartitionMetadata {
        partition: r.u32("topics[].partitions[].partition")?,
        error_code: r.error_code("topics[].partitions[].error_code")?,
        leader_node: r.u32("topics[].partitions[].leader_node")?,
        leader_shard: r.u16("topics[].partitions[].leader_shard")?,
        leader_epoch: r.i32("topics[].partitions[].leader_epoch")?,
        log_start_offset: r.i64("topics[].partitions[].log_start_offset")?,
        high_watermark: r.i64("topics[].partitions[].high_watermark")?,
        log_end_offset: r.i64("topics[].partitions[].log_end_offset")?,
        replicas: Vec::new(),
        in_sync: Vec::new(),
    })
}

pub(super) fn put_node_ids(out: &mut BytesMut, ids: &[u32]) {
    put_array_len(out, ids.len());
    for &id in ids {
        out.put_u32(id);
    }
}

pub(super) fn decode_node_ids(
    r: &mut Reader<Bytes>,
    field: &'static str,
) -> Result<Vec<u32>, WireError> {
    r.array(field, 4, |r| r.u32(field))
}
