//! The commit pipeline of a partition log: takes staged bytes to the device and acknowledges
//! appends once they are as durable as they asked.
//!
//! Lives on the log's shard. [`pump`] is the scheduler: a synchronous step that looks at the log
//! state and starts whatever I/O may start now, each as a task of its own: the write of a full
//! staging buffer, the tail write that ends a group, `fdatasync`, preallocation, finalizing a
//! sealed segment, the rollback after a failed write. Each task records its outcome in the state,
//! pumps again, and then resolves the appends it covered ([`resolve_after`]). Appends pump after
//! staging, so full buffers go to the disk at once; the flusher task pumps once the tasks that
//! were ready have run, which is when a group is cut, and runs the periodic sync of interval mode.
//!
//! So the disk and the CPU work at the same time: buffers are written while appends fill the next
//! ones, the next group is written while the previous one is synced, and acknowledged appends
//! stage their next batches while the I/O started on their acknowledgement runs. In sync mode
//! groups alternate: a tail is cut only while no `fdatasync` is in flight, and an `fdatasync`
//! starts only once the group's tail is written.
//!
//! Rules, and where they are kept:
//! - One writer per block, and writes of the same block in order: `Appender::next_write`.
//! - An `fdatasync` covers only writes that completed before it was issued: its target is the
//!   written offset when it starts (`next_action`), and it resolves appends up to that only.
//! - A sealed segment is finalized (all written, truncated to its size, synced, index files
//!   written) before any I/O of the next segment, preallocation included: `next_action` only ever
//!   works on the oldest segment that still has an appender, and finalizes it only with no I/O of
//!   the log in flight.
//! - A failed write: nothing new starts; once no I/O is in flight the log rolls back to the end
//!   of the written prefix (`rollback`), failing only appends not yet acknowledged.
//! - A failed `fdatasync`, finalize or rollback poisons the log (`fail_sync`).
//! - No `RefCell` borrow is held across an `.await` (nor while a task is spawned: glommio runs
//!   it at once); every task re-finds its segment by base offset after its I/O.

use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::DmaFile;

use super::appender::{self, Boundary, WriteJob};
use super::config::Durability;
use super::error::{LogError, Result};
use super::index;
use super::log::{remove_segment_files, schedule_checkpoint, Inner, State};
use super::segment;
use super::space;
use crate::types::Offset;

/// The commit pipeline's part of the log state.
#[derive(Default)]
pub(super) struct IoState {
    /// I/O tasks of this log in flight: writes, syncs, preallocations, index writes, finalizing,
    /// the rollback.
    in_flight: usize,
    sync_in_flight: bool,
    finalizing: bool,
    index_writing: bool,
    /// Index writes failed this many times in a row (a full disk): they back off until
    /// `index_retry_at`, and are reported when they start failing and when they recover.
    index_failures: u32,
    index_retry_at: Option<Instant>,
    /// The first failed write not yet rolled back.
    write_error: Option<LogError>,
    rollback_in_flight: bool,
    /// Rollbacks so far and the error behind the last one, for [`quiesce`].
    rollbacks: u64,
    last_write_error: Option<LogError>,
    /// Callers of [`quiesce`] waiting: flush and sync everything now.
    draining: usize,
    /// Nothing starts (a truncation or close is running).
    paused: bool,
    /// A truncation runs: appends wait.
    truncating: bool,
}

impl IoState {
    /// Whether an append may be staged now: not while a failed write awaits its rollback or a
    /// truncation runs.
    pub(super) fn accepts_appends(&self) -> bool {
        self.write_error.is_none() && !self.truncating
    }

    /// No I/O of the log is in flight.
    pub(super) fn idle(&self) -> bool {
        self.in_flight == 0
    }

    /// The error of the last failed write that was rolled back.
    pub(super) fn last_write_error(&self) -> Option<LogError> {
        self.last_write_error.clone()
    }
}

