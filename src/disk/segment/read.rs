//! Reading batches back from a segment file, every one checked on the way out (CRC, offsets,
//! epoch), and locating the damaged range a failed read ran into.

use std::path::Path;

use bytes::Bytes;
use glommio::io::DmaFile;

use super::open::scan_file;
use crate::disk::appender::Boundary;
use crate::disk::config::LogConfig;
use crate::disk::damage::DamagedRange;
use crate::disk::epochs::EpochCache;
use crate::disk::error::{LogError, Result};
use crate::disk::recovery::{ScanPolicy, Scanner};
use crate::record::{self, BatchHeader};
use crate::types::{Epoch, Offset};

/// What [`read_batches`] reads: whole batches ending after `from` and before `upper`, starting
/// the scan at `start_pos` and reading no further than `readable_end`.
pub(crate) struct DiskRead {
    pub(crate) start_pos: u64,
    /// Base offset of the batch at `start_pos` (from the index entry, or the segment base).
    pub(crate) start_offset: Offset,
    pub(crate) readable_end: u64,
    pub(crate) from: Offset,
    pub(crate) upper: Offset,
    pub(crate) max_bytes: usize,
    pub(crate) index_interval_bytes: u64,
    pub(crate) batch_bytes_max: usize,
    /// The segment's known damaged ranges: stepped over when they end before `from`, and the
    /// read ends where one starts otherwise.
    pub(crate) skips: Vec<DamagedRange>,
    /// The epochs batches must carry (checked on the way out: the field is outside the CRC).
    pub(crate) epochs: EpochCache,
}

/// The batches a read returns, and the failed batch that ended it, if one did.
pub(crate) struct ReadOut {
    pub(crate) batches: Vec<Bytes>,
    pub(crate) fault: Option<ReadFault>,
}

/// A batch that failed its checks on the way out: at file `position`, expected to start at
/// offset `expected`.
#[derive(Clone, Debug)]
pub(crate) struct ReadFault {
    pub(crate) position: u64,
    pub(crate) expected: Offset,
    pub(crate) reason: String,
}

