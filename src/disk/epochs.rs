//! The leader-epoch cache of a partition (sans-I/O): the first offset of every leader epoch, as
//! Kafka keeps in `leader-epoch-checkpoint`. Recovery uses it to know the newest epoch even when
//! the batches that carried it were cut off; replication will use it to find where a follower's
//! log diverges from the leader's (Kafka's OffsetsForLeaderEpoch).
//!
//! File format (text, as Kafka's): a version line `0`, a count line, then one line per epoch:
//! `<epoch> <start offset>`, epochs and offsets strictly increasing.

use crate::types::{Epoch, Offset};

pub const EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// Epoch start offsets, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<(Epoch, Offset)>,
}

impl EpochCache {
    pub fn entries(&self) -> &[(Epoch, Offset)] {
        &self.entries
    }

    /// The newest epoch, if any batch ever carried one.
    pub fn latest(&self) -> Option<Epoch> {
        self.entries.last().map(|e| e.0)
    }

    /// Records that `epoch` starts at `start`. Returns whether the cache changed (and so must be
    /// written). An epoch older than the newest is a programmer error: the log refuses such
    /// appends before they get here.
    pub fn assign(&mut self, epoch: Epoch, start: Offset) -> bool {
        match self.entries.last() {
            Some(&(e, _)) if e == epoch => false,
            Some(&(e, s)) => {
                assert!(epoch > e, "epoch {epoch} after {e}");
                assert!(start >= s, "epoch start {start} before {s}");
                if start == s {
                    // The previous epoch never got a batch: replace it.
                    self.entries.pop();
                }
                self.entries.push((epoch, start));
                true
            }
            None => {
                self.entries.push((epoch, start));
                true
            }
        }
    }

