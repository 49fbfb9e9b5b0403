//! [`Group`]: one partition replica on its shard: the replica core (`raft::Replica`) driven
//! against the partition's [`PartitionLog`], its `replica-state` file and the network. The core
//! decides; this performs its actions mechanically:
//!
//! - `Send`: into the shard's outbox, to the shard of the peer's replica (its placement);
//! - `Persist`: in order, by one worker task per group. Consecutive pure appends queued while an
//!   earlier one waits for its `fdatasync` are written as one append (group commit across Raft
//!   readies: one sync covers them all); a truncation, a catch-up or a state write is never
//!   merged with what comes before it;
//! - `ReadLog`: a read task, answered with `log_read`;
//! - `HighWatermark`: the log's replication bound (consumers read below it);
//! - `Completed`: the produce waiting on that proposal;
//! - `Leader`: kept for metadata answers and reported to the cluster metadata.
//!
//! A failed write or sync fails the group: its produces get errors, the failure is logged, and
//! the group restarts from disk (state file and log) on the next tick.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::{Bytes, BytesMut};

use super::net::Net;
use crate::disk::replica_state::{self, ReplicaStateFile};
use crate::disk::{LogError, PartitionLog};
use crate::local::{promise, Event, Promise, Resolver};
use crate::record::{self, BatchHeader};
use crate::replication::message::{FetchLog, FetchLogReply, FetchLogStatus, GroupId, WireMessage};
use crate::replication::raft::{
    Acks, Action, Anchor, BatchMeta, CatchUp, Persist, PersistedState, Proposal, ProposeError,
    ReadLog, Replica, ReplicaConfig, ReplicaError, VoterProgress,
};
use crate::shard::placement::Placement;
use crate::types::{NodeId, Offset, ShardId, TopicPartition};

/// Bytes of queued appends one persist round writes together at most.
const MERGE_BYTES_MAX: usize = 8 << 20;
/// How long a catch-up waits for one `FetchLog` answer before asking the next replica.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between catch-up rounds that made no progress.
const CATCH_UP_BACKOFF: Duration = Duration::from_millis(100);

/// Who leads a group, as this replica knows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaderView {
    pub leader: Option<NodeId>,
    pub term: u64,
}

/// Called when a group learns of a new leader (`Action::Leader`).
pub type LeaderHook = Rc<dyn Fn(&Group, LeaderView)>;

/// Produces waiting on their proposal, by (index, term).
type Waiters = AHashMap<(u64, u64), Resolver<Result<(), ProposeError>>>;

pub struct Group {
    pub tp: TopicPartition,
    pub id: GroupId,
    pub node: NodeId,
    placement: Placement,
    cfg: ReplicaConfig,
    log: Rc<PartitionLog>,
    dir: PathBuf,
    net: Rc<Net>,
    core: RefCell<Replica>,
    queue: RefCell<VecDeque<Persist>>,
    wake: Event,
    waiters: RefCell<Waiters>,
    leader: Cell<LeaderView>,
    on_leader: Option<LeaderHook>,
    /// The core failed (or a write did): restart from disk at the next tick.
    failed: Cell<bool>,
    /// The worker is performing persist work (a restart waits for it to end).
    busy: Cell<bool>,
    closed: Cell<bool>,
    /// Notified when the leader or the high watermark changes.
    pub changed: Event,
    /// Leader only: when each voter last had every entry the leader had (its in-sync clock).
    caught_up: RefCell<AHashMap<u64, Instant>>,
    /// Ticks skipped in a row because the group was quiescent.
    quiet_ticks: Cell<u64>,
    /// Ticks since the last Raft message from the leader this replica knows.
    silent_ticks: Cell<u64>,
    may_quiesce: Cell<bool>,
    /// The leader's last index at the previous tick (the in-sync rule).
    prev_last_index: Cell<u64>,
}

