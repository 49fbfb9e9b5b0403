//! Reads of a partition log: batches by offset, and an offset by timestamp.

use std::path::Path;

use super::handle::PartitionLog;
use super::types::ReadBatches;
use crate::disk::damage::DamagedRange;
use crate::disk::error::{LogError, Result};
use crate::disk::meta::store_damage;
use crate::disk::segment::{self, locate_damage, read_batches, DiskRead, NO_TIMESTAMP};
use crate::disk::state::hw_of;
use crate::record;
use crate::types::{Offset, TimestampMs};

impl PartitionLog {
    /// Reads whole batches from `from`, up to the high watermark and about `max_bytes` (at least
    /// one batch when one is there).
    pub async fn read(&self, from: Offset, max_bytes: usize) -> Result<ReadBatches> {
        let hw = self.high_watermark();
        self.read_upto(from, max_bytes, hw).await
    }

    /// As [`PartitionLog::read`], but bounded by `upper` instead of the high watermark (a leader
    /// serving a follower reads up to the log end). `upper` is clamped to what is written.
    ///
    /// A read at an offset inside a damaged range fails with [`LogError::CorruptSegment`] naming
    /// the range and the next readable offset; a read before it returns the batches up to it. A
    /// batch found damaged here is located (where valid batches resume), recorded as a damaged
    /// range and persisted, so every later read steps over it.
    pub async fn read_upto(
        &self,
        from: Offset,
        max_bytes: usize,
        upper: Offset,
    ) -> Result<ReadBatches> {
        let inner = &*self.inner;
        // Each round either returns or records a new damaged range before `from`; a segment
        // holds finitely many, but bound it anyway.
        for _ in 0..16 {
            let (plan, mut out) = {
                let st = inner.state.borrow();
                let start = st.segments.front().expect("a segment").base;
                let upper = upper.min(st.commit.written());
                let out = ReadBatches {
                    batches: Vec::new(),
                    high_watermark: hw_of(&st, &inner.config),
                    log_start_offset: start,
                    log_end_offset: st.next_offset,
                };
                if from < start || from > st.next_offset {
                    return Err(LogError::OffsetOutOfRange {
                        requested: from,
                        earliest: start,
                        latest: st.next_offset,
                    });
                }
                if from >= upper {
                    return Ok(out);
                }
                let cached = inner.cache.read(inner.cache_key, from, upper, max_bytes);
                if !cached.is_empty() {
                    return Ok(ReadBatches {
                        batches: cached,
                        ..out
                    });
                }
                if let Some(r) = st.damage.containing(from) {
                    return Err(damaged_error(&inner.dir, r));
                }
                let i = st.segments.partition_point(|s| s.base <= from) - 1;
                let seg = &st.segments[i];
                let skips: Vec<DamagedRange> = st.damage.in_segment(seg.base).cloned().collect();
                let (mut start_pos, mut start_offset) = seg.read_start_entry(from);
                for k in &skips {
                    // Start after the last range that ends before `from` (an index entry may
                    // even point into one).
                    if k.last < from && k.end_pos > start_pos {
                        (start_pos, start_offset) = (k.end_pos, k.next());
                    }
                }
                let req = DiskRead {
                    start_pos,
                    start_offset,
                    readable_end: seg.readable_bytes(),
                    from,
                    upper,
                    max_bytes,
                    index_interval_bytes: inner.config.index_interval_bytes,
                    batch_bytes_max: inner.config.batch_bytes_max,
                    skips,
                    epochs: st.epochs.clone(),
                };
                let plan = (
                    seg.file.clone(),
                    seg.log_path(),
                    seg.base,
                    seg.readable_end(),
                    req,
                );
                (plan, out)
            };
            let (file, path, seg_base, readable, req) = plan;
            let file = match file {
                Some(f) => f,
                None => inner.files.get(&path).await?,
            };
            let epochs = req.epochs.clone();
            let got = read_batches(&file, &path, req).await?;
            let Some(fault) = got.fault else {
                out.batches = got.batches;
                return Ok(out);
            };
            let range = locate_damage(
                &file,
                &path,
                seg_base,
                &fault,
                readable,
                epochs,
                &inner.config,
            )
            .await?;
            tracing::error!(path = %path.display(), first = %range.first, last = %range.last,
                reason = %range.reason, "damaged range found by a read: not served");
            let changed = {
                let mut st = inner.state.borrow_mut();
                // The segment may be gone (retention, truncation) while the search ran.
                let exists = st
                    .segments
                    .iter()
                    .any(|s| s.base == seg_base && s.next_offset > range.last);
                exists && st.damage.insert(range.clone())
            };
            if changed {
                if let Err(e) = store_damage(&self.inner).await {
                    tracing::warn!(dir = %inner.dir.display(), error = %e,
                        "cannot persist damaged ranges; they are found again on the next read");
                }
            }
            if !got.batches.is_empty() {
                out.batches = got.batches;
                return Ok(out);
            }
            if range.contains(from) {
                return Err(damaged_error(&inner.dir, &range));
            }
        }
        Err(LogError::CorruptSegment {
            path: inner.dir.clone(),
            first: from,
            last: from,
            next: from,
            reason: "too many damaged ranges before this offset".into(),
        })
    }

    /// The first offset whose record timestamp is `>= timestamp_ms`, among offsets below the high
    /// watermark; `None` when there is none (Kafka's ListOffsets by timestamp).
    pub async fn offset_for_timestamp(&self, timestamp_ms: TimestampMs) -> Result<Option<Offset>> {
        let start = {
            let st = self.inner.state.borrow();
            let Some(seg) = st
                .segments
                .iter()
                .find(|s| s.max_timestamp != NO_TIMESTAMP && s.max_timestamp >= timestamp_ms)
            else {
                return Ok(None);
            };
            seg.time_index
                .lookup(timestamp_ms)
                .map(|rel| seg.base.plus(u64::from(rel)))
                .unwrap_or(seg.base)
                .max(st.segments.front().expect("a segment").base)
        };
        let mut from = start;
        loop {
            let got = match self.read(from, 1 << 20).await {
                Ok(got) => got,
                // Damaged batches are not looked at; the answer comes from what can be read.
                Err(LogError::CorruptSegment { next, .. }) if next > from => {
                    from = next;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if got.batches.is_empty() {
                return Ok(None);
            }
            for b in &got.batches {
                let h = record::BatchHeader::parse(b)?;
                if h.max_timestamp >= timestamp_ms {
                    if let Some(o) = record::first_offset_at_or_after(b, timestamp_ms)? {
                        return Ok(Some(Offset(o as u64).max(from)));
                    }
                }
                from = Offset(h.last_offset() as u64 + 1);
            }
        }
    }
}

pub(super) fn damaged_error(dir: &Path, r: &DamagedRange) -> LogError {
    LogError::CorruptSegment {
        path: segment::log_path(dir, r.segment),
        first: r.first,
        last: r.last,
        next: r.next(),
        reason: r.reason.clone(),
    }
}
