//! The direct-I/O appender of one segment file: stages appended bytes in pooled, aligned DMA
//! buffers and hands them out as writes. A buffer is handed out whole as soon as it fills; the
//! bytes after the last full buffer go out as a *tail* write when a group commits.
//!
//! Lives on the shard that owns the partition, inside the log state. Sans-I/O: no glommio, no
//! files. The group-commit core (`group_commit.rs`) hands its [`WriteJob`]s to the commit
//! pipeline (`commit.rs`), which runs them (`dma::write_fully`) and reports each outcome with
//! [`Appender::complete`] or [`Appender::fail`]. The buffers are a [`StageBuf`]: aligned DMA
//! memory in the broker (`dma.rs`), plain vectors in tests and in the simulation
//! (`group_commit/sim/`). Every write the appender hands out is a *slot*; slots are kept in file
//! order and the written prefix advances only over a contiguous run of completed slots, so
//! writes may complete in any order.
//!
//! One writer per block: a tail write ends with a partial block that the next slot (a later tail
//! or the buffer that continues after it) rewrites with more bytes. The two overlap by that block,
//! so a slot is only handed out once its predecessor has completed whenever they overlap; slots
//! that do not overlap go out at once. Full buffers are written from the pool buffer itself (no
//! copy); a tail is copied into a buffer of its own size, after which the staging buffer is reset
//! in place to hold just the partial last block.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use super::config::DIO_ALIGN_BYTES;
use crate::types::Offset;

const ALIGN: usize = DIO_ALIGN_BYTES as usize;

/// The memory the appender stages bytes in and hands out as writes. Its length is fixed at
/// allocation.
pub(crate) trait StageBuf: Sized {
    /// A staging buffer of `len` bytes, kept (pooled) for the life of the log.
    fn staging(len: usize) -> Self;
    /// A buffer of `len` bytes for one tail write, freed after it.
    fn tail(len: usize) -> Self;
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
}

pub(crate) fn align_down(v: u64) -> u64 {
    v & !(DIO_ALIGN_BYTES - 1)
}

pub(crate) fn align_up(v: u64) -> u64 {
    align_down(v + DIO_ALIGN_BYTES - 1)
}

/// A batch boundary in a segment: byte position `pos`, where the batch with offset `next` starts
/// (or will). Everything before `pos` is whole batches below `next`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Boundary {
    pub(crate) pos: u64,
    pub(crate) next: Offset,
}

/// The staging buffers of one log, reused across its segments so that steady-state appends never
/// allocate, map or fault in memory. Lives on the log's shard, inside the log; borrowed only in
/// synchronous code.
///
/// Buffers are [`StageBuf::staging`] ones (in the broker from the heap, not from glommio's
/// registered I/O memory, since they are kept for the life of the log). At most `idle_max` idle
/// buffers are kept; more are freed when returned.
pub(crate) struct BufferPool<B> {
    buffer_bytes: usize,
    idle_max: usize,
    idle: RefCell<Vec<B>>,
}

impl<B: StageBuf> BufferPool<B> {
    pub(crate) fn new(buffer_bytes: usize, idle_max: usize) -> Rc<BufferPool<B>> {
        assert!(buffer_bytes % ALIGN == 0 && buffer_bytes >= ALIGN);
        Rc::new(BufferPool {
            buffer_bytes,
            idle_max: idle_max.max(1),
            idle: RefCell::new(Vec::new()),
        })
    }

    pub(crate) fn buffer_bytes(&self) -> usize {
        self.buffer_bytes
    }

    fn get(&self) -> B {
        let pooled = self.idle.borrow_mut().pop();
        pooled.unwrap_or_else(|| B::staging(self.buffer_bytes))
    }

    /// Takes a staging buffer back once no write uses it.
    pub(crate) fn put(&self, buf: B) {
        // A buffer of another size (a tail, or a trimmed one) is simply freed.
        if buf.bytes().len() != self.buffer_bytes {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        if idle.len() < self.idle_max {
            idle.push(buf);
        }
    }
}

/// The staging buffer being filled: it covers the file from `file_pos` (aligned) and holds `len`
/// bytes, the first of which may be a partial block already written by a tail.
struct Current<B> {
    buf: B,
    file_pos: u64,
    len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    /// Handed off by staging, not yet given to a writer (its predecessor overlaps it and is still
    /// being written, or nobody has asked yet).
    Pending,
    InFlight,
    Done,
    Failed,
}

/// One write of the file: the aligned range `start..stop`, bringing the logical end to
/// `logical_end`, whose last whole batch ends at `boundary`.
struct Slot<B> {
    id: u64,
    start: u64,
    stop: u64,
    logical_end: u64,
    boundary: Boundary,
    tail: bool,
    state: SlotState,
    /// The bytes, while the slot is pending.
    buf: Option<B>,
    /// `buf` is a pool buffer (a full one), to be given back after the write.
    pooled: bool,
}

/// A write handed out by [`Appender::next_write`]: write `buf` at `pos`, then report `id`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct WriteJob<B> {
    pub(crate) id: u64,
    pub(crate) pos: u64,
    pub(crate) buf: B,
    /// Give `buf` back with [`Appender::complete`] / [`Appender::fail`] (a pool buffer).
    pub(crate) pooled: bool,
}

