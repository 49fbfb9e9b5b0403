//! Limits and settings of one partition log. Every limit names its unit last.

use crate::types::TimestampMs;

/// When an append is acknowledged, and so how often the log calls `fdatasync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Acknowledge only after the bytes are covered by an `fdatasync` (the default). Appends that
    /// arrive while a sync is in flight share the next one (group commit).
    Sync,
    /// Acknowledge once the bytes are written to the device with O_DIRECT; `fdatasync` runs every
    /// [`LogConfig::flush_ms`]. A power loss may lose up to that much acknowledged data; a process
    /// crash loses none (the writes have left the process).
    Interval,
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sync" => Ok(Durability::Sync),
            "interval" => Ok(Durability::Interval),
            other => Err(format!(
                "unknown durability mode {other:?}: expected \"sync\" or \"interval\""
            )),
        }
    }
}

/// Settings of one partition log. Defaults follow Kafka's where Kafka has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment once the active one holds this many bytes (Kafka `segment.bytes`).
    /// At most `SEGMENT_BYTES_LIMIT`, since index positions are 32-bit.
    pub segment_bytes: u64,
    /// Roll to a new segment once the active one is this old (Kafka `segment.ms`).
    pub segment_ms: i64,
    /// One offset-index and time-index entry per this many bytes of batches
    /// (Kafka `index.interval.bytes`).
    pub index_interval_bytes: u64,
    /// The largest batch accepted, header included (Kafka `message.max.bytes`).
    pub batch_bytes_max: usize,
    /// Delete sealed segments whose newest record is older than this (Kafka `retention.ms`);
    /// `None` keeps them forever.
    pub retention_ms: Option<i64>,
    /// Delete the oldest sealed segments while the log is larger than this
    /// (Kafka `retention.bytes`); `None` means no size limit.
    pub retention_bytes: Option<u64>,
    /// The default durability of appends to this log.
    pub durability: Durability,
    /// In [`Durability::Interval`] mode, the longest time between two `fdatasync` calls.
    pub flush_ms: u64,
    /// Size of one direct-I/O staging buffer. A buffer is written as soon as it fills (several
    /// may be in flight at once); a group commit writes the rest of its bytes as one more write.
    /// Buffers are reused: a log keeps up to `pending_bytes_max / write_buffer_bytes` of them.
    pub write_buffer_bytes: usize,
    /// Appends wait (backpressure) while this many bytes are staged but not yet written.
    pub pending_bytes_max: usize,
    /// Space reserved ahead of the writes in the active segment, in steps of this many bytes
    /// (`fallocate`), so that writes land in allocated space instead of extending the file: on
    /// ext4, io_uring hands every O_DIRECT write that extends a file to a worker thread, and
    /// those serialize. The file is sized to the reservation, so until a segment is sealed or the
    /// log is closed it ends with zeros past its last batch (recovery drops them). `0` turns it
    /// off. At most `segment_bytes` is reserved per segment. Steps start at 1 MiB and grow with
    /// the segment, so a partition holds at most `max(1 MiB, min(preallocate_bytes, bytes in
    /// its active segment))` of preallocated space beyond its data.
    pub preallocate_bytes: u64,
    /// Preallocation never takes the file system's free space below this: it shrinks, then
    /// stops, as the disk fills, so space freed for one partition is not taken by another's
    /// reservation (appends themselves may still use it).
    pub disk_reserve_bytes: u64,
    /// How often the recovery point (the durable offset) is checkpointed while it moves
    /// (Kafka's `log.flush.offset.checkpoint.interval.ms`). Recovery never truncates below it;
    /// between checkpoints it tells a torn tail from damage by what follows (`recovery/`).
    /// Costs one small synced file write per active partition per interval, off the append path.
    pub recovery_point_interval_ms: u64,
}

/// Index entries store file positions as `u32`, so a segment cannot be larger.
pub const SEGMENT_BYTES_LIMIT: u64 = u32::MAX as u64;
/// The O_DIRECT alignment Quill uses for every write: 4 KiB covers 512-byte and 4 KiB devices.
pub const DIO_ALIGN_BYTES: u64 = 4096;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            batch_bytes_max: 1 << 20,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            durability: Durability::Sync,
            flush_ms: 1000,
            write_buffer_bytes: 512 << 10,
            pending_bytes_max: 64 << 20,
            preallocate_bytes: 32 << 20,
            disk_reserve_bytes: 256 << 20,
            recovery_point_interval_ms: 5_000,
        }
    }
}

impl LogConfig {
    /// Checks the relationships between the settings; the message names the offending one.
    pub fn validate(&self) -> Result<(), String> {
        if self.segment_bytes < 4096 || self.segment_bytes > SEGMENT_BYTES_LIMIT {
            return Err(format!(
                "segment_bytes must be between 4096 and {SEGMENT_BYTES_LIMIT}, got {}",
                self.segment_bytes
            ));
        }
        if self.segment_ms <= 0 {
            return Err(format!(
                "segment_ms must be positive, got {}",
                self.segment_ms
            ));
        }
        if self.index_interval_bytes == 0 {
            return Err("index_interval_bytes must be positive".into());
        }
        if self.batch_bytes_max < crate::record::BATCH_HEADER_BYTES
            || self.batch_bytes_max as u64 > self.segment_bytes
        {
            return Err(format!(
                "batch_bytes_max must be between {} and segment_bytes ({}), got {}",
                crate::record::BATCH_HEADER_BYTES,
                self.segment_bytes,
                self.batch_bytes_max
            ));
        }
        if self.write_buffer_bytes == 0 || self.write_buffer_bytes as u64 % DIO_ALIGN_BYTES != 0 {
            return Err(format!(
                "write_buffer_bytes must be a positive multiple of {DIO_ALIGN_BYTES}, got {}",
                self.write_buffer_bytes
            ));
        }
        if self.pending_bytes_max < self.batch_bytes_max {
            return Err(format!(
                "pending_bytes_max ({}) must be at least batch_bytes_max ({})",
                self.pending_bytes_max, self.batch_bytes_max
            ));
        }
        if self.preallocate_bytes % DIO_ALIGN_BYTES != 0 {
            return Err(format!(
                "preallocate_bytes must be a multiple of {DIO_ALIGN_BYTES} (or 0), got {}",
                self.preallocate_bytes
            ));
        }
        if self.recovery_point_interval_ms == 0 {
            return Err("recovery_point_interval_ms must be positive".into());
        }
        if self.durability == Durability::Interval && self.flush_ms == 0 {
            return Err("flush_ms must be positive in interval mode".into());
        }
        Ok(())
    }

    /// How many idle staging buffers a log keeps for reuse: enough for `pending_bytes_max`.
    pub(crate) fn staging_buffers_max(&self) -> usize {
        (self.pending_bytes_max / self.write_buffer_bytes).max(2)
    }

    /// Whether a segment created at `created_ms` has aged past `segment_ms` at `now_ms`.
    pub(crate) fn segment_expired(&self, created_ms: TimestampMs, now_ms: TimestampMs) -> bool {
        now_ms.saturating_sub(created_ms) >= self.segment_ms
    }
}
