//! Sparse offset and time indexes of one segment (sans-I/O).
//!
//! Offset index entry (8 bytes, big-endian): relative offset `u32` (record offset minus segment
//! base offset) then file position `u32` of the batch that starts at that offset.
//! Time index entry (12 bytes, big-endian): timestamp `i64` (the largest batch max-timestamp seen
//! up to and including the indexed batch) then relative offset `u32` of that batch. There is one
//! time entry for every offset-index entry, plus a last one for the segment's last batch once the
//! segment is sealed, so a time index cut short is detectable.
//! Both files are plain arrays of entries; a trailing partial entry is ignored.

use crate::types::{Offset, TimestampMs};

pub const OFFSET_ENTRY_BYTES: usize = 8;
pub const TIME_ENTRY_BYTES: usize = 12;

/// One offset-index entry: the batch whose base offset is `base + relative` starts at `position`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative: u32,
    pub position: u32,
}

/// One time-index entry: every batch up to and including the one at `base + relative` has a max
/// timestamp `<= timestamp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: TimestampMs,
    pub relative: u32,
}

/// Why an index file was rejected (it is then rebuilt from the log).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("entry {index} does not increase (relative offset {relative}, position {position})")]
    NotIncreasing {
        index: usize,
        relative: u32,
        position: u32,
    },
    #[error("entry {index} points at position {position}, past the segment's {log_bytes} bytes")]
    PastEnd {
        index: usize,
        position: u32,
        log_bytes: u64,
    },
    #[error("entry {index} has timestamp {timestamp} below the previous entry's")]
    TimeNotIncreasing { index: usize, timestamp: i64 },
}

/// The offset index of one segment, held in memory; sealed segments load it from their `.index`
/// file, the active segment grows it as batches are appended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<OffsetEntry>,
}

impl OffsetIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn entries(&self) -> &[OffsetEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an entry; relative offsets and positions must grow.
    pub fn push(&mut self, entry: OffsetEntry) {
        if let Some(last) = self.entries.last() {
            assert!(
                entry.relative > last.relative && entry.position > last.position,
                "offset index must grow: {last:?} then {entry:?}"
            );
        }
        self.entries.push(entry);
    }

    /// The last entry at or before `relative`: where a scan for that offset starts.
    /// `None` means start at position 0.
    pub fn lookup(&self, relative: u32) -> Option<OffsetEntry> {
        let i = self.entries.partition_point(|e| e.relative <= relative);
        i.checked_sub(1).map(|i| self.entries[i])
    }

    /// Drops entries for batches at or after `relative` (used by truncation and recovery).
    pub fn truncate_from_relative(&mut self, relative: u32) {
        let keep = self.entries.partition_point(|e| e.relative < relative);
        self.entries.truncate(keep);
    }

    /// Keeps the first `n` entries.
    pub fn truncate_len(&mut self, n: usize) {
        self.entries.truncate(n);
    }

    pub fn encode_entry(e: &OffsetEntry, out: &mut Vec<u8>) {
        out.extend_from_slice(&e.relative.to_be_bytes());
        out.extend_from_slice(&e.position.to_be_bytes());
    }

    /// Parses an index file and checks it against the segment's size: entries strictly increase
    /// and point inside the log.
    pub fn decode(bytes: &[u8], log_bytes: u64) -> Result<OffsetIndex, IndexError> {
        let mut entries = Vec::with_capacity(bytes.len() / OFFSET_ENTRY_BYTES);
        for (index, chunk) in bytes.chunks_exact(OFFSET_ENTRY_BYTES).enumerate() {
            let relative = u32::from_be_bytes(chunk[0..4].try_into().expect("4 bytes"));
            let position = u32::from_be_bytes(chunk[4..8].try_into().expect("4 bytes"));
            if let Some(last) = entries.last() {
                let last: &OffsetEntry = last;
                if relative <= last.relative || position <= last.position {
                    return Err(IndexError::NotIncreasing {
                        index,
                        relative,
                        position,
                    });
                }
            }
            if u64::from(position) >= log_bytes {
                return Err(IndexError::PastEnd {
                    index,
                    position,
                    log_bytes,
                });
            }
            entries.push(OffsetEntry { relative, position });
        }
        Ok(OffsetIndex { entries })
    }
}

