//! What both ends of a Quill connection share, with no I/O and no runtime: the Kafka v2 record
//! batch ([`record`]), the native protocol's framing ([`frame`]), every request and response
//! ([`protocol`]), the wire error table ([`error_code`]), the domain newtypes ([`types`]) and the
//! single-thread synchronisation primitives both the broker's shards and the client run on
//! ([`local`]).
//!
//! The layouts are specified in `docs/PROTOCOL.md` and `docs/FORMAT.md`. This crate cannot reach
//! glommio or a socket: the broker (`quill`) and the client (`quill-client`) drive it.

#![warn(unreachable_pub)]

pub mod error_code;
pub mod frame;
pub mod local;
pub mod protocol;
pub mod record;
pub mod types;
