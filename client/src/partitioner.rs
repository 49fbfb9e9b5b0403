//! Choosing a partition for a record, without I/O.
//!
//! - A record with an explicit partition goes there (the producer checks it exists).
//! - A record with a key goes to `(murmur2(key) & 0x7fffffff) % partitions`: the hash and the
//!   formula of Apache Kafka's default partitioner (`Utils.murmur2`, `Utils.toPositive`), so a
//!   key lands on the same partition as with a Java or librdkafka producer using the default
//!   partitioner, and always on the same one while the partition count stays the same.
//! - A record without a key is "sticky": records go to one partition until about `batch_bytes`
//!   of them went there, then to the next partition, round robin. Consecutive unkeyed records so
//!   fill whole batches instead of one small batch per partition (Kafka's "uniform sticky"
//!   partitioner, KIP-794), and over time every partition gets the same share. The producer
//!   also moves on as soon as the partition's open batch is full ([`Partitioner::batch_full`],
//!   Kafka's KIP-480): a record that does not fit starts a batch on the next partition rather
//!   than a sliver of a batch on this one, which would travel alone in a request of its own.

use ahash::AHashMap;
use std::sync::Arc;

/// Apache Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with seed `0x9747b28c`, bytes read
/// little-endian in groups of four.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() == 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner gives `key` among `partitions`.
///
/// # Panics
/// If `partitions` is 0.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    ((murmur2(key) as u32) & 0x7fff_ffff) % partitions
}

/// Where unkeyed records of one topic go now.
#[derive(Clone, Copy, Debug)]
struct Sticky {
    partition: u32,
    bytes: usize,
}

/// Picks partitions for one producer. Lives with the producer, on its executor.
#[derive(Debug)]
pub struct Partitioner {
    /// Bytes of unkeyed records a partition takes before the next one's turn.
    sticky_bytes: usize,
    sticky: AHashMap<Arc<str>, Sticky>,
    /// Where a topic's sticky rotation starts, so producers started together spread out.
    start: u32,
}

impl Partitioner {
    /// A partitioner that moves unkeyed records on after `sticky_bytes` (the producer's
    /// `batch_bytes`); `start` offsets where each topic's rotation begins.
    pub fn new(sticky_bytes: usize, start: u32) -> Self {
        Partitioner {
            sticky_bytes: sticky_bytes.max(1),
            sticky: AHashMap::new(),
            start,
        }
    }

    /// The partition for a record of `topic` (which has `partitions` partitions) with `key`,
    /// whose key and value take `record_bytes`.
    ///
    /// # Panics
    /// If `partitions` is 0.
    pub fn partition(
        &mut self,
        topic: &Arc<str>,
        key: Option<&[u8]>,
        partitions: u32,
        record_bytes: usize,
    ) -> u32 {
        assert!(partitions > 0, "a topic has at least one partition");
        if let Some(key) = key {
            return partition_for_key(key, partitions);
        }
        let start = self.start;
        let sticky_bytes = self.sticky_bytes;
        let s = match self.sticky.get_mut(&**topic) {
            Some(s) => s,
            None => self.sticky.entry(topic.clone()).or_insert(Sticky {
                partition: start % partitions,
                bytes: 0,
            }),
        };
        if s.partition >= partitions {
            // The topic was re-created with fewer partitions.
            s.partition %= partitions;
        }
        if s.bytes >= sticky_bytes {
            s.partition = (s.partition + 1) % partitions;
            s.bytes = 0;
        }
        s.bytes = s.bytes.saturating_add(record_bytes.max(1));
        s.partition
    }

    /// The open batch of `partition`, where [`Partitioner::partition`] just sent an unkeyed
    /// record of `topic`, cannot take that record: moves the topic's sticky rotation to the next
    /// partition and returns it, with the record counted there.
    pub fn batch_full(
        &mut self,
        topic: &Arc<str>,
        partition: u32,
        partitions: u32,
        record_bytes: usize,
    ) -> u32 {
        assert!(partitions > 0, "a topic has at least one partition");
        let Some(s) = self.sticky.get_mut(&**topic) else {
            return partition;
        };
        if s.partition != partition || partitions == 1 {
            return partition;
        }
        s.partition = (partition + 1) % partitions;
        s.bytes = record_bytes.max(1);
        s.partition
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Apache Kafka's `UtilsTest.testMurmur2` vectors.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (data, want) in cases {
            assert_eq!(murmur2(data), want, "{}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn keys_always_land_on_the_same_partition() {
        let mut p = Partitioner::new(100, 0);
        let t: Arc<str> = Arc::from("t");
        for i in 0..200u32 {
            let key = format!("key-{i}");
            let a = p.partition(&t, Some(key.as_bytes()), 7, 10);
            assert_eq!(a, partition_for_key(key.as_bytes(), 7));
            assert_eq!(a, p.partition(&t, Some(key.as_bytes()), 7, 10));
            assert!(a < 7);
        }
        // toPositive of "21": -973932308 & 0x7fffffff = 1173551340.
        assert_eq!(partition_for_key(b"21", 1_000_000_000), 173_551_340);
    }

    #[test]
    fn unkeyed_records_stick_then_rotate() {
        let mut p = Partitioner::new(100, 2);
        let t: Arc<str> = Arc::from("t");
        let picks: Vec<u32> = (0..12).map(|_| p.partition(&t, None, 3, 50)).collect();
        // Two 50-byte records per partition, starting at partition 2.
        assert_eq!(picks, [2, 2, 0, 0, 1, 1, 2, 2, 0, 0, 1, 1]);
        // Fewer partitions after a re-creation: still in range.
        assert!(p.partition(&t, None, 1, 50) == 0);
    }

    #[test]
    fn a_full_batch_moves_the_rotation_on() {
        let mut p = Partitioner::new(1000, 0);
        let t: Arc<str> = Arc::from("t");
        assert_eq!(p.partition(&t, None, 3, 50), 0);
        // The batch of partition 0 is full before 1000 bytes went there: the record goes to 1,
        // which then gets its full turn.
        assert_eq!(p.batch_full(&t, 0, 3, 50), 1);
        let picks: Vec<u32> = (0..20).map(|_| p.partition(&t, None, 3, 50)).collect();
        assert_eq!(picks[..19], [1; 19]);
        assert_eq!(picks[19], 2);
        // A stale report (the rotation moved already) changes nothing.
        assert_eq!(p.batch_full(&t, 1, 3, 50), 1);
        assert_eq!(p.partition(&t, None, 3, 50), 2);
        // One partition: nowhere else to go.
        let u: Arc<str> = Arc::from("u");
        assert_eq!(p.partition(&u, None, 1, 50), 0);
        assert_eq!(p.batch_full(&u, 0, 1, 50), 0);
    }
}