/// One replica of a group as its leader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaView {
    pub node: NodeId,
    /// The log end offset this replica is known to hold, if known.
    pub log_end: Option<Offset>,
    /// It had everything the leader had within the last `lag_max`.
    pub in_sync: bool,
}

/// A proposal handed to Raft and the wait for its outcome.
pub type Submitted = (Proposal, Promise<Result<(), ProposeError>>);

/// The state file's form of the core's persisted state, and back.
fn to_file(s: &PersistedState) -> ReplicaStateFile {
    ReplicaStateFile {
        term: s.term,
        vote: s.vote,
        commit: s.commit,
        voters: s.voters.clone(),
        anchor_index: s.anchor.index,
        anchor_term: s.anchor.term,
        anchor_offset: Offset(s.anchor.offset),
    }
}

fn from_file(f: &ReplicaStateFile) -> PersistedState {
    PersistedState {
        term: f.term,
        vote: f.vote,
        commit: f.commit,
        voters: f.voters.clone(),
        anchor: Anchor {
            index: f.anchor_index,
            term: f.anchor_term,
            offset: f.anchor_offset.0,
        },
    }
}

/// The headers of the log's batches from `from` to its end (the window a restart rebuilds).
async fn headers_from(log: &PartitionLog, from: Offset) -> Result<Vec<BatchMeta>, String> {
    let end = log.log_end_offset();
    let mut at = from;
    let mut out = Vec::new();
    while at < end {
        let r = log
            .read_upto(at, 1 << 20, end)
            .await
            .map_err(|e| format!("reading the log from offset {at}: {e}"))?;
        if r.batches.is_empty() {
            return Err(format!("no batch at offset {at} below the log end {end}"));
        }
        for b in &r.batches {
            let h = BatchHeader::parse(b).map_err(|e| format!("batch at {at}: {e}"))?;
            out.push(BatchMeta::of(&h));
            at = Offset(h.last_offset() as u64 + 1);
        }
    }
    Ok(out)
}

/// The core of a group, from what is on disk.
async fn load_core(
    cfg: &ReplicaConfig,
    id: GroupId,
    node: NodeId,
    placement: &Placement,
    log: &PartitionLog,
) -> Result<Replica, String> {
    let voters: Vec<u64> = placement.replicas.iter().map(|n| u64::from(n.0)).collect();
    let state = match replica_state::load(log.dir()).map_err(|e| e.to_string())? {
        Some(f) => from_file(&f),
        None => PersistedState::new(voters),
    };
    let end = log.log_end_offset();
    let metas = if end.0 >= state.anchor.offset {
        headers_from(log, Offset(state.anchor.offset)).await?
    } else {
        Vec::new()
    };
    Replica::new(cfg.clone(), id, u64::from(node.0), state, end.0, &metas)
        .map_err(|e| e.to_string())
}

