//! The shard side of replication: each shard drives the replica cores of the partitions it
//! holds replicas of (`group.rs`) and exchanges their messages with the replication thread
//! (`net.rs`, `link.rs`); `node.rs` is a shard's registry of groups, its inbound loop and its
//! ticks.

pub mod group;
pub mod link;
pub mod net;
pub mod node;

pub use group::{Group, LeaderHook, LeaderView, ReplicaView, Submitted};
pub use link::{Inbound, Outbound, ShardLink};
pub use net::{Net, NetStats};
pub use node::{ForwardHandler, Replication};