/// What a completed write changed: `bytes` more logical bytes are written, and the written prefix
/// now ends at batch boundary `written`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Advance {
    pub(crate) bytes: u64,
    pub(crate) written: Boundary,
}

/// The first preallocation step of a segment: steps grow with the bytes the segment holds, up
/// to `preallocate_bytes`, so a partition that is written little reserves little.
pub(crate) const PREALLOCATE_MIN_BYTES: u64 = 1 << 20;

/// Preallocation of file space ahead of the writes.
#[derive(Default)]
struct Prealloc {
    /// The file is allocated (and sized) up to here.
    end: u64,
    in_flight: bool,
    /// The file system does not support it.
    disabled: bool,
    /// After a step that failed or was cut short (the disk is short of space), the next is
    /// tried once the staged bytes reach here, not at every append.
    retry_at: u64,
}

/// The staging and the writes of one segment.
pub(crate) struct Appender<B: StageBuf> {
    pool: Rc<BufferPool<B>>,
    buffer_bytes: usize,
    /// Always `Some` until drop.
    current: Option<Current<B>>,
    /// Logical end of everything staged, and the batch boundary there.
    staged: Boundary,
    /// The boundary up to which bytes are handed off as slots (full buffers and tails).
    committed: Boundary,
    /// Logical bytes handed off as slots.
    committed_pos: u64,
    /// Handed-off writes in file order, oldest first; completed ones are removed from the front.
    slots: VecDeque<Slot<B>>,
    next_id: u64,
    /// Logical end of the contiguous prefix of completed writes, and its last batch boundary.
    written_pos: u64,
    written: Boundary,
    /// A write failed: hand out nothing more until [`Appender::rollback`].
    failed: bool,
    prealloc: Prealloc,
}

impl<B: StageBuf> Drop for Appender<B> {
    /// Gives the staging buffers back to the pool (a finalized segment's go to the next one).
    fn drop(&mut self) {
        if let Some(cur) = self.current.take() {
            self.pool.put(cur.buf);
        }
        for s in self.slots.drain(..) {
            if let (Some(b), true) = (s.buf, s.pooled) {
                self.pool.put(b);
            }
        }
    }
}

const CURRENT: &str = "the staging buffer is present until drop";

impl<B: StageBuf> Appender<B> {
    /// An appender that continues the file at logical position `end`, where the batch with offset
    /// `next` would start; `tail` holds the bytes from `align_down(end)` to `end` as they are on
    /// disk. The file is assumed to be `end` bytes long (rounded up to a block).
    pub(crate) fn resume(pool: Rc<BufferPool<B>>, end: u64, next: Offset, tail: &[u8]) -> Self {
        assert_eq!(
            tail.len() as u64,
            end - align_down(end),
            "tail must be the partial block"
        );
        let buffer_bytes = pool.buffer_bytes();
        let mut buf = pool.get();
        buf.bytes_mut()[..tail.len()].copy_from_slice(tail);
        let at = Boundary { pos: end, next };
        Appender {
            pool,
            buffer_bytes,
            current: Some(Current {
                buf,
                file_pos: align_down(end),
                len: tail.len(),
            }),
            staged: at,
            committed: at,
            committed_pos: end,
            slots: VecDeque::new(),
            next_id: 0,
            written_pos: end,
            written: at,
            failed: false,
            prealloc: Prealloc {
                end: align_up(end),
                ..Prealloc::default()
            },
        }
    }

    /// The batch boundary at the end of the contiguous written prefix.
    pub(crate) fn written(&self) -> Boundary {
        self.written
    }

    /// The boundary up to which staged bytes are already handed off (no tail needed for them).
    pub(crate) fn committed(&self) -> Boundary {
        self.committed
    }

    /// Every staged byte is written and no write is outstanding.
    pub(crate) fn fully_written(&self) -> bool {
        self.slots.is_empty() && self.written_pos == self.staged.pos
    }

    /// A tail write is handed off and not yet complete.
    pub(crate) fn tail_in_flight(&self) -> bool {
        self.slots
            .iter()
            .any(|s| s.tail && matches!(s.state, SlotState::Pending | SlotState::InFlight))
    }

