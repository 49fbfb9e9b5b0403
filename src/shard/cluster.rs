//! The cluster as this broker sees it: the metadata leader, the nodes and whether they are up,
//! and for each partition its leader and replicas with their lag. Domain values for the
//! protocols (`DescribeCluster`, Metadata v2's `controller_node`, CreateTopic's replication
//! factor); no wire types here.
//!
//! On a single-node broker this node leads everything and these functions say so; on a
//! cluster node (`--peers`) they answer from the applied cluster metadata (`replicas.rs`,
//! `metadata.rs`) and the transport's view of the other nodes:
//! - [`Shard::metadata_leader`]: the metadata Raft group's leader (`None` during an election).
//! - [`Shard::live_nodes`], [`Shard::cluster_nodes`]: every node of `--peers` with the
//!   addresses it registered and whether this node's transport is connected to it.
//! - [`Shard::reported_leader`]: a partition's leader as its leader last reported it.
//! - `Shard::replica_states` (`partition/local.rs`): each replica's acknowledged log end and
//!   in-sync flag, as the partition's leader sees them.
//!
//! Each lives on the shard it is called on, like the [`Shard`] itself.

use super::core::Shard;
use super::error::{PartitionError, TopicError};
use super::partition::{LogOffsets, PartitionService, ReplicaState};
use crate::types::{Epoch, NodeId, ShardId, TopicPartition};

/// Replicas per partition when CreateTopic leaves it to the broker (0). The cluster wiring may
/// make it a broker setting (`src/config.rs` is not this module's).
pub const DEFAULT_REPLICATION_FACTOR: u16 = 1;

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    pub id: NodeId,
    /// Where clients reach it (its common port).
    pub host: String,
    pub port: u16,
    /// One client port per shard, in shard order.
    pub shard_ports: Vec<u16>,
    /// Where other brokers reach it for replication, if it has such an address.
    pub replication: Option<(String, u16)>,
    /// Whether the metadata leader hears from it.
    pub up: bool,
}

/// One partition: its leader and replicas as the leader reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionView {
    pub partition: u32,
    /// `None` while there is no leader.
    pub leader: Option<(NodeId, ShardId)>,
    pub leader_epoch: Option<Epoch>,
    /// The leader's offsets, if it answered.
    pub offsets: Option<LogOffsets>,
    /// Every replica in placement order. Without the leader's report, each replica of the
    /// placement with an unknown lag and not in sync.
    pub replicas: Vec<ReplicaState>,
    /// Why the leader's report is missing, if it is.
    pub error: Option<PartitionError>,
}

impl PartitionView {
    /// The leader's log end minus what `replica` is known to hold; `None` if unknown.
    pub fn lag_records(&self, replica: &ReplicaState) -> Option<u64> {
        let end = self.offsets?.log_end;
        Some(end.0.saturating_sub(replica.log_end?.0))
    }

    /// Fewer replicas in sync than replicas.
    pub fn under_replicated(&self) -> bool {
        self.replicas.iter().any(|r| !r.in_sync)
    }
}

/// One topic asked for: its partitions, or why it cannot be described.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicView {
    pub name: String,
    /// `InvalidTopicName`, or `UnknownPartition` for a topic that does not exist.
    pub partitions: Result<Vec<PartitionView>, PartitionError>,
}

/// The cluster as this broker sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    pub metadata_leader: Option<NodeId>,
    /// In node id order.
    pub nodes: Vec<NodeView>,
    pub topics: Vec<TopicView>,
}

impl ClusterView {
    /// Partitions, among those described, with a replica out of sync.
    pub fn under_replicated_partitions(&self) -> usize {
        self.topics
            .iter()
            .filter_map(|t| t.partitions.as_ref().ok())
            .flatten()
            .filter(|p| p.under_replicated())
            .count()
    }
}

impl Shard {
    /// The node leading the cluster's metadata (where topic admin goes); `None` while none is
    /// known. Single node: this one.
    pub fn metadata_leader(&self) -> Option<NodeId> {
        match &self.cluster {
            Some(cs) => cs.metadata_leader.get(),
            None => Some(NodeId(self.config.node_id)),
        }
    }

