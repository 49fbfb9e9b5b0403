//! Shards: one pinned glommio executor per core, each owning a set of partitions outright.
//!
//! `core` is the shard itself (partition ownership, produce/fetch/offsets, topic admin through
//! the controller on shard 0); `catalog` the persisted topic list; `ownership` the stable
//! partition-to-shard hash; `call` and `mesh` the cross-shard calls over glommio channels.

pub mod call;
pub mod catalog;
mod core;
mod mesh;
pub mod ownership;

pub use self::core::{
    FdBudget, InflightGuard, Ports, Shard, FDS_PER_PARTITION, FDS_RESERVED, FDS_RESERVED_PER_SHARD,
};
pub use call::{CallError, FetchPartition, FetchedPartition, PartitionInfo, TopicRequest};
pub use catalog::{Catalog, TopicConfig, TopicMeta};
pub(crate) use mesh::Mesh;
pub use mesh::{build_mesh, MeshEnds};
pub use ownership::owner_shard;
