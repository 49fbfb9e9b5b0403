//! The partition log: segments, appends with group commit, reads, truncation and retention.
//!
//! A [`PartitionLog`] lives on the shard that owns the partition and is used only there (it is
//! `!Send`). Appends stage bytes in memory and wait; the commit pipeline (`commit.rs`) writes
//! them with direct I/O as staging buffers fill, commits each group with one `fdatasync` and then
//! resolves every append the sync covered. No `RefCell` borrow of the state is held across an
//! `.await`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use glommio::sync::Semaphore;

use super::appender::{self, BufferPool};
use super::cache::{BatchCache, CacheKey};
use super::checkpoint::{self, RECOVERY_POINT_FILE};
use super::commit;
use super::config::{Durability, LogConfig};
use super::damage::{DamageTable, DamagedRange, DAMAGED_RANGES_FILE};
use super::epochs::{EpochCache, EPOCH_CHECKPOINT_FILE};
use super::error::{LogError, Result};
use super::files::{self, FileCache};
use super::probe;
use super::recovery::ScanEnd;
use super::segment::{
    self, locate_damage, read_batches, DiskRead, RecoveryContext, RecoveryReport, Segment,
    NO_TIMESTAMP,
};
use crate::local::{promise, Event, Resolver};
use crate::record;
use crate::types::{Epoch, Offset, TimestampMs};

/// Where the log gets the current time (milliseconds since the Unix epoch). Tests pass a fake.
pub type Clock = Rc<dyn Fn() -> TimestampMs>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Rc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    })
}

/// Everything [`PartitionLog::open`] needs besides the directory.
#[derive(Clone)]
pub struct LogOptions {
    pub config: LogConfig,
    /// The shard's batch cache, shared by all logs of the shard.
    pub cache: Rc<BatchCache>,
    /// The shard's cache of open sealed-segment files, shared by all logs of the shard.
    pub files: Rc<FileCache>,
    pub clock: Clock,
}

/// What an append returns once acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    pub last_offset: Offset,
}

/// Whole batches returned by a read, with the log's bounds at the time.
#[derive(Clone, Debug, Default)]
pub struct ReadBatches {
    pub batches: Vec<Bytes>,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
}

impl ReadBatches {
    pub fn bytes(&self) -> usize {
        self.batches.iter().map(|b| b.len()).sum()
    }
}

/// What [`PartitionLog::open`] found and did.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    /// Recovery of the active segment.
    pub active: Option<RecoveryReport>,
    /// Sealed segments whose indexes had to be rebuilt.
    pub rebuilt: Vec<RecoveryReport>,
    /// Damaged ranges found by this open (media damage below the log end: kept, not served),
    /// as the segment's path and the offset range.
    pub corrupt: Vec<(PathBuf, Offset, Offset)>,
    /// Every damaged range of the log after the open, found now or known before.
    pub damaged: Vec<DamagedRange>,
    /// The recovery point the open started from (see `checkpoint.rs`).
    pub recovery_point: Offset,
}

/// Counters for the metrics hook.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    pub segments: usize,
    pub size_bytes: u64,
    /// Tail writes: groups of appends ended by writing the staged bytes after the last full
    /// staging buffer (full buffers are written as they fill, without ending a group).
    pub tail_writes: u64,
    pub fdatasyncs: u64,
    pub appends: u64,
    /// Damaged ranges not served (see [`PartitionLog::damaged_ranges`]).
    pub damaged_ranges: usize,
    /// Recovery-point checkpoints written.
    pub checkpoints: u64,
}

/// An append waiting to be acknowledged: once everything before `next` is written or durable (as
/// its queue says). `bytes` is how much it appended, to pace acknowledgements.
pub(super) struct Waiter {
    pub(super) next: Offset,
    pub(super) bytes: u64,
    pub(super) resolver: Resolver<Result<()>>,
}

