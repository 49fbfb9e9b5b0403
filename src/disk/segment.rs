//! One segment of a partition log: `<base offset, 20 digits>.log` with its sparse `.index` and
//! `.timeindex` files, held in memory while the log is open.
//!
//! Lives on the shard that owns the partition, inside the log's state. Methods here are either
//! synchronous (in-memory bookkeeping) or free `async fn`s that take cloned file handles, so no
//! borrow of the log state is held while I/O is in flight.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use glommio::io::{BufferedFile, DmaFile, OpenOptions};

use super::appender::{self, Appender, Boundary, BufferPool};
use super::checkpoint::sync_dir;
use super::config::LogConfig;
use super::damage::DamagedRange;
use super::epochs::EpochCache;
use super::error::{LogError, Result};
use super::index::{self, OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};
use super::recovery::{Feed, ScanEnd, ScanPolicy, Scanner};
use crate::record::{self, BatchHeader};
use crate::types::{Epoch, Offset, TimestampMs};

/// Timestamp of a batch without one (Kafka's `NO_TIMESTAMP`).
pub const NO_TIMESTAMP: TimestampMs = -1;

/// Bytes read per step when a segment is scanned.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

pub(crate) fn log_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{:020}.log", base.0))
}

pub(crate) fn index_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{:020}.index", base.0))
}

pub(crate) fn time_index_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{:020}.timeindex", base.0))
}

/// Parses `<20 digits>.log` into a base offset.
pub(crate) fn parse_log_name(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Offset)
}

/// What recovery knows about a log besides one segment's bytes.
#[derive(Clone, Debug)]
pub(crate) struct RecoveryContext {
    /// Offsets below this were durable (see `recovery.rs`).
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
    /// Damaged ranges found or stepped over (never cut: see `recovery.rs`).
    pub damaged: Vec<DamagedRange>,
}

pub(crate) struct Segment {
    pub(crate) base: Offset,
    /// Offset after the last batch appended (staged included).
    pub(crate) next_offset: Offset,
    /// Logical bytes appended (staged included).
    pub(crate) size: u64,
    pub(crate) dir: PathBuf,
    /// Open while the segment has an appender (until it is finalized). A sealed segment's file
    /// is opened on read through the shard's [`super::files::FileCache`].
    pub(crate) file: Option<Rc<DmaFile>>,
    pub(crate) index: OffsetIndex,
    pub(crate) time_index: TimeIndex,
    /// Entries of each index already in its file.
    pub(crate) index_persisted: usize,
    pub(crate) time_persisted: usize,
    bytes_since_index: u64,
    /// Largest batch max-timestamp in the segment.
    pub(crate) max_timestamp: TimestampMs,
    /// Relative offset of the last batch appended.
    last_batch_rel: u32,
    /// Wall-clock time of the segment's first append, for `segment_ms`.
    pub(crate) created_ms: TimestampMs,
    /// Present while bytes may still be appended or are not yet all durable.
    pub(crate) appender: Option<Appender>,
    /// Open index files, while `appender` is present.
    pub(crate) index_files: Option<Rc<IndexFiles>>,
    /// Index entries were removed since the files were written: cut them at the next write.
    pub(crate) index_files_stale: bool,
    /// No more appends go to this segment; a newer one exists.
    pub(crate) sealed: bool,
    /// Descriptors of the shard's transient pool held from the roll that sealed this segment
    /// until it is finalized (its files and the new segment's are open together meanwhile).
    pub(crate) roll_fds: Option<glommio::sync::StaticPermit>,
}

impl Segment {
    pub(crate) fn log_path(&self) -> PathBuf {
        log_path(&self.dir, self.base)
    }

    /// The file of a segment that still has an appender.
    pub(crate) fn active_file(&self) -> Rc<DmaFile> {
        self.file
            .clone()
            .expect("a segment keeps its file open while it has an appender")
    }

