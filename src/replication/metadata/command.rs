//! The commands of the cluster metadata log and how they are stored: each command is one record
//! of a record batch in the metadata group's log (`__cluster_metadata`), its value the command
//! as JSON (`docs/REPLICATION.md`, "Cluster metadata"). JSON because the log is small and read
//! by people debugging a cluster; the commands are rare (a topic created, a leader elected).

use bytes::BytesMut;
use serde::{Deserialize, Serialize};

use crate::record::{self, BatchBuilder, BatchError};
use crate::shard::catalog::TopicConfig;
use crate::shard::placement::Placement;

/// A node as it registers itself: what clients and other nodes need to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node: u32,
    /// Where clients connect (the advertised host and the common port).
    pub host: String,
    pub port: u16,
    /// One client port per shard, in shard order.
    pub shard_ports: Vec<u16>,
    /// The node's replication address (QUIC), as `--peers` names it.
    pub replication_addr: String,
}

impl NodeInfo {
    pub fn shards(&self) -> usize {
        self.shard_ports.len()
    }
}

/// One change to the cluster metadata. Applied in log order by every node
/// ([`super::ClusterMeta::apply`]); applying is deterministic and never fails on a command it
/// cannot use (the outcome says why).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// A node announces itself (at every start; a change of address or shard count replaces
    /// the old entry).
    RegisterNode(NodeInfo),
    /// A topic, placed by the metadata leader when it proposed the command.
    CreateTopic {
        name: String,
        partitions: u32,
        config: TopicConfig,
        placement: Vec<Placement>,
    },
    DeleteTopic {
        name: String,
    },
    /// A partition's leader says it leads in `term` and which replicas are in sync (Kafka's
    /// AlterPartition). Older terms than the recorded one are ignored.
    PartitionLeader {
        topic_id: u64,
        partition: u32,
        node: u32,
        shard: u16,
        term: u64,
        in_sync: Vec<u32>,
    },
}

/// Why bytes from the metadata log could not be read as commands.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("invalid metadata batch: {0}")]
    Batch(#[from] BatchError),
    #[error("metadata record {index} is not a command: {reason}")]
    Record { index: usize, reason: String },
}

/// A record batch holding `commands`, one record each (offsets are stamped when it is proposed).
pub fn encode(commands: &[Command], timestamp_ms: i64) -> BytesMut {
    let mut b = BatchBuilder::new(timestamp_ms);
    for c in commands {
        let json = serde_json::to_vec(c).expect("commands serialize");
        b.push(timestamp_ms, None, Some(&json), &[]);
    }
    b.finish()
}

/// The commands in one batch of the metadata log; a control batch (a leader's first entry)
/// holds none.
pub fn decode(batch: &[u8]) -> Result<Vec<Command>, CommandError> {
    let header = record::BatchHeader::parse(batch)?;
    if header.is_control() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (index, r) in record::records(batch)?.enumerate() {
        let r = r?;
        let value = r.value.ok_or_else(|| CommandError::Record {
            index,
            reason: "no value".into(),
        })?;
        let c = serde_json::from_slice(value).map_err(|e| CommandError::Record {
            index,
            reason: e.to_string(),
        })?;
        out.push(c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::LogConfig;
    use crate::types::{NodeId, ShardId};

    #[test]
    fn commands_round_trip_through_a_batch() {
        let cmds = vec![
            Command::RegisterNode(NodeInfo {
                node: 2,
                host: "127.0.0.1".into(),
                port: 9093,
                shard_ports: vec![9100, 9101],
                replication_addr: "127.0.0.1:9193".into(),
            }),
            Command::CreateTopic {
                name: "orders".into(),
                partitions: 1,
                config: TopicConfig::from_log_config(&LogConfig::default()),
                placement: vec![Placement::replicated(&[
                    (NodeId(1), ShardId(0)),
                    (NodeId(2), ShardId(1)),
                ])],
            },
            Command::DeleteTopic { name: "old".into() },
            Command::PartitionLeader {
                topic_id: 3,
                partition: 0,
                node: 2,
                shard: 1,
                term: 4,
                in_sync: vec![1, 2],
            },
        ];
        let batch = encode(&cmds, 1_000);
        record::validate_batch(&batch, 1 << 20).unwrap();
        assert_eq!(decode(&batch).unwrap(), cmds);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut b = BatchBuilder::new(0);
        b.push(0, None, Some(b"{\"type\":\"nope\"}"), &[]);
        b.push(0, None, None, &[]);
        let batch = b.finish();
        assert!(matches!(
            decode(&batch),
            Err(CommandError::Record { index: 0, .. })
        ));
        assert!(decode(b"short").is_err());
    }
}
