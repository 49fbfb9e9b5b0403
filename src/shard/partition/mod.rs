//! The partition service: produce, fetch with long poll, list offsets and partition info, on
//! domain types (`types`) and [`PartitionError`](super::PartitionError). Every protocol (the
//! native one in `net/handler.rs`, later Kafka's) and replication call the same service; it runs
//! an operation on this shard when the partition's recorded placement names it (`local`), else on
//! the owner through the mesh (`service`).
//!
//! A [`PartitionService`] is a handle on one shard (`Rc<Shard>`): it lives on that shard's
//! executor, like the shard.

mod local;
mod many;
mod service;
mod types;

pub use many::{FetchMany, PartitionFetch};
pub use service::PartitionService;
pub use types::{
    FetchSpec, Fetched, LogOffsets, OffsetQuery, PartitionInfo, PartitionState, ProduceAcks,
    ReplicaState,
};
