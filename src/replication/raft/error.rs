//! The replica core's errors: [`ProposeError`] for a produce, [`ReplicaError`] for everything
//! else. Both are values; the core never panics on input from the network, the disk or the
//! driver.

use crate::record::BatchError;

/// Why a proposal was refused or failed after it was accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This replica is not the leader (or stopped being it before the batch committed: the
    /// batch may still be committed later by the next leader, as in Kafka the client retries
    /// and may write it twice). `leader` is the current leader if known.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    /// The batch is not one valid v2 batch within `batch_bytes_max`.
    #[error("bad batch: {0}")]
    BadBatch(#[from] BatchError),
    /// Too much is proposed and not committed yet (the window is twice its bound): back off.
    #[error("too much uncommitted: {entries} entries, {bytes} bytes")]
    Backpressure { entries: usize, bytes: u64 },
    /// Raft dropped the proposal (a leadership transfer is under way).
    #[error("proposal dropped by raft")]
    Dropped,
    /// An entry raft-rs accepted cannot be stored as computed (found after the checks of
    /// `step`, so a bug): the replica must be restarted.
    #[error("inconsistent entry: {0}")]
    Inconsistent(String),
    /// The replica failed earlier and must be restarted by the driver.
    #[error("replica failed: {0}")]
    Failed(String),
}

/// An error of the replica core. `step` errors on a bad message leave the replica usable; the
/// others mark it failed ([`ReplicaError::is_fatal`]): the driver restarts the group from disk.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// A message for another node or from a node outside the group.
    #[error("message from {from} to {to} is not for replica {id} of this group")]
    Misrouted { from: u64, to: u64, id: u64 },
    /// A message entry's data is not one valid batch.
    #[error("entry {index} of a message is not a valid batch: {error}")]
    BadEntry { index: u64, error: BatchError },
    /// A stamped batch's offset or epoch is not what this replica computes for its index: the
    /// leader's log and ours disagree about offsets, which must never happen.
    #[error("entry {index}: batch stamped at offset {found} epoch {found_epoch}, expected offset {expected} term {term}")]
    OffsetMismatch {
        index: u64,
        expected: u64,
        found: u64,
        term: u64,
        found_epoch: i32,
    },
    /// A snapshot message whose data is not an 8-byte offset.
    #[error("snapshot data of {0} bytes is not an offset")]
    BadSnapshot(usize),
    /// raft-rs refused a message (`StepPeerNotFound`, `StepLocalMsg`, ...).
    #[error("raft: {0}")]
    Raft(String),
    /// The batches loaded at start are not contiguous from the anchor.
    #[error("log not contiguous: expected a batch at {expected}, found {found}")]
    LogNotContiguous { expected: u64, found: u64 },
    /// The batches loaded at start have epochs going backwards (or not a valid term).
    #[error("batch at {offset} has epoch {epoch} after term {previous}")]
    EpochOrder {
        offset: u64,
        epoch: i32,
        previous: u64,
    },
    /// The persisted state is not usable (no voters, this node not a voter).
    #[error("bad persisted state: {0}")]
    BadState(String),
    /// The driver reported a completion out of order (`persisted` of another id).
    #[error("driver reported persist {got}, expected {expected:?}")]
    DriverOrder { expected: Option<u64>, got: u64 },
    /// An entry raft-rs accepted cannot be stored as computed (found after the checks of
    /// `step`, so a bug): the replica must be restarted.
    #[error("inconsistent entry: {0}")]
    Inconsistent(String),
    /// The replica failed earlier (see the first error) and must be restarted from disk.
    #[error("replica failed earlier: {0}")]
    Failed(String),
}

impl ReplicaError {
    /// Whether the replica is unusable after this error (the driver must restart it from its
    /// persisted state and log). Rejected messages are not fatal.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            ReplicaError::Misrouted { .. }
                | ReplicaError::BadEntry { .. }
                | ReplicaError::OffsetMismatch { .. }
                | ReplicaError::BadSnapshot(_)
                | ReplicaError::Raft(_)
        )
    }
}

/// Why batches fetched from another replica for a catch-up cannot be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchedError {
    #[error("batch at byte {at} does not validate: {error}")]
    BadBatch { at: usize, error: BatchError },
    #[error("batch at offset {found}, expected {expected}")]
    NotContiguous { expected: u64, found: u64 },
    #[error("batch ending at {end} runs past the catch-up target {target}")]
    PastTarget { end: u64, target: u64 },
}
