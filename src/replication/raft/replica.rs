//! [`Replica`]: one partition's Raft group member, without I/O.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use raft::eraftpb::{Message, MessageType};
use raft::{GetEntriesContext, RawNode, SnapshotStatus, StateRole};

use super::batch::{stamp, BatchMeta};
use super::config::ReplicaConfig;
use super::error::{FetchedError, ProposeError, ReplicaError};
use super::ingest::{check_fetched, check_message, is_stale_append_reject, stored_batch};
use super::storage::{snapshot_anchor, WindowStorage};
use super::types::{Acks, Action, CatchUp, Persist, PersistedState, Proposal, ReadLog};
use super::window::{Anchor, Window};
use crate::record::{batches, validate_batch};
use crate::replication::message::GroupId;

/// One voter as the leader sees it ([`Replica::progress`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoterProgress {
    pub id: u64,
    /// The highest Raft index known to be in this voter's log.
    pub matched: u64,
    /// The offset after the entry at `matched`, if still in the window.
    pub end_offset: Option<u64>,
    /// The leader's last index (the voter has everything when `matched` equals it).
    pub last_index: u64,
    /// The leader heard from it within the last election timeout (raft's `recent_active`,
    /// kept by check-quorum); always true for the leader itself.
    pub active: bool,
}

