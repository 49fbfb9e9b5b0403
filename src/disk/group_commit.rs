//! The decisions of group commit, without I/O: when to write a staging buffer, when to cut a
//! group's tail, when to start an `fdatasync`, which appends are acknowledged and when, when to
//! roll back after a failed write and when the log is poisoned.
//!
//! [`GroupCommit`] takes events (an append waits, a write completed or failed, an `fdatasync`
//! completed or failed, a segment was finalized, a rollback ended, a drain or a truncation) and
//! the current time as arguments; [`GroupCommit::next_action`] hands back the next I/O to start
//! ([`Action`]) and [`GroupCommit::next_ack`] the next append to acknowledge. No glommio, no
//! files, no clock: `commit.rs` runs the actions on the log's shard, and `group_commit/sim/`
//! runs them against a seeded simulated disk whose writes and syncs complete in any order, fail
//! or are short.
//!
//! Lives on the log's shard, inside the log state. The staging and the writes of the segment
//! being written are its [`Appender`] (sans-I/O as well), passed in by the caller.
//!
//! Rules kept here:
//! - One writer per block, and writes of the same block in order: `Appender::next_write`.
//! - An `fdatasync` covers only writes that completed before it was issued: its target is the
//!   written offset when it starts ([`Action::Sync`]), and it makes durable up to that only.
//! - Appends are acknowledged oldest first, [`Durability::Interval`] ones once written,
//!   [`Durability::Sync`] ones once durable; about `ack_pass_bytes` of them per pass.
//! - In sync mode groups alternate: a tail is cut only while no `fdatasync` is in flight, and an
//!   `fdatasync` starts only once the group's tail is written.
//! - A sealed segment is finalized (written whole, cut to size, synced) before any I/O of the
//!   next one: only the oldest segment with an appender is worked on, and it is finalized only
//!   with no I/O of the log in flight.
//! - A failed write: nothing new starts; once no I/O is in flight, [`Action::Rollback`] to the end
//!   of the written prefix, failing only appends not yet acknowledged.
//! - A failed `fdatasync`, finalize or rollback poisons the log: nothing starts, every waiting
//!   append fails and nothing is acknowledged any more.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::appender::{Appender, Boundary, StageBuf, WriteJob};
use super::config::{Durability, LogConfig};
use crate::types::Offset;

#[cfg(test)]
mod sim;

/// How one log commits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    /// The log's mode: [`Durability::Interval`] syncs every `flush`.
    pub(crate) durability: Durability,
    pub(crate) flush: Duration,
    pub(crate) preallocate_bytes: u64,
    pub(crate) segment_bytes: u64,
    /// Appends acknowledged per pass, in bytes (a staging buffer's worth: see `commit.rs`).
    pub(crate) ack_pass_bytes: u64,
}

impl Policy {
    pub(crate) fn of(cfg: &LogConfig) -> Policy {
        Policy {
            durability: cfg.durability,
            flush: Duration::from_millis(cfg.flush_ms),
            preallocate_bytes: cfg.preallocate_bytes,
            segment_bytes: cfg.segment_bytes,
            ack_pass_bytes: cfg.write_buffer_bytes as u64,
        }
    }
}

/// The segment [`GroupCommit::next_action`] works on: the oldest one that still has an appender.
pub(crate) struct Active<'a, B: StageBuf> {
    pub(crate) appender: &'a mut Appender<B>,
    /// No more appends go to it: everything staged is written, then it is finalized.
    pub(crate) sealed: bool,
}

/// One piece of I/O to start on the [`Active`] segment, already counted as in flight.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action<B> {
    /// Write a slot; report with [`GroupCommit::write_completed`] or
    /// [`GroupCommit::write_failed`].
    Write(WriteJob<B>),
    /// `fdatasync` the segment, which makes everything below `target` durable: report with
    /// [`GroupCommit::sync_completed`] then [`GroupCommit::io_ended`], or
    /// [`GroupCommit::sync_failed`].
    Sync { target: Offset },
    /// Reserve file space from `from` up to `target`; report to the appender
    /// (`Appender::preallocate_done`) and [`GroupCommit::io_ended`].
    Preallocate { from: u64, target: u64 },
    /// The sealed segment is all written: cut it to size, sync it, write its index files; report
    /// with [`GroupCommit::finalized`] or [`GroupCommit::finalize_failed`].
    Finalize,
    /// Cut the segment back to `at`, the end of its written prefix; report with
    /// [`GroupCommit::rolled_back`] or [`GroupCommit::rollback_failed`].
    Rollback { at: Boundary },
}

