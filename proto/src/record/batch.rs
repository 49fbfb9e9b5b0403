//! The batch header, whole-batch validation, and walking a buffer of concatenated batches.

use std::iter::FusedIterator;
use std::ops::Range;

use super::raw::RawRecords;
use super::{
    BatchError, ATTRIBUTES_AT, BASE_OFFSET_AT, BASE_SEQUENCE_AT, BASE_TIMESTAMP_AT,
    BATCH_HEADER_BYTES, BATCH_LENGTH_AT, BATCH_LENGTH_MIN, BATCH_LENGTH_OFFSET_BYTES, CRC_AT,
    CRC_COVERED_FROM, LAST_OFFSET_DELTA_AT, MAGIC_AT, MAGIC_V2, MAX_TIMESTAMP_AT, NO_TIMESTAMP,
    PARTITION_LEADER_EPOCH_AT, PRODUCER_EPOCH_AT, PRODUCER_ID_AT, RECORD_COUNT_AT,
};

// Bits of the batch `attributes` field.
const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;
const DELETE_HORIZON_BIT: i16 = 1 << 6;

/// The compression codec of a batch (bits 0-2 of `attributes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Compression {
    /// The codec named by `codec` (the value of bits 0-2 of `attributes`).
    pub fn from_codec(codec: u8) -> Result<Compression, BatchError> {
        match codec {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(BatchError::UnknownCompression(other)),
        }
    }

    /// The value of bits 0-2 of `attributes` for this codec.
    pub fn codec(self) -> u8 {
        self as u8
    }
}

/// What the timestamps of a batch mean (bit 3 of `attributes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Set by the producer; each record carries its own.
    CreateTime,
    /// Set by the broker on append; every record's timestamp is the batch's `maxTimestamp`.
    LogAppendTime,
}

/// The fixed 61-byte header of a v2 record batch, field for field (see `docs/FORMAT.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn header_bytes(buf: &[u8]) -> Result<&[u8; BATCH_HEADER_BYTES], BatchError> {
    buf.first_chunk::<BATCH_HEADER_BYTES>()
        .ok_or(BatchError::Truncated {
            needed: BATCH_HEADER_BYTES,
            available: buf.len(),
        })
}

fn array_at<const N: usize>(h: &[u8; BATCH_HEADER_BYTES], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&h[at..at + N]);
    out
}

