//! Test support shared by Quill's crash tests, benchmarks and the hidden `quill debug`
//! subcommand; not part of the broker's or the client's API.

pub mod relay;
pub mod synthetic;
