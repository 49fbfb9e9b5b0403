//! Quill: a durable, partitioned, thread-per-core message broker.
//!
//! See `ARCHITECTURE.md` for the code map and the invariants.

#![warn(unreachable_pub)]

pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
pub mod disk;
pub mod local;
pub mod net;
pub mod record;
pub mod shard;
pub mod tools;
pub mod types;
