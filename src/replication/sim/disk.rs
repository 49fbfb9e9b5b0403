//! A node's simulated disk: its partition log as a list of batches with a durable prefix and an
//! unsynced tail, and its persisted state.

use bytes::{Bytes, BytesMut};

use super::Rng;
use crate::replication::raft::{BatchMeta, PersistedState};

pub(super) struct SimDisk {
    /// (base offset, end offset, bytes), contiguous.
    log: Vec<(u64, u64, Bytes)>,
    /// The first `synced` batches are durable.
    synced: usize,
    /// The durable state file.
    pub(super) state: PersistedState,
}

impl SimDisk {
    pub(super) fn new(voters: Vec<u64>) -> SimDisk {
        SimDisk {
            log: Vec::new(),
            synced: 0,
            state: PersistedState::new(voters),
        }
    }

    pub(super) fn end(&self) -> u64 {
        self.log.last().map_or(0, |b| b.1)
    }

    fn position(&self, offset: u64) -> Result<usize, usize> {
        self.log.binary_search_by(|b| b.0.cmp(&offset))
    }

    /// Cuts the log to end at `to` (a batch boundary) and makes the cut durable, like
    /// `PartitionLog`'s `truncate_synced`.
    pub(super) fn truncate(&mut self, to: u64) {
        if to >= self.end() {
            return;
        }
        let k = self
            .position(to)
            .unwrap_or_else(|_| panic!("truncation to {to}, not a batch boundary"));
        self.log.truncate(k);
        self.synced = self.synced.min(k);
    }

    /// Appends a batch (not durable until `sync`).
    pub(super) fn append(&mut self, meta: BatchMeta, bytes: Bytes) {
        assert_eq!(meta.base_offset, self.end(), "append not at the log end");
        self.log.push((meta.base_offset, meta.end_offset(), bytes));
    }

    pub(super) fn sync(&mut self) {
        self.synced = self.log.len();
    }

    /// A crash: the unsynced tail is lost, or a prefix of it survives (a torn batch is cut by
    /// recovery, so only whole batches remain).
    pub(super) fn crash(&mut self, rng: &mut Rng) {
        let unsynced = self.log.len() - self.synced;
        let keep = if unsynced == 0 {
            0
        } else {
            rng.below(unsynced as u64 + 1) as usize
        };
        self.log.truncate(self.synced + keep);
        self.synced = self.log.len();
    }

    /// The headers of the batches from `offset` (a boundary) to the end; empty if the log ends
    /// at or before it.
    pub(super) fn metas_from(&self, offset: u64) -> Vec<BatchMeta> {
        let Ok(k) = self.position(offset) else {
            return Vec::new();
        };
        self.log[k..]
            .iter()
            .map(|(b, e, bytes)| {
                let h = crate::record::BatchHeader::parse(bytes).expect("stored batches parse");
                BatchMeta {
                    base_offset: *b,
                    last_offset: e - 1,
                    epoch: h.partition_leader_epoch,
                    bytes: bytes.len() as u32,
                }
            })
            .collect()
    }

    /// Whole batches from `from` (a boundary) below `to`, at most `max_bytes` but at least one.
    /// `None` if `from` is not a boundary below `to`.
    pub(super) fn read(&self, from: u64, to: u64, max_bytes: u64) -> Option<Bytes> {
        let k = self.position(from).ok()?;
        let mut out = BytesMut::new();
        for (_, end, bytes) in &self.log[k..] {
            if *end > to || (!out.is_empty() && (out.len() + bytes.len()) as u64 > max_bytes) {
                break;
            }
            out.extend_from_slice(bytes);
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    /// The batch starting at `offset`.
    pub(super) fn batch_at(&self, offset: u64) -> Option<&Bytes> {
        self.position(offset).ok().map(|k| &self.log[k].2)
    }

    /// The batch holding offset `offset`.
    pub(super) fn batch_containing(&self, offset: u64) -> Option<(u64, Bytes)> {
        let k = match self.position(offset) {
            Ok(k) => k,
            Err(0) => return None,
            Err(k) => k - 1,
        };
        let (base, end, bytes) = self.log.get(k)?;
        (*base <= offset && offset < *end).then(|| (*base, bytes.clone()))
    }

    /// The batches covering `from..to`, in order.
    pub(super) fn batches_in(
        &self,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = &(u64, u64, Bytes)> {
        let k = self.position(from).unwrap_or_else(|k| k);
        self.log[k..].iter().take_while(move |b| b.0 < to)
    }

    pub(super) fn all(&self) -> &[(u64, u64, Bytes)] {
        &self.log
    }
}
