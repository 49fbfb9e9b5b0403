//! Tests that pin down how `raft` 0.7.0 (crates.io, tikv/raft-rs tag v0.7.0 =
//! 10c6e9db6792b85c81784e44fc278f895d5f0ab0) behaves with respect to the fixes
//! that landed on raft-rs master after that release, and the workarounds a
//! RawNode driver must apply while we stay on 0.7.0.
//!
//! Self-contained: needs only `raft = { version = "=0.7.0", default-features = false,
//! features = ["protobuf-codec"] }` and `slog = "2"` (a dependency of the broker).
//! The write-up (each fix, its verdict for Quill, the driver rules) is in docs/REPLICATION.md,
//! "raft-rs 0.7.0 and the fixes on master".
//!
//! Naming: `bug_530_*` / `bug_557_*` assert the 0.7.0 (buggy) behaviour, so they
//! FAIL once we move to a raft build containing the fix -- intentional: it tells us
//! the workaround can be retired (checked against raft-rs master deb3ba3: exactly
//! these four fail there). `bug_552_*` asserts 0.7.0's default forwarding, which is
//! also master's default (the new flag is opt-in). `workaround_*`, `rule_*` and
//! `unaffected_*` tests pass on 0.7.0 and on master.

// raft-rs messages and entries are protobuf structs, built field by field as raft-rs's own tests do.
#![allow(clippy::field_reassign_with_default)]

use std::collections::VecDeque;
use std::sync::Mutex;

use raft::prelude::*;
use raft::storage::MemStorage;
use raft::{
    Error as RaftError, GetEntriesContext, ProgressState, StateRole, StorageError, INVALID_INDEX,
};
use slog::{o, Discard, Logger};

// ---------------------------------------------------------------------------
// Shared harness
// ---------------------------------------------------------------------------

fn logger() -> Logger {
    Logger::root(Discard, o!())
}

/// The broker's configuration shape: fixed voters, pre_vote + check_quorum.
fn broker_config(id: u64) -> Config {
    Config {
        id,
        election_tick: 10,
        heartbeat_tick: 3,
        pre_vote: true,
        check_quorum: true,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        ..Default::default()
    }
}

fn new_mem_storage(voters: &[u64]) -> MemStorage {
    MemStorage::new_with_conf_state(ConfState::from((voters.to_vec(), vec![])))
}

fn new_node(id: u64, voters: &[u64]) -> RawNode<MemStorage> {
    RawNode::new(&broker_config(id), new_mem_storage(voters), &logger()).unwrap()
}

/// Drives one node the way the broker does (async ready): `ready()` ->
/// write snapshot/entries/hard state -> `advance_append_async` ->
/// `on_persist_ready` -> apply committed entries -> `advance_apply_to`.
/// Persistence is synchronous here, which is a legal special case of async.
/// Returns every message the node wants to send (leader messages and
/// persisted messages alike, in emission order).
fn pump(node: &mut RawNode<MemStorage>) -> Vec<Message> {
    let mut out = Vec::new();
    while node.has_ready() {
        let mut rd = node.ready();
        out.extend(rd.take_messages());
        let store = node.store().clone();
        if !rd.snapshot().is_empty() {
            store.wl().apply_snapshot(rd.snapshot().clone()).unwrap();
        }
        store.wl().append(rd.entries()).unwrap();
        if let Some(hs) = rd.hs() {
            store.wl().set_hardstate(hs.clone());
        }
        let committed = rd.take_committed_entries();
        // persisted messages may only go out after the write is durable
        out.extend(rd.take_persisted_messages());
        let number = rd.number();
        node.advance_append_async(rd);
        node.on_persist_ready(number);
        if let Some(last) = committed.last() {
            node.advance_apply_to(last.index);
        }
    }
    out
}

/// Delivers messages until the cluster is quiescent. `hold` may keep a message
/// back (returns true = do not deliver now); held messages are returned.
fn run(
    nodes: &mut [RawNode<MemStorage>],
    initial: Vec<Message>,
    mut hold: impl FnMut(&Message) -> bool,
) -> Vec<Message> {
    let mut queue: VecDeque<Message> = initial.into();
    let mut held = Vec::new();
    for n in nodes.iter_mut() {
        queue.extend(pump(n));
    }
    while let Some(m) = queue.pop_front() {
        if hold(&m) {
            held.push(m);
            continue;
        }
        let to = m.to as usize - 1;
        let _ = nodes[to].step(m);
        queue.extend(pump(&mut nodes[to]));
    }
    held
}