/// Reads whole batches from a segment file as `req` asks. Batches must follow each other with
/// contiguous offsets from `start_offset` (the base offset lies outside the CRC), and every
/// batch returned is CRC-checked after the read and its epoch checked. A batch that fails ends
/// the read: the valid batches before it are returned with the fault, for the caller to locate
/// and record the damaged range.
pub(crate) async fn read_batches(file: &DmaFile, path: &Path, req: DiskRead) -> Result<ReadOut> {
    let DiskRead {
        start_pos,
        start_offset,
        readable_end,
        from,
        upper,
        max_bytes,
        index_interval_bytes,
        batch_bytes_max,
        skips,
        epochs,
    } = req;
    let mut out = Vec::new();
    let mut total = 0usize;
    let mut pos = start_pos;
    let mut expect = start_offset;
    let mut prev_epoch = None;
    // Enough to pass the batches before `from` (at most about one index interval) and fill
    // `max_bytes`.
    let mut want = (max_bytes as u64)
        .saturating_add(index_interval_bytes)
        .saturating_add(record::BATCH_HEADER_BYTES as u64);
    let done = |batches: Vec<Bytes>| {
        Ok(ReadOut {
            batches,
            fault: None,
        })
    };
    let fault = |batches: Vec<Bytes>, position: u64, expected: Offset, reason: String| {
        Ok(ReadOut {
            batches,
            fault: Some(ReadFault {
                position,
                expected,
                reason,
            }),
        })
    };
    loop {
        if let Some(k) = skips
            .iter()
            .find(|k| k.start_pos == pos && k.first == expect)
        {
            if k.last < from && out.is_empty() {
                pos = k.end_pos;
                expect = k.next();
                prev_epoch = None;
                continue;
            }
            return done(out);
        }
        if pos >= readable_end || expect >= upper {
            return done(out);
        }
        // Never read into damaged bytes: stop where the next known range starts.
        let limit = skips
            .iter()
            .filter(|k| k.start_pos > pos)
            .map(|k| k.start_pos)
            .min()
            .unwrap_or(u64::MAX)
            .min(readable_end);
        let len = (limit - pos).min(want) as usize;
        let buf = file
            .read_at(pos, len)
            .await
            .map_err(|e| LogError::glommio("read", path, e))?;
        let mut at = 0usize;
        let mut need_more = None;
        while at < buf.len() {
            let rest = &buf[at..];
            let here = pos + at as u64;
            let h = match BatchHeader::parse(rest) {
                Ok(h) => h,
                Err(record::BatchError::Truncated { .. }) => {
                    need_more = Some(record::BATCH_HEADER_BYTES as u64);
                    break;
                }
                Err(e) => return fault(out, here, expect, e.to_string()),
            };
            let size = h.total_bytes();
            if rest.len() < size {
                need_more = Some(size as u64);
                break;
            }
            if h.base_offset < 0 || Offset(h.base_offset as u64) != expect {
                return fault(
                    out,
                    here,
                    expect,
                    format!(
                        "batch at byte {here} has base offset {}, expected {expect}",
                        h.base_offset
                    ),
                );
            }
            if !out.is_empty() && total + size > max_bytes {
                return done(out);
            }
            // Every batch walked over is checked before its header is trusted: a damaged
            // `lastOffsetDelta` would otherwise misplace everything after it (about one index
            // interval of batches before `from` is checked for nothing, a few microseconds).
            let bytes = &rest[..size];
            if let Err(e) = record::validate_batch(bytes, batch_bytes_max.max(size)) {
                return fault(out, here, expect, e.to_string());
            }
            let epoch = Epoch(h.partition_leader_epoch);
            if let Err(reason) = epochs.check_batch(expect, epoch, prev_epoch) {
                return fault(out, here, expect, reason);
            }
            prev_epoch = Some(epoch);
            let next = Offset(h.last_offset() as u64 + 1);
            if next.0 <= from.0 {
                expect = next;
                at += size;
                continue;
            }
            if next > upper {
                return done(out);
            }
            expect = next;
            total += size;
            out.push(Bytes::copy_from_slice(bytes));
            if total >= max_bytes {
                return done(out);
            }
            at += size;
        }
        pos += at as u64;
        if let Some(needed) = need_more {
            // The next batch did not fit in what was read. Past the readable data it is torn or
            // its length field is damaged; otherwise read it whole (when it is the first we need).
            if pos + needed > limit {
                return fault(
                    out,
                    pos,
                    expect,
                    format!("batch at byte {pos} claims {needed} bytes, past the end of the data"),
                );
            }
            if !out.is_empty() {
                return done(out);
            }
            want = needed.max(want);
        } else if at == 0 {
            return done(out);
        }
    }
}

/// Finds the damaged range that starts with the failed batch of `fault`: searches forward, up to
/// `readable` (the end of the written bytes and its offset), for where valid batches resume.
/// Everything there was written and read back wrong, so it is damage whatever follows.
pub(crate) async fn locate_damage(
    file: &DmaFile,
    path: &Path,
    segment: Offset,
    fault: &ReadFault,
    readable: Boundary,
    epochs: EpochCache,
    cfg: &LogConfig,
) -> Result<DamagedRange> {
    let policy = ScanPolicy {
        segment,
        batch_bytes_max: cfg.segment_bytes as usize,
        recovery_point: Offset(u64::MAX),
        epochs,
        known: Vec::new(),
        end_offset: Some(readable.next),
        trim_zero_tail: false,
        stop_after_damage: true,
    };
    let reason = format!("invalid batch at byte {}: {}", fault.position, fault.reason);
    let mut scanner = Scanner::resyncing(fault.position, fault.expected, reason.clone(), policy);
    scan_file(file, path, &mut scanner, readable.pos, &mut |_, _| {}).await?;
    Ok(scanner
        .damaged()
        .first()
        .cloned()
        .unwrap_or_else(|| DamagedRange {
            first: fault.expected,
            last: readable.next.prev().max(fault.expected),
            segment,
            start_pos: fault.position,
            end_pos: readable.pos.max(fault.position),
            reason,
        }))
}
