//! Record batches as Raft entries: the control batch that stores an empty entry, stamping of
//! offset and term, and the header facts the window keeps ([`BatchMeta`]).
//!
//! The control batch would belong in `quill-proto::record::builder` (its builder cannot set the
//! control attribute); it lives here until the protocol session moves it.

use bytes::{BufMut, Bytes, BytesMut};

use crate::record::{
    crc_of, encode_varint, encode_varlong, set_base_offset, set_partition_leader_epoch,
    validate_batch, BatchError, BatchHeader, BATCH_HEADER_BYTES, BATCH_LENGTH_OFFSET_BYTES,
    MAGIC_V2, NO_TIMESTAMP,
};

/// Kafka's control-batch attribute bit (bit 5 of `attributes`).
pub const CONTROL_ATTRIBUTE: i16 = 0x20;
/// The control record type of the batch an empty Raft entry becomes: Kafka's `LEADER_CHANGE`.
pub const CONTROL_TYPE_LEADER_CHANGE: i16 = 2;
/// The control record key's version.
pub(crate) const CONTROL_KEY_VERSION: i16 = 0;
/// The `partitionLeaderEpoch` of a batch nobody has stamped yet (the builder's default).
pub(crate) const UNSTAMPED_EPOCH: i32 = -1;

/// What the window knows about one entry's batch without its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMeta {
    pub base_offset: u64,
    pub last_offset: u64,
    /// `partitionLeaderEpoch`: the Raft term of the entry.
    pub epoch: i32,
    pub bytes: u32,
}

impl BatchMeta {
    /// The offset after the batch.
    pub fn end_offset(&self) -> u64 {
        self.last_offset + 1
    }

    /// The facts of a parsed header.
    pub fn of(h: &BatchHeader) -> BatchMeta {
        BatchMeta {
            base_offset: h.base_offset as u64,
            last_offset: h.last_offset() as u64,
            epoch: h.partition_leader_epoch,
            bytes: h.total_bytes() as u32,
        }
    }
}

/// The term as a batch epoch. Raft terms start at 1 and grow by one per election; one past
/// `i32::MAX` elections is not a state a partition reaches, so this is an assertion.
pub(crate) fn epoch_of(term: u64) -> i32 {
    i32::try_from(term).expect("raft term above i32::MAX")
}

/// The control batch stored for an empty Raft entry at `offset` in `term`: a pure function of
/// its arguments, so every replica writes the same bytes. One control record, key =
/// `version i16 0 | type i16 2` (leader change), value empty, timestamps -1, no producer.
pub fn control_batch(offset: u64, term: u64) -> Bytes {
    let mut key = [0u8; 4];
    key[..2].copy_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    key[2..].copy_from_slice(&CONTROL_TYPE_LEADER_CHANGE.to_be_bytes());

    // The record body, then its length in front of it.
    let mut rec = BytesMut::with_capacity(16);
    rec.put_i8(0); // attributes
    encode_varlong(0, &mut rec); // timestampDelta
    encode_varint(0, &mut rec); // offsetDelta
    encode_varint(key.len() as i32, &mut rec);
    rec.put_slice(&key);
    encode_varint(0, &mut rec); // value: empty, not null
    encode_varint(0, &mut rec); // no headers

    let mut buf = BytesMut::with_capacity(BATCH_HEADER_BYTES + rec.len() + 2);
    buf.put_i64(offset as i64);
    buf.put_i32(0); // batchLength, below
    buf.put_i32(epoch_of(term));
    buf.put_i8(MAGIC_V2);
    buf.put_u32(0); // crc, below
    buf.put_i16(CONTROL_ATTRIBUTE);
    buf.put_i32(0); // lastOffsetDelta
    buf.put_i64(NO_TIMESTAMP);
    buf.put_i64(NO_TIMESTAMP);
    buf.put_i64(-1); // producerId
    buf.put_i16(-1); // producerEpoch
    buf.put_i32(-1); // baseSequence
    buf.put_i32(1); // recordCount
    debug_assert_eq!(buf.len(), BATCH_HEADER_BYTES);
    encode_varint(rec.len() as i32, &mut buf);
    buf.put_slice(&rec);
    let batch_length = (buf.len() - BATCH_LENGTH_OFFSET_BYTES) as i32;
    buf[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc_of(&buf);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    buf.freeze()
}

/// Stamps `offset` and `term` into a batch in place (both outside the CRC).
pub fn stamp(batch: &mut [u8], offset: u64, term: u64) {
    set_base_offset(batch, offset as i64);
    set_partition_leader_epoch(batch, epoch_of(term));
}

/// Checks that `data` is one whole valid batch of at most `batch_bytes_max` bytes and returns
/// its facts.
pub(crate) fn check_batch(data: &[u8], batch_bytes_max: usize) -> Result<BatchMeta, BatchError> {
    validate_batch(data, batch_bytes_max).map(|h| BatchMeta::of(&h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{records, BatchBuilder};

    #[test]
    fn control_batch_is_valid_deterministic_and_stamped() {
        let a = control_batch(100, 7);
        let b = control_batch(100, 7);
        assert_eq!(a, b, "two replicas must write the same bytes");
        let h = validate_batch(&a, 1 << 20).expect("a valid batch");
        assert!(h.is_control());
        assert_eq!(h.base_offset, 100);
        assert_eq!(h.partition_leader_epoch, 7);
        assert_eq!(h.record_count, 1);
        let rec = records(&a).unwrap().next().unwrap().unwrap();
        assert_eq!(rec.key, Some(&[0u8, 0, 0, 2][..]));
        assert_ne!(control_batch(101, 7), a);
        assert_ne!(control_batch(100, 8), a);
        // Only the stamped fields differ between offsets: the CRC does not cover them.
        let mut c = BytesMut::from(&control_batch(5, 3)[..]);
        stamp(&mut c, 100, 7);
        assert_eq!(&c[..], &a[..]);
    }

    #[test]
    fn stamping_keeps_the_crc_valid() {
        let mut b = BatchBuilder::new(10);
        b.push(10, None, Some(b"v"), &[]);
        b.push(11, None, Some(b"w"), &[]);
        let mut batch = b.finish();
        stamp(&mut batch, 1234, 9);
        let meta = check_batch(&batch, 1 << 20).unwrap();
        assert_eq!(
            meta,
            BatchMeta {
                base_offset: 1234,
                last_offset: 1235,
                epoch: 9,
                bytes: batch.len() as u32
            }
        );
    }
}