/// One piece of I/O for [`pump`] to start.
enum Action {
    Write(Offset, Rc<DmaFile>, WriteJob),
    Sync(Offset, Rc<DmaFile>, Offset),
    /// Segment, file, allocated up to, target.
    Preallocate(Offset, Rc<DmaFile>, u64, u64),
    Finalize(Offset),
    Rollback(Offset, Rc<DmaFile>, Boundary),
}

/// Starts every I/O of `inner` that may start now (see the module comment). With `allow_tail`,
/// also cuts a group (writes the staged bytes after the last full buffer) when an append waits
/// for them; appends pass `false` so that a burst of appends forms one group.
///
/// glommio runs a spawned task at once, up to its first `.await`, and the tasks borrow the state:
/// so each action is chosen (and recorded) under a borrow that ends before it is spawned.
pub(super) fn pump(inner: &Rc<Inner>, allow_tail: bool) -> usize {
    pump_at(inner, allow_tail, Instant::now())
}

/// [`pump`] deciding whether the interval sync is due at `now`: the flusher passes the same
/// instant it then sleeps from, so the two decisions cannot disagree.
fn pump_at(inner: &Rc<Inner>, allow_tail: bool, now: Instant) -> usize {
    let mut started = 0;
    loop {
        let action = next_action(inner, &mut inner.state.borrow_mut(), allow_tail, now);
        let Some(action) = action else {
            return started;
        };
        started += 1;
        let task = inner.clone();
        match action {
            Action::Write(base, file, job) => {
                glommio::spawn_local(write(task, base, file, job)).detach();
            }
            Action::Sync(base, file, target) => {
                glommio::spawn_local(sync(task, base, file, target)).detach();
            }
            Action::Preallocate(base, file, from, target) => {
                glommio::spawn_local(preallocate(task, base, file, from, target)).detach();
            }
            Action::Finalize(base) => {
                glommio::spawn_local(finalize(task, base)).detach();
            }
            Action::Rollback(base, file, at) => {
                glommio::spawn_local(rollback(task, base, file, at)).detach();
            }
        }
    }
}

/// The next I/O that may start, already recorded as in flight; `None` when there is none.
fn next_action(inner: &Inner, st: &mut State, allow_tail: bool, now: Instant) -> Option<Action> {
    if st.poisoned.is_some() || st.io.paused || st.io.rollback_in_flight {
        return None;
    }
    if st.io.write_error.is_some() {
        if st.io.in_flight > 0 {
            return None;
        }
        let seg = st
            .segments
            .iter()
            .find(|s| s.appender.is_some())
            .expect("a failed write belongs to a segment with an appender");
        let at = seg.appender.as_ref().expect("checked").written();
        st.io.rollback_in_flight = true;
        st.io.in_flight += 1;
        return Some(Action::Rollback(seg.base, seg.active_file(), at));
    }
    let i = st.segments.iter().position(|s| s.appender.is_some())?;
    let cfg = &inner.config;
    let seg = &mut st.segments[i];
    let (base, sealed) = (seg.base, seg.sealed);
    let app = seg.appender.as_mut().expect("checked");

    // An fdatasync, when someone waits for one and the group's tail is written (or the interval
    // is up). It is decided before cutting the next tail so that the two alternate.
    let interval_due = cfg.durability == Durability::Interval
        && now.saturating_duration_since(st.last_sync) >= Duration::from_millis(cfg.flush_ms);
    let covered = st
        .durable_waiters
        .front()
        .is_some_and(|w| w.next <= st.written);
    if !sealed
        && !st.io.sync_in_flight
        && st.written > st.durable
        && (interval_due || ((covered || st.io.draining > 0) && !app.tail_in_flight()))
    {
        st.io.sync_in_flight = true;
        st.io.in_flight += 1;
        return Some(Action::Sync(base, seg.active_file(), st.written));
    }

    // Full buffers (and a cut tail) go out as soon as nothing overlapping is in flight.
    if let Some(job) = app.next_write() {
        st.io.in_flight += 1;
        return Some(Action::Write(base, seg.active_file(), job));
    }

    // The end of a group: the staged bytes after the last full buffer, when an append waits for
    // them. A sealed segment, or a caller of `quiesce`, takes everything.
    let committed = app.committed().next;
    let wants_written = st
        .written_waiters
        .back()
        .is_some_and(|w| w.next > committed);
    let wants_durable = st
        .durable_waiters
        .back()
        .is_some_and(|w| w.next > committed);
    let cut = sealed
        || st.io.draining > 0
        || (allow_tail
            && !app.tail_in_flight()
            && (wants_written || (wants_durable && !st.io.sync_in_flight)));
    if cut && app.take_tail() {
        st.stats.tail_writes += 1;
        if let Some(job) = app.next_write() {
            st.io.in_flight += 1;
            return Some(Action::Write(base, seg.active_file(), job));
        }
    }

    if !sealed {
        let target = app.preallocate_target(cfg.preallocate_bytes, cfg.segment_bytes)?;
        let from = app.preallocated_end();
        app.preallocate_started();
        st.io.in_flight += 1;
        return Some(Action::Preallocate(base, seg.active_file(), from, target));
    }
    if app.fully_written() && st.io.in_flight == 0 && !st.io.finalizing {
        st.io.finalizing = true;
        st.io.in_flight += 1;
        return Some(Action::Finalize(base));
    }
    None
}

