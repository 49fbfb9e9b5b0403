//! Quill: a durable, partitioned, thread-per-core message broker.
//!
//! See `ARCHITECTURE.md` for the code map and the invariants.

#![warn(unreachable_pub)]

pub mod disk;
pub mod local;
pub mod record;
pub mod tools;
pub mod types;
