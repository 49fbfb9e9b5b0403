//! Where a new topic's replicas go: spread over the nodes, then over each node's shards. The
//! metadata leader decides when it proposes `CreateTopic`, from its applied state, and the
//! placement travels in the command, so every node applies the same choice.
//!
//! Nodes: partition `p` of a topic gets the nodes `start + p, start + p + 1, ...` (wrapping) in
//! node-id order, where `start` is the topic name's hash; the first is the preferred leader, so
//! leaders rotate over the nodes as Kafka's rack-unaware assignment does. Shards: on each node
//! the shard holding the fewest replicas so far (existing topics and this one's earlier
//! partitions), the lowest-numbered on a tie.

use std::collections::BTreeMap;

use super::state::ClusterMeta;
use crate::shard::placement::Placement;
use crate::types::{NodeId, ShardId};

/// Why no placement could be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssignError {
    #[error("replication factor {factor} needs {factor} nodes, but {nodes} are registered")]
    NotEnoughNodes { factor: usize, nodes: usize },
    #[error("replication factor must be at least 1")]
    ZeroFactor,
}

/// The placement of `partitions` partitions of `name` with `factor` replicas each.
pub fn place(
    meta: &ClusterMeta,
    name: &str,
    partitions: u32,
    factor: usize,
) -> Result<Vec<Placement>, AssignError> {
    let nodes: Vec<(u32, usize)> = meta
        .nodes
        .values()
        .map(|n| (n.node, n.shards().max(1)))
        .collect();
    if factor == 0 {
        return Err(AssignError::ZeroFactor);
    }
    if factor > nodes.len() {
        return Err(AssignError::NotEnoughNodes {
            factor,
            nodes: nodes.len(),
        });
    }
    let mut load: BTreeMap<(u32, u16), usize> = BTreeMap::new();
    for t in meta.catalog.topics.values() {
        for p in &t.placement {
            for (n, s) in p.replicas.iter().zip(&p.replica_shards) {
                *load.entry((n.0, s.0)).or_default() += 1;
            }
        }
    }
    let start = (name_hash(name) % nodes.len() as u64) as usize;
    let mut out = Vec::with_capacity(partitions as usize);
    for p in 0..partitions as usize {
        let mut replicas = Vec::with_capacity(factor);
        for k in 0..factor {
            let (node, shards) = nodes[(start + p + k) % nodes.len()];
            let shard = (0..shards as u16)
                .min_by_key(|&s| (load.get(&(node, s)).copied().unwrap_or(0), s))
                .expect("a node has at least one shard");
            *load.entry((node, shard)).or_default() += 1;
            replicas.push((NodeId(node), ShardId(shard)));
        }
        out.push(Placement::replicated(&replicas));
    }
    Ok(out)
}

