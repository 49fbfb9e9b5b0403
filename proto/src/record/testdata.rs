//! Test vectors and helpers shared by the tests of this module.

use super::{
    crc_of, BatchBuilder, BATCH_HEADER_BYTES, BATCH_LENGTH_OFFSET_BYTES, CRC_AT, MAX_TIMESTAMP_AT,
};

/// Bit-at-a-time CRC-32C (reflected polynomial 0x82F63B78), independent of the crc32c crate.
pub(super) fn reference_crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Recomputes and stores the CRC after a test edits a covered byte on purpose.
pub(super) fn fix_crc(batch: &mut [u8]) {
    let crc = crc_of(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A batch with the given header fields around `records`, with correct length and CRC.
pub(super) fn raw_batch(attributes: i16, record_count: i32, records: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    let batch_length = (BATCH_HEADER_BYTES - BATCH_LENGTH_OFFSET_BYTES + records.len()) as i32;
    b.extend_from_slice(&batch_length.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&(record_count - 1).to_be_bytes());
    b.extend_from_slice(&1000i64.to_be_bytes());
    b.extend_from_slice(&1000i64.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&record_count.to_be_bytes());
    b.extend_from_slice(records);
    fix_crc(&mut b);
    b
}

pub(super) fn sample_batch(n: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(1_700_000_000_000);
    for i in 0..n {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        b.push(
            1_700_000_000_000 + i as i64,
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            &[(b"h".as_slice(), Some(b"v".as_slice()))],
        );
    }
    b.finish().to_vec()
}

// The test vectors below are the "uncompressed record", "gzipped record", "snappy
// compressed record" and "empty record" batches of sarama's record_test.go, a Go client
// tested against real Kafka brokers. sarama writes maxTimestamp 0 there, leader epoch 0,
// producer id 0.
pub(super) const SARAMA_UNCOMPRESSED: &[u8] = &[
    0, 0, 0, 0, 0, 0, 0, 0, // baseOffset
    0, 0, 0, 70, // batchLength
    0, 0, 0, 0, // partitionLeaderEpoch
    2, // magic
    84, 121, 97, 253, // crc
    0, 0, // attributes
    0, 0, 0, 0, // lastOffsetDelta
    0, 0, 1, 88, 141, 205, 89, 56, // baseTimestamp 1479847795000
    0, 0, 0, 0, 0, 0, 0, 0, // maxTimestamp
    0, 0, 0, 0, 0, 0, 0, 0, // producerId
    0, 0, // producerEpoch
    0, 0, 0, 0, // baseSequence
    0, 0, 0, 1,  // recordCount
    40, // length 20
    0,  // attributes
    10, // timestampDelta 5
    0,  // offsetDelta 0
    8,  // keyLength 4
    1, 2, 3, 4, // key
    6, // valueLength 3
    5, 6, 7, // value
    2, // headerCount 1
    6, // headerKeyLength 3
    8, 9, 10, // headerKey
    4,  // headerValueLength 2
    11, 12, // headerValue
];

pub(super) const SARAMA_GZIP: &[u8] = &[
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 95, 0, 0, 0, 0, 2, 231, 74, 206, 165, 0, 1, 0, 0, 0, 0, 0, 0,
    1, 88, 141, 205, 89, 56, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 1, 31, 139, 8, 0, 0, 9, 110, 136, 0, 255, 0, 21, 0, 234, 255, 40, 0, 10, 0, 8, 1, 2, 3,
    4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12, 3, 0, 173, 201, 88, 103, 21, 0, 0, 0,
];

pub(super) const SARAMA_SNAPPY: &[u8] = &[
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 72, 0, 0, 0, 0, 2, 21, 0, 159, 97, 0, 2, 0, 0, 0, 0, 0, 0, 1,
    88, 141, 205, 89, 56, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 21, 80, 40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12,
];

pub(super) const SARAMA_EMPTY: &[u8] = &[
    0, 0, 0, 0, 0, 0, 0, 0, // baseOffset
    0, 0, 0, 49, // batchLength
    0, 0, 0, 0, // partitionLeaderEpoch
    2, // magic
    89, 95, 183, 221, // crc
    0, 0, // attributes
    0, 0, 0, 0, // lastOffsetDelta
    0, 0, 0, 0, 0, 0, 0, 0, // baseTimestamp
    0, 0, 0, 0, 0, 0, 0, 0, // maxTimestamp
    0, 0, 0, 0, 0, 0, 0, 0, // producerId
    0, 0, // producerEpoch
    0, 0, 0, 0, // baseSequence
    0, 0, 0, 0, // recordCount
];

/// A sarama vector with maxTimestamp raised to the record's timestamp (base + 5) so it
/// passes validate_batch, CRC recomputed.
pub(super) fn sarama_fixed(vector: &[u8]) -> Vec<u8> {
    let mut b = vector.to_vec();
    b[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8]
        .copy_from_slice(&(1_479_847_795_005i64).to_be_bytes());
    fix_crc(&mut b);
    b
}
