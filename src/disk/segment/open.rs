//! Opening a log's segments: a sealed one (its indexes loaded and checked against the log, or
//! rebuilt by a scan) and the active one (recovered: scanned from its last good index entry,
//! a torn tail cut). The scan's rules are the sans-I/O `recovery` scanner's; this file feeds it
//! the file's bytes.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use super::in_memory::{Segment, NO_TIMESTAMP};
use super::index_files::{load_indexes, write_index_files, IndexFiles};
use super::paths::log_path;
use crate::disk::appender::{Appender, BufferPool};
use crate::disk::config::LogConfig;
use crate::disk::damage::DamagedRange;
use crate::disk::dma;
use crate::disk::epochs::EpochCache;
use crate::disk::error::{LogError, Result};
use crate::disk::index::{self, OffsetEntry, OffsetIndex, TimeIndex};
use crate::disk::recovery::{Feed, ScanEnd, ScanPolicy, ScannedBatch, Scanner};
use crate::record::{self, BatchHeader};
use crate::types::{Epoch, Offset, TimestampMs};

/// Bytes read per step when a segment is scanned.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// What recovery knows about a log besides one segment's bytes.
#[derive(Clone, Debug)]
pub(crate) struct RecoveryContext {
    /// Offsets below this were durable (see `recovery/`).
    pub(crate) recovery_point: Offset,
    pub(crate) epochs: EpochCache,
    /// Damaged ranges known from the `damaged-ranges` file, all segments.
    pub(crate) known: Vec<DamagedRange>,
}

impl RecoveryContext {
    /// The scan policy for segment `base` whose bytes are `file_bytes` long.
    fn policy(
        &self,
        base: Offset,
        file_bytes: u64,
        recovery_point: Offset,
        end_offset: Option<Offset>,
        cfg: &LogConfig,
    ) -> ScanPolicy {
        ScanPolicy {
            segment: base,
            // Recovery accepts any batch that fits a segment: the limit may have been lowered.
            batch_bytes_max: cfg.segment_bytes as usize,
            recovery_point,
            epochs: self.epochs.clone(),
            // A known range past the end of the file is stale: it is found again if it exists.
            known: self
                .known
                .iter()
                .filter(|r| r.segment == base && r.end_pos <= file_bytes)
                .cloned()
                .collect(),
            end_offset,
            trim_zero_tail: end_offset.is_none(),
            stop_after_damage: false,
        }
    }
}

/// What recovery did to a segment, for the log line and the tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    pub path: PathBuf,
    /// Bytes scanned (from the last verified index entry to the end of the file).
    pub scanned_bytes: u64,
    /// Bytes cut off the end of the file.
    pub truncated_bytes: u64,
    /// How the scan ended.
    pub end: ScanEnd,
    /// Leader epoch of the last valid batch scanned (-1 when none was).
    pub last_epoch: Epoch,
    /// Damaged ranges found or stepped over (never cut: see `recovery/`).
    pub damaged: Vec<DamagedRange>,
}