    /// A write is being run by a writer.
    pub(crate) fn write_in_flight(&self) -> bool {
        self.slots.iter().any(|s| s.state == SlotState::InFlight)
    }

    /// Copies `data` (one whole batch; the batch with offset `next` follows it) into the staging
    /// buffers. A buffer that fills is handed off as a slot at once.
    pub(crate) fn stage(&mut self, mut data: &[u8], next: Offset) {
        let before = self.staged;
        let end = before.pos + data.len() as u64;
        let after = Boundary { pos: end, next };
        while !data.is_empty() {
            let cur = self.current.as_mut().expect(CURRENT);
            let n = (self.buffer_bytes - cur.len).min(data.len());
            cur.buf.bytes_mut()[cur.len..cur.len + n].copy_from_slice(&data[..n]);
            cur.len += n;
            data = &data[n..];
            if cur.len == self.buffer_bytes {
                // The batch may go on into the next buffer: then the last whole batch in this one
                // ends where this batch starts.
                let boundary = if data.is_empty() { after } else { before };
                let fresh = self.pool.get();
                let stop = cur.file_pos + self.buffer_bytes as u64;
                let full = std::mem::replace(
                    cur,
                    Current {
                        buf: fresh,
                        file_pos: stop,
                        len: 0,
                    },
                );
                self.push_slot(full.file_pos, stop, stop, boundary, false, full.buf, true);
            }
        }
        self.staged = after;
    }

    #[allow(clippy::too_many_arguments)]
    fn push_slot(
        &mut self,
        start: u64,
        stop: u64,
        logical_end: u64,
        boundary: Boundary,
        tail: bool,
        buf: B,
        pooled: bool,
    ) {
        // Slots follow each other in the file, overlapping by at most the partial block a tail
        // ends with (two tails may even rewrite the same single block).
        debug_assert!(self
            .slots
            .back()
            .is_none_or(|s| s.start <= start && s.stop <= start + DIO_ALIGN_BYTES));
        let id = self.next_id;
        self.next_id += 1;
        self.slots.push_back(Slot {
            id,
            start,
            stop,
            logical_end,
            boundary,
            tail,
            state: SlotState::Pending,
            buf: Some(buf),
            pooled,
        });
        self.committed = boundary.max_by_pos(self.committed);
        self.committed_pos = self.committed_pos.max(logical_end);
    }

    /// Hands off the staged bytes after the last full buffer as a tail write (copied into a
    /// buffer of their own, rounded up to a block with zeros). Returns false when there is
    /// nothing new to write.
    pub(crate) fn take_tail(&mut self) -> bool {
        if self.failed || self.staged.pos <= self.committed_pos {
            return false;
        }
        let cur = self.current.as_mut().expect(CURRENT);
        let len = cur.len;
        let padded = align_up(len as u64) as usize;
        let mut buf = B::tail(padded);
        buf.bytes_mut()[..len].copy_from_slice(&cur.buf.bytes()[..len]);
        buf.bytes_mut()[len..].fill(0);
        let start = cur.file_pos;
        // Keep only the partial last block: the next slot starts there and rewrites it.
        let keep_from = align_down(len as u64) as usize;
        cur.buf.bytes_mut().copy_within(keep_from..len, 0);
        cur.file_pos += keep_from as u64;
        cur.len = len - keep_from;
        let staged = self.staged;
        self.push_slot(
            start,
            start + padded as u64,
            staged.pos,
            staged,
            true,
            buf,
            false,
        );
        true
    }

    /// The next write that may start now: a pending slot whose predecessor does not overlap it
    /// or has completed. Slots that overlap are so written in order, one at a time.
    pub(crate) fn next_write(&mut self) -> Option<WriteJob<B>> {
        if self.failed {
            return None;
        }
        let mut prev: Option<(u64, SlotState)> = None;
        for s in self.slots.iter_mut() {
            if s.state == SlotState::Pending {
                let blocked =
                    prev.is_some_and(|(stop, state)| stop > s.start && state != SlotState::Done);
                if !blocked {
                    s.state = SlotState::InFlight;
                    let buf = s.buf.take().expect("a pending slot holds its bytes");
                    return Some(WriteJob {
                        id: s.id,
                        pos: s.start,
                        buf,
                        pooled: s.pooled,
                    });
                }
            }
            prev = Some((s.stop, s.state));
        }
        None
    }