/// Resolves the appends covered by `written` and `durable`, once the I/O just started (if any)
/// has reached the kernel, and about one staging buffer's worth of them per pass.
///
/// glommio hands queued I/O to the kernel only between two passes over the ready tasks, and the
/// appends resolved here run in the same pass as this task: in a closed loop they stage their
/// next batches right away, which is most of the log's CPU work. Resolving them in the next pass
/// lets the disk work on the I/O just started meanwhile; resolving a buffer's worth per pass lets
/// each buffer they fill go to the disk while the next ones are being staged, instead of all
/// after the whole burst.
async fn resolve_after(inner: &Inner, started: usize) {
    if started > 0 {
        next_pass().await;
    }
    let budget = inner.config.write_buffer_bytes as u64;
    loop {
        let more = {
            let mut st = inner.state.borrow_mut();
            resolve_waiters(&mut st, budget)
        };
        inner.progress.notify();
        if !more {
            return;
        }
        next_pass().await;
    }
}

/// Completes at the start of the executor's next pass over its ready tasks, after the I/O queued
/// so far has been submitted: a timer that is already due fires then.
async fn next_pass() {
    glommio::timer::sleep(Duration::from_micros(1)).await;
}

/// Resolves covered appends, oldest first, until `budget` bytes of them are resolved. Returns
/// whether covered ones are left.
fn resolve_waiters(st: &mut State, budget: u64) -> bool {
    let mut done = 0u64;
    for (queue, upto) in [
        (&mut st.written_waiters, st.written),
        (&mut st.durable_waiters, st.durable),
    ] {
        while queue.front().is_some_and(|w| w.next <= upto) {
            if done >= budget {
                return true;
            }
            let w = queue.pop_front().expect("checked");
            done += w.bytes;
            w.resolver.resolve(Ok(()));
        }
    }
    false
}

/// Writes one slot of segment `base` and records the outcome.
async fn write(inner: Rc<Inner>, base: Offset, file: Rc<DmaFile>, job: WriteJob) {
    let WriteJob {
        id,
        pos,
        buf,
        pooled,
    } = job;
    let outcome = appender::write_fully(&file, buf.clone(), pos).await;
    // `write_fully` holds no clone any more: a pool buffer comes back whole.
    let buf = if pooled {
        Rc::try_unwrap(buf).ok()
    } else {
        None
    };
    let advanced = {
        let mut guard = inner.state.borrow_mut();
        let st = &mut *guard;
        st.io.in_flight -= 1;
        let app = st
            .segments
            .iter_mut()
            .find(|s| s.base == base)
            .and_then(|s| s.appender.as_mut())
            .expect("a segment keeps its appender while it has writes in flight");
        match outcome {
            Ok(()) => match app.complete(id, buf) {
                Some(a) => {
                    st.staged_bytes = st.staged_bytes.saturating_sub(a.bytes);
                    st.written = st.written.max(a.written.next);
                    true
                }
                None => false,
            },
            Err(fault) => {
                app.fail(id, buf);
                if st.io.write_error.is_none() {
                    let err = fault.into_error(&segment::log_path(&inner.dir, base));
                    tracing::warn!(dir = %inner.dir.display(), error = %err,
                        "write failed; rolling back once the writes in flight end");
                    st.io.write_error = Some(err);
                }
                false
            }
        }
    };
    let started = pump(&inner, true);
    if advanced {
        resolve_after(&inner, started).await;
        if inner.config.durability == Durability::Interval {
            // The flusher times the next interval sync.
            inner.flush_wanted.notify();
        }
    } else {
        inner.progress.notify();
    }
}

