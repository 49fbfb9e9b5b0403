//! Removing batches from a partition log: a suffix (truncation) and old segments (retention).

use std::path::Path;
use std::rc::Rc;

use super::handle::PartitionLog;
use crate::disk::appender::Appender;
use crate::disk::checkpoint::{self, RECOVERY_POINT_FILE};
use crate::disk::commit;
use crate::disk::damage::DamagedRange;
use crate::disk::dma;
use crate::disk::error::{LogError, Result};
use crate::disk::meta::{self, store_damage, write_damage_file};
use crate::disk::segment::{self, NO_TIMESTAMP};
use crate::disk::state::hw_of;
use crate::record;
use crate::types::{Epoch, Offset};

impl PartitionLog {
    /// Removes every batch at or after `offset` (an uncommitted suffix, when a replica follows a
    /// new leader). `offset` must be a batch boundary at or above the high watermark.
    pub async fn truncate_to(&self, offset: Offset) -> Result<()> {
        let inner = &*self.inner;
        let _permit = inner
            .io_lock
            .acquire_permit(1)
            .await
            .map_err(|_| LogError::Closed)?;
        // Write out and sync everything staged first, so the files hold the whole log; then no
        // I/O starts and no append is staged until the truncation is done.
        let _quiet = commit::quiesce(&self.inner, true).await?;
        let (seg_base, file, path, start_pos, skips) = {
            let st = inner.state.borrow();
            let hw = hw_of(&st, &inner.config);
            if offset < hw {
                return Err(LogError::TruncateBelowHighWatermark {
                    requested: offset,
                    high_watermark: hw,
                });
            }
            if offset > st.next_offset {
                return Err(LogError::OffsetOutOfRange {
                    requested: offset,
                    earliest: st.segments.front().expect("a segment").base,
                    latest: st.next_offset,
                });
            }
            if offset == st.next_offset {
                return Ok(());
            }
            if st
                .damage
                .containing(offset)
                .is_some_and(|r| r.first != offset)
            {
                return Err(LogError::TruncateInsideBatch { requested: offset });
            }
            let i = st.segments.partition_point(|s| s.base <= offset) - 1;
            let seg = &st.segments[i];
            (
                seg.base,
                seg.file.clone(),
                seg.log_path(),
                seg.read_start(offset),
                st.damage.in_segment(seg.base).cloned().collect::<Vec<_>>(),
            )
        };
        // A finalized segment may be open read-only; it becomes the active one again.
        inner.files.forget(&path);
        let file = match file {
            Some(f) => f,
            None => Rc::new(
                glommio::io::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .dma_open(&path)
                    .await
                    .map_err(|e| LogError::glommio("open", &path, e))?,
            ),
        };
        // Find the byte position of the batch that starts at `offset`.
        let position = if offset == seg_base {
            0
        } else {
            find_batch_position(&file, &path, start_pos, offset, &skips).await?
        };
        // Never leave a recovery point past the end: lower it durably before cutting, and keep
        // the checkpoint task out until the durable offset is lowered too.
        let _files = inner
            .files_lock
            .acquire_permit(1)
            .await
            .map_err(|_| LogError::Closed)?;
        if offset < inner.state.borrow().recovery_point {
            checkpoint::replace_file(
                &inner.dir,
                RECOVERY_POINT_FILE,
                checkpoint::encode_recovery_point(offset).into_bytes(),
            )
            .await?;
            inner.state.borrow_mut().recovery_point = offset;
        }
        // The later segments go first, newest first, and durably: a crash before the cut below
        // must not leave a cut segment with whole segments after it, which a restart would serve
        // again (the divergent suffix) behind an empty damaged range.
        let later: Vec<Offset> = {
            let st = inner.state.borrow();
            st.segments
                .iter()
                .rev()
                .take_while(|s| s.base > seg_base)
                .map(|s| s.base)
                .collect()
        };
        if !later.is_empty() {
            for &base in &later {
                inner.files.forget(&segment::log_path(&inner.dir, base));
                segment::remove_files(&inner.dir, base).await;
            }
            checkpoint::sync_dir(&inner.dir).await?;
        }
        dma::truncate_synced(&file, &path, position).await?;
        let tail = dma::read_tail(&file, &path, position).await?;
        // From here the files are cut: the state follows them whatever happens next, and the
        // checkpoint files are best effort (a failure is logged; the files hold the truth).
        let epochs_changed = {
            let mut st = inner.state.borrow_mut();
            while st.segments.back().expect("a segment").base > seg_base {
                st.segments.pop_back();
            }
            let seg = st.segments.back_mut().expect("a segment");
            seg.truncate_memory(offset, position);
            seg.sealed = false;
            seg.file = Some(file.clone());
            seg.appender = Some(Appender::resume(
                inner.pool.clone(),
                position,
                offset,
                &tail,
            ));
            let epochs_changed = st.epochs.truncate_to(offset);
            st.last_epoch = st.epochs.latest().unwrap_or(Epoch(-1));
            let damage_changed = st.damage.truncate_to(offset);
            st.next_offset = offset;
            // Appends past `offset` not yet acknowledged are gone: fail them now, or they would
            // resolve once later appends reach their offsets.
            st.commit.truncated(offset, |r| {
                r.resolve(Err(LogError::Truncated { offset }));
            });
            (epochs_changed, damage_changed)
        };
        let (epochs_changed, damage_changed) = epochs_changed;
        inner.cache.truncate_from(inner.cache_key, offset);
        if epochs_changed {
            let epochs = inner.state.borrow().epochs.clone();
            if let Err(e) = meta::store_epochs(&inner.dir, &epochs).await {
                tracing::warn!(dir = %inner.dir.display(), error = %e,
                    "truncation: cannot write the leader-epoch checkpoint; it keeps newer epochs");
            }
        }
        if damage_changed {
            if let Err(e) = write_damage_file(&self.inner).await {
                tracing::warn!(dir = %inner.dir.display(), error = %e,
                    "truncation: cannot write the damaged ranges; recovery finds them again");
            }
        }
        let (base, seg_files) = {
            let st = inner.state.borrow();
            let seg = st.segments.back().expect("a segment");
            (seg.base, seg.index_files.clone())
        };
        let files = match seg_files {
            Some(f) => f,
            None => Rc::new(segment::IndexFiles::open(&inner.dir, base).await?),
        };
        let delta = {
            let mut st = inner.state.borrow_mut();
            let seg = st.segments.back_mut().expect("a segment");
            seg.index_files = Some(files.clone());
            seg.index_persisted = 0;
            seg.time_persisted = 0;
            seg.index_files_stale = false;
            seg.index_delta()
        };
        files.write_delta(delta, true).await?;
        {
            let mut st = inner.state.borrow_mut();
            let seg = st.segments.back_mut().expect("a segment");
            seg.index_persisted = seg.index.len();
            seg.time_persisted = seg.time_index.len();
        }
        checkpoint::sync_dir(&inner.dir).await?;
        inner.progress.notify();
        Ok(())
    }