/// What [`GroupCommit::next_ack`] says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ack<T> {
    /// Acknowledge this append.
    Resolve(T),
    /// More appends are covered, but this pass has acknowledged its share: go on in the next.
    NextPass,
    /// Nothing more to acknowledge now.
    Idle,
}

/// An append waiting: acknowledged once everything before `next` is written or durable (as its
/// queue says). `bytes` is how much it appended, to pace acknowledgements.
struct Waiter<T> {
    next: Offset,
    bytes: u64,
    token: T,
}

/// Counters for the log's stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CommitStats {
    /// Groups ended by writing the staged bytes after the last full staging buffer.
    pub(crate) tail_writes: u64,
    /// `fdatasync`s of the log (finalizing a sealed segment counts one).
    pub(crate) fdatasyncs: u64,
}

/// The group-commit state of one log. Lives on the log's shard, in the log state. `T` is what
/// acknowledges an append (a resolver), `E` the error a failed write is reported with.
pub(crate) struct GroupCommit<T, E> {
    policy: Policy,
    written_waiters: VecDeque<Waiter<T>>,
    durable_waiters: VecDeque<Waiter<T>>,
    /// Everything below is written to the device (contiguously) / covered by an `fdatasync`.
    written: Offset,
    durable: Offset,
    /// Bytes staged and not yet written (backpressure).
    staged_bytes: u64,
    last_sync: Instant,
    /// I/O of this log in flight: writes, syncs (with the index writes after them),
    /// preallocations, finalizing, the rollback.
    in_flight: usize,
    sync_in_flight: bool,
    finalizing: bool,
    /// The first failed write not yet rolled back.
    write_error: Option<E>,
    rollback_in_flight: bool,
    /// Rollbacks so far and the error behind the last one.
    rollbacks: u64,
    last_write_error: Option<E>,
    /// Callers waiting for everything to be written and synced now.
    draining: usize,
    /// Nothing starts (a truncation or close is running).
    paused: bool,
    /// A truncation runs: appends wait.
    truncating: bool,
    /// Why the log is poisoned: nothing starts and nothing is acknowledged any more.
    poisoned: Option<String>,
    index: IndexBackoff,
    stats: CommitStats,
}

/// Index writes after a sync: one at a time, backing off after failures (index files are derived
/// data, rebuilt from the log if needed, so a full disk must not fail every sync).
#[derive(Default)]
struct IndexBackoff {
    writing: bool,
    /// Failed this many times in a row.
    failures: u32,
    retry_at: Option<Instant>,
}

impl<T, E: Clone> GroupCommit<T, E> {
    /// A log whose bytes below `end` are all durable, as of `now`.
    pub(crate) fn new(policy: Policy, end: Offset, now: Instant) -> Self {
        GroupCommit {
            policy,
            written_waiters: VecDeque::new(),
            durable_waiters: VecDeque::new(),
            written: end,
            durable: end,
            staged_bytes: 0,
            last_sync: now,
            in_flight: 0,
            sync_in_flight: false,
            finalizing: false,
            write_error: None,
            rollback_in_flight: false,
            rollbacks: 0,
            last_write_error: None,
            draining: 0,
            paused: false,
            truncating: false,
            poisoned: None,
            index: IndexBackoff::default(),
            stats: CommitStats::default(),
        }
    }

    /// Everything below is written to the device.
    pub(crate) fn written(&self) -> Offset {
        self.written
    }

    /// Everything below is covered by an `fdatasync`.
    pub(crate) fn durable(&self) -> Offset {
        self.durable
    }

    pub(crate) fn staged_bytes(&self) -> u64 {
        self.staged_bytes
    }

    pub(crate) fn stats(&self) -> CommitStats {
        self.stats
    }

    /// Why the log refuses appends, once an `fdatasync` (or finalize, or rollback) failed.
    pub(crate) fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// Whether an append may be staged now: not while a failed write awaits its rollback or a
    /// truncation runs (the caller checks [`GroupCommit::poisoned`] itself, to report it).
    pub(crate) fn accepts_appends(&self) -> bool {
        self.write_error.is_none() && !self.truncating
    }

    /// No I/O of the log is in flight.
    pub(crate) fn idle(&self) -> bool {
        self.in_flight == 0
    }