/// Persist work handed out and not reported yet, with what waits on it.
#[derive(Debug)]
struct Pending {
    id: u64,
    /// The last ready it covers: `on_persist_ready(ready)` once it is done.
    ready: Option<u64>,
    /// Messages raft-rs releases only after that ready is durable.
    messages: Vec<Message>,
    /// It fills the gap a restart found before the anchor.
    closes_gap: bool,
    /// It installs the snapshot at this index.
    snapshot: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Waiter {
    index: u64,
    term: u64,
}

/// A log read-back in flight and the raft-rs requests waiting on it.
struct Fetch {
    id: u64,
    /// Entries `from..=to`.
    from: u64,
    to: u64,
    contexts: Vec<GetEntriesContext>,
}

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// One replica of one partition's Raft group: a raft-rs `RawNode` over a window of the partition
/// log. Events in (`tick`, `step`, `propose`, and the driver's completions `persisted`,
/// `log_read`), [`Action`]s out (`next_action`). Lives on the shard that owns the partition; the
/// shard driver (and the simulator) are its only callers.
///
/// After every call, everything raft-rs had to say has been turned into actions: the window
/// holds every entry raft-rs has (so a proposal's offset is known at once), and nothing waits
/// inside raft-rs for the driver.
pub struct Replica {
    group: GroupId,
    id: u64,
    cfg: ReplicaConfig,
    voters: Vec<u64>,
    raw: RawNode<WindowStorage>,
    actions: VecDeque<Action>,
    pending: VecDeque<Pending>,
    next_persist_id: u64,
    /// The state as last handed to the driver in a `Persist`.
    written: PersistedState,
    /// Raft's commit index as of the last ready.
    commit: u64,
    hw: u64,
    /// While a restart's gap before the anchor is being filled: the log's end (the high
    /// watermark stays at or below it).
    gap_end: Option<u64>,
    reported_leader: (u64, u64),
    waiters_all: VecDeque<Waiter>,
    waiters_leader: VecDeque<Waiter>,
    fetches: Vec<Fetch>,
    next_fetch_id: u64,
    /// Followers in raft's snapshot state and the ticks they have been in it.
    snapshot_ticks: Vec<(u64, usize)>,
    /// Stale append rejections dropped before raft-rs saw them (raft-rs #557).
    stale_rejects_dropped: u64,
    failed: Option<ReplicaError>,
}

impl Replica {
    /// Starts (or restarts) replica `id` of `group` from what the driver loaded: the persisted
    /// state, the log's end offset, and the headers of the log's batches from
    /// `state.anchor.offset` to its end (`metas`, in order; empty if the log ends before the
    /// anchor's offset).
    ///
    /// A persisted commit past the last entry is clamped to it. If the log ends before the
    /// anchor's offset (unsynced data lost under interval durability), the first action is a
    /// [`Persist`] catching up to the anchor from the other voters.
    pub fn new(
        cfg: ReplicaConfig,
        group: GroupId,
        id: u64,
        state: PersistedState,
        log_end: u64,
        metas: &[BatchMeta],
    ) -> Result<Replica, ReplicaError> {
        if id == 0 || !state.voters.contains(&id) || state.voters.contains(&0) {
            return Err(ReplicaError::BadState(format!(
                "node {id} is not among the voters {:?}",
                state.voters
            )));
        }
        let anchor = state.anchor;
        let gap = log_end < anchor.offset;
        let window = if gap {
            if !metas.is_empty() {
                return Err(ReplicaError::LogNotContiguous {
                    expected: anchor.offset,
                    found: metas[0].base_offset,
                });
            }
            Window::new(anchor)
        } else {
            let w = Window::rebuild(anchor, metas)?;
            if w.end_offset() != log_end {
                return Err(ReplicaError::LogNotContiguous {
                    expected: w.end_offset(),
                    found: log_end,
                });
            }
            w
        };
        let last_term = window.term(window.last_index()).unwrap_or(anchor.term);
        // A batch of a later term than the state can survive a crash that lost the state write
        // after it (its vote was never sent): the term is at least the log's.
        let (term, vote) = if last_term > state.term {
            (last_term, 0)
        } else {
            (state.term, state.vote)
        };
        let commit = state.commit.clamp(anchor.index, window.last_index());
        let hs = raft::eraftpb::HardState {
            term,
            vote,
            commit,
            ..Default::default()
        };
        let voters = state.voters.clone();
        let hw = window.end_of(commit).expect("commit inside the window");
        let storage = WindowStorage::new(window, hs, &voters);
        let raw = RawNode::new(&cfg.raft_config(id, commit), storage, &logger())
            .map_err(|e| ReplicaError::BadState(e.to_string()))?;
        let written = PersistedState {
            term,
            vote,
            commit,
            voters: voters.clone(),
            anchor,
        };
        let mut r = Replica {
            group,
            id,
            cfg,
            voters,
            raw,
            actions: VecDeque::new(),
            pending: VecDeque::new(),
            next_persist_id: 1,
            written,
            commit,
            hw: if gap { log_end } else { hw },
            gap_end: gap.then_some(log_end),
            reported_leader: (0, 0),
            waiters_all: VecDeque::new(),
            waiters_leader: VecDeque::new(),
            fetches: Vec::new(),
            next_fetch_id: 1,
            snapshot_ticks: Vec::new(),
            stale_rejects_dropped: 0,
            failed: None,
        };
        r.actions.push_back(Action::HighWatermark(r.hw));
        if gap {
            let sources = r.others();
            let id = r.push_persist(
                Persist {
                    id: 0,
                    truncate_to: None,
                    catch_up: Some(CatchUp {
                        from_offset: log_end,
                        to_offset: anchor.offset,
                        sources,
                    }),
                    first_offset: anchor.offset,
                    batches: Vec::new(),
                    state: None,
                    sync: true,
                },
                None,
                Vec::new(),
            );
            r.pending.back_mut().expect("just pushed").closes_gap = true;
            debug_assert_eq!(id, 1);
        }
        r.pump()?;
        Ok(r)
    }

    // ---- what the driver reads ----