/// `fdatasync` of segment `base`, covering the writes completed before it started: everything
/// below `target`. Then resolves the appends it made durable and writes the index entries of the
/// segment's written batches; the task counts as in flight until that is done too.
async fn sync(inner: Rc<Inner>, base: Offset, file: Rc<DmaFile>, target: Offset) {
    let outcome = file.fdatasync().await;
    {
        let mut st = inner.state.borrow_mut();
        st.io.sync_in_flight = false;
        match outcome {
            Ok(()) => {
                st.durable = st.durable.max(target);
                st.last_sync = Instant::now();
                st.stats.fdatasyncs += 1;
            }
            Err(e) => {
                st.io.in_flight -= 1;
                drop(st);
                let path = segment::log_path(&inner.dir, base);
                fail_sync(&inner, LogError::glommio("fdatasync", &path, e));
                return;
            }
        }
    }
    let started = pump(&inner, true);
    // One flag check per sync; the checkpoint task is started once per interval.
    schedule_checkpoint(&inner);
    resolve_after(&inner, started).await;
    write_index(&inner, base).await;
    inner.state.borrow_mut().io.in_flight -= 1;
    pump(&inner, true);
    inner.progress.notify();
    // The flusher times the next interval sync from this one, and exits once the log is closed
    // and nothing is in flight: wake it after the count went down.
    inner.flush_wanted.notify();
}

/// Writes the index entries of segment `base` whose batches are written (derived data: not
/// synced here; recovery checks them against the log). One index write at a time; the caller
/// counts as I/O in flight meanwhile.
async fn write_index(inner: &Rc<Inner>, base: Offset) {
    let job = {
        let mut guard = inner.state.borrow_mut();
        let st = &mut *guard;
        if st.io.index_writing || st.io.index_retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let Some(seg) = st.segments.iter_mut().find(|s| s.base == base) else {
            return;
        };
        let (Some(files), Some(app)) = (seg.index_files.clone(), seg.appender.as_ref()) else {
            return;
        };
        let delta = seg.index_delta_before(app.written());
        if delta.0.is_empty() && delta.2.is_empty() && !seg.index_files_stale {
            return;
        }
        let stale = std::mem::take(&mut seg.index_files_stale);
        st.io.index_writing = true;
        (files, delta, stale)
    };
    let (files, delta, stale) = job;
    let n_index = delta.0.len() / index::OFFSET_ENTRY_BYTES;
    let n_time = delta.2.len() / index::TIME_ENTRY_BYTES;
    let outcome = files.write_delta(delta, stale).await;
    let mut guard = inner.state.borrow_mut();
    let st = &mut *guard;
    st.io.index_writing = false;
    match &outcome {
        Ok(()) => {
            if st.io.index_failures > 0 {
                tracing::info!(dir = %inner.dir.display(), failures = st.io.index_failures,
                    "index writes resumed");
            }
            st.io.index_failures = 0;
            st.io.index_retry_at = None;
        }
        Err(e) => {
            // Index files are derived data (rebuilt from the log if needed): back off instead of
            // failing at every sync, 100 ms doubling to about 13 s.
            st.io.index_failures += 1;
            let n = st.io.index_failures;
            st.io.index_retry_at =
                Some(Instant::now() + Duration::from_millis(100 << (n - 1).min(7)));
            if n == 1 {
                tracing::warn!(dir = %inner.dir.display(), error = %e,
                    "index write failed; retrying with backoff (the log itself is unaffected)");
            } else if n.is_power_of_two() {
                tracing::warn!(dir = %inner.dir.display(), error = %e, failures = n,
                    "index writes still failing");
            }
        }
    }
    if let Some(s) = st.segments.iter_mut().find(|s| s.base == base) {
        match &outcome {
            Ok(()) => {
                s.index_persisted = (s.index_persisted + n_index).min(s.index.len());
                s.time_persisted = (s.time_persisted + n_time).min(s.time_index.len());
            }
            Err(_) => s.index_files_stale |= stale,
        }
    }
}