/// The time index of one segment, held in memory like [`OffsetIndex`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn entries(&self) -> &[TimeEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }

    /// Adds the entry of an indexed batch: the running maximum timestamp through it. Relative
    /// offsets grow; timestamps never fall. Returns false (and adds nothing) when the last entry
    /// is already for this batch.
    pub fn push_running(&mut self, entry: TimeEntry) -> bool {
        if let Some(last) = self.entries.last() {
            if entry.relative == last.relative {
                return false;
            }
            assert!(
                entry.relative > last.relative && entry.timestamp >= last.timestamp,
                "time index must grow: {last:?} then {entry:?}"
            );
        }
        self.entries.push(entry);
        true
    }

    /// The relative offset of a batch where a search for the first record with timestamp
    /// `>= ts` may start: every batch before it has all timestamps `< ts`.
    pub fn lookup(&self, ts: TimestampMs) -> Option<u32> {
        // The last entry whose running maximum is still below `ts`: batches up to it are all
        // older, so the answer is at or after it.
        let i = self.entries.partition_point(|e| e.timestamp < ts);
        i.checked_sub(1).map(|i| self.entries[i].relative)
    }

    pub fn truncate_from_relative(&mut self, relative: u32) {
        let keep = self.entries.partition_point(|e| e.relative < relative);
        self.entries.truncate(keep);
    }

    pub fn truncate_len(&mut self, n: usize) {
        self.entries.truncate(n);
    }

    pub fn encode_entry(e: &TimeEntry, out: &mut Vec<u8>) {
        out.extend_from_slice(&e.timestamp.to_be_bytes());
        out.extend_from_slice(&e.relative.to_be_bytes());
    }

    pub fn decode(bytes: &[u8]) -> Result<TimeIndex, IndexError> {
        let mut entries: Vec<TimeEntry> = Vec::with_capacity(bytes.len() / TIME_ENTRY_BYTES);
        for (index, chunk) in bytes.chunks_exact(TIME_ENTRY_BYTES).enumerate() {
            let timestamp = i64::from_be_bytes(chunk[0..8].try_into().expect("8 bytes"));
            let relative = u32::from_be_bytes(chunk[8..12].try_into().expect("4 bytes"));
            if let Some(last) = entries.last() {
                if timestamp < last.timestamp {
                    return Err(IndexError::TimeNotIncreasing { index, timestamp });
                }
                if relative <= last.relative {
                    return Err(IndexError::NotIncreasing {
                        index,
                        relative,
                        position: 0,
                    });
                }
            }
            entries.push(TimeEntry {
                timestamp,
                relative,
            });
        }
        Ok(TimeIndex { entries })
    }
}

/// Relative offset of `offset` in a segment based at `base`; `None` if it does not fit in `u32`
/// (the log rolls before that happens).
pub fn relative(base: Offset, offset: Offset) -> Option<u32> {
    offset
        .0
        .checked_sub(base.0)
        .and_then(|d| u32::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_finds_last_entry_at_or_before() {
        let mut ix = OffsetIndex::new();
        ix.push(OffsetEntry {
            relative: 10,
            position: 100,
        });
        ix.push(OffsetEntry {
            relative: 20,
            position: 200,
        });
        assert_eq!(ix.lookup(5), None);
        assert_eq!(ix.lookup(10).map(|e| e.position), Some(100));
        assert_eq!(ix.lookup(19).map(|e| e.position), Some(100));
        assert_eq!(ix.lookup(25).map(|e| e.position), Some(200));
        ix.truncate_from_relative(20);
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn offset_index_round_trips_and_rejects_bad_files() {
        let mut bytes = Vec::new();
        for (r, p) in [(0u32, 0u32), (3, 4096), (9, 9000)] {
            OffsetIndex::encode_entry(
                &OffsetEntry {
                    relative: r,
                    position: p,
                },
                &mut bytes,
            );
        }
        let ix = OffsetIndex::decode(&bytes, 10_000).unwrap();
        assert_eq!(ix.len(), 3);
        // A torn trailing entry is ignored.
        let ix = OffsetIndex::decode(&bytes[..bytes.len() - 3], 10_000).unwrap();
        assert_eq!(ix.len(), 2);
        assert!(matches!(
            OffsetIndex::decode(&bytes, 9000),
            Err(IndexError::PastEnd { index: 2, .. })
        ));
        let mut swapped = bytes.clone();
        swapped[8..16].copy_from_slice(&bytes[16..24]);
        swapped[16..24].copy_from_slice(&bytes[8..16]);
        assert!(matches!(
            OffsetIndex::decode(&swapped, 10_000),
            Err(IndexError::NotIncreasing { index: 2, .. })
        ));
    }

    #[test]
    fn time_index_keeps_running_maximum() {
        let mut ti = TimeIndex::new();
        assert!(ti.push_running(TimeEntry {
            timestamp: 100,
            relative: 0
        }));
        assert!(ti.push_running(TimeEntry {
            timestamp: 100,
            relative: 5
        }));
        assert!(!ti.push_running(TimeEntry {
            timestamp: 100,
            relative: 5
        }));
        assert!(ti.push_running(TimeEntry {
            timestamp: 200,
            relative: 10
        }));
        assert_eq!(ti.lookup(50), None);
        assert_eq!(ti.lookup(150), Some(5));
        assert_eq!(ti.lookup(250), Some(10));
        let mut bytes = Vec::new();
        for e in ti.entries() {
            TimeIndex::encode_entry(e, &mut bytes);
        }
        assert_eq!(TimeIndex::decode(&bytes).unwrap(), ti);
        let mut bad = bytes.clone();
        bad[24..32].copy_from_slice(&50i64.to_be_bytes());
        assert!(matches!(
            TimeIndex::decode(&bad),
            Err(IndexError::TimeNotIncreasing { index: 2, .. })
        ));
    }

    #[test]
    fn relative_offsets_fit_u32() {
        assert_eq!(relative(Offset(10), Offset(15)), Some(5));
        assert_eq!(relative(Offset(10), Offset(5)), None);
        assert_eq!(relative(Offset(0), Offset(u64::from(u32::MAX) + 1)), None);
    }
}
