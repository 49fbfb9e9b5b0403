//! Building an uncompressed v2 batch, for producers, tests and the load harness.

use bytes::{BufMut, BytesMut};

use super::varint::{encode_varint, varint_len, varlong_len, Scratch};
use super::{
    BATCH_HEADER_BYTES, BATCH_LENGTH_OFFSET_BYTES, CRC_AT, CRC_COVERED_FROM, MAGIC_V2, NO_TIMESTAMP,
};

/// Capacity reserved by [`BatchBuilder::new`]: one page, enough for a few small records
/// before the buffer grows (it grows by doubling).
const DEFAULT_CAPACITY_BYTES: usize = 4096;

/// Appends records to one buffer and patches the header (lengths, counts, CRC) in
/// [`BatchBuilder::finish`].
///
/// The batch it produces has baseOffset 0 (the broker stamps the real one), leader epoch -1,
/// CreateTime timestamps, no compression, and producer id, epoch and base sequence -1 unless
/// [`BatchBuilder::with_producer`] sets them.
///
/// Misuse is a programmer error and panics: a batch over `i32::MAX` bytes or records, a
/// timestamp whose delta from the base overflows, or `finish` on an empty builder.
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    /// The batch so far: 61 header bytes (zero until `finish`) then the encoded records.
    buf: BytesMut,
    base_timestamp_ms: i64,
    max_timestamp_ms: i64,
    record_count: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

fn nullable_len(bytes: Option<&[u8]>) -> i32 {
    bytes.map_or(-1, |b| {
        i32::try_from(b.len()).expect("key, value or header longer than i32::MAX bytes")
    })
}

fn nullable_encoded_bytes(bytes: Option<&[u8]>) -> usize {
    varint_len(nullable_len(bytes)) + bytes.map_or(0, <[u8]>::len)
}

fn put_nullable(buf: &mut BytesMut, bytes: Option<&[u8]>) {
    encode_varint(nullable_len(bytes), buf);
    if let Some(b) = bytes {
        buf.put_slice(b);
    }
}

impl BatchBuilder {
    /// A builder whose records' timestamps are stored relative to `base_timestamp_ms`, usually
    /// the first record's timestamp. Records may be older than the base, as long as one is not
    /// (see [`BatchBuilder::finish`]).
    pub fn new(base_timestamp_ms: i64) -> Self {
        Self::with_capacity(base_timestamp_ms, DEFAULT_CAPACITY_BYTES)
    }

