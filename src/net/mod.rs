//! The native protocol v1: framing, the request and response codec, and the wire error codes.
//!
//! `frame`, `protocol` and `error_code` are sans-I/O: they turn bytes into typed requests and
//! typed responses into bytes, and never touch a socket; the layout is specified in
//! `docs/PROTOCOL.md`. The modules that drive them over TCP sit beside them: `server` (connections),
//! `handler` (the adapter from requests to the shard's partition service and topic admin) and
//! `errors` (the one mapping of their domain errors to wire codes).

pub mod budget;
pub mod connections;
mod errors;
mod handler;
pub mod server;

pub use quill_proto::{error_code, frame, protocol};
