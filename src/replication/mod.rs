//! Replication (issue 11): one Raft group per partition, a metadata Raft group over the nodes,
//! and QUIC with mutual TLS between brokers.
//!
//! - `raft/`: the replica core, sans-I/O like `disk::group_commit`: a tikv `raft` `RawNode` per
//!   group over an in-memory window of the log (raft index <-> offset), events in, actions out.
//! - `sim/`: a seeded deterministic simulation of replica cores over a simulated network and disk.
//! - `message.rs`: the replication messages and their encoding (`docs/REPLICATION.md`).
//! - `transport/`: quinn on one pinned tokio `current_thread` runtime per broker, mutual TLS,
//!   bounded channels to and from the shards.

pub mod driver;
pub mod message;
pub mod metadata;
pub mod raft;
#[cfg(test)]
mod sim;
pub mod transport;