/// The mutable state of one log. Lives on the log's shard, in a `RefCell` that is never borrowed
/// across an `.await`.
pub(super) struct State {
    pub(super) segments: VecDeque<Segment>,
    /// The log end offset: the offset the next append gets.
    pub(super) next_offset: Offset,
    /// Everything before this is written to the device.
    pub(super) written: Offset,
    /// Everything before this is covered by an `fdatasync`.
    pub(super) durable: Offset,
    /// Set by replication: the high watermark never passes it.
    pub(super) replication_bound: Option<Offset>,
    pub(super) last_epoch: Epoch,
    /// First offset of every leader epoch, persisted in `leader-epoch-checkpoint`.
    pub(super) epochs: EpochCache,
    /// Damaged ranges, persisted in `damaged-ranges`.
    pub(super) damage: DamageTable,
    /// The recovery point last written to `recovery-point-checkpoint`.
    pub(super) recovery_point: Offset,
    /// A checkpoint task waits to write the recovery point.
    pub(super) checkpoint_scheduled: bool,
    pub(super) written_waiters: VecDeque<Waiter>,
    pub(super) durable_waiters: VecDeque<Waiter>,
    /// Bytes staged and not yet written (backpressure).
    pub(super) staged_bytes: u64,
    pub(super) rolling: bool,
    pub(super) closed: bool,
    pub(super) poisoned: Option<String>,
    pub(super) last_sync: Instant,
    pub(super) stats: LogStats,
    /// The commit pipeline's bookkeeping (see `commit.rs`).
    pub(super) io: commit::IoState,
}

/// One log: its settings and shared handles, and its state. Lives on the log's shard; shared
/// (`Rc`) by the log handle, its flusher task and its in-flight I/O tasks.
pub(super) struct Inner {
    pub(super) dir: PathBuf,
    pub(super) config: LogConfig,
    pub(super) cache: Rc<BatchCache>,
    pub(super) cache_key: CacheKey,
    pub(super) files: Rc<FileCache>,
    pub(super) clock: Clock,
    /// The staging buffers of all the log's segments.
    pub(super) pool: Rc<BufferPool>,
    pub(super) state: RefCell<State>,
    /// Wakes the flusher: something was staged, or the log is closing.
    pub(super) flush_wanted: Event,
    /// Something advanced: written, durable, high watermark; a roll ended; staged bytes drained;
    /// an I/O completed.
    pub(super) progress: Event,
    /// Held by `close` and `truncate_to`, so they never interleave.
    pub(super) io_lock: Semaphore,
    /// Held while a checkpoint file (recovery point, damaged ranges) is replaced.
    pub(super) files_lock: Semaphore,
}

/// A partition log. Lives on the shard that owns the partition; wrap it in an `Rc` to share it
/// between that shard's tasks. Call [`PartitionLog::close`] for a clean shutdown; dropping it
/// without closing is a crash as far as the disk is concerned (staged appends are lost, acknowledged
/// ones are not).
pub struct PartitionLog {
    inner: Rc<Inner>,
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        drop(self.inner.files.forget_dir(&self.inner.dir));
        self.inner.state.borrow_mut().closed = true;
        self.inner.flush_wanted.notify();
        self.inner.progress.notify();
    }
}

