//! Reading consumed records out of fetched batches, without I/O.
//!
//! A fetch returns whole batches, the first of which may start before the position asked for;
//! [`decode_records`] checks each batch (CRC and structure, when asked), skips records below
//! the position and control batches, and hands out records whose key, value and header values
//! are slices of the batch (`Bytes::slice_ref`), not copies.

use std::sync::Arc;

use bytes::Bytes;

use super::error::ClientError;
use super::records::{ConsumedRecord, Header};
use quill_proto::record::{records, validate_batch, BatchError, BatchHeader, TimestampType};

/// Reads the records at or after `position` out of fetched `batches` of `topic`-`partition`
/// into `out`; returns the position after the last batch read. Control batches are skipped;
/// compressed batches are refused (this client never compresses).
pub(crate) fn decode_records(
    topic: &Arc<str>,
    partition: u32,
    mut position: i64,
    batches: &[Bytes],
    check_crcs: bool,
    out: &mut Vec<ConsumedRecord>,
) -> Result<i64, ClientError> {
    let unreadable = |offset: i64, e: BatchError| ClientError::Unreadable {
        topic: topic.to_string(),
        partition,
        offset,
        reason: match e {
            BatchError::Compressed => "compressed batches are not supported".to_string(),
            e => e.to_string(),
        },
    };
    for batch in batches {
        let header = if check_crcs {
            validate_batch(batch, usize::MAX)
        } else {
            BatchHeader::parse(batch)
        }
        .map_err(|e| unreadable(position, e))?;
        let next = header.last_offset() + 1;
        if next <= position {
            continue;
        }
        if header.is_control() {
            position = next;
            continue;
        }
        let log_append_time = header.timestamp_type() == TimestampType::LogAppendTime;
        let iter = records(batch).map_err(|e| unreadable(header.base_offset, e))?;
        for record in iter {
            let r = record.map_err(|e| unreadable(header.base_offset, e))?;
            let offset = header.base_offset + i64::from(r.offset_delta);
            if offset < position {
                continue;
            }
            let timestamp_ms = if log_append_time {
                header.max_timestamp
            } else {
                header.base_timestamp + r.timestamp_delta
            };
            out.push(ConsumedRecord {
                topic: topic.clone(),
                partition,
                offset,
                timestamp_ms,
                key: r.key.map(|k| batch.slice_ref(k)),
                value: r.value.map(|v| batch.slice_ref(v)),
                headers: r
                    .headers
                    .iter()
                    .map(|h| Header {
                        key: String::from_utf8_lossy(h.key).into_owned(),
                        value: h.value.map(|v| batch.slice_ref(v)),
                    })
                    .collect(),
            });
        }
        position = next;
    }
    Ok(position)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quill_proto::record::{set_base_offset, BatchBuilder};

    fn batch(base: i64, count: i64) -> Bytes {
        let mut b = BatchBuilder::new(1000);
        for i in 0..count {
            let v = format!("v{}", base + i);
            b.push(
                1000 + i,
                Some(b"k"),
                Some(v.as_bytes()),
                &[(b"h", Some(b"x"))],
            );
        }
        let mut bytes = b.finish();
        set_base_offset(&mut bytes, base);
        bytes.freeze()
    }

    #[test]
    fn records_below_the_position_are_skipped() {
        let t: Arc<str> = Arc::from("t");
        let batches = [batch(0, 5), batch(5, 5)];
        let mut out = Vec::new();
        let next = decode_records(&t, 3, 3, &batches, true, &mut out).unwrap();
        assert_eq!(next, 10);
        let offsets: Vec<i64> = out.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [3, 4, 5, 6, 7, 8, 9]);
        let r = &out[0];
        assert_eq!(r.value.as_deref(), Some(&b"v3"[..]));
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.timestamp_ms, 1003);
        assert_eq!(r.headers, vec![Header::new("h", "x")]);
        assert_eq!(r.partition, 3);
        // A position past every batch reads nothing and stays.
        let mut out = Vec::new();
        assert_eq!(
            decode_records(&t, 0, 12, &batches, true, &mut out).unwrap(),
            12
        );
        assert!(out.is_empty());
    }

    #[test]
    fn damaged_batches_are_refused_when_checked() {
        let t: Arc<str> = Arc::from("t");
        let mut damaged = batch(0, 2).to_vec();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        let batches = [Bytes::from(damaged)];
        let mut out = Vec::new();
        let e = decode_records(&t, 0, 0, &batches, true, &mut out).unwrap_err();
        assert!(matches!(e, ClientError::Unreadable { .. }), "{e}");
        assert!(
            e.to_string().starts_with("cannot read t-0 at offset 0"),
            "{e}"
        );
    }
}