    fn empty(dir: &Path, base: Offset, file: Rc<DmaFile>, now_ms: TimestampMs) -> Segment {
        Segment {
            base,
            next_offset: base,
            size: 0,
            dir: dir.to_path_buf(),
            file: Some(file),
            index: OffsetIndex::new(),
            time_index: TimeIndex::new(),
            index_persisted: 0,
            time_persisted: 0,
            bytes_since_index: 0,
            max_timestamp: NO_TIMESTAMP,
            last_batch_rel: 0,
            created_ms: now_ms,
            appender: None,
            index_files: None,
            index_files_stale: false,
            sealed: false,
            roll_fds: None,
        }
    }

    /// Creates a new, empty active segment at `base`, staging into buffers from `pool`.
    pub(crate) async fn create(
        dir: &Path,
        base: Offset,
        pool: &Rc<BufferPool>,
        now_ms: TimestampMs,
    ) -> Result<Segment> {
        let path = log_path(dir, base);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .dma_open(&path)
            .await
            .map_err(|e| LogError::glommio("create", &path, e))?;
        let file = Rc::new(file);
        for p in [index_path(dir, base), time_index_path(dir, base)] {
            // Stale index files of an earlier segment at this base are derived data: replace them.
            let _ = std::fs::remove_file(&p);
        }
        let index_files = match IndexFiles::open(dir, base).await {
            Ok(files) => match sync_dir(dir).await {
                Ok(()) => files,
                Err(e) => {
                    files.close().await;
                    return Err(Self::abandon_create(dir, base, file, e).await);
                }
            },
            Err(e) => return Err(Self::abandon_create(dir, base, file, e).await),
        };
        let mut seg = Segment::empty(dir, base, file.clone(), now_ms);
        seg.index_files = Some(Rc::new(index_files));
        seg.appender = Some(Appender::resume(pool.clone(), 0, base, &[]));
        Ok(seg)
    }

    /// Undoes a [`Segment::create`] that failed after its `.log` existed: closes the file and
    /// removes the `.log` and any index file, so a later roll to the same base can succeed
    /// (`create_new` would otherwise fail on the leftover until a restart). Returns `err`.
    async fn abandon_create(
        dir: &Path,
        base: Offset,
        file: Rc<DmaFile>,
        err: LogError,
    ) -> LogError {
        if let Ok(file) = Rc::try_unwrap(file) {
            let _ = file.close().await;
        }
        for p in [
            log_path(dir, base),
            index_path(dir, base),
            time_index_path(dir, base),
        ] {
            let _ = std::fs::remove_file(&p);
        }
        err
    }

    /// Records a batch (already stamped with its offset) and stages its bytes for writing.
    pub(crate) fn stage_batch(&mut self, header: &BatchHeader, bytes: &[u8], cfg: &LogConfig) {
        assert!(!self.sealed, "append to a sealed segment");
        let base = Offset(header.base_offset as u64);
        assert_eq!(base, self.next_offset, "batches must be contiguous");
        let rel = index::relative(self.base, base).expect("the log rolls before u32 overflow");
        let position = u32::try_from(self.size).expect("segment_bytes fits u32");
        self.account_batch(header, rel, position, cfg.index_interval_bytes);
        let next = Offset(header.last_offset() as u64 + 1);
        self.appender
            .as_mut()
            .expect("an unsealed segment has an appender")
            .stage(bytes, next);
        self.size += bytes.len() as u64;
        self.next_offset = next;
    }

