//! The Apache Kafka v2 record batch (magic 2), byte for byte, without I/O.
//!
//! Quill stores and serves batches exactly as producers send them; this module is the only place
//! that knows their layout. It parses headers ([`BatchHeader::parse`]), validates whole batches
//! before they are written and after they are read ([`validate_batch`]), walks a buffer of
//! concatenated batches ([`batches`]), reads the records of uncompressed batches ([`records`]),
//! stamps offsets and leader epochs in place ([`set_base_offset`],
//! [`set_partition_leader_epoch`]) and builds batches ([`BatchBuilder`]).
//!
//! The layout is described field by field in `docs/FORMAT.md`.
//!
//! Nothing here keeps state between calls; every function takes the bytes it works on, so the
//! module can be used from any shard.

mod batch;
mod builder;
mod error;
mod raw;
mod records;
#[cfg(test)]
mod testdata;
mod varint;

pub use batch::{
    batches, crc_of, set_base_offset, set_partition_leader_epoch, validate_batch, BatchHeader,
    BatchIter, Compression, TimestampType,
};
pub use builder::BatchBuilder;
pub use error::{BatchError, RecordField};
pub use records::{first_offset_at_or_after, records, Record, RecordHeader, RecordIter};
pub use varint::{
    decode_varint, decode_varlong, encode_varint, encode_varlong, varint_len, varlong_len,
    VARINT_BYTES_MAX, VARLONG_BYTES_MAX,
};

/// Size of the fixed batch header, from `baseOffset` through `recordCount`.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Size of `baseOffset` and `batchLength`, the part of a batch that `batchLength` does not count:
/// a batch occupies `BATCH_LENGTH_OFFSET_BYTES + batchLength` bytes.
pub const BATCH_LENGTH_OFFSET_BYTES: usize = 12;
/// The magic byte of the v2 record batch, the only format Quill accepts.
pub const MAGIC_V2: i8 = 2;
/// The timestamp Kafka writes when a record has none.
pub const NO_TIMESTAMP: i64 = -1;

// Byte offsets of the header fields (docs/FORMAT.md has the same table).
const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const PARTITION_LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

/// The CRC covers the batch from `attributes` to its end.
const CRC_COVERED_FROM: usize = ATTRIBUTES_AT;
/// The smallest valid `batchLength`: a header with no records.
const BATCH_LENGTH_MIN: i32 = (BATCH_HEADER_BYTES - BATCH_LENGTH_OFFSET_BYTES) as i32;

// Each field starts where the previous one ends, at its width.
const _: () = assert!(BASE_OFFSET_AT == 0);
const _: () = assert!(BATCH_LENGTH_AT == BASE_OFFSET_AT + 8);
const _: () = assert!(PARTITION_LEADER_EPOCH_AT == BATCH_LENGTH_AT + 4);
const _: () = assert!(MAGIC_AT == PARTITION_LEADER_EPOCH_AT + 4);
const _: () = assert!(CRC_AT == MAGIC_AT + 1);
const _: () = assert!(ATTRIBUTES_AT == CRC_AT + 4);
const _: () = assert!(LAST_OFFSET_DELTA_AT == ATTRIBUTES_AT + 2);
const _: () = assert!(BASE_TIMESTAMP_AT == LAST_OFFSET_DELTA_AT + 4);
const _: () = assert!(MAX_TIMESTAMP_AT == BASE_TIMESTAMP_AT + 8);
const _: () = assert!(PRODUCER_ID_AT == MAX_TIMESTAMP_AT + 8);
const _: () = assert!(PRODUCER_EPOCH_AT == PRODUCER_ID_AT + 8);
const _: () = assert!(BASE_SEQUENCE_AT == PRODUCER_EPOCH_AT + 2);
const _: () = assert!(RECORD_COUNT_AT == BASE_SEQUENCE_AT + 4);
const _: () = assert!(BATCH_HEADER_BYTES == RECORD_COUNT_AT + 4);
// batchLength counts everything after itself.
const _: () = assert!(BATCH_LENGTH_OFFSET_BYTES == BATCH_LENGTH_AT + 4);
const _: () = assert!(BATCH_LENGTH_MIN == 49);
// The fields stamped by the broker lie before the CRC-covered region.
const _: () = assert!(BASE_OFFSET_AT + 8 <= CRC_COVERED_FROM);
const _: () = assert!(PARTITION_LEADER_EPOCH_AT + 4 <= CRC_COVERED_FROM);
const _: () = assert!(CRC_AT + 4 == CRC_COVERED_FROM);
