//! The `batch_validator` fuzz target's checks: arbitrary bytes through the record batch code,
//! `validate_batch`, `batches`, `records` and `first_offset_at_or_after`, on the input as is and
//! with its CRC made right (so the fuzzer gets past the CRC check into the record walk).
//!
//! Checked beyond "no panic": a batch `validate_batch` accepts has the CRC of its bytes and its
//! records readable to the end, exactly `recordCount` of them, with offset deltas 0, 1, 2...
//!
//! Shared by the fuzz target (`fuzz_targets/batch_validator.rs`) and by the test suite
//! (`tests/fuzz_checks.rs`), so the checks compile and run in every `cargo test`.

use quill_proto::record::{
    batches, crc_of, first_offset_at_or_after, records, validate_batch, Compression,
    BATCH_HEADER_BYTES,
};

const BATCH_BYTES_MAX: usize = 1 << 20;
/// Where the CRC sits in the batch header (docs/FORMAT.md).
const CRC_AT: usize = 17;

fn check_batch(batch: &[u8]) {
    if let Ok(header) = validate_batch(batch, BATCH_BYTES_MAX) {
        assert_eq!(
            header.crc,
            crc_of(batch),
            "an accepted batch's CRC matches its bytes"
        );
        if header.compression() == Compression::None {
            let mut count = 0i32;
            for record in records(batch).expect("a valid batch has records") {
                let record = record.expect("a valid batch's records read");
                assert_eq!(record.offset_delta, count);
                count += 1;
            }
            assert_eq!(count, header.record_count);
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
}

fn check(data: &[u8]) {
    check_batch(data);
    let mut end = 0;
    for item in batches(data) {
        match item {
            Ok((_, range)) => {
                assert_eq!(range.start, end, "batches are back to back");
                end = range.end;
                check_batch(&data[range]);
            }
            Err(_) => break,
        }
    }
}

/// One fuzz input: checked as is and with its CRC made right.
pub fn run(data: &[u8]) {
    check(data);
    if data.len() >= BATCH_HEADER_BYTES {
        let mut fixed = data.to_vec();
        let crc = crc_of(&fixed);
        fixed[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        check(&fixed);
    }
}
