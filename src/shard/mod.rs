//! Shards: one pinned glommio executor per core, each owning a set of partitions outright.
//!
//! `core` is the shard itself (its partitions, start, shutdown, the mesh's call handler);
//! `partition` the partition service every protocol calls (produce, fetch, offsets, partition
//! info) with its domain errors in `error`; `topics` topic create and delete through the
//! controller on shard 0; `cluster` the cluster as this broker sees it (metadata leader, nodes,
//! replicas: the seams the replication wiring fills); `catalog` the persisted topic list with each partition's recorded
//! `placement`, whose default at creation is the `ownership` hash; `fds` the shard's share of
//! file descriptors; `call` and `mesh` the cross-shard calls over glommio channels. Nothing here
//! knows a wire format: protocols map [`PartitionError`] and [`TopicError`] to their codes.

pub mod call;
pub mod catalog;
pub mod cluster;
mod core;
pub mod error;
mod fds;
mod mesh;
pub mod metadata;
pub mod ownership;
pub mod partition;
pub mod placement;
pub mod replicas;
mod topics;

pub use self::core::{InflightGuard, Ports, Shard};
pub use call::TopicRequest;
pub use catalog::{Catalog, TopicConfig, TopicMeta};
pub use cluster::{ClusterView, NodeView, PartitionView, TopicView, DEFAULT_REPLICATION_FACTOR};
pub use error::{LogFailure, NotOpen, PartitionError, TopicError};
pub use fds::{FdBudget, FDS_PER_PARTITION, FDS_RESERVED, FDS_RESERVED_PER_SHARD};
pub(crate) use mesh::Mesh;
pub use mesh::{build_mesh, MeshEnds};
pub use ownership::owner_shard;
pub use partition::{
    FetchMany, FetchSpec, Fetched, LogOffsets, OffsetQuery, PartitionFetch, PartitionInfo,
    PartitionService, PartitionState, ProduceAcks, ReplicaState,
};
pub use placement::Placement;