impl Segment {
    /// Opens a sealed segment: loads its indexes, or rebuilds them by scanning the segment when
    /// they are missing or fail their checks. `next_base` is the next segment's base offset. A
    /// sealed segment was synced whole before the next one got a byte, so every failure in it is
    /// damage: reported in the report's `damaged`, never cut.
    pub(crate) async fn open_sealed(
        dir: &Path,
        base: Offset,
        next_base: Offset,
        cfg: &LogConfig,
        ctx: &RecoveryContext,
    ) -> Result<(Segment, Option<RecoveryReport>)> {
        let path = log_path(dir, base);
        let file = Rc::new(open_dma(&path).await?);
        let file_bytes = file_size(&file, &path).await?;
        let mut seg = Segment::empty(dir, base, file.clone(), NO_TIMESTAMP);
        // Opened only to check it: it is closed when this returns, and reopened on read.
        seg.file = None;
        seg.sealed = true;
        seg.size = file_bytes;
        let policy = ctx.policy(base, file_bytes, next_base, Some(next_base), cfg);
        if let Some((ix, ti)) = load_indexes(dir, base, file_bytes) {
            match verify_sealed_indexes(
                &file, &path, base, next_base, file_bytes, &ix, &ti, &policy,
            )
            .await?
            {
                Ok(last_rel) => {
                    seg.max_timestamp = ti.last().map(|e| e.timestamp).unwrap_or(NO_TIMESTAMP);
                    seg.last_batch_rel = last_rel;
                    seg.index_persisted = ix.len();
                    seg.time_persisted = ti.len();
                    seg.index = ix;
                    seg.time_index = ti;
                    seg.next_offset = next_base;
                    return Ok((seg, None));
                }
                Err(why) => tracing::warn!(path = %path.display(), %why,
                    "index does not match the log; rebuilding it"),
            }
        } else {
            tracing::warn!(path = %path.display(), "index missing or invalid; rebuilding from the log");
        }
        // Rebuild: scan the whole segment from its base offset.
        let report = seg
            .rebuild(&file, 0, policy, cfg.index_interval_bytes)
            .await?;
        if seg.next_offset != next_base {
            tracing::error!(path = %path.display(), end = %seg.next_offset, %next_base,
                "sealed segment holds offsets past the next segment's base");
        }
        for d in &report.damaged {
            tracing::error!(path = %path.display(), first = %d.first, last = %d.last,
                reason = %d.reason, "damaged range in sealed segment: not served");
        }
        seg.next_offset = next_base;
        seg.seal_time_index();
        // Derived data: on a full disk the segment is served from the index in memory, and the
        // files are rebuilt at the next open.
        if let Err(e) = write_index_files(seg.index_image()).await {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the rebuilt index");
        }
        Ok((seg, Some(report)))
    }

