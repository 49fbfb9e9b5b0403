//! Damaged ranges of a partition (sans-I/O): offsets that were written (and, below the recovery
//! point, durable) but whose bytes failed their checks when read back. They are never served and
//! never truncated away: reads skip them with an error naming the range and the next readable
//! offset, appends continue after the true log end, and replication will re-fetch them from a
//! replica (`PartitionLog::repair_range`).
//!
//! Persisted in `damaged-ranges` beside the segments, so a restart reports the same ranges and
//! recovery can step over them without searching again (after checking that the bytes there
//! still fail: a range repaired just before a crash is read as valid). Text, as Kafka's
//! checkpoint files: a version line `1`, a count line, one line per range, then the
//! `crc32c` line of `checkpoint.rs` (version `0` files, without it, are still read). A range:
//! `<first offset> <last offset> <segment base> <start position> <end position> <reason>`, where
//! the positions are the byte span of the damaged bytes in that segment's `.log` and the reason
//! is the rest of the line. Ranges are sorted and do not overlap.

use super::checkpoint::{seal, unseal};
use crate::types::Offset;

pub const DAMAGED_RANGES_FILE: &str = "damaged-ranges";

/// One damaged range: offsets `first..=last`, stored in the bytes `start_pos..end_pos` of the
/// segment whose base offset is `segment` (the span may be empty when the bytes are gone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedRange {
    pub first: Offset,
    pub last: Offset,
    pub segment: Offset,
    pub start_pos: u64,
    pub end_pos: u64,
    /// What failed, for the log line and for `quill topic describe`.
    pub reason: String,
}

impl DamagedRange {
    pub fn contains(&self, offset: Offset) -> bool {
        self.first <= offset && offset <= self.last
    }

    /// The first offset after the range: where a reader continues.
    pub fn next(&self) -> Offset {
        self.last.plus(1)
    }
}

/// The damaged ranges of one log, oldest first. Lives in the log state on the log's shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DamageTable {
    ranges: Vec<DamagedRange>,
}