fn elect_node_1(voters: &[u64]) -> Vec<RawNode<MemStorage>> {
    let mut nodes: Vec<_> = voters.iter().map(|&id| new_node(id, voters)).collect();
    nodes[0].campaign().unwrap();
    let held = run(&mut nodes, vec![], |_| false);
    assert!(held.is_empty());
    assert_eq!(nodes[0].raft.state, StateRole::Leader);
    nodes
}

fn is_append_to(m: &Message, to: u64) -> bool {
    m.get_msg_type() == MessageType::MsgAppend && m.to == to
}

// ---------------------------------------------------------------------------
// Fix 1: 2fbeee5 "raft: next index shall be larger than match index (#557)"
//        (issue tikv/raft-rs#555, port of etcd-io/raft#149)
//
// Progress::maybe_decr_to in Probe state sets next_idx = min(rejected, hint+1)
// without clamping it to matched+1. A rejection that was overtaken by a later
// successful append (message reordering) and arrives after the leader has put the
// follower back into Probe (e.g. report_unreachable) rewinds next_idx to <= matched.
// The leader then resends already-acknowledged entries, and if that older part of
// the log was compacted it sends a (needless) snapshot.
// ---------------------------------------------------------------------------

/// Workaround for #557 on 0.7.0: before stepping a message on the leader, drop
/// a non-snapshot-request MsgAppendResponse rejection whose rejected index is
/// <= the follower's acknowledged `matched`. Such a rejection is stale by
/// construction (the follower has since acknowledged that index); raft 0.7.0
/// already ignores exactly these in Replicate state, this applies the same rule
/// in Probe state. Upstream instead clamps next_idx to matched+1, with the same
/// net effect.
fn is_stale_append_reject<T: Storage>(node: &RawNode<T>, m: &Message) -> bool {
    m.get_msg_type() == MessageType::MsgAppendResponse
        && m.reject
        && m.request_snapshot == INVALID_INDEX
        && node.raft.state == StateRole::Leader
        && node
            .raft
            .prs()
            .get(m.from)
            .is_some_and(|pr| m.index <= pr.matched)
}

fn step_filtered<T: Storage>(node: &mut RawNode<T>, m: Message) -> raft::Result<()> {
    if is_stale_append_reject(node, &m) {
        return Ok(()); // drop it, as upstream effectively does
    }
    node.step(m)
}

struct ReorderOutcome {
    matched: u64,
    next_idx: u64,
    state: ProgressState,
    /// messages n1 sent to n2 right after receiving the stale rejection
    resend: Vec<Message>,
}