    /// Deletes sealed segments past `retention_ms` or beyond `retention_bytes`, oldest first. The
    /// active segment and segments holding offsets at or above the high watermark are kept.
    /// Returns the number of segments deleted.
    pub async fn enforce_retention(&self) -> Result<usize> {
        let inner = &*self.inner;
        let cfg = &inner.config;
        let now = (inner.clock)();
        let removed: Vec<Offset> = {
            let mut st = inner.state.borrow_mut();
            let hw = hw_of(&st, cfg);
            let mut total: u64 = st.segments.iter().map(|s| s.size).sum();
            let mut removed = Vec::new();
            while st.segments.len() > 1 {
                let s = st.segments.front().expect("a segment");
                if !s.sealed || s.appender.is_some() || s.next_offset > hw {
                    break;
                }
                let expired = cfg.retention_ms.is_some_and(|r| {
                    s.max_timestamp != NO_TIMESTAMP && now.saturating_sub(s.max_timestamp) > r
                });
                let oversize = cfg
                    .retention_bytes
                    .is_some_and(|r| total.saturating_sub(s.size) >= r);
                if !(expired || oversize) {
                    break;
                }
                total -= s.size;
                let s = st.segments.pop_front().expect("a segment");
                removed.push(s.base);
            }
            removed
        };
        if removed.is_empty() {
            return Ok(0);
        }
        let start = self.log_start_offset();
        inner.cache.evict_before(inner.cache_key, start);
        let damage_changed = {
            let mut st = inner.state.borrow_mut();
            let st = &mut *st;
            let segments = &st.segments;
            st.damage
                .retain_segments(|b| segments.iter().any(|s| s.base == b))
        };
        // The segments go whatever happens to the damaged-ranges file: they are out of the
        // state already, and on a full disk their space is what is needed. A table that still
        // names them is harmless (ranges of segments that are gone are dropped at open).
        for base in &removed {
            tracing::info!(dir = %inner.dir.display(), base = %base, "retention deleted segment");
            inner.files.forget(&segment::log_path(&inner.dir, *base));
            segment::remove_files(&inner.dir, *base).await;
        }
        checkpoint::sync_dir(&inner.dir).await?;
        if damage_changed {
            if let Err(e) = store_damage(&self.inner).await {
                tracing::warn!(dir = %inner.dir.display(), error = %e,
                    "retention: cannot rewrite the damaged ranges; retried at the next change");
            }
        }
        Ok(removed.len())
    }
}

/// Walks batch headers from `start_pos` to find where the batch starting at `offset` is,
/// stepping over the segment's damaged ranges (`skips`).
async fn find_batch_position(
    file: &glommio::io::DmaFile,
    path: &Path,
    mut pos: u64,
    offset: Offset,
    skips: &[DamagedRange],
) -> Result<u64> {
    for k in skips {
        // The index entry may point into a range that ends before `offset`.
        if k.start_pos <= pos && pos < k.end_pos && k.last < offset {
            pos = k.end_pos;
        }
    }
    loop {
        if let Some(k) = skips.iter().find(|k| k.start_pos == pos) {
            if k.first == offset {
                return Ok(pos);
            }
            if k.contains(offset) {
                return Err(LogError::TruncateInsideBatch { requested: offset });
            }
            pos = k.end_pos;
            continue;
        }
        let got = file
            .read_at(pos, record::BATCH_HEADER_BYTES)
            .await
            .map_err(|e| LogError::glommio("read", path, e))?;
        let h = record::BatchHeader::parse(&got)?;
        let base = Offset(h.base_offset as u64);
        if base == offset {
            return Ok(pos);
        }
        if base > offset || Offset(h.last_offset() as u64) >= offset {
            return Err(LogError::TruncateInsideBatch { requested: offset });
        }
        pos += h.total_bytes() as u64;
    }
}