    /// Forgets epochs that start at or after `end` (the log was truncated there). Returns whether
    /// the cache changed.
    pub fn truncate_to(&mut self, end: Offset) -> bool {
        let keep = self.entries.partition_point(|e| e.1 < end);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// The epoch the batch starting at `offset` must carry: that of the newest entry starting
    /// at or before it. `None` when no entry does (no checkpoint, or an offset before it).
    pub fn epoch_at(&self, offset: Offset) -> Option<Epoch> {
        let i = self.entries.partition_point(|e| e.1 <= offset);
        i.checked_sub(1).map(|i| self.entries[i].0)
    }

    /// Checks the leader epoch of a batch read back from disk (the field lies outside the CRC):
    /// a batch at `base` carries exactly the epoch that started at or before it, since the
    /// checkpoint is written durably before the first batch of an epoch is staged. Where the
    /// checkpoint says nothing (missing, or an older part of the log) the epoch must not be
    /// newer than the checkpoint's first epoch nor older than the previous batch's (`prev`).
    pub fn check_batch(
        &self,
        base: Offset,
        epoch: Epoch,
        prev: Option<Epoch>,
    ) -> Result<(), String> {
        if let Some(want) = self.epoch_at(base) {
            if epoch != want {
                return Err(format!(
                    "leader epoch {epoch} of the batch at offset {base} is impossible: the \
                     leader-epoch checkpoint says offsets from {} on have epoch {want}",
                    self.entries[self.entries.partition_point(|e| e.1 <= base) - 1].1
                ));
            }
            return Ok(());
        }
        if let Some(&(first, start)) = self.entries.first() {
            if epoch > first {
                return Err(format!(
                    "leader epoch {epoch} of the batch at offset {base} is newer than epoch \
                     {first}, which starts later, at offset {start}"
                ));
            }
        }
        if let Some(p) = prev {
            if epoch < p {
                return Err(format!(
                    "leader epoch {epoch} of the batch at offset {base} is older than the \
                     previous batch's ({p})"
                ));
            }
        }
        Ok(())
    }

    /// The end offset of `epoch` on this log: the start of the next newer epoch, or `log_end`
    /// when `epoch` is the newest; for an epoch this log never had, the answer for the newest
    /// epoch below it (Kafka's OffsetsForLeaderEpoch). `None` when every epoch here is newer.
    pub fn end_offset_for(&self, epoch: Epoch, log_end: Offset) -> Option<(Epoch, Offset)> {
        let i = self.entries.partition_point(|e| e.0 <= epoch);
        let found = i.checked_sub(1)?;
        let end = self.entries.get(i).map(|e| e.1).unwrap_or(log_end);
        Some((self.entries[found].0, end))
    }

    pub fn encode(&self) -> String {
        let mut s = format!("0\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            s.push_str(&format!("{} {}\n", e.0, o.0));
        }
        s
    }

    pub fn decode(text: &str) -> Result<EpochCache, String> {
        let mut lines = text.lines();
        if lines.next() != Some("0") {
            return Err("unknown leader-epoch-checkpoint version".into());
        }
        let count: usize = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or("missing entry count")?;
        let mut cache = EpochCache::default();
        for i in 0..count {
            let line = lines.next().ok_or(format!("missing entry {i}"))?;
            let mut it = line.split_whitespace();
            let epoch: i32 = it
                .next()
                .and_then(|x| x.parse().ok())
                .ok_or(format!("bad epoch in entry {i}"))?;
            let start: u64 = it
                .next()
                .and_then(|x| x.parse().ok())
                .ok_or(format!("bad offset in entry {i}"))?;
            if let Some(&(e, s)) = cache.entries.last() {
                if Epoch(epoch) <= e || Offset(start) < s {
                    return Err(format!("entry {i} does not increase"));
                }
            }
            cache.entries.push((Epoch(epoch), Offset(start)));
        }
        Ok(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assign_truncate_and_lookup() {
        let mut c = EpochCache::default();
        assert!(c.assign(Epoch(1), Offset(0)));
        assert!(!c.assign(Epoch(1), Offset(10)));
        assert!(c.assign(Epoch(3), Offset(20)));
        assert!(
            c.assign(Epoch(4), Offset(20)),
            "epoch 3 had no batch: replaced"
        );
        assert_eq!(
            c.entries(),
            &[(Epoch(1), Offset(0)), (Epoch(4), Offset(20))]
        );
        assert_eq!(
            c.end_offset_for(Epoch(1), Offset(50)),
            Some((Epoch(1), Offset(20)))
        );
        assert_eq!(
            c.end_offset_for(Epoch(2), Offset(50)),
            Some((Epoch(1), Offset(20)))
        );
        assert_eq!(
            c.end_offset_for(Epoch(4), Offset(50)),
            Some((Epoch(4), Offset(50)))
        );
        assert_eq!(c.end_offset_for(Epoch(0), Offset(50)), None);
        assert!(c.truncate_to(Offset(20)));
        assert_eq!(c.latest(), Some(Epoch(1)));
        assert!(!c.truncate_to(Offset(20)));
    }

    #[test]
    fn batch_epochs_are_checked_against_the_checkpoint() {
        let mut c = EpochCache::default();
        assert!(
            c.check_batch(Offset(5), Epoch(7), None).is_ok(),
            "no checkpoint"
        );
        assert!(c.check_batch(Offset(5), Epoch(6), Some(Epoch(7))).is_err());
        c.assign(Epoch(2), Offset(10));
        c.assign(Epoch(5), Offset(20));
        assert_eq!(c.epoch_at(Offset(9)), None);
        assert_eq!(c.epoch_at(Offset(19)), Some(Epoch(2)));
        assert_eq!(c.epoch_at(Offset(20)), Some(Epoch(5)));
        assert!(c.check_batch(Offset(12), Epoch(2), None).is_ok());
        assert!(
            c.check_batch(Offset(12), Epoch(5), None).is_err(),
            "too new"
        );
        assert!(c.check_batch(Offset(25), Epoch(5 | 1 << 24), None).is_err());
        assert!(
            c.check_batch(Offset(25), Epoch(4), None).is_err(),
            "too old"
        );
        // Before the first entry: not newer than it, not older than the previous batch.
        assert!(c.check_batch(Offset(3), Epoch(1), Some(Epoch(1))).is_ok());
        assert!(c.check_batch(Offset(3), Epoch(3), None).is_err());
        assert!(c.check_batch(Offset(3), Epoch(0), Some(Epoch(1))).is_err());
    }

    #[test]
    fn file_round_trip_and_rejects_damage() {
        let mut c = EpochCache::default();
        c.assign(Epoch(0), Offset(0));
        c.assign(Epoch(2), Offset(100));
        let text = c.encode();
        assert_eq!(text, "0\n2\n0 0\n2 100\n");
        assert_eq!(EpochCache::decode(&text).unwrap(), c);
        assert!(EpochCache::decode("1\n0\n").is_err());
        assert!(EpochCache::decode("0\n2\n0 0\n").is_err());
        assert!(EpochCache::decode("0\n2\n2 0\n1 5\n").is_err());
        assert!(EpochCache::decode("0\n1\nx 0\n").is_err());
    }
}