/// Two voters {1,2}. n1 leads; its progress for n2 is Replicate.
/// 1. n1 proposes 10 entries -> batch A of MsgAppend (held back)
/// 2. n1 proposes 1 more     -> MsgAppend B (held back)
/// 3. network reorders: n2 gets B first -> rejects (R_B, delayed), then batch A -> accepts
/// 4. n1 gets the accepts -> matched = last index of A
/// 5. transport reports n2 unreachable -> Probe, next = matched+1
/// 6. optionally n1 compacts its log up to `matched`
/// 7. the delayed rejection R_B finally arrives at n1.
fn reorder_scenario(compact: bool, filter_stale: bool) -> ReorderOutcome {
    let mut nodes = elect_node_1(&[1, 2]);
    assert_eq!(
        nodes[0].raft.prs().get(2).unwrap().state,
        ProgressState::Replicate
    );

    for i in 0..10u8 {
        nodes[0].propose(vec![], vec![i; 16]).unwrap();
    }
    let batch_a = pump(&mut nodes[0]);
    assert!(batch_a.iter().all(|m| is_append_to(m, 2)));
    nodes[0].propose(vec![], vec![0xff; 16]).unwrap();
    let msg_b = pump(&mut nodes[0]);
    assert_eq!(msg_b.len(), 1);
    assert!(is_append_to(&msg_b[0], 2));

    // n2 receives B first: it lacks B's predecessor, so it rejects.
    nodes[1].step(msg_b[0].clone()).unwrap();
    let reject_b = pump(&mut nodes[1]);
    assert_eq!(reject_b.len(), 1);
    assert!(reject_b[0].reject);
    let reject_b = reject_b[0].clone();

    // n2 now receives batch A and accepts every message of it.
    let mut accepts = Vec::new();
    for m in batch_a {
        nodes[1].step(m).unwrap();
        accepts.extend(pump(&mut nodes[1]));
    }
    assert!(accepts.iter().all(|m| !m.reject));

    // n1 processes the accepts; the MsgAppends it sends in reaction are "in flight"
    // and simply lost (that is what makes the transport report n2 unreachable).
    for m in accepts {
        step_or_filter(&mut nodes[0], m, filter_stale);
    }
    let _lost = pump(&mut nodes[0]);
    let matched = nodes[0].raft.prs().get(2).unwrap().matched;
    assert_eq!(
        matched, reject_b.index,
        "R_B rejects exactly the index n2 has since matched"
    );

    nodes[0].report_unreachable(2);
    assert_eq!(
        nodes[0].raft.prs().get(2).unwrap().state,
        ProgressState::Probe
    );
    let _ = pump(&mut nodes[0]);

    if compact {
        // the broker truncates its raft log once entries are committed + applied
        let commit = nodes[0].raft.raft_log.committed;
        assert_eq!(commit, matched);
        nodes[0].store().wl().compact(commit).unwrap();
    }

    step_or_filter(&mut nodes[0], reject_b, filter_stale);
    let resend = pump(&mut nodes[0])
        .into_iter()
        .filter(|m| m.to == 2)
        .collect();
    let pr = nodes[0].raft.prs().get(2).unwrap();
    ReorderOutcome {
        matched,
        next_idx: pr.next_idx,
        state: pr.state,
        resend,
    }
}

fn step_or_filter(node: &mut RawNode<MemStorage>, m: Message, filter_stale: bool) {
    if filter_stale {
        step_filtered(node, m).unwrap();
    } else {
        node.step(m).unwrap();
    }
}

#[test]
fn bug_557_stale_reject_rewinds_next_below_matched() {
    let out = reorder_scenario(false, false);
    eprintln!(
        "#557 matched={} next_idx={} resend={:?}",
        out.matched,
        out.next_idx,
        out.resend
            .iter()
            .map(|m| (m.get_msg_type(), m.index, m.entries.len()))
            .collect::<Vec<_>>()
    );
    // raft 0.7.0: next_idx drops far below matched (upstream fix keeps it at matched+1)
    assert!(
        out.next_idx <= out.matched,
        "next_idx {} should have been rewound to <= matched {} on 0.7.0",
        out.next_idx,
        out.matched
    );
    // and the leader re-sends entries the follower already acknowledged
    let app: Vec<_> = out
        .resend
        .iter()
        .filter(|m| m.get_msg_type() == MessageType::MsgAppend)
        .collect();
    assert_eq!(app.len(), 1);
    assert!(app[0].index < out.matched);
    assert!(app[0].entries.len() as u64 > 1);
}

#[test]
fn bug_557_stale_reject_after_compaction_sends_needless_snapshot() {
    let out = reorder_scenario(true, false);
    // the rewound next_idx points into the compacted prefix, so 0.7.0 falls back
    // to a snapshot for a follower that is fully caught up.
    assert_eq!(out.state, ProgressState::Snapshot);
    assert!(out
        .resend
        .iter()
        .any(|m| m.get_msg_type() == MessageType::MsgSnapshot));
}

#[test]
fn workaround_557_drop_stale_rejects_keeps_next_above_matched() {
    for compact in [false, true] {
        let out = reorder_scenario(compact, true);
        assert_eq!(out.next_idx, out.matched + 1, "compact={compact}");
        assert_eq!(out.state, ProgressState::Probe, "compact={compact}");
        assert!(
            out.resend
                .iter()
                .all(|m| m.get_msg_type() != MessageType::MsgSnapshot),
            "compact={compact}"
        );
    }
}

