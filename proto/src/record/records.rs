//! The records inside an uncompressed batch: [`records`] and [`first_offset_at_or_after`], on the
//! walker of `raw.rs`.

use std::iter::FusedIterator;

use super::batch::{whole_batch, BatchHeader, Compression, TimestampType};
use super::raw::{RawRecord, RawRecords};
pub use super::raw::{Record, RecordHeader};
use super::{BatchError, BATCH_HEADER_BYTES};

/// The records of one uncompressed batch; see [`records`].
#[derive(Clone, Debug)]
pub struct RecordIter<'a> {
    header: BatchHeader,
    raw: RawRecords<'a>,
}

impl RecordIter<'_> {
    /// The header of the batch being read, for `baseOffset` and `baseTimestamp`.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.raw.next().map(|r| r.and_then(RawRecord::into_record))
    }
}

impl FusedIterator for RecordIter<'_> {}

fn uncompressed_records(batch: &[u8], header: BatchHeader) -> Result<RawRecords<'_>, BatchError> {
    if header.compression() != Compression::None {
        return Err(BatchError::Compressed);
    }
    Ok(RawRecords::new(
        &batch[BATCH_HEADER_BYTES..],
        header.record_count,
    ))
}

/// Iterates the records of `batch`, which must be exactly one uncompressed batch
/// ([`BatchError::LengthMismatch`] otherwise, [`BatchError::Compressed`] for a compressed one).
///
/// The header is parsed but the CRC is not checked: call
/// [`validate_batch`](super::validate_batch) first on bytes that may be damaged. Each record is
/// checked as it is read, as `validate_batch` would; the iterator ends after the first error.
pub fn records(batch: &[u8]) -> Result<RecordIter<'_>, BatchError> {
    let header = whole_batch(batch)?;
    let raw = uncompressed_records(batch, header)?;
    Ok(RecordIter { header, raw })
}