    pub fn group(&self) -> GroupId {
        self.group
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next thing to do, in order. Call until `None` after every call into the replica.
    pub fn next_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Consumers may read below this offset. Equal to the end of
    /// min(committed, locally durable) entry; never goes backwards in this replica's life.
    pub fn high_watermark(&self) -> u64 {
        self.hw
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The leader this replica knows of.
    pub fn leader(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|&l| l != 0)
    }

    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    pub fn last_index(&self) -> u64 {
        self.raw.raft.raft_log.last_index()
    }

    /// The offset after the last entry this replica has handed out for writing (its log end
    /// once all `Persist` work is done).
    pub fn log_end(&self) -> u64 {
        self.window().end_offset()
    }

    pub fn anchor(&self) -> Anchor {
        self.window().anchor()
    }

    /// Entries in the window and their bytes; bytes cached.
    pub fn window_stats(&self) -> (usize, u64, u64) {
        let w = self.window();
        (w.len(), w.bytes(), w.cached_bytes())
    }

    /// Leader only (empty elsewhere): every voter's id, its matched Raft index and the log end
    /// offset that index stands for (`None` when the index is before the window, so unknown
    /// here), in id order. The leader's own entry is its last index.
    pub fn progress(&self) -> Vec<VoterProgress> {
        if !self.is_leader() {
            return Vec::new();
        }
        let r = &self.raw.raft;
        let mut out: Vec<VoterProgress> = r
            .prs()
            .iter()
            .map(|(&id, p)| {
                let matched = if id == self.id {
                    r.raft_log.last_index()
                } else {
                    p.matched
                };
                VoterProgress {
                    id,
                    matched,
                    end_offset: self.window().end_of(matched),
                    last_index: r.raft_log.last_index(),
                    active: id == self.id || p.recent_active,
                }
            })
            .collect();
        out.sort_by_key(|p| p.id);
        out
    }

    /// The error that failed this replica, if one did: the driver restarts it from disk.
    pub fn failure(&self) -> Option<&ReplicaError> {
        self.failed.as_ref()
    }

    /// Whether nothing is going on: no persist or read in flight, and (leader) every follower
    /// has everything and knows it is committed. A driver may tick such a group less often
    /// (quiescence is not implemented yet: a follower still needs heartbeats to stay quiet).
    pub fn is_quiescent(&self) -> bool {
        if !self.pending.is_empty() || !self.fetches.is_empty() || !self.actions.is_empty() {
            return false;
        }
        let r = &self.raw.raft;
        let last = r.raft_log.last_index();
        r.state == StateRole::Leader
            && r.raft_log.committed == last
            && r.prs().iter().all(|(_, p)| p.matched == last)
    }

    /// Append rejections this replica dropped as stale, as a leader, instead of stepping them
    /// (the workaround for raft-rs #557, see [`Replica::step`]). A counter for metrics: a
    /// reordering network makes a few; it never goes backwards in this replica's life.
    pub fn stale_rejects_dropped(&self) -> u64 {
        self.stale_rejects_dropped
    }

    /// Test only: raft-rs's progress of voter `id`, as this replica (leader) tracks it.
    #[cfg(test)]
    pub(super) fn raft_progress(&self, id: u64) -> Option<raft::Progress> {
        self.raw.raft.prs().get(id).cloned()
    }

    /// What to answer a [`FetchLog`](crate::replication::message::FetchLog) from another
    /// replica: the range of this log it may read, `from_offset..high_watermark`, or `None` if
    /// there is nothing to serve from there (the driver answers `NotAvailable`). The driver
    /// reads whole batches from `from_offset` up to the bound and `max_bytes` (at least one).
    pub fn serve_fetch(&self, from_offset: u64) -> Option<std::ops::Range<u64>> {
        (from_offset < self.hw).then_some(from_offset..self.hw)
    }

    /// Checks batches another replica sent for a catch-up: whole valid batches, the first at
    /// `from_offset`, contiguous. Returns the headers of those below `to_offset` (the server may
    /// send more: the driver ignores the rest); the driver appends those batches as they are.
    /// A batch across `to_offset` is an error (the server's log disagrees with ours).
    pub fn check_fetched(
        &self,
        from_offset: u64,
        to_offset: u64,
        data: &[u8],
    ) -> Result<Vec<BatchMeta>, FetchedError> {
        check_fetched(from_offset, to_offset, data, self.cfg.batch_bytes_max)
    }

    fn window(&self) -> &Window {
        &self.raw.raft.raft_log.store.window
    }

    fn window_mut(&mut self) -> &mut Window {
        &mut self.raw.raft.raft_log.store.window
    }

    fn others(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .voters
            .iter()
            .copied()
            .filter(|&v| v != self.id)
            .collect();
        if let Some(l) = self.leader().filter(|&l| l != self.id) {
            v.retain(|&x| x != l);
            v.insert(0, l);
        }
        v
    }

    fn check_alive(&self) -> Result<(), ReplicaError> {
        match &self.failed {
            Some(e) => Err(ReplicaError::Failed(e.to_string())),
            None => Ok(()),
        }
    }

    /// Runs `f` then turns everything raft-rs has to say into actions; a fatal error fails the
    /// replica for good.
    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ReplicaError>,
    ) -> Result<T, ReplicaError> {
        self.check_alive()?;
        let out = f(self);
        let pumped = self.pump();
        let out = out.and_then(|v| pumped.map(|()| v));
        if let Err(e) = &out {
            if e.is_fatal() && self.failed.is_none() {
                self.failed = Some(e.clone());
            }
        }
        out
    }