#[test]
fn workaround_557_filter_never_drops_live_rejections() {
    // A follower that really lacks entries (fresh leader, follower behind) must
    // still be probed backwards: the filter only fires for index <= matched.
    let mut nodes = elect_node_1(&[1, 2, 3]);
    // isolate n3, write entries through n1+n2
    for i in 0..5u8 {
        nodes[0].propose(vec![], vec![i]).unwrap();
    }
    let held = run(&mut nodes, vec![], |m| m.to == 3 || m.from == 3);
    drop(held);
    let last = nodes[0].raft.raft_log.last_index();
    let pr3 = nodes[0].raft.prs().get(3).unwrap().clone();
    assert!(pr3.matched < last);
    // reconnect n3: everything flows through the filter on the leader side.
    let mut queue: VecDeque<Message> = VecDeque::new();
    nodes[0].raft.send_append(3);
    queue.extend(pump(&mut nodes[0]));
    let mut dropped = 0;
    let mut live_rejects = 0;
    while let Some(m) = queue.pop_front() {
        let to = m.to as usize - 1;
        if to == 0 && m.get_msg_type() == MessageType::MsgAppendResponse && m.reject {
            live_rejects += 1;
        }
        if to == 0 && is_stale_append_reject(&nodes[0], &m) {
            dropped += 1;
            continue;
        }
        let _ = nodes[to].step(m);
        queue.extend(pump(&mut nodes[to]));
    }
    assert!(live_rejects >= 1, "scenario must exercise a real rejection");
    assert_eq!(dropped, 0);
    assert_eq!(nodes[2].raft.raft_log.last_index(), last);
    assert_eq!(nodes[0].raft.prs().get(3).unwrap().matched, last);
}

// ---------------------------------------------------------------------------
// Fix 2: f60fb9e "raft: paginate the unapplied config changes scan (#530)"
//        (tikv/tikv#15770 OOM, port of etcd-io/raft#32)
//
// Before campaigning (hup: election timeout, campaign(), MsgTimeoutNow -- with
// pre_vote this is every PreCandidate attempt) and when a (pre)candidate
// fast-forwards its commit from a vote message's commit/commit_term
// (maybe_commit_by_vote), 0.7.0 reads ALL committed-but-unapplied entries in one
// `Storage::entries(lo, hi, max_size = None, ctx)` call (ctx.can_async() ==
// false) just to look for conf-change entries. Memory is unbounded in the apply
// backlog (e.g. after a restart with `Config::applied` far behind commit).
// Upstream pages this scan by `max_committed_size_per_ready`.
// ---------------------------------------------------------------------------

#[derive(Default)]
struct ScanStats {
    /// Every synchronous (ctx.can_async() == false) read:
    /// (lo, hi, max_size passed by raft, entries returned, payload bytes).
    sync_reads: Vec<(u64, u64, Option<u64>, usize, u64)>,
}

/// A storage wrapper like the broker's: it records the un-paged scans and can
/// optionally apply the 0.7.0 workaround (cap them).
struct ScanProbeStorage {
    mem: MemStorage,
    /// Workaround: byte budget for reads with max_size == None && !can_async().
    cap_unbounded_scan: Option<u64>,
    /// Misbehaviour used to demonstrate a rule: answer every non-async read with
    /// LogTemporarilyUnavailable.
    async_even_when_not_allowed: bool,
    stats: Mutex<ScanStats>,
}

impl ScanProbeStorage {
    fn new(mem: MemStorage, cap_unbounded_scan: Option<u64>) -> Self {
        ScanProbeStorage {
            mem,
            cap_unbounded_scan,
            async_even_when_not_allowed: false,
            stats: Mutex::default(),
        }
    }
}

impl Storage for ScanProbeStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        if self.async_even_when_not_allowed && !context.can_async() {
            return Err(RaftError::Store(StorageError::LogTemporarilyUnavailable));
        }
        if context.can_async() {
            return self.mem.entries(low, high, max_size, context);
        }
        // THE WORKAROUND: in raft 0.7.0 only the conf-change scans (hup and
        // maybe_commit_by_vote) call Storage::entries with max_size == None
        // (GenReady passes Some(max_committed_size_per_ready); SendAppend passes
        // Some(max_size_per_msg) and is async-capable). Returning a short prefix is
        // legal: raft treats a short answer as "size limited".
        let limit = match max_size {
            None => self.cap_unbounded_scan,
            some => some,
        };
        let ents = self.mem.entries(low, high, limit, context)?;
        let bytes = ents.iter().map(|e| e.data.len() as u64).sum();
        self.stats
            .lock()
            .unwrap()
            .sync_reads
            .push((low, high, max_size, ents.len(), bytes));
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        self.mem.snapshot(request_index, to)
    }
}

const BACKLOG: u64 = 2000;
const ENTRY_BYTES: usize = 1024;
const PAGE: u64 = 64 * 1024;