/// FNV-1a: stable across builds and platforms (the choice must not change between releases
/// for the same state, or nodes of different versions would disagree about nothing at all:
/// the placement travels in the command, but tests pin it).
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::LogConfig;
    use crate::replication::metadata::command::{Command, NodeInfo};
    use crate::replication::metadata::state::Outcome;
    use crate::shard::catalog::TopicConfig;

    fn cluster(shards: &[usize]) -> ClusterMeta {
        let mut m = ClusterMeta::default();
        for (i, &s) in shards.iter().enumerate() {
            let node = i as u32 + 1;
            m.apply(&Command::RegisterNode(NodeInfo {
                node,
                host: "127.0.0.1".into(),
                port: 9092 + node as u16,
                shard_ports: (0..s as u16).map(|k| 9100 + k).collect(),
                replication_addr: format!("127.0.0.1:{}", 9192 + node),
            }));
        }
        m
    }

    #[test]
    fn replicas_spread_over_nodes_and_shards_and_leaders_rotate() {
        let mut m = cluster(&[2, 2, 2]);
        let placement = place(&m, "orders", 6, 3).unwrap();
        let mut leaders = BTreeMap::<NodeId, usize>::new();
        let mut per_shard = BTreeMap::<(NodeId, ShardId), usize>::new();
        for p in &placement {
            let mut nodes = p.replicas.clone();
            nodes.sort();
            nodes.dedup();
            assert_eq!(nodes.len(), 3, "three distinct nodes: {p:?}");
            *leaders.entry(p.node).or_default() += 1;
            for (n, s) in p.replicas.iter().zip(&p.replica_shards) {
                *per_shard.entry((*n, *s)).or_default() += 1;
            }
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
        assert!(per_shard.values().all(|&c| c == 3), "{per_shard:?}");
        // Applied, the next topic's replicas go to the shards that hold fewer.
        let created = m.apply(&Command::CreateTopic {
            name: "orders".into(),
            partitions: 6,
            config: TopicConfig::from_log_config(&LogConfig::default()),
            placement,
        });
        assert!(matches!(created, Outcome::Created(_)), "{created:?}");
        let more = place(&m, "audit", 1, 1).unwrap();
        assert_eq!(more[0].replicas.len(), 1);
    }

    #[test]
    fn too_few_nodes_is_refused_by_name() {
        let m = cluster(&[1, 1]);
        assert_eq!(
            place(&m, "t", 1, 3),
            Err(AssignError::NotEnoughNodes {
                factor: 3,
                nodes: 2
            })
        );
        assert_eq!(place(&m, "t", 1, 0), Err(AssignError::ZeroFactor));
    }

    #[test]
    fn a_placement_the_state_cannot_hold_is_refused_on_apply() {
        let mut m = cluster(&[1, 1]);
        let cfg = TopicConfig::from_log_config(&LogConfig::default());
        for (placement, why) in [
            (
                vec![Placement::replicated(&[
                    (NodeId(1), ShardId(0)),
                    (NodeId(5), ShardId(0)),
                ])],
                "not registered",
            ),
            (
                vec![Placement::replicated(&[(NodeId(1), ShardId(3))])],
                "not shard 3",
            ),
            (
                vec![Placement::replicated(&[
                    (NodeId(1), ShardId(0)),
                    (NodeId(1), ShardId(0)),
                ])],
                "two replicas",
            ),
        ] {
            match m.apply(&Command::CreateTopic {
                name: "t".into(),
                partitions: 1,
                config: cfg.clone(),
                placement,
            }) {
                Outcome::BadPlacement(e) => assert!(e.contains(why), "{e}"),
                other => panic!("{why}: {other:?}"),
            }
        }
        assert!(m.catalog.topics.is_empty());
    }

    #[test]
    fn leader_reports_only_move_forward() {
        let mut m = cluster(&[1, 1, 1]);
        let placement = place(&m, "t", 1, 3).unwrap();
        let p = placement[0].clone();
        let Outcome::Created(t) = m.apply(&Command::CreateTopic {
            name: "t".into(),
            partitions: 1,
            config: TopicConfig::from_log_config(&LogConfig::default()),
            placement,
        }) else {
            panic!("not created")
        };
        let report = |node: NodeId, term| Command::PartitionLeader {
            topic_id: t.id,
            partition: 0,
            node: node.0,
            shard: p.shard_on(node).unwrap().0,
            term,
            in_sync: vec![node.0],
        };
        assert_eq!(m.apply(&report(p.replicas[1], 5)), Outcome::LeaderRecorded);
        assert_eq!(m.apply(&report(p.replicas[2], 4)), Outcome::Stale);
        assert_eq!(m.leader(t.id, 0).unwrap().node, p.replicas[1]);
        assert_eq!(m.apply(&report(p.replicas[2], 6)), Outcome::LeaderRecorded);
        assert_eq!(m.leader(t.id, 0).unwrap().term, 6);
        m.apply(&Command::DeleteTopic { name: "t".into() });
        assert!(m.leader(t.id, 0).is_none());
        assert_eq!(m.apply(&report(p.replicas[2], 7)), Outcome::Stale);
    }
}