    /// Like [`BatchBuilder::new`], reserving `capacity_bytes` for the whole batch up front.
    pub fn with_capacity(base_timestamp_ms: i64, capacity_bytes: usize) -> Self {
        let mut buf = BytesMut::with_capacity(capacity_bytes.max(BATCH_HEADER_BYTES));
        buf.put_bytes(0, BATCH_HEADER_BYTES);
        BatchBuilder {
            buf,
            base_timestamp_ms,
            max_timestamp_ms: i64::MIN,
            record_count: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }

    /// Marks the batch as coming from an idempotent producer.
    pub fn with_producer(
        mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Appends one record. `None` for a key, value or header value is Kafka's null (length -1).
    pub fn push(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) {
        let timestamp_delta = timestamp_ms
            .checked_sub(self.base_timestamp_ms)
            .expect("record timestamp too far from the batch's base timestamp");
        let offset_delta = self.record_count;
        let header_count = i32::try_from(headers.len()).expect("more than i32::MAX headers");

        // Size the record first so its length prefix can be written before it, in one pass.
        let mut body_bytes = 1 // attributes
            + varlong_len(timestamp_delta)
            + varint_len(offset_delta)
            + nullable_encoded_bytes(key)
            + nullable_encoded_bytes(value)
            + varint_len(header_count);
        for &(k, v) in headers {
            body_bytes = body_bytes
                .saturating_add(nullable_encoded_bytes(Some(k)))
                .saturating_add(nullable_encoded_bytes(v));
        }
        let body_length = i32::try_from(body_bytes).expect("record longer than i32::MAX bytes");

        let buf = &mut self.buf;
        buf.reserve(varint_len(body_length) + body_bytes);
        // The fixed-order small fields go through one stack buffer and one copy.
        let mut prefix = Scratch::new();
        prefix.varint(body_length);
        prefix.byte(0); // attributes: unused
        prefix.varlong(timestamp_delta);
        prefix.varint(offset_delta);
        prefix.varint(nullable_len(key));
        buf.put_slice(prefix.as_slice());
        if let Some(k) = key {
            buf.put_slice(k);
        }
        put_nullable(buf, value);
        encode_varint(header_count, buf);
        for &(k, v) in headers {
            put_nullable(buf, Some(k));
            put_nullable(buf, v);
        }

        self.record_count = self
            .record_count
            .checked_add(1)
            .expect("more than i32::MAX records in a batch");
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp_ms);
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.record_count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Size the finished batch will have, header included.
    pub fn encoded_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Fills in the header and CRC and returns the batch.
    ///
    /// # Panics
    /// If no record was pushed (a v2 batch holds at least one), if the largest record timestamp
    /// is below the base timestamp (validation would reject the batch), or if the batch is over
    /// `i32::MAX` bytes.
    pub fn finish(mut self) -> BytesMut {
        assert!(
            self.record_count > 0,
            "BatchBuilder::finish on an empty builder: a batch holds at least one record"
        );
        assert!(
            self.max_timestamp_ms >= self.base_timestamp_ms
                || self.base_timestamp_ms == NO_TIMESTAMP,
            "every record timestamp ({} at most) is below the base timestamp {}",
            self.max_timestamp_ms,
            self.base_timestamp_ms
        );
        let batch_length = i32::try_from(self.buf.len() - BATCH_LENGTH_OFFSET_BYTES)
            .expect("batch longer than i32::MAX bytes");

        let mut header = [0u8; BATCH_HEADER_BYTES];
        let mut h = &mut header[..];
        h.put_i64(0); // baseOffset: stamped by the broker
        h.put_i32(batch_length);
        h.put_i32(-1); // partitionLeaderEpoch: stamped by the leader
        h.put_i8(MAGIC_V2);
        h.put_u32(0); // crc: below
        h.put_i16(0); // attributes: no compression, CreateTime, not transactional or control
        h.put_i32(self.record_count - 1); // lastOffsetDelta
        h.put_i64(self.base_timestamp_ms);
        h.put_i64(self.max_timestamp_ms);
        h.put_i64(self.producer_id);
        h.put_i16(self.producer_epoch);
        h.put_i32(self.base_sequence);
        h.put_i32(self.record_count);
        debug_assert!(h.is_empty());

        self.buf[..BATCH_HEADER_BYTES].copy_from_slice(&header);
        let crc = crc32c::crc32c(&self.buf[CRC_COVERED_FROM..]);
        self.buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testdata::{reference_crc32c, SARAMA_UNCOMPRESSED};
    use crate::record::{validate_batch, BatchHeader, Compression, TimestampType};

    /// The sarama record (see batch.rs), built with our builder.
    fn sarama_record_batch() -> BytesMut {
        let mut b = BatchBuilder::new(1_479_847_795_000);
        b.push(
            1_479_847_795_005,
            Some(&[1, 2, 3, 4]),
            Some(&[5, 6, 7]),
            &[(&[8, 9, 10], Some(&[11, 12]))],
        );
        b.finish()
    }

    #[test]
    fn golden_batch_byte_for_byte() {
        let built = sarama_record_batch();
        // Laid out by hand from the format; the CRC comes from the bit-at-a-time reference.
        let mut expected: Vec<u8> = vec![
            0, 0, 0, 0, 0, 0, 0, 0, // baseOffset 0
            0, 0, 0, 70, // batchLength: 61 - 12 + 21
            0xff, 0xff, 0xff, 0xff, // partitionLeaderEpoch -1
            2,    // magic
            0, 0, 0, 0, // crc, below
            0, 0, // attributes
            0, 0, 0, 0, // lastOffsetDelta 0
            0, 0, 0x01, 0x58, 0x8d, 0xcd, 0x59, 0x38, // baseTimestamp 1479847795000
            0, 0, 0x01, 0x58, 0x8d, 0xcd, 0x59, 0x3d, // maxTimestamp 1479847795005
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // producerId -1
            0xff, 0xff, // producerEpoch -1
            0xff, 0xff, 0xff, 0xff, // baseSequence -1
            0, 0, 0, 1, // recordCount 1
        ];
        // The records section is identical to sarama's.
        expected.extend_from_slice(&SARAMA_UNCOMPRESSED[BATCH_HEADER_BYTES..]);
        let crc = reference_crc32c(&expected[CRC_COVERED_FROM..]);
        expected[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(&built[..], &expected[..]);
    }

    #[test]
    fn header_defaults_and_producer() {
        let mut b = BatchBuilder::new(100).with_producer(77, 3, 1000);
        assert!(b.is_empty());
        assert_eq!(b.encoded_bytes(), BATCH_HEADER_BYTES);
        b.push(120, Some(b"k"), Some(b"v"), &[]);
        b.push(110, None, Some(b"v"), &[]);
        assert_eq!(b.len(), 2);
        let size = b.encoded_bytes();
        let batch = b.finish();
        assert_eq!(batch.len(), size);
        let h = validate_batch(&batch, 1 << 20).unwrap();
        assert_eq!(
            h,
            BatchHeader {
                base_offset: 0,
                batch_length: (size - 12) as i32,
                partition_leader_epoch: -1,
                magic: 2,
                crc: crate::record::crc_of(&batch),
                attributes: 0,
                last_offset_delta: 1,
                base_timestamp: 100,
                max_timestamp: 120,
                producer_id: 77,
                producer_epoch: 3,
                base_sequence: 1000,
                record_count: 2,
            }
        );
        assert_eq!(h.compression(), Compression::None);
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);

        let mut b = BatchBuilder::new(0);
        b.push(0, None, None, &[]);
        let h = BatchHeader::parse(&b.finish()).unwrap();
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (-1, -1, -1)
        );
    }

    #[test]
    fn encoded_bytes_tracks_every_push() {
        let mut b = BatchBuilder::with_capacity(0, 0);
        let big = vec![7u8; 300];
        for i in 0..50i64 {
            let before = b.encoded_bytes();
            b.push(
                i * 1000,
                Some(&big[..i as usize]),
                None,
                &[(b"hk", Some(&big))],
            );
            assert!(b.encoded_bytes() > before);
        }
        let size = b.encoded_bytes();
        assert_eq!(b.finish().len(), size);
    }

    #[test]
    #[should_panic(expected = "empty builder")]
    fn finishing_an_empty_builder_is_a_programmer_error() {
        let _ = BatchBuilder::new(0).finish();
    }

    #[test]
    #[should_panic(expected = "below the base timestamp")]
    fn records_all_before_the_base_is_a_programmer_error() {
        let mut b = BatchBuilder::new(100);
        b.push(99, None, None, &[]);
        let _ = b.finish();
    }
}
