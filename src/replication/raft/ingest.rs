//! What comes into a replica's log from outside: checks of a Raft message before raft-rs sees
//! it (and the stale rejections it must not see), the bytes stored for an entry (stamped, or a
//! control batch), and the check of batches fetched for a catch-up. Free functions over the
//! window, used by `replica.rs`.

use bytes::{Bytes, BytesMut};
use raft::eraftpb::{Message, MessageType};
use raft::{Raft, StateRole, Storage, INVALID_INDEX};

use super::batch::{check_batch, control_batch, epoch_of, stamp, BatchMeta, UNSTAMPED_EPOCH};
use super::error::{FetchedError, ReplicaError};
use super::storage::snapshot_anchor;
use super::window::Window;
use crate::record::{batches, BatchHeader};

/// Checks a message before raft-rs sees it, so a bad one changes nothing.
pub(super) fn check_message(
    m: &Message,
    id: u64,
    voters: &[u64],
    w: &Window,
    batch_bytes_max: usize,
) -> Result<(), ReplicaError> {
    if m.to != id || !voters.contains(&m.from) || m.from == id {
        return Err(ReplicaError::Misrouted {
            from: m.from,
            to: m.to,
            id,
        });
    }
    match m.get_msg_type() {
        // Proposals are never forwarded (raft-rs 0.7 has no disable_proposal_forwarding:
        // refusing them here has the same effect).
        MessageType::MsgPropose => Err(ReplicaError::Raft("forwarded proposal".into())),
        MessageType::MsgSnapshot => {
            let len = m.get_snapshot().data.len();
            if snapshot_anchor(m.get_snapshot()).is_none() {
                return Err(ReplicaError::BadSnapshot(len));
            }
            Ok(())
        }
        MessageType::MsgAppend => check_append(m, w, batch_bytes_max),
        _ => Ok(()),
    }
}

/// Whether the leader must drop `m` instead of stepping it: a rejected append (not a snapshot
/// request) for an index the follower has since acknowledged (`index <= matched`).
///
/// Workaround for tikv/raft-rs#557 (issue #555, a port of etcd-io/raft#149), fixed upstream in
/// 2fbeee5 and not in raft 0.7.0. A rejection overtaken by a later successful append (the
/// network reordered them) that reaches a leader whose progress for that follower is in Probe
/// (after a later live rejection, or a failed snapshot) passes 0.7.0's staleness check there
/// (`next_idx - 1 == rejected`) and sets `next_idx = min(rejected, hint + 1)`, at or below
/// `matched`: the leader resends acknowledged entries, or a snapshot if the anchor has moved
/// past them. Such a rejection is stale by construction. 0.7.0 already ignores exactly these in
/// Replicate state; this applies the same rule in every state, where upstream clamps `next_idx`
/// to `matched + 1` instead (the same net effect). Only a message of the leader's own term is
/// dropped: one of another term is raft-rs's to ignore or to step down on.
/// `tests/raft_upstream.rs` (`bug_557_*`, `workaround_557_*`) pins the bug and the rule.
pub(super) fn is_stale_append_reject<T: Storage>(m: &Message, raft: &Raft<T>) -> bool {
    m.get_msg_type() == MessageType::MsgAppendResponse
        && m.reject
        && m.request_snapshot == INVALID_INDEX
        && raft.state == StateRole::Leader
        && m.term == raft.term
        && raft
            .prs()
            .get(m.from)
            .is_some_and(|pr| m.index <= pr.matched)
}

/// Every entry is a valid batch, and a stamped one sits at the offset this replica
/// computes for its index (when the message's previous entry matches ours, which is when
/// raft-rs would take the entries).
fn check_append(m: &Message, w: &Window, batch_bytes_max: usize) -> Result<(), ReplicaError> {
    let mut expected = (w.term(m.index) == Some(m.log_term))
        .then(|| w.end_of(m.index))
        .flatten();
    for e in m.entries.iter() {
        let count = if e.data.is_empty() {
            1
        } else {
            let meta =
                check_batch(&e.data, batch_bytes_max).map_err(|error| ReplicaError::BadEntry {
                    index: e.index,
                    error,
                })?;
            if let Some(x) = expected {
                if meta.epoch != UNSTAMPED_EPOCH
                    && (meta.base_offset != x || i64::from(meta.epoch) != e.term as i64)
                {
                    return Err(ReplicaError::OffsetMismatch {
                        index: e.index,
                        expected: x,
                        found: meta.base_offset,
                        term: e.term,
                        found_epoch: meta.epoch,
                    });
                }
            }
            meta.last_offset - meta.base_offset + 1
        };
        expected = expected.map(|x| x + count);
    }
    Ok(())
}

/// The bytes to store for entry (`index`, `term`, `data`) at `offset`: a control batch for
/// an empty entry, the batch stamped with `offset` and `term` otherwise.
pub(super) fn stored_batch(
    index: u64,
    term: u64,
    data: &Bytes,
    offset: u64,
) -> Result<(Bytes, BatchMeta), ReplicaError> {
    if data.is_empty() {
        let b = control_batch(offset, term);
        let meta = BatchMeta {
            base_offset: offset,
            last_offset: offset,
            epoch: epoch_of(term),
            bytes: b.len() as u32,
        };
        return Ok((b, meta));
    }
    let bad = |error| ReplicaError::BadEntry { index, error };
    let h = BatchHeader::parse(data).map_err(bad)?;
    let mut meta = BatchMeta::of(&h);
    if meta.bytes as usize != data.len() {
        return Err(bad(crate::record::BatchError::LengthMismatch {
            declared: meta.bytes as usize,
            actual: data.len(),
        }));
    }
    if meta.epoch == UNSTAMPED_EPOCH {
        let mut b = BytesMut::from(&data[..]);
        stamp(&mut b, offset, term);
        let n = meta.last_offset - meta.base_offset;
        meta.base_offset = offset;
        meta.last_offset = offset + n;
        meta.epoch = epoch_of(term);
        return Ok((b.freeze(), meta));
    }
    if meta.base_offset != offset || i64::from(meta.epoch) != term as i64 {
        return Err(ReplicaError::OffsetMismatch {
            index,
            expected: offset,
            found: meta.base_offset,
            term,
            found_epoch: meta.epoch,
        });
    }
    Ok((data.clone(), meta))
}

/// See [`Replica::check_fetched`](super::Replica::check_fetched).
pub fn check_fetched(
    from_offset: u64,
    to_offset: u64,
    data: &[u8],
    batch_bytes_max: usize,
) -> Result<Vec<BatchMeta>, FetchedError> {
    let mut out = Vec::new();
    let mut expected = from_offset;
    let mut at = 0usize;
    for item in batches(data) {
        let (_, range) = item.map_err(|error| FetchedError::BadBatch { at, error })?;
        let meta = check_batch(&data[range.clone()], batch_bytes_max)
            .map_err(|error| FetchedError::BadBatch { at, error })?;
        if meta.base_offset >= to_offset && meta.base_offset == expected {
            // The server sends up to its high watermark: the rest is not part of the catch-up.
            break;
        }
        if meta.base_offset != expected {
            return Err(FetchedError::NotContiguous {
                expected,
                found: meta.base_offset,
            });
        }
        if meta.end_offset() > to_offset {
            return Err(FetchedError::PastTarget {
                end: meta.end_offset(),
                target: to_offset,
            });
        }
        expected = meta.end_offset();
        at = range.end;
        out.push(meta);
    }
    Ok(out)
}