/// A restarted follower of {1,2,3}: entries 1..=BACKLOG are committed (HardState)
/// but none applied (Config::applied = 0). Optionally the last entry is a conf change.
fn restarted_follower(cap: Option<u64>, last_is_conf_change: bool) -> RawNode<ScanProbeStorage> {
    let mem = new_mem_storage(&[1, 2, 3]);
    let mut ents = Vec::new();
    for i in 1..=BACKLOG {
        let mut e = Entry::default();
        e.index = i;
        e.term = 1;
        e.data = vec![7u8; ENTRY_BYTES].into();
        if last_is_conf_change && i == BACKLOG {
            e.set_entry_type(EntryType::EntryConfChange);
            e.data = Default::default();
        }
        ents.push(e);
    }
    mem.wl().append(&ents).unwrap();
    let mut hs = HardState::default();
    hs.term = 1;
    hs.commit = BACKLOG;
    mem.wl().set_hardstate(hs);

    let mut cfg = broker_config(1);
    cfg.applied = 0;
    cfg.max_committed_size_per_ready = PAGE; // the broker's apply page size
    RawNode::new(&cfg, ScanProbeStorage::new(mem, cap), &logger()).unwrap()
}

fn tick_until_not_follower<T: Storage>(node: &mut RawNode<T>) {
    for _ in 0..(2 * node.raft.election_timeout() + 1) {
        node.tick();
        if node.raft.state != StateRole::Follower {
            return;
        }
    }
}

#[test]
fn bug_530_hup_reads_whole_unapplied_backlog_in_one_call() {
    let mut node = restarted_follower(None, false);
    tick_until_not_follower(&mut node);
    assert_eq!(node.raft.state, StateRole::PreCandidate);

    let stats = node.store().stats.lock().unwrap();
    let (lo, hi, max_size, n, bytes) = *stats
        .sync_reads
        .iter()
        .max_by_key(|c| c.4)
        .expect("hup scans the unapplied entries");
    eprintln!("#530 scan [{lo},{hi}) max_size={max_size:?} -> {n} entries, {bytes} bytes");
    assert_eq!((lo, hi), (1, BACKLOG + 1));
    assert_eq!(max_size, None);
    assert_eq!(n as u64, BACKLOG);
    // ~2 MiB materialised at once, ignoring max_committed_size_per_ready (64 KiB);
    // upstream master would page this scan by 64 KiB.
    assert!(bytes > 30 * PAGE, "bytes = {bytes}");
}

#[test]
fn workaround_530_cap_unbounded_scans_in_storage() {
    let mut node = restarted_follower(Some(PAGE), false);
    tick_until_not_follower(&mut node);
    // Election still starts (pre-vote goes out to both peers) ...
    assert_eq!(node.raft.state, StateRole::PreCandidate);
    let prevotes: Vec<_> = node
        .raft
        .msgs
        .iter()
        .filter(|m| m.get_msg_type() == MessageType::MsgRequestPreVote)
        .map(|m| m.to)
        .collect();
    assert_eq!(prevotes, vec![2, 3]);
    // ... and no scan read more than one page.
    let stats = node.store().stats.lock().unwrap();
    assert!(!stats.sync_reads.is_empty());
    assert!(
        stats.sync_reads.iter().all(|c| c.4 <= PAGE),
        "{:?}",
        stats.sync_reads
    );
}

/// 0.7.0-specific: documents why the cap is restricted to fixed-voter clusters.
/// (On master the cap is inert because raft passes Some(page) itself.)
#[test]
fn bug_530_capped_scan_would_miss_pending_conf_change() {
    // Without the cap, 0.7.0 sees the pending conf change and refuses to campaign.
    let mut uncapped = restarted_follower(None, true);
    tick_until_not_follower(&mut uncapped);
    assert_eq!(uncapped.raft.state, StateRole::Follower);

    // With the cap it never looks that far and campaigns anyway. Harmless for the
    // broker (fixed voters: no EntryConfChange/EntryConfChangeV2 is ever
    // proposed), but the cap must be removed if conf changes are ever adopted.
    let mut capped = restarted_follower(Some(PAGE), true);
    tick_until_not_follower(&mut capped);
    assert_eq!(capped.raft.state, StateRole::PreCandidate);
}

