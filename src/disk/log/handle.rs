//! The partition log's handle: open (and recovery), appends (with rolls and leader-epoch
//! changes), accessors, the test hooks and close.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use glommio::sync::Semaphore;

use super::types::{AppendInfo, LogOptions, LogStats, OpenReport};
use crate::disk::appender::BufferPool;
use crate::disk::checkpoint;
use crate::disk::commit;
use crate::disk::config::{Durability, LogConfig};
use crate::disk::damage::{DamagedRange, DAMAGED_RANGES_FILE};
use crate::disk::dma;
use crate::disk::error::{LogError, Result};
use crate::disk::faults::Faults;
use crate::disk::files;
use crate::disk::group_commit::{GroupCommit, Policy};
use crate::disk::meta::{self, schedule_checkpoint, write_recovery_point};
use crate::disk::probe;
use crate::disk::recovery::ScanEnd;
use crate::disk::segment::{self, RecoveryContext, Segment};
use crate::disk::state::{hw_of, Counters, Inner, State};
use crate::local::{promise, Event};
use crate::record;
use crate::types::{Epoch, Offset, TimestampMs};

/// One batch of an append: its validated header, the epoch to stamp, and the base offset it
/// must get when it carries one (a replicated append).
struct Item {
    batch: ItemBytes,
    header: record::BatchHeader,
    epoch: Epoch,
    at: Option<Offset>,
}

/// A batch to stamp (a producer's), or one stamped already (a replica's copy, kept as it is).
enum ItemBytes {
    Stamp(BytesMut),
    Kept(Bytes),
}

impl ItemBytes {
    fn len(&self) -> usize {
        match self {
            ItemBytes::Stamp(b) => b.len(),
            ItemBytes::Kept(b) => b.len(),
        }
    }
}