    // ---- events ----

    /// One tick of the group's clock (every `tick_ms`).
    pub fn tick(&mut self) -> Result<(), ReplicaError> {
        self.run(|r| {
            // While a snapshot is being installed raft-rs's applied index is behind the new
            // anchor, and a campaign would look for entries there (raft-rs `hup` slices from
            // applied + 1): the follower's clock stops until the catch-up is done. It still votes.
            if !r.pending.iter().any(|p| p.snapshot.is_some()) {
                r.raw.tick();
            }
            r.retry_snapshots();
            Ok(())
        })
    }

    /// A Raft message from another replica. A message that fails the checks (not for us, a bad
    /// batch, offsets that disagree with ours) is dropped with an error and changes nothing;
    /// the replica stays usable.
    ///
    /// On a leader, a rejected append for an index the follower has since acknowledged is
    /// dropped (`Ok`, counted in [`Replica::stale_rejects_dropped`]): raft-rs 0.7.0 would rewind
    /// that follower's next index to or below its matched one (raft-rs #557, fixed upstream in
    /// 2fbeee5; see `ingest::is_stale_append_reject`).
    pub fn step(&mut self, msg: Message) -> Result<(), ReplicaError> {
        self.run(|r| {
            check_message(&msg, r.id, &r.voters, r.window(), r.cfg.batch_bytes_max)?;
            if is_stale_append_reject(&msg, &r.raw.raft) {
                r.stale_rejects_dropped += 1;
                return Ok(());
            }
            r.raw
                .step(msg)
                .map_err(|e| ReplicaError::Raft(e.to_string()))
        })
    }