impl BatchHeader {
    /// Parses the header at the start of `buf` and checks what the header alone can tell: that
    /// all 61 bytes are there, `batchLength >= 49`, the magic byte is 2 and the compression
    /// codec is known.
    ///
    /// It does not check the CRC or that the rest of the batch is present; [`validate_batch`]
    /// does.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let header = BatchHeader::read(header_bytes(buf)?);
        header.check_batch_length()?;
        header.check_magic()?;
        Compression::from_codec(header.codec())?;
        Ok(header)
    }

    fn read(h: &[u8; BATCH_HEADER_BYTES]) -> BatchHeader {
        BatchHeader {
            base_offset: i64::from_be_bytes(array_at(h, BASE_OFFSET_AT)),
            batch_length: i32::from_be_bytes(array_at(h, BATCH_LENGTH_AT)),
            partition_leader_epoch: i32::from_be_bytes(array_at(h, PARTITION_LEADER_EPOCH_AT)),
            magic: i8::from_be_bytes(array_at(h, MAGIC_AT)),
            crc: u32::from_be_bytes(array_at(h, CRC_AT)),
            attributes: i16::from_be_bytes(array_at(h, ATTRIBUTES_AT)),
            last_offset_delta: i32::from_be_bytes(array_at(h, LAST_OFFSET_DELTA_AT)),
            base_timestamp: i64::from_be_bytes(array_at(h, BASE_TIMESTAMP_AT)),
            max_timestamp: i64::from_be_bytes(array_at(h, MAX_TIMESTAMP_AT)),
            producer_id: i64::from_be_bytes(array_at(h, PRODUCER_ID_AT)),
            producer_epoch: i16::from_be_bytes(array_at(h, PRODUCER_EPOCH_AT)),
            base_sequence: i32::from_be_bytes(array_at(h, BASE_SEQUENCE_AT)),
            record_count: i32::from_be_bytes(array_at(h, RECORD_COUNT_AT)),
        }
    }

    fn check_batch_length(&self) -> Result<(), BatchError> {
        if self.batch_length < BATCH_LENGTH_MIN {
            return Err(BatchError::BadBatchLength {
                batch_length: self.batch_length,
            });
        }
        Ok(())
    }

    fn check_magic(&self) -> Result<(), BatchError> {
        if self.magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(self.magic));
        }
        Ok(())
    }

    fn codec(&self) -> u8 {
        (self.attributes & COMPRESSION_MASK) as u8
    }

    /// Size of the whole batch: `12 + batchLength` (0 is counted for a negative length, which
    /// [`BatchHeader::parse`] never returns).
    pub fn total_bytes(&self) -> usize {
        // i32::MAX + 12 fits in a usize on every platform Rust supports with 32 bits or more.
        BATCH_LENGTH_OFFSET_BYTES + self.batch_length.max(0) as usize
    }

    /// Offset of the last record: `baseOffset + lastOffsetDelta` (saturating, so a hostile
    /// header cannot overflow it).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The compression codec.
    ///
    /// # Panics
    /// If the codec bits are 5, 6 or 7, which [`BatchHeader::parse`] rejects: only a header
    /// built by hand can hold them.
    pub fn compression(&self) -> Compression {
        match Compression::from_codec(self.codec()) {
            Ok(c) => c,
            Err(e) => panic!("BatchHeader built by hand with invalid attributes: {e}"),
        }
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Whether `baseTimestamp` holds the delete horizon set by log compaction (KIP-534) rather
    /// than the timestamp of the first record.
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & DELETE_HORIZON_BIT != 0
    }

    fn check_counts(&self) -> Result<(), BatchError> {
        if self.record_count < 1 {
            return Err(BatchError::BadRecordCount {
                record_count: self.record_count,
            });
        }
        // record_count >= 1, so this cannot overflow.
        if self.last_offset_delta != self.record_count - 1 {
            return Err(BatchError::BadLastOffsetDelta {
                last_offset_delta: self.last_offset_delta,
                record_count: self.record_count,
            });
        }
        Ok(())
    }

    fn check_timestamps(&self) -> Result<(), BatchError> {
        // With a delete horizon, baseTimestamp is a future deadline, not a record's timestamp,
        // so it may well be above maxTimestamp.
        let unknown = self.base_timestamp == NO_TIMESTAMP || self.max_timestamp == NO_TIMESTAMP;
        if !unknown && !self.has_delete_horizon() && self.max_timestamp < self.base_timestamp {
            return Err(BatchError::BadMaxTimestamp {
                base_timestamp: self.base_timestamp,
                max_timestamp: self.max_timestamp,
            });
        }
        Ok(())
    }
}

/// Parses the header of a buffer that must hold exactly one batch, without checking the CRC.
/// Shared by the record readers.
pub(super) fn whole_batch(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let declared = header.total_bytes();
    if declared != buf.len() {
        return Err(BatchError::LengthMismatch {
            declared,
            actual: buf.len(),
        });
    }
    Ok(header)
}