    /// The nodes the metadata leader hears from, in id order. Single node: this one.
    pub fn live_nodes(&self) -> Vec<NodeId> {
        self.cluster_nodes()
            .into_iter()
            .filter(|n| n.up)
            .map(|n| n.id)
            .collect()
    }

    /// Every node of the cluster, in id order. Single node: this one, up, with no replication
    /// address. Cluster: every node of `--peers`, with the addresses it registered (none yet
    /// if it never did) and `up` as this node's transport sees it.
    pub fn cluster_nodes(&self) -> Vec<NodeView> {
        let Some(cs) = &self.cluster else {
            return vec![NodeView {
                id: NodeId(self.config.node_id),
                host: self.ports.host.clone(),
                port: self.ports.common_port,
                shard_ports: self.ports.shard_ports.clone(),
                replication: None,
                up: true,
            }];
        };
        let meta = cs.meta.borrow();
        let mut out: Vec<NodeView> = self
            .config
            .peers
            .iter()
            .map(|p| {
                let id = NodeId(p.node);
                let info = meta.nodes.get(&p.node);
                NodeView {
                    id,
                    host: info.map(|i| i.host.clone()).unwrap_or_default(),
                    port: info.map_or(0, |i| i.port),
                    shard_ports: info.map(|i| i.shard_ports.clone()).unwrap_or_default(),
                    replication: Some((p.addr.ip().to_string(), p.addr.port())),
                    up: cs.repl.net.is_up(id),
                }
            })
            .collect();
        out.sort_by_key(|n| n.id);
        out
    }

    /// Cluster: the leader of partition `p` of topic `topic_id` as the applied metadata records
    /// it. `None` on a single node or while none is recorded.
    pub fn reported_leader(
        &self,
        topic_id: u64,
        p: u32,
    ) -> Option<crate::replication::metadata::LeaderInfo> {
        let cs = self.cluster.as_ref()?;
        let meta = cs.meta.borrow();
        meta.leader(topic_id, p).cloned()
    }

    /// The replica set of a new partition led by `leader`: `factor` live nodes (0: the
    /// default), `leader` among them, in ascending id order. More than the live nodes is
    /// refused, naming both numbers.
    pub fn choose_replicas(&self, leader: NodeId, factor: u16) -> Result<Vec<NodeId>, TopicError> {
        let factor = match factor {
            0 => DEFAULT_REPLICATION_FACTOR,
            f => f,
        };
        let live = self.live_nodes();
        if usize::from(factor) > live.len() {
            return Err(TopicError::InvalidReplicationFactor {
                asked: factor,
                live: live.len(),
            });
        }
        let mut chosen = vec![leader];
        chosen.extend(
            live.into_iter()
                .filter(|&n| n != leader)
                .take(usize::from(factor) - 1),
        );
        chosen.sort_unstable();
        Ok(chosen)
    }
}

