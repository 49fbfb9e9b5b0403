//! What a shard exchanges with the replication thread (`transport/`): opaque message bodies
//! addressed by node and shard, over bounded channels both runtimes can await.

use bytes::Bytes;

use crate::types::{NodeId, ShardId};

/// A message for shard `to_shard` of node `to`.
#[derive(Clone, Debug)]
pub struct Outbound {
    pub to: NodeId,
    pub to_shard: ShardId,
    pub body: Bytes,
}

/// What the replication thread hands a shard.
#[derive(Clone, Debug)]
pub enum Inbound {
    Message { from: NodeId, body: Bytes },
    PeerUp(NodeId),
    PeerDown(NodeId),
}

/// One shard's ends of the channels to and from the replication thread.
pub struct ShardLink {
    pub tx: async_channel::Sender<Outbound>,
    pub rx: async_channel::Receiver<Inbound>,
}
