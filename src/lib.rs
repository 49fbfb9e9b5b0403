//! Quill: a durable, partitioned, thread-per-core message broker.
//!
//! See `ARCHITECTURE.md` for the code map and the invariants.

#![warn(unreachable_pub)]

pub mod broker;
pub mod cli;
pub mod config;
pub mod disk;
pub mod net;
pub mod replication;
pub mod shard;

/// The hidden `quill debug` subcommand (crash tests drive it); not part of the API.
#[doc(hidden)]
pub mod debug;

// The shared formats and primitives live in `quill-proto`; the broker's modules name them by
// their old paths (`crate::record`, `crate::types`, `crate::local`).
pub use quill_proto::{local, record, types};
