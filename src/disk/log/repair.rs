//! Repairing a damaged range of a partition log in place.

use std::rc::Rc;

use bytes::Bytes;

use super::handle::PartitionLog;
use crate::disk::appender;
use crate::disk::error::{LogError, Result};
use crate::disk::meta::store_damage;
use crate::record;
use crate::types::{Epoch, Offset};

impl PartitionLog {
    /// Replaces the damaged range that starts at `first` with `batches`: **replication will fill
    /// this from a replica** (the leader's copy of the same offsets). The batches must be whole
    /// and valid (CRC, records), carry the epochs the leader-epoch checkpoint says, and hold
    /// exactly the range's offsets, contiguous; anything else is refused with
    /// [`LogError::Repair`] and nothing is written.
    ///
    /// Today the bytes are written in place, which needs them to fill the damaged byte span
    /// exactly (a replica's copy of a batch with flipped bits does; a range whose bytes are gone
    /// does not, and is refused until segment rewriting exists), and, in the active segment, to
    /// lie in blocks the appender no longer writes. The write is synced and read back before
    /// the range is forgotten.
    pub async fn repair_range(&self, first: Offset, batches: &[Bytes]) -> Result<()> {
        let inner = &*self.inner;
        fn refuse<T>(first: Offset, reason: String) -> Result<T> {
            Err(LogError::Repair { first, reason })
        }
        let (range, epochs) = {
            let st = inner.state.borrow();
            match st.damage.containing(first) {
                Some(r) if r.first == first => (r.clone(), st.epochs.clone()),
                _ => return refuse(first, "no damaged range starts there".into()),
            }
        };
        let mut expect = range.first;
        let mut prev = None;
        let mut bytes = Vec::new();
        for b in batches {
            let h = record::validate_batch(b, inner.config.segment_bytes as usize)
                .or_else(|e| refuse(first, format!("invalid batch at offset {expect}: {e}")))?;
            if h.base_offset < 0 || Offset(h.base_offset as u64) != expect {
                return refuse(
                    first,
                    format!(
                        "a batch starts at offset {}, expected {expect}",
                        h.base_offset
                    ),
                );
            }
            let epoch = Epoch(h.partition_leader_epoch);
            if let Err(e) = epochs.check_batch(expect, epoch, prev) {
                return refuse(first, e);
            }
            prev = Some(epoch);
            expect = Offset(h.last_offset() as u64 + 1);
            bytes.extend_from_slice(b);
        }
        if expect != range.next() {
            return refuse(
                first,
                format!(
                    "the batches end at offset {expect}, the range at {}",
                    range.next()
                ),
            );
        }
        let span = range.end_pos - range.start_pos;
        if bytes.len() as u64 != span {
            return refuse(
                first,
                format!(
                "the batches are {} bytes, the damaged span {span}: rewriting a segment around \
                 them is not implemented yet",
                bytes.len()
            ),
            );
        }
        let _permit = inner
            .io_lock
            .acquire_permit(1)
            .await
            .map_err(|_| LogError::Closed)?;
        let (file, path, size, writable) = {
            let st = inner.state.borrow();
            let Some(seg) = st.segments.iter().find(|s| s.base == range.segment) else {
                return refuse(first, "its segment is gone".into());
            };
            if let Some(app) = &seg.appender {
                // The appender rewrites the partial block at its written end.
                if appender::align_up(range.end_pos) > appender::align_down(app.written().pos) {
                    return refuse(
                        first,
                        "it shares a block with the appender; retry once more is written".into(),
                    );
                }
            }
            (
                seg.file.clone(),
                seg.log_path(),
                seg.size,
                seg.appender.is_some(),
            )
        };
        let file = if let (true, Some(file)) = (writable, file) {
            file
        } else {
            Rc::new(
                glommio::io::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .dma_open(&path)
                    .await
                    .map_err(|e| LogError::glommio("open", &path, e))?,
            )
        };
        let a0 = appender::align_down(range.start_pos);
        let a1 = appender::align_up(range.end_pos);
        let old = file
            .read_at(a0, (a1 - a0) as usize)
            .await
            .map_err(|e| LogError::glommio("read", &path, e))?;
        let mut buf = file.alloc_dma_buffer((a1 - a0) as usize);
        buf.as_bytes_mut().fill(0);
        buf.as_bytes_mut()[..old.len()].copy_from_slice(&old);
        let at = (range.start_pos - a0) as usize;
        buf.as_bytes_mut()[at..at + bytes.len()].copy_from_slice(&bytes);
        file.write_at(buf, a0)
            .await
            .map_err(|e| LogError::glommio("write", &path, e))?;
        if !writable && a1 > size {
            // The last block of a sealed segment: keep its exact size.
            file.truncate(size)
                .await
                .map_err(|e| LogError::glommio("truncate", &path, e))?;
        }
        file.fdatasync()
            .await
            .map_err(|e| LogError::glommio("fdatasync", &path, e))?;
        let back = file
            .read_at(range.start_pos, bytes.len())
            .await
            .map_err(|e| LogError::glommio("read", &path, e))?;
        if back[..] != bytes[..] {
            return refuse(
                first,
                "the bytes read back differ from the bytes written".into(),
            );
        }
        if !writable {
            let _ = file.close_rc().await;
        }
        inner.state.borrow_mut().damage.remove(range.first);
        tracing::info!(path = %path.display(), first = %range.first, last = %range.last,
            "damaged range repaired");
        store_damage(&self.inner).await
    }
}
