//! The records of an uncompressed batch's body, walked without allocating: [`RawRecords`] checks
//! the structure of every record; both [`validate_batch`](super::validate_batch) and the public
//! [`RecordIter`](super::RecordIter) are built on it, so what validation accepts is exactly what
//! the reader can read. Knows nothing of the batch header around the records.

use std::iter::FusedIterator;

use super::varint::{decode_varint, decode_varlong};
use super::{BatchError, RecordField};

/// One record of a batch, borrowing its key, value and headers from the batch bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Unused by Kafka so far; carried as is.
    pub attributes: i8,
    /// Timestamp minus the batch's `baseTimestamp`.
    pub timestamp_delta: i64,
    /// Offset minus the batch's `baseOffset`; record `i` of a valid batch has `i`.
    pub offset_delta: i32,
    /// `None` when the key length is -1.
    pub key: Option<&'a [u8]>,
    /// `None` when the value length is -1 (a tombstone).
    pub value: Option<&'a [u8]>,
    pub headers: Vec<RecordHeader<'a>>,
}

/// One header of a record. Kafka requires the key to be UTF-8; Quill passes it on as bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader<'a> {
    pub key: &'a [u8],
    /// `None` when the value length is -1.
    pub value: Option<&'a [u8]>,
}

/// A record whose headers are checked but left encoded.
#[derive(Clone, Copy, Debug)]
pub(super) struct RawRecord<'a> {
    index: i32,
    attributes: i8,
    pub(super) timestamp_delta: i64,
    pub(super) offset_delta: i32,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    header_count: i32,
    headers: &'a [u8],
}

/// Names the record and field in a varint error.
fn field_error(e: BatchError, index: i32, field: RecordField) -> BatchError {
    match e {
        BatchError::VarintTruncated => BatchError::RecordTruncated { index, field },
        _ => BatchError::RecordVarintOverlong { index, field },
    }
}

/// Reads the fields of one record, bounded by its declared length.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    index: i32,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn byte(&mut self, field: RecordField) -> Result<u8, BatchError> {
        let b = *self.rest().first().ok_or(BatchError::RecordTruncated {
            index: self.index,
            field,
        })?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self, field: RecordField) -> Result<i32, BatchError> {
        let (v, n) = decode_varint(self.rest()).map_err(|e| field_error(e, self.index, field))?;
        self.pos += n;
        Ok(v)
    }

    fn varlong(&mut self, field: RecordField) -> Result<i64, BatchError> {
        let (v, n) = decode_varlong(self.rest()).map_err(|e| field_error(e, self.index, field))?;
        self.pos += n;
        Ok(v)
    }

    fn take(&mut self, len: usize, field: RecordField) -> Result<&'a [u8], BatchError> {
        let bytes = self.rest().get(..len).ok_or(BatchError::RecordTruncated {
            index: self.index,
            field,
        })?;
        self.pos += len;
        Ok(bytes)
    }

    /// A length-prefixed byte string; length -1 is null when `nullable`.
    fn bytes(
        &mut self,
        length_field: RecordField,
        data_field: RecordField,
        nullable: bool,
    ) -> Result<Option<&'a [u8]>, BatchError> {
        let length = self.varint(length_field)?;
        if nullable && length == -1 {
            return Ok(None);
        }
        let Ok(len) = usize::try_from(length) else {
            return Err(BatchError::BadFieldLength {
                index: self.index,
                field: length_field,
                length,
            });
        };
        self.take(len, data_field).map(Some)
    }

    fn header(&mut self) -> Result<RecordHeader<'a>, BatchError> {
        let key = self
            .bytes(RecordField::HeaderKeyLength, RecordField::HeaderKey, false)?
            .unwrap_or_default();
        let value = self.bytes(
            RecordField::HeaderValueLength,
            RecordField::HeaderValue,
            true,
        )?;
        Ok(RecordHeader { key, value })
    }
}

