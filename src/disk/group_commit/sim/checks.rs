//! The checks of the simulation: the safety properties of group commit, stated as code, run at
//! every acknowledgement, after every step and at the end of a run.

use super::{mode_index, Append, Fate, Sim};
use crate::disk::config::Durability;
use crate::types::Offset;

impl Sim {
    /// The written bytes of the segment with an appender are the appends' bytes.
    pub(super) fn check_written_prefix(&self) {
        for s in &self.segs {
            let Some(app) = &s.app else { continue };
            let w = app.written().pos as usize;
            for a in self.live_in(s.base) {
                let end = a.pos as usize + a.bytes.len();
                if end <= w {
                    assert_eq!(
                        &s.volatile[a.pos as usize..end],
                        &a.bytes[..],
                        "written bytes of the append at {} differ",
                        a.base
                    );
                }
            }
        }
    }

    /// Appends whose bytes are in the log: not cut.
    pub(super) fn live_in(&self, seg: Offset) -> impl Iterator<Item = &Append> {
        self.appends
            .iter()
            .filter(move |a| a.seg == seg && a.fate != Fate::Cut)
    }

    pub(super) fn acked(&mut self, id: usize) {
        assert!(
            !self.poisoned,
            "append {id} acknowledged after a failed sync"
        );
        let a = &self.appends[id];
        assert_eq!(
            a.fate,
            Fate::Waiting,
            "append {id} acknowledged twice or after failing"
        );
        let m = mode_index(a.durability);
        assert!(
            a.next > self.last_ack[m],
            "acknowledgements out of offset order: {} after {}",
            a.next,
            self.last_ack[m]
        );
        let s = self
            .segs
            .iter()
            .find(|s| s.base == a.seg)
            .expect("an acknowledged append's segment exists");
        let (image, what) = match a.durability {
            Durability::Sync => (&s.durable, "covered by a completed fdatasync"),
            Durability::Interval => (&s.volatile, "written"),
        };
        let range = a.pos as usize..a.pos as usize + a.bytes.len();
        assert!(
            image.get(range.clone()) == Some(&a.bytes[..]),
            "append {id} (offsets {}..{}, {:?}) acknowledged before its bytes were {what}",
            a.base,
            a.next,
            a.durability
        );
        self.last_ack[m] = a.next;
        self.appends[id].fate = Fate::Acked;
        self.stats.acks += 1;
    }

    /// Checks that hold after every step.
    pub(super) fn check(&self) {
        assert!(self.core.durable() <= self.core.written());
        assert!(self.core.written() <= self.next_offset);
        if self.poisoned {
            assert!(self.appends.iter().all(|a| a.fate != Fate::Waiting));
        }
    }

    /// Faults off: lets everything in flight complete and acknowledges everything, then checks
    /// that every append is settled and that the durable image holds exactly the survivors.
    pub(super) fn finish(&mut self) {
        self.faults_on = false;
        self.micros += 1_000_000;
        // A drain fails when a write failed before it (after its rollback): drain again.
        for _ in 0..3 {
            if self.poisoned || self.drained() {
                break;
            }
            self.drain(false);
        }
        while !self.io.is_empty() {
            self.complete(0);
        }
        for _ in 0..self.appends.len() + 1 {
            self.ack_pass();
        }
        if self.poisoned {
            return;
        }
        for (id, a) in self.appends.iter().enumerate() {
            assert!(
                matches!(a.fate, Fate::Acked | Fate::Cut),
                "append {id} is {:?} at the end",
                a.fate
            );
        }
        for s in &self.segs {
            let mut expect = Vec::new();
            for a in self.live_in(s.base) {
                assert_eq!(
                    a.pos as usize,
                    expect.len(),
                    "appends of a segment are contiguous"
                );
                expect.extend_from_slice(&a.bytes);
            }
            assert_eq!(s.size as usize, expect.len());
            assert!(
                s.durable.len() >= expect.len() && s.durable[..expect.len()] == expect[..],
                "segment {} is not durable as appended",
                s.base
            );
        }
    }
}
