//! The part of a partition log Raft can see: an [`Anchor`] and, for every index after it, the
//! facts of its batch (offsets, term, size) and maybe its bytes.
//!
//! Index `anchor.index + 1 + k` is the `k`-th batch at or after `anchor.offset`; offsets are a
//! pure function of the entry sequence, so the window is rebuilt after a restart from the batch
//! headers alone ([`Window::rebuild`]). Bytes are kept for recent entries only (the cache); older
//! ones are read back from the log when a follower needs them.

use std::collections::VecDeque;

use bytes::Bytes;

use super::batch::BatchMeta;
use super::error::ReplicaError;

/// The last entry Raft no longer sees in the window (Raft's compacted index): everything up to
/// it is committed and locally durable, and the log holds its batches below `offset`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anchor {
    pub index: u64,
    pub term: u64,
    /// The offset after the anchor's batch: where the entry `index + 1` starts.
    pub offset: u64,
}

#[derive(Clone, Debug)]
struct Slot {
    term: u64,
    meta: BatchMeta,
    data: Option<Bytes>,
}

/// An anchor and the entries after it. Lives on the group's shard, inside its replica.
#[derive(Debug)]
pub(crate) struct Window {
    anchor: Anchor,
    slots: VecDeque<Slot>,
    /// Sum of the batch sizes of `slots`.
    bytes: u64,
    /// Sum of the sizes of the slots whose bytes are cached.
    cached_bytes: u64,
    /// No slot before this position holds bytes (eviction resumes here).
    evict_from: usize,
}

impl Window {
    pub(crate) fn new(anchor: Anchor) -> Window {
        Window {
            anchor,
            slots: VecDeque::new(),
            bytes: 0,
            cached_bytes: 0,
            evict_from: 0,
        }
    }

    /// The window of a log whose batches from `anchor.offset` on are `metas`, in order. Each
    /// batch is one entry whose term is its epoch. Fails if the batches are not contiguous from
    /// the anchor or their epochs go backwards or below the anchor's term.
    pub(crate) fn rebuild(anchor: Anchor, metas: &[BatchMeta]) -> Result<Window, ReplicaError> {
        let mut w = Window::new(anchor);
        let mut term = anchor.term;
        for m in metas {
            let expected = w.end_offset();
            if m.base_offset != expected || m.last_offset < m.base_offset {
                return Err(ReplicaError::LogNotContiguous {
                    expected,
                    found: m.base_offset,
                });
            }
            let t = u64::try_from(m.epoch).unwrap_or(0);
            if t < term || t == 0 {
                return Err(ReplicaError::EpochOrder {
                    offset: m.base_offset,
                    epoch: m.epoch,
                    previous: term,
                });
            }
            term = t;
            w.push(t, *m, None);
        }
        Ok(w)
    }

    pub(crate) fn anchor(&self) -> Anchor {
        self.anchor
    }

