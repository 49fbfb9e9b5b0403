//! Where a partition lives, as data: the node and shard that lead it and its replica set, one
//! [`Placement`] per partition in the catalog. The hash of [`owner_shard`] only proposes a place
//! when a topic is created; from then on the recorded placement is the answer, on every shard and
//! across restarts.
//!
//! Quill is single-node today: every placement names this broker's node (`--node-id`, 0 by
//! default) as leader and sole replica. Replication will record more replicas here.
//!
//! The restart rule ([`settle`]): a partition is served by its recorded shard when that shard
//! exists; a partition whose recorded shard does not exist (the broker restarted with fewer
//! shards) is re-placed on the shard the hash names for the current count, and the catalog is
//! rewritten before any shard starts. A partition is never dropped for want of a shard.

use serde::{Deserialize, Serialize};

use super::ownership::owner_shard;
use crate::types::{NodeId, ShardId};

/// Where one partition lives. Lives in the catalog: every shard holds its own copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredPlacement", into = "StoredPlacement")]
pub struct Placement {
    /// The node that leads the partition.
    pub node: NodeId,
    /// The shard of `node` that owns the partition's log and serves it.
    pub shard: ShardId,
    /// Every node holding a replica, the leader included. In a cluster, `node` and `shard` name
    /// the preferred leader (the first replica); who leads now is the cluster metadata's word.
    pub replicas: Vec<NodeId>,
    /// The shard of each replica on its node, in the order of `replicas`.
    pub replica_shards: Vec<ShardId>,
}

/// `catalog.json`'s form of a placement (`docs/FORMAT.md`, "Topic catalog").
#[derive(Serialize, Deserialize)]
struct StoredPlacement {
    node: u32,
    shard: u16,
    replicas: Vec<u32>,
    /// Left out by single-node brokers before replication: every replica on `shard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replica_shards: Option<Vec<u16>>,
}

impl From<StoredPlacement> for Placement {
    fn from(s: StoredPlacement) -> Placement {
        let replica_shards = match s.replica_shards {
            Some(v) => v.into_iter().map(ShardId).collect(),
            None => vec![ShardId(s.shard); s.replicas.len()],
        };
        Placement {
            node: NodeId(s.node),
            shard: ShardId(s.shard),
            replicas: s.replicas.into_iter().map(NodeId).collect(),
            replica_shards,
        }
    }
}

impl From<Placement> for StoredPlacement {
    fn from(p: Placement) -> StoredPlacement {
        // A single-node placement keeps the form it had before replication.
        let plain = p.replica_shards.iter().all(|&s| s == p.shard);
        StoredPlacement {
            node: p.node.0,
            shard: p.shard.0,
            replicas: p.replicas.into_iter().map(|n| n.0).collect(),
            replica_shards: (!plain).then(|| p.replica_shards.into_iter().map(|s| s.0).collect()),
        }
    }
}

impl Placement {
    /// A partition led by, and replicated only on, `node`.
    pub fn single(node: NodeId, shard: ShardId) -> Placement {
        Placement {
            node,
            shard,
            replicas: vec![node],
            replica_shards: vec![shard],
        }
    }

    /// Replicas on `replicas` (node, shard), the first the preferred leader.
    pub fn replicated(replicas: &[(NodeId, ShardId)]) -> Placement {
        let (node, shard) = replicas[0];
        Placement {
            node,
            shard,
            replicas: replicas.iter().map(|r| r.0).collect(),
            replica_shards: replicas.iter().map(|r| r.1).collect(),
        }
    }

    /// The shard of `node`'s replica, if `node` holds one.
    pub fn shard_on(&self, node: NodeId) -> Option<ShardId> {
        let i = self.replicas.iter().position(|&n| n == node)?;
        self.replica_shards.get(i).copied()
    }

    /// The default choice for a new partition: the hash's shard on this node.
    pub fn choose(topic: &str, partition: u32, shards: usize, node: NodeId) -> Placement {
        Placement::single(node, owner_shard(topic, partition, shards))
    }
}

/// Why [`settle`] changed a partition's placement, for the start-up log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Kept as recorded.
    Kept,
    /// No placement was recorded (a catalog from before placement, or a rebuilt one): derived
    /// with the hash.
    Derived,
    /// The recorded shard does not exist on this broker: moved to another.
    Moved { from: ShardId },
    /// The recorded node is not this broker (its `--node-id` changed): this single-node broker
    /// takes it.
    Rehomed { from: NodeId },
}

