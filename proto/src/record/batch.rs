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
mod tests;