    /// Records that write `id` completed, and takes its buffer back when it is a staging buffer.
    /// Returns how far the written prefix advanced, if it did.
    pub(crate) fn complete(&mut self, id: u64, buf: Option<B>) -> Option<Advance> {
        if let Some(b) = buf {
            self.pool.put(b);
        }
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.id == id)
            .expect("a completed write has a slot");
        assert_eq!(slot.state, SlotState::InFlight);
        slot.state = SlotState::Done;
        let before = self.written_pos;
        while self
            .slots
            .front()
            .is_some_and(|s| s.state == SlotState::Done)
        {
            let s = self.slots.pop_front().expect("checked");
            self.written_pos = s.logical_end;
            self.written = s.boundary.max_by_pos(self.written);
        }
        (self.written_pos > before).then_some(Advance {
            bytes: self.written_pos - before,
            written: self.written,
        })
    }

    /// Records that write `id` failed: nothing more is handed out until [`Appender::rollback`].
    pub(crate) fn fail(&mut self, id: u64, buf: Option<B>) {
        if let Some(b) = buf {
            self.pool.put(b);
        }
        if let Some(s) = self.slots.iter_mut().find(|s| s.id == id) {
            s.state = SlotState::Failed;
        }
        self.failed = true;
    }

    /// Forgets everything staged or written after the written prefix's last batch boundary: the
    /// appender continues there, as if those appends never happened. `tail` holds the bytes from
    /// `align_down(written().pos)` to it, as on disk. No write may be in flight.
    pub(crate) fn rollback(&mut self, tail: &[u8]) {
        assert!(!self.write_in_flight(), "rollback with a write in flight");
        let at = self.written;
        assert_eq!(tail.len() as u64, at.pos - align_down(at.pos));
        for s in self.slots.drain(..) {
            if let (Some(b), true) = (s.buf, s.pooled) {
                self.pool.put(b);
            }
        }
        let cur = self.current.as_mut().expect(CURRENT);
        cur.buf.bytes_mut()[..tail.len()].copy_from_slice(tail);
        cur.file_pos = align_down(at.pos);
        cur.len = tail.len();
        self.staged = at;
        self.committed = at;
        self.committed_pos = at.pos;
        self.written_pos = at.pos;
        self.failed = false;
        // The caller cut the file at `at.pos`, preallocated space included.
        self.prealloc.end = align_up(at.pos);
    }

    /// Where to preallocate the file up to, when it is time to: the space ahead of the current
    /// staging buffer has dropped under half of the step. The step is `step`, or less while the
    /// segment is small (it grows with the segment from [`PREALLOCATE_MIN_BYTES`]). `cap` is the
    /// largest useful size.
    pub(crate) fn preallocate_target(&self, step: u64, cap: u64) -> Option<u64> {
        let p = &self.prealloc;
        if step == 0
            || p.in_flight
            || p.disabled
            || self.staged.pos <= self.written_pos
            || self.staged.pos < p.retry_at
        {
            return None;
        }
        let step = step.min(align_up(self.staged.pos).max(PREALLOCATE_MIN_BYTES));
        let ahead = self.current.as_ref().expect(CURRENT).file_pos + self.buffer_bytes as u64;
        if ahead + step / 2 <= p.end {
            return None;
        }
        let target = align_up(ahead + step).min(align_up(cap));
        (target > p.end).then_some(target)
    }

    pub(crate) fn preallocate_started(&mut self) {
        self.prealloc.in_flight = true;
    }

    /// The file is preallocated up to here.
    pub(crate) fn preallocated_end(&self) -> u64 {
        self.prealloc.end
    }

    /// Records the outcome of preallocating: the file is allocated up to `reached` (where it
    /// was, when the step failed). A step that failed or fell `short` of what was asked is tried
    /// again only after [`PREALLOCATE_MIN_BYTES`] more bytes are staged; meanwhile writes extend
    /// the file as usual. `unsupported` turns preallocation off for this file.
    pub(crate) fn preallocate_done(&mut self, reached: u64, short: bool, unsupported: bool) {
        let p = &mut self.prealloc;
        p.in_flight = false;
        p.end = p.end.max(reached);
        p.disabled |= unsupported;
        if short {
            p.retry_at = self.staged.pos + PREALLOCATE_MIN_BYTES;
        }
    }
}

impl Boundary {
    /// The later of two boundaries.
    fn max_by_pos(self, other: Boundary) -> Boundary {
        if self.pos >= other.pos {
            self
        } else {
            other
        }
    }
}

/// Plain memory, for tests and the simulation: the appender does not care about alignment.
#[cfg(test)]
impl StageBuf for Vec<u8> {
    fn staging(len: usize) -> Self {
        vec![0; len]
    }

    fn tail(len: usize) -> Self {
        vec![0; len]
    }

    fn bytes(&self) -> &[u8] {
        self
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

#[cfg(test)]
mod tests;
