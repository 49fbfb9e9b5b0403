//! The commit pipeline of a partition log: runs the I/O the group-commit core
//! (`group_commit.rs`) decides on and reports each outcome back to it, then acknowledges the
//! appends it says are covered.
//!
//! Lives on the log's shard. [`pump`] asks the core for every action that may start now and
//! starts each as a task of its own: the write of a full staging buffer, the tail write that ends
//! a group, `fdatasync`, preallocation, finalizing a sealed segment, the rollback after a failed
//! write. Each task records its outcome in the core, pumps again, and then resolves the appends
//! it covered ([`resolve_after`]). Appends pump after staging, so full buffers go to the disk at
//! once; the flusher task pumps once the tasks that were ready have run, which is when a group
//! is cut, and runs the periodic sync of interval mode.
//!
//! So the disk and the CPU work at the same time: buffers are written while appends fill the next
//! ones, the next group is written while the previous one is synced, and acknowledged appends
//! stage their next batches while the I/O started on their acknowledgement runs.
//!
//! Kept here (the rules of what may start when are the core's):
//! - The time the core decides with is read here, once per pump.
//! - No `RefCell` borrow is held across an `.await` (nor while a task is spawned: glommio runs
//!   it at once); every task re-finds its segment by base offset after its I/O.
//! - A segment keeps its appender (and its file) while it has I/O in flight.

use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::{DmaBuffer, DmaFile};

use super::appender::{self, Boundary, WriteJob};
use super::config::Durability;
use super::dma;
use super::error::{LogError, Result};
use super::group_commit::{Ack, Action, Active};
use super::index;
use super::meta::schedule_checkpoint;
use super::segment;
use super::space;
use super::state::{Commit, Inner, State};
use crate::types::Offset;

/// Starts every I/O of `inner` that may start now (see the module comment). With `allow_tail`,
/// also cuts a group (writes the staged bytes after the last full buffer) when an append waits
/// for them; appends pass `false` so that a burst of appends forms one group.
///
/// glommio runs a spawned task at once, up to its first `.await`, and the tasks borrow the state:
/// so each action is chosen (and recorded) under a borrow that ends before it is spawned.
pub(crate) fn pump(inner: &Rc<Inner>, allow_tail: bool) -> usize {
    pump_at(inner, allow_tail, Instant::now())
}

/// [`pump`] deciding whether the interval sync is due at `now`: the flusher passes the same
/// instant it then sleeps from, so the two decisions cannot disagree.
fn pump_at(inner: &Rc<Inner>, allow_tail: bool, now: Instant) -> usize {
    let mut started = 0;
    loop {
        let next = next_action(&mut inner.state.borrow_mut(), allow_tail, now);
        let Some((base, file, action)) = next else {
            return started;
        };
        started += 1;
        let task = inner.clone();
        match action {
            Action::Write(job) => {
                glommio::spawn_local(write(task, base, file, job)).detach();
            }
            Action::Sync { target } => {
                glommio::spawn_local(sync(task, base, file, target)).detach();
            }
            Action::Preallocate { from, target } => {
                glommio::spawn_local(preallocate(task, base, file, from, target)).detach();
            }
            Action::Finalize => {
                glommio::spawn_local(finalize(task, base)).detach();
            }
            Action::Rollback { at } => {
                glommio::spawn_local(rollback(task, base, file, at)).detach();
            }
        }
    }
}

/// The core's next action, with the segment it is about (base offset and file).
fn next_action(
    st: &mut State,
    allow_tail: bool,
    now: Instant,
) -> Option<(Offset, Rc<DmaFile>, Action<DmaBuffer>)> {
    let State {
        segments, commit, ..
    } = st;
    let mut seg = segments.iter_mut().find(|s| s.appender.is_some());
    let active = seg.as_mut().map(|s| Active {
        appender: s.appender.as_mut().expect("checked"),
        sealed: s.sealed,
    });
    let action = commit.next_action(active, allow_tail, now)?;
    let seg = seg.expect("an action is about a segment with an appender");
    Some((seg.base, seg.active_file(), action))
}

