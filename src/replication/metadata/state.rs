//! The cluster metadata as every node holds it: the state machine of the metadata Raft group.
//! Applying the same commands in the same order gives the same state on every node, so it only
//! decides from the command and the state, never from the node or the clock.

use std::collections::BTreeMap;

use super::command::{Command, NodeInfo};
use crate::shard::catalog::{Catalog, CatalogError, TopicMeta};
use crate::shard::placement::Placement;
use crate::types::{NodeId, ShardId};

/// Who leads a partition, as its leader last reported through the metadata log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderInfo {
    pub node: NodeId,
    pub shard: ShardId,
    /// The Raft term of the partition's group (its leader epoch).
    pub term: u64,
    /// Replicas caught up with the leader, as it saw them; the leader included.
    pub in_sync: Vec<NodeId>,
}

/// The applied cluster metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterMeta {
    /// Registered nodes by id.
    pub nodes: BTreeMap<u32, NodeInfo>,
    /// Topics, their settings and placement, and the tombstones of deleted ones.
    pub catalog: Catalog,
    /// Reported leaders by (topic id, partition).
    pub leaders: BTreeMap<(u64, u32), LeaderInfo>,
}

/// What applying one command did; the node that proposed it answers its caller with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Registered,
    Created(TopicMeta),
    Deleted(TopicMeta),
    LeaderRecorded,
    /// A leader report older than the recorded term, or for a partition that is gone.
    Stale,
    /// Refused by the catalog's rules (exists, unknown, bad name or settings).
    Catalog(CatalogError),
    /// A placement this state cannot hold (a replica on an unknown node or shard, a node
    /// twice); the proposer's view was out of date.
    BadPlacement(String),
}

impl ClusterMeta {
    pub fn apply(&mut self, cmd: &Command) -> Outcome {
        match cmd {
            Command::RegisterNode(info) => {
                self.nodes.insert(info.node, info.clone());
                Outcome::Registered
            }
            Command::CreateTopic {
                name,
                partitions,
                config,
                placement,
            } => {
                if let Err(e) = self.check_placement(placement) {
                    return Outcome::BadPlacement(e);
                }
                match self.catalog.create_placed(
                    name,
                    *partitions,
                    config.clone(),
                    placement.clone(),
                ) {
                    Ok(meta) => Outcome::Created(meta),
                    Err(e) => Outcome::Catalog(e),
                }
            }
            Command::DeleteTopic { name } => match self.catalog.delete(name) {
                Ok(meta) => {
                    self.leaders.retain(|&(id, _), _| id != meta.id);
                    Outcome::Deleted(meta)
                }
                Err(e) => Outcome::Catalog(e),
            },
            Command::PartitionLeader {
                topic_id,
                partition,
                node,
                shard,
                term,
                in_sync,
            } => {
                let Some(topic) = self.topic_by_id(*topic_id) else {
                    return Outcome::Stale;
                };
                let Some(p) = topic.placement(*partition) else {
                    return Outcome::Stale;
                };
                if p.shard_on(NodeId(*node)) != Some(ShardId(*shard)) {
                    return Outcome::Stale;
                }
                let key = (*topic_id, *partition);
                if self.leaders.get(&key).is_some_and(|l| l.term > *term) {
                    return Outcome::Stale;
                }
                self.leaders.insert(
                    key,
                    LeaderInfo {
                        node: NodeId(*node),
                        shard: ShardId(*shard),
                        term: *term,
                        in_sync: in_sync.iter().map(|&n| NodeId(n)).collect(),
                    },
                );
                Outcome::LeaderRecorded
            }
        }
    }

    pub fn topic_by_id(&self, id: u64) -> Option<&TopicMeta> {
        self.catalog.topics.values().find(|t| t.id == id)
    }

    /// The reported leader of a partition, if any.
    pub fn leader(&self, topic_id: u64, partition: u32) -> Option<&LeaderInfo> {
        self.leaders.get(&(topic_id, partition))
    }

    fn check_placement(&self, placement: &[Placement]) -> Result<(), String> {
        for (i, p) in placement.iter().enumerate() {
            if p.replicas.is_empty() || p.replicas.len() != p.replica_shards.len() {
                return Err(format!(
                    "partition {i}: replicas and their shards do not match"
                ));
            }
            if (p.replicas[0], p.replica_shards[0]) != (p.node, p.shard) {
                return Err(format!(
                    "partition {i}: the preferred leader is not the first replica"
                ));
            }
            for (k, (n, s)) in p.replicas.iter().zip(&p.replica_shards).enumerate() {
                let Some(info) = self.nodes.get(&n.0) else {
                    return Err(format!("partition {i}: node {n} is not registered"));
                };
                if usize::from(s.0) >= info.shards() {
                    return Err(format!(
                        "partition {i}: node {n} has {} shards, not shard {s}",
                        info.shards()
                    ));
                }
                if p.replicas[..k].contains(n) {
                    return Err(format!("partition {i}: node {n} holds two replicas"));
                }
            }
        }
        Ok(())
    }
}