/// Checks that `buf` is exactly one valid batch of at most `batch_bytes_max` bytes, and returns
/// its header.
///
/// The checks, in order, each with its own error: the header is all there (`Truncated`);
/// `batchLength >= 49` (`BadBatchLength`); the batch is within `batch_bytes_max` (`TooLarge`);
/// `12 + batchLength == buf.len()` (`LengthMismatch`); magic is 2 (`BadMagic`); the CRC-32C
/// matches (`BadCrc`); the codec is known (`UnknownCompression`); `recordCount >= 1`
/// (`BadRecordCount`); `lastOffsetDelta == recordCount - 1` (`BadLastOffsetDelta`);
/// `maxTimestamp >= baseTimestamp` unless either is -1 or the batch has a delete horizon
/// (`BadMaxTimestamp`). For an uncompressed batch every record is then walked: each parses
/// exactly within its length, record `i` has `offsetDelta == i`, and the records end exactly at
/// the end of the batch after `recordCount` of them. A compressed batch is stored as it came,
/// so only its header and CRC are checked.
///
/// Never panics, never allocates.
pub fn validate_batch(buf: &[u8], batch_bytes_max: usize) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::read(header_bytes(buf)?);
    header.check_batch_length()?;
    let bytes = header.total_bytes();
    if bytes > batch_bytes_max {
        return Err(BatchError::TooLarge {
            bytes,
            max: batch_bytes_max,
        });
    }
    if bytes != buf.len() {
        return Err(BatchError::LengthMismatch {
            declared: bytes,
            actual: buf.len(),
        });
    }
    header.check_magic()?;
    let computed = crc_of(buf);
    if computed != header.crc {
        return Err(BatchError::BadCrc {
            stored: header.crc,
            computed,
        });
    }
    let compression = Compression::from_codec(header.codec())?;
    header.check_counts()?;
    header.check_timestamps()?;
    if compression == Compression::None {
        for record in RawRecords::new(&buf[BATCH_HEADER_BYTES..], header.record_count) {
            record?;
        }
    }
    Ok(header)
}

/// The CRC-32C (Castagnoli) of a batch: over its bytes from `attributes` (offset 21) to the end.
///
/// # Panics
/// If `buf` is shorter than a batch header.
pub fn crc_of(buf: &[u8]) -> u32 {
    assert!(
        buf.len() >= BATCH_HEADER_BYTES,
        "crc_of: {} bytes is shorter than a batch header",
        buf.len()
    );
    crc32c::crc32c(&buf[CRC_COVERED_FROM..])
}

/// Overwrites `baseOffset` in place. The field lies before the CRC-covered region, so the CRC
/// stays valid: the broker stamps offsets without recomputing it.
///
/// # Panics
/// If `batch` is shorter than a batch header.
pub fn set_base_offset(batch: &mut [u8], offset: i64) {
    assert!(
        batch.len() >= BATCH_HEADER_BYTES,
        "set_base_offset: {} bytes is shorter than a batch header",
        batch.len()
    );
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&offset.to_be_bytes());
}

/// Overwrites `partitionLeaderEpoch` in place. Like `baseOffset` it is outside the CRC, so the
/// leader stamps its epoch without recomputing the CRC.
///
/// # Panics
/// If `batch` is shorter than a batch header.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    assert!(
        batch.len() >= BATCH_HEADER_BYTES,
        "set_partition_leader_epoch: {} bytes is shorter than a batch header",
        batch.len()
    );
    batch[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
        .copy_from_slice(&epoch.to_be_bytes());
}

/// Walks a buffer of concatenated batches; see [`batches`].
#[derive(Clone, Debug)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    position: usize,
    failed: bool,
}

/// Iterates the batches of a buffer holding several of them back to back, yielding each
/// header and the byte range of its batch in `buf`.
///
/// Only header checks ([`BatchHeader::parse`]) are made, plus that the whole batch is in the
/// buffer (else [`BatchError::Truncated`]); callers that need the CRC and the records checked
/// call [`validate_batch`] on each range. Iteration ends at the exact end of the buffer, or
/// after the first error.
pub fn batches(buf: &[u8]) -> BatchIter<'_> {
    BatchIter {
        buf,
        position: 0,
        failed: false,
    }
}

impl BatchIter<'_> {
    /// Where the next batch starts in the buffer: after the last batch yielded, so after an
    /// error, the start of the batch that failed (the end of the good prefix).
    pub fn position(&self) -> usize {
        self.position
    }
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(BatchHeader, Range<usize>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.position..).unwrap_or_default();
        if self.failed || rest.is_empty() {
            return None;
        }
        let item = BatchHeader::parse(rest).and_then(|header| {
            let needed = header.total_bytes();
            if needed > rest.len() {
                return Err(BatchError::Truncated {
                    needed,
                    available: rest.len(),
                });
            }
            Ok((header, self.position..self.position + needed))
        });
        match &item {
            Ok((_, range)) => self.position = range.end,
            Err(_) => self.failed = true,
        }
        Some(item)
    }
}

