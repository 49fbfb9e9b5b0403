//! Deterministic record batches for crash tests and benchmarks: the batch for a given
//! `(seed, seq)` is always the same bytes, so a test can check what a killed process acknowledged
//! without having kept a copy.

use bytes::BytesMut;

use quill_proto::record::{self, BatchBuilder};

/// The batch number `seq` of a stream seeded by `seed`: 1 to 16 records of 0 to 2047 bytes, keyed
/// `seq-<seq>-<i>` so the sequence number can be read back from the log ([`seq_of`]).
pub fn synthetic_batch(seed: u64, seq: u64) -> BytesMut {
    let mut x = splitmix(seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let records = 1 + (x % 16) as usize;
    let mut b = BatchBuilder::new(1_700_000_000_000 + seq as i64);
    for i in 0..records {
        x = splitmix(x);
        let len = (x % 2048) as usize;
        let mut value = vec![0u8; len];
        let mut y = x;
        for chunk in value.chunks_mut(8) {
            y = splitmix(y);
            chunk.copy_from_slice(&y.to_le_bytes()[..chunk.len()]);
        }
        let key = format!("seq-{seq}-{i}");
        b.push(
            1_700_000_000_000 + seq as i64,
            Some(key.as_bytes()),
            Some(&value),
            &[],
        );
    }
    b.finish()
}

/// The sequence number of a batch made by [`synthetic_batch`], read from its first key.
pub fn seq_of(batch: &[u8]) -> Option<u64> {
    let first = record::records(batch).ok()?.next()?.ok()?;
    let key = std::str::from_utf8(first.key?).ok()?;
    key.strip_prefix("seq-")?.split('-').next()?.parse().ok()
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_deterministic_valid_and_carry_their_seq() {
        for seq in [0u64, 1, 99, 123_456] {
            let a = synthetic_batch(7, seq);
            assert_eq!(a, synthetic_batch(7, seq));
            record::validate_batch(&a, 1 << 20).unwrap();
            assert_eq!(seq_of(&a), Some(seq));
        }
        assert_ne!(synthetic_batch(7, 1), synthetic_batch(8, 1));
    }
}