/// The offset (`baseOffset + offsetDelta`) of the first record of `batch` whose timestamp is at
/// or after `timestamp_ms`, or `None` if there is none.
///
/// A record's timestamp is `baseTimestamp + timestampDelta`, or `maxTimestamp` in a
/// LogAppendTime batch. The records of a compressed batch cannot be read, so for one the answer
/// is `baseOffset` if `maxTimestamp >= timestamp_ms` (the batch is where the search must start)
/// and `None` otherwise. Like [`records`], it checks the records it reads but not the CRC.
pub fn first_offset_at_or_after(
    batch: &[u8],
    timestamp_ms: i64,
) -> Result<Option<i64>, BatchError> {
    let header = whole_batch(batch)?;
    if header.compression() != Compression::None {
        return Ok((header.max_timestamp >= timestamp_ms).then_some(header.base_offset));
    }
    let log_append_time = header.timestamp_type() == TimestampType::LogAppendTime;
    for record in uncompressed_records(batch, header)? {
        let record = record?;
        let timestamp = if log_append_time {
            header.max_timestamp
        } else {
            header.base_timestamp.saturating_add(record.timestamp_delta)
        };
        if timestamp >= timestamp_ms {
            return Ok(Some(
                header
                    .base_offset
                    .saturating_add(i64::from(record.offset_delta)),
            ));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testdata::{
        fix_crc, raw_batch, sample_batch, sarama_fixed, SARAMA_GZIP, SARAMA_UNCOMPRESSED,
    };
    use crate::record::{set_base_offset, validate_batch, BatchBuilder, RecordField};
    use proptest::prelude::*;

    /// Encodes one record by hand from its fields as varints, for malformed-record tests.
    fn varints(values: &[i64]) -> Vec<u8> {
        let mut out = Vec::new();
        for &v in values {
            crate::record::encode_varlong(v, &mut out);
        }
        out
    }

    /// A record with the given body (everything after `length`), prefixed by its length.
    fn record(body: &[u8]) -> Vec<u8> {
        let mut out = varints(&[body.len() as i64]);
        out.extend_from_slice(body);
        out
    }

    /// attributes 0, timestampDelta 0, the given offsetDelta, null key, null value, 0 headers.
    fn minimal_body(offset_delta: i64) -> Vec<u8> {
        let mut body = vec![0u8];
        body.extend(varints(&[0, offset_delta, -1, -1, 0]));
        body
    }

    fn validate_records(count: i32, records_region: &[u8]) -> Result<BatchHeader, BatchError> {
        validate_batch(&raw_batch(0, count, records_region), 1 << 20)
    }

    #[test]
    fn reads_the_sarama_record() {
        let recs: Vec<_> = records(SARAMA_UNCOMPRESSED)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            recs,
            vec![Record {
                attributes: 0,
                timestamp_delta: 5,
                offset_delta: 0,
                key: Some(&[1, 2, 3, 4][..]),
                value: Some(&[5, 6, 7][..]),
                headers: vec![RecordHeader {
                    key: &[8, 9, 10],
                    value: Some(&[11, 12]),
                }],
            }]
        );
    }

    #[test]
    fn compressed_batches_have_no_readable_records() {
        let gzip = sarama_fixed(SARAMA_GZIP);
        assert_eq!(records(&gzip).err(), Some(BatchError::Compressed));
        assert_eq!(first_offset_at_or_after(&gzip, 0), Ok(Some(0)));
        assert_eq!(
            first_offset_at_or_after(&gzip, 1_479_847_795_005),
            Ok(Some(0))
        );
        assert_eq!(first_offset_at_or_after(&gzip, 1_479_847_795_006), Ok(None));
    }

    #[test]
    fn records_wants_exactly_one_batch() {
        let mut b = sample_batch(2);
        b.push(0);
        assert_eq!(
            records(&b).err(),
            Some(BatchError::LengthMismatch {
                declared: b.len() - 1,
                actual: b.len()
            })
        );
    }

    #[test]
    fn null_keys_values_and_header_values() {
        let mut b = BatchBuilder::new(10);
        b.push(10, None, None, &[(b"", None), (b"k", Some(b""))]);
        b.push(11, Some(b""), Some(b"v"), &[]);
        let batch = b.finish();
        validate_batch(&batch, 1 << 20).unwrap();
        let recs: Vec<_> = records(&batch).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(recs[0].key, None);
        assert_eq!(recs[0].value, None);
        assert_eq!(
            recs[0].headers,
            vec![
                RecordHeader {
                    key: b"",
                    value: None
                },
                RecordHeader {
                    key: b"k",
                    value: Some(b"")
                }
            ]
        );
        assert_eq!(recs[1].key, Some(&b""[..]));
        assert_eq!(recs[1].value, Some(&b"v"[..]));
        assert!(recs[1].headers.is_empty());
        assert_eq!(recs[1].offset_delta, 1);
        assert_eq!(recs[1].timestamp_delta, 1);
    }

    #[test]
    fn first_offset_at_or_after_walks_create_time_records() {
        let mut b = BatchBuilder::new(50);
        for ts in [100, 50, 200, 150] {
            b.push(ts, None, Some(b"x"), &[]);
        }
        let mut batch = b.finish();
        set_base_offset(&mut batch, 1000);
        let find = |ts| first_offset_at_or_after(&batch, ts).unwrap();
        assert_eq!(find(i64::MIN), Some(1000));
        assert_eq!(find(60), Some(1000));
        assert_eq!(find(100), Some(1000));
        assert_eq!(find(101), Some(1002));
        assert_eq!(find(200), Some(1002));
        assert_eq!(find(201), None);
    }

    #[test]
    fn first_offset_at_or_after_uses_max_timestamp_for_log_append_time() {
        let mut b = BatchBuilder::new(50);
        for ts in [50, 60] {
            b.push(ts, None, Some(b"x"), &[]);
        }
        let mut batch = b.finish().to_vec();
        set_base_offset(&mut batch, 7);
        batch[22] |= 1 << 3; // attributes, low byte: LogAppendTime
        batch[35..43].copy_from_slice(&500i64.to_be_bytes()); // maxTimestamp
        fix_crc(&mut batch);
        validate_batch(&batch, 1 << 20).unwrap();
        assert_eq!(first_offset_at_or_after(&batch, 55), Ok(Some(7)));
        assert_eq!(first_offset_at_or_after(&batch, 500), Ok(Some(7)));
        assert_eq!(first_offset_at_or_after(&batch, 501), Ok(None));
    }

    #[test]
    fn record_length_errors() {
        let good = record(&minimal_body(0));
        assert!(validate_records(1, &good).is_ok());

        // Length runs past the batch.
        let mut long = good.clone();
        long[0] = 2 * 50; // zigzag(50)
        assert_eq!(
            validate_records(1, &long),
            Err(BatchError::BadRecordLength {
                index: 0,
                length: 50,
                available: good.len() - 1
            })
        );
        // Negative length.
        let mut neg = good.clone();
        neg[0] = 1; // zigzag(-1)
        assert!(matches!(
            validate_records(1, &neg),
            Err(BatchError::BadRecordLength { length: -1, .. })
        ));
        // The length varint itself is cut off at the end of the batch.
        let mut region = good.clone();
        region.push(0x80);
        assert_eq!(
            validate_records(2, &region),
            Err(BatchError::RecordTruncated {
                index: 1,
                field: RecordField::Length
            })
        );
        // An overlong length varint.
        let mut region = good.clone();
        region.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]);
        assert_eq!(
            validate_records(2, &region),
            Err(BatchError::RecordVarintOverlong {
                index: 1,
                field: RecordField::Length
            })
        );
    }

    #[test]
    fn record_field_errors() {
        // Empty body: no attributes byte.
        assert_eq!(
            validate_records(1, &record(&[])),
            Err(BatchError::RecordTruncated {
                index: 0,
                field: RecordField::Attributes
            })
        );
        // Key length 3 with only 1 byte left in the record.
        let mut body = vec![0u8];
        body.extend(varints(&[0, 0, 3]));
        body.push(b'k');
        assert_eq!(
            validate_records(1, &record(&body)),
            Err(BatchError::RecordTruncated {
                index: 0,
                field: RecordField::Key
            })
        );
        // Key length -2.
        let mut body = vec![0u8];
        body.extend(varints(&[0, 0, -2, -1, 0]));
        assert_eq!(
            validate_records(1, &record(&body)),
            Err(BatchError::BadFieldLength {
                index: 0,
                field: RecordField::KeyLength,
                length: -2
            })
        );
        // Header count -1.
        let mut body = vec![0u8];
        body.extend(varints(&[0, 0, -1, -1, -1]));
        assert_eq!(
            validate_records(1, &record(&body)),
            Err(BatchError::BadFieldLength {
                index: 0,
                field: RecordField::HeaderCount,
                length: -1
            })
        );
        // A null header key.
        let mut body = vec![0u8];
        body.extend(varints(&[0, 0, -1, -1, 1, -1, -1]));
        assert_eq!(
            validate_records(1, &record(&body)),
            Err(BatchError::BadFieldLength {
                index: 0,
                field: RecordField::HeaderKeyLength,
                length: -1
            })
        );
        // Header count far beyond what the record holds.
        let mut body = vec![0u8];
        body.extend(varints(&[0, 0, -1, -1, i64::from(i32::MAX), 0, -1]));
        assert_eq!(
            validate_records(1, &record(&body)),
            Err(BatchError::RecordTruncated {
                index: 0,
                field: RecordField::HeaderKeyLength
            })
        );
        // An overlong timestampDelta varlong.
        let mut body = vec![0u8];
        body.extend_from_slice(&[0x80; 11]);
        assert_eq!(
            validate_records(1, &record(&body)),
            Err(BatchError::RecordVarintOverlong {
                index: 0,
                field: RecordField::TimestampDelta
            })
        );
        // A byte left over after the headers.
        let mut body = minimal_body(0);
        body.push(0);
        assert_eq!(
            validate_records(1, &record(&body)),
            Err(BatchError::RecordTrailingBytes { index: 0, bytes: 1 })
        );
    }

    #[test]
    fn record_sequence_errors() {
        let r0 = record(&minimal_body(0));
        let r1 = record(&minimal_body(1));
        let both = [r0.clone(), r1.clone()].concat();
        assert!(validate_records(2, &both).is_ok());

        assert_eq!(
            validate_records(2, &[r0.clone(), r0.clone()].concat()),
            Err(BatchError::BadOffsetDelta {
                index: 1,
                offset_delta: 0
            })
        );
        assert_eq!(
            validate_records(3, &both),
            Err(BatchError::TooFewRecords {
                declared: 3,
                found: 2
            })
        );
        assert_eq!(
            validate_records(1, &both),
            Err(BatchError::TrailingBytes {
                record_count: 1,
                bytes: r1.len()
            })
        );
        // The iterator reports the same error and then stops.
        let batch = raw_batch(0, 3, &both);
        let results: Vec<_> = records(&batch).unwrap().collect();
        assert_eq!(results.len(), 3);
        assert_eq!(
            results[2],
            Err(BatchError::TooFewRecords {
                declared: 3,
                found: 2
            })
        );
    }

    #[derive(Debug, Clone)]
    struct Input {
        timestamp_ms: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    }

    fn input() -> impl Strategy<Value = Input> {
        let bytes = || prop::option::of(prop::collection::vec(any::<u8>(), 0..40));
        (
            -1_000_000i64..1_000_000,
            bytes(),
            bytes(),
            prop::collection::vec((prop::collection::vec(any::<u8>(), 0..10), bytes()), 0..4),
        )
            .prop_map(|(delta, key, value, headers)| Input {
                timestamp_ms: 1_700_000_000_000 + delta,
                key,
                value,
                headers,
            })
    }

    proptest! {
        #[test]
        fn builder_round_trips(inputs in prop::collection::vec(input(), 1..20), base_offset in 0i64..1 << 40) {
            let base_timestamp = inputs.iter().map(|i| i.timestamp_ms).min().unwrap();
            let mut b = BatchBuilder::new(base_timestamp);
            for i in &inputs {
                let headers: Vec<(&[u8], Option<&[u8]>)> =
                    i.headers.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect();
                b.push(i.timestamp_ms, i.key.as_deref(), i.value.as_deref(), &headers);
            }
            prop_assert_eq!(b.len(), inputs.len());
            let expected_bytes = b.encoded_bytes();
            let mut batch = b.finish();
            prop_assert_eq!(batch.len(), expected_bytes);
            set_base_offset(&mut batch, base_offset);

            let header = validate_batch(&batch, 1 << 20).unwrap();
            prop_assert_eq!(header.record_count as usize, inputs.len());
            prop_assert_eq!(header.base_timestamp, base_timestamp);
            let max = inputs.iter().map(|i| i.timestamp_ms).max().unwrap();
            prop_assert_eq!(header.max_timestamp, max);

            let iter = records(&batch).unwrap();
            prop_assert_eq!(iter.header(), &header);
            let recs: Vec<Record<'_>> = iter.collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(recs.len(), inputs.len());
            for (i, (r, input)) in recs.iter().zip(&inputs).enumerate() {
                prop_assert_eq!(r.offset_delta, i as i32);
                prop_assert_eq!(header.base_timestamp + r.timestamp_delta, input.timestamp_ms);
                prop_assert_eq!(r.key, input.key.as_deref());
                prop_assert_eq!(r.value, input.value.as_deref());
                let headers: Vec<(&[u8], Option<&[u8]>)> =
                    r.headers.iter().map(|h| (h.key, h.value)).collect();
                let want: Vec<(&[u8], Option<&[u8]>)> =
                    input.headers.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect();
                prop_assert_eq!(headers, want);
            }

            // The timestamp search agrees with a linear scan of the inputs.
            for probe in inputs.iter().map(|i| i.timestamp_ms).chain([i64::MIN, max + 1]) {
                let want = inputs
                    .iter()
                    .position(|i| i.timestamp_ms >= probe)
                    .map(|p| base_offset + p as i64);
                prop_assert_eq!(first_offset_at_or_after(&batch, probe), Ok(want));
            }
        }

        /// Bytes between a record's last header and the end its length declares are refused,
        /// by validation and by the reader, whichever record of the batch carries them.
        #[test]
        fn bytes_after_a_records_fields_are_refused(
            inputs in prop::collection::vec(input(), 1..6),
            at in any::<prop::sample::Index>(),
            extra in prop::collection::vec(any::<u8>(), 1..8),
        ) {
            let base_timestamp = inputs.iter().map(|i| i.timestamp_ms).min().unwrap();
            let mut b = BatchBuilder::new(base_timestamp);
            for i in &inputs {
                let headers: Vec<(&[u8], Option<&[u8]>)> =
                    i.headers.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect();
                b.push(i.timestamp_ms, i.key.as_deref(), i.value.as_deref(), &headers);
            }
            let good = b.finish();
            let k = at.index(inputs.len());
            // The same records, record k with `extra` after its headers and its length grown.
            let mut bad = good[..BATCH_HEADER_BYTES].to_vec();
            let mut rest = &good[BATCH_HEADER_BYTES..];
            for i in 0..inputs.len() {
                let (len, n) = crate::record::decode_varint(rest).unwrap();
                let mut body = rest[n..n + len as usize].to_vec();
                if i == k {
                    body.extend_from_slice(&extra);
                }
                bad.extend(record(&body));
                rest = &rest[n + len as usize..];
            }
            prop_assert!(rest.is_empty());
            let batch_length = (bad.len() - crate::record::BATCH_LENGTH_OFFSET_BYTES) as i32;
            bad[8..12].copy_from_slice(&batch_length.to_be_bytes());
            fix_crc(&mut bad);
            let refused = BatchError::RecordTrailingBytes { index: k as i32, bytes: extra.len() };
            prop_assert_eq!(validate_batch(&bad, 1 << 20), Err(refused.clone()));
            let read: Vec<_> = records(&bad).unwrap().collect();
            prop_assert!(read[..k].iter().all(|r| r.is_ok()));
            prop_assert_eq!(read[k].clone(), Err(refused));
        }

        #[test]
        fn random_record_regions_never_panic_the_readers(
            region in prop::collection::vec(any::<u8>(), 0..200),
            count in -2i32..6,
            probe in any::<i64>(),
        ) {
            let batch = raw_batch(0, count, &region);
            if let Ok(iter) = records(&batch) {
                for r in iter {
                    let _ = r;
                }
            }
            let _ = first_offset_at_or_after(&batch, probe);
            // What validation accepts, the reader reads without error.
            if validate_batch(&batch, 1 << 20).is_ok() {
                prop_assert!(records(&batch).unwrap().all(|r| r.is_ok()));
            }
        }

        /// Damage one byte of a valid records region: deeper than random bytes get.
        #[test]
        fn damaged_record_regions_never_panic_the_readers(
            n in 1usize..8,
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let good = sample_batch(n);
            let mut region = good[BATCH_HEADER_BYTES..].to_vec();
            let i = at.index(region.len());
            region[i] = byte;
            let batch = raw_batch(0, n as i32, &region);
            let valid = validate_batch(&batch, 1 << 20).is_ok();
            let read: Result<Vec<_>, _> = records(&batch).unwrap().collect();
            prop_assert_eq!(valid, read.is_ok());
            let _ = first_offset_at_or_after(&batch, 0);
        }

        #[test]
        fn random_bytes_never_panic_the_readers(bytes in prop::collection::vec(any::<u8>(), 0..200), probe in any::<i64>()) {
            if let Ok(iter) = records(&bytes) {
                for r in iter {
                    let _ = r;
                }
            }
            let _ = first_offset_at_or_after(&bytes, probe);
        }
    }
}