impl FusedIterator for BatchIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testdata::*;
    use crate::record::{first_offset_at_or_after, records, BatchBuilder};
    use proptest::prelude::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C (RFC 3720 appendix B.4 / the CRC catalogue).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(reference_crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn sarama_vectors_have_the_crc_we_compute() {
        for (vector, stored) in [
            (SARAMA_UNCOMPRESSED, 0x5479_61FDu32),
            (SARAMA_GZIP, 0xE74A_CEA5),
            (SARAMA_SNAPPY, 0x1500_9F61),
            (SARAMA_EMPTY, 0x595F_B7DD),
        ] {
            assert_eq!(crc_of(vector), stored);
            assert_eq!(reference_crc32c(&vector[CRC_COVERED_FROM..]), stored);
            assert_eq!(BatchHeader::parse(vector).unwrap().crc, stored);
        }
    }

    #[test]
    fn parse_reads_every_field_of_the_sarama_vector() {
        let h = BatchHeader::parse(SARAMA_UNCOMPRESSED).unwrap();
        assert_eq!(
            h,
            BatchHeader {
                base_offset: 0,
                batch_length: 70,
                partition_leader_epoch: 0,
                magic: 2,
                crc: 0x5479_61FD,
                attributes: 0,
                last_offset_delta: 0,
                base_timestamp: 1_479_847_795_000,
                max_timestamp: 0,
                producer_id: 0,
                producer_epoch: 0,
                base_sequence: 0,
                record_count: 1,
            }
        );
        assert_eq!(h.total_bytes(), SARAMA_UNCOMPRESSED.len());
        assert_eq!(h.last_offset(), 0);
        assert_eq!(h.compression(), Compression::None);
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        assert!(!h.is_transactional() && !h.is_control() && !h.has_delete_horizon());
        assert_eq!(
            BatchHeader::parse(SARAMA_GZIP).unwrap().compression(),
            Compression::Gzip
        );
        assert_eq!(
            BatchHeader::parse(SARAMA_SNAPPY).unwrap().compression(),
            Compression::Snappy
        );
    }

    #[test]
    fn attribute_bits() {
        let mut h = BatchHeader::parse(SARAMA_UNCOMPRESSED).unwrap();
        for (codec, c) in [
            (0, Compression::None),
            (1, Compression::Gzip),
            (2, Compression::Snappy),
            (3, Compression::Lz4),
            (4, Compression::Zstd),
        ] {
            h.attributes = codec;
            assert_eq!(h.compression(), c);
            assert_eq!(c.codec(), codec as u8);
        }
        h.attributes = 0b0111_1000;
        assert_eq!(h.compression(), Compression::None);
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert!(h.is_transactional() && h.is_control() && h.has_delete_horizon());
        for codec in 5..=7u8 {
            assert_eq!(
                Compression::from_codec(codec),
                Err(BatchError::UnknownCompression(codec))
            );
        }
    }

    #[test]
    fn sarama_vectors_validate_once_max_timestamp_is_consistent() {
        // As published they carry maxTimestamp 0 < baseTimestamp, which we reject.
        assert_eq!(
            validate_batch(SARAMA_UNCOMPRESSED, 1 << 20),
            Err(BatchError::BadMaxTimestamp {
                base_timestamp: 1_479_847_795_000,
                max_timestamp: 0
            })
        );
        for vector in [SARAMA_UNCOMPRESSED, SARAMA_GZIP, SARAMA_SNAPPY] {
            let fixed = sarama_fixed(vector);
            let h = validate_batch(&fixed, 1 << 20).unwrap();
            assert_eq!(h.record_count, 1);
        }
        // Compressed payloads are not walked: garbage inside a gzip batch with a good CRC passes.
        let mut gzip = sarama_fixed(SARAMA_GZIP);
        let end = gzip.len() - 1;
        gzip[end] ^= 0xff;
        fix_crc(&mut gzip);
        assert!(validate_batch(&gzip, 1 << 20).is_ok());
    }

    #[test]
    fn builder_batches_validate() {
        for n in [1, 2, 10, 300] {
            let b = sample_batch(n);
            let h = validate_batch(&b, 1 << 20).unwrap();
            assert_eq!(h.record_count, n as i32);
            assert_eq!(h.total_bytes(), b.len());
        }
    }

    #[test]
    fn stamping_offset_and_epoch_keeps_the_crc_valid() {
        let mut b = sample_batch(3);
        let crc_before = crc_of(&b);
        set_base_offset(&mut b, 1_234_567);
        set_partition_leader_epoch(&mut b, 42);
        assert_eq!(crc_of(&b), crc_before);
        let h = validate_batch(&b, 1 << 20).unwrap();
        assert_eq!(h.base_offset, 1_234_567);
        assert_eq!(h.partition_leader_epoch, 42);
        assert_eq!(h.last_offset(), 1_234_569);
        // By contrast, a field inside the CRC-covered region does break it.
        b[BASE_SEQUENCE_AT] ^= 1;
        assert!(matches!(
            validate_batch(&b, 1 << 20),
            Err(BatchError::BadCrc { .. })
        ));
    }

    #[test]
    fn header_errors() {
        let good = sample_batch(2);
        assert_eq!(
            BatchHeader::parse(&good[..60]),
            Err(BatchError::Truncated {
                needed: 61,
                available: 60
            })
        );
        assert_eq!(
            validate_batch(&[], 100),
            Err(BatchError::Truncated {
                needed: 61,
                available: 0
            })
        );

        let mut short = good.clone();
        short[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&48i32.to_be_bytes());
        assert_eq!(
            BatchHeader::parse(&short),
            Err(BatchError::BadBatchLength { batch_length: 48 })
        );
        short[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(
            validate_batch(&short, 1 << 20),
            Err(BatchError::BadBatchLength { batch_length: -1 })
        );

        let mut magic = good.clone();
        magic[MAGIC_AT] = 1;
        assert_eq!(BatchHeader::parse(&magic), Err(BatchError::BadMagic(1)));
        assert_eq!(
            validate_batch(&magic, 1 << 20),
            Err(BatchError::BadMagic(1))
        );

        let mut codec = good.clone();
        codec[ATTRIBUTES_AT + 1] = 5;
        assert_eq!(
            BatchHeader::parse(&codec),
            Err(BatchError::UnknownCompression(5))
        );
        fix_crc(&mut codec);
        assert_eq!(
            validate_batch(&codec, 1 << 20),
            Err(BatchError::UnknownCompression(5))
        );

        assert_eq!(
            validate_batch(&good, good.len() - 1),
            Err(BatchError::TooLarge {
                bytes: good.len(),
                max: good.len() - 1
            })
        );
        assert!(validate_batch(&good, good.len()).is_ok());

        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            validate_batch(&long, 1 << 20),
            Err(BatchError::LengthMismatch {
                declared: good.len(),
                actual: good.len() + 1
            })
        );

        let mut crc = good.clone();
        crc[CRC_AT] ^= 0x80;
        let stored = u32::from_be_bytes(crc[CRC_AT..CRC_AT + 4].try_into().unwrap());
        assert_eq!(
            validate_batch(&crc, 1 << 20),
            Err(BatchError::BadCrc {
                stored,
                computed: crc_of(&good)
            })
        );
    }

    #[test]
    fn count_and_timestamp_errors() {
        assert_eq!(
            validate_batch(SARAMA_EMPTY, 1 << 20),
            Err(BatchError::BadRecordCount { record_count: 0 })
        );

        let mut lod = sample_batch(3);
        lod[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&5i32.to_be_bytes());
        fix_crc(&mut lod);
        assert_eq!(
            validate_batch(&lod, 1 << 20),
            Err(BatchError::BadLastOffsetDelta {
                last_offset_delta: 5,
                record_count: 3
            })
        );

        // maxTimestamp -1 (no timestamp) and a delete horizon both waive the ordering check.
        let mut ts = sample_batch(1);
        ts[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&(-1i64).to_be_bytes());
        fix_crc(&mut ts);
        assert!(validate_batch(&ts, 1 << 20).is_ok());
        ts[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&5i64.to_be_bytes());
        fix_crc(&mut ts);
        assert!(matches!(
            validate_batch(&ts, 1 << 20),
            Err(BatchError::BadMaxTimestamp {
                max_timestamp: 5,
                ..
            })
        ));
        ts[ATTRIBUTES_AT + 1] |= DELETE_HORIZON_BIT as u8;
        fix_crc(&mut ts);
        assert!(validate_batch(&ts, 1 << 20).is_ok());
    }

    #[test]
    fn batches_walks_concatenated_batches() {
        let a = sample_batch(1);
        let b = sample_batch(5);
        let c = sample_batch(2);
        let mut buf = Vec::new();
        for x in [&a, &b, &c] {
            buf.extend_from_slice(x);
        }
        let got: Vec<_> = batches(&buf).map(|r| r.unwrap()).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].1, 0..a.len());
        assert_eq!(got[1].1, a.len()..a.len() + b.len());
        assert_eq!(got[2].1, a.len() + b.len()..buf.len());
        assert_eq!(got[1].0.record_count, 5);
        for (_, range) in &got {
            assert!(validate_batch(&buf[range.clone()], 1 << 20).is_ok());
        }
        assert_eq!(batches(&[]).count(), 0);
    }

    #[test]
    fn batches_stops_after_a_torn_tail() {
        let a = sample_batch(2);
        let mut buf = a.clone();
        buf.extend_from_slice(&a[..a.len() - 3]);
        let mut it = batches(&buf);
        assert_eq!(it.next().unwrap().unwrap().1, 0..a.len());
        assert_eq!(
            it.next(),
            Some(Err(BatchError::Truncated {
                needed: a.len(),
                available: a.len() - 3
            }))
        );
        assert_eq!(it.position(), a.len());
        assert_eq!(it.next(), None);
        assert_eq!(it.next(), None);

        // A tail shorter than a header.
        let mut buf = a.clone();
        buf.extend_from_slice(&a[..30]);
        let items: Vec<_> = batches(&buf).collect();
        assert_eq!(
            items[1],
            Err(BatchError::Truncated {
                needed: 61,
                available: 30
            })
        );
        assert_eq!(items.len(), 2);

        // A bad header in the middle ends the walk even though good batches follow.
        let mut bad = a.clone();
        bad[MAGIC_AT] = 0;
        let mut buf = a.clone();
        buf.extend_from_slice(&bad);
        buf.extend_from_slice(&a);
        let items: Vec<_> = batches(&buf).collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1], Err(BatchError::BadMagic(0)));
    }

    #[test]
    #[should_panic(expected = "shorter than a batch header")]
    fn stamping_a_short_buffer_is_a_programmer_error() {
        set_base_offset(&mut [0u8; 20], 1);
    }

    /// What a valid batch promises (the checks of the fuzz target `batch_validator`, so they
    /// run in CI): an uncompressed valid batch's records all read, numbered 0.., as many as
    /// the header says; the record reader and the offset search never panic on any batch.
    fn check_batch(batch: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(header) = validate_batch(batch, 1 << 20) {
            if header.compression() == Compression::None {
                let mut count = 0i32;
                for record in records(batch).expect("a valid batch has records") {
                    let record = record.expect("a valid batch's records read");
                    prop_assert_eq!(record.offset_delta, count);
                    count += 1;
                }
                prop_assert_eq!(count, header.record_count);
            }
        }
        if let Ok(iter) = records(batch) {
            for record in iter {
                if record.is_err() {
                    break;
                }
            }
        }
        let _ = first_offset_at_or_after(batch, 0);
        let _ = first_offset_at_or_after(batch, i64::MAX);
        Ok(())
    }

    /// `check_batch` on the buffer and on every batch the walker finds in it, back to back.
    fn check_buffer(data: &[u8]) -> Result<(), TestCaseError> {
        check_batch(data)?;
        let mut end = 0;
        for item in batches(data) {
            match item {
                Ok((_, range)) => {
                    prop_assert_eq!(range.start, end, "batches are back to back");
                    end = range.end;
                    check_batch(&data[range])?;
                }
                Err(_) => break,
            }
        }
        Ok(())
    }

    fn bytes_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..300)
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in bytes_strategy()) {
            check_buffer(&bytes)?;
            if let Ok(h) = BatchHeader::parse(&bytes) {
                prop_assert!(h.total_bytes() >= BATCH_HEADER_BYTES);
            }
        }

        /// Random bytes after a valid header (length and CRC fixed up) reach the record walker.
        #[test]
        fn random_records_region_never_panics(
            records in bytes_strategy(),
            count in 1i32..5,
        ) {
            let b = raw_batch(0, count, &records);
            check_batch(&b)?;
        }

        /// Random bytes with a plausible header prefix: magic 2, a length that fits.
        #[test]
        fn random_batches_with_plausible_headers_never_panic(
            mut bytes in prop::collection::vec(any::<u8>(), 61..300),
        ) {
            let len = (bytes.len() - 12) as i32;
            bytes[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&len.to_be_bytes());
            bytes[MAGIC_AT] = 2;
            fix_crc(&mut bytes);
            check_buffer(&bytes)?;
            prop_assert!(batches(&bytes).count() == 1);
        }

        #[test]
        fn every_bit_flip_in_the_crc_region_is_caught(
            values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 1..6),
            timestamp_ms in 0i64..1 << 50,
        ) {
            let mut builder = BatchBuilder::new(timestamp_ms);
            for (i, v) in values.iter().enumerate() {
                builder.push(timestamp_ms + i as i64, Some(b"key"), Some(v), &[(b"h", Some(v))]);
            }
            let good = builder.finish();
            // Everything except baseOffset and partitionLeaderEpoch is checked: the CRC region
            // by the CRC, batchLength by the length checks, magic and the CRC field itself.
            for byte in 0..good.len() {
                let stamped = (BASE_OFFSET_AT..BASE_OFFSET_AT + 8).contains(&byte)
                    || (PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4).contains(&byte);
                for bit in 0..8 {
                    let mut b = good.to_vec();
                    b[byte] ^= 1 << bit;
                    let result = validate_batch(&b, 1 << 20);
                    if stamped {
                        prop_assert!(result.is_ok());
                    } else if byte >= CRC_AT {
                        prop_assert!(
                            matches!(result, Err(BatchError::BadCrc { .. })),
                            "byte {} bit {}: {:?}", byte, bit, result
                        );
                    } else {
                        prop_assert!(result.is_err(), "byte {} bit {}", byte, bit);
                    }
                }
            }
        }

        #[test]
        fn every_truncation_fails_with_a_typed_error(n in 1usize..6) {
            let good = sample_batch(n);
            for len in 0..good.len() {
                let cut = &good[..len];
                let expected = if len < BATCH_HEADER_BYTES {
                    BatchError::Truncated { needed: BATCH_HEADER_BYTES, available: len }
                } else {
                    BatchError::LengthMismatch { declared: good.len(), actual: len }
                };
                prop_assert_eq!(validate_batch(cut, 1 << 20), Err(expected));
                let mut it = batches(cut);
                if len == 0 {
                    prop_assert_eq!(it.next(), None);
                } else {
                    let needed = if len < BATCH_HEADER_BYTES { BATCH_HEADER_BYTES } else { good.len() };
                    prop_assert_eq!(
                        it.next(),
                        Some(Err(BatchError::Truncated { needed, available: len }))
                    );
                    prop_assert_eq!(it.next(), None);
                }
            }
        }
    }
}
