//! The replica core: one partition's Raft group member as a state machine without I/O.
//!
//! # Design
//!
//! **A Raft entry is one record batch.** Entry `i` of the group is the `i`-th batch after the
//! anchor in the partition log; its `partitionLeaderEpoch` is the entry's term and its base
//! offset the log end after entry `i - 1`, so offsets are a pure function of the entry
//! sequence. The empty entry raft-rs appends for a new leader is stored as a control batch
//! (attributes 0x20, one `LEADER_CHANGE` control record) built from (offset, term) alone
//! ([`control_batch`]), so every replica writes identical bytes. The leader stamps offset and
//! term into a proposed batch before raft-rs sees it, so the bytes it sends are the bytes it
//! stores; every replica (re)stamps when it hands an entry out for writing, and refuses a
//! stamped batch whose offset disagrees with its own computation (`ReplicaError::OffsetMismatch`
//! before raft-rs sees the message).
//!
//! **A window, not the whole log.** raft-rs's `Storage` ([`storage`]) is an anchor (index,
//! term, offset end) and, per index after it, the batch's offsets, term and size, plus the bytes
//! of recent entries (`cache_bytes_max`). Entries whose bytes are gone are read back from the
//! log on demand (`Action::ReadLog`, then `Replica::log_read`, then raft-rs's
//! `on_entries_fetched`). The anchor moves (Raft log compaction) to a committed, durable index
//! when the window passes `window_entries_max` / `window_bytes_max`; a follower that needs
//! entries before it gets a Raft snapshot whose data is the anchor's offset, which its replica
//! turns into a catch-up: the driver cuts the local log to its committed end and fetches the
//! rest from the leader with `FetchLog` (`message.rs`), batches as they are.
//!
//! **Async ready.** raft-rs 0.7's asynchronous ready flow: after every call the replica drains
//! every ready: messages go out at once (`Action::Send`), the truncation, batches and hard-state
//! write of the ready go to the driver as one `Action::Persist`, and the messages raft-rs
//! releases only after persistence wait on that `Persist`; `Replica::persisted` releases them
//! and calls `on_persist_ready`. Entries handed out are in the window at once (raft-rs may read
//! them back before they are durable). Term and vote are written with the work that changes
//! them (and synced before the messages depending on them go out); commit and the anchor are
//! written lazily.
//!
//! **High watermark** = the end of entry min(committed, locally durable); it never goes back
//! within a replica's life. After a restart it starts at the end of the durable committed
//! prefix (the persisted commit, clamped to the log): it may be lower than before the crash,
//! never below what was durable and committed.
//!
//! **Proposals** complete as `Action::Completed`: `Acks::All` once the high watermark passed
//! them (committed and durable here), `Acks::Leader` once durable here; `NotLeader` when the
//! replica steps down or the entry is overwritten (it may still commit later: the client's
//! retry may duplicate it, as in Kafka).
//!
//! # For the driver
//!
//! Create a [`Replica`] per group from the loaded [`PersistedState`] and the log's batch headers
//! from the anchor's offset; then, for every call (`tick` every `tick_ms`, `step` for each Raft
//! message received, `propose`, `persisted`, `log_read`), drain `next_action` and perform each
//! action mechanically (see [`Action`]): `Persist` work through a [`PersistQueue`], one at a
//! time in order; `ReadLog` at once; `Send` best effort. Serve `FetchLog` with
//! `Replica::serve_fetch`, check what a catch-up fetched with `Replica::check_fetched`. A fatal
//! error or a failed write restarts the group from disk. `Replica::stale_rejects_dropped` counts
//! the stale append rejections `step` drops (the workaround for raft-rs #557), for metrics.

mod batch;
mod config;
mod error;
mod ingest;
mod queue;
mod replica;
mod storage;
mod types;
mod window;

#[cfg(test)]
mod tests;

pub use batch::{control_batch, stamp, BatchMeta, CONTROL_ATTRIBUTE, CONTROL_TYPE_LEADER_CHANGE};
pub use config::ReplicaConfig;
pub use error::{FetchedError, ProposeError, ReplicaError};
pub use ingest::check_fetched;
pub use queue::PersistQueue;
pub use replica::{Replica, VoterProgress};
pub use types::{Acks, Action, CatchUp, Persist, PersistedState, Proposal, ReadLog};
pub use window::Anchor;