impl PartitionLog {
    /// Opens the log in `dir` (created if missing), recovering it after a crash.
    pub async fn open(
        dir: impl AsRef<Path>,
        options: LogOptions,
    ) -> Result<(PartitionLog, OpenReport)> {
        // glommio opens directories (to sync them) by absolute path only.
        let dir = std::path::absolute(dir.as_ref())
            .map_err(|e| LogError::io("resolve directory", dir.as_ref(), e))?;
        let config = options.config.clone();
        config.validate().map_err(LogError::Config)?;
        std::fs::create_dir_all(&dir).map_err(|e| LogError::io("create directory", &dir, e))?;
        let pool = BufferPool::new(config.write_buffer_bytes, config.staging_buffers_max());
        probe::prime(dir.parent().unwrap_or(&dir)).await?;
        let now = (options.clock)();
        let mut bases = list_segments(&dir)?;
        let mut report = OpenReport::default();
        // A roll creates the new segment before the old one is finalized; a crash in between
        // leaves an empty last segment. Drop it so the previous one is recovered as active.
        while bases.len() > 1 {
            let last = *bases.last().expect("non-empty");
            let path = segment::log_path(&dir, last);
            let len = std::fs::metadata(&path)
                .map_err(|e| LogError::io("stat", &path, e))?
                .len();
            if len != 0 {
                break;
            }
            for p in [
                path,
                segment::index_path(&dir, last),
                segment::time_index_path(&dir, last),
            ] {
                let _ = std::fs::remove_file(p);
            }
            bases.pop();
        }
        let mut epochs = load_epochs(&dir);
        let known = load_damage(&dir);
        let ctx = RecoveryContext {
            recovery_point: checkpoint::load_recovery_point(&dir),
            epochs: epochs.clone(),
            known: known.ranges().to_vec(),
        };
        report.recovery_point = ctx.recovery_point;
        let mut damage = known.clone();
        let mut found = Vec::new();
        let mut segments = VecDeque::new();
        if bases.is_empty() {
            if ctx.recovery_point > Offset::ZERO {
                // Offsets below the recovery point were durable: their files are gone, and a
                // log started again at 0 would give those offsets to new records.
                return Err(LogError::CorruptSegment {
                    path: dir.clone(),
                    first: Offset::ZERO,
                    last: ctx.recovery_point.prev(),
                    next: ctx.recovery_point,
                    reason: format!(
                        "no segment file is left, but offsets up to {} were durable; not \
                         reusing them (restore the files, or remove the directory to start the \
                         partition empty)",
                        ctx.recovery_point.prev()
                    ),
                });
            }
            segments.push_back(Segment::create(&dir, Offset::ZERO, &pool, now).await?);
        } else {
            for w in bases.windows(2) {
                let (seg, rebuilt) = Segment::open_sealed(&dir, w[0], w[1], &config, &ctx).await?;
                if let Some(r) = rebuilt {
                    found.extend(r.damaged.iter().map(|d| (r.path.clone(), d.clone())));
                    report.rebuilt.push(r);
                }
                segments.push_back(seg);
            }
            let last = *bases.last().expect("non-empty");
            let (seg, r) = Segment::recover_active(&dir, last, &config, &ctx, &pool, now).await?;
            if r.truncated_bytes > 0 || matches!(r.end, ScanEnd::Invalid { .. }) {
                tracing::warn!(path = %r.path.display(), truncated_bytes = r.truncated_bytes,
                    end = ?r.end, "recovered log tail");
            }
            found.extend(r.damaged.iter().map(|d| (r.path.clone(), d.clone())));
            report.active = Some(r);
            segments.push_back(seg);
        }
        let next_offset = segments.back().expect("one segment").next_offset;
        // Ranges of segments that are gone (retention) or past the end are forgotten; the ones
        // found now are added.
        damage.retain_segments(|b| segments.iter().any(|s| s.base == b));
        damage.truncate_to(next_offset);
        for (path, d) in found {
            if !known.ranges().contains(&d) {
                report.corrupt.push((path, d.first, d.last));
            }
            damage.insert(d);
        }
        report.damaged = damage.ranges().to_vec();
        if damage != known {
            // The ranges are found again by the next open if this cannot be written (full disk).
            if let Err(e) =
                checkpoint::replace_file(&dir, DAMAGED_RANGES_FILE, damage.encode().into_bytes())
                    .await
            {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot persist damaged ranges");
            }
        }
        // The checkpoint knows the newest epoch even when the batches that carried it were cut
        // off by recovery; entries past the recovered end are dropped.
        if epochs.truncate_to(next_offset) {
            // Best effort, like the other checkpoints at open: a stale checkpoint only keeps
            // epochs past the end, which the next change rewrites.
            if let Err(e) = store_epochs(&dir, &epochs) {
                tracing::warn!(dir = %dir.display(), error = %e,
                    "cannot rewrite the leader-epoch checkpoint at open");
            }
        }
        let scanned = report
            .active
            .as_ref()
            .map(|r| r.last_epoch)
            .unwrap_or(Epoch(-1));
        let last_epoch = epochs.latest().unwrap_or(Epoch(-1)).max(scanned);
        let cache_key = options.cache.register();
        let inner = Rc::new(Inner {
            dir,
            config,
            cache: options.cache,
            cache_key,
            files: options.files,
            clock: options.clock,
            pool,
            state: RefCell::new(State {
                segments,
                next_offset,
                written: next_offset,
                durable: next_offset,
                replication_bound: None,
                last_epoch,
                epochs,
                damage,
                recovery_point: ctx.recovery_point.min(next_offset),
                checkpoint_scheduled: false,
                written_waiters: VecDeque::new(),
                durable_waiters: VecDeque::new(),
                staged_bytes: 0,
                rolling: false,
                closed: false,
                poisoned: None,
                last_sync: Instant::now(),
                stats: LogStats::default(),
                io: commit::IoState::default(),
            }),
            flush_wanted: Event::new(),
            progress: Event::new(),
            io_lock: Semaphore::new(1),
            files_lock: Semaphore::new(1),
        });
        glommio::spawn_local(commit::flusher(inner.clone())).detach();
        // Recovery synced what it kept: checkpoint it in a while.
        schedule_checkpoint(&inner);
        Ok((PartitionLog { inner }, report))
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.inner.config
    }