/// Reserves file space of segment `base` from `from` up to `target` (see
/// `LogConfig::preallocate_bytes`), within the file system's free space less
/// `disk_reserve_bytes` and this shard's steps in flight (`space::Claim`): the step shrinks as
/// the disk fills and is skipped (and retried after more appends) once nothing is left above
/// the reserve. Best effort: without it the writes
/// extend the file as they would anyway.
async fn preallocate(inner: Rc<Inner>, base: Offset, file: Rc<DmaFile>, from: u64, target: u64) {
    let allowed = match space::available_bytes(&inner.dir) {
        Ok(free) => free.saturating_sub(inner.config.disk_reserve_bytes),
        Err(_) => u64::MAX,
    };
    // Held until the step is done: this shard's other partitions stepping meanwhile cannot
    // take the same free space.
    let (_claim, claimed) = space::Claim::take(allowed, target.saturating_sub(from));
    let capped = target.min(appender::align_down(from.saturating_add(claimed)));
    let (reached, short, unsupported) = if capped <= from {
        tracing::debug!(dir = %inner.dir.display(), from, target, allowed,
            "no space above disk_reserve_bytes: not preallocating");
        (from, true, false)
    } else {
        // Sizing the file (not FALLOC_FL_KEEP_SIZE): a write past the file size still counts as
        // extending it and is handed to an io_uring worker, allocated or not.
        match file.pre_allocate(capped, false).await {
            Ok(()) => (capped, capped < target, false),
            Err(e) => {
                let err = LogError::glommio("fallocate", segment::log_path(&inner.dir, base), e);
                let unsupported = err.raw_os_error() == Some(libc::EOPNOTSUPP);
                tracing::debug!(dir = %inner.dir.display(), error = %err, target = capped,
                    "could not preallocate segment space");
                // Never count a failed step as allocated: the next one would start past it and
                // take whatever space is freed next, all at once.
                (from, true, unsupported)
            }
        }
    };
    {
        let mut st = inner.state.borrow_mut();
        st.io.in_flight -= 1;
        if let Some(app) = st
            .segments
            .iter_mut()
            .find(|s| s.base == base)
            .and_then(|s| s.appender.as_mut())
        {
            app.preallocate_done(reached, short, unsupported);
        }
    }
    pump(&inner, true);
    inner.progress.notify();
}

/// Finalizes sealed segment `base`, all of whose bytes are written: truncate to its exact size
/// (dropping block padding and preallocated space), sync, write its index files whole.
async fn finalize(inner: Rc<Inner>, base: Offset) {
    let (file, path, size) = {
        let st = inner.state.borrow();
        let s = st
            .segments
            .iter()
            .find(|s| s.base == base)
            .expect("a segment being finalized stays");
        (s.active_file(), s.log_path(), s.size)
    };
    let outcome: Result<()> = async {
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
            .iter()
            .find(|s| s.base == base)
            .expect("a segment being finalized stays")
            .index_image();
        segment::write_index_files(image).await
    }
    .await;
    {
        let mut guard = inner.state.borrow_mut();
        let st = &mut *guard;
        st.io.in_flight -= 1;
        st.io.finalizing = false;
        if let Err(e) = outcome {
            drop(guard);
            fail_sync(&inner, e);
            return;
        }
        let s = st
            .segments
            .iter_mut()
            .find(|s| s.base == base)
            .expect("a segment being finalized stays");
        s.appender = None;
        s.index_files = None;
        // A sealed segment's file is reopened on read, through the shard's file cache.
        s.file = None;
        s.roll_fds = None;
        s.index_persisted = s.index.len();
        s.time_persisted = s.time_index.len();
        let end = s.next_offset;
        st.written = st.written.max(end);
        st.durable = st.durable.max(end);
        st.last_sync = Instant::now();
        st.stats.fdatasyncs += 1;
    }
    let started = pump(&inner, true);
    schedule_checkpoint(&inner);
    resolve_after(&inner, started).await;
}

