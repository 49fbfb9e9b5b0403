//! The state of one partition log, shared by the log handle (`log/`), its commit pipeline
//! (`commit.rs`) and its checkpoint task (`meta.rs`): [`Inner`] holds the settings and handles,
//! [`State`] what changes.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;

use glommio::io::DmaBuffer;
use glommio::sync::Semaphore;

use super::appender::BufferPool;
use super::cache::{BatchCache, CacheKey};
use super::clock::Clock;
use super::config::{Durability, LogConfig};
use super::damage::DamageTable;
use super::epochs::EpochCache;
use super::error::{LogError, Result};
use super::faults::Faults;
use super::files::FileCache;
use super::group_commit::GroupCommit;
use super::segment::Segment;
use crate::local::{Event, Resolver};
use crate::types::{Epoch, Offset};

/// The group-commit core as the log runs it: appends are acknowledged through their resolvers,
/// failed writes reported as [`LogError`]s.
pub(crate) type Commit = GroupCommit<Resolver<Result<()>>, LogError>;

/// The mutable state of one log. Lives on the log's shard, in a `RefCell` that is never borrowed
/// across an `.await`.
pub(crate) struct State {
    pub(crate) segments: VecDeque<Segment>,
    /// The log end offset: the offset the next append gets.
    pub(crate) next_offset: Offset,
    /// Set by replication: the high watermark never passes it.
    pub(crate) replication_bound: Option<Offset>,
    pub(crate) last_epoch: Epoch,
    /// First offset of every leader epoch, persisted in `leader-epoch-checkpoint`.
    pub(crate) epochs: EpochCache,
    /// An append is writing a new epoch to `leader-epoch-checkpoint`: other appends wait.
    pub(crate) epoch_changing: bool,
    /// Damaged ranges, persisted in `damaged-ranges`.
    pub(crate) damage: DamageTable,
    /// The recovery point last written to `recovery-point-checkpoint`.
    pub(crate) recovery_point: Offset,
    /// A checkpoint task waits to write the recovery point.
    pub(crate) checkpoint_scheduled: bool,
    pub(crate) rolling: bool,
    pub(crate) closed: bool,
    /// For `LogStats`; the commit counters are the core's.
    pub(crate) counters: Counters,
    /// Group commit: written and durable offsets, waiting appends, I/O in flight (`commit.rs`).
    pub(crate) commit: Commit,
}

/// Counters of the log for `LogStats` that are not the commit core's.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    pub(crate) appends: u64,
    /// Recovery-point checkpoints written.
    pub(crate) checkpoints: u64,
}

/// One log: its settings and shared handles, and its state. Lives on the log's shard; shared
/// (`Rc`) by the log handle, its flusher task and its in-flight I/O tasks.
pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) cache: Rc<BatchCache>,
    pub(crate) cache_key: CacheKey,
    pub(crate) files: Rc<FileCache>,
    pub(crate) clock: Clock,
    /// The staging buffers of all the log's segments.
    pub(crate) pool: Rc<BufferPool<DmaBuffer>>,
    pub(crate) state: RefCell<State>,
    /// Wakes the flusher: something was staged, or the log is closing.
    pub(crate) flush_wanted: Event,
    /// Something advanced: written, durable, high watermark; a roll ended; staged bytes drained;
    /// an I/O completed.
    pub(crate) progress: Event,
    /// Held by `close` and `truncate_to`, so they never interleave.
    pub(crate) io_lock: Semaphore,
    /// Held while a checkpoint file (recovery point, damaged ranges) is replaced.
    pub(crate) files_lock: Semaphore,
    /// Faults injected by tests; none otherwise.
    pub(crate) faults: Faults,
}

impl Inner {
    /// The error appends get once the log is poisoned.
    pub(crate) fn poisoned_error(&self, cause: &str) -> LogError {
        LogError::Poisoned {
            path: self.dir.clone(),
            cause: cause.to_string(),
        }
    }
}

/// Consumers read below this offset: the durable offset (sync mode) or the written offset
/// (interval mode), capped by replication.
pub(crate) fn hw_of(st: &State, cfg: &LogConfig) -> Offset {
    let stable = match cfg.durability {
        Durability::Sync => st.commit.durable(),
        Durability::Interval => st.commit.written(),
    };
    match st.replication_bound {
        Some(b) => stable.min(b),
        None => stable,
    }
}