impl DamageTable {
    pub fn ranges(&self) -> &[DamagedRange] {
        &self.ranges
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The range holding `offset`, if any.
    pub fn containing(&self, offset: Offset) -> Option<&DamagedRange> {
        let i = self.ranges.partition_point(|r| r.last < offset);
        self.ranges.get(i).filter(|r| r.contains(offset))
    }

    /// The ranges of segment `base`, oldest first.
    pub fn in_segment(&self, base: Offset) -> impl Iterator<Item = &DamagedRange> {
        self.ranges.iter().filter(move |r| r.segment == base)
    }

    /// Adds a range. A range overlapping known ones (the same damage found again, or found
    /// larger) replaces them with their union. Returns whether the table changed.
    pub fn insert(&mut self, range: DamagedRange) -> bool {
        assert!(range.first <= range.last, "empty damaged range {range:?}");
        assert!(range.start_pos <= range.end_pos, "inverted span {range:?}");
        let lo = self.ranges.partition_point(|r| r.last < range.first);
        let hi = self.ranges.partition_point(|r| r.first <= range.last);
        if hi == lo + 1 && self.ranges[lo] == range {
            return false;
        }
        let mut merged = range;
        for r in self.ranges.drain(lo..hi) {
            if r.segment == merged.segment {
                merged.start_pos = merged.start_pos.min(r.start_pos);
                merged.end_pos = merged.end_pos.max(r.end_pos);
            }
            merged.first = merged.first.min(r.first);
            merged.last = merged.last.max(r.last);
        }
        self.ranges.insert(lo, merged);
        true
    }

    /// Removes a range that was repaired. Returns whether it was there.
    pub fn remove(&mut self, first: Offset) -> Option<DamagedRange> {
        let i = self.ranges.iter().position(|r| r.first == first)?;
        Some(self.ranges.remove(i))
    }

    /// Forgets the ranges of segments that no longer exist (`keep` says which do). Returns
    /// whether the table changed.
    pub fn retain_segments(&mut self, keep: impl Fn(Offset) -> bool) -> bool {
        let n = self.ranges.len();
        self.ranges.retain(|r| keep(r.segment));
        n != self.ranges.len()
    }

    /// Forgets ranges at or after `end` (the log was truncated there). A range holding `end`
    /// is the caller's to refuse. Returns whether the table changed.
    pub fn truncate_to(&mut self, end: Offset) -> bool {
        let keep = self.ranges.partition_point(|r| r.first < end);
        let changed = keep < self.ranges.len();
        self.ranges.truncate(keep);
        changed
    }

    pub fn encode(&self) -> String {
        let mut s = format!("1\n{}\n", self.ranges.len());
        for r in &self.ranges {
            let reason: String = r
                .reason
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            s.push_str(&format!(
                "{} {} {} {} {} {}\n",
                r.first.0, r.last.0, r.segment.0, r.start_pos, r.end_pos, reason
            ));
        }
        seal(s)
    }

    pub fn decode(text: &str) -> Result<DamageTable, String> {
        let (_, body) = unseal(text)?;
        let mut lines = body.lines().skip(1);
        let count: usize = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or("missing range count")?;
        let mut table = DamageTable::default();
        for i in 0..count {
            let line = lines.next().ok_or(format!("missing range {i}"))?;
            let mut it = line.splitn(6, ' ');
            let mut num = |what: &str| -> Result<u64, String> {
                it.next()
                    .and_then(|x| x.parse().ok())
                    .ok_or(format!("bad {what} in range {i}"))
            };
            let (first, last, segment) = (num("first")?, num("last")?, num("segment")?);
            let (start_pos, end_pos) = (num("start")?, num("end")?);
            let reason = it.next().unwrap_or("").to_string();
            if first > last || start_pos > end_pos || segment > first {
                return Err(format!("range {i} is inconsistent"));
            }
            if table.ranges.last().is_some_and(|r| r.last.0 >= first) {
                return Err(format!("range {i} does not increase"));
            }
            table.ranges.push(DamagedRange {
                first: Offset(first),
                last: Offset(last),
                segment: Offset(segment),
                start_pos,
                end_pos,
                reason,
            });
        }
        if lines.next().is_some() {
            return Err("trailing lines".into());
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: u64, last: u64, seg: u64, start: u64, end: u64) -> DamagedRange {
        DamagedRange {
            first: Offset(first),
            last: Offset(last),
            segment: Offset(seg),
            start_pos: start,
            end_pos: end,
            reason: "bad crc".into(),
        }
    }

    #[test]
    fn insert_lookup_and_merge() {
        let mut t = DamageTable::default();
        assert!(t.insert(r(10, 19, 0, 100, 200)));
        assert!(t.insert(r(40, 44, 30, 0, 50)));
        assert!(!t.insert(r(10, 19, 0, 100, 200)), "the same range again");
        assert_eq!(t.containing(Offset(9)), None);
        assert_eq!(t.containing(Offset(10)).unwrap().first, Offset(10));
        assert_eq!(t.containing(Offset(19)).unwrap().next(), Offset(20));
        assert_eq!(t.containing(Offset(20)), None);
        // Found larger: the union replaces it.
        assert!(t.insert(r(15, 25, 0, 150, 260)));
        assert_eq!(t.ranges()[0], r(10, 25, 0, 100, 260));
        assert_eq!(t.in_segment(Offset(30)).count(), 1);
        assert!(t.truncate_to(Offset(40)));
        assert_eq!(t.ranges().len(), 1);
        assert!(t.retain_segments(|s| s != Offset(0)));
        assert!(t.is_empty());
    }

    #[test]
    fn file_round_trip_and_rejects_damage() {
        let mut t = DamageTable::default();
        t.insert(r(10, 19, 0, 100, 200));
        let mut odd = r(40, 44, 30, 0, 0);
        odd.reason = "invalid batch at byte 0:\nbad crc".into();
        t.insert(odd);
        let text = t.encode();
        let body = "1\n2\n10 19 0 100 200 bad crc\n40 44 30 0 0 invalid batch at byte 0: bad crc\n";
        assert!(text.starts_with(body), "{text}");
        assert!(text[body.len()..].starts_with("crc32c "));
        let back = DamageTable::decode(&text).unwrap();
        // Version 0, without the crc32c line, is still read; with a line after it, refused.
        let old = body.replacen('1', "0", 1);
        assert_eq!(DamageTable::decode(&old).unwrap(), back);
        assert!(DamageTable::decode(&text.replacen('1', "0", 1)).is_err());
        // A flipped digit that still parses is refused.
        assert!(DamageTable::decode(&text.replacen("19", "11", 1)).is_err());
        assert_eq!(back.ranges()[0], t.ranges()[0]);
        assert_eq!(back.ranges()[1].reason, "invalid batch at byte 0: bad crc");
        assert!(DamageTable::decode("1\n0\n").is_err());
        assert!(DamageTable::decode("0\n1\n").is_err());
        assert!(DamageTable::decode("0\n1\n9 5 0 0 0 x\n").is_err());
        assert!(DamageTable::decode("0\n2\n1 5 0 0 1 x\n5 6 0 1 2 x\n").is_err());
        assert!(DamageTable::decode("0\n1\n1 x 0 0 1 x\n").is_err());
        assert_eq!(
            DamageTable::decode("0\n0\n").unwrap(),
            DamageTable::default()
        );
    }
}