/// Rolls the log back to `at`, the last batch boundary of segment `base`'s written prefix:
/// forgets everything after it (offsets, index entries, cached batches, segments created since),
/// cuts the file there (so no half-written later batch survives a crash) and fails the appends
/// that were waiting. Acknowledged appends are all below `at` and stay.
async fn rollback(inner: Rc<Inner>, base: Offset, file: Rc<DmaFile>, at: Boundary) {
    let path = segment::log_path(&inner.dir, base);
    let outcome = async {
        let tail = appender::read_tail(&file, &path, at.pos).await?;
        file.truncate(at.pos)
            .await
            .map_err(|e| LogError::glommio("truncate", &path, e))?;
        Ok::<_, LogError>(tail)
    }
    .await;
    let mut guard = inner.state.borrow_mut();
    let st = &mut *guard;
    st.io.in_flight -= 1;
    st.io.rollback_in_flight = false;
    let err = st
        .io
        .write_error
        .take()
        .expect("a rollback follows a failed write");
    let tail = match outcome {
        Ok(t) => t,
        Err(e) => {
            drop(guard);
            fail_sync(&inner, e);
            return;
        }
    };
    let target = st.written;
    assert_eq!(
        at.next, target,
        "the written prefix ends at the written offset"
    );
    let mut removed = Vec::new();
    while st.segments.len() > 1 && st.segments.back().expect("a segment").base > target {
        removed.push(st.segments.pop_back().expect("a segment").base);
    }
    let seg = st.segments.back_mut().expect("a segment");
    assert_eq!(seg.base, base, "the failed segment holds the written end");
    seg.appender
        .as_mut()
        .expect("the segment holding the written end is not finalized")
        .rollback(&tail);
    seg.truncate_memory(target, at.pos);
    seg.sealed = false;
    st.next_offset = target;
    st.staged_bytes = 0;
    for q in [&mut st.written_waiters, &mut st.durable_waiters] {
        while q.back().is_some_and(|w| w.next > target) {
            let w = q.pop_back().expect("checked");
            w.resolver.resolve(Err(err.clone()));
        }
    }
    st.io.rollbacks += 1;
    st.io.last_write_error = Some(err.clone());
    drop(guard);
    inner.cache.truncate_from(inner.cache_key, target);
    for base in removed {
        remove_segment_files(&inner.dir, base);
    }
    tracing::warn!(dir = %inner.dir.display(), error = %err, rolled_back_to = %target,
        "write failed; unacknowledged appends rolled back");
    pump(&inner, true);
    inner.progress.notify();
}

/// An `fdatasync` (or the finalizing of a segment, or a rollback) failed: the device state is
/// unknown, so the log stops taking appends and fails those still waiting. Reads go on.
pub(super) fn fail_sync(inner: &Inner, err: LogError) {
    {
        let mut guard = inner.state.borrow_mut();
        let st = &mut *guard;
        st.poisoned = Some(err.to_string());
        while let Some(w) = st.durable_waiters.pop_front() {
            w.resolver.resolve(Err(err.clone()));
        }
        // Appends waiting for a write will not get one either.
        while st
            .written_waiters
            .back()
            .is_some_and(|w| w.next > st.written)
        {
            let w = st.written_waiters.pop_back().expect("checked");
            w.resolver.resolve(Err(err.clone()));
        }
    }
    tracing::error!(dir = %inner.dir.display(), error = %err, "fdatasync failed; log refuses appends");
    inner.progress.notify();
    inner.flush_wanted.notify();
}

