//! Errors of the record-batch format. Every one is an operating error: the bytes came from a
//! socket or a disk and are not what the format says. Misuse of the builder by our own code is an
//! assertion instead.

use std::fmt;

/// A field of a record, named as in the Kafka protocol guide, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordField {
    Length,
    Attributes,
    TimestampDelta,
    OffsetDelta,
    KeyLength,
    Key,
    ValueLength,
    Value,
    HeaderCount,
    HeaderKeyLength,
    HeaderKey,
    HeaderValueLength,
    HeaderValue,
}

impl fmt::Display for RecordField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordField::Length => "length",
            RecordField::Attributes => "attributes",
            RecordField::TimestampDelta => "timestampDelta",
            RecordField::OffsetDelta => "offsetDelta",
            RecordField::KeyLength => "keyLength",
            RecordField::Key => "key",
            RecordField::ValueLength => "valueLength",
            RecordField::Value => "value",
            RecordField::HeaderCount => "headerCount",
            RecordField::HeaderKeyLength => "headerKeyLength",
            RecordField::HeaderKey => "headerKey",
            RecordField::HeaderValueLength => "headerValueLength",
            RecordField::HeaderValue => "headerValue",
        })
    }
}

/// Why a record batch (or a varint inside one) was rejected.
///
/// Record indexes count from 0 in the order the records appear in the batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The buffer ends before the batch header, or before the end of the batch it declares.
    #[error("truncated batch: {needed} bytes needed, {available} available")]
    Truncated { needed: usize, available: usize },
    /// `batchLength` is smaller than the rest of the header (49 bytes), or negative.
    #[error("batchLength {batch_length} is below 49, the size of the header it must cover")]
    BadBatchLength { batch_length: i32 },
    /// The magic byte is not 2; older message formats are not accepted.
    #[error("magic byte is {0}; only record batch format v2 (magic 2) is supported")]
    BadMagic(i8),
    /// The compression bits of `attributes` name a codec that does not exist (5, 6 or 7).
    #[error("attributes name compression codec {0}; known codecs are 0 to 4")]
    UnknownCompression(u8),
    /// The whole batch (`12 + batchLength`) is larger than the configured limit.
    #[error("batch of {bytes} bytes is over the limit of {max} bytes")]
    TooLarge { bytes: usize, max: usize },
    /// The buffer is not exactly one batch: `12 + batchLength` differs from its length.
    #[error("batch declares {declared} bytes but the buffer holds {actual}")]
    LengthMismatch { declared: usize, actual: usize },
    /// The stored CRC-32C does not match the bytes from `attributes` to the end of the batch.
    #[error("CRC-32C mismatch: batch stores {stored:#010x}, bytes give {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    /// `recordCount` is zero or negative.
    #[error("recordCount is {record_count}; a batch must hold at least one record")]
    BadRecordCount { record_count: i32 },
    /// `lastOffsetDelta` is not `recordCount - 1`.
    #[error("lastOffsetDelta is {last_offset_delta} but recordCount is {record_count}; expected recordCount - 1")]
    BadLastOffsetDelta {
        last_offset_delta: i32,
        record_count: i32,
    },
    /// `maxTimestamp` is before `baseTimestamp` (and neither is -1, "no timestamp").
    #[error("maxTimestamp {max_timestamp} is before baseTimestamp {base_timestamp}")]
    BadMaxTimestamp {
        base_timestamp: i64,
        max_timestamp: i64,
    },
    /// Records were asked for, but the batch is compressed and Quill does not decompress.
    #[error("batch is compressed; its records cannot be read without decompressing it")]
    Compressed,
    /// A varint runs past the end of its buffer.
    #[error("varint runs past the end of the buffer")]
    VarintTruncated,
    /// A varint has more bytes than its width allows, or its last byte carries bits beyond it.
    #[error("varint is longer than {bytes_max} bytes or overflows its width")]
    VarintOverlong { bytes_max: usize },
    /// A field of a record runs past the end of the record (its `length`), or, for the length
    /// itself, past the end of the batch.
    #[error("record {index}: {field} runs past the end of the record")]
    RecordTruncated { index: i32, field: RecordField },
    /// A varint field of a record is overlong (see [`BatchError::VarintOverlong`]).
    #[error("record {index}: {field} is an overlong varint")]
    RecordVarintOverlong { index: i32, field: RecordField },
    /// A record's `length` is negative or larger than what is left of the batch.
    #[error(
        "record {index}: length {length} does not fit in the {available} bytes left in the batch"
    )]
    BadRecordLength {
        index: i32,
        length: i32,
        available: usize,
    },
    /// A length or count field of a record is negative where it may not be (below -1 for a
    /// nullable key or value, below 0 for a header key or the header count).
    #[error("record {index}: {field} is {length}, which is not a valid length or count")]
    BadFieldLength {
        index: i32,
        field: RecordField,
        length: i32,
    },
    /// A record's fields end before its declared `length` does.
    #[error("record {index}: {bytes} bytes left over after its last header")]
    RecordTrailingBytes { index: i32, bytes: usize },
    /// A record's `offsetDelta` is not its position in the batch.
    #[error("record {index}: offsetDelta is {offset_delta}, expected {index}")]
    BadOffsetDelta { index: i32, offset_delta: i32 },
    /// The records end before `recordCount` of them were read.
    #[error("batch declares {declared} records but holds only {found}")]
    TooFewRecords { declared: i32, found: i32 },
    /// Bytes follow the last of the `recordCount` records.
    #[error("{bytes} bytes follow the last of the {record_count} declared records")]
    TrailingBytes { record_count: i32, bytes: usize },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testdata::{fix_crc, raw_batch, sample_batch, SARAMA_EMPTY, SARAMA_GZIP};
    use crate::record::{batches, decode_varint, records, validate_batch, BatchHeader};

    /// A number per variant. The match is exhaustive, so a new variant does not compile until it
    /// is numbered here, and `every_variant_is_produced` then fails until a scenario below
    /// produces it.
    fn variant(e: &BatchError) -> usize {
        match e {
            BatchError::Truncated { .. } => 0,
            BatchError::BadBatchLength { .. } => 1,
            BatchError::BadMagic(_) => 2,
            BatchError::UnknownCompression(_) => 3,
            BatchError::TooLarge { .. } => 4,
            BatchError::LengthMismatch { .. } => 5,
            BatchError::BadCrc { .. } => 6,
            BatchError::BadRecordCount { .. } => 7,
            BatchError::BadLastOffsetDelta { .. } => 8,
            BatchError::BadMaxTimestamp { .. } => 9,
            BatchError::Compressed => 10,
            BatchError::VarintTruncated => 11,
            BatchError::VarintOverlong { .. } => 12,
            BatchError::RecordTruncated { .. } => 13,
            BatchError::RecordVarintOverlong { .. } => 14,
            BatchError::BadRecordLength { .. } => 15,
            BatchError::BadFieldLength { .. } => 16,
            BatchError::RecordTrailingBytes { .. } => 17,
            BatchError::BadOffsetDelta { .. } => 18,
            BatchError::TooFewRecords { .. } => 19,
            BatchError::TrailingBytes { .. } => 20,
        }
    }
    const VARIANTS: usize = 21;

    fn edited(edit: impl FnOnce(&mut Vec<u8>), crc: bool) -> Vec<u8> {
        let mut b = sample_batch(2);
        edit(&mut b);
        if crc {
            fix_crc(&mut b);
        }
        b
    }

    #[test]
    fn every_variant_is_produced() {
        let max = 1 << 20;
        let good = sample_batch(2);
        let mut gzip = SARAMA_GZIP.to_vec();
        gzip[35..43].copy_from_slice(&1_479_847_795_005i64.to_be_bytes());
        fix_crc(&mut gzip);
        let errors = [
            validate_batch(&good[..10], max).unwrap_err(),
            BatchHeader::parse(&edited(|b| b[11] = 1, false)).unwrap_err(),
            validate_batch(&edited(|b| b[16] = 0, false), max).unwrap_err(),
            validate_batch(&edited(|b| b[22] = 7, true), max).unwrap_err(),
            validate_batch(&good, 61).unwrap_err(),
            validate_batch(&good[..good.len() - 1], max).unwrap_err(),
            validate_batch(&edited(|b| b[60] ^= 1, false), max).unwrap_err(),
            validate_batch(SARAMA_EMPTY, max).unwrap_err(),
            validate_batch(&edited(|b| b[26] = 9, true), max).unwrap_err(),
            validate_batch(&edited(|b| b[40] = 0, true), max).unwrap_err(),
            records(&gzip).err().unwrap(),
            decode_varint(&[0x80]).unwrap_err(),
            decode_varint(&[0xff; 5]).unwrap_err(),
            validate_batch(&raw_batch(0, 1, &[0]), max).unwrap_err(),
            validate_batch(&raw_batch(0, 1, &[0xff; 6]), max).unwrap_err(),
            validate_batch(&raw_batch(0, 1, &[2]), max).unwrap_err(),
            validate_batch(&raw_batch(0, 1, &[10, 0, 0, 0, 3, 1]), max).unwrap_err(),
            validate_batch(&raw_batch(0, 1, &[14, 0, 0, 0, 1, 1, 0, 0]), max).unwrap_err(),
            validate_batch(&raw_batch(0, 1, &[12, 0, 0, 2, 1, 1, 0]), max).unwrap_err(),
            validate_batch(&raw_batch(0, 2, &[12, 0, 0, 0, 1, 1, 0]), max).unwrap_err(),
            validate_batch(&raw_batch(0, 1, &[12, 0, 0, 0, 1, 1, 0, 0]), max).unwrap_err(),
        ];
        let mut seen = [false; VARIANTS];
        for (i, e) in errors.iter().enumerate() {
            assert_eq!(variant(e), i, "scenario {i} produced {e:?}");
            seen[variant(e)] = true;
            // Every message is a readable sentence, not a debug dump.
            let message = e.to_string();
            assert!(!message.is_empty() && !message.contains('{'), "{message}");
        }
        assert!(seen.iter().all(|&s| s));
        // A torn tail seen by the batch walker is Truncated too.
        assert!(matches!(
            batches(&good[..good.len() - 1]).next(),
            Some(Err(BatchError::Truncated { .. }))
        ));
    }

    #[test]
    fn messages_name_the_record_and_field() {
        let e = BatchError::RecordTruncated {
            index: 3,
            field: RecordField::HeaderValue,
        };
        assert_eq!(
            e.to_string(),
            "record 3: headerValue runs past the end of the record"
        );
        let e = BatchError::BadCrc {
            stored: 0xdead_beef,
            computed: 1,
        };
        assert_eq!(
            e.to_string(),
            "CRC-32C mismatch: batch stores 0xdeadbeef, bytes give 0x00000001"
        );
    }
}