/// The restart rule for one partition: its placement on a broker of `shards` shards with node id
/// `node`. `derive_shards` is the shard count a missing placement is derived with (the count the
/// catalog was written for, when it says).
pub fn settle(
    recorded: Option<&Placement>,
    topic: &str,
    partition: u32,
    derive_shards: usize,
    shards: usize,
    node: NodeId,
) -> (Placement, Settled) {
    let (mut p, mut why) = match recorded {
        Some(p) => (p.clone(), Settled::Kept),
        None => (
            Placement::choose(topic, partition, derive_shards, node),
            Settled::Derived,
        ),
    };
    if p.node != node {
        if why == Settled::Kept {
            why = Settled::Rehomed { from: p.node };
        }
        p = Placement::single(node, p.shard);
    }
    if usize::from(p.shard.0) >= shards {
        if why == Settled::Kept {
            why = Settled::Moved { from: p.shard };
        }
        p.shard = owner_shard(topic, partition, shards);
        p.replica_shards = vec![p.shard; p.replicas.len()];
    }
    (p, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_shard_that_exists_is_kept() {
        let p = Placement::single(NodeId(0), ShardId(1));
        for shards in [2, 3, 8] {
            assert_eq!(
                settle(Some(&p), "orders", 0, shards, shards, NodeId(0)),
                (p.clone(), Settled::Kept)
            );
        }
    }

    #[test]
    fn a_missing_shard_is_replaced_by_the_hash_for_the_current_count() {
        let p = Placement::single(NodeId(0), ShardId(3));
        let (q, why) = settle(Some(&p), "orders", 0, 4, 2, NodeId(0));
        assert_eq!(why, Settled::Moved { from: ShardId(3) });
        assert_eq!(q, Placement::single(NodeId(0), owner_shard("orders", 0, 2)));
        let (q, _) = settle(Some(&p), "orders", 0, 4, 1, NodeId(0));
        assert_eq!(q.shard, ShardId(0));
    }

    #[test]
    fn a_missing_placement_is_derived_with_the_count_given() {
        // Pinned in `ownership`: "orders"-1 is shard 1 of 4 and shard 2 of 3; "orders"-0 is
        // shard 3 of 4 and shard 1 of 2.
        let (q, why) = settle(None, "orders", 1, 4, 4, NodeId(0));
        assert_eq!((q.shard, why), (ShardId(1), Settled::Derived));
        // Derived for the 4 shards it was written for, now 3: shard 1 exists and is kept, though
        // the hash for 3 names shard 2.
        let (q, _) = settle(None, "orders", 1, 4, 3, NodeId(0));
        assert_eq!(q.shard, ShardId(1));
        // Derived for 4 shards, now 2: shard 3 does not exist, the hash for 2 decides.
        let (q, why) = settle(None, "orders", 0, 4, 2, NodeId(0));
        assert_eq!((q.shard, why), (ShardId(1), Settled::Derived));
    }

    #[test]
    fn another_node_is_rehomed_here() {
        let p = Placement::single(NodeId(7), ShardId(0));
        let (q, why) = settle(Some(&p), "t", 0, 1, 1, NodeId(1));
        assert_eq!(why, Settled::Rehomed { from: NodeId(7) });
        assert_eq!(q, Placement::single(NodeId(1), ShardId(0)));
    }

    #[test]
    fn replicated_placement_keeps_each_replicas_shard() {
        let p = Placement::replicated(&[
            (NodeId(2), ShardId(1)),
            (NodeId(3), ShardId(0)),
            (NodeId(1), ShardId(1)),
        ]);
        assert_eq!((p.node, p.shard), (NodeId(2), ShardId(1)));
        assert_eq!(p.shard_on(NodeId(3)), Some(ShardId(0)));
        assert_eq!(p.shard_on(NodeId(4)), None);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"node":2,"shard":1,"replicas":[2,3,1],"replica_shards":[1,0,1]}"#
        );
        assert_eq!(serde_json::from_str::<Placement>(&json).unwrap(), p);
    }

    #[test]
    fn stored_form_is_plain_integers() {
        let p = Placement::single(NodeId(0), ShardId(1));
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"node":0,"shard":1,"replicas":[0]}"#);
        assert_eq!(serde_json::from_str::<Placement>(&json).unwrap(), p);
    }
}
