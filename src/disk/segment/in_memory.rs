//! A segment as the log holds it in memory: its offsets and size, its indexes (and how much of
//! them is in the files), its appender while it is written, and creating a new one.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use super::index_files::{IndexFiles, IndexImage};
use super::paths::{index_path, log_path, remove_file, remove_files, time_index_path};
use crate::disk::appender::{Appender, Boundary, BufferPool};
use crate::disk::checkpoint::sync_dir;
use crate::disk::config::LogConfig;
use crate::disk::error::{LogError, Result};
use crate::disk::index::{self, OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};
use crate::record::BatchHeader;
use crate::types::{Offset, TimestampMs};

/// Timestamp of a batch without one (Kafka's `NO_TIMESTAMP`).
pub const NO_TIMESTAMP: TimestampMs = -1;

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
    pub(super) bytes_since_index: u64,
    /// Largest batch max-timestamp in the segment.
    pub(crate) max_timestamp: TimestampMs,
    /// Relative offset of the last batch appended.
    pub(super) last_batch_rel: u32,
    /// Wall-clock time of the segment's first append, for `segment_ms`.
    pub(crate) created_ms: TimestampMs,
    /// Present while bytes may still be appended or are not yet all durable.
    pub(crate) appender: Option<Appender<DmaBuffer>>,
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

    pub(super) fn empty(
        dir: &Path,
        base: Offset,
        file: Rc<DmaFile>,
        now_ms: TimestampMs,
    ) -> Segment {
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
        pool: &Rc<BufferPool<DmaBuffer>>,
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
        // Stale index files of an earlier segment at this base are derived data: replace them.
        for p in [index_path(dir, base), time_index_path(dir, base)] {
            remove_file(&p).await;
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
        remove_files(dir, base).await;
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
    pub(super) fn account_batch(
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
