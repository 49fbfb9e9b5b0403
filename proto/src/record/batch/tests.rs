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
