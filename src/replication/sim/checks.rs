//! The safety properties the simulator checks, as code. Each returns a message naming what
//! broke; the harness adds the seed.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::disk::SimDisk;

#[derive(Default)]
pub(super) struct Checks {
    /// term -> the node that was leader in it.
    leaders: HashMap<u64, u64>,
    /// The committed log as far as any node's high watermark went: base -> (end, bytes).
    committed: BTreeMap<u64, (u64, Bytes)>,
    committed_end: u64,
    /// (base offset, payload id) of every batch acknowledged with acks=all.
    pub(super) acked: Vec<(u64, u64)>,
    /// (base offset, bytes) of batches consumers read below a high watermark.
    pub(super) consumed: Vec<(u64, Bytes)>,
}

impl Checks {
    /// At most one leader per term.
    pub(super) fn leader(&mut self, term: u64, node: u64) -> Result<(), String> {
        match self.leaders.insert(term, node) {
            Some(other) if other != node => Err(format!(
                "one leader per term: nodes {other} and {node} both led term {term}"
            )),
            _ => Ok(()),
        }
    }

    /// A node's high watermark moved from `old` to `new`: the batches below it on its disk are
    /// the committed log, byte for byte, identical to what every other node had there.
    pub(super) fn covered(
        &mut self,
        node: u64,
        disk: &SimDisk,
        old: u64,
        new: u64,
    ) -> Result<(), String> {
        if new < old {
            return Err(format!(
                "high watermark of node {node} went back from {old} to {new}"
            ));
        }
        let mut at = old;
        for (base, end, bytes) in disk.batches_in(old, new) {
            if *base != at {
                return Err(format!(
                    "node {node}: batch at {base} where {at} was expected below its high watermark {new}"
                ));
            }
            if *end > new {
                return Err(format!(
                    "node {node}: high watermark {new} inside the batch {base}..{end}"
                ));
            }
            match self.committed.get(base) {
                Some((e, b)) => {
                    if e != end || b != bytes {
                        return Err(format!(
                            "committed prefix changed or differs: node {node} has another batch at {base} (ends {end}, committed one ends {e})"
                        ));
                    }
                }
                None => {
                    if *base != self.committed_end {
                        return Err(format!(
                            "node {node}: committed batch at {base} but the committed log ends at {}",
                            self.committed_end
                        ));
                    }
                    self.committed.insert(*base, (*end, bytes.clone()));
                    self.committed_end = *end;
                }
            }
            at = *end;
        }
        if at != new {
            return Err(format!(
                "node {node}: high watermark {new} but its log below it ends at {at}"
            ));
        }
        Ok(())
    }

    /// After a restart, everything below the highest high watermark the node ever had is still
    /// there, unchanged.
    pub(super) fn survived(&self, node: u64, disk: &SimDisk, hw_max: u64) -> Result<(), String> {
        if disk.end() < hw_max {
            return Err(format!(
                "node {node} restarted with its log ending at {}, below its former high watermark {hw_max}",
                disk.end()
            ));
        }
        for (base, end, bytes) in disk.batches_in(0, hw_max) {
            match self.committed.get(base) {
                Some((e, b)) if e == end && b == bytes => {}
                _ => {
                    return Err(format!(
                        "node {node} lost or changed the committed batch at {base} across a restart"
                    ))
                }
            }
        }
        Ok(())
    }

    /// A consumer's read: kept for the final check.
    pub(super) fn consume(&mut self, offset: u64, bytes: Bytes) {
        self.consumed.push((offset, bytes));
    }

    /// After the run settled: every replica holds the same log; every acknowledged batch is in
    /// it exactly once at its offset; everything a consumer read is there.
    pub(super) fn final_check(&self, disks: &[(u64, &SimDisk)]) -> Result<(), String> {
        let (first_node, first) = disks[0];
        for (node, d) in &disks[1..] {
            if d.all() != first.all() {
                let at = d
                    .all()
                    .iter()
                    .zip(first.all())
                    .position(|(a, b)| a != b)
                    .unwrap_or(d.all().len().min(first.all().len()));
                return Err(format!(
                    "after settling, node {node} and node {first_node} differ at batch {at} (ends {} vs {})",
                    d.end(),
                    first.end()
                ));
            }
        }
        let mut found: HashMap<u64, Vec<u64>> = HashMap::new();
        for (base, _, bytes) in first.all() {
            if let Some(p) = payload_of(bytes) {
                found.entry(p).or_default().push(*base);
            }
        }
        for &(offset, payload) in &self.acked {
            match found.get(&payload).map(Vec::as_slice) {
                Some([at]) if *at == offset => {}
                Some(ats) => {
                    return Err(format!(
                        "acknowledged payload {payload} at {offset} found at {ats:?}"
                    ))
                }
                None => return Err(format!("acknowledged payload {payload} at {offset} lost")),
            }
        }
        for (offset, bytes) in &self.consumed {
            if first.batch_at(*offset) != Some(bytes) {
                return Err(format!(
                    "a consumer read a batch at {offset} that is no longer there"
                ));
            }
        }
        Ok(())
    }
}

/// The payload id a client batch carries: its first record's value, 8 bytes. Control batches
/// have none.
pub(super) fn payload_of(batch: &[u8]) -> Option<u64> {
    let h = crate::record::BatchHeader::parse(batch).ok()?;
    if h.is_control() {
        return None;
    }
    let rec = crate::record::records(batch).ok()?.next()?.ok()?;
    let v: [u8; 8] = rec.value?.try_into().ok()?;
    Some(u64::from_be_bytes(v))
}