#[test]
#[should_panic(expected = "LogTemporarilyUnavailable")]
fn rule_async_fetch_only_when_context_can_async() {
    // The conf-change scan (and GenReady) use contexts with can_async() == false.
    // Answering them with LogTemporarilyUnavailable is fatal in 0.7.0 (and on master).
    let mut node = restarted_follower(None, false);
    node.mut_store().async_even_when_not_allowed = true;
    tick_until_not_follower(&mut node);
}

// ---------------------------------------------------------------------------
// Master-only feature: 63aec46 "add disable_proposal_forwarding config params (#552)"
//
// 0.7.0's Config has no `disable_proposal_forwarding`; a follower that knows the
// leader forwards MsgPropose to it and `propose()` returns Ok.
// ---------------------------------------------------------------------------

/// Workaround: what `disable_proposal_forwarding = true` does on master, done by
/// the RawNode driver. (Master returns ProposalDropped from a follower.)
fn propose_no_forward<T: Storage>(node: &mut RawNode<T>, data: Vec<u8>) -> raft::Result<()> {
    if node.raft.state != StateRole::Leader {
        return Err(RaftError::ProposalDropped);
    }
    node.propose(vec![], data)
}

/// Belt and braces for the send path: never put a MsgPropose on the wire.
fn outbound_filter(msgs: Vec<Message>) -> Vec<Message> {
    msgs.into_iter()
        .filter(|m| m.get_msg_type() != MessageType::MsgPropose)
        .collect()
}

#[test]
fn bug_552_follower_forwards_proposals_on_070() {
    let mut nodes = elect_node_1(&[1, 2, 3]);
    let before = nodes[0].raft.raft_log.last_index();
    assert!(nodes[1].propose(vec![], b"from-follower".to_vec()).is_ok());
    let out = pump(&mut nodes[1]);
    assert!(out
        .iter()
        .any(|m| m.get_msg_type() == MessageType::MsgPropose && m.to == 1));
    run(&mut nodes, out, |_| false);
    // the follower's proposal was appended (and committed) by the leader
    assert!(nodes[0].raft.raft_log.last_index() > before);
}

#[test]
fn workaround_552_no_forwarding() {
    let mut nodes = elect_node_1(&[1, 2, 3]);
    let before = nodes[0].raft.raft_log.last_index();
    assert!(matches!(
        propose_no_forward(&mut nodes[1], b"x".to_vec()),
        Err(RaftError::ProposalDropped)
    ));
    // even if someone calls propose() directly, the send path drops the forward
    nodes[1].propose(vec![], b"y".to_vec()).unwrap();
    let out = outbound_filter(pump(&mut nodes[1]));
    run(&mut nodes, out, |_| false);
    assert_eq!(nodes[0].raft.raft_log.last_index(), before);
    // the leader still accepts its own proposals
    propose_no_forward(&mut nodes[0], b"z".to_vec()).unwrap();
    run(&mut nodes, vec![], |_| false);
    assert_eq!(nodes[0].raft.raft_log.last_index(), before + 1);
    assert_eq!(nodes[0].raft.raft_log.committed, before + 1);
}

// ---------------------------------------------------------------------------
// Not applicable: 3cfa667 (#537) + a76fb6e (#543) + 0d01b20 (#561) fix
// "apply committed entries before they are persisted" (max_apply_unpersisted_log_limit),
// a feature that does not exist in 0.7.0. With async ready on 0.7.0, committed
// entries are only handed out once persisted locally (on_persist_ready).
// ---------------------------------------------------------------------------