/// Parses record `index` at the start of `rest`; returns it and the bytes it took.
fn parse_record(rest: &[u8], index: i32) -> Result<(RawRecord<'_>, usize), BatchError> {
    let (length, n) =
        decode_varint(rest).map_err(|e| field_error(e, index, RecordField::Length))?;
    let available = rest.len() - n;
    let body_len = usize::try_from(length)
        .ok()
        .filter(|&len| len <= available)
        .ok_or(BatchError::BadRecordLength {
            index,
            length,
            available,
        })?;
    let mut c = Cursor {
        buf: &rest[n..n + body_len],
        pos: 0,
        index,
    };
    let attributes = c.byte(RecordField::Attributes)? as i8;
    let timestamp_delta = c.varlong(RecordField::TimestampDelta)?;
    let offset_delta = c.varint(RecordField::OffsetDelta)?;
    if offset_delta != index {
        return Err(BatchError::BadOffsetDelta {
            index,
            offset_delta,
        });
    }
    let key = c.bytes(RecordField::KeyLength, RecordField::Key, true)?;
    let value = c.bytes(RecordField::ValueLength, RecordField::Value, true)?;
    let header_count = c.varint(RecordField::HeaderCount)?;
    if header_count < 0 {
        return Err(BatchError::BadFieldLength {
            index,
            field: RecordField::HeaderCount,
            length: header_count,
        });
    }
    let headers_from = c.pos;
    // Each header takes at least two bytes, so a huge count runs out of record quickly.
    for _ in 0..header_count {
        c.header()?;
    }
    let headers = &c.buf[headers_from..c.pos];
    if c.pos != c.buf.len() {
        return Err(BatchError::RecordTrailingBytes {
            index,
            bytes: c.buf.len() - c.pos,
        });
    }
    let record = RawRecord {
        index,
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        header_count,
        headers,
    };
    Ok((record, n + body_len))
}

impl<'a> RawRecord<'a> {
    /// Decodes the headers, which [`parse_record`] already checked.
    pub(super) fn into_record(self) -> Result<Record<'a>, BatchError> {
        let mut c = Cursor {
            buf: self.headers,
            pos: 0,
            index: self.index,
        };
        // The count was checked against the bytes, so this allocation is bounded by the input.
        let mut headers = Vec::with_capacity(self.header_count as usize);
        for _ in 0..self.header_count {
            headers.push(c.header()?);
        }
        Ok(Record {
            attributes: self.attributes,
            timestamp_delta: self.timestamp_delta,
            offset_delta: self.offset_delta,
            key: self.key,
            value: self.value,
            headers,
        })
    }
}

/// Walks the records region of an uncompressed batch (the bytes after the header), checking
/// each record and that there are exactly `record_count` of them. Stops after the first error.
#[derive(Clone, Debug)]
pub(super) struct RawRecords<'a> {
    data: &'a [u8],
    pos: usize,
    index: i32,
    record_count: i32,
    failed: bool,
}

impl<'a> RawRecords<'a> {
    pub(super) fn new(data: &'a [u8], record_count: i32) -> Self {
        RawRecords {
            data,
            pos: 0,
            index: 0,
            record_count,
            failed: false,
        }
    }
}

impl<'a> Iterator for RawRecords<'a> {
    type Item = Result<RawRecord<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let result = if rest.is_empty() {
            if self.index >= self.record_count {
                return None;
            }
            Err(BatchError::TooFewRecords {
                declared: self.record_count,
                found: self.index,
            })
        } else if self.index >= self.record_count {
            Err(BatchError::TrailingBytes {
                record_count: self.record_count,
                bytes: rest.len(),
            })
        } else {
            parse_record(rest, self.index).map(|(record, used)| {
                self.pos += used;
                // index < record_count <= i32::MAX, so this cannot overflow.
                self.index += 1;
                record
            })
        };
        self.failed = result.is_err();
        Some(result)
    }
}

impl FusedIterator for RawRecords<'_> {}