/// Held while a truncation or close works on the files: no I/O starts meanwhile (and, for a
/// truncation, no append is staged). Dropping it lets the pipeline go on.
pub(super) struct Quiet<'a> {
    inner: &'a Rc<Inner>,
    truncating: bool,
}

impl Drop for Quiet<'_> {
    fn drop(&mut self) {
        {
            let mut st = self.inner.state.borrow_mut();
            st.io.paused = false;
            if self.truncating {
                st.io.truncating = false;
            }
        }
        self.inner.progress.notify();
        pump(self.inner, true);
    }
}

/// Writes and syncs everything staged, finalizes sealed segments, waits until no I/O is in
/// flight and then pauses the pipeline until the returned guard is dropped. With `truncating`,
/// appends wait from now until then. Fails if a write fails meanwhile (after its rollback) or the
/// log is poisoned.
pub(super) async fn quiesce(inner: &Rc<Inner>, truncating: bool) -> Result<Quiet<'_>> {
    let rollbacks = {
        let mut st = inner.state.borrow_mut();
        st.io.draining += 1;
        st.io.truncating |= truncating;
        st.io.rollbacks
    };
    let outcome = loop {
        let listen = inner.progress.listen();
        pump(inner, true);
        {
            let st = inner.state.borrow();
            if let Some(cause) = &st.poisoned {
                break Err(LogError::Poisoned {
                    path: inner.dir.clone(),
                    cause: cause.clone(),
                });
            }
            if st.io.rollbacks != rollbacks {
                break Err(st.io.last_write_error().unwrap_or(LogError::Closed));
            }
            let quiet = st.io.in_flight == 0
                && !st.rolling
                && st.io.write_error.is_none()
                && st.written == st.next_offset
                && st.durable >= st.written
                && st.segments.iter().all(|s| {
                    s.appender
                        .as_ref()
                        .is_none_or(|a| a.fully_written() && !s.sealed)
                });
            if quiet {
                break Ok(());
            }
        }
        listen.await;
    };
    let mut st = inner.state.borrow_mut();
    st.io.draining -= 1;
    match outcome {
        Ok(()) => {
            st.io.paused = true;
            Ok(Quiet { inner, truncating })
        }
        Err(e) => {
            if truncating {
                st.io.truncating = false;
            }
            drop(st);
            inner.progress.notify();
            Err(e)
        }
    }
}

/// The flusher task of one log: pumps after each burst of appends (cutting a group) and runs the
/// periodic `fdatasync` of interval mode. Ends once the log is closed (or dropped) and no I/O is
/// in flight, or poisoned.
pub(super) async fn flusher(inner: Rc<Inner>) {
    loop {
        let listen = inner.flush_wanted.listen();
        // Once closed, any I/O completing may be the last one this task waits for.
        let progress = inner.progress.listen();
        let now = Instant::now();
        pump_at(&inner, true, now);
        let (timeout, closed) = {
            let st = inner.state.borrow();
            if st.poisoned.is_some() || (st.closed && st.io.in_flight == 0) {
                return;
            }
            // Sleep until the next interval sync is due. Once it is due, `pump_at` just started
            // it if it could (it decided at the same `now`); if it could not (a sealed segment
            // is being finalized, which syncs it anyway), only an event can change that, so
            // wait for one rather than spin.
            let period = Duration::from_millis(inner.config.flush_ms);
            let elapsed = now.saturating_duration_since(st.last_sync);
            let timeout = (inner.config.durability == Durability::Interval
                && st.written > st.durable
                && !st.io.sync_in_flight
                && elapsed < period)
                .then(|| period - elapsed);
            (timeout, st.closed)
        };
        // Dropping the log handle sets `closed` and notifies; the task ends once the I/O in
        // flight has completed (each completion notifies `progress`).
        let event = async {
            if closed {
                futures_lite::future::or(listen, progress).await;
            } else {
                listen.await;
            }
        };
        match timeout {
            Some(t) => {
                futures_lite::future::or(event, glommio::timer::sleep(t)).await;
            }
            None => event.await,
        }
    }
}