    /// Index bookkeeping for one batch at `position` (shared by appends and recovery).
    fn account_batch(
        &mut self,
        header: &BatchHeader,
        rel: u32,
        position: u32,
        index_interval_bytes: u64,
    ) {
        if self.size == 0 && self.next_offset == self.base && self.created_ms == NO_TIMESTAMP {
            self.created_ms = header.max_timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        if self.bytes_since_index >= index_interval_bytes {
            self.index.push(OffsetEntry {
                relative: rel,
                position,
            });
            self.time_index.push_running(TimeEntry {
                timestamp: self.max_timestamp,
                relative: rel,
            });
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += header.total_bytes() as u64;
        self.last_batch_rel = rel;
    }

    /// Entries added to the indexes since they were last written: `(offset-index bytes, file
    /// position, time-index bytes, file position)`.
    pub(crate) fn index_delta(&self) -> (Vec<u8>, u64, Vec<u8>, u64) {
        self.index_delta_before(Boundary {
            pos: u64::MAX,
            next: Offset(u64::MAX),
        })
    }

    /// As [`Segment::index_delta`], but only entries for batches before `written` (so the index
    /// files never point at bytes that are not on the device yet).
    pub(crate) fn index_delta_before(&self, written: Boundary) -> (Vec<u8>, u64, Vec<u8>, u64) {
        let limit = index::relative(self.base, written.next).unwrap_or(u32::MAX);
        let mut ib = Vec::new();
        for e in &self.index.entries()[self.index_persisted..] {
            if u64::from(e.position) >= written.pos {
                break;
            }
            OffsetIndex::encode_entry(e, &mut ib);
        }
        let mut tb = Vec::new();
        for e in &self.time_index.entries()[self.time_persisted..] {
            if e.relative >= limit {
                break;
            }
            TimeIndex::encode_entry(e, &mut tb);
        }
        (
            ib,
            (self.index_persisted * index::OFFSET_ENTRY_BYTES) as u64,
            tb,
            (self.time_persisted * index::TIME_ENTRY_BYTES) as u64,
        )
    }

    /// Adds the final time-index entry of a sealed segment (for its last batch), so its max
    /// timestamp survives a restart without a scan, and a cut time index is detectable.
    pub(crate) fn seal_time_index(&mut self) {
        if self.size > 0 {
            self.time_index.push_running(TimeEntry {
                timestamp: self.max_timestamp,
                relative: self.last_batch_rel,
            });
        }
    }

    /// Bytes readable from the file: the whole batches written to the device.
    pub(crate) fn readable_bytes(&self) -> u64 {
        match &self.appender {
            Some(a) => a.written().pos,
            None => self.size,
        }
    }

    /// The end of the readable bytes and the offset of the batch that would start there.
    pub(crate) fn readable_end(&self) -> Boundary {
        match &self.appender {
            Some(a) => a.written(),
            None => Boundary {
                pos: self.size,
                next: self.next_offset,
            },
        }
    }

    /// Where a read for `from` starts: the position of a batch at or before it.
    pub(crate) fn read_start(&self, from: Offset) -> u64 {
        self.read_start_entry(from).0
    }

    /// Where a read for `from` starts: the position and base offset of a batch at or before it.
    pub(crate) fn read_start_entry(&self, from: Offset) -> (u64, Offset) {
        let rel = index::relative(self.base, from).unwrap_or(0);
        self.index
            .lookup(rel)
            .map(|e| (u64::from(e.position), self.base.plus(u64::from(e.relative))))
            .unwrap_or((0, self.base))
    }

    /// Forgets batches at or after `offset`, which starts at file position `position`.
    pub(crate) fn truncate_memory(&mut self, offset: Offset, position: u64) {
        let rel = index::relative(self.base, offset).unwrap_or(0);
        self.index.truncate_from_relative(rel);
        self.time_index.truncate_from_relative(rel);
        if self.index_persisted > self.index.len() || self.time_persisted > self.time_index.len() {
            self.index_files_stale = true;
        }
        self.index_persisted = self.index_persisted.min(self.index.len());
        self.time_persisted = self.time_persisted.min(self.time_index.len());
        self.next_offset = offset;
        self.size = position;
    }

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
        pool: &Rc<BufferPool>,
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
        let tail = appender::read_tail(&file, &path, valid_end).await?;
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
async fn scan_file(
    file: &DmaFile,
    path: &Path,
    scanner: &mut Scanner,
    file_bytes: u64,
    on_batch: &mut dyn FnMut(&super::recovery::ScannedBatch, &[u8]),
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

/// Loads and checks both index files; `None` when either is missing or invalid.
fn load_indexes(dir: &Path, base: Offset, log_bytes: u64) -> Option<(OffsetIndex, TimeIndex)> {
    let ib = std::fs::read(index_path(dir, base)).ok()?;
    let tb = std::fs::read(time_index_path(dir, base)).ok()?;
    let ix = OffsetIndex::decode(&ib, log_bytes)
        .map_err(
            |e| tracing::warn!(dir = %dir.display(), base = %base, error = %e, "bad offset index"),
        )
        .ok()?;
    let ti = TimeIndex::decode(&tb)
        .map_err(
            |e| tracing::warn!(dir = %dir.display(), base = %base, error = %e, "bad time index"),
        )
        .ok()?;
    Some((ix, ti))
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

async fn open_index_file(path: &Path) -> Result<BufferedFile> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .buffered_open(path)
        .await
        .map_err(|e| LogError::glommio("open", path, e))
}

/// The open index files of a segment that is still being appended to.
pub(crate) struct IndexFiles {
    index: BufferedFile,
    time: BufferedFile,
    index_path: PathBuf,
    time_path: PathBuf,
}

impl IndexFiles {
    pub(crate) async fn open(dir: &Path, base: Offset) -> Result<IndexFiles> {
        let index_path = index_path(dir, base);
        let time_path = time_index_path(dir, base);
        Ok(IndexFiles {
            index: open_index_file(&index_path).await?,
            time: open_index_file(&time_path).await?,
            index_path,
            time_path,
        })
    }

    /// Closes both files (awaited, so their descriptors are gone when this returns).
    pub(crate) async fn close(self) {
        let _ = self.index.close().await;
        let _ = self.time.close().await;
    }

    /// Writes the entries of `delta` (from [`Segment::index_delta`]) at their positions; with
    /// `truncate`, also cuts the files there (after a rollback or truncation removed entries).
    /// Index files are derived data: not synced on the append path, checked against the log by
    /// recovery.
    pub(crate) async fn write_delta(
        &self,
        delta: (Vec<u8>, u64, Vec<u8>, u64),
        truncate: bool,
    ) -> Result<()> {
        let (ib, ipos, tb, tpos) = delta;
        for (f, path, bytes, pos) in [
            (&self.index, &self.index_path, ib, ipos),
            (&self.time, &self.time_path, tb, tpos),
        ] {
            let n = bytes.len();
            if truncate {
                f.truncate(pos)
                    .await
                    .map_err(|e| LogError::glommio("truncate", path, e))?;
            }
            if n > 0 {
                let w = f
                    .write_at(bytes, pos)
                    .await
                    .map_err(|e| LogError::glommio("write", path, e))?;
                if w != n {
                    return Err(LogError::io(
                        "write",
                        path,
                        std::io::Error::new(std::io::ErrorKind::WriteZero, "short index write"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Both index files of a segment, encoded whole, ready for [`write_index_files`].
pub(crate) struct IndexImage {
    dir: PathBuf,
    base: Offset,
    index: Vec<u8>,
    time: Vec<u8>,
}

impl Segment {
    /// Encodes both indexes whole (a short, synchronous step: no borrow outlives it).
    pub(crate) fn index_image(&self) -> IndexImage {
        let mut index = Vec::with_capacity(self.index.len() * index::OFFSET_ENTRY_BYTES);
        for e in self.index.entries() {
            OffsetIndex::encode_entry(e, &mut index);
        }
        let mut time = Vec::with_capacity(self.time_index.len() * index::TIME_ENTRY_BYTES);
        for e in self.time_index.entries() {
            TimeIndex::encode_entry(e, &mut time);
        }
        IndexImage {
            dir: self.dir.clone(),
            base: self.base,
            index,
            time,
        }
    }
}

/// Writes both index files whole and syncs them (sealing, recovery, close).
pub(crate) async fn write_index_files(image: IndexImage) -> Result<()> {
    let IndexImage {
        dir,
        base,
        index: ib,
        time: tb,
    } = image;
    for (path, bytes) in [
        (index_path(&dir, base), ib),
        (time_index_path(&dir, base), tb),
    ] {
        let f = open_index_file(&path).await?;
        let n = bytes.len() as u64;
        if n > 0 {
            f.write_at(bytes, 0)
                .await
                .map_err(|e| LogError::glommio("write", &path, e))?;
        }
        f.truncate(n)
            .await
            .map_err(|e| LogError::glommio("truncate", &path, e))?;
        f.fdatasync()
            .await
            .map_err(|e| LogError::glommio("fdatasync", &path, e))?;
        f.close()
            .await
            .map_err(|e| LogError::glommio("close", &path, e))?;
    }
    Ok(())
}

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