/// Resolves the appends covered by the written and durable offsets, once the I/O just started
/// (if any) has reached the kernel, and about one staging buffer's worth of them per pass.
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
    loop {
        if inner.faults.acks_held() {
            return;
        }
        let more = resolve_pass(&mut inner.state.borrow_mut().commit);
        inner.progress.notify();
        if !more {
            return;
        }
        next_pass().await;
    }
}

/// Resolves what is covered now (a test released the acknowledgements it held).
pub(crate) async fn resolve_now(inner: Rc<Inner>) {
    resolve_after(&inner, 0).await;
}

/// One pass of acknowledgements. Returns whether covered appends are left for the next pass.
fn resolve_pass(commit: &mut Commit) -> bool {
    let mut spent = 0;
    loop {
        match commit.next_ack(&mut spent) {
            Ack::Resolve(r) => r.resolve(Ok(())),
            Ack::NextPass => return true,
            Ack::Idle => return false,
        }
    }
}

/// Completes at the start of the executor's next pass over its ready tasks, after the I/O queued
/// so far has been submitted: a timer that is already due fires then.
async fn next_pass() {
    glommio::timer::sleep(Duration::from_micros(1)).await;
}

/// Writes one slot of segment `base` and records the outcome.
async fn write(inner: Rc<Inner>, base: Offset, file: Rc<DmaFile>, job: WriteJob<DmaBuffer>) {
    let WriteJob {
        id,
        pos,
        buf,
        pooled,
    } = job;
    let buf = Rc::new(buf);
    let outcome = dma::write_fully(&file, buf.clone(), pos).await;
    // `write_fully` holds no clone any more: a pool buffer comes back whole.
    let buf = if pooled {
        Rc::try_unwrap(buf).ok()
    } else {
        None
    };
    let advanced = {
        let mut guard = inner.state.borrow_mut();
        let State {
            segments, commit, ..
        } = &mut *guard;
        let app = segments
            .iter_mut()
            .find(|s| s.base == base)
            .and_then(|s| s.appender.as_mut())
            .expect("a segment keeps its appender while it has writes in flight");
        match outcome {
            Ok(()) => commit.write_completed(app, id, buf),
            Err(fault) => {
                let first = commit.write_failed(app, id, buf, || {
                    fault.into_error(&segment::log_path(&inner.dir, base))
                });
                if first {
                    tracing::warn!(dir = %inner.dir.display(),
                        error = %commit.pending_write_error().expect("just recorded"),
                        "write failed; rolling back once the writes in flight end");
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
    let failed = match outcome {
        Ok(()) if !inner.faults.take_sync_failure() => None,
        Ok(()) => Some(LogError::io(
            "fdatasync",
            segment::log_path(&inner.dir, base),
            std::io::Error::from_raw_os_error(libc::EIO),
        )),
        Err(e) => Some(LogError::glommio(
            "fdatasync",
            segment::log_path(&inner.dir, base),
            e,
        )),
    };
    if let Some(err) = failed {
        inner
            .state
            .borrow_mut()
            .commit
            .sync_failed(err.to_string(), |r| r.resolve(Err(err.clone())));
        poisoned(&inner, &err);
        return;
    }
    let now = Instant::now();
    inner.state.borrow_mut().commit.sync_completed(target, now);
    let started = pump(&inner, true);
    // One flag check per sync; the checkpoint task is started once per interval.
    schedule_checkpoint(&inner);
    resolve_after(&inner, started).await;
    write_index(&inner, base, now).await;
    inner.state.borrow_mut().commit.io_ended();
    pump(&inner, true);
    inner.progress.notify();
    // The flusher times the next interval sync from this one, and exits once the log is closed
    // and nothing is in flight: wake it after the count went down.
    inner.flush_wanted.notify();
}

/// Writes the index entries of segment `base` whose batches are written (derived data: not
/// synced here; recovery checks them against the log). One index write at a time, backing off
/// after failures (`now` is when the sync before it ended); the caller counts as I/O in flight
/// meanwhile.
async fn write_index(inner: &Rc<Inner>, base: Offset, now: Instant) {
    let job = {
        let mut guard = inner.state.borrow_mut();
        let st = &mut *guard;
        if !st.commit.index_write_may_start(now) {
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
        st.commit.index_write_started();
        (files, delta, stale)
    };
    let (files, delta, stale) = job;
    let n_index = delta.0.len() / index::OFFSET_ENTRY_BYTES;
    let n_time = delta.2.len() / index::TIME_ENTRY_BYTES;
    let outcome = files.write_delta(delta, stale).await;
    let mut guard = inner.state.borrow_mut();
    let st = &mut *guard;
    let failures = match &outcome {
        Ok(()) => st.commit.index_write_succeeded(),
        Err(_) => st.commit.index_write_failed(Instant::now()),
    };
    match &outcome {
        Ok(()) if failures > 0 => {
            tracing::info!(dir = %inner.dir.display(), failures, "index writes resumed");
        }
        Ok(()) => {}
        Err(e) if failures == 1 => {
            tracing::warn!(dir = %inner.dir.display(), error = %e,
                "index write failed; retrying with backoff (the log itself is unaffected)");
        }
        Err(e) if failures.is_power_of_two() => {
            tracing::warn!(dir = %inner.dir.display(), error = %e, failures,
                "index writes still failing");
        }
        Err(_) => {}
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
        st.commit.io_ended();
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
        dma::truncate_synced(&file, &path, size).await?;
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
        if let Err(err) = outcome {
            st.commit
                .finalize_failed(err.to_string(), |r| r.resolve(Err(err.clone())));
            drop(guard);
            poisoned(&inner, &err);
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
        st.commit.finalized(end, Instant::now());
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
        let tail = dma::read_tail(&file, &path, at.pos).await?;
        file.truncate(at.pos)
            .await
            .map_err(|e| LogError::glommio("truncate", &path, e))?;
        Ok::<_, LogError>(tail)
    }
    .await;
    let tail = match outcome {
        Ok(t) => t,
        Err(err) => {
            inner
                .state
                .borrow_mut()
                .commit
                .rollback_failed(err.to_string(), |r| r.resolve(Err(err.clone())));
            poisoned(&inner, &err);
            return;
        }
    };
    // Segments created since the written end go, files first: nothing is written to them (their
    // writes wait behind the failed one) and, with the rollback in flight, nothing starts or is
    // staged meanwhile, so a roll cannot create one of them again before its files are gone.
    let removed: Vec<Offset> = {
        let st = inner.state.borrow();
        let target = st.commit.written();
        st.segments
            .iter()
            .rev()
            .take_while(|s| s.base > target)
            .map(|s| s.base)
            .collect()
    };
    for &b in &removed {
        segment::remove_files(&inner.dir, b).await;
    }
    let (target, err, late) = {
        let mut guard = inner.state.borrow_mut();
        let State {
            segments,
            commit,
            next_offset,
            epochs,
            ..
        } = &mut *guard;
        let target = commit.written();
        // A roll that was creating its segment when the write failed may have added one since.
        let mut late = Vec::new();
        while segments.len() > 1 && segments.back().expect("a segment").base > target {
            let b = segments.pop_back().expect("a segment").base;
            if !removed.contains(&b) {
                late.push(b);
            }
        }
        let seg = segments.back_mut().expect("a segment");
        assert_eq!(seg.base, base, "the failed segment holds the written end");
        let app = seg
            .appender
            .as_mut()
            .expect("the segment holding the written end is not finalized");
        let (target, err) = commit.rolled_back(app, &tail, |r, e| r.resolve(Err(e.clone())));
        seg.truncate_memory(target, at.pos);
        seg.sealed = false;
        *next_offset = target;
        // An epoch first recorded past the new end is recorded again by the next append that
        // carries it, where the end is then (the file keeps it until then; an open drops
        // entries past the end).
        epochs.truncate_to(target);
        (target, err, late)
    };
    inner.cache.truncate_from(inner.cache_key, target);
    for b in late {
        segment::remove_files(&inner.dir, b).await;
    }
    tracing::warn!(dir = %inner.dir.display(), error = %err, rolled_back_to = %target,
        "write failed; unacknowledged appends rolled back");
    pump(&inner, true);
    inner.progress.notify();
}

/// An `fdatasync` (or the finalizing of a segment, or a rollback) failed and the core poisoned
/// the log: the device state is unknown, so it takes no more appends. Reads go on.
fn poisoned(inner: &Inner, err: &LogError) {
    tracing::error!(dir = %inner.dir.display(), error = %err, "fdatasync failed; log refuses appends");
    inner.progress.notify();
    inner.flush_wanted.notify();
}

/// Held while a truncation or close works on the files: no I/O starts meanwhile (and, for a
/// truncation, no append is staged). Dropping it lets the pipeline go on.
pub(crate) struct Quiet<'a> {
    inner: &'a Rc<Inner>,
    truncating: bool,
}

impl Drop for Quiet<'_> {
    fn drop(&mut self) {
        self.inner.state.borrow_mut().commit.resume(self.truncating);
        self.inner.progress.notify();
        pump(self.inner, true);
    }
}

/// Writes and syncs everything staged, finalizes sealed segments, waits until no I/O is in
/// flight and then pauses the pipeline until the returned guard is dropped. With `truncating`,
/// appends wait from now until then. Fails if a write fails meanwhile (after its rollback) or the
/// log is poisoned.
pub(crate) async fn quiesce(inner: &Rc<Inner>, truncating: bool) -> Result<Quiet<'_>> {
    let rollbacks = inner.state.borrow_mut().commit.drain_begin(truncating);
    let outcome = loop {
        let listen = inner.progress.listen();
        pump(inner, true);
        {
            let st = inner.state.borrow();
            if let Some(cause) = st.commit.poisoned() {
                break Err(inner.poisoned_error(cause));
            }
            if st.commit.rollbacks() != rollbacks {
                break Err(st.commit.last_write_error().unwrap_or(LogError::Closed));
            }
            let quiet = st.commit.settled()
                && !st.rolling
                && st.commit.written() == st.next_offset
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
    inner
        .state
        .borrow_mut()
        .commit
        .drain_end(outcome.is_ok(), truncating);
    match outcome {
        Ok(()) => Ok(Quiet { inner, truncating }),
        Err(e) => {
            inner.progress.notify();
            Err(e)
        }
    }
}

/// The flusher task of one log: pumps after each burst of appends (cutting a group) and runs the
/// periodic `fdatasync` of interval mode. Ends once the log is closed (or dropped) and no I/O is
/// in flight, or poisoned.
pub(crate) async fn flusher(inner: Rc<Inner>) {
    loop {
        let listen = inner.flush_wanted.listen();
        // Once closed, any I/O completing may be the last one this task waits for.
        let progress = inner.progress.listen();
        let now = Instant::now();
        pump_at(&inner, true, now);
        let (timeout, closed) = {
            let st = inner.state.borrow();
            if st.commit.poisoned().is_some() || (st.closed && st.commit.idle()) {
                return;
            }
            // Sleep until the next interval sync is due. Once it is due, `pump_at` just started
            // it if it could (it decided at the same `now`); if it could not (a sealed segment
            // is being finalized, which syncs it anyway), only an event can change that, so
            // wait for one rather than spin.
            (st.commit.interval_timeout(now), st.closed)
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
