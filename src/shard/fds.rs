//! How a shard splits its share of the process's file descriptor limit: a process and a
//! per-shard reserve, the transient pool, the sealed-segment file cache, then 3 per partition.

use crate::disk::files::TRANSIENT_FDS_PER_SHARD;

/// File descriptors an open partition holds steadily: its active segment's `.log`, `.index` and
/// `.timeindex` (sealed segments' files are opened on read through the shard's file cache;
/// short-lived ones, for rolls and checkpoint writes, come from the shard's
/// [`TRANSIENT_FDS_PER_SHARD`]).
pub const FDS_PER_PARTITION: usize = 3;
/// Descriptors kept for the process (standard streams, signal pipe, catalog and epoch
/// checkpoint writes) and for each shard (io_uring rings and their eventfds, listeners, client
/// sockets) before partitions get any.
pub const FDS_RESERVED: u64 = 32;
pub const FDS_RESERVED_PER_SHARD: u64 = 64;

/// How one shard splits its share of the file descriptor limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdBudget {
    /// The process's soft `RLIMIT_NOFILE`.
    pub nofile: u64,
    /// Partitions this shard may hold open.
    pub partitions_max: usize,
    /// Sealed-segment files its cache may hold open (`open_segment_files_max`, less if the
    /// limit is short).
    pub segment_files_max: usize,
}

impl FdBudget {
    /// The budget of one of `shards` shards under a soft limit of `nofile` descriptors.
    pub fn new(nofile: u64, shards: usize, open_segment_files_max: usize) -> FdBudget {
        let per_shard = (nofile.saturating_sub(FDS_RESERVED) / shards.max(1) as u64)
            .saturating_sub(FDS_RESERVED_PER_SHARD + TRANSIENT_FDS_PER_SHARD)
            as usize;
        let segment_files_max = open_segment_files_max.min(per_shard / 4).max(1);
        FdBudget {
            nofile,
            partitions_max: per_shard.saturating_sub(segment_files_max) / FDS_PER_PARTITION,
            segment_files_max,
        }
    }

    /// The budget under this process's current soft limit.
    pub fn current(shards: usize, open_segment_files_max: usize) -> FdBudget {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        let nofile = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            lim.rlim_cur
        } else {
            1024
        };
        FdBudget::new(nofile, shards, open_segment_files_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_budget_splits_the_limit_between_shards() {
        let b = FdBudget::new(256, 1, 256);
        assert_eq!((b.partitions_max, b.segment_files_max), (32, 32));
        let b = FdBudget::new(20_000, 2, 256);
        assert_eq!(b.segment_files_max, 256);
        assert_eq!(b.partitions_max, (9_984 - 64 - 32 - 256) / 3);
        // Every descriptor counted: reserve, segment files and partitions fit the limit.
        let used = FDS_RESERVED
            + 2 * (FDS_RESERVED_PER_SHARD
                + TRANSIENT_FDS_PER_SHARD
                + b.segment_files_max as u64
                + (b.partitions_max * FDS_PER_PARTITION) as u64);
        assert!(used <= 20_000, "{used}");
        // Too few descriptors for anything: no partition, no panic.
        assert_eq!(FdBudget::new(10, 4, 256).partitions_max, 0);
    }
}
