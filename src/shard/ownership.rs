//! The default shard for a new partition: a stable hash of topic name and partition number, the
//! same on every shard and in every build. It only proposes a place when a topic is created (and
//! re-places a partition whose recorded shard no longer exists); where a partition lives is then
//! the catalog's recorded [`super::placement::Placement`].

use crate::types::ShardId;

/// The shard the hash proposes for `partition` of `topic` on a broker with `shards` shards.
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

    fn shards_of(topic: &str, partitions: u32, shards: usize) -> Vec<u16> {
        (0..partitions)
            .map(|p| owner_shard(topic, p, shards).0)
            .collect()
    }

    #[test]
    fn pinned_values() {
        // Old catalogs (without placement) are placed with this hash at start: changing it
        // would move their partitions between shards.
        assert_eq!(shards_of("orders", 4, 2), [1, 1, 0, 0]);
        assert_eq!(shards_of("orders", 4, 3), [2, 2, 2, 1]);
        assert_eq!(shards_of("orders", 4, 4), [3, 1, 2, 2]);
        assert_eq!(shards_of("meta", 6, 4), [1, 3, 0, 0, 2, 2]);
        assert_eq!(shards_of("t", 8, 1), [0; 8]);
    }

    #[test]
    fn spread() {
        let mut counts = [0usize; 4];
        for p in 0..400 {
            counts[usize::from(owner_shard("events", p, 4).0)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
    }
}
