//! raft-rs's [`Storage`] over the [`Window`]: what Raft reads of its log.
//!
//! - `first_index` = anchor + 1, `term(anchor)` = anchor term, `last_index` = the window's last.
//! - `entries` returns cached bytes. An entry whose bytes are not cached, asked for in a context
//!   that can wait (sending to a follower), makes it answer `LogTemporarilyUnavailable` and
//!   remember the request: the replica turns it into `Action::ReadLog` and calls
//!   `on_entries_fetched` when the bytes are back. In a context that cannot wait (committed
//!   entries for a ready, pending-conf checks before a campaign or after a vote's commit), raft-rs
//!   only looks at indexes, terms and entry types: such entries come back without their data.
//!   Nothing in those paths sends data to another node.
//! - `snapshot` is the anchor as snapshot metadata; its data is the anchor's offset (8 bytes,
//!   big-endian): the follower fetches the log up to it (`Persist::catch_up`).

use std::cell::RefCell;

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::window::{Anchor, Window};

/// An entry request raft-rs must wait for.
pub(crate) struct Want {
    pub(crate) low: u64,
    pub(crate) high: u64,
    pub(crate) context: GetEntriesContext,
}

/// The storage raft-rs owns inside the replica's `RawNode`. Lives on the group's shard.
pub(crate) struct WindowStorage {
    pub(crate) window: Window,
    hard_state: HardState,
    conf_state: ConfState,
    /// Requests answered `LogTemporarilyUnavailable`, taken by the replica after each call.
    pub(crate) wants: RefCell<Vec<Want>>,
}

/// Protobuf overhead counted per entry against `max_size` (index, term, type, length tags).
const ENTRY_OVERHEAD_BYTES: u64 = 24;

impl WindowStorage {
    pub(crate) fn new(window: Window, hard_state: HardState, voters: &[u64]) -> WindowStorage {
        let conf_state = ConfState {
            voters: voters.to_vec(),
            ..Default::default()
        };
        WindowStorage {
            window,
            hard_state,
            conf_state,
            wants: RefCell::new(Vec::new()),
        }
    }

    /// The snapshot the anchor stands for.
    pub(crate) fn anchor_snapshot(&self) -> Snapshot {
        let a = self.window.anchor();
        let mut s = Snapshot {
            data: Bytes::copy_from_slice(&a.offset.to_be_bytes()),
            ..Default::default()
        };
        let m = s.mut_metadata();
        m.index = a.index;
        m.term = a.term;
        m.set_conf_state(self.conf_state.clone());
        s
    }
}

/// The anchor a snapshot describes, or `None` if its data is not an offset.
pub(crate) fn snapshot_anchor(s: &Snapshot) -> Option<Anchor> {
    let data: [u8; 8] = s.data.as_ref().try_into().ok()?;
    Some(Anchor {
        index: s.get_metadata().index,
        term: s.get_metadata().term,
        offset: u64::from_be_bytes(data),
    })
}

impl raft::Storage for WindowStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let w = &self.window;
        if low < w.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > w.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max = max_size.into().unwrap_or(u64::MAX);
        let can_wait = context.can_async();
        let mut out = Vec::with_capacity((high - low).min(64) as usize);
        let mut size = 0u64;
        for index in low..high {
            let data = match w.data(index) {
                Some(d) => d.clone(),
                None if !can_wait => Bytes::new(),
                None if out.is_empty() => {
                    self.wants.borrow_mut().push(Want { low, high, context });
                    return Err(raft::Error::Store(StorageError::LogTemporarilyUnavailable));
                }
                // Send what is cached; the next append asks for the rest.
                None => break,
            };
            size += data.len() as u64 + ENTRY_OVERHEAD_BYTES;
            if !out.is_empty() && size > max {
                break;
            }
            out.push(Entry {
                index,
                term: w.term(index).expect("index inside the window"),
                data,
                ..Default::default()
            });
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let w = &self.window;
        if idx < w.anchor().index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        w.term(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.window.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.window.last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.window.anchor().index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.anchor_snapshot())
    }
}