    /// Proposes `batch` (one v2 batch as the producer sent it) as the next entry. The leader
    /// stamps its offset and term into it, so the bytes it sends are the bytes every replica
    /// stores. The outcome comes later as [`Action::Completed`] with the proposal's index and
    /// term: `Ok` per `acks`, or `NotLeader` if this replica steps down first or the entry is
    /// overwritten.
    pub fn propose(&mut self, mut batch: BytesMut, acks: Acks) -> Result<Proposal, ProposeError> {
        if let Some(e) = &self.failed {
            return Err(ProposeError::Failed(e.to_string()));
        }
        if self.raw.raft.state != StateRole::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader(),
            });
        }
        if self.raw.raft.lead_transferee.is_some() {
            return Err(ProposeError::Dropped);
        }
        let header = validate_batch(&batch, self.cfg.batch_bytes_max)?;
        let (entries, bytes) = (self.window().len(), self.window().bytes());
        if entries >= 2 * self.cfg.window_entries_max || bytes >= 2 * self.cfg.window_bytes_max {
            return Err(ProposeError::Backpressure { entries, bytes });
        }
        let term = self.raw.raft.term;
        let base_offset = self.window().end_offset();
        let last_offset = base_offset + header.last_offset_delta as u64;
        let index = self.raw.raft.raft_log.last_index() + 1;
        debug_assert_eq!(index, self.window().last_index() + 1);
        stamp(&mut batch, base_offset, term);
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgPropose);
        m.from = self.id;
        let e = raft::eraftpb::Entry {
            data: batch.freeze(),
            ..Default::default()
        };
        m.entries = vec![e].into();
        let stepped = self.raw.step(m);
        if stepped.is_err() || self.raw.raft.raft_log.last_index() != index {
            let _ = self.pump();
            return Err(ProposeError::Dropped);
        }
        let w = Waiter { index, term };
        match acks {
            Acks::All => self.waiters_all.push_back(w),
            Acks::Leader => self.waiters_leader.push_back(w),
        }
        if let Err(e) = self.pump() {
            if e.is_fatal() {
                self.failed = Some(e.clone());
            }
            return Err(ProposeError::Failed(e.to_string()));
        }
        Ok(Proposal {
            index,
            term,
            base_offset,
            last_offset,
        })
    }

    /// The driver finished [`Persist`] `id` (they finish in the order handed out).
    pub fn persisted(&mut self, id: u64) -> Result<(), ReplicaError> {
        self.run(|r| {
            let front = r.pending.front().map(|p| p.id);
            if front != Some(id) {
                return Err(ReplicaError::DriverOrder {
                    expected: front,
                    got: id,
                });
            }
            let p = r.pending.pop_front().expect("front checked");
            if p.closes_gap {
                r.gap_end = None;
            }
            r.actions.extend(p.messages.into_iter().map(Action::Send));
            if let Some(n) = p.ready {
                r.raw.on_persist_ready(n);
            }
            if let Some(i) = p.snapshot {
                // The snapshot is the state machine up to its index (the log is): applied moves
                // there, so raft-rs never looks for entries before the new anchor.
                if i > r.raw.raft.raft_log.applied {
                    r.raw.advance_apply_to(i);
                }
            }
            Ok(())
        })
    }

    /// The driver's answer to [`ReadLog`] `id`: the batches read (concatenated), or `None` if
    /// the read failed (raft-rs asks again later).
    pub fn log_read(&mut self, id: u64, data: Option<Bytes>) -> Result<(), ReplicaError> {
        self.run(|r| {
            let Some(k) = r.fetches.iter().position(|f| f.id == id) else {
                return Ok(());
            };
            let f = r.fetches.swap_remove(k);
            if let Some(data) = data {
                r.fill_from(f.from, f.to, &data);
            }
            for c in f.contexts {
                r.raw.on_entries_fetched(c);
            }
            Ok(())
        })
    }

    // ---- inside ----

    fn fill_from(&mut self, from: u64, to: u64, data: &Bytes) {
        for (index, item) in (from..=to).zip(batches(data)) {
            let Ok((h, range)) = item else { break };
            if !self
                .window_mut()
                .fill(index, data.slice(range), BatchMeta::of(&h))
            {
                break;
            }
        }
    }

    fn push_persist(&mut self, mut p: Persist, ready: Option<u64>, messages: Vec<Message>) -> u64 {
        let id = self.next_persist_id;
        self.next_persist_id += 1;
        p.id = id;
        if let Some(s) = &p.state {
            self.written = s.clone();
        }
        self.pending.push_back(Pending {
            id,
            ready,
            messages,
            closes_gap: false,
            snapshot: None,
        });
        self.actions.push_back(Action::Persist(p));
        id
    }

    fn current_state(&self) -> PersistedState {
        PersistedState {
            term: self.raw.raft.term,
            vote: self.raw.raft.vote,
            commit: self.commit,
            voters: self.voters.clone(),
            anchor: self.window().anchor(),
        }
    }

    /// Turns every ready raft-rs has into actions, then settles what follows from it: the high
    /// watermark, completed proposals, the anchor, the cache.
    fn pump(&mut self) -> Result<(), ReplicaError> {
        loop {
            self.take_wants();
            if !self.raw.has_ready() {
                break;
            }
            self.handle_ready()?;
        }
        self.report_leader();
        self.update_hw();
        self.complete_waiters();
        self.maybe_compact();
        let evictable = self.raw.raft.raft_log.persisted;
        let max = self.cfg.cache_bytes_max;
        self.window_mut().evict(max, evictable);
        Ok(())
    }

    fn handle_ready(&mut self) -> Result<(), ReplicaError> {
        let mut rd = self.raw.ready();
        let number = rd.number();
        for m in rd.take_messages() {
            self.actions.push_back(Action::Send(m));
        }
        let mut work = Persist {
            id: 0,
            truncate_to: None,
            catch_up: None,
            first_offset: 0,
            batches: Vec::new(),
            state: None,
            sync: rd.must_sync(),
        };
        let mut result = Ok(());
        let mut snapshot = None;
        if !rd.snapshot().is_empty() {
            match snapshot_anchor(rd.snapshot()) {
                Some(a) => {
                    // The log is filled from others from what is known committed here up to the
                    // snapshot's offset; the window starts over at the snapshot.
                    let committed_end = self.window().end_of(self.commit).unwrap_or(0);
                    work.catch_up = Some(CatchUp {
                        from_offset: committed_end,
                        to_offset: a.offset,
                        sources: self.others(),
                    });
                    self.window_mut().reset(a);
                    self.fail_waiters_from(0);
                    snapshot = Some(a.index);
                }
                None => result = Err(ReplicaError::BadSnapshot(rd.snapshot().data.len())),
            }
        }
        let entries = rd.take_entries();
        if let (Some(first), Ok(())) = (entries.first(), &result) {
            if first.index <= self.window().last_index() {
                let cut = self.window_mut().truncate_from(first.index);
                work.truncate_to = Some(work.truncate_to.map_or(cut, |t| t.min(cut)));
                self.fail_waiters_from(first.index);
            }
            work.first_offset = self.window().end_offset();
            for e in &entries {
                let offset = self.window().end_offset();
                match stored_batch(e.index, e.term, &e.data, offset) {
                    Ok((bytes, meta)) => {
                        self.window_mut().push(e.term, meta, Some(bytes.clone()));
                        work.batches.push(bytes);
                    }
                    Err(err) => {
                        // raft-rs has taken the entries: the replica cannot go on.
                        result = Err(ReplicaError::Inconsistent(err.to_string()));
                        break;
                    }
                }
            }
        }
        if let Some(hs) = rd.hs() {
            self.commit = hs.commit;
        }
        if work.catch_up.is_some()
            || self.written.term != self.raw.raft.term
            || self.written.vote != self.raw.raft.vote
        {
            work.state = Some(self.current_state());
            work.sync = true;
        }
        let committed_last = rd.committed_entries().last().map(|e| e.index);
        let persisted_messages = rd.take_persisted_messages();
        self.raw.advance_append_async(rd);
        if let Some(i) = committed_last {
            self.raw.advance_apply_to(i);
        }
        // A stamping error is fatal: the ready is gone into raft-rs. Nothing of it is written.
        result?;
        let has_work = work.truncate_to.is_some()
            || work.catch_up.is_some()
            || !work.batches.is_empty()
            || work.state.is_some();
        if has_work {
            self.push_persist(work, Some(number), persisted_messages);
            self.pending.back_mut().expect("just pushed").snapshot = snapshot;
        } else if let Some(tail) = self.pending.back_mut() {
            // Nothing of its own to write, but it may only be released after the work before it.
            tail.ready = Some(number);
            tail.messages.extend(persisted_messages);
        } else {
            self.actions
                .extend(persisted_messages.into_iter().map(Action::Send));
            self.raw.on_persist_ready(number);
        }
        Ok(())
    }

    /// Turns the entry requests raft-rs is waiting for into log reads.
    fn take_wants(&mut self) {
        let wants = std::mem::take(&mut *self.raw.raft.raft_log.store.wants.borrow_mut());
        for want in wants {
            if let Some(f) = self
                .fetches
                .iter_mut()
                .find(|f| f.from <= want.low && want.low <= f.to)
            {
                f.contexts.push(want.context);
                continue;
            }
            let w = self.window();
            let to = w.span(want.low, want.high - 1, self.cfg.read_bytes_max);
            let (Some(from_meta), Some(to_meta)) = (w.meta(want.low), w.meta(to)) else {
                continue;
            };
            let id = self.next_fetch_id;
            self.next_fetch_id += 1;
            self.actions.push_back(Action::ReadLog(ReadLog {
                id,
                from_offset: from_meta.base_offset,
                to_offset: to_meta.end_offset(),
                max_bytes: self.cfg.read_bytes_max,
            }));
            self.fetches.push(Fetch {
                id,
                from: want.low,
                to,
                contexts: vec![want.context],
            });
        }
    }

    fn report_leader(&mut self) {
        let now = (self.raw.raft.leader_id, self.raw.raft.term);
        if now == self.reported_leader {
            return;
        }
        let changed_leader = now.0 != self.reported_leader.0;
        self.reported_leader = now;
        if changed_leader || now.0 != 0 {
            self.actions.push_back(Action::Leader {
                leader: Some(now.0).filter(|&l| l != 0),
                term: now.1,
            });
        }
        if self.raw.raft.state != StateRole::Leader {
            self.fail_waiters_from(0);
        }
    }

    fn update_hw(&mut self) {
        let log = &self.raw.raft.raft_log;
        let index = log.committed.min(log.persisted);
        let Some(mut end) = self.window().end_of(index) else {
            return;
        };
        if let Some(g) = self.gap_end {
            end = end.min(g);
        }
        if end > self.hw {
            self.hw = end;
            self.actions.push_back(Action::HighWatermark(end));
        }
    }

    fn complete_waiters(&mut self) {
        let log = &self.raw.raft.raft_log;
        let (committed, persisted) = (log.committed, log.persisted);
        let durable_committed = committed.min(persisted);
        while let Some(w) = self.waiters_all.front().copied() {
            if w.index > durable_committed {
                break;
            }
            self.waiters_all.pop_front();
            debug_assert_eq!(self.window().term(w.index).unwrap_or(w.term), w.term);
            self.actions.push_back(Action::Completed {
                index: w.index,
                term: w.term,
                result: Ok(()),
            });
        }
        while let Some(w) = self.waiters_leader.front().copied() {
            if w.index > persisted {
                break;
            }
            self.waiters_leader.pop_front();
            self.actions.push_back(Action::Completed {
                index: w.index,
                term: w.term,
                result: Ok(()),
            });
        }
    }

    /// Fails every waiting proposal at `index` or after (all of them for 0).
    fn fail_waiters_from(&mut self, index: u64) {
        let leader = self.leader().filter(|&l| l != self.id);
        for q in [&mut self.waiters_all, &mut self.waiters_leader] {
            while q.back().is_some_and(|w| w.index >= index) {
                let w = q.pop_back().expect("checked");
                self.actions.push_back(Action::Completed {
                    index: w.index,
                    term: w.term,
                    result: Err(ProposeError::NotLeader { leader }),
                });
            }
        }
    }

    /// Moves the anchor once the window is over its bounds: to a committed, durable, applied
    /// index, down to half the bounds, but not past what a follower that is not far behind
    /// still needs (it would need a snapshot and a catch-up instead of a few appends).
    fn maybe_compact(&mut self) {
        let w = self.window();
        let (entries_max, bytes_max) = (self.cfg.window_entries_max, self.cfg.window_bytes_max);
        if w.len() <= entries_max && w.bytes() <= bytes_max {
            return;
        }
        let log = &self.raw.raft.raft_log;
        let stable = log.committed.min(log.persisted).min(log.applied);
        let last = w.last_index();
        let mut target = w.anchor().index;
        let (mut n, mut bytes) = (w.len(), w.bytes());
        while (n > entries_max / 2 || bytes > bytes_max / 2) && target < stable {
            target += 1;
            n -= 1;
            bytes -= u64::from(w.meta(target).expect("inside the window").bytes);
        }
        if self.raw.raft.state == StateRole::Leader {
            for (&id, p) in self.raw.raft.prs().iter() {
                if id != self.id && p.matched + entries_max as u64 >= last {
                    target = target.min(p.matched);
                }
            }
        }
        if target <= w.anchor().index {
            return;
        }
        self.window_mut().compact_to(target);
        // Drop read-backs of entries no longer in the window; raft-rs asks again.
        let first = self.window().first_index();
        self.fetches.retain(|f| f.from >= first);
        // The anchor is written lazily: raft does not wait for it.
        let state = self.current_state();
        let p = Persist {
            id: 0,
            truncate_to: None,
            catch_up: None,
            first_offset: self.window().end_offset(),
            batches: Vec::new(),
            state: Some(state),
            sync: false,
        };
        self.push_persist(p, None, Vec::new());
    }

    /// A follower in raft's snapshot state for `snapshot_retry_ticks` gets the snapshot again
    /// (the message may have been lost; raft-rs would wait forever).
    fn retry_snapshots(&mut self) {
        if self.raw.raft.state != StateRole::Leader {
            self.snapshot_ticks.clear();
            return;
        }
        let in_snapshot: Vec<u64> = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(_, p)| p.state == raft::ProgressState::Snapshot)
            .map(|(&id, _)| id)
            .collect();
        self.snapshot_ticks
            .retain(|(id, _)| in_snapshot.contains(id));
        let mut retry = Vec::new();
        for id in in_snapshot {
            match self.snapshot_ticks.iter_mut().find(|(i, _)| *i == id) {
                Some((_, t)) => {
                    *t += 1;
                    if *t >= self.cfg.snapshot_retry_ticks {
                        *t = 0;
                        retry.push(id);
                    }
                }
                None => self.snapshot_ticks.push((id, 0)),
            }
        }
        for id in retry {
            self.raw.report_snapshot(id, SnapshotStatus::Failure);
        }
    }
}