impl PartitionService {
    /// The cluster as this broker sees it, with every partition of `topics` (`None`: all):
    /// leaders from the placement, offsets and replica states from each partition's leader
    /// (its owning shard, through the mesh).
    pub async fn describe_cluster(&self, topics: Option<Vec<String>>) -> ClusterView {
        let shard = self.shard().clone();
        let catalog = shard.catalog();
        let names: Vec<String> = match &topics {
            Some(t) => t.clone(),
            None => catalog.topics.keys().cloned().collect(),
        };
        let infos = self.partition_info(Some(names.clone())).await;
        let topics = names
            .into_iter()
            .map(|name| {
                let partitions = match catalog.topics.get(&name) {
                    None => Err(match super::catalog::validate_topic_name(&name) {
                        Err(super::catalog::CatalogError::InvalidName { name, reason }) => {
                            PartitionError::InvalidTopicName { name, reason }
                        }
                        _ => {
                            PartitionError::UnknownPartition(TopicPartition::new(name.as_str(), 0))
                        }
                    }),
                    Some(meta) => Ok((0..meta.partitions)
                        .map(|p| {
                            let place = meta.placement(p).expect("a placement per partition");
                            let info = infos
                                .iter()
                                .find(|i| i.tp.topic == name && i.tp.partition.0 == p);
                            let unknown = || {
                                place
                                    .replicas
                                    .iter()
                                    .map(|&node| ReplicaState {
                                        node,
                                        log_end: None,
                                        in_sync: false,
                                    })
                                    .collect()
                            };
                            let reported = shard
                                .cluster
                                .as_ref()
                                .map(|cs| cs.meta.borrow().leader(meta.id, p).cloned());
                            let leader = match &reported {
                                Some(l) => l.as_ref().map(|l| (l.node, l.shard)),
                                None => Some((place.node, place.shard)),
                            };
                            match info.map(|i| &i.state) {
                                Some(Ok(state)) => PartitionView {
                                    partition: p,
                                    leader,
                                    leader_epoch: Some(state.leader_epoch),
                                    offsets: Some(state.offsets),
                                    replicas: state.replicas.clone(),
                                    error: None,
                                },
                                Some(Err(e)) => PartitionView {
                                    partition: p,
                                    leader,
                                    leader_epoch: None,
                                    offsets: None,
                                    replicas: unknown(),
                                    error: Some(e.clone()),
                                },
                                // Cluster: led elsewhere (or by no one); the metadata says who
                                // and which replicas were in sync.
                                None if reported.is_some() => {
                                    let tp = TopicPartition::new(name.as_str(), p);
                                    let l = reported.flatten();
                                    PartitionView {
                                        partition: p,
                                        leader,
                                        leader_epoch: l
                                            .as_ref()
                                            .map(|l| super::replicas::epoch_of(l.term)),
                                        offsets: None,
                                        replicas: place
                                            .replicas
                                            .iter()
                                            .map(|&node| ReplicaState {
                                                node,
                                                log_end: None,
                                                in_sync: l
                                                    .as_ref()
                                                    .is_some_and(|l| l.in_sync.contains(&node)),
                                            })
                                            .collect(),
                                        error: l
                                            .is_none()
                                            .then_some(PartitionError::LeaderNotAvailable(tp)),
                                    }
                                }
                                None => PartitionView {
                                    partition: p,
                                    leader,
                                    leader_epoch: None,
                                    offsets: None,
                                    replicas: unknown(),
                                    error: Some(PartitionError::ShuttingDown(place.shard)),
                                },
                            }
                        })
                        .collect()),
                };
                TopicView { name, partitions }
            })
            .collect();
        ClusterView {
            metadata_leader: shard.metadata_leader(),
            nodes: shard.cluster_nodes(),
            topics,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Offset;

    fn replica(node: u32, log_end: Option<u64>, in_sync: bool) -> ReplicaState {
        ReplicaState {
            node: NodeId(node),
            log_end: log_end.map(Offset),
            in_sync,
        }
    }

    #[test]
    fn lag_is_the_leaders_end_minus_the_replicas_and_unknown_without_either() {
        let view = PartitionView {
            partition: 0,
            leader: Some((NodeId(1), ShardId(0))),
            leader_epoch: Some(Epoch(2)),
            offsets: Some(LogOffsets {
                log_start: Offset(0),
                high_watermark: Offset(90),
                log_end: Offset(100),
            }),
            replicas: vec![
                replica(1, Some(100), true),
                replica(2, Some(60), false),
                replica(3, None, false),
            ],
            error: None,
        };
        let lags: Vec<Option<u64>> = view.replicas.iter().map(|r| view.lag_records(r)).collect();
        assert_eq!(lags, [Some(0), Some(40), None]);
        assert!(view.under_replicated());
        let unknown = PartitionView {
            offsets: None,
            ..view.clone()
        };
        assert_eq!(unknown.lag_records(&unknown.replicas[0]), None);
        let cluster = ClusterView {
            metadata_leader: Some(NodeId(1)),
            nodes: vec![],
            topics: vec![
                TopicView {
                    name: "t".into(),
                    partitions: Ok(vec![
                        view,
                        PartitionView {
                            replicas: vec![replica(1, Some(5), true)],
                            ..unknown
                        },
                    ]),
                },
                TopicView {
                    name: "gone".into(),
                    partitions: Err(PartitionError::UnknownPartition(TopicPartition::new(
                        "gone", 0,
                    ))),
                },
            ],
        };
        assert_eq!(cluster.under_replicated_partitions(), 1);
    }
}