/// A partition log. Lives on the shard that owns the partition; wrap it in an `Rc` to share it
/// between that shard's tasks. Call [`PartitionLog::close`] for a clean shutdown; dropping it
/// without closing is a crash as far as the disk is concerned (staged appends are lost, acknowledged
/// ones are not).
pub struct PartitionLog {
    pub(super) inner: Rc<Inner>,
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
        create_dir_all(&dir).await?;
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
            segment::remove_files(&dir, last).await;
            bases.pop();
        }
        let mut epochs = meta::load_epochs(&dir);
        let known = meta::load_damage(&dir);
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
            if let Err(e) = meta::store_epochs(&dir, &epochs).await {
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
            cache: options.cache,
            cache_key,
            files: options.files,
            clock: options.clock,
            pool,
            state: RefCell::new(State {
                segments,
                next_offset,
                replication_bound: None,
                last_epoch,
                epochs,
                epoch_changing: false,
                damage,
                recovery_point: ctx.recovery_point.min(next_offset),
                checkpoint_scheduled: false,
                rolling: false,
                closed: false,
                counters: Counters::default(),
                commit: GroupCommit::new(Policy::of(&config), next_offset, Instant::now()),
            }),
            config,
            flush_wanted: Event::new(),
            progress: Event::new(),
            io_lock: Semaphore::new(1),
            files_lock: Semaphore::new(1),
            faults: Faults::default(),
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
        let cfg = &self.inner.config;
        let mut items = Vec::with_capacity(batches.len());
        for batch in batches {
            let header = record::validate_batch(&batch, cfg.batch_bytes_max)?;
            items.push(Item {
                batch: ItemBytes::Stamp(batch),
                header,
                epoch,
                at: None,
            });
        }
        self.stage(items, durability, deadline).await
    }

    /// Appends batches that already carry their offsets and leader epochs, keeping both: a
    /// replica storing its leader's batches (the same bytes at the same offsets). The first batch
    /// must start at the log end and each next one right after the previous; epochs may rise
    /// from batch to batch (a new epoch is recorded in the leader-epoch checkpoint before its
    /// first batch is staged) but never fall below the log's. Otherwise the call fails
    /// ([`LogError::OffsetMismatch`], [`LogError::StaleEpoch`]) and nothing is appended. Waits and
    /// acknowledges like [`PartitionLog::append_many_by`].
    pub async fn append_replicated(
        &self,
        batches: Vec<Bytes>,
        durability: Durability,
        deadline: Option<std::time::Instant>,
    ) -> Result<Vec<AppendInfo>> {
        let cfg = &self.inner.config;
        let mut items: Vec<Item> = Vec::with_capacity(batches.len());
        for batch in batches {
            let header = record::validate_batch(&batch, cfg.batch_bytes_max)?;
            let at = Offset(header.base_offset.max(0) as u64);
            let epoch = Epoch(header.partition_leader_epoch);
            if let Some(prev) = items.last() {
                let expected = Offset(prev.header.last_offset() as u64 + 1);
                if header.base_offset < 0 || at != expected {
                    return Err(LogError::OffsetMismatch { expected, got: at });
                }
                if epoch < prev.epoch {
                    return Err(LogError::StaleEpoch {
                        epoch,
                        current: prev.epoch,
                    });
                }
            }
            items.push(Item {
                batch: ItemBytes::Kept(batch),
                header,
                epoch,
                at: Some(at),
            });
        }
        if let Some(first) = items.first() {
            let end = self.log_end_offset();
            if first.at != Some(end) {
                return Err(LogError::OffsetMismatch {
                    expected: end,
                    got: first.at.unwrap_or(end),
                });
            }
        }
        self.stage(items, durability, deadline).await
    }

    /// Stages `items` in order (assigning offsets, or checking the ones they carry) and waits
    /// for their durability.
    async fn stage(
        &self,
        items: Vec<Item>,
        durability: Durability,
        deadline: Option<std::time::Instant>,
    ) -> Result<Vec<AppendInfo>> {
        let inner = &*self.inner;
        let cfg = &inner.config;
        let Some(first_epoch) = items.first().map(|i| i.epoch) else {
            return Ok(Vec::new());
        };
        let total: u64 = items.iter().map(|i| i.batch.len() as u64).sum();
        let started = std::time::Instant::now();
        // Backpressure, and wait out a roll or an epoch change in progress.
        loop {
            let listen = inner.progress.listen();
            {
                let st = inner.state.borrow();
                if st.closed {
                    return Err(LogError::Closed);
                }
                if let Some(cause) = st.commit.poisoned() {
                    return Err(inner.poisoned_error(cause));
                }
                if first_epoch < st.last_epoch {
                    return Err(LogError::StaleEpoch {
                        epoch: first_epoch,
                        current: st.last_epoch,
                    });
                }
                let staged = st.commit.staged_bytes();
                let fits = staged + total <= cfg.pending_bytes_max as u64 || staged == 0;
                // A failed write is rolled back, and a truncation finished, before more appends
                // are staged; a roll or an epoch change in progress is waited out here, within
                // the deadline.
                if !st.rolling && !st.epoch_changing && fits && st.commit.accepts_appends() {
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
        let mut infos = Vec::with_capacity(items.len());
        let mut last_next = Offset::ZERO;
        for Item {
            batch,
            header,
            epoch,
            at,
        } in items
        {
            let len = batch.len() as u64;
            let count = u64::from(header.last_offset_delta as u32) + 1;
            // Before staging: roll the segment, and record a new leader epoch, as needed. Both
            // wait, so everything is checked again after either.
            let now = loop {
                let listen = inner.progress.listen();
                let now = (inner.clock)();
                let step = {
                    let st = inner.state.borrow();
                    if st.closed {
                        return Err(LogError::Closed);
                    }
                    let active = st.segments.back().expect("an active segment");
                    let last_rel = (st.next_offset.0 + count - 1).saturating_sub(active.base.0);
                    let must_roll = active.size > 0
                        && (active.size + len > cfg.segment_bytes
                            || cfg.segment_expired(active.created_ms, now)
                            || last_rel > u64::from(u32::MAX));
                    match st.epochs.latest() {
                        // Another append is rolling or recording an epoch: once it is done,
                        // everything is checked again (the segment may be new by then).
                        _ if st.rolling || st.epoch_changing => Step::Wait,
                        _ if must_roll => Step::Roll(st.next_offset),
                        Some(latest) if latest > epoch => {
                            return Err(LogError::StaleEpoch {
                                epoch,
                                current: latest,
                            });
                        }
                        Some(latest) if latest == epoch => Step::Stage,
                        _ => Step::NewEpoch,
                    }
                };
                match step {
                    Step::Stage => break now,
                    Step::Wait => listen.await,
                    Step::Roll(base) => self.roll(base, now).await?,
                    Step::NewEpoch => self.record_epoch(epoch).await?,
                }
            };
            // From here to the end of staging there is no await: offsets are assigned in call
            // order.
            let mut st = inner.state.borrow_mut();
            let base = st.next_offset;
            if let Some(at) = at {
                if at != base {
                    // Only a caller appending to the same log by another way gets here; what
                    // was staged before this batch stays (it was where it had to be).
                    return Err(LogError::OffsetMismatch {
                        expected: base,
                        got: at,
                    });
                }
            }
            let batch = match batch {
                ItemBytes::Stamp(mut b) => {
                    record::set_base_offset(&mut b, base.0 as i64);
                    record::set_partition_leader_epoch(&mut b, epoch.0);
                    b.freeze()
                }
                // Its offset was checked against `base` above, and its epoch is the one staged.
                ItemBytes::Kept(b) => b,
            };
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
            st.commit.staged(len);
            st.counters.appends += 1;
            drop(st);
            inner.cache.insert(inner.cache_key, base, next, batch);
            infos.push(AppendInfo {
                base_offset: base,
                last_offset: next.prev(),
            });
            last_next = next;
        }
        let (promise, resolver) = promise();
        inner
            .state
            .borrow_mut()
            .commit
            .wait(durability, last_next, total, resolver);
        // Hand off full staging buffers now; the flusher decides about the rest once the tasks
        // that are ready have run (so one group collects every append that arrives meanwhile).
        commit::pump(&self.inner, false);
        inner.flush_wanted.notify();
        match promise.await {
            Ok(r) => r.map(|()| infos),
            Err(_) => Err(LogError::Closed),
        }
    }

    /// Records that `epoch` starts at the log end, durably, before any batch carries it. Other
    /// appends wait meanwhile (`State::epoch_changing`), so the end cannot move; the checkpoint
    /// task and a truncation, which write checkpoint files too, are kept out by `files_lock`.
    /// Once per leadership change; the write runs with glommio I/O, off the shard's thread.
    async fn record_epoch(&self, epoch: Epoch) -> Result<()> {
        let inner = &*self.inner;
        let _files = inner
            .files_lock
            .acquire_permit(1)
            .await
            .map_err(|_| LogError::Closed)?;
        let (base, next_epochs) = {
            let mut st = inner.state.borrow_mut();
            // Another append of the same epoch may have recorded it while this one waited (or a
            // newer epoch: the caller's next check says it is stale).
            if st.epoch_changing || st.epochs.latest().is_some_and(|l| l >= epoch) {
                return Ok(());
            }
            st.epoch_changing = true;
            let mut next = st.epochs.clone();
            next.assign(epoch, st.next_offset);
            (st.next_offset, next)
        };
        let stored = meta::store_epochs(&inner.dir, &next_epochs).await;
        {
            let mut st = inner.state.borrow_mut();
            st.epoch_changing = false;
            // A rollback may have moved the end back meanwhile: then the epoch is recorded again
            // where the end is now.
            if stored.is_ok() && st.next_offset == base {
                st.epochs = next_epochs;
            }
        }
        inner.progress.notify();
        stored
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
        let stale = {
            let mut st = inner.state.borrow_mut();
            st.rolling = false;
            inner.progress.notify();
            let seg = created?;
            if st.next_offset != base {
                // A failed write rolled the log back while the segment was being created: the
                // new segment would start past the end. Drop it; this append fails like the
                // others.
                Some((
                    st.commit.last_write_error().unwrap_or(LogError::Closed),
                    seg,
                ))
            } else {
                let active = st.segments.back_mut().expect("an active segment");
                active.sealed = true;
                active.roll_fds = Some(fds);
                active.seal_time_index();
                st.segments.push_back(seg);
                None
            }
        };
        if let Some((err, seg)) = stale {
            drop(seg);
            segment::remove_files(&inner.dir, base).await;
            return Err(err);
        }
        // The flusher finalizes the sealed segment even if nothing else is staged.
        inner.flush_wanted.notify();
        Ok(())
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
        self.inner.state.borrow().commit.durable()
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
        let commit = st.commit.stats();
        LogStats {
            segments: st.segments.len(),
            size_bytes: st.segments.iter().map(|s| s.size).sum(),
            damaged_ranges: st.damage.ranges().len(),
            tail_writes: commit.tail_writes,
            fdatasyncs: commit.fdatasyncs,
            appends: st.counters.appends,
            checkpoints: st.counters.checkpoints,
        }
    }

    /// Test hook (fault injection): the next `n` group-commit `fdatasync`s of the active
    /// segment (not those finalizing a sealed one) report an I/O error (EIO) after running, as
    /// a failing device would.
    #[doc(hidden)]
    pub fn fail_next_syncs(&self, n: u32) {
        self.inner.faults.fail_next_syncs(n);
    }

    /// Test hook (fault injection): while `hold` is set, appends that are written or durable are
    /// not acknowledged (their I/O goes on). Released, they are acknowledged as usual.
    #[doc(hidden)]
    pub fn hold_acks(&self, hold: bool) {
        self.inner.faults.set_hold_acks(hold);
        if !hold {
            glommio::spawn_local(commit::resolve_now(self.inner.clone())).detach();
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
            if st.commit.idle() {
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
    dma::truncate_synced(&file, &path, size).await?;
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

/// What an append does next before staging a batch.
enum Step {
    Stage,
    /// Another append is rolling the segment or recording a new epoch.
    Wait,
    /// The active segment is full (or old): roll to a new one at this base.
    Roll(Offset),
    /// The batch starts a new leader epoch: record it first.
    NewEpoch,
}

/// Creates `dir` and its parents on glommio's blocking thread pool, off the shard's thread.
async fn create_dir_all(dir: &Path) -> Result<()> {
    let d = dir.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || std::fs::create_dir_all(&d))
        .await
        .map_err(|e| LogError::io("create directory", dir, e))
}
