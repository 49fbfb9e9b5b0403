//! The leader hint of a partition response (Produce, Fetch and ListOffsets from version 1): where
//! the partition's leader is, as far as the answering broker knows. Kafka's KIP-951 carries
//! `CurrentLeader { LeaderId, LeaderEpoch }` as a tagged field; here it is three fixed fields in
//! every partition response of those versions, -1 where unknown or not meaningful.

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::{Reader, WireError};

/// `leader_node`, `leader_shard`, `leader_epoch`.
pub(super) const LEADER_HINT_BYTES: usize = 4 + 2 + 4;

/// Where the leader of a partition is. Meaningful with `NOT_LEADER` (the broker names the
/// leader it knows of, if any); -1 everywhere otherwise. A client moves the partition to the
/// hinted leader only when `leader_epoch` is newer than the epoch its metadata has, and
/// refreshes its metadata either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaderHint {
    /// The leader's node id, -1 if unknown.
    pub leader_node: i32,
    /// The shard of `leader_node` that serves the partition, -1 if unknown.
    pub leader_shard: i16,
    /// The leader's epoch, -1 if unknown.
    pub leader_epoch: i32,
}

impl LeaderHint {
    /// Nothing known: every field -1.
    pub const UNKNOWN: LeaderHint = LeaderHint {
        leader_node: -1,
        leader_shard: -1,
        leader_epoch: -1,
    };

    /// The leader's node and shard, if the hint names them.
    pub fn leader(&self) -> Option<(u32, u16)> {
        let node = u32::try_from(self.leader_node).ok()?;
        let shard = u16::try_from(self.leader_shard).ok()?;
        Some((node, shard))
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        out.put_i32(self.leader_node);
        out.put_i16(self.leader_shard);
        out.put_i32(self.leader_epoch);
    }

    pub(super) fn decode(r: &mut Reader<Bytes>) -> Result<Self, WireError> {
        Ok(LeaderHint {
            leader_node: r.i32("topics[].partitions[].leader_node")?,
            leader_shard: r.i16("topics[].partitions[].leader_shard")?,
            leader_epoch: r.i32("topics[].partitions[].leader_epoch")?,
        })
    }
}

impl Default for LeaderHint {
    fn default() -> Self {
        LeaderHint::UNKNOWN
    }
}
