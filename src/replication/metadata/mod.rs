//! Cluster metadata: members, topics, the placement of every replica on a node and shard, and
//! partition leaders with their terms, as a replicated state machine. Its log is the metadata
//! Raft group's (every node a voter, as Kafka's KRaft `__cluster_metadata` or Redpanda's raft0);
//! every node applies the committed commands in order and serves Metadata from its copy.
//!
//! - `command.rs`: the commands and their form in the log (one JSON record per command).
//! - `state.rs`: [`ClusterMeta`] and `apply`, deterministic.
//! - `assign.rs`: where a new topic's replicas go (the metadata leader decides, the command
//!   carries it).

pub mod assign;
pub mod command;
pub mod state;

pub use assign::{place, AssignError};
pub use command::{Command, CommandError, NodeInfo};
pub use state::{ClusterMeta, LeaderInfo, Outcome};
