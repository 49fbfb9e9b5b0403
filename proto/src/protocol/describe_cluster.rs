//! DescribeCluster (key 8): the cluster as the answering broker sees it: the metadata leader, the
//! nodes and whether each is up, and for each partition its leader and every replica's lag, with
//! the count of under-replicated partitions. For operators (`quill cluster status`); clients
//! route by Metadata.

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::{
    put_array_len, put_nullable_array_len, put_string, Reader, WireError, ARRAY_BYTES_MIN,
    STRING_BYTES_MIN,
};
use crate::error_code::ErrorCode;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribeClusterRequest {
    /// The topics whose partitions to describe; `None` (wire: null array) for all of them.
    pub topics: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribeClusterResponse {
    /// The node leading the cluster's metadata, -1 if unknown (no leader elected yet).
    pub metadata_leader: i32,
    pub nodes: Vec<ClusterNode>,
    pub topics: Vec<ClusterTopic>,
    /// Partitions, among those described, with fewer in-sync replicas than replicas.
    pub under_replicated_partitions: u32,
}

/// A node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    pub node_id: u32,
    /// Where clients reach it (its common port).
    pub host: String,
    pub port: u16,
    /// Where other brokers reach it for replication; empty and 0 when it has none.
    pub replication_host: String,
    pub replication_port: u16,
    /// Whether the metadata leader hears from it (a single node sees itself up). Wire: `u8`, 0
    /// or 1.
    pub up: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterTopic {
    /// `UNKNOWN_TOPIC_OR_PARTITION` for a requested topic that does not exist (then no
    /// partitions), `INVALID_TOPIC_NAME` for a name that cannot exist.
    pub error_code: ErrorCode,
    pub name: String,
    pub partitions: Vec<ClusterPartition>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterPartition {
    pub partition: u32,
    /// Why the partition's state is unknown (not open, no leader), else `NONE`.
    pub error_code: ErrorCode,
    /// -1 if there is no leader.
    pub leader_node: i32,
    /// -1 if there is no leader.
    pub leader_shard: i16,
    /// -1 if unknown.
    pub leader_epoch: i32,
    /// The leader's high watermark and log end; -1 if unknown.
    pub high_watermark: i64,
    pub log_end_offset: i64,
    /// Every replica, the leader included, in the placement's order.
    pub replicas: Vec<ClusterReplica>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterReplica {
    pub node_id: u32,
    /// The leader's log end minus the offset this replica is known to hold up to; 0 for the
    /// leader itself, -1 if unknown.
    pub lag_records: i64,
    /// Whether the leader counts it as in sync. Wire: `u8`, 0 or 1.
    pub in_sync: bool,
}

/// `node_id`, empty `host`, `port`, empty `replication_host`, `replication_port`, `up`.
const NODE_BYTES_MIN: usize = 4 + STRING_BYTES_MIN + 2 + STRING_BYTES_MIN + 2 + 1;
/// `error_code`, empty `name`, empty `partitions`.
const TOPIC_BYTES_MIN: usize = 2 + STRING_BYTES_MIN + ARRAY_BYTES_MIN;
/// Fixed fields, empty `replicas`.
const PARTITION_BYTES_MIN: usize = 4 + 2 + 4 + 2 + 4 + 8 + 8 + ARRAY_BYTES_MIN;
const REPLICA_BYTES: usize = 4 + 8 + 1;

fn decode_bool(r: &mut Reader<Bytes>, field: &'static str) -> Result<bool, WireError> {
    let at = r.position();
    match r.i8(field)? {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(WireError::InvalidValue {
            field,
            at,
            value: i64::from(value),
        }),
    }
}

impl DescribeClusterRequest {
    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_nullable_array_len(out, self.topics.as_ref().map(Vec::len));
        for name in self.topics.iter().flatten() {
            put_string(out, name);
        }
    }

    pub(super) fn decode(r: &mut Reader<BytesMut>) -> Result<Self, WireError> {
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
        Ok(DescribeClusterRequest { topics })
    }
}

impl DescribeClusterResponse {
    pub(super) fn encode(&self, out: &mut BytesMut) {
        out.put_i32(self.metadata_leader);
        put_array_len(out, self.nodes.len());
        for n in &self.nodes {
            out.put_u32(n.node_id);
            put_string(out, &n.host);
            out.put_u16(n.port);
            put_string(out, &n.replication_host);
            out.put_u16(n.replication_port);
            out.put_u8(u8::from(n.up));
        }
        put_array_len(out, self.topics.len());
        for t in &self.topics {
            out.put_u16(t.error_code.as_u16());
            put_string(out, &t.name);
            put_array_len(out, t.partitions.len());
            for p in &t.partitions {
                out.put_u32(p.partition);
                out.put_u16(p.error_code.as_u16());
                out.put_i32(p.leader_node);
                out.put_i16(p.leader_shard);
                out.put_i32(p.leader_epoch);
                out.put_i64(p.high_watermark);
                out.put_i64(p.log_end_offset);
                put_array_len(out, p.replicas.len());
                for r in &p.replicas {
                    out.put_u32(r.node_id);
                    out.put_i64(r.lag_records);
                    out.put_u8(u8::from(r.in_sync));
                }
            }
        }
        out.put_u32(self.under_replicated_partitions);
    }

    pub(super) fn decode(r: &mut Reader<Bytes>) -> Result<Self, WireError> {
        let metadata_leader = r.i32("metadata_leader")?;
        let nodes = r.array("nodes", NODE_BYTES_MIN, |r| {
            Ok(ClusterNode {
                node_id: r.u32("nodes[].node_id")?,
                host: r.string("nodes[].host")?,
                port: r.u16("nodes[].port")?,
                replication_host: r.string("nodes[].replication_host")?,
                replication_port: r.u16("nodes[].replication_port")?,
                up: decode_bool(r, "nodes[].up")?,
            })
        })?;
        let topics = r.array("topics", TOPIC_BYTES_MIN, |r| {
            Ok(ClusterTopic {
                error_code: r.error_code("topics[].error_code")?,
                name: r.string("topics[].name")?,
                partitions: r.array("topics[].partitions", PARTITION_BYTES_MIN, |r| {
                    Ok(ClusterPartition {
                        partition: r.u32("topics[].partitions[].partition")?,
                        error_code: r.error_code("topics[].partitions[].error_code")?,
                        leader_node: r.i32("topics[].partitions[].leader_node")?,
                        leader_shard: r.i16("topics[].partitions[].leader_shard")?,
                        leader_epoch: r.i32("topics[].partitions[].leader_epoch")?,
                        high_watermark: r.i64("topics[].partitions[].high_watermark")?,
                        log_end_offset: r.i64("topics[].partitions[].log_end_offset")?,
                        replicas: r.array(
                            "topics[].partitions[].replicas",
                            REPLICA_BYTES,
                            |r| {
                                Ok(ClusterReplica {
                                    node_id: r.u32("topics[].partitions[].replicas[].node_id")?,
                                    lag_records: r
                                        .i64("topics[].partitions[].replicas[].lag_records")?,
                                    in_sync: decode_bool(
                                        r,
                                        "topics[].partitions[].replicas[].in_sync",
                                    )?,
                                })
                            },
                        )?,
                    })
                })?,
            })
        })?;
        let under_replicated_partitions = r.u32("under_replicated_partitions")?;
        Ok(DescribeClusterResponse {
            metadata_leader,
            nodes,
            topics,
            under_replicated_partitions,
        })
    }
}