    pub(crate) fn first_index(&self) -> u64 {
        self.anchor.index + 1
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.anchor.index + self.slots.len() as u64
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn cached_bytes(&self) -> u64 {
        self.cached_bytes
    }

    /// The offset after the last entry: where the next one starts.
    pub(crate) fn end_offset(&self) -> u64 {
        self.slots
            .back()
            .map_or(self.anchor.offset, |s| s.meta.end_offset())
    }

    fn slot(&self, index: u64) -> Option<&Slot> {
        let k = index.checked_sub(self.first_index())?;
        self.slots.get(usize::try_from(k).ok()?)
    }

    /// The term of `index`, for the anchor and the entries after it.
    pub(crate) fn term(&self, index: u64) -> Option<u64> {
        if index == self.anchor.index {
            return Some(self.anchor.term);
        }
        self.slot(index).map(|s| s.term)
    }

    pub(crate) fn meta(&self, index: u64) -> Option<BatchMeta> {
        self.slot(index).map(|s| s.meta)
    }

    pub(crate) fn data(&self, index: u64) -> Option<&Bytes> {
        self.slot(index).and_then(|s| s.data.as_ref())
    }

    /// The offset after entry `index` (the anchor's offset for the anchor itself).
    pub(crate) fn end_of(&self, index: u64) -> Option<u64> {
        if index == self.anchor.index {
            return Some(self.anchor.offset);
        }
        self.slot(index).map(|s| s.meta.end_offset())
    }

    /// Appends the entry after the last one.
    pub(crate) fn push(&mut self, term: u64, meta: BatchMeta, data: Option<Bytes>) {
        debug_assert_eq!(meta.base_offset, self.end_offset());
        self.bytes += u64::from(meta.bytes);
        if data.is_some() {
            self.cached_bytes += u64::from(meta.bytes);
        }
        self.slots.push_back(Slot { term, meta, data });
    }

    /// Drops `index` and everything after it; returns the offset the log must be cut to.
    ///
    /// # Panics
    /// If `index` is at or before the anchor (committed entries are never cut).
    pub(crate) fn truncate_from(&mut self, index: u64) -> u64 {
        assert!(
            index > self.anchor.index,
            "truncating at {index}, at or before the anchor {:?}",
            self.anchor
        );
        let keep = (index - self.first_index()) as usize;
        while self.slots.len() > keep {
            let s = self.slots.pop_back().expect("len > keep");
            self.bytes -= u64::from(s.meta.bytes);
            if s.data.is_some() {
                self.cached_bytes -= u64::from(s.meta.bytes);
            }
        }
        self.evict_from = self.evict_from.min(self.slots.len());
        self.end_offset()
    }

    /// Moves the anchor to `index`, forgetting the entries up to it.
    ///
    /// # Panics
    /// If `index` is not in the window.
    pub(crate) fn compact_to(&mut self, index: u64) {
        let end = self
            .end_of(index)
            .expect("compacting to an index outside the window");
        let term = self.term(index).expect("in the window");
        let n = (index - self.anchor.index) as usize;
        for s in self.slots.drain(..n) {
            self.bytes -= u64::from(s.meta.bytes);
            if s.data.is_some() {
                self.cached_bytes -= u64::from(s.meta.bytes);
            }
        }
        self.evict_from = self.evict_from.saturating_sub(n);
        self.anchor = Anchor {
            index,
            term,
            offset: end,
        };
    }

    /// Forgets everything: the log is now the one a snapshot at `anchor` describes.
    pub(crate) fn reset(&mut self, anchor: Anchor) {
        *self = Window::new(anchor);
    }

    /// Caches the bytes of entry `index` read back from the log. Returns false (and keeps
    /// nothing) if they are not the batch the window expects there.
    pub(crate) fn fill(&mut self, index: u64, data: Bytes, meta: BatchMeta) -> bool {
        let Some(k) = index.checked_sub(self.first_index()) else {
            return false;
        };
        let k = k as usize;
        let Some(slot) = self.slots.get_mut(k) else {
            return false;
        };
        if slot.meta != meta {
            return false;
        }
        if slot.data.is_none() {
            self.cached_bytes += u64::from(meta.bytes);
            slot.data = Some(data);
            self.evict_from = self.evict_from.min(k);
        }
        true
    }

    /// Drops cached bytes, oldest first, until at most `cache_bytes_max` are cached, never for
    /// entries after `evictable_to` (not yet durable: the log cannot give them back).
    pub(crate) fn evict(&mut self, cache_bytes_max: u64, evictable_to: u64) {
        while self.cached_bytes > cache_bytes_max && self.evict_from < self.slots.len() {
            let index = self.first_index() + self.evict_from as u64;
            if index > evictable_to {
                break;
            }
            let s = &mut self.slots[self.evict_from];
            if s.data.take().is_some() {
                self.cached_bytes -= u64::from(s.meta.bytes);
            }
            self.evict_from += 1;
        }
    }

    /// The last index `i >= from` such that entries `from..=i` hold at most `bytes_max` bytes
    /// (at least `from` itself), capped at `to`.
    pub(crate) fn span(&self, from: u64, to: u64, bytes_max: u64) -> u64 {
        let mut total = 0u64;
        let mut last = from;
        for i in from..=to {
            let Some(m) = self.meta(i) else { break };
            total += u64::from(m.bytes);
            if i > from && total > bytes_max {
                break;
            }
            last = i;
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(base: u64, n: u64, epoch: i32) -> BatchMeta {
        BatchMeta {
            base_offset: base,
            last_offset: base + n - 1,
            epoch,
            bytes: 100 + n as u32,
        }
    }

    fn three() -> Window {
        let a = Anchor {
            index: 10,
            term: 2,
            offset: 50,
        };
        Window::rebuild(a, &[meta(50, 3, 2), meta(53, 1, 3), meta(54, 5, 3)]).unwrap()
    }

    #[test]
    fn rebuild_maps_indexes_to_offsets() {
        let w = three();
        assert_eq!((w.first_index(), w.last_index()), (11, 13));
        assert_eq!(w.term(10), Some(2));
        assert_eq!(w.term(12), Some(3));
        assert_eq!(w.term(14), None);
        assert_eq!(w.term(9), None);
        assert_eq!(w.end_of(10), Some(50));
        assert_eq!(w.end_of(11), Some(53));
        assert_eq!(w.end_offset(), 59);
        assert_eq!(w.bytes(), 103 + 101 + 105);
        assert_eq!(w.cached_bytes(), 0);
    }

    #[test]
    fn rebuild_refuses_gaps_and_epochs_going_back() {
        let a = Anchor {
            index: 0,
            term: 0,
            offset: 0,
        };
        assert!(matches!(
            Window::rebuild(a, &[meta(0, 1, 1), meta(2, 1, 1)]),
            Err(ReplicaError::LogNotContiguous {
                expected: 1,
                found: 2
            })
        ));
        assert!(matches!(
            Window::rebuild(a, &[meta(0, 1, 2), meta(1, 1, 1)]),
            Err(ReplicaError::EpochOrder { .. })
        ));
        assert!(matches!(
            Window::rebuild(a, &[meta(0, 1, -1)]),
            Err(ReplicaError::EpochOrder { .. })
        ));
    }

    #[test]
    fn truncate_gives_the_cut_offset() {
        let mut w = three();
        assert_eq!(w.truncate_from(12), 53);
        assert_eq!(w.last_index(), 11);
        assert_eq!(w.end_offset(), 53);
        assert_eq!(w.bytes(), 103);
        w.push(4, meta(53, 2, 4), Some(Bytes::from_static(b"x")));
        assert_eq!(w.term(12), Some(4));
        assert_eq!(w.cached_bytes(), 102);
        assert_eq!(w.truncate_from(11), 50);
        assert_eq!(w.cached_bytes(), 0);
        assert_eq!(w.end_offset(), 50);
    }

    #[test]
    #[should_panic(expected = "at or before the anchor")]
    fn truncating_the_anchor_is_a_bug() {
        three().truncate_from(10);
    }

    #[test]
    fn compact_moves_the_anchor() {
        let mut w = three();
        w.compact_to(12);
        assert_eq!(
            w.anchor(),
            Anchor {
                index: 12,
                term: 3,
                offset: 54
            }
        );
        assert_eq!(w.first_index(), 13);
        assert_eq!(w.last_index(), 13);
        assert_eq!(w.term(12), Some(3));
        assert_eq!(w.end_of(11), None);
        assert_eq!(w.bytes(), 105);
        w.compact_to(13);
        assert_eq!(w.len(), 0);
        assert_eq!(w.end_offset(), 59);
    }

    #[test]
    fn evicts_oldest_durable_bytes_and_fill_checks_the_batch() {
        let mut w = Window::new(Anchor::default());
        for i in 0..4u64 {
            w.push(1, meta(i, 1, 1), Some(Bytes::from(vec![0u8; 10])));
        }
        assert_eq!(w.cached_bytes(), 4 * 101);
        // Only entries up to 2 are durable: 3 and 4 stay whatever the budget.
        w.evict(0, 2);
        assert_eq!(w.cached_bytes(), 2 * 101);
        assert!(w.data(1).is_none() && w.data(2).is_none() && w.data(3).is_some());
        // A read-back batch must be the one expected there.
        assert!(!w.fill(1, Bytes::new(), meta(0, 1, 2)));
        assert!(w.fill(1, Bytes::new(), meta(0, 1, 1)));
        assert_eq!(w.cached_bytes(), 3 * 101);
        w.evict(101 * 2, 4);
        assert!(w.data(1).is_none());
        assert!(w.data(3).is_some());
    }

    #[test]
    fn span_caps_by_bytes_but_takes_one() {
        let w = three();
        assert_eq!(w.span(11, 13, 0), 11);
        assert_eq!(w.span(11, 13, 210), 12);
        assert_eq!(w.span(11, 13, 10_000), 13);
        assert_eq!(w.span(12, 12, 10_000), 12);
    }
}