    /// Opens the last segment of a log and recovers it: scans from the last index entry that
    /// checks out against the log, truncates a torn or invalid tail, and rebuilds the index
    /// entries past the scan start. The cost grows with the bytes after that entry.
    pub(crate) async fn recover_active(
        dir: &Path,
        base: Offset,
        cfg: &LogConfig,
        ctx: &RecoveryContext,
        pool: &Rc<BufferPool<DmaBuffer>>,
        now_ms: TimestampMs,
    ) -> Result<(Segment, RecoveryReport)> {
        let path = log_path(dir, base);
        let file = Rc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .dma_open(&path)
                .await
                .map_err(|e| LogError::glommio("open", &path, e))?,
        );
        let file_bytes = file_size(&file, &path).await?;
        let mut seg = Segment::empty(dir, base, file.clone(), NO_TIMESTAMP);
        let (ix, ti) = load_indexes(dir, base, file_bytes).unwrap_or_default();
        // Find the newest index entry whose batch header is really there.
        let mut start: Option<OffsetEntry> = None;
        for e in ix.entries().iter().rev() {
            if let Ok(h) = read_header(&file, &path, u64::from(e.position)).await {
                if h.base_offset >= 0
                    && Offset(h.base_offset as u64) == base.plus(u64::from(e.relative))
                {
                    start = Some(*e);
                    break;
                }
            }
        }
        let mut ix = ix;
        let mut ti = ti;
        // The time index must hold the entry of the start batch (one per offset-index entry):
        // otherwise it was cut short and the running maximum before the start is unknown, so
        // scan the whole segment.
        let start = start.filter(|e| ti.entries().iter().any(|t| t.relative == e.relative));
        let (start_pos, start_off) = match start {
            Some(e) => {
                ix.truncate_from_relative(e.relative + 1);
                ti.truncate_from_relative(e.relative + 1);
                (u64::from(e.position), base.plus(u64::from(e.relative)))
            }
            None => {
                ix = OffsetIndex::new();
                ti = TimeIndex::new();
                (0, base)
            }
        };
        seg.max_timestamp = ti.last().map(|e| e.timestamp).unwrap_or(NO_TIMESTAMP);
        seg.index = ix;
        seg.time_index = ti;
        seg.size = start_pos;
        seg.next_offset = start_off;
        // The segments before this one are durable whole.
        let rp = ctx.recovery_point.max(base);
        let policy = ctx.policy(base, file_bytes, rp, None, cfg);
        let report = seg
            .rebuild(&file, start_pos, policy, cfg.index_interval_bytes)
            .await?;
        let valid_end = seg.size;
        for d in &report.damaged {
            tracing::error!(path = %path.display(), first = %d.first, last = %d.last,
                reason = %d.reason, "damaged range below the log end: kept, not served");
        }
        if file_bytes > valid_end {
            match &report.end {
                ScanEnd::Invalid { position, reason } => tracing::warn!(
                    path = %path.display(), position, %reason, recovery_point = %rp,
                    truncated_bytes = file_bytes - valid_end,
                    "truncating a torn tail past the recovery point"),
                _ => tracing::debug!(path = %path.display(), "dropping zero padding"),
            }
            file.truncate(valid_end)
                .await
                .map_err(|e| LogError::glommio("truncate", &path, e))?;
        }
        // What recovery kept counts as durable from now on (the high watermark may include it),
        // so make it so: after a process crash it may still sit in the device's cache.
        file.fdatasync()
            .await
            .map_err(|e| LogError::glommio("fdatasync", &path, e))?;
        // Rewrite the index files whole: the kept prefix plus the rebuilt entries. Derived data:
        // on a full disk they are written again with the next sync's entries.
        seg.index_persisted = 0;
        seg.time_persisted = 0;
        match write_index_files(seg.index_image()).await {
            Ok(()) => {
                seg.index_persisted = seg.index.len();
                seg.time_persisted = seg.time_index.len();
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the index");
                seg.index_files_stale = true;
            }
        }
        if seg.created_ms == NO_TIMESTAMP {
            seg.created_ms = now_ms;
        }
        seg.index_files = Some(Rc::new(IndexFiles::open(dir, base).await?));
        let tail = dma::read_tail(&file, &path, valid_end).await?;
        seg.appender = Some(Appender::resume(
            pool.clone(),
            valid_end,
            seg.next_offset,
            &tail,
        ));
        Ok((
            seg,
            RecoveryReport {
                truncated_bytes: file_bytes - valid_end,
                ..report
            },
        ))
    }

    /// Scans from `start_pos` (where `self.next_offset` starts) to the end of the file, validating
    /// every batch and adding index entries; `self.size` and `self.next_offset` end at the end of
    /// what the scan accepted (valid batches and damaged ranges).
    async fn rebuild(
        &mut self,
        file: &DmaFile,
        start_pos: u64,
        policy: ScanPolicy,
        index_interval_bytes: u64,
    ) -> Result<RecoveryReport> {
        let path = self.log_path();
        let file_bytes = file_size(file, &path).await?;
        let mut scanner = Scanner::new(start_pos, self.next_offset, policy);
        self.bytes_since_index = 0;
        let interval = index_interval_bytes;
        let base = self.base;
        let end = {
            let seg = &mut *self;
            scan_file(file, &path, &mut scanner, file_bytes, &mut |b, _| {
                let rel = index::relative(base, b.base()).unwrap_or(u32::MAX);
                seg.account_batch(&b.header, rel, b.position as u32, interval);
                seg.next_offset = b.next_offset();
                seg.size = b.end();
            })
            .await?
        };
        self.size = scanner.position();
        self.next_offset = scanner.next_offset();
        Ok(RecoveryReport {
            path,
            scanned_bytes: scanner.position().saturating_sub(start_pos),
            truncated_bytes: 0,
            end,
            last_epoch: scanner.last_epoch().unwrap_or(Epoch(-1)),
            damaged: scanner.damaged().to_vec(),
        })
    }
}