impl Group {
    /// Starts the replica of `tp` on this shard over its opened `log`.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        tp: TopicPartition,
        id: GroupId,
        node: NodeId,
        placement: Placement,
        cfg: ReplicaConfig,
        log: Rc<PartitionLog>,
        net: Rc<Net>,
        on_leader: Option<LeaderHook>,
    ) -> Result<Rc<Group>, String> {
        let core = load_core(&cfg, id, node, &placement, &log).await?;
        let g = Rc::new(Group {
            tp,
            id,
            node,
            dir: log.dir().to_path_buf(),
            placement,
            cfg,
            log,
            net,
            core: RefCell::new(core),
            queue: RefCell::new(VecDeque::new()),
            wake: Event::new(),
            waiters: RefCell::new(AHashMap::new()),
            leader: Cell::new(LeaderView::default()),
            on_leader,
            failed: Cell::new(false),
            busy: Cell::new(false),
            closed: Cell::new(false),
            changed: Event::new(),
            caught_up: RefCell::new(AHashMap::new()),
            quiet_ticks: Cell::new(0),
            silent_ticks: Cell::new(0),
            may_quiesce: Cell::new(true),
            prev_last_index: Cell::new(0),
        });
        glommio::spawn_local(g.clone().persist_worker()).detach();
        g.drain();
        Ok(g)
    }

    pub fn log(&self) -> &Rc<PartitionLog> {
        &self.log
    }

    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    pub fn leader(&self) -> LeaderView {
        self.leader.get()
    }

    pub fn is_leader(&self) -> bool {
        !self.failed.get() && self.core.borrow().is_leader()
    }

    pub fn high_watermark(&self) -> u64 {
        self.core.borrow().high_watermark()
    }

    /// Whether the core says nothing is going on (see `Replica::is_quiescent`).
    pub fn is_quiescent(&self) -> bool {
        self.core.borrow().is_quiescent()
    }

    /// The shard of `node`'s replica of this group.
    fn shard_of(&self, node: NodeId) -> Option<ShardId> {
        self.placement.shard_on(node)
    }

    // ---- events ----

    pub fn tick(self: &Rc<Self>) {
        if self.closed.get() {
            return;
        }
        if self.failed.get() {
            glommio::spawn_local(self.clone().restart()).detach();
            return;
        }
        self.silent_ticks.set(self.silent_ticks.get() + 1);
        if !self.quiescent() {
            let r = self.core.borrow_mut().tick();
            self.after(r);
            self.quiet_ticks.set(0);
        } else {
            self.quiet_ticks.set(self.quiet_ticks.get() + 1);
        }
        self.note_caught_up();
    }

    /// Whether this group may skip Raft ticks (quiescence, as CockroachDB's): nothing is in
    /// flight and the nodes it depends on are up, so no heartbeat or election is needed.
    /// - Leader: every follower has every entry and knows it is committed, and every voter's
    ///   node is connected.
    /// - Follower: it knows a leader on another node that is connected, has everything it
    ///   knows is committed, and has not heard from it for over two heartbeat intervals (a
    ///   leader that still ticks sends heartbeats, so its followers keep their election
    ///   clocks running and notice its death within the election timeout).
    ///
    /// A follower whose leader's node goes down (the transport's `PeerDown`, within its idle
    /// timeout) ticks again and elects; a proposal makes the leader tick again.
    pub fn quiescent(&self) -> bool {
        if !self.may_quiesce.get() {
            return false;
        }
        let core = self.core.borrow();
        if core.is_leader() {
            return core.is_quiescent()
                && self.placement.replicas.iter().all(|&n| self.net.is_up(n));
        }
        match core.leader() {
            Some(l) => {
                let l = NodeId(l as u32);
                l != self.node
                    && self.silent_ticks.get() > 2 * self.cfg.heartbeat_ticks as u64 + 1
                    && self.net.is_up(l)
                    && core.commit_index() == core.last_index()
                    && core.high_watermark() == core.log_end()
            }
            None => false,
        }
    }

    /// Keeps this group ticking even when idle (the cluster metadata group: its leader's
    /// death must be noticed within the election timeout, since every leader report waits
    /// on it).
    pub fn never_quiesce(&self) {
        self.may_quiesce.set(false);
    }

    /// Consecutive ticks skipped because the group was quiescent.
    pub fn quiet_ticks(&self) -> u64 {
        self.quiet_ticks.get()
    }

    /// Leader: records which voters have everything now.
    fn note_caught_up(&self) {
        let progress = self.core.borrow().progress();
        if progress.is_empty() {
            return;
        }
        let now = Instant::now();
        // Caught up: it has everything the leader had one tick ago (under a steady load a
        // follower is rarely at the very last entry at the instant of a tick; Kafka compares
        // with the leader's end as of the follower's fetch).
        let prev = self.prev_last_index.get();
        let mut c = self.caught_up.borrow_mut();
        for p in &progress {
            let target = prev.min(p.last_index);
            if p.active && p.matched >= target && self.net.is_up(NodeId(p.id as u32)) {
                c.insert(p.id, now);
            }
        }
        self.prev_last_index.set(progress[0].last_index);
    }

    /// Leader only (empty elsewhere): every replica in placement order with the log end it is
    /// known to hold and whether it is in sync: within `lag_max` (Kafka's
    /// `replica.lag.time.max.ms`) it was heard from and had every entry the leader had one tick
    /// before. The leader is always in sync.
    pub fn replicas(&self, lag_max: Duration) -> Vec<ReplicaView> {
        let progress: Vec<VoterProgress> = self.core.borrow().progress();
        if progress.is_empty() {
            return Vec::new();
        }
        let now = Instant::now();
        let caught_up = self.caught_up.borrow();
        self.placement
            .replicas
            .iter()
            .map(|&node| {
                let id = u64::from(node.0);
                let p = progress.iter().find(|p| p.id == id);
                let in_sync = node == self.node
                    || caught_up
                        .get(&id)
                        .is_some_and(|&t| now.duration_since(t) <= lag_max);
                ReplicaView {
                    node,
                    log_end: p.and_then(|p| p.end_offset).map(Offset),
                    in_sync,
                }
            })
            .collect()
    }

    /// A message from `from` for this group.
    pub fn receive(self: &Rc<Self>, from: NodeId, msg: WireMessage) {
        if self.closed.get() || self.failed.get() {
            return;
        }
        match msg {
            WireMessage::Raft(m) => {
                if self.core.borrow().leader() == Some(u64::from(from.0)) {
                    self.silent_ticks.set(0);
                }
                let r = self.core.borrow_mut().step(m);
                if let Err(e) = &r {
                    if !e.is_fatal() {
                        tracing::debug!(group = %self.id, %from, error = %e, "message refused");
                        self.drain();
                        return;
                    }
                }
                self.after(r);
            }
            WireMessage::FetchLog(req) => {
                glommio::spawn_local(self.clone().serve_fetch(from, req)).detach();
            }
            WireMessage::FetchLogReply(reply) => self.net.fetch_replied(reply),
            // Metadata proposals are taken by the shard's forward handler before the groups.
            WireMessage::Propose(_) => {}
        }
    }

    /// Proposes `batch` and waits for its outcome per `acks`.
    pub async fn propose(
        self: &Rc<Self>,
        batch: BytesMut,
        acks: Acks,
    ) -> Result<Proposal, ProposeError> {
        let (p, promise) = self.submit(batch, acks)?;
        match promise.await {
            Ok(Ok(())) => Ok(p),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ProposeError::Failed("the replica stopped".into())),
        }
    }

    /// Proposes `batch` at once (its offsets are known on return) and hands back the wait for
    /// its outcome per `acks`: several batches proposed in a row keep their order.
    pub fn submit(self: &Rc<Self>, batch: BytesMut, acks: Acks) -> Result<Submitted, ProposeError> {
        if self.failed.get() {
            return Err(ProposeError::Failed("the replica is restarting".into()));
        }
        let proposed = self.core.borrow_mut().propose(batch, acks);
        let p = match proposed {
            Ok(p) => p,
            Err(e) => {
                self.drain();
                return Err(e);
            }
        };
        let (promise, resolver) = promise();
        self.waiters
            .borrow_mut()
            .insert((p.index, p.term), resolver);
        self.drain();
        Ok((p, promise))
    }

    fn after(self: &Rc<Self>, r: Result<(), ReplicaError>) {
        if let Err(e) = r {
            if e.is_fatal() {
                self.fail(&e.to_string());
                return;
            }
            tracing::debug!(group = %self.id, error = %e, "replica call failed");
        }
        self.drain();
    }

    /// Performs every action the core has.
    fn drain(self: &Rc<Self>) {
        loop {
            let next = self.core.borrow_mut().next_action();
            let Some(action) = next else {
                break;
            };
            match action {
                Action::Send(m) => {
                    let to = NodeId(m.to as u32);
                    match self.shard_of(to) {
                        Some(shard) => self.net.send(to, shard, self.id, &WireMessage::Raft(m)),
                        None => tracing::debug!(group = %self.id, %to, "no replica there"),
                    }
                }
                Action::Persist(p) => {
                    self.queue.borrow_mut().push_back(p);
                    self.wake.notify();
                }
                Action::ReadLog(r) => {
                    glommio::spawn_local(self.clone().read_log(r)).detach();
                }
                Action::Leader { leader, term } => {
                    let view = LeaderView {
                        leader: leader.map(|l| NodeId(l as u32)),
                        term,
                    };
                    self.leader.set(view);
                    if view.leader == Some(self.node) {
                        // A new leader counts every replica as in sync until it has had
                        // `lag_max` to catch up (as Kafka keeps the ISR across an election).
                        let now = Instant::now();
                        let mut c = self.caught_up.borrow_mut();
                        c.clear();
                        for n in &self.placement.replicas {
                            c.insert(u64::from(n.0), now);
                        }
                    }
                    self.changed.notify();
                    if let Some(hook) = &self.on_leader {
                        hook(self, view);
                    }
                }
                Action::HighWatermark(hw) => {
                    self.log.set_replication_bound(Some(Offset(hw)));
                    self.changed.notify();
                }
                Action::Completed {
                    index,
                    term,
                    result,
                } => {
                    if let Some(r) = self.waiters.borrow_mut().remove(&(index, term)) {
                        r.resolve(result);
                    }
                }
            }
        }
    }

    // ---- persistence ----

    async fn persist_worker(self: Rc<Self>) {
        loop {
            let listen = self.wake.listen();
            if self.closed.get() {
                return;
            }
            let work = self.take_work();
            if work.is_empty() {
                listen.await;
                continue;
            }
            let ids: Vec<u64> = work.iter().map(|p| p.id).collect();
            self.busy.set(true);
            let done = self.perform(work).await;
            self.busy.set(false);
            match done {
                Ok(()) => {
                    if self.failed.get() || self.closed.get() {
                        continue;
                    }
                    for id in ids {
                        let r = self.core.borrow_mut().persisted(id);
                        self.after(r);
                        if self.failed.get() {
                            break;
                        }
                    }
                }
                Err(e) => self.fail(&e),
            }
        }
    }

    /// The next work to perform: the queue's first, and the pure appends right after it when it
    /// is one too (they are written and synced together).
    fn take_work(&self) -> Vec<Persist> {
        let mut q = self.queue.borrow_mut();
        let Some(first) = q.pop_front() else {
            return Vec::new();
        };
        let pure = |p: &Persist| p.truncate_to.is_none() && p.catch_up.is_none();
        let mut bytes: usize = first.batches.iter().map(Bytes::len).sum();
        let mergeable = pure(&first) && first.state.is_none();
        let mut out = vec![first];
        if !mergeable {
            return out;
        }
        while let Some(next) = q.front() {
            let more: usize = next.batches.iter().map(Bytes::len).sum();
            if !pure(next) || bytes + more > MERGE_BYTES_MAX {
                break;
            }
            bytes += more;
            let next = q.pop_front().expect("front seen");
            let stop = next.state.is_some();
            out.push(next);
            if stop {
                // A state write ends a round: it must follow the appends before it.
                break;
            }
        }
        out
    }

    /// Performs `work` (in order: truncation, catch-up, appends, state) and makes it durable.
    async fn perform(&self, work: Vec<Persist>) -> Result<(), String> {
        let first = &work[0];
        if let Some(t) = first.truncate_to {
            if self.log.log_end_offset().0 > t {
                self.log
                    .truncate_to(Offset(t))
                    .await
                    .map_err(|e| format!("truncating to offset {t}: {e}"))?;
            }
        }
        if let Some(c) = &first.catch_up {
            self.catch_up(c).await?;
        }
        let mut batches = Vec::new();
        let mut state = None;
        for p in &work {
            batches.extend(p.batches.iter().cloned());
            if p.state.is_some() {
                state = p.state.clone();
            }
        }
        if !batches.is_empty() {
            let durability = self.log.config().durability;
            self.log
                .append_replicated(batches, durability, None)
                .await
                .map_err(|e| format!("appending replicated batches: {e}"))?;
        }
        if let Some(s) = state {
            replica_state::store(&self.dir, &to_file(&s))
                .await
                .map_err(|e| format!("writing the replica state: {e}"))?;
        }
        Ok(())
    }

    /// Fetches the log from other replicas from min(`c.from_offset`, log end) up to
    /// `c.to_offset`: a local batch equal to the fetched one (offsets, epoch, CRC) is kept, the
    /// log is cut at the first that differs and the fetched batches appended as they are; at the
    /// end the log is cut to `c.to_offset`.
    async fn catch_up(&self, c: &CatchUp) -> Result<(), String> {
        let mut at = c.from_offset.min(self.log.log_end_offset().0);
        while at < c.to_offset {
            if self.closed.get() {
                return Err("closed during a catch-up".into());
            }
            let mut progressed = false;
            for &src in &c.sources {
                let src = NodeId(src as u32);
                let Some(shard) = self.shard_of(src) else {
                    continue;
                };
                let Some(reply) = self
                    .net
                    .fetch_log(
                        src,
                        shard,
                        self.id,
                        at,
                        self.cfg.catch_up_bytes_max,
                        FETCH_TIMEOUT,
                    )
                    .await
                else {
                    continue;
                };
                if reply.status != FetchLogStatus::Ok {
                    continue;
                }
                let checked = self
                    .core
                    .borrow()
                    .check_fetched(at, c.to_offset, &reply.batches);
                let metas = match checked {
                    Ok(m) if !m.is_empty() => m,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(group = %self.id, %src, error = %e,
                            "refused a catch-up answer");
                        continue;
                    }
                };
                let mut rest = reply.batches.clone();
                let mut fetched = Vec::with_capacity(metas.len());
                for m in &metas {
                    fetched.push((*m, rest.split_to(m.bytes as usize)));
                }
                self.store_fetched(fetched).await?;
                at = metas.last().expect("non-empty").end_offset();
                progressed = true;
                break;
            }
            if !progressed {
                glommio::timer::sleep(CATCH_UP_BACKOFF).await;
            }
        }
        if self.log.log_end_offset().0 > c.to_offset {
            self.log
                .truncate_to(Offset(c.to_offset))
                .await
                .map_err(|e| format!("cutting a catch-up to offset {}: {e}", c.to_offset))?;
        }
        Ok(())
    }

    /// Keeps the local batches equal to the fetched ones; from the first that differs (or is
    /// missing) the log is cut and the fetched batches appended as they are.
    async fn store_fetched(&self, fetched: Vec<(BatchMeta, Bytes)>) -> Result<(), String> {
        let mut append = Vec::new();
        for (m, bytes) in fetched {
            if append.is_empty() && m.base_offset < self.log.log_end_offset().0 {
                let local = self
                    .log
                    .read_upto(Offset(m.base_offset), 1, Offset(m.end_offset()))
                    .await
                    .ok()
                    .and_then(|r| r.batches.into_iter().next());
                if local.as_deref() == Some(&bytes[..]) {
                    continue;
                }
                self.log
                    .truncate_to(Offset(m.base_offset))
                    .await
                    .map_err(|e| {
                        format!("cutting at offset {} for a catch-up: {e}", m.base_offset)
                    })?;
            }
            append.push(bytes);
        }
        if !append.is_empty() {
            let durability = self.log.config().durability;
            self.log
                .append_replicated(append, durability, None)
                .await
                .map_err(|e| format!("appending caught-up batches: {e}"))?;
        }
        Ok(())
    }

    async fn read_log(self: Rc<Self>, r: ReadLog) {
        let read = self
            .log
            .read_upto(
                Offset(r.from_offset),
                r.max_bytes as usize,
                Offset(r.to_offset),
            )
            .await;
        let data = match read {
            Ok(b) if !b.batches.is_empty() => Some(concat(&b.batches)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(group = %self.id, error = %e, "log read-back for a follower failed");
                None
            }
        };
        if self.closed.get() || self.failed.get() {
            return;
        }
        let res = self.core.borrow_mut().log_read(r.id, data);
        self.after(res);
    }

    /// Answers another replica's `FetchLog` from this log, below the high watermark.
    async fn serve_fetch(self: Rc<Self>, from: NodeId, req: FetchLog) {
        let range = self.core.borrow().serve_fetch(req.from_offset);
        let hw = self.core.borrow().high_watermark();
        let (status, batches) = match range {
            None => (FetchLogStatus::NotAvailable, Bytes::new()),
            Some(range) => match self
                .log
                .read_upto(
                    Offset(range.start),
                    req.max_bytes as usize,
                    Offset(range.end),
                )
                .await
            {
                Ok(b) if b.batches.is_empty() => (FetchLogStatus::NotAvailable, Bytes::new()),
                Ok(b) => (FetchLogStatus::Ok, concat(&b.batches)),
                Err(LogError::OffsetOutOfRange { .. }) => (FetchLogStatus::BadOffset, Bytes::new()),
                Err(_) => (FetchLogStatus::ReadFailed, Bytes::new()),
            },
        };
        if let Some(shard) = self.shard_of(from) {
            let reply = FetchLogReply {
                request_id: req.request_id,
                from_offset: req.from_offset,
                high_watermark: hw,
                status,
                batches,
            };
            self.net
                .send(from, shard, self.id, &WireMessage::FetchLogReply(reply));
        }
    }

    // ---- failure and restart ----

    fn fail(&self, why: &str) {
        if self.failed.replace(true) {
            return;
        }
        tracing::error!(group = %self.id, tp = %self.tp, error = %why,
            "replica failed; restarting it from disk");
        self.queue.borrow_mut().clear();
        for (_, r) in self.waiters.borrow_mut().drain() {
            r.resolve(Err(ProposeError::Failed(why.to_string())));
        }
        self.changed.notify();
    }

    /// Rebuilds the core from the state file and the log once the worker is idle. A log that
    /// refuses appends (a failed sync poisons it) keeps the group failed; reopening it is the
    /// shard's job.
    async fn restart(self: Rc<Self>) {
        if !self.failed.get() || self.closed.get() || self.busy.get() {
            return;
        }
        self.queue.borrow_mut().clear();
        match load_core(&self.cfg, self.id, self.node, &self.placement, &self.log).await {
            Ok(core) => {
                *self.core.borrow_mut() = core;
                self.failed.set(false);
                tracing::info!(group = %self.id, tp = %self.tp, "replica restarted");
                self.drain();
            }
            Err(e) => {
                tracing::warn!(group = %self.id, error = %e, "replica restart failed; retrying");
            }
        }
    }

    /// Stops the group: its worker ends, waiting produces fail.
    pub fn close(&self) {
        self.closed.set(true);
        self.wake.notify();
        for (_, r) in self.waiters.borrow_mut().drain() {
            r.resolve(Err(ProposeError::Failed("the replica closed".into())));
        }
    }
}

/// One buffer of whole batches.
fn concat(batches: &[Bytes]) -> Bytes {
    if batches.len() == 1 {
        return batches[0].clone();
    }
    let mut out = BytesMut::with_capacity(batches.iter().map(Bytes::len).sum());
    for b in batches {
        out.extend_from_slice(b);
    }
    out.freeze()
}

/// Whether `batch` holds the control bit (only replication writes control batches).
pub fn is_control(batch: &[u8]) -> bool {
    record::BatchHeader::parse(batch).is_ok_and(|h| h.is_control())
}
