//! The vocabulary between a replica core and its driver: what is persisted, what the core asks
//! for ([`Action`]) and what a proposal returns.

use bytes::Bytes;
use raft::eraftpb::Message;

use super::error::ProposeError;
use super::window::Anchor;

/// What a replica keeps besides its log, loaded by the driver at start. The driver writes it
/// whenever a [`Persist`] carries one (`Persist::state`), atomically (write and replace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistedState {
    /// Raft's hard state. `term` and `vote` are durable before any message that depends on them
    /// is released; `commit` is written lazily (with the next state write) and clamped at start.
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
    /// The group's voters (node ids >= 1), fixed at creation.
    pub voters: Vec<u64>,
    /// Everything up to the anchor is committed and in the log below `anchor.offset`.
    pub anchor: Anchor,
}

impl PersistedState {
    /// The state of a brand-new replica of a group with these voters: an empty log at offset 0.
    pub fn new(voters: Vec<u64>) -> PersistedState {
        PersistedState {
            term: 0,
            vote: 0,
            commit: 0,
            voters,
            anchor: Anchor::default(),
        }
    }
}

/// How a proposal is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// Once committed (a quorum has it durably) and durable here, at the same term: the high
    /// watermark has passed it.
    All,
    /// Once durable on the leader only.
    Leader,
}

/// An accepted proposal: the batch is entry `index` of `term` at offsets
/// `base_offset..=last_offset`. Its outcome comes later as [`Action::Completed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub index: u64,
    pub term: u64,
    pub base_offset: u64,
    pub last_offset: u64,
}

/// Catch up from other replicas after a Raft snapshot (or a restart that found the log ending
/// before the anchor). The log must end up holding the other replicas' committed batches up to
/// `to_offset`, byte for byte, and nothing after it:
///
/// 1. fetch with `FetchLog` from `min(from_offset, log end)`: `from_offset` is the end of what
///    this replica knows is committed, so its log is good below it;
/// 2. check each reply with `Replica::check_fetched` (it keeps only batches below `to_offset`);
///    for each batch at offset `o`: if the log already has the same batch at `o` (same header:
///    offsets, epoch, CRC), keep it; otherwise cut the log to end at `o` and append the fetched
///    batch as it is;
/// 3. ask `sources` in order (the likely leader first), moving to the next one on an error, a
///    `NotAvailable` or no answer, and round again after a short pause;
/// 4. once at `to_offset`, cut the log to end at `to_offset` if it goes further.
///
/// Local batches that are the same are kept rather than cut and fetched again, so a restarted
/// replica that does not yet know how far its log is committed never drops committed batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatchUp {
    pub from_offset: u64,
    pub to_offset: u64,
    /// Node ids, the likely leader first.
    pub sources: Vec<u64>,
}

/// Work on the log and the persisted state. The driver performs a group's `Persist`s one after
/// the other in the order they were handed out (`PersistQueue` does that), each in this order:
///
/// 1. `truncate_to`: cut the log so it ends at this offset, if it ends after it;
/// 2. `catch_up`: fetch batches up to `catch_up.to_offset` ([`CatchUp`] says how);
/// 3. append `batches` (they start at `first_offset`, which is then the log end; each is stamped
///    with its offset and term already);
/// 4. write `state` if present;
/// 5. if `sync`, make all of it durable: `fdatasync` the log *before* the state file is
///    replaced, so a durable state never names a log that is not durable (without `sync`, the
///    state may be written without syncing: it only names durable entries then);
///
/// then report `Replica::persisted(id)`. A failed write or sync is fatal for the group: restart
/// it from disk (drop the replica, reload the state and the log's batch headers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Persist {
    pub id: u64,
    pub truncate_to: Option<u64>,
    pub catch_up: Option<CatchUp>,
    pub first_offset: u64,
    pub batches: Vec<Bytes>,
    pub state: Option<PersistedState>,
    /// False only for work that raft does not wait on (a lazy state write after the anchor
    /// moved): the driver may skip the `fdatasync`.
    pub sync: bool,
}

/// Read batches back from the local log for a follower: whole batches from `from_offset` (a
/// batch boundary) until `to_offset` or until more than `max_bytes` (at least one batch).
/// Report `Replica::log_read(id, ...)`. Reads never wait for `Persist` work: they only ask for
/// durable batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadLog {
    pub id: u64,
    pub from_offset: u64,
    pub to_offset: u64,
    pub max_bytes: u64,
}

/// What the core asks its driver to do, in the order handed out.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send this Raft message to node `msg.to` (encode it with `message::encode`). Best effort:
    /// losing it is fine.
    Send(Message),
    /// Persistence work; see [`Persist`].
    Persist(Persist),
    /// Read batches back from the log; see [`ReadLog`].
    ReadLog(ReadLog),
    /// The leader of the group is now `leader` (None: unknown) in `term`. Report it to cluster
    /// metadata.
    Leader { leader: Option<u64>, term: u64 },
    /// Consumers may read below this offset: `PartitionLog::set_replication_bound`. Never goes
    /// backwards within one replica's life.
    HighWatermark(u64),
    /// Proposal (`index`, `term`) finished: resolve its produce.
    Completed {
        index: u64,
        term: u64,
        result: Result<(), ProposeError>,
    },
}