#[test]
fn unaffected_543_561_async_ready_applies_only_after_on_persist_ready() {
    let mut nodes = elect_node_1(&[1, 2, 3]);
    // Leader proposes; take the Ready and make its entries readable through
    // Storage (required before advance_append_async), but do NOT report them
    // durable yet.
    nodes[0].propose(vec![], b"p".to_vec()).unwrap();
    let mut rd = nodes[0].ready();
    let idx = rd.entries().last().unwrap().index;
    let msgs = rd.take_messages(); // a leader may send before persisting
    nodes[0].store().clone().wl().append(rd.entries()).unwrap();
    let number = rd.number();
    nodes[0].advance_append_async(rd);

    // Both followers persist + ack: quorum reached without the leader's own write.
    let mut acks = Vec::new();
    for m in msgs {
        let to = m.to as usize - 1;
        nodes[to].step(m).unwrap();
        acks.extend(pump(&mut nodes[to]));
    }
    for m in acks.into_iter().filter(|m| m.to == 1) {
        nodes[0].step(m).unwrap();
    }
    assert_eq!(nodes[0].raft.raft_log.committed, idx);
    assert!(nodes[0].raft.raft_log.persisted < idx);

    // Nothing at `idx` is offered for apply while the leader's write is pending.
    // (Readies taken here are not reported persisted: on_persist_ready(n) would
    // implicitly cover the pending ready `number` too.)
    let mut extra = Vec::new();
    while nodes[0].has_ready() {
        let mut rd = nodes[0].ready();
        assert!(rd.take_committed_entries().iter().all(|e| e.index < idx));
        assert!(rd.entries().is_empty());
        if let Some(hs) = rd.hs() {
            nodes[0].store().clone().wl().set_hardstate(hs.clone());
        }
        extra.push(rd.number());
        nodes[0].advance_append_async(rd);
    }

    // The write becomes durable -> now (and only now) the entry is handed out.
    nodes[0].on_persist_ready(extra.last().copied().unwrap_or(number));
    let mut applied = Vec::new();
    while nodes[0].has_ready() {
        let mut rd = nodes[0].ready();
        applied.extend(rd.take_committed_entries());
        let n = rd.number();
        nodes[0].advance_append_async(rd);
        nodes[0].on_persist_ready(n);
    }
    assert_eq!(applied.last().map(|e| e.index), Some(idx));
}

// ---------------------------------------------------------------------------
// Diagnostics only: 1fd05e0 "Add logs for dropping read index msg (#569)".
// Behaviour is identical on 0.7.0 and master: a read index is dropped silently
// (no ReadState, no error) when there is no leader or the leader has not yet
// committed an entry of its term. The driver must time out and retry.
// ---------------------------------------------------------------------------

#[test]
fn rule_569_read_index_can_be_dropped_silently_retry_needed() {
    let voters = [1, 2, 3];
    let mut nodes: Vec<_> = voters.iter().map(|&id| new_node(id, &voters)).collect();
    nodes[0].campaign().unwrap();
    // hold back the leader's first MsgAppend (its empty entry) so it has not
    // committed in its term yet
    let held = run(&mut nodes, vec![], |m| {
        m.get_msg_type() == MessageType::MsgAppend
    });
    assert_eq!(nodes[0].raft.state, StateRole::Leader);
    nodes[0].read_index(b"r1".to_vec());
    let mut rd = nodes[0].ready();
    assert!(
        rd.take_read_states().is_empty(),
        "dropped without any signal"
    );
    let n = rd.number();
    nodes[0].advance_append_async(rd);
    nodes[0].on_persist_ready(n);
    // deliver the held appends -> leader commits its term -> retry succeeds
    run(&mut nodes, held, |_| false);
    nodes[0].read_index(b"r2".to_vec());
    let mut states = Vec::new();
    let mut queue: VecDeque<Message> = VecDeque::new();
    loop {
        while nodes[0].has_ready() {
            let mut rd = nodes[0].ready();
            states.extend(rd.take_read_states());
            queue.extend(rd.take_messages());
            let store = nodes[0].store().clone();
            store.wl().append(rd.entries()).unwrap();
            if let Some(hs) = rd.hs() {
                store.wl().set_hardstate(hs.clone());
            }
            queue.extend(rd.take_persisted_messages());
            let n = rd.number();
            nodes[0].advance_append_async(rd);
            nodes[0].on_persist_ready(n);
        }
        let Some(m) = queue.pop_front() else { break };
        let to = m.to as usize - 1;
        let _ = nodes[to].step(m);
        if to == 0 {
            continue;
        }
        queue.extend(pump(&mut nodes[to]));
    }
    assert_eq!(states.len(), 1);
    assert_eq!(&states[0].request_ctx[..], b"r2");
}

// ---------------------------------------------------------------------------
// Not applicable: 668bed2 "Rollback impl AssertSend (#542)" restores a compile-time
// `Raft<T>: Send` check that 91cd291 (post-0.7.0) had removed; 0.7.0 still has it.
// ---------------------------------------------------------------------------

#[test]
fn unaffected_542_rawnode_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<RawNode<MemStorage>>();
    assert_send::<RawNode<ScanProbeStorage>>();
}