    /// Appends one batch with the log's default durability. See [`PartitionLog::append_with`].
    pub async fn append(&self, batch: BytesMut, epoch: Epoch) -> Result<AppendInfo> {
        self.append_with(batch, epoch, self.inner.config.durability)
            .await
    }

    /// Validates `batch`, assigns it the next offsets, stamps `epoch` into it and returns once it
    /// is durable as `durability` asks: [`Durability::Sync`] after an `fdatasync` covers it,
    /// [`Durability::Interval`] once it is written to the device.
    pub async fn append_with(
        &self,
        batch: BytesMut,
        epoch: Epoch,
        durability: Durability,
    ) -> Result<AppendInfo> {
        let infos = self.append_many(vec![batch], epoch, durability).await?;
        Ok(infos[0])
    }

    /// Appends several batches in order, as one request: all are validated before any is
    /// staged (one invalid batch rejects them all), and the call returns once the last is durable
    /// as `durability` asks. Other appends may interleave between the batches only when a
    /// segment rolls in the middle.
    pub async fn append_many(
        &self,
        batches: Vec<BytesMut>,
        epoch: Epoch,
        durability: Durability,
    ) -> Result<Vec<AppendInfo>> {
        self.append_many_by(batches, epoch, durability, None).await
    }

    /// [`PartitionLog::append_many`], giving up with [`LogError::AppendTimedOut`] if the batches
    /// cannot be staged by `deadline` (the queue is full or a roll is under way). A deadline
    /// already past still appends when nothing has to be waited for. The deadline covers only
    /// the wait before offsets are assigned: once they are, the call returns the append's
    /// outcome however long durability takes, so a timed-out append is never in the log.
    pub async fn append_many_by(
        &self,
        batches: Vec<BytesMut>,
        epoch: Epoch,
        durability: Durability,
        deadline: Option<std::time::Instant>,
    ) -> Result<Vec<AppendInfo>> {
        let inner = &*self.inner;
        let cfg = &inner.config;
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let mut headers = Vec::with_capacity(batches.len());
        for b in &batches {
            headers.push(record::validate_batch(b, cfg.batch_bytes_max)?);
        }
        let total: u64 = batches.iter().map(|b| b.len() as u64).sum();
        let started = std::time::Instant::now();
        // Backpressure, and wait out a roll in progress.
        loop {
            let listen = inner.progress.listen();
            {
                let st = inner.state.borrow();
                if st.closed {
                    return Err(LogError::Closed);
                }
                if let Some(cause) = &st.poisoned {
                    return Err(LogError::Poisoned {
                        path: inner.dir.clone(),
                        cause: cause.clone(),
                    });
                }
                if epoch < st.last_epoch {
                    return Err(LogError::StaleEpoch {
                        epoch,
                        current: st.last_epoch,
                    });
                }
                let fits =
                    st.staged_bytes + total <= cfg.pending_bytes_max as u64 || st.staged_bytes == 0;
                // A failed write is rolled back, and a truncation finished, before more appends
                // are staged.
                if !st.rolling && fits && st.io.accepts_appends() {
                    break;
                }
            }
            match deadline {
                None => listen.await,
                Some(deadline) => {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        return Err(LogError::AppendTimedOut {
                            waited_ms: started.elapsed().as_millis() as u64,
                        });
                    }
                    futures_lite::future::or(listen, async {
                        glommio::timer::sleep(deadline - now).await;
                    })
                    .await;
                }
            }
        }
        let mut infos = Vec::with_capacity(batches.len());
        let mut last_next = Offset::ZERO;
        for (mut batch, header) in batches.into_iter().zip(headers) {
            let now = (inner.clock)();
            let len = batch.len() as u64;
            let count = u64::from(header.last_offset_delta as u32) + 1;
            let roll_at = {
                let st = inner.state.borrow();
                let active = st.segments.back().expect("an active segment");
                let last_rel = (st.next_offset.0 + count - 1).saturating_sub(active.base.0);
                let must_roll = active.size > 0
                    && (active.size + len > cfg.segment_bytes
                        || cfg.segment_expired(active.created_ms, now)
                        || last_rel > u64::from(u32::MAX));
                must_roll.then_some(st.next_offset)
            };
            if let Some(base) = roll_at {
                self.roll(base, now).await?;
            }
            // From here to the end of staging there is no await: offsets are assigned in call
            // order.
            let mut st = inner.state.borrow_mut();
            if st.closed {
                return Err(LogError::Closed);
            }
            let base = st.next_offset;
            if st.epochs.latest() != Some(epoch) {
                // A new leader epoch: record where it starts before any batch carries it. This
                // blocks the shard for one small synced write, once per leadership change.
                let mut next_epochs = st.epochs.clone();
                next_epochs.assign(epoch, base);
                store_epochs(&inner.dir, &next_epochs)?;
                st.epochs = next_epochs;
            }
            record::set_base_offset(&mut batch, base.0 as i64);
            record::set_partition_leader_epoch(&mut batch, epoch.0);
            let stamped = record::BatchHeader {
                base_offset: base.0 as i64,
                partition_leader_epoch: epoch.0,
                ..header
            };
            let active = st.segments.back_mut().expect("an active segment");
            if active.size == 0 {
                active.created_ms = now;
            }
            active.stage_batch(&stamped, &batch, cfg);
            let next = base.plus(count);
            st.next_offset = next;
            st.last_epoch = epoch;
            st.staged_bytes += len;
            st.stats.appends += 1;
            drop(st);
            inner
                .cache
                .insert(inner.cache_key, base, next, batch.freeze());
            infos.push(AppendInfo {
                base_offset: base,
                last_offset: next.prev(),
            });
            last_next = next;
        }
        let (promise, resolver) = promise();
        {
            let mut st = inner.state.borrow_mut();
            let waiter = Waiter {
                next: last_next,
                bytes: total,
                resolver,
            };
            match durability {
                Durability::Sync => st.durable_waiters.push_back(waiter),
                Durability::Interval => st.written_waiters.push_back(waiter),
            }
        }
        // Hand off full staging buffers now; the flusher decides about the rest once the tasks
        // that are ready have run (so one group collects every append that arrives meanwhile).
        commit::pump(&self.inner, false);
        inner.flush_wanted.notify();
        match promise.await {
            Ok(r) => r.map(|()| infos),
            Err(_) => Err(LogError::Closed),
        }
    }

    /// Seals the active segment and starts a new one at `base` (the current log end).
    async fn roll(&self, base: Offset, now: TimestampMs) -> Result<()> {
        let inner = &*self.inner;
        inner.state.borrow_mut().rolling = true;
        let fds = match files::transient_fds(files::ROLL_FDS).await {
            Ok(fds) => fds,
            Err(e) => {
                inner.state.borrow_mut().rolling = false;
                inner.progress.notify();
                return Err(e);
            }
        };
        let created = Segment::create(&inner.dir, base, &inner.pool, now).await;
        let mut st = inner.state.borrow_mut();
        st.rolling = false;
        inner.progress.notify();
        let seg = created?;
        if st.next_offset != base {
            // A failed write rolled the log back while the segment was being created: the new
            // segment would start past the end. Drop it; this append fails like the others.
            let err = st.io.last_write_error().unwrap_or(LogError::Closed);
            drop(st);
            drop(seg);
            remove_segment_files(&inner.dir, base);
            return Err(err);
        }
        let active = st.segments.back_mut().expect("an active segment");
        active.sealed = true;
        active.roll_fds = Some(fds);
        active.seal_time_index();
        st.segments.push_back(seg);
        drop(st);
        // The flusher finalizes the sealed segment even if nothing else is staged.
        inner.flush_wanted.notify();
        Ok(())
    }

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
                let upper = upper.min(st.written);
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

    /// The first offset in the log (Kafka's log start offset).
    pub fn log_start_offset(&self) -> Offset {
        self.inner
            .state
            .borrow()
            .segments
            .front()
            .expect("a segment")
            .base
    }

    /// The offset the next append gets (Kafka's log end offset).
    pub fn log_end_offset(&self) -> Offset {
        self.inner.state.borrow().next_offset
    }

    /// Everything before this is covered by an `fdatasync`.
    pub fn durable_offset(&self) -> Offset {
        self.inner.state.borrow().durable
    }

    /// Consumers read below this offset. On a single node it is the durable offset (sync mode) or
    /// the written offset (interval mode); replication caps it with
    /// [`PartitionLog::set_replication_bound`].
    pub fn high_watermark(&self) -> Offset {
        hw_of(&self.inner.state.borrow(), &self.inner.config)
    }

    /// Caps the high watermark at `bound` (the quorum-committed offset), or removes the cap.
    pub fn set_replication_bound(&self, bound: Option<Offset>) {
        self.inner.state.borrow_mut().replication_bound = bound;
        self.inner.progress.notify();
    }

    /// The damaged ranges of the log, oldest first: offsets that were written but failed their
    /// checks when read back, never served and never truncated away. Replication will re-fetch
    /// them from a replica with [`PartitionLog::repair_range`].
    pub fn damaged_ranges(&self) -> Vec<DamagedRange> {
        self.inner.state.borrow().damage.ranges().to_vec()
    }

    /// The recovery point last checkpointed: every offset below it was durable then.
    pub fn recovery_point(&self) -> Offset {
        self.inner.state.borrow().recovery_point
    }

    /// Writes the recovery-point checkpoint now (it is otherwise written every
    /// `recovery_point_interval_ms` while the durable offset moves, and on close).
    pub async fn checkpoint(&self) -> Result<()> {
        write_recovery_point(&self.inner).await
    }

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

    /// Leader epoch of the newest batch.
    pub fn last_epoch(&self) -> Epoch {
        self.inner.state.borrow().last_epoch
    }

    /// Completes at the next change of the high watermark or log end (for long-poll fetches).
    pub async fn changed(&self) {
        self.inner.progress.listen().await
    }

    pub fn stats(&self) -> LogStats {
        let st = self.inner.state.borrow();
        LogStats {
            segments: st.segments.len(),
            size_bytes: st.segments.iter().map(|s| s.size).sum(),
            damaged_ranges: st.damage.ranges().len(),
            ..st.stats
        }
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_bases(&self) -> Vec<Offset> {
        self.inner
            .state
            .borrow()
            .segments
            .iter()
            .map(|s| s.base)
            .collect()
    }

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
                remove_segment_files(&inner.dir, base);
            }
            checkpoint::sync_dir(&inner.dir).await?;
        }
        file.truncate(position)
            .await
            .map_err(|e| LogError::glommio("truncate", &path, e))?;
        file.fdatasync()
            .await
            .map_err(|e| LogError::glommio("fdatasync", &path, e))?;
        let tail = appender::read_tail(&file, &path, position).await?;
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
            seg.appender = Some(appender::Appender::resume(
                inner.pool.clone(),
                position,
                offset,
                &tail,
            ));
            let epochs_changed = st.epochs.truncate_to(offset);
            st.last_epoch = st.epochs.latest().unwrap_or(Epoch(-1));
            let damage_changed = st.damage.truncate_to(offset);
            st.next_offset = offset;
            st.written = offset;
            st.durable = st.durable.min(offset);
            st.staged_bytes = 0;
            // Appends past `offset` not yet acknowledged are gone: fail them now, or they would
            // resolve once later appends reach their offsets.
            let st = &mut *st;
            for q in [&mut st.written_waiters, &mut st.durable_waiters] {
                while q.back().is_some_and(|w| w.next > offset) {
                    let w = q.pop_back().expect("checked");
                    w.resolver.resolve(Err(LogError::Truncated { offset }));
                }
            }
            (epochs_changed, damage_changed)
        };
        let (epochs_changed, damage_changed) = epochs_changed;
        inner.cache.truncate_from(inner.cache_key, offset);
        if epochs_changed {
            let epochs = inner.state.borrow().epochs.clone();
            if let Err(e) = store_epochs(&inner.dir, &epochs) {
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
            remove_segment_files(&inner.dir, *base);
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

    /// Writes and syncs everything staged, finalizes the active segment's files and stops the
    /// flusher. Appends after this fail with [`LogError::Closed`].
    pub async fn close(self) -> Result<()> {
        let inner = self.inner.clone();
        let outcome = close_files(&inner).await;
        // Whatever failed, the log is closed now: the flusher ends and the files are closed
        // before this returns (a deleted partition's space is only freed once they are).
        inner.state.borrow_mut().closed = true;
        inner.cache.unregister(inner.cache_key);
        let mut files = inner.files.forget_dir(&inner.dir);
        let index = {
            let mut st = inner.state.borrow_mut();
            let mut index = Vec::new();
            // Only with no I/O in flight (its tasks need their segment's appender); after a
            // failed close the files close when the flusher, done with that I/O, drops them.
            if st.io.idle() {
                for seg in st.segments.iter_mut() {
                    // No I/O of the log starts once no segment has an appender.
                    seg.appender = None;
                    files.extend(seg.file.take());
                    index.extend(seg.index_files.take());
                }
            }
            index
        };
        for f in files {
            // Unique unless a read still holds it; that one closes when it drops it.
            if let Ok(f) = Rc::try_unwrap(f) {
                let _ = f.close().await;
            }
        }
        for f in index {
            if let Ok(f) = Rc::try_unwrap(f) {
                f.close().await;
            }
        }
        inner.flush_wanted.notify();
        inner.progress.notify();
        outcome
    }
}

/// The I/O of [`PartitionLog::close`]: everything staged written and synced, the active file cut
/// to its exact size, its index files and the recovery point written (both best effort: derived
/// data, rebuilt or rescanned at the next open, e.g. when the disk is full).
async fn close_files(inner: &Rc<Inner>) -> Result<()> {
    let _permit = inner
        .io_lock
        .acquire_permit(1)
        .await
        .map_err(|_| LogError::Closed)?;
    inner.state.borrow_mut().closed = true;
    let _quiet = commit::quiesce(inner, false).await?;
    let (file, path, size) = {
        let st = inner.state.borrow();
        let s = st.segments.back().expect("a segment");
        (s.active_file(), s.log_path(), s.size)
    };
    // Drop the zero padding of the last block and any preallocated space, so a clean restart
    // finds an exact end.
    file.truncate(size)
        .await
        .map_err(|e| LogError::glommio("truncate", &path, e))?;
    file.fdatasync()
        .await
        .map_err(|e| LogError::glommio("fdatasync", &path, e))?;
    let image = inner
        .state
        .borrow()
        .segments
        .back()
        .expect("a segment")
        .index_image();
    if let Err(e) = segment::write_index_files(image).await {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the index at close");
    }
    // Everything is durable: the next open starts from the end.
    if let Err(e) = write_recovery_point(inner).await {
        tracing::warn!(path = %path.display(), error = %e,
            "cannot checkpoint the recovery point at close");
    }
    Ok(())
}

pub(super) fn hw_of(st: &State, cfg: &LogConfig) -> Offset {
    let stable = match cfg.durability {
        Durability::Sync => st.durable,
        Durability::Interval => st.written,
    };
    match st.replication_bound {
        Some(b) => stable.min(b),
        None => stable,
    }
}

fn damaged_error(dir: &Path, r: &DamagedRange) -> LogError {
    LogError::CorruptSegment {
        path: segment::log_path(dir, r.segment),
        first: r.first,
        last: r.last,
        next: r.next(),
        reason: r.reason.clone(),
    }
}

fn load_damage(dir: &Path) -> DamageTable {
    let path = dir.join(DAMAGED_RANGES_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => DamageTable::decode(&text).unwrap_or_else(|e| {
            // The ranges are found again by recovery and reads.
            tracing::warn!(path = %path.display(), error = %e, "ignoring a damaged damaged-ranges file");
            DamageTable::default()
        }),
        Err(_) => DamageTable::default(),
    }
}

/// Persists the damaged ranges (serialized with the other checkpoint files).
async fn store_damage(inner: &Rc<Inner>) -> Result<()> {
    let _files = inner
        .files_lock
        .acquire_permit(1)
        .await
        .map_err(|_| LogError::Closed)?;
    write_damage_file(inner).await
}

/// Writes `damaged-ranges`; the caller holds `files_lock`.
async fn write_damage_file(inner: &Rc<Inner>) -> Result<()> {
    let text = inner.state.borrow().damage.encode();
    checkpoint::replace_file(&inner.dir, DAMAGED_RANGES_FILE, text.into_bytes()).await
}

/// Starts the checkpoint task once the durable offset has passed the recovery point, unless one
/// waits already: it writes the recovery point `recovery_point_interval_ms` later. The task
/// holds only a weak handle while it waits, so a dropped log is not kept open.
pub(super) fn schedule_checkpoint(inner: &Rc<Inner>) {
    {
        let mut st = inner.state.borrow_mut();
        if st.checkpoint_scheduled || st.closed || st.durable <= st.recovery_point {
            return;
        }
        st.checkpoint_scheduled = true;
    }
    let weak: Weak<Inner> = Rc::downgrade(inner);
    let delay = Duration::from_millis(inner.config.recovery_point_interval_ms);
    glommio::spawn_local(async move {
        glommio::timer::sleep(delay).await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        inner.state.borrow_mut().checkpoint_scheduled = false;
        if inner.state.borrow().closed {
            return;
        }
        if let Err(e) = write_recovery_point(&inner).await {
            tracing::warn!(dir = %inner.dir.display(), error = %e,
                "cannot write the recovery-point checkpoint; retried later");
        }
        schedule_checkpoint(&inner);
    })
    .detach();
}

/// Writes the durable offset as the recovery point, if it moved.
async fn write_recovery_point(inner: &Rc<Inner>) -> Result<()> {
    let _files = inner
        .files_lock
        .acquire_permit(1)
        .await
        .map_err(|_| LogError::Closed)?;
    write_recovery_point_locked(inner).await
}

async fn write_recovery_point_locked(inner: &Rc<Inner>) -> Result<()> {
    let target = {
        let st = inner.state.borrow();
        if st.durable <= st.recovery_point {
            return Ok(());
        }
        st.durable
    };
    checkpoint::replace_file(
        &inner.dir,
        RECOVERY_POINT_FILE,
        checkpoint::encode_recovery_point(target).into_bytes(),
    )
    .await?;
    let mut st = inner.state.borrow_mut();
    st.recovery_point = st.recovery_point.max(target);
    st.stats.checkpoints += 1;
    Ok(())
}

fn load_epochs(dir: &Path) -> EpochCache {
    let path = dir.join(EPOCH_CHECKPOINT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => EpochCache::decode(&text).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "ignoring a damaged epoch checkpoint");
            EpochCache::default()
        }),
        Err(_) => EpochCache::default(),
    }
}

/// Writes the epoch checkpoint durably (temporary file, fsync, rename, fsync of the directory).
fn store_epochs(dir: &Path, epochs: &EpochCache) -> Result<()> {
    use std::io::Write;
    let path = dir.join(EPOCH_CHECKPOINT_FILE);
    let tmp = dir.join(format!("{EPOCH_CHECKPOINT_FILE}.tmp"));
    let io = |e| LogError::io("write epoch checkpoint", &path, e);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(epochs.encode().as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

fn list_segments(dir: &Path) -> Result<Vec<Offset>> {
    let mut bases = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| LogError::io("list directory", dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| LogError::io("list directory", dir, e))?;
        if let Some(base) = entry.file_name().to_str().and_then(segment::parse_log_name) {
            bases.push(base);
        }
    }
    bases.sort();
    Ok(bases)
}

pub(super) fn remove_segment_files(dir: &Path, base: Offset) {
    for p in [
        segment::log_path(dir, base),
        segment::index_path(dir, base),
        segment::time_index_path(dir, base),
    ] {
        if let Err(e) = std::fs::remove_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %p.display(), error = %e, "could not remove segment file");
            }
        }
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