    /// No I/O in flight, no failed write waiting, everything written is durable: with every
    /// segment's staged bytes written (the caller's part), a drain is done.
    pub(crate) fn settled(&self) -> bool {
        self.in_flight == 0 && self.write_error.is_none() && self.durable >= self.written
    }

    /// The error of a failed write not yet rolled back.
    pub(crate) fn pending_write_error(&self) -> Option<&E> {
        self.write_error.as_ref()
    }

    pub(crate) fn rollbacks(&self) -> u64 {
        self.rollbacks
    }

    /// The error of the last failed write that was rolled back.
    pub(crate) fn last_write_error(&self) -> Option<E> {
        self.last_write_error.clone()
    }

    /// How long from `now` until the interval sync is due, when one will be (interval mode,
    /// something written and not synced, no sync running) and it is not due yet.
    pub(crate) fn interval_timeout(&self, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.last_sync);
        (self.policy.durability == Durability::Interval
            && self.written > self.durable
            && !self.sync_in_flight
            && elapsed < self.policy.flush)
            .then(|| self.policy.flush - elapsed)
    }

    /// `bytes` more are staged.
    pub(crate) fn staged(&mut self, bytes: u64) {
        self.staged_bytes += bytes;
    }

    /// An append of `bytes` whose last batch ends before `next` waits to be as durable as
    /// `durability` says. Appends wait in offset order.
    pub(crate) fn wait(&mut self, durability: Durability, next: Offset, bytes: u64, token: T) {
        let w = Waiter { next, bytes, token };
        match durability {
            Durability::Sync => self.durable_waiters.push_back(w),
            Durability::Interval => self.written_waiters.push_back(w),
        }
    }

    /// The next I/O that may start at `now`, recorded as in flight; `None` when there is none.
    /// `seg` is the oldest segment that still has an appender. With `allow_tail`, a group is cut
    /// (the staged bytes after the last full buffer are written) when an append waits for them;
    /// appends pass `false` so that a burst of them forms one group.
    pub(crate) fn next_action<B: StageBuf>(
        &mut self,
        seg: Option<Active<'_, B>>,
        allow_tail: bool,
        now: Instant,
    ) -> Option<Action<B>> {
        if self.poisoned.is_some() || self.paused || self.rollback_in_flight {
            return None;
        }
        if self.write_error.is_some() {
            if self.in_flight > 0 {
                return None;
            }
            let seg = seg.expect("a failed write belongs to a segment with an appender");
            let at = seg.appender.written();
            self.rollback_in_flight = true;
            self.in_flight += 1;
            return Some(Action::Rollback { at });
        }
        let Active {
            appender: app,
            sealed,
        } = seg?;

        // An fdatasync, when someone waits for one and the group's tail is written (or the
        // interval is up). It is decided before cutting the next tail so that the two alternate.
        let interval_due = self.policy.durability == Durability::Interval
            && now.saturating_duration_since(self.last_sync) >= self.policy.flush;
        let covered = self
            .durable_waiters
            .front()
            .is_some_and(|w| w.next <= self.written);
        if !sealed
            && !self.sync_in_flight
            && self.written > self.durable
            && (interval_due || ((covered || self.draining > 0) && !app.tail_in_flight()))
        {
            self.sync_in_flight = true;
            self.in_flight += 1;
            return Some(Action::Sync {
                target: self.written,
            });
        }

        // Full buffers (and a cut tail) go out as soon as nothing overlapping is in flight.
        if let Some(job) = app.next_write() {
            self.in_flight += 1;
            return Some(Action::Write(job));
        }

        // The end of a group: the staged bytes after the last full buffer, when an append waits
        // for them. A sealed segment, or a drain, takes everything.
        let committed = app.committed().next;
        let wants_written = self
            .written_waiters
            .back()
            .is_some_and(|w| w.next > committed);
        let wants_durable = self
            .durable_waiters
            .back()
            .is_some_and(|w| w.next > committed);
        let cut = sealed
            || self.draining > 0
            || (allow_tail
                && !app.tail_in_flight()
                && (wants_written || (wants_durable && !self.sync_in_flight)));
        if cut && app.take_tail() {
            self.stats.tail_writes += 1;
            if let Some(job) = app.next_write() {
                self.in_flight += 1;
                return Some(Action::Write(job));
            }
        }

        if !sealed {
            let target =
                app.preallocate_target(self.policy.preallocate_bytes, self.policy.segment_bytes)?;
            let from = app.preallocated_end();
            app.preallocate_started();
            self.in_flight += 1;
            return Some(Action::Preallocate { from, target });
        }
        if app.fully_written() && self.in_flight == 0 && !self.finalizing {
            self.finalizing = true;
            self.in_flight += 1;
            return Some(Action::Finalize);
        }
        None
    }

    /// Write `id` of `app` completed; its buffer comes back when it is a staging one. Returns
    /// whether the written offset advanced (then appends may be acknowledged).
    pub(crate) fn write_completed<B: StageBuf>(
        &mut self,
        app: &mut Appender<B>,
        id: u64,
        buf: Option<B>,
    ) -> bool {
        self.in_flight -= 1;
        match app.complete(id, buf) {
            Some(a) => {
                self.staged_bytes = self.staged_bytes.saturating_sub(a.bytes);
                self.written = self.written.max(a.written.next);
                true
            }
            None => false,
        }
    }

    /// Write `id` of `app` failed (or was short): nothing new starts, and once no I/O is in
    /// flight the log rolls back. Returns true for the first failure before a rollback, the one
    /// whose error (`err`) the appends after the written prefix will fail with.
    pub(crate) fn write_failed<B: StageBuf>(
        &mut self,
        app: &mut Appender<B>,
        id: u64,
        buf: Option<B>,
        err: impl FnOnce() -> E,
    ) -> bool {
        self.in_flight -= 1;
        app.fail(id, buf);
        if self.write_error.is_some() {
            return false;
        }
        self.write_error = Some(err());
        true
    }

    /// The `fdatasync` started with `target` completed at `now`. The sync still counts as in
    /// flight until [`GroupCommit::io_ended`] (the caller writes index entries meanwhile).
    pub(crate) fn sync_completed(&mut self, target: Offset, now: Instant) {
        self.sync_in_flight = false;
        self.durable = self.durable.max(target);
        self.last_sync = now;
        self.stats.fdatasyncs += 1;
    }

    /// The `fdatasync` failed: the device state is unknown. The log is poisoned; `fail` gets
    /// every waiting append.
    pub(crate) fn sync_failed(&mut self, cause: String, fail: impl FnMut(T)) {
        self.sync_in_flight = false;
        self.in_flight -= 1;
        self.poison(cause, fail);
    }

    /// Other I/O ended: a preallocation, or a sync together with the index writes after it.
    pub(crate) fn io_ended(&mut self) {
        self.in_flight -= 1;
    }

    /// The sealed segment ending at `end` is finalized (and synced) at `now`: its appender goes.
    pub(crate) fn finalized(&mut self, end: Offset, now: Instant) {
        self.in_flight -= 1;
        self.finalizing = false;
        self.written = self.written.max(end);
        self.durable = self.durable.max(end);
        self.last_sync = now;
        self.stats.fdatasyncs += 1;
    }

    /// Finalizing failed: the log is poisoned.
    pub(crate) fn finalize_failed(&mut self, cause: String, fail: impl FnMut(T)) {
        self.in_flight -= 1;
        self.finalizing = false;
        self.poison(cause, fail);
    }

    /// The rollback of [`Action::Rollback`] cut the file: `app` (the segment holding the written
    /// end, after the caller removed the segments past it) continues at the written prefix's end,
    /// whose partial block is `tail` as on disk. `fail` gets the appends past it, with the error
    /// of the failed write. Returns the offset the log now ends at, and that error.
    pub(crate) fn rolled_back<B: StageBuf>(
        &mut self,
        app: &mut Appender<B>,
        tail: &[u8],
        mut fail: impl FnMut(T, &E),
    ) -> (Offset, E) {
        let err = self.end_rollback();
        let target = self.written;
        assert_eq!(
            app.written().next,
            target,
            "the written prefix ends at the written offset"
        );
        app.rollback(tail);
        self.staged_bytes = 0;
        self.cut_waiters(target, |t| fail(t, &err));
        self.rollbacks += 1;
        self.last_write_error = Some(err.clone());
        (target, err)
    }

    /// The rollback failed: the log is poisoned.
    pub(crate) fn rollback_failed(&mut self, cause: String, fail: impl FnMut(T)) {
        self.end_rollback();
        self.poison(cause, fail);
    }

    fn end_rollback(&mut self) -> E {
        self.in_flight -= 1;
        self.rollback_in_flight = false;
        self.write_error
            .take()
            .expect("a rollback follows a failed write")
    }

    /// The device state is unknown: nothing starts any more, and every waiting append fails
    /// (`fail`): nothing is acknowledged after this, not even an append already written.
    pub(crate) fn poison(&mut self, cause: String, mut fail: impl FnMut(T)) {
        self.poisoned.get_or_insert(cause);
        for q in [&mut self.written_waiters, &mut self.durable_waiters] {
            while let Some(w) = q.pop_front() {
                fail(w.token);
            }
        }
    }

    /// Fails (`fail`) the waiting appends past `end`, newest first.
    fn cut_waiters(&mut self, end: Offset, mut fail: impl FnMut(T)) {
        for q in [&mut self.written_waiters, &mut self.durable_waiters] {
            while q.back().is_some_and(|w| w.next > end) {
                fail(q.pop_back().expect("checked").token);
            }
        }
    }

    /// The next append to acknowledge; `spent` counts the bytes of those acknowledged in this
    /// pass (start each pass at 0).
    pub(crate) fn next_ack(&mut self, spent: &mut u64) -> Ack<T> {
        if self.poisoned.is_some() {
            return Ack::Idle;
        }
        for (queue, upto) in [
            (&mut self.written_waiters, self.written),
            (&mut self.durable_waiters, self.durable),
        ] {
            if queue.front().is_some_and(|w| w.next <= upto) {
                if *spent >= self.policy.ack_pass_bytes {
                    return Ack::NextPass;
                }
                let w = queue.pop_front().expect("checked");
                *spent += w.bytes;
                return Ack::Resolve(w.token);
            }
        }
        Ack::Idle
    }

    /// Whether the index entries of written batches may be written at `now` (one write at a
    /// time, none while backing off); if so the caller writes them and reports with
    /// [`GroupCommit::index_write_succeeded`] or [`GroupCommit::index_write_failed`].
    pub(crate) fn index_write_may_start(&self, now: Instant) -> bool {
        !self.index.writing && self.index.retry_at.is_none_or(|t| now >= t)
    }

    pub(crate) fn index_write_started(&mut self) {
        self.index.writing = true;
    }

    /// An index write succeeded. Returns how many had failed in a row before it.
    pub(crate) fn index_write_succeeded(&mut self) -> u32 {
        self.index.writing = false;
        self.index.retry_at = None;
        std::mem::take(&mut self.index.failures)
    }

    /// An index write failed at `now`: the next waits 100 ms, doubling to about 13 s. Returns
    /// the failures in a row, this one included.
    pub(crate) fn index_write_failed(&mut self, now: Instant) -> u32 {
        self.index.writing = false;
        self.index.failures += 1;
        let n = self.index.failures;
        self.index.retry_at = Some(now + Duration::from_millis(100 << (n - 1).min(7)));
        n
    }

    /// A caller (close, truncation) waits for everything staged to be written and synced; with
    /// `truncating`, appends wait from now on. Returns the rollbacks so far: one more meanwhile
    /// fails the drain.
    pub(crate) fn drain_begin(&mut self, truncating: bool) -> u64 {
        self.draining += 1;
        self.truncating |= truncating;
        self.rollbacks
    }

    /// The caller of [`GroupCommit::drain_begin`] stops waiting: when the drain succeeded,
    /// nothing starts until [`GroupCommit::resume`]; when it failed, appends go on.
    pub(crate) fn drain_end(&mut self, ok: bool, truncating: bool) {
        self.draining -= 1;
        if ok {
            self.paused = true;
        } else if truncating {
            self.truncating = false;
        }
    }

    /// The truncation or close that drained is done with the files: I/O starts again.
    pub(crate) fn resume(&mut self, truncating: bool) {
        self.paused = false;
        if truncating {
            self.truncating = false;
        }
    }

    /// The log was truncated to `end` (drained and paused meanwhile): `fail` gets the appends
    /// past it not yet acknowledged, which would otherwise be acknowledged once later appends
    /// reach their offsets.
    pub(crate) fn truncated(&mut self, end: Offset, fail: impl FnMut(T)) {
        assert!(
            self.paused && self.in_flight == 0,
            "truncation while I/O runs"
        );
        self.written = end;
        self.durable = self.durable.min(end);
        self.staged_bytes = 0;
        self.cut_waiters(end, fail);
    }
}
