//! One segment of a partition log: `<base offset, 20 digits>.log` with its sparse `.index` and
//! `.timeindex` files, held in memory while the log is open.
//!
//! Lives on the shard that owns the partition, inside the log's state. Methods here are either
//! synchronous (in-memory bookkeeping) or free `async fn`s that take cloned file handles, so no
//! borrow of the log state is held while I/O is in flight. The parts: `in_memory.rs` (the
//! segment the log holds: offsets, indexes and their upkeep, its appender, creating one),
//! `paths.rs` (the files' names, removing them), `open.rs` (opening sealed segments and
//! recovering the active one, with the `recovery` scanner), `index_files.rs` (loading and
//! writing the index files), `read.rs` (reading batches back, and locating the damage a read
//! finds).

mod in_memory;
mod index_files;
mod open;
mod paths;
mod read;

pub(crate) use in_memory::Segment;
pub use in_memory::NO_TIMESTAMP;
pub(crate) use index_files::{write_index_files, IndexFiles};
pub(crate) use open::RecoveryContext;
pub use open::RecoveryReport;
pub(crate) use paths::{log_path, parse_log_name, remove_files};
pub(crate) use read::{locate_damage, read_batches, DiskRead};