/// Checks a sealed segment's loaded indexes against the log without reading all of it: the batches
/// from the last offset-index entry must run exactly to the end of the file and to `next_base`,
/// every offset-index entry must have its time-index entry, and the last time-index entry must be
/// the seal entry of the last batch with the segment's largest timestamp. Returns the relative
/// offset of the last batch, or why the indexes do not fit (then they are rebuilt).
#[allow(clippy::too_many_arguments)]
async fn verify_sealed_indexes(
    file: &DmaFile,
    path: &Path,
    base: Offset,
    next_base: Offset,
    file_bytes: u64,
    ix: &OffsetIndex,
    ti: &TimeIndex,
    policy: &ScanPolicy,
) -> Result<std::result::Result<u32, String>> {
    if ix
        .entries()
        .iter()
        .any(|e| !ti.entries().iter().any(|t| t.relative == e.relative))
    {
        return Ok(Err("an offset-index entry has no time-index entry".into()));
    }
    let (start_pos, start_off) = ix
        .entries()
        .last()
        .map(|e| (u64::from(e.position), base.plus(u64::from(e.relative))))
        .unwrap_or((0, base));
    let mut scanner = Scanner::new(start_pos, start_off, policy.clone());
    let mut last: Option<(u32, i64)> = None;
    let mut tail_max = NO_TIMESTAMP;
    let end = scan_file(file, path, &mut scanner, file_bytes, &mut |b, _| {
        last = Some((
            index::relative(base, b.base()).unwrap_or(u32::MAX),
            b.header.max_timestamp,
        ));
        tail_max = tail_max.max(b.header.max_timestamp);
    })
    .await?;
    if !matches!(end, ScanEnd::Clean | ScanEnd::ZeroPadding) {
        return Ok(Err(format!("the tail does not scan cleanly: {end:?}")));
    }
    // Known damaged ranges are stepped over; a new one means a rebuild, which reports it.
    let known = policy
        .known
        .iter()
        .filter(|k| k.start_pos >= start_pos)
        .count();
    if scanner.damaged().len() != known || scanner.position() != file_bytes {
        return Ok(Err(format!(
            "the tail holds new damage: {:?}",
            scanner.damaged()
        )));
    }
    if scanner.next_offset() != next_base {
        return Ok(Err(format!(
            "the tail ends at offset {}, the next segment starts at {next_base}",
            scanner.next_offset()
        )));
    }
    let Some((last_rel, _)) = last else {
        return Ok(Err("no batch after the last index entry".into()));
    };
    match ti.last() {
        Some(t) if t.relative == last_rel && t.timestamp >= tail_max => Ok(Ok(last_rel)),
        other => Ok(Err(format!(
            "the time index ends at {other:?}, not at the last batch {last_rel}"
        ))),
    }
}

/// Feeds `scanner` the file from its position to `file_bytes`, in chunks.
pub(super) async fn scan_file(
    file: &DmaFile,
    path: &Path,
    scanner: &mut Scanner,
    file_bytes: u64,
    on_batch: &mut dyn FnMut(&ScannedBatch, &[u8]),
) -> Result<ScanEnd> {
    let mut pos = scanner.cursor();
    let mut want = SCAN_CHUNK_BYTES;
    loop {
        let len = file_bytes.saturating_sub(pos).min(want as u64) as usize;
        let buf = if len == 0 {
            None
        } else {
            Some(
                file.read_at(pos, len)
                    .await
                    .map_err(|e| LogError::glommio("read", path, e))?,
            )
        };
        let slice: &[u8] = buf.as_deref().unwrap_or(&[]);
        let at_eof = pos + slice.len() as u64 >= file_bytes;
        match scanner.feed(slice, at_eof, on_batch) {
            Feed::Done(end) => return Ok(end),
            Feed::NeedMore { from, at_least } => {
                assert!(
                    !(from == pos && slice.len() >= at_least),
                    "scanner asked again for bytes it had"
                );
                pos = from;
                want = at_least.max(SCAN_CHUNK_BYTES);
            }
        }
    }
}

/// Reads and parses the batch header at `position`.
async fn read_header(file: &DmaFile, path: &Path, position: u64) -> Result<BatchHeader> {
    let got = file
        .read_at(position, record::BATCH_HEADER_BYTES)
        .await
        .map_err(|e| LogError::glommio("read", path, e))?;
    BatchHeader::parse(&got).map_err(LogError::InvalidBatch)
}

async fn open_dma(path: &Path) -> Result<DmaFile> {
    DmaFile::open(path)
        .await
        .map_err(|e| LogError::glommio("open", path, e))
}

pub(crate) async fn file_size(file: &DmaFile, path: &Path) -> Result<u64> {
    file.file_size()
        .await
        .map_err(|e| LogError::glommio("stat", path, e))
}
